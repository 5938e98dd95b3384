-- The commit statement reads SQLite's binary JSON. Each argument of `INSERT INTO commit_batch`
-- is a JSONB array of rows (or NULL for none), encoded by the committing callers on their own
-- threads (`Jsonb` in engine/engine/src/store/rows.rs): SQLite walks it without parsing text.
-- A document (active steps, data, state, an event's body) is a string inside its row holding
-- the document's JSON text, read with `->>`: copied into its column as it is, where before the
-- trigger parsed every document and wrote it out again. The rows' layouts are unchanged.
-- Fields are reached by full paths ('$[0]'): an integer (`->>0`) is first turned into text
-- and then into a path, on every row.

DROP TRIGGER commit_batch_apply;
DROP VIEW commit_batch;

CREATE VIEW commit_batch (created, changed, refused, events, clear_all, clear_token, clear_one, timers,
                          idempotency, outbox, consumed) AS
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;

-- Changed instances and refused actions in triggers of their own, which run only when the
-- batch has such rows: an UPDATE ... FROM always opens a temporary table, even for no rows,
-- and a batch of new instances (or one commit at a time) has none. Correctness does not rest
-- on the order in which the three triggers run: a batch holds at most one commit per instance
-- (a case's commits are made one after another, each waiting for the one before: the slot of
-- the case is held until its commit returns, and a caller that left early is waited for with
-- the store's barrier), so these rows touch no instance the others insert, and any failure
-- aborts the whole statement. They are created in the order that makes SQLite, which runs the
-- most recently created trigger first, keep the order of the single trigger before: new
-- instances, events and timers, then changed instances, then refused actions.

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

    -- Timers, deletes first: [instance_id], [instance_id, token], [instance_id, token, name]
    DELETE FROM timers WHERE NEW.clear_all IS NOT NULL AND instance_id IN (SELECT value FROM jsonb_each(NEW.clear_all));
    DELETE FROM timers WHERE NEW.clear_token IS NOT NULL AND (instance_id, token) IN
        (SELECT value->>'$[0]', value->>'$[1]' FROM jsonb_each(NEW.clear_token));
    DELETE FROM timers WHERE NEW.clear_one IS NOT NULL AND (instance_id, token, name) IN
        (SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]' FROM jsonb_each(NEW.clear_one));
    -- [instance_id, token, name, step, due_at]
    INSERT OR REPLACE INTO timers (instance_id, token, name, step, due_at)
        SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]', value->>'$[3]', value->>'$[4]' FROM jsonb_each(NEW.timers);

    -- [key, instance_id, response, now, fingerprint]
    INSERT INTO idempotency (key, instance_id, response, created_at, fingerprint)
        SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]', value->>'$[3]', value->>'$[4]' FROM jsonb_each(NEW.idempotency);
    -- [instance_id, notice, now]
    INSERT INTO outbox (instance_id, notice, next_at)
        SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]' FROM jsonb_each(NEW.outbox);
END;
