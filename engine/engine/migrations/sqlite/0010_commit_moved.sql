-- Changes that keep an instance's status and version come in a part of their own, `moved`,
-- and are written without assigning `status` or `version`: SQLite rewrites an index entry
-- whenever one of its columns is assigned, even to the value it holds, so each such change
-- rewrote a page of instances_by_unit, instances_by_workflow and instances_by_status (three
-- of the four to seven pages a vote's ballot wrote). Its rows have the layout of `changed`;
-- a row whose status or version is not the stored one fails the statement (its revision
-- becomes NULL) as a stale one does, so a wrong claim is a conflict, never a wrong index.
-- The committing callers decide (`Commit::stored`, engine/engine/src/store/rows.rs).
--
-- The timer deletes and the timer insert move into triggers of their own too, each run only
-- when its part has rows: each of these statements opened a temporary table (a new B-tree with
-- its own page cache, zeroed pages) before looking at its part, four per batch even with no
-- timers at all, about a fifth of the instructions of a lone commit of a new case.

DROP TRIGGER commit_batch_apply;
DROP TRIGGER commit_batch_changed;
DROP TRIGGER commit_batch_refused;
DROP VIEW commit_batch;

CREATE VIEW commit_batch (created, changed, refused, events, clear_all, clear_token, clear_one, timers,
                          idempotency, outbox, consumed, moved) AS
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;

-- The order of the triggers: SQLite runs the most recently created first, so they run in the
-- reverse of the order below: new instances, events, idempotency records and outbox items
-- (`commit_batch_apply`, created last); then the timer deletes, the timers set (after the
-- deletes, which may name the same timers; after the new instances, which they reference);
-- then changed, refused and moved instances, which touch no instance any other of these parts
-- inserts (see migration 0009).

CREATE TRIGGER commit_batch_moved INSTEAD OF INSERT ON commit_batch WHEN NEW.moved IS NOT NULL
BEGIN
    -- Layout of `changed` below; status and version are compared, not assigned.
    UPDATE instances
        SET outcome = v.outcome, active_steps = v.active_steps, data = v.data, state = v.state,
            revision = CASE WHEN instances.revision = v.base AND instances.status = v.status
                                 AND instances.version = v.version
                            THEN instances.revision + 1 END,
            last_seq = v.last_seq, updated_at = v.now
        FROM (SELECT value->>'$[0]' AS id, value->>'$[1]' AS base, value->>'$[2]' AS status, value->>'$[3]' AS outcome,
                     value->>'$[4]' AS active_steps, value->>'$[5]' AS data, value->>'$[6]' AS state, value->>'$[7]' AS last_seq,
                     value->>'$[8]' AS now, value->>'$[9]' AS version
              FROM jsonb_each(NEW.moved)) AS v
        WHERE instances.id = v.id;
END;

CREATE TRIGGER commit_batch_refused INSTEAD OF INSERT ON commit_batch WHEN NEW.refused IS NOT NULL
BEGIN
    -- Refused actions record events only: [id, last_seq]
    UPDATE instances SET last_seq = v.last_seq
        FROM (SELECT value->>'$[0]' AS id, value->>'$[1]' AS last_seq FROM jsonb_each(NEW.refused)) AS v
        WHERE instances.id = v.id;
END;

CREATE TRIGGER commit_batch_changed INSTEAD OF INSERT ON commit_batch WHEN NEW.changed IS NOT NULL
BEGIN
    -- Changed instances: [id, base_revision, status, outcome, active_steps, data, state, last_seq, now, version].
    -- A stale base revision sets `revision` to NULL: the NOT NULL constraint then fails the
    -- whole statement, and with it the batch.
    UPDATE instances
        SET status = v.status, outcome = v.outcome, active_steps = v.active_steps, data = v.data,
            state = v.state,
            revision = CASE WHEN instances.revision = v.base THEN instances.revision + 1 END,
            last_seq = v.last_seq, updated_at = v.now, version = v.version
        FROM (SELECT value->>'$[0]' AS id, value->>'$[1]' AS base, value->>'$[2]' AS status, value->>'$[3]' AS outcome,
                     value->>'$[4]' AS active_steps, value->>'$[5]' AS data, value->>'$[6]' AS state, value->>'$[7]' AS last_seq,
                     value->>'$[8]' AS now, value->>'$[9]' AS version
              FROM jsonb_each(NEW.changed)) AS v
        WHERE instances.id = v.id;
END;

-- Timers, deletes first (created after the insert, so run before it).
-- [instance_id, token, name, step, due_at]
CREATE TRIGGER commit_batch_timers INSTEAD OF INSERT ON commit_batch WHEN NEW.timers IS NOT NULL
BEGIN
    INSERT OR REPLACE INTO timers (instance_id, token, name, step, due_at)
        SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]', value->>'$[3]', value->>'$[4]' FROM jsonb_each(NEW.timers);
