-- Retention: closed cases can be archived and purged. What they counted for stays: figures per
-- unit, workflow and month (in the deployment's zone) are kept here, and every purge is recorded.

CREATE TABLE monthly_figures (
    unit       TEXT    NOT NULL,
    workflow   TEXT    NOT NULL,
    month      TEXT    NOT NULL,          -- YYYY-MM
    started    INTEGER NOT NULL DEFAULT 0, -- cases started that month
    completed  INTEGER NOT NULL DEFAULT 0, -- cases that ended that month, by how
    cancelled  INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (unit, workflow, month)
) WITHOUT ROWID;

CREATE TABLE purges (
    id            INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    closed_before INTEGER NOT NULL,
    cases         INTEGER NOT NULL,
    archive       TEXT    NOT NULL,        -- where the cases were written first
    actor         TEXT    NOT NULL,
    max_id        INTEGER NOT NULL         -- the highest case id removed: ids are never handed out again
);
