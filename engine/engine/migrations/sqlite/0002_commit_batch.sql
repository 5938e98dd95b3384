-- One commit = one statement: `INSERT INTO commit_batch VALUES (...)`, each argument a JSON
-- array of rows (or NULL for none). The trigger below applies every part of the batch; a
-- single statement is atomic on its own, so the batch is kept whole or not at all, with no
-- explicit transaction that a cancelled caller could leave open, and it costs one round trip
-- to SQLite's thread. The row layouts are written by `commit_rows` in
-- engine/src/store/sqlite.rs; keep the two in step. `->>` reads a scalar; `->` reads a
-- document (data, state, an event's body) as its JSON text.
CREATE VIEW commit_batch (created, changed, refused, events, clear_all, clear_token, clear_one, timers,
                          idempotency, outbox, counters) AS
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;

CREATE TRIGGER commit_batch_apply INSTEAD OF INSERT ON commit_batch
BEGIN
    -- New instances: [id, unit, workflow, version, status, outcome, active_steps, data, state, last_seq, now]
    INSERT INTO instances (id, unit, workflow, version, status, outcome, active_steps, data, state, revision,
                           last_seq, created_at, updated_at)
        SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->6, value->7, value->8,
               1, value->>9, value->>10, value->>10
        FROM jsonb_each(NEW.created);

    -- Changed instances: [id, base_revision, status, outcome, active_steps, data, state, last_seq, now, version].
    -- A stale base revision sets `revision` to NULL: the NOT NULL constraint then fails the
    -- whole statement, and with it the batch.
    UPDATE instances
        SET status = v.status, outcome = v.outcome, active_steps = v.active_steps, data = v.data,
            state = v.state,
            revision = CASE WHEN instances.revision = v.base THEN instances.revision + 1 END,
            last_seq = v.last_seq, updated_at = v.now, version = v.version
        FROM (SELECT value->>0 AS id, value->>1 AS base, value->>2 AS status, value->>3 AS outcome,
                     value->4 AS active_steps, value->5 AS data, value->6 AS state, value->>7 AS last_seq,
                     value->>8 AS now, value->>9 AS version
              FROM jsonb_each(NEW.changed)) AS v
        WHERE instances.id = v.id;

    -- Refused actions record events only: [id, last_seq]
    UPDATE instances SET last_seq = v.last_seq
        FROM (SELECT value->>0 AS id, value->>1 AS last_seq FROM jsonb_each(NEW.refused)) AS v
        WHERE instances.id = v.id;

    -- Events: [instance_id, seq, at, version, type, body]
    INSERT INTO events (instance_id, seq, at, version, type, body)
        SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->5 FROM jsonb_each(NEW.events);

    -- Timers, deletes first: [instance_id], [instance_id, token], [instance_id, token, name]
    DELETE FROM timers WHERE instance_id IN (SELECT value FROM jsonb_each(NEW.clear_all));
    DELETE FROM timers WHERE (instance_id, token) IN
        (SELECT value->>0, value->>1 FROM jsonb_each(NEW.clear_token));
    DELETE FROM timers WHERE (instance_id, token, name) IN
        (SELECT value->>0, value->>1, value->>2 FROM jsonb_each(NEW.clear_one));
    -- [instance_id, token, name, step, due_at]
    INSERT OR REPLACE INTO timers (instance_id, token, name, step, due_at)
        SELECT value->>0, value->>1, value->>2, value->>3, value->>4 FROM jsonb_each(NEW.timers);

    -- [key, instance_id, response, now]
    INSERT INTO idempotency (key, instance_id, response, created_at)
        SELECT value->>0, value->>1, value->>2, value->>3 FROM jsonb_each(NEW.idempotency);
    -- [instance_id, notice, now]
    INSERT INTO outbox (instance_id, notice, next_at)
        SELECT value->>0, value->>1, value->>2 FROM jsonb_each(NEW.outbox);
    -- [name, value]
    INSERT INTO counters (name, value)
        SELECT value->>0, value->>1 FROM jsonb_each(NEW.counters) WHERE true
        ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value);
END;
