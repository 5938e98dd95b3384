-- Idempotency keys remember a fingerprint of the request they were first used for, so that
-- the same key sent with another request is refused instead of answered with the first reply.

ALTER TABLE idempotency ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
CREATE INDEX idempotency_by_age ON idempotency (created_at);

DROP TRIGGER commit_batch_apply;
DROP VIEW commit_batch;

CREATE VIEW commit_batch (created, changed, refused, events, clear_all, clear_token, clear_one, timers,
                          idempotency, outbox, consumed) AS
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;

CREATE TRIGGER commit_batch_apply INSTEAD OF INSERT ON commit_batch
BEGIN
    -- Timers the batch fires must still be there: [instance_id, token, name]. Another node
    -- (or an earlier round) that fired one first makes this batch a conflict.
    SELECT RAISE(ABORT, 'conflict: a timer of this change has already fired')
        WHERE EXISTS (SELECT 1 FROM jsonb_each(NEW.consumed) AS c
                      WHERE NOT EXISTS (SELECT 1 FROM timers AS t
                                        WHERE t.instance_id = c.value->>0 AND t.token = c.value->>1
                                          AND t.name = c.value->>2));

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

    -- [key, instance_id, response, now, fingerprint]
    INSERT INTO idempotency (key, instance_id, response, created_at, fingerprint)
        SELECT value->>0, value->>1, value->>2, value->>3, value->>4 FROM jsonb_each(NEW.idempotency);
    -- [instance_id, notice, now]
    INSERT INTO outbox (instance_id, notice, next_at)
        SELECT value->>0, value->>1, value->>2 FROM jsonb_each(NEW.outbox);
END;
