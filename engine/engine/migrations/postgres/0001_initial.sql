-- Yishi's schema on PostgreSQL: the same tables as on SQLite (engine/engine/migrations/sqlite),
-- with JSON documents and timestamptz times. Applied at start-up under sqlx's advisory lock, so
-- nodes starting at once do not race; never edit a shipped migration, add a new one.
--
-- The store contract speaks Unix milliseconds; these two functions convert at the boundary.
-- `infinity` stands for "never" (a delivery given up on, `i64::MAX`); times past the year 9999
-- are "never" too.
CREATE FUNCTION yishi_ts(ms bigint) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN ms > 253402300799999 THEN 'infinity'::timestamptz
                WHEN ms < -62135596800000 THEN '-infinity'::timestamptz
                ELSE to_timestamp(ms::float8 / 1000) END;

CREATE FUNCTION yishi_ms(t timestamptz) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN t = 'infinity'::timestamptz THEN 9223372036854775807
                WHEN t = '-infinity'::timestamptz THEN -9223372036854775808
                ELSE round(extract(epoch FROM t) * 1000)::bigint END;

-- Documents people read (case data, event bodies, definitions, notices) are `json`: kept as
-- written, keys in the order they were written, as on SQLite (`jsonb` would sort the keys of a
-- form's answers). What queries look inside (active steps, a token's workflow roles) is `jsonb`.

-- Every version of every workflow, with the files it was built from: a node that never saw
-- the files still runs and shows the version.
CREATE TABLE definitions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow    text COLLATE "C" NOT NULL,   -- unit/id
    seq         bigint      NOT NULL,        -- 1, 2, 3 ... per workflow
    hash        text        NOT NULL,        -- content hash of the effective definition
    sources     json        NOT NULL,        -- path -> text
    effective   json        NOT NULL,
    created_at  timestamptz NOT NULL,
    created_by  text        NOT NULL DEFAULT '',
    UNIQUE (workflow, hash),
    UNIQUE (workflow, seq)
);

-- Instance ids come from this sequence: unique across every node on the database.
CREATE SEQUENCE instance_ids AS bigint;

CREATE TABLE instances (
    id           bigint PRIMARY KEY,
    unit         text COLLATE "C" NOT NULL,
    workflow     text COLLATE "C" NOT NULL,
    version      bigint      NOT NULL REFERENCES definitions (id),
    status       text        NOT NULL,
    outcome      text,
    active_steps jsonb       NOT NULL,       -- array of step ids
    data         json        NOT NULL,       -- in the order it was written (see above)
    state        json        NOT NULL,       -- tokens, scopes, visits (data kept apart)
    revision     bigint      NOT NULL,
    last_seq     bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX instances_by_unit ON instances (unit, status, id);
CREATE INDEX instances_by_workflow ON instances (workflow, version, status);
CREATE INDEX instances_by_status ON instances (status, id);

-- The append-only history of every instance.
CREATE TABLE events (
    instance_id bigint      NOT NULL REFERENCES instances (id),
    seq         bigint      NOT NULL,
    at          timestamptz NOT NULL,
    version     bigint      NOT NULL,
    type        text        NOT NULL,
    body        json        NOT NULL,
    PRIMARY KEY (instance_id, seq)
);

-- Deadlines, reminders and step timers. A node firing one holds a lease on it until
-- `leased_until`; the transition it causes removes the row in the same transaction.
CREATE TABLE timers (
    instance_id  bigint      NOT NULL REFERENCES instances (id),
    token        bigint      NOT NULL,
    name         text        NOT NULL,
    step         text        NOT NULL,
    due_at       timestamptz NOT NULL,
    leased_until timestamptz,
    PRIMARY KEY (instance_id, token, name)
);
CREATE INDEX timers_by_due ON timers (due_at);

-- Responses of actions sent with an idempotency key (honoured across nodes).
CREATE TABLE idempotency (
    key         text PRIMARY KEY,
    instance_id bigint      NOT NULL,
    response    text        NOT NULL,
    fingerprint text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL
);
CREATE INDEX idempotency_by_age ON idempotency (created_at);

-- API tokens (only a hash of the secret is kept).
CREATE TABLE api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL,
    key_id      text        NOT NULL UNIQUE,
    secret_hash text        NOT NULL,
    role        text        NOT NULL,
    scope       text        NOT NULL,
    acts_as     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

-- Notices waiting for delivery. A node attempting one holds a lease until `leased_until`;
-- `next_at = infinity` marks a delivery given up on (a dead letter).
CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id  bigint      NOT NULL,
    notice       json        NOT NULL,
    attempts     bigint      NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL,
    delivered_at timestamptz,
    last_error   text,
    leased_until timestamptz
);
CREATE INDEX outbox_pending ON outbox (next_at) WHERE delivered_at IS NULL;

-- Counters for registration numbers (per community and year).
CREATE TABLE counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);