END;

-- [instance_id, token, name]
CREATE TRIGGER commit_batch_clear_one INSTEAD OF INSERT ON commit_batch WHEN NEW.clear_one IS NOT NULL
BEGIN
    DELETE FROM timers WHERE (instance_id, token, name) IN
        (SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]' FROM jsonb_each(NEW.clear_one));
END;

-- [instance_id, token]
CREATE TRIGGER commit_batch_clear_token INSTEAD OF INSERT ON commit_batch WHEN NEW.clear_token IS NOT NULL
BEGIN
    DELETE FROM timers WHERE (instance_id, token) IN
        (SELECT value->>'$[0]', value->>'$[1]' FROM jsonb_each(NEW.clear_token));
END;

-- [instance_id]
CREATE TRIGGER commit_batch_clear_all INSTEAD OF INSERT ON commit_batch WHEN NEW.clear_all IS NOT NULL
BEGIN
    DELETE FROM timers WHERE instance_id IN (SELECT value FROM jsonb_each(NEW.clear_all));
END;

CREATE TRIGGER commit_batch_apply INSTEAD OF INSERT ON commit_batch
BEGIN
    -- Timers the batch fires must still be there: [instance_id, token, name]. Another node
    -- (or an earlier round) that fired one first makes this batch a conflict.
    SELECT RAISE(ABORT, 'conflict: a timer of this change has already fired')
        WHERE NEW.consumed IS NOT NULL AND EXISTS (SELECT 1 FROM jsonb_each(NEW.consumed) AS c
                      WHERE NOT EXISTS (SELECT 1 FROM timers AS t
                                        WHERE t.instance_id = c.value->>'$[0]' AND t.token = c.value->>'$[1]'
                                          AND t.name = c.value->>'$[2]'));

    -- New instances: [id, unit, workflow, version, status, outcome, active_steps, data, state, last_seq, now]
    INSERT INTO instances (id, unit, workflow, version, status, outcome, active_steps, data, state, revision,
                           last_seq, created_at, updated_at)
        SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]', value->>'$[3]', value->>'$[4]', value->>'$[5]', value->>'$[6]', value->>'$[7]', value->>'$[8]',
               1, value->>'$[9]', value->>'$[10]', value->>'$[10]'
        FROM jsonb_each(NEW.created);

    -- Events: [instance_id, seq, at, version, type, body]
    INSERT INTO events (instance_id, seq, at, version, type, body)
        SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]', value->>'$[3]', value->>'$[4]', value->>'$[5]' FROM jsonb_each(NEW.events);

    -- [key, instance_id, response, now, fingerprint]
    INSERT INTO idempotency (key, instance_id, response, created_at, fingerprint)
        SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]', value->>'$[3]', value->>'$[4]' FROM jsonb_each(NEW.idempotency);
    -- [instance_id, notice, now]
    INSERT INTO outbox (instance_id, notice, next_at)
        SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]' FROM jsonb_each(NEW.outbox);
END;
