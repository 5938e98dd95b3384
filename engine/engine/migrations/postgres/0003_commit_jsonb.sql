-- The commit statement reads its rows as jsonb: parsed once per call, each field then reached
-- without parsing the row's text again (`->` on `json` parses anew every time). Documents
-- (data, state, event bodies) arrive inside the rows as JSON strings holding their text, so
-- that their keys keep the order they were written in (`Docs::Text` in store/rows.rs).
DROP FUNCTION yishi_commit(json, json, json, json, json, json, json, json, json, json, json);

CREATE FUNCTION yishi_commit(created jsonb, changed jsonb, refused jsonb, events jsonb, clear_all jsonb,
                             clear_token jsonb, clear_one jsonb, timers jsonb, idempotency jsonb,
                             outbox jsonb, consumed jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    expected bigint;
    got bigint;
BEGIN
    -- Instances the unit changes, locked in id order (a fixed order: no deadlocks between
    -- units touching the same instances).
    IF changed IS NOT NULL OR refused IS NOT NULL THEN
        PERFORM 1 FROM instances
            WHERE id IN (SELECT (value->>0)::bigint FROM jsonb_array_elements(COALESCE(changed, '[]'::jsonb))
                         UNION SELECT (value->>0)::bigint FROM jsonb_array_elements(COALESCE(refused, '[]'::jsonb)))
            ORDER BY id FOR UPDATE;
    END IF;

    -- Timers the unit fires must still be there: [instance_id, token, name].
    IF consumed IS NOT NULL THEN
        expected := jsonb_array_length(consumed);
        SELECT count(*) INTO got FROM (
            SELECT 1 FROM timers t JOIN jsonb_array_elements(consumed) c
                ON t.instance_id = (c.value->>0)::bigint AND t.token = (c.value->>1)::bigint
                   AND t.name = c.value->>2
            FOR UPDATE OF t) AS locked;
        IF got <> expected THEN
            RAISE EXCEPTION 'conflict: a timer of this change has already fired' USING ERRCODE = '40001';
        END IF;
    END IF;

    -- New instances: [id, unit, workflow, version, status, outcome, active_steps, data, state, last_seq, now]
    IF created IS NOT NULL THEN
        INSERT INTO instances (id, unit, workflow, version, status, outcome, active_steps, data, state, revision,
                               last_seq, created_at, updated_at)
            SELECT (value->>0)::bigint, value->>1, value->>2, (value->>3)::bigint, value->>4, value->>5,
                   value->6, (value->>7)::json, (value->>8)::json, 1, (value->>9)::bigint,
                   yishi_ts((value->>10)::bigint), yishi_ts((value->>10)::bigint)
            FROM jsonb_array_elements(created);
    END IF;

    -- Changed instances: [id, base_revision, status, outcome, active_steps, data, state, last_seq, now, version].
    -- Every one must still be at its base revision.
    IF changed IS NOT NULL THEN
        expected := jsonb_array_length(changed);
        UPDATE instances
            SET status = v.value->>2, outcome = v.value->>3, active_steps = v.value->4, data = (v.value->>5)::json,
                state = (v.value->>6)::json, revision = instances.revision + 1, last_seq = (v.value->>7)::bigint,
                updated_at = yishi_ts((v.value->>8)::bigint), version = (v.value->>9)::bigint
            FROM jsonb_array_elements(changed) AS v
            WHERE instances.id = (v.value->>0)::bigint AND instances.revision = (v.value->>1)::bigint;
        GET DIAGNOSTICS got = ROW_COUNT;
        IF got <> expected THEN
            RAISE EXCEPTION 'conflict: an instance changed since this change was computed' USING ERRCODE = '40001';
        END IF;
    END IF;

    -- Refused actions record events only: [id, last_seq]
    IF refused IS NOT NULL THEN
        UPDATE instances SET last_seq = (v.value->>1)::bigint
            FROM jsonb_array_elements(refused) AS v
            WHERE instances.id = (v.value->>0)::bigint;
    END IF;

    -- Events: [instance_id, seq, at, version, type, body]
    IF events IS NOT NULL THEN
        INSERT INTO events (instance_id, seq, at, version, type, body)
            SELECT (value->>0)::bigint, (value->>1)::bigint, yishi_ts((value->>2)::bigint), (value->>3)::bigint,
                   value->>4, (value->>5)::json
            FROM jsonb_array_elements(events);
    END IF;

    -- Timers, deletes first: [instance_id], [instance_id, token], [instance_id, token, name]
    IF clear_all IS NOT NULL THEN
        DELETE FROM timers WHERE instance_id IN (SELECT (value#>>'{}')::bigint FROM jsonb_array_elements(clear_all));
    END IF;
    IF clear_token IS NOT NULL THEN
        DELETE FROM timers t USING jsonb_array_elements(clear_token) c
            WHERE t.instance_id = (c.value->>0)::bigint AND t.token = (c.value->>1)::bigint;
    END IF;
    IF clear_one IS NOT NULL THEN
        DELETE FROM timers t USING jsonb_array_elements(clear_one) c
            WHERE t.instance_id = (c.value->>0)::bigint AND t.token = (c.value->>1)::bigint AND t.name = c.value->>2;
    END IF;
    -- [instance_id, token, name, step, due_at]
    IF timers IS NOT NULL THEN
        INSERT INTO timers (instance_id, token, name, step, due_at)
            SELECT (value->>0)::bigint, (value->>1)::bigint, value->>2, value->>3, yishi_ts((value->>4)::bigint)
            FROM jsonb_array_elements(timers)
            ON CONFLICT (instance_id, token, name)
            DO UPDATE SET step = excluded.step, due_at = excluded.due_at, leased_until = NULL;
    END IF;

    -- [key, instance_id, response, now, fingerprint]
    IF idempotency IS NOT NULL THEN
        INSERT INTO idempotency (key, instance_id, response, created_at, fingerprint)
            SELECT value->>0, (value->>1)::bigint, value->>2, yishi_ts((value->>3)::bigint), value->>4
            FROM jsonb_array_elements(idempotency);
    END IF;
    -- [instance_id, notice, now]: the notice is JSON text
    IF outbox IS NOT NULL THEN
        INSERT INTO outbox (instance_id, notice, next_at)
            SELECT (value->>0)::bigint, (value->>1)::json, yishi_ts((value->>2)::bigint)
            FROM jsonb_array_elements(outbox);
    END IF;
END;
$$;
