-- Nodes and the active versions, in the database: what the leading node activates (it alone
-- reads the workflows folder), every node runs within a poll interval.

-- Which version of each workflow is active.
CREATE TABLE active_versions (
    workflow text COLLATE "C" PRIMARY KEY,
    version  bigint NOT NULL REFERENCES definitions (id)
);

-- One row: how many times the active set changed (nodes poll it and compare it to theirs),
-- when, by what, and the status of the activation that changed it.
CREATE TABLE catalog_state (
    id         int         PRIMARY KEY CHECK (id = 1),
    epoch      bigint      NOT NULL,
    changed_at timestamptz NOT NULL,
    changed_by text        NOT NULL,
    status     json        NOT NULL
);

-- Every node that served the database: who, which build, since when, last heartbeat (by the
-- database's clock), whether it leads, what it does.
CREATE TABLE nodes (
    id           text        PRIMARY KEY,
    build        text        NOT NULL,
    address      text        NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    leader       boolean     NOT NULL,
    doing        text        NOT NULL
);
