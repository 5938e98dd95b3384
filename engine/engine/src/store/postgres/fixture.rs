//! Generated data for `yishi bench scale` on PostgreSQL: the same cases, events and overdue
//! deadlines as on SQLite, made by the database itself with `generate_series`.

use super::{PgStore, map_err};
use crate::store::{ScaleFixture, StoreResult};

impl PgStore {
    pub(crate) async fn fill_scale_fixture(&self, f: &ScaleFixture) -> StoreResult<()> {
        let ScaleFixture { instances, deadlines, counter_version: counter, timed_version: timed, now } = *f;
        let sql = format!(
            "BEGIN;
             INSERT INTO instances (id, unit, workflow, version, status, outcome, active_steps, data, state, revision, last_seq, created_at, updated_at)
             SELECT x, 'bench/c' || (x % 100),
                    CASE WHEN x <= {deadlines} THEN 'bench/timed' ELSE 'bench/counter' END,
                    CASE WHEN x <= {deadlines} THEN {timed} ELSE {counter} END,
                    CASE WHEN x <= {deadlines} OR (x / 100) % 2 = 0 THEN 'active' ELSE 'completed' END,
                    CASE WHEN x <= {deadlines} OR (x / 100) % 2 = 0 THEN NULL ELSE 'done' END,
                    CASE WHEN x <= {deadlines} THEN '[\"wait\"]' WHEN (x / 100) % 2 = 0 THEN '[\"count\"]' ELSE '[]' END::jsonb,
                    ('{{\"n\":' || x || ',\"building\":' || (x % 40) || '}}')::json,
                    CASE WHEN x <= {deadlines} THEN '{{\"status\":\"active\",\"tokens\":[{{\"id\":1,\"step\":\"wait\",\"entered_at\":0}}],\"visits\":{{\"wait\":1}},\"next_token\":2,\"next_scope\":1}}'
                         WHEN (x / 100) % 2 = 0 THEN '{{\"status\":\"active\",\"tokens\":[{{\"id\":1,\"step\":\"count\",\"entered_at\":0}}],\"visits\":{{\"count\":1}},\"next_token\":2,\"next_scope\":1}}'
                         ELSE '{{\"status\":\"completed\",\"outcome\":\"done\",\"figures\":{{\"responded\":true,\"answers\":1,\"resolved_answers\":' || (x % 3 > 0)::int || ',\"satisfied_answers\":' || (x % 4 > 0)::int || ',\"score_sum\":' || (x % 5 + 1) || ',\"resolved\":' || CASE WHEN x % 3 > 0 THEN 'true' ELSE 'false' END || ',\"satisfied\":' || CASE WHEN x % 4 > 0 THEN 'true' ELSE 'false' END || '}},\"tokens\":[],\"visits\":{{\"count\":1}},\"next_token\":2,\"next_scope\":1}}' END::json,
                    1, 10, yishi_ts({now} - x * 60000), yishi_ts({now} - x)
             FROM generate_series(1, {instances}) AS x;
             INSERT INTO events (instance_id, seq, at, version, type, body)
             SELECT x / 10 + 1, x % 10 + 1, yishi_ts({now}), {counter}, 'action',
                    ('{{\"type\":\"action\",\"action\":\"tick\",\"step\":\"count\",\"token\":1,\"actor\":{{\"id\":\"bench\",\"roles\":[]}},\"payload\":{{\"n\":' || x || '}}}}')::json
             FROM generate_series(0, {instances} * 10 - 1) AS x;
             INSERT INTO timers (instance_id, token, name, step, due_at)
             SELECT x, 1, 'deadline', 'wait', yishi_ts({now} - 1000) FROM generate_series(1, {deadlines}) AS x;
             SELECT setval('instance_ids', GREATEST((SELECT last_value FROM instance_ids), {instances}));
             COMMIT;
             ANALYZE;"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(self.pool()).await.map_err(map_err)?;
        Ok(())
    }
}
