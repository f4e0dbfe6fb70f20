"""Migration 1: every table and function of a namespace schema.

``@S@`` is replaced by the quoted schema identifier, ``@CHAN@`` by the stream wake-up channel and
``@LOCK@`` by the advisory-lock prefix, all derived from the validated namespace (see _schema).
Each store operation is one plpgsql function so a transition is one round trip (DESIGN §2).
"""

from __future__ import annotations

TABLES = r"""
CREATE TABLE @S@.jobs (
    job_id text PRIMARY KEY,
    fields jsonb NOT NULL DEFAULT '{}'::jsonb,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_expires_at ON @S@.jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE @S@.steps (
    job_id text NOT NULL,
    step text NOT NULL,
    messages jsonb NOT NULL DEFAULT '[]'::jsonb,
    published boolean NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, step)
);
CREATE TABLE @S@.timers (
    timer_id text PRIMARY KEY,
    due_at timestamptz NOT NULL,
    message jsonb NOT NULL,
    token text,
    lease_until timestamptz
);
CREATE INDEX timers_due_at ON @S@.timers (due_at);
CREATE TABLE @S@.signals (
    signal_id text NOT NULL,
    delivery_id text NOT NULL,
    seq bigserial,
    data jsonb,
    consumed_job text,
    consumed_step text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (signal_id, delivery_id)
);
CREATE INDEX signals_buffered ON @S@.signals (signal_id, seq) WHERE consumed_job IS NULL;
CREATE INDEX signals_consumed ON @S@.signals (consumed_job) WHERE consumed_job IS NOT NULL;
CREATE TABLE @S@.waiters (
    signal_id text NOT NULL,
    job_id text NOT NULL,
    step text NOT NULL,
    message jsonb NOT NULL,
    seq bigserial,
    PRIMARY KEY (signal_id, job_id, step)
);
CREATE TABLE @S@.cache (
    key text PRIMARY KEY,
    value jsonb,
    expires_at timestamptz
);
CREATE INDEX cache_expires_at ON @S@.cache (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE @S@.messages (
    id bigserial PRIMARY KEY,
    stream text NOT NULL,
    body jsonb NOT NULL,
    headers jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_stream ON @S@.messages (stream, id);
CREATE TABLE @S@.groups (
    stream text NOT NULL,
    grp text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, grp)
);
CREATE TABLE @S@.deliveries (
    stream text NOT NULL,
    grp text NOT NULL,
    msg_id bigint NOT NULL,
    consumer text,
    visible_at timestamptz NOT NULL DEFAULT '-infinity',
    delivery_count integer NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, grp, msg_id)
);
CREATE INDEX deliveries_msg ON @S@.deliveries (msg_id);
CREATE TABLE @S@.dead_letters (
    id bigserial PRIMARY KEY,
    stream text NOT NULL,
    grp text NOT NULL,
    msg_id bigint NOT NULL,
    body jsonb NOT NULL,
    headers jsonb NOT NULL,
    delivery_count integer NOT NULL,
    error text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_group ON @S@.dead_letters (stream, grp, id);

CREATE TABLE @S@.sub_payloads (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE @S@.search_indexes (
    name text PRIMARY KEY,
    spec jsonb NOT NULL
);
CREATE TABLE @S@.search_docs (
    index_name text NOT NULL,
    doc_id text NOT NULL,
    fields jsonb NOT NULL,
    words jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (index_name, doc_id)
);
CREATE INDEX search_docs_fields ON @S@.search_docs USING gin (fields jsonb_path_ops);
CREATE INDEX search_docs_words ON @S@.search_docs USING gin (words jsonb_path_ops);
"""

