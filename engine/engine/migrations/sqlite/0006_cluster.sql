-- Nodes and the active versions, in the database: what one node activates, every node on the
-- database runs (on SQLite there is one node, and these tables say the same as its memory).

-- Which version of each workflow is active.
CREATE TABLE active_versions (
    workflow TEXT    PRIMARY KEY,
    version  INTEGER NOT NULL REFERENCES definitions (id)
) WITHOUT ROWID;

-- One row: how many times the active set changed (nodes compare it to theirs), when, by what,
-- and the status of the activation that changed it (JSON).
CREATE TABLE catalog_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    epoch      INTEGER NOT NULL,
    changed_at INTEGER NOT NULL,
    changed_by TEXT    NOT NULL,
    status     TEXT    NOT NULL
);

-- Every node that served the database: who, which build, since when, last heartbeat, what it does.
CREATE TABLE nodes (
    id           TEXT    PRIMARY KEY,
    build        TEXT    NOT NULL,
    address      TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    leader       INTEGER NOT NULL,
    doing        TEXT    NOT NULL
) WITHOUT ROWID;
