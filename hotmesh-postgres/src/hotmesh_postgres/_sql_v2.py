"""Schema version 2: signal delivery and waiter registration serialized per signal id.

Version 1 ran ``deliver_signal`` and ``add_waiter`` as single statements. Under READ COMMITTED
two concurrent ones could each miss the other's uncommitted row (the signal buffered, the waiter
registered, neither woken: a lost wake-up, Store rules 13-14). These functions take a
transaction-scoped advisory lock on the signal id first; every later statement in the function
takes a fresh snapshot, so whichever runs second sees the first one's committed row.
"""

from __future__ import annotations

SIGNAL_FUNCTIONS = r"""
CREATE FUNCTION @S@.store_deliver_signal(sid text, did text, payload jsonb)
RETURNS TABLE (job_id text, step text, message jsonb)
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(@LOCK@ || 'signal:' || sid, 0));
    INSERT INTO @S@.signals (signal_id, delivery_id, data) VALUES (sid, did, payload)
    ON CONFLICT DO NOTHING;
    RETURN QUERY SELECT w.job_id, w.step, w.message FROM @S@.waiters w
    WHERE w.signal_id = sid ORDER BY w.seq;
END
$fn$;

CREATE FUNCTION @S@.store_add_waiter(sid text, jid text, stp text, msg jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(@LOCK@ || 'signal:' || sid, 0));
    INSERT INTO @S@.waiters (signal_id, job_id, step, message) VALUES (sid, jid, stp, msg)
    ON CONFLICT DO NOTHING;
    SELECT s.delivery_id, s.data INTO r FROM @S@.signals s
    WHERE s.signal_id = sid AND s.consumed_job IS NULL ORDER BY s.seq LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('delivery_id', r.delivery_id, 'data', r.data);
END
$fn$;
"""