STREAM_FUNCTIONS = r"""
-- Stream rule 2: a new group gets a delivery row for every message already in the stream.
-- The exclusive per-stream advisory lock orders group creation against publishers (who take
-- it shared), so no message committed around the creation is missed by the new group.
CREATE FUNCTION @S@.stream_ensure_group(s text, g text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM @S@.groups WHERE stream = s AND grp = g) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(@LOCK@ || s, 0));
    INSERT INTO @S@.groups (stream, grp) VALUES (s, g) ON CONFLICT DO NOTHING;
    IF FOUND THEN
        INSERT INTO @S@.deliveries (stream, grp, msg_id)
        SELECT s, g, m.id FROM @S@.messages m WHERE m.stream = s;
    END IF;
END
$fn$;

-- Stream rule 1: append messages, fan them out to existing groups, NOTIFY at commit.
CREATE FUNCTION @S@.stream_publish(msgs jsonb) RETURNS text[]
LANGUAGE plpgsql AS $fn$
DECLARE
    m jsonb;
    s text;
    new_id bigint;
    ids text[] := ARRAY[]::text[];
BEGIN
    FOR s IN SELECT DISTINCT e->>'stream' FROM jsonb_array_elements(msgs) e ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock_shared(hashtextextended(@LOCK@ || s, 0));
    END LOOP;
    FOR m IN SELECT value FROM jsonb_array_elements(msgs) LOOP
        INSERT INTO @S@.messages (stream, body, headers)
        VALUES (m->>'stream', coalesce(m->'body', '{}'::jsonb), coalesce(m->'headers', '{}'::jsonb))
        RETURNING id INTO new_id;
        INSERT INTO @S@.deliveries (stream, grp, msg_id)
        SELECT g.stream, g.grp, new_id FROM @S@.groups g WHERE g.stream = m->>'stream';
        ids := ids || new_id::text;
    END LOOP;
    FOR s IN SELECT DISTINCT e->>'stream' FROM jsonb_array_elements(msgs) e LOOP
        PERFORM pg_notify(@CHAN@, s);
    END LOOP;
    RETURN ids;
END
$fn$;

-- Stream rules 3-7: claim visible deliveries in id order with SKIP LOCKED; dead-letter those
-- whose next delivery would exceed maxd. Returns {"d": [...], "next": seconds | null}.
CREATE FUNCTION @S@.stream_read(s text, g text, c text, n integer, vt double precision,
                                maxd integer) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
    out jsonb := '[]'::jsonb;
    got integer := 0;
    dead integer;
    nxt double precision;
BEGIN
    PERFORM @S@.stream_ensure_group(s, g);
    LOOP
        dead := 0;
        FOR r IN
            SELECT d.msg_id, d.delivery_count FROM @S@.deliveries d
            WHERE d.stream = s AND d.grp = g AND d.visible_at <= clock_timestamp()
            ORDER BY d.msg_id LIMIT (n - got) FOR UPDATE SKIP LOCKED
        LOOP
            IF maxd IS NOT NULL AND r.delivery_count + 1 > maxd THEN
                INSERT INTO @S@.dead_letters (stream, grp, msg_id, body, headers, delivery_count, error)
                SELECT s, g, m.id, m.body, m.headers, r.delivery_count, 'max deliveries exceeded'
                FROM @S@.messages m WHERE m.id = r.msg_id;
                DELETE FROM @S@.deliveries WHERE stream = s AND grp = g AND msg_id = r.msg_id;
                dead := dead + 1;
            ELSE
                UPDATE @S@.deliveries
                SET consumer = c, delivery_count = delivery_count + 1,
                    visible_at = clock_timestamp() + make_interval(secs => vt)
                WHERE stream = s AND grp = g AND msg_id = r.msg_id;
                out := out || jsonb_build_array((
                    SELECT jsonb_build_array(m.id::text, m.body, m.headers, r.delivery_count + 1)
                    FROM @S@.messages m WHERE m.id = r.msg_id));
                got := got + 1;
            END IF;
        END LOOP;
        EXIT WHEN dead = 0 OR got >= n;
    END LOOP;
    IF got = 0 THEN
        SELECT extract(epoch FROM min(d.visible_at) - clock_timestamp()) INTO nxt
        FROM @S@.deliveries d
        WHERE d.stream = s AND d.grp = g AND d.visible_at > clock_timestamp();
    END IF;
    RETURN jsonb_build_object('d', out, 'next', nxt);
END
$fn$;
"""

