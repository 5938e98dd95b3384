-- The admin console: staff accounts (the same role, scope and workflow roles as API tokens;
-- only an argon2id hash of the password is kept) and signed-in sessions (any node serves them).
CREATE TABLE accounts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,
    role          text        NOT NULL,
    scope         text        NOT NULL,
    acts_as       jsonb       NOT NULL,
    must_change   integer     NOT NULL,   -- 1 until the holder sets their own password
    failures      integer     NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    disabled_at   timestamptz,
    created_at    timestamptz NOT NULL,
    changed_at    timestamptz NOT NULL
);

-- Only the SHA-256 of a session's secret (the cookie) is kept.
CREATE TABLE sessions (
    id_hash     text        PRIMARY KEY,
    account_id  bigint,
    token_id    bigint,
    csrf        text        NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_by_account ON sessions (account_id);
CREATE INDEX sessions_by_token ON sessions (token_id);
