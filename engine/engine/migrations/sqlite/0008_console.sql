-- The admin console: staff accounts (the same role, scope and workflow roles as API tokens;
-- only an argon2id hash of the password is kept) and signed-in sessions (any node serves them).
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,          -- argon2id, PHC string
    role          TEXT    NOT NULL,          -- admin, operator, viewer
    scope         TEXT    NOT NULL,          -- * or a unit
    acts_as       TEXT    NOT NULL,          -- JSON array of workflow roles
    must_change   INTEGER NOT NULL,          -- 1 until the holder sets their own password
    failures      INTEGER NOT NULL DEFAULT 0,
    locked_until  INTEGER,                   -- sign-in refused until then (Unix ms)
    disabled_at   INTEGER,
    created_at    INTEGER NOT NULL,
    changed_at    INTEGER NOT NULL
);

-- Only the SHA-256 of a session's secret (the cookie) is kept.
CREATE TABLE sessions (
    id_hash     TEXT    PRIMARY KEY,
    account_id  INTEGER,                     -- signed in with an account ...
    token_id    INTEGER,                     -- ... or with an API token
    csrf        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_account ON sessions (account_id);
CREATE INDEX sessions_by_token ON sessions (token_id);
