-- Yishi's schema. Applied at start-up by the embedded migrator; never edit a shipped
-- migration, add a new one.

-- Every version of every workflow any instance has used, with the files it was built from.
CREATE TABLE definitions (
    id          INTEGER PRIMARY KEY,
    workflow    TEXT    NOT NULL,          -- unit/id
    seq         INTEGER NOT NULL,          -- 1, 2, 3 ... per workflow
    hash        TEXT    NOT NULL,          -- content hash of the effective definition
    sources     TEXT    NOT NULL,          -- JSON: path -> text
    effective   TEXT    NOT NULL,          -- JSON: the effective definition
    created_at  INTEGER NOT NULL,
    UNIQUE (workflow, hash),
    UNIQUE (workflow, seq)
);

CREATE TABLE instances (
    id           INTEGER PRIMARY KEY,
    unit         TEXT    NOT NULL,
    workflow     TEXT    NOT NULL,
    version      INTEGER NOT NULL REFERENCES definitions (id),
    status       TEXT    NOT NULL,
    outcome      TEXT,
    active_steps TEXT    NOT NULL,         -- JSON array of step ids
    data         TEXT    NOT NULL,         -- JSON object
    state        TEXT    NOT NULL,         -- JSON: tokens, scopes, visits (data kept apart)
    revision     INTEGER NOT NULL,
    last_seq     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX instances_by_unit ON instances (unit, status, id);
CREATE INDEX instances_by_workflow ON instances (workflow, version, status);
CREATE INDEX instances_by_status ON instances (status, id);

-- The append-only history of every instance.
CREATE TABLE events (
    instance_id INTEGER NOT NULL REFERENCES instances (id),
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    PRIMARY KEY (instance_id, seq)
) WITHOUT ROWID;

-- Deadlines, reminders and step timers: rows, not sleeping tasks.
CREATE TABLE timers (
    instance_id INTEGER NOT NULL REFERENCES instances (id),
    token       INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    step        TEXT    NOT NULL,
    due_at      INTEGER NOT NULL,
    PRIMARY KEY (instance_id, token, name)
) WITHOUT ROWID;
CREATE INDEX timers_by_due ON timers (due_at);

-- Responses of actions sent with an idempotency key.
CREATE TABLE idempotency (
    key         TEXT PRIMARY KEY,
    instance_id INTEGER NOT NULL,
    response    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- API tokens (only a hash of the secret is kept).
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    key_id      TEXT    NOT NULL UNIQUE,   -- the public part of the token, to look it up
    secret_hash TEXT    NOT NULL,          -- SHA-256 of the secret part, compared in constant time
    role        TEXT    NOT NULL,          -- admin, operator or viewer
    scope       TEXT    NOT NULL,          -- '*' or a unit path (covers the units below it)
    acts_as     TEXT    NOT NULL,          -- JSON: workflow roles the holder acts with
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- Notices waiting for delivery to webhooks.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    instance_id  INTEGER NOT NULL,
    notice       TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    delivered_at INTEGER,
    last_error   TEXT
);
CREATE INDEX outbox_pending ON outbox (delivered_at, next_at);

-- Counters for registration numbers (per community and year).
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