STORE_FUNCTIONS = r"""
-- Store rules 1, 6, 8: create if absent (an expired job is absent), emit only when created.
CREATE FUNCTION @S@.store_create(a jsonb, pub boolean) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    jid text := a->>'job_id';
BEGIN
    DELETE FROM @S@.jobs WHERE job_id = jid AND expires_at <= clock_timestamp();
    INSERT INTO @S@.jobs (job_id, fields, expires_at)
    VALUES (jid, coalesce(a->'fields', '{}'::jsonb),
            CASE WHEN jsonb_typeof(a->'expire') = 'number'
                 THEN clock_timestamp() + make_interval(secs => (a->>'expire')::double precision)
            END)
    ON CONFLICT (job_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM @S@.steps WHERE job_id = jid;
    IF pub AND jsonb_array_length(coalesce(a->'messages', '[]'::jsonb)) > 0 THEN
        PERFORM @S@.stream_publish(a->'messages');
    END IF;
    RETURN true;
END
$fn$;

-- Store rules 2-6, 8: one transition, atomic and idempotent per (job_id, step).
CREATE FUNCTION @S@.store_apply(a jsonb, pub boolean) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
    jid text := a->>'job_id';
    f jsonb;
    exp timestamptz;
    st record;
    k text;
    v jsonb;
    rd jsonb := coalesce(a->'read', '[]'::jsonb);
    msgs jsonb := coalesce(a->'messages', '[]'::jsonb);
    did_pub boolean := false;
BEGIN
    SELECT j.fields, j.expires_at INTO f, exp FROM @S@.jobs j WHERE j.job_id = jid FOR UPDATE;
    IF NOT FOUND OR (exp IS NOT NULL AND exp <= clock_timestamp()) THEN
        RETURN '{"status": "rejected"}'::jsonb;
    END IF;
    SELECT s.messages, s.published INTO st FROM @S@.steps s WHERE s.job_id = jid AND s.step = a->>'step';
    IF FOUND THEN
        RETURN jsonb_build_object('status', 'duplicate', 'messages', st.messages,
            'published', false,
            'fields', (SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb)
                       FROM jsonb_each(f) e
                       WHERE e.key IN (SELECT jsonb_array_elements_text(rd))));
    END IF;
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(coalesce(a->'require', '{}'::jsonb)) e LOOP
        IF jsonb_typeof(v) = 'null' THEN
            IF f ? k THEN
                RETURN '{"status": "rejected"}'::jsonb;
            END IF;
        ELSIF (f->k) IS DISTINCT FROM v THEN
            RETURN '{"status": "rejected"}'::jsonb;
        END IF;
    END LOOP;
    f := f || coalesce(a->'set', '{}'::jsonb);
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(coalesce(a->'increment', '{}'::jsonb)) e LOOP
        f := jsonb_set(f, ARRAY[k],
                       to_jsonb(coalesce((f->>k)::numeric, 0) + (v #>> '{}')::numeric));
    END LOOP;
    IF jsonb_typeof(a->'delete') = 'array' THEN
        f := f - ARRAY(SELECT jsonb_array_elements_text(a->'delete'));
    END IF;
    IF jsonb_typeof(a->'expire') = 'number' THEN
        exp := clock_timestamp() + make_interval(secs => (a->>'expire')::double precision);
    END IF;
    UPDATE @S@.jobs SET fields = f, expires_at = exp WHERE job_id = jid;
    IF pub AND jsonb_array_length(msgs) > 0 THEN
        PERFORM @S@.stream_publish(msgs);
        did_pub := true;
    END IF;
    INSERT INTO @S@.steps (job_id, step, messages, published)
    VALUES (jid, a->>'step', msgs, did_pub);
    RETURN jsonb_build_object('status', 'applied', 'published', did_pub,
        'fields', (SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb)
                   FROM jsonb_each(f) e WHERE e.key IN (SELECT jsonb_array_elements_text(rd))));
END
$fn$;

-- Store rule 15: exactly one waiter takes each buffered signal; a repeat returns the same one.
CREATE FUNCTION @S@.store_consume_signal(sid text, jid text, stp text) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
BEGIN
    SELECT s.delivery_id, s.data INTO r FROM @S@.signals s
    WHERE s.signal_id = sid AND s.consumed_job = jid AND s.consumed_step = stp;
    IF FOUND THEN
        RETURN jsonb_build_object('delivery_id', r.delivery_id, 'data', r.data);
    END IF;
    SELECT s.delivery_id, s.data INTO r FROM @S@.signals s
    WHERE s.signal_id = sid AND s.consumed_job IS NULL
    ORDER BY s.seq LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- Only a registered waiter consumes (the memory reference reads rule 15 the same way).
    DELETE FROM @S@.waiters WHERE signal_id = sid AND job_id = jid AND step = stp;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE @S@.signals SET consumed_job = jid, consumed_step = stp
    WHERE signal_id = sid AND delivery_id = r.delivery_id;
    RETURN jsonb_build_object('delivery_id', r.delivery_id, 'data', r.data);
END
$fn$;
"""
