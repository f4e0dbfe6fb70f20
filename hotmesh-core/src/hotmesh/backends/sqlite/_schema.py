"""The one schema shared by all roles and namespaces of a file (every table keyed by ``ns``)."""

from __future__ import annotations

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS hm_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS hm_jobs (
    ns TEXT NOT NULL,
    job_id TEXT NOT NULL,
    fields TEXT NOT NULL,
    expires_us INTEGER,
    PRIMARY KEY (ns, job_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hm_jobs_expiry ON hm_jobs (ns, expires_us)
    WHERE expires_us IS NOT NULL;

CREATE TABLE IF NOT EXISTS hm_steps (
    ns TEXT NOT NULL,
    job_id TEXT NOT NULL,
    step TEXT NOT NULL,
    messages TEXT NOT NULL,
    PRIMARY KEY (ns, job_id, step)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS hm_timers (
    ns TEXT NOT NULL,
    timer_id TEXT NOT NULL,
    due_us INTEGER NOT NULL,
    message TEXT NOT NULL,
    lease_until_us INTEGER,
    token TEXT,
    PRIMARY KEY (ns, timer_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hm_timers_due ON hm_timers (ns, due_us, timer_id);

CREATE TABLE IF NOT EXISTS hm_signals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ns TEXT NOT NULL,
    signal_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    data TEXT NOT NULL,
    consumer_job TEXT,
    consumer_step TEXT,
    UNIQUE (ns, signal_id, delivery_id)
);
CREATE INDEX IF NOT EXISTS hm_signals_open ON hm_signals (ns, signal_id, consumer_job, seq);

CREATE TABLE IF NOT EXISTS hm_waiters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ns TEXT NOT NULL,
    signal_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    step TEXT NOT NULL,
    message TEXT NOT NULL,
    UNIQUE (ns, signal_id, job_id, step)
);

CREATE TABLE IF NOT EXISTS hm_cache (
    ns TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    expires_us INTEGER,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS hm_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ns TEXT NOT NULL,
    stream TEXT NOT NULL,
    body TEXT NOT NULL,
    headers TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hm_messages_stream ON hm_messages (ns, stream, seq);

CREATE TABLE IF NOT EXISTS hm_groups (
    ns TEXT NOT NULL,
    stream TEXT NOT NULL,
    grp TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    PRIMARY KEY (ns, stream, grp)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS hm_pending (
    ns TEXT NOT NULL,
    stream TEXT NOT NULL,
    grp TEXT NOT NULL,
    seq INTEGER NOT NULL,
    delivery_count INTEGER NOT NULL,
    visible_us INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    PRIMARY KEY (ns, stream, grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hm_pending_visible ON hm_pending (ns, stream, grp, visible_us);

CREATE TABLE IF NOT EXISTS hm_dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ns TEXT NOT NULL,
    stream TEXT NOT NULL,
    grp TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    headers TEXT NOT NULL,
    delivery_count INTEGER NOT NULL,
    error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hm_dead_group ON hm_dead (ns, stream, grp, id);

CREATE TABLE IF NOT EXISTS hm_notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ns TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS hm_notes_ns ON hm_notes (ns, id);

CREATE TABLE IF NOT EXISTS hm_indexes (
    ns TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (ns, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS hm_docs (
    ns TEXT NOT NULL,
    idx TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (ns, idx, doc_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS hm_values (
    ns TEXT NOT NULL,
    idx TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    field TEXT NOT NULL,
    tag TEXT,
    num,  -- no affinity: integers stay exact integers, compared numerically with reals
    fts_rowid INTEGER,
    PRIMARY KEY (ns, idx, doc_id, field)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hm_values_tag ON hm_values (ns, idx, field, tag);
CREATE INDEX IF NOT EXISTS hm_values_num ON hm_values (ns, idx, field, num);

CREATE VIRTUAL TABLE IF NOT EXISTS hm_fts USING fts5 (
    ns UNINDEXED, idx UNINDEXED, doc_id UNINDEXED, field UNINDEXED, body,
    tokenize = "unicode61 remove_diacritics 0 tokenchars '_'"
);
"""