-- Figures of purged cases, per unit, workflow and month (YYYY-MM in the deployment's zone).
CREATE TABLE monthly_figures (
    unit       text COLLATE "C" NOT NULL,
    workflow   text COLLATE "C" NOT NULL,
    month      text   NOT NULL,
    started    bigint NOT NULL DEFAULT 0,
    completed  bigint NOT NULL DEFAULT 0,
    cancelled  bigint NOT NULL DEFAULT 0,
    failed     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (unit, workflow, month)
);

CREATE TABLE purges (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL,
    closed_before timestamptz NOT NULL,
    cases         bigint      NOT NULL,
    archive       text        NOT NULL,
    actor         text        NOT NULL,
    max_id        bigint      NOT NULL
);

-- One commit unit = one statement: `SELECT yishi_commit($1, ..., $11)`, each argument a JSON
-- array of rows (or NULL for none), in the layouts `commit_rows` writes
-- (engine/engine/src/store/rows.rs; the SQLite trigger reads the same). One round trip, a
-- statement text that never changes, atomic as one statement. Locks are taken in id order;
-- a stale revision or a timer another node fired first raises `40001` (a conflict: reload
-- and retry).
CREATE FUNCTION yishi_commit(created json, changed json, refused json, events json, clear_all json,
                             clear_token json, clear_one json, timers json, idempotency json,
                             outbox json, consumed json) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    expected bigint;
    got bigint;
BEGIN
    -- Instances the unit changes, locked in id order (a fixed order: no deadlocks between
    -- units touching the same instances).
    PERFORM 1 FROM instances
        WHERE id IN (SELECT (value->>0)::bigint FROM json_array_elements(COALESCE(changed, '[]'::json))
                     UNION SELECT (value->>0)::bigint FROM json_array_elements(COALESCE(refused, '[]'::json)))
        ORDER BY id FOR UPDATE;

    -- Timers the unit fires must still be there: [instance_id, token, name].
    IF consumed IS NOT NULL THEN
        expected := json_array_length(consumed);
        SELECT count(*) INTO got FROM (
            SELECT 1 FROM timers t JOIN json_array_elements(consumed) c
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
                   (value->6)::jsonb, value->7, value->8, 1, (value->>9)::bigint,
                   yishi_ts((value->>10)::bigint), yishi_ts((value->>10)::bigint)
            FROM json_array_elements(created);
    END IF;

    -- Changed instances: [id, base_revision, status, outcome, active_steps, data, state, last_seq, now, version].
    -- Every one must still be at its base revision.
    IF changed IS NOT NULL THEN
        expected := json_array_length(changed);
        UPDATE instances
            SET status = v.value->>2, outcome = v.value->>3, active_steps = (v.value->4)::jsonb, data = v.value->5,
                state = v.value->6, revision = instances.revision + 1, last_seq = (v.value->>7)::bigint,
                updated_at = yishi_ts((v.value->>8)::bigint), version = (v.value->>9)::bigint
            FROM json_array_elements(changed) AS v
            WHERE instances.id = (v.value->>0)::bigint AND instances.revision = (v.value->>1)::bigint;
        GET DIAGNOSTICS got = ROW_COUNT;
        IF got <> expected THEN
            RAISE EXCEPTION 'conflict: an instance changed since this change was computed' USING ERRCODE = '40001';
        END IF;
    END IF;

    -- Refused actions record events only: [id, last_seq]
    IF refused IS NOT NULL THEN
        UPDATE instances SET last_seq = (v.value->>1)::bigint
            FROM json_array_elements(refused) AS v
            WHERE instances.id = (v.value->>0)::bigint;
    END IF;

    -- Events: [instance_id, seq, at, version, type, body]
    IF events IS NOT NULL THEN
        INSERT INTO events (instance_id, seq, at, version, type, body)
            SELECT (value->>0)::bigint, (value->>1)::bigint, yishi_ts((value->>2)::bigint), (value->>3)::bigint,
                   value->>4, value->5
            FROM json_array_elements(events);
    END IF;

    -- Timers, deletes first: [instance_id], [instance_id, token], [instance_id, token, name]
    IF clear_all IS NOT NULL THEN
        DELETE FROM timers WHERE instance_id IN (SELECT (value#>>'{}')::bigint FROM json_array_elements(clear_all));
    END IF;
    IF clear_token IS NOT NULL THEN
        DELETE FROM timers t USING json_array_elements(clear_token) c
            WHERE t.instance_id = (c.value->>0)::bigint AND t.token = (c.value->>1)::bigint;
    END IF;
    IF clear_one IS NOT NULL THEN
        DELETE FROM timers t USING json_array_elements(clear_one) c
            WHERE t.instance_id = (c.value->>0)::bigint AND t.token = (c.value->>1)::bigint AND t.name = c.value->>2;
    END IF;
    -- [instance_id, token, name, step, due_at]
    IF timers IS NOT NULL THEN
        INSERT INTO timers (instance_id, token, name, step, due_at)
            SELECT (value->>0)::bigint, (value->>1)::bigint, value->>2, value->>3, yishi_ts((value->>4)::bigint)
            FROM json_array_elements(timers)
            ON CONFLICT (instance_id, token, name)
            DO UPDATE SET step = excluded.step, due_at = excluded.due_at, leased_until = NULL;
    END IF;

    -- [key, instance_id, response, now, fingerprint]
    IF idempotency IS NOT NULL THEN
        INSERT INTO idempotency (key, instance_id, response, created_at, fingerprint)
            SELECT value->>0, (value->>1)::bigint, value->>2, yishi_ts((value->>3)::bigint), value->>4
            FROM json_array_elements(idempotency);
    END IF;
    -- [instance_id, notice, now]: the notice is JSON text
    IF outbox IS NOT NULL THEN
        INSERT INTO outbox (instance_id, notice, next_at)
            SELECT (value->>0)::bigint, (value->>1)::json, yishi_ts((value->>2)::bigint)
            FROM json_array_elements(outbox);
    END IF;
END;
$$;
