//! Generated data for `yishi bench scale`: a million cases with ten million events, made by
//! SQLite itself in one transaction (through the engine it would take an hour).

use super::{SqliteStore, map_err};
use crate::store::{ScaleFixture, StoreResult};

impl SqliteStore {
    pub(crate) async fn fill_scale_fixture(&self, f: &ScaleFixture) -> StoreResult<()> {
        let ScaleFixture { instances, deadlines, counter_version: counter, timed_version: timed, now } = *f;
        let sql = format!(
            "BEGIN;
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {instances})
             INSERT INTO instances (id, unit, workflow, version, status, outcome, active_steps, data, state, revision, last_seq, created_at, updated_at)
             SELECT x, 'bench/c' || (x % 100),
                    CASE WHEN x <= {deadlines} THEN 'bench/timed' ELSE 'bench/counter' END,
                    CASE WHEN x <= {deadlines} THEN {timed} ELSE {counter} END,
                    CASE WHEN x <= {deadlines} OR (x / 100) % 2 = 0 THEN 'active' ELSE 'completed' END,
                    CASE WHEN x <= {deadlines} OR (x / 100) % 2 = 0 THEN NULL ELSE 'done' END,
                    CASE WHEN x <= {deadlines} THEN '[\"wait\"]' WHEN (x / 100) % 2 = 0 THEN '[\"count\"]' ELSE '[]' END,
                    '{{\"n\":' || x || ',\"building\":' || (x % 40) || '}}',
                    CASE WHEN x <= {deadlines} THEN '{{\"status\":\"active\",\"tokens\":[{{\"id\":1,\"step\":\"wait\",\"entered_at\":0}}],\"visits\":{{\"wait\":1}},\"next_token\":2,\"next_scope\":1}}'
                         WHEN (x / 100) % 2 = 0 THEN '{{\"status\":\"active\",\"tokens\":[{{\"id\":1,\"step\":\"count\",\"entered_at\":0}}],\"visits\":{{\"count\":1}},\"next_token\":2,\"next_scope\":1}}'
                         ELSE '{{\"status\":\"completed\",\"outcome\":\"done\",\"figures\":{{\"responded\":true,\"answers\":1,\"resolved_answers\":' || (x % 3 > 0) || ',\"satisfied_answers\":' || (x % 4 > 0) || ',\"score_sum\":' || (x % 5 + 1) || ',\"resolved\":' || CASE WHEN x % 3 > 0 THEN 'true' ELSE 'false' END || ',\"satisfied\":' || CASE WHEN x % 4 > 0 THEN 'true' ELSE 'false' END || '}},\"tokens\":[],\"visits\":{{\"count\":1}},\"next_token\":2,\"next_scope\":1}}' END,
                    1, 10, {now} - x * 60000, {now} - x
             FROM c;
             WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {instances} * 10 - 1)
             INSERT INTO events (instance_id, seq, at, version, type, body)
             SELECT x / 10 + 1, x % 10 + 1, {now}, {counter}, 'action',
                    '{{\"type\":\"action\",\"action\":\"tick\",\"step\":\"count\",\"token\":1,\"actor\":{{\"id\":\"bench\",\"roles\":[]}},\"payload\":{{\"n\":' || x || '}}}}'
             FROM c;
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {deadlines})
             INSERT INTO timers (instance_id, token, name, step, due_at) SELECT x, 1, 'deadline', 'wait', {now} - 1000 FROM c;
             COMMIT;
             PRAGMA wal_checkpoint(TRUNCATE);
             ANALYZE;"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(self.pool()).await.map_err(map_err)?;
        let last = instances.max(self.inner.last_id.load(std::sync::atomic::Ordering::SeqCst));
        self.inner.last_id.store(last, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
