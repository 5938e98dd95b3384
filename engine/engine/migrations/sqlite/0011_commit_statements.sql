-- A commit is now one statement per part that has rows, on the writer's own connection
-- (engine/engine/src/store/sqlite/writer.rs): new instances and events as bound values, the
-- other parts read from SQLite's binary JSON, in the order the triggers of migration 0010 ran.
-- The view and its triggers go: an INSERT into a view with INSTEAD OF triggers fills a
-- temporary table first and runs each trigger's WHEN, about 40 µs of a lone commit of a new
-- case (docs/benchmarks.md). Only the check of fired timers keeps a trigger, for its RAISE,
-- and runs only when a commit fires timers.

DROP TRIGGER IF EXISTS commit_batch_apply;
DROP TRIGGER IF EXISTS commit_batch_moved;
DROP TRIGGER IF EXISTS commit_batch_refused;
DROP TRIGGER IF EXISTS commit_batch_changed;
DROP TRIGGER IF EXISTS commit_batch_timers;
DROP TRIGGER IF EXISTS commit_batch_clear_one;
DROP TRIGGER IF EXISTS commit_batch_clear_token;
DROP TRIGGER IF EXISTS commit_batch_clear_all;
DROP VIEW commit_batch;

CREATE VIEW commit_consumed (consumed) AS SELECT NULL WHERE 0;

-- Timers a commit fires must still be there: [instance_id, token, name]. Another node (or an
-- earlier round) that fired one first makes this commit a conflict.
CREATE TRIGGER commit_consumed_check INSTEAD OF INSERT ON commit_consumed
BEGIN
    SELECT RAISE(ABORT, 'conflict: a timer of this change has already fired')
        WHERE EXISTS (SELECT 1 FROM jsonb_each(NEW.consumed) AS c
                      WHERE NOT EXISTS (SELECT 1 FROM timers AS t
                                        WHERE t.instance_id = c.value->>'$[0]' AND t.token = c.value->>'$[1]'
                                          AND t.name = c.value->>'$[2]'));
END;
