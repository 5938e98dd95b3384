//! The PostgreSQL store, for several nodes on one database: ids from sequences, the revision
//! check and timer claims in the database (`FOR UPDATE`, `SKIP LOCKED`, leases judged by the
//! database's clock), one statement per commit unit (`yishi_commit`, in the migration), schema
//! migrations under sqlx's advisory lock. Any number of processes may serve one database.

mod batcher;
mod copy;
mod fixture;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};

use super::decode;
use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A store on a PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PgStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    /// The address without its password.
    described: String,
    stats: Arc<CommitStats>,
    batcher: batcher::Batcher,
    /// Instance ids taken from the sequence in blocks and not handed out yet.
    ids: std::sync::Mutex<std::collections::VecDeque<i64>>,
    /// The connection holding the lead (a session advisory lock), while this node leads.
    lead: tokio::sync::Mutex<Option<sqlx::PgConnection>>,
}

/// What a PostgreSQL error means for the caller, by its SQLSTATE.
pub(super) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound("row not found".into()),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = db.message().to_owned();
            match code.as_str() {
                // serialization failure, deadlock: someone else changed it first
                "40001" | "40P01" => StoreError::Conflict(message),
                // integrity constraints (a key used twice, a missing reference)
                c if c.starts_with("23") => StoreError::Conflict(message),
                // statement timeout, shutdown, a standby that cannot write, connection trouble,
                // out of resources: passing conditions
                "57014" | "57P01" | "57P02" | "57P03" | "25006" => StoreError::Unavailable(message),
                c if c.starts_with("08") || c.starts_with("53") => StoreError::Unavailable(message),
                _ => StoreError::Fatal(format!("{message} (SQLSTATE {code})")),
            }
        }
        sqlx::Error::Io(io) => StoreError::Unavailable(io.to_string()),
        sqlx::Error::Tls(t) => StoreError::Unavailable(t.to_string()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Fatal(e.to_string()),
    }
}

/// Instance ids a node takes from the sequence at once.
const ID_BLOCK: i64 = 32;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Connects to the database `options.url` names and applies migrations (under an advisory
    /// lock, so that nodes starting at once take turns). With `options.create` unset (commands
    /// that read an existing deployment) a database Yishi never set up is refused, not set up.
    pub async fn open(options: &StoreOptions) -> StoreResult<Self> {
        let described = redact(&options.url);
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(|e| StoreError::Fatal(format!("`{described}`: {e}")))?
            .application_name("yishi")
            .options([
                ("statement_timeout", ms(options.statement_timeout).to_string()),
                (
                    "synchronous_commit",
                    match options.sync {
                        Durability::Full => "on".to_owned(),
                        Durability::Normal => "off".to_owned(),
                    },
                ),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .min_connections(1)
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| match map_err(e) {
                StoreError::Unavailable(m) | StoreError::Fatal(m) => {
                    StoreError::Unavailable(format!("cannot connect to {described}: {m}"))
                }
                other => other,
            })?;
        if !options.create {
            let set_up: bool = sqlx::query_scalar("SELECT to_regclass('definitions') IS NOT NULL")
                .fetch_one(&pool)
                .await
                .map_err(map_err)?;
            if !set_up {
                return Err(StoreError::NotFound(format!("no yishi database at {described}")));
            }
        }
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Fatal(format!("migrating the database: {e}")))?;
        let stats = Arc::new(CommitStats { observed: true, ..CommitStats::default() });
        Ok(PgStore {
            inner: Arc::new(Inner {
                batcher: batcher::Batcher::start(pool.clone(), stats.clone()),
                pool,
                described: format!("postgres {described}"),
                stats,
                ids: Default::default(),
                lead: tokio::sync::Mutex::new(None),
            }),
        })
    }

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }
}

const VERSION_COLUMNS: &str = "id, workflow, seq, hash, yishi_ms(created_at) AS created_at, created_by";
const INSTANCE_COLUMNS: &str = "id, unit, workflow, version, revision, last_seq, data::text AS data, \
     state::text AS state, yishi_ms(created_at) AS created_at, yishi_ms(updated_at) AS updated_at";
const TIMER_COLUMNS: &str = "instance_id, token, name, step, yishi_ms(due_at) AS due_at";
const ACCOUNT_COLUMNS: &str = "id, name, password_hash, role, scope, acts_as::text AS acts_as, \
     must_change::bigint AS must_change, failures::bigint AS failures, yishi_ms(locked_until) AS locked_until, \
     yishi_ms(disabled_at) AS disabled_at, yishi_ms(created_at) AS created_at, yishi_ms(changed_at) AS changed_at";

const TOKEN_COLUMNS: &str = "id, name, role, scope, acts_as::text AS acts_as, secret_hash, \
     yishi_ms(created_at) AS created_at, yishi_ms(revoked_at) AS revoked_at";

impl Store for PgStore {
    fn shared(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.inner.described.clone()
    }

    fn commit_stats(&self) -> &CommitStats {
        &self.inner.stats
    }

    async fn put_version(&self, v: &NewVersion<'_>, now: i64) -> StoreResult<VersionRow> {
        let mut tx = self.pool().begin().await.map_err(map_err)?;
        // Nodes starting at once with the same files take turns per workflow: one row per
        // content, numbered without gaps.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('yishi.version/' || $1, 0))")
            .bind(v.workflow)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM definitions WHERE workflow = $1 AND hash = $2"
        )))
        .bind(v.workflow)
        .bind(v.hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(r) = existing {
            return decode::version_row(&r).map_err(map_err);
        }
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO definitions (workflow, seq, hash, sources, effective, created_at, created_by) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3::json, $4::json, yishi_ts($5), $6 \
             FROM definitions WHERE workflow = $1 RETURNING {VERSION_COLUMNS}"
        )))
        .bind(v.workflow)
        .bind(v.hash)
        .bind(serde_json::to_string(v.sources).unwrap_or_default())
        .bind(v.effective.to_string())
        .bind(now)
        .bind(v.created_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        decode::version_row(&r).map_err(map_err)
    }

    async fn versions(&self, workflow: Option<&str>) -> StoreResult<Vec<VersionRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM definitions WHERE $1::text IS NULL OR workflow = $1 ORDER BY workflow, seq"
        )))
        .bind(workflow)
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        rows.iter().map(decode::version_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn version(&self, id: i64) -> StoreResult<StoredVersion> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS}, sources::text AS sources, effective::text AS effective \
             FROM definitions WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(map_err)?
        .ok_or_else(|| StoreError::NotFound(format!("version {id}")))?;
        let sources: String = r.try_get("sources").map_err(map_err)?;
        let effective: String = r.try_get("effective").map_err(map_err)?;
        Ok(StoredVersion {
            row: decode::version_row(&r).map_err(map_err)?,
            sources: serde_json::from_str(&sources).map_err(|e| StoreError::Fatal(e.to_string()))?,
            effective: serde_json::from_str(&effective).unwrap_or(Value::Null),
        })
    }

    async fn active_counts(&self) -> StoreResult<BTreeMap<i64, i64>> {
        let rows = sqlx::query_as::<_, (i64, i64)>(
            "SELECT version, count(*) FROM instances WHERE status = 'active' GROUP BY version",
        )
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        Ok(rows.into_iter().collect())
    }

    async fn next_instance_id(&self) -> StoreResult<i64> {
        if let Some(id) = self.inner.ids.lock().expect("ids lock").pop_front() {
            return Ok(id);
        }
        // A block at a time: one round trip for many cases. Ids stay unique across nodes; one
        // this node never uses (it stops first) is skipped, never handed out twice.
        let block: Vec<i64> = sqlx::query_scalar("SELECT nextval('instance_ids') FROM generate_series(1, $1)")
            .bind(ID_BLOCK)
            .fetch_all(self.pool())
            .await
            .map_err(map_err)?;
        let mut ids = self.inner.ids.lock().expect("ids lock");
        ids.extend(block);
        ids.make_contiguous().sort_unstable();
        ids.pop_front().ok_or_else(|| StoreError::Fatal("the id sequence gave nothing".into()))
    }

    async fn load(&self, id: i64) -> StoreResult<InstanceRow> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(map_err)?
            .ok_or_else(|| StoreError::NotFound(format!("instance {id}")))?;
        decode::instance_of(&r)
    }

    async fn history(&self, id: i64) -> StoreResult<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT e.seq, yishi_ms(e.at) AS at, d.seq AS version, e.body::text AS body \
             FROM events AS e JOIN definitions AS d ON d.id = e.version WHERE e.instance_id = $1 ORDER BY e.seq",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get("body").map_err(map_err)?;
                let event: Event =
                    serde_json::from_str(&body).map_err(|e| StoreError::Fatal(format!("instance {id}: event: {e}")))?;
                Ok(EventRow {
                    seq: r.try_get("seq").map_err(map_err)?,
                    at: r.try_get("at").map_err(map_err)?,
                    version: r.try_get("version").map_err(map_err)?,
                    event,
                })
            })
            .collect()
    }

    async fn list(&self, f: &ListFilter) -> StoreResult<Vec<InstanceSummary>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT i.id, i.unit, i.workflow, d.seq AS version, d.hash AS version_id, i.status, i.outcome, \
             i.active_steps::text AS active_steps, i.state ->> 'urgency' AS urgency, i.revision, \
             yishi_ms(i.created_at) AS created_at, \
             yishi_ms(i.updated_at) AS updated_at \
             FROM instances AS i JOIN definitions AS d ON d.id = i.version WHERE true",
        );
        if let Some(units) = &f.units {
            push_units(&mut q, "i.unit", units);
        }
        if let Some(w) = &f.workflow {
            q.push(" AND i.workflow = ").push_bind(w.clone());
        }
        if let Some(v) = f.version {
            q.push(" AND d.seq = ").push_bind(v);
        }
        if let Some(s) = &f.status {
            q.push(" AND i.status = ").push_bind(s.clone());
        }
        if let Some(s) = &f.step {
            q.push(" AND i.active_steps @> jsonb_build_array(").push_bind(s.clone()).push("::text)");
        }
        for (col, op, v) in [
            ("i.created_at", ">=", f.created_from),
            ("i.created_at", "<", f.created_to),
            ("i.updated_at", ">=", f.updated_from),
            ("i.updated_at", "<", f.updated_to),
        ] {
            if let Some(v) = v {
                q.push(format!(" AND {col} {op} yishi_ts(")).push_bind(v).push(")");
            }
        }
        if let Some(t) = &f.title_contains {
            let pattern = format!("%{}%", t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            q.push(" AND i.data ->> 'title' ILIKE ").push_bind(pattern);
        }
        if f.overdue {
            q.push(" AND (i.state -> 'figures' ->> 'overdue') = 'true'");
        }
        if let Some((field, value)) = &f.data {
            // As on SQLite: a missing field and a JSON null both match null.
            // Parenthesised whole: the OR below must not reach the filters around it.
            q.push(" AND ((i.data -> ").push_bind(field.clone()).push(")::jsonb");
            match value {
                Value::Null => q
                    .push(" IS NOT DISTINCT FROM NULL OR (i.data -> ")
                    .push_bind(field.clone())
                    .push(")::jsonb = 'null'::jsonb)"),
                other => q.push(" = ").push_bind(other.to_string()).push("::jsonb)"),
            };
        }
        if let Some(u) = &f.urgency {
            q.push(" AND i.state ->> 'urgency' = ").push_bind(u.clone());
        }
        let rank = |q: &mut QueryBuilder<Postgres>, table: &str, levels: &[String]| {
            if levels.is_empty() {
                // Not a bare integer, which ORDER BY would read as a column's position.
                q.push(" CAST(0 AS INTEGER)");
                return;
            }
            q.push(format!(" (CASE {table}.state ->> 'urgency'"));
            for (i, l) in levels.iter().enumerate() {
                q.push(" WHEN ").push_bind(l.clone()).push(format!(" THEN {i}"));
            }
            q.push(format!(" ELSE {} END)", levels.len()));
        };
        match (&f.by_urgency, f.before) {
            (None, Some(b)) => {
                q.push(" AND i.id < ").push_bind(b);
            }
            (Some(levels), Some(b)) => {
                // After the cursor's case: less urgent, or as urgent and older.
                q.push(" AND (");
                rank(&mut q, "i", levels);
                q.push(", -i.id) > (SELECT");
                rank(&mut q, "c", levels);
                q.push(", -c.id FROM instances AS c WHERE c.id = ").push_bind(b).push(")");
            }
            (_, None) => {}
        }
        q.push(" ORDER BY");
        if let Some(levels) = &f.by_urgency {
            rank(&mut q, "i", levels);
            q.push(",");
        }
        q.push(" i.id DESC LIMIT ").push_bind(i64::from(f.limit.max(1)));
        let rows = q.build().fetch_all(self.pool()).await.map_err(map_err)?;
        rows.iter().map(decode::summary).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn commit(&self, unit: &[Commit]) -> StoreResult<()> {
        self.inner.batcher.commit(unit).await
    }

    async fn barrier(&self) -> StoreResult<()> {
        self.inner.batcher.barrier().await
    }

    async fn idempotent_response(&self, key: &str) -> StoreResult<Option<Remembered>> {
        let row = sqlx::query_as::<_, (String, String, i64)>(
            "SELECT response, fingerprint, yishi_ms(created_at) FROM idempotency WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(self.pool())
        .await
        .map_err(map_err)?;
        Ok(row.map(|(response, fingerprint, created_at)| Remembered { fingerprint, response, created_at }))
    }

    async fn forget_idempotency(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency WHERE key = $1").bind(key).execute(self.pool()).await.map_err(map_err)?;
        Ok(())
    }

    async fn next_number(&self, counter: &str) -> StoreResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO counters (name, value) VALUES ($1, 1) \
             ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
        )
        .bind(counter)
        .fetch_one(self.pool())
        .await
        .map_err(map_err)
    }

    async fn claim_due(&self, now: i64, limit: u32, lease: Duration) -> StoreResult<Vec<TimerRow>> {
        // Due by the caller's clock and by the database's (a node whose clock runs fast never
        // fires early); not leased to another node, or its lease has run out (it died while
        // firing). SKIP LOCKED: nodes claiming at once take different timers.
        let rows = sqlx::query(
            "UPDATE timers AS t SET leased_until = clock_timestamp() + $3 * interval '1 millisecond' \
             FROM (SELECT instance_id, token, name FROM timers \
                   WHERE due_at <= yishi_ts($1) AND due_at <= clock_timestamp() \
                     AND (leased_until IS NULL OR leased_until <= clock_timestamp()) \
                   ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) AS d \
             WHERE t.instance_id = d.instance_id AND t.token = d.token AND t.name = d.name \
             RETURNING t.instance_id, t.token, t.name, t.step, yishi_ms(t.due_at) AS due_at",
        )
        .bind(now)
        .bind(i64::from(limit))
        .bind(ms(lease))
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        let mut timers = rows.iter().map(decode::timer_row).collect::<Result<Vec<_>, _>>().map_err(map_err)?;
        timers.sort_by_key(|t| (t.due_at, t.instance_id, t.token));
        Ok(timers)
    }

    async fn next_due(&self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT yishi_ms(MIN(due_at)) FROM timers").fetch_one(self.pool()).await.map_err(map_err)
    }

    async fn drop_timer(&self, t: &TimerRow) -> StoreResult<()> {
        sqlx::query("DELETE FROM timers WHERE instance_id = $1 AND token = $2 AND name = $3 AND due_at = yishi_ts($4)")
            .bind(t.instance_id)
            .bind(i64::from(t.token))
            .bind(&t.name)
            .bind(t.due_at)
            .execute(self.pool())
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn timers_of(&self, instance_id: i64) -> StoreResult<Vec<TimerRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TIMER_COLUMNS} FROM timers WHERE instance_id = $1 ORDER BY due_at, token, name COLLATE \"C\""
        )))
        .bind(instance_id)
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        rows.iter().map(decode::timer_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn add_token(&self, t: &NewToken<'_>, now: i64) -> StoreResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO api_tokens (name, key_id, secret_hash, role, scope, acts_as, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, yishi_ts($7)) RETURNING id",
        )
        .bind(t.name)
        .bind(t.key_id)
        .bind(t.secret_hash)
        .bind(t.role)
        .bind(t.scope)
        .bind(serde_json::to_string(t.acts_as).unwrap_or_else(|_| "[]".into()))
        .bind(now)
        .fetch_one(self.pool())
        .await
        .map_err(map_err)
    }

    async fn token_by_key(&self, key_id: &str) -> StoreResult<Option<TokenRow>> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE key_id = $1")))
            .bind(key_id)
            .fetch_optional(self.pool())
            .await
            .map_err(map_err)?;
        r.as_ref().map(decode::token_row).transpose().map_err(map_err)
    }

    async fn tokens(&self) -> StoreResult<Vec<TokenRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id")))
            .fetch_all(self.pool())
            .await
            .map_err(map_err)?;
        rows.iter().map(decode::token_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn revoke_token(&self, id: i64, now: i64) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE api_tokens SET revoked_at = yishi_ts($1) WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(map_err)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn add_account(&self, a: &AccountRow) -> StoreResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO accounts (name, password_hash, role, scope, acts_as, must_change, failures, locked_until, \
             disabled_at, created_at, changed_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, yishi_ts($8), \
             yishi_ts($9), yishi_ts($10), yishi_ts($11)) RETURNING id",
        )
        .bind(&a.name)
        .bind(&a.password_hash)
        .bind(&a.role)
        .bind(&a.scope)
        .bind(serde_json::to_string(&a.acts_as).unwrap_or_else(|_| "[]".into()))
        .bind(i32::from(a.must_change))
        .bind(a.failures as i32)
        .bind(a.locked_until)
        .bind(a.disabled_at)
        .bind(a.created_at)
        .bind(a.changed_at)
        .fetch_one(self.pool())
        .await
        .map_err(map_err)
    }

    async fn update_account(&self, a: &AccountRow) -> StoreResult<()> {
        sqlx::query(
            "UPDATE accounts SET password_hash = $1, role = $2, scope = $3, acts_as = $4::jsonb, must_change = $5, \
             failures = $6, locked_until = yishi_ts($7), disabled_at = yishi_ts($8), changed_at = yishi_ts($9) \
             WHERE id = $10",
        )
        .bind(&a.password_hash)
        .bind(&a.role)
        .bind(&a.scope)
        .bind(serde_json::to_string(&a.acts_as).unwrap_or_else(|_| "[]".into()))
        .bind(i32::from(a.must_change))
        .bind(a.failures as i32)
        .bind(a.locked_until)
        .bind(a.disabled_at)
        .bind(a.changed_at)
        .bind(a.id)
        .execute(self.pool())
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn account(&self, id: i64) -> StoreResult<Option<AccountRow>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.pool()).await.map_err(map_err)?;
        r.as_ref().map(decode::account_row).transpose().map_err(map_err)
    }

    async fn account_by_name(&self, name: &str) -> StoreResult<Option<AccountRow>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1");
        let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(self.pool()).await.map_err(map_err)?;
        r.as_ref().map(decode::account_row).transpose().map_err(map_err)
    }

    async fn accounts(&self) -> StoreResult<Vec<AccountRow>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.pool()).await.map_err(map_err)?;
        rows.iter().map(decode::account_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn add_session(&self, s: &SessionRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, account_id, token_id, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, yishi_ts($5), yishi_ts($6))",
        )
        .bind(&s.id_hash)
        .bind(s.account_id)
        .bind(s.token_id)
        .bind(&s.csrf)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(self.pool())
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn session(&self, id_hash: &str) -> StoreResult<Option<SessionRow>> {
        let r = sqlx::query(
            "SELECT id_hash, account_id, token_id, csrf, yishi_ms(created_at) AS created_at, \
             yishi_ms(expires_at) AS expires_at FROM sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(self.pool())
        .await
        .map_err(map_err)?;
        r.as_ref().map(decode::session_row).transpose().map_err(map_err)
    }

    async fn end_sessions(&self, which: SessionsOf<'_>) -> StoreResult<u64> {
        let q = match which {
            SessionsOf::One(h) => sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(h.to_owned()),
            SessionsOf::Account(id) => {
                sqlx::query("DELETE FROM sessions WHERE account_id = $1::bigint").bind(id.to_string())
            }
            SessionsOf::Token(id) => {
                sqlx::query("DELETE FROM sessions WHERE token_id = $1::bigint").bind(id.to_string())
            }
            SessionsOf::ExpiredBefore(t) => {
                sqlx::query("DELETE FROM sessions WHERE expires_at < yishi_ts($1::bigint)").bind(t.to_string())
            }
        };
        Ok(q.execute(self.pool()).await.map_err(map_err)?.rows_affected())
    }

    async fn claim_outbox(&self, now: i64, limit: u32, lease: Duration) -> StoreResult<Vec<OutboxRow>> {
        let rows = sqlx::query_as::<_, (i64, i64, String, i64, i64)>(
            "UPDATE outbox AS o SET leased_until = clock_timestamp() + $3 * interval '1 millisecond' \
             FROM (SELECT id FROM outbox \
                   WHERE delivered_at IS NULL AND next_at <= yishi_ts($1) AND next_at <> 'infinity' \
                     AND (leased_until IS NULL OR leased_until <= clock_timestamp()) \
                   ORDER BY next_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) AS d \
             WHERE o.id = d.id \
             RETURNING o.id, o.instance_id, o.notice::text, o.attempts, yishi_ms(o.next_at)",
        )
        .bind(now)
        .bind(i64::from(limit))
        .bind(ms(lease))
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        let mut rows = rows;
        rows.sort_by_key(|r| (r.4, r.0));
        Ok(rows
            .into_iter()
            .map(|(id, instance_id, notice, attempts, _)| OutboxRow {
                id,
                instance_id,
                notice: serde_json::from_str(&notice).unwrap_or(Value::Null),
                attempts,
            })
            .collect())
    }

    async fn outbox_result(
        &self,
        id: i64,
        delivered: bool,
        error: Option<&str>,
        retry_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        let q = if delivered {
            sqlx::query(
                "UPDATE outbox SET delivered_at = yishi_ts($1), attempts = attempts + 1, last_error = NULL, \
                 leased_until = NULL WHERE id = $2",
            )
            .bind(now)
            .bind(id)
        } else {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_at = yishi_ts($2), \
                 leased_until = NULL WHERE id = $3",
            )
            .bind(error)
            .bind(retry_at)
            .bind(id)
        };
        q.execute(self.pool()).await.map_err(map_err)?;
        Ok(())
    }

    async fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>> {
        let rows = sqlx::query_as::<_, (i64, i64, String, i64, Option<String>)>(
            "SELECT id, instance_id, notice::text, attempts, last_error FROM outbox \
             WHERE delivered_at IS NULL AND next_at = 'infinity' ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(|(id, instance, notice, attempts, last_error)| DeadLetter {
                id,
                instance,
                notice: serde_json::from_str(&notice).unwrap_or(Value::Null),
                attempts,
                last_error,
            })
            .collect())
    }

    async fn retry_dead(&self, id: Option<i64>, now: i64) -> StoreResult<u64> {
        let r = sqlx::query(
            "UPDATE outbox SET attempts = 0, next_at = yishi_ts($1), leased_until = NULL \
             WHERE delivered_at IS NULL AND next_at = 'infinity' AND ($2::bigint IS NULL OR id = $2)",
        )
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected())
    }

    async fn discard_dead(&self, id: Option<i64>) -> StoreResult<u64> {
        let r = sqlx::query(
            "DELETE FROM outbox WHERE delivered_at IS NULL AND next_at = 'infinity' AND ($1::bigint IS NULL OR id = $1)",
        )
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected())
    }

    async fn closed_before(&self, cutoff: i64, after_id: i64, limit: u32) -> StoreResult<Vec<InstanceRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances AS i \
             WHERE status <> 'active' AND updated_at < yishi_ts($1) AND id > $2 \
             AND NOT EXISTS (SELECT 1 FROM outbox AS o WHERE o.instance_id = i.id AND o.delivered_at IS NULL) \
             ORDER BY id LIMIT $3"
        )))
        .bind(cutoff)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        rows.iter().map(decode::instance_of).collect()
    }

    async fn count_closed_before(&self, cutoff: i64) -> StoreResult<BTreeMap<String, u64>> {
        let rows = sqlx::query_as::<_, (String, i64)>(
            "SELECT workflow, count(*) FROM instances AS i WHERE status <> 'active' AND updated_at < yishi_ts($1) \
             AND NOT EXISTS (SELECT 1 FROM outbox AS o WHERE o.instance_id = i.id AND o.delivered_at IS NULL) \
             GROUP BY workflow",
        )
        .bind(cutoff)
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        Ok(rows.into_iter().map(|(w, n)| (w, n as u64)).collect())
    }

    async fn purge(&self, p: &Purge) -> StoreResult<i64> {
        let mut tx = self.pool().begin().await.map_err(map_err)?;
        let max_id = p.ids.iter().copied().max().unwrap_or(0);
        // Locks first, in id order, so that a commit touching the same cases waits or conflicts.
        sqlx::query("SELECT 1 FROM instances WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&p.ids)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        for sql in [
            "DELETE FROM events WHERE instance_id = ANY($1)",
            "DELETE FROM timers WHERE instance_id = ANY($1)",
            "DELETE FROM idempotency WHERE instance_id = ANY($1)",
        ] {
            sqlx::query(sql).bind(&p.ids).execute(&mut *tx).await.map_err(map_err)?;
        }
        let removed = sqlx::query("DELETE FROM instances WHERE status <> 'active' AND id = ANY($1)")
            .bind(&p.ids)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        if removed != p.ids.len() as u64 {
            // Dropping `tx` rolls the batch back.
            return Err(StoreError::Conflict(format!(
                "{} of {} cases to purge are active or already gone",
                p.ids.len() as u64 - removed,
                p.ids.len()
            )));
        }
        for f in &p.figures {
            sqlx::query(
                "INSERT INTO monthly_figures (unit, workflow, month, started, completed, cancelled, failed, \
                 raised, responded, rated, resolved, satisfied, overdue, answers, score_sum) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT (unit, workflow, month) DO UPDATE SET \
                 started = monthly_figures.started + excluded.started, \
                 completed = monthly_figures.completed + excluded.completed, \
                 cancelled = monthly_figures.cancelled + excluded.cancelled, \
                 failed = monthly_figures.failed + excluded.failed, \
                 raised = monthly_figures.raised + excluded.raised, \
                 responded = monthly_figures.responded + excluded.responded, \
                 rated = monthly_figures.rated + excluded.rated, \
                 resolved = monthly_figures.resolved + excluded.resolved, \
                 satisfied = monthly_figures.satisfied + excluded.satisfied, \
                 overdue = monthly_figures.overdue + excluded.overdue, \
                 answers = monthly_figures.answers + excluded.answers, \
                 score_sum = monthly_figures.score_sum + excluded.score_sum",
            )
            .bind(&f.unit)
            .bind(&f.workflow)
            .bind(&f.month)
            .bind(f.started)
            .bind(f.completed)
            .bind(f.cancelled)
            .bind(f.failed)
            .bind(f.counts.raised)
            .bind(f.counts.responded)
            .bind(f.counts.rated)
            .bind(f.counts.resolved)
            .bind(f.counts.satisfied)
            .bind(f.counts.overdue)
            .bind(f.counts.answers)
            .bind(f.counts.score_sum)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        let record = match p.record {
            Some(id) => {
                sqlx::query("UPDATE purges SET cases = cases + $1, max_id = GREATEST(max_id, $2) WHERE id = $3")
                    .bind(removed as i64)
                    .bind(max_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                id
            }
            None => sqlx::query_scalar(
                "INSERT INTO purges (at, closed_before, cases, archive, actor, max_id) \
                 VALUES (yishi_ts($1), yishi_ts($2), $3, $4, $5, $6) RETURNING id",
            )
            .bind(p.at)
            .bind(p.closed_before)
            .bind(removed as i64)
            .bind(&p.archive)
            .bind(&p.actor)
            .bind(max_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?,
        };
        tx.commit().await.map_err(map_err)?;
        Ok(record)
    }

    async fn kept_figures(&self) -> StoreResult<Vec<MonthFigures>> {
        sqlx::query_as::<_, MonthFigures>(
            "SELECT unit, workflow, month, started, completed, cancelled, failed, raised, responded, rated, resolved, \
             satisfied, overdue, answers, score_sum FROM monthly_figures \
             ORDER BY unit, workflow, month COLLATE \"C\"",
        )
        .fetch_all(self.pool())
        .await
        .map_err(map_err)
    }

    async fn raised_counts(&self, units: &[String], from: i64, to: i64) -> StoreResult<Vec<RaisedCounts>> {
        let mut q = raised_counts_query("", units, from, to);
        q.build_query_as::<RaisedCounts>().fetch_all(self.pool()).await.map_err(map_err)
    }

    async fn party_counts(&self, units: &[String], from: i64, to: i64) -> StoreResult<Vec<PartyCounts>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT p.key AS party, COUNT(*) AS called, \
             COUNT(*) FILTER (WHERE (p.value ->> 'responded')::boolean) AS responded, \
             COUNT(*) FILTER (WHERE (p.value ->> 'in_time')::boolean) AS in_time, \
             COUNT(*) FILTER (WHERE (p.value ->> 'answers')::bigint > 0) AS rated, \
             COUNT(*) FILTER (WHERE (p.value ->> 'satisfied_answers')::bigint * 2 > (p.value ->> 'answers')::bigint) AS satisfied, \
             COALESCE(SUM((p.value ->> 'answers')::bigint), 0)::bigint AS answers, \
             COALESCE(SUM((p.value ->> 'score_sum')::double precision), 0) AS score_sum \
             FROM instances AS i, json_each(i.state -> 'figures' -> 'parties') AS p WHERE true",
        );
        if !units.is_empty() {
            push_units(&mut q, "i.unit", units);
        }
        q.push(" AND i.created_at >= yishi_ts(").push_bind(from).push(") AND i.created_at < yishi_ts(").push_bind(to);
        q.push(") AND i.outcome IS DISTINCT FROM 'merged' GROUP BY p.key ORDER BY p.key");
        q.build_query_as::<PartyCounts>().fetch_all(self.pool()).await.map_err(map_err)
    }

    async fn case_dates(&self) -> StoreResult<Vec<CaseDates>> {
        sqlx::query_as::<_, CaseDates>(
            "SELECT unit, workflow, status, yishi_ms(created_at) AS created_at, yishi_ms(updated_at) AS updated_at, \
             state -> 'figures' AS figures, outcome IS NOT DISTINCT FROM 'merged' AS merged FROM instances",
        )
        .fetch_all(self.pool())
        .await
        .map_err(map_err)
    }

    async fn purges(&self) -> StoreResult<Vec<PurgeRecord>> {
        sqlx::query_as::<_, PurgeRecord>(
            "SELECT id, yishi_ms(at) AS at, yishi_ms(closed_before) AS closed_before, cases, archive, actor \
             FROM purges ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(map_err)
    }

    async fn gauges(&self, now: i64) -> StoreResult<Gauges> {
        let active = sqlx::query_as::<_, (String, String, i64)>(
            "SELECT i.workflow, s.step, count(DISTINCT i.id) \
             FROM instances AS i, jsonb_array_elements_text(i.active_steps) AS s(step) \
             WHERE i.status = 'active' GROUP BY 1, 2 ORDER BY i.workflow, s.step COLLATE \"C\"",
        )
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        let (timers_pending, timers_overdue) = sqlx::query_as::<_, (i64, i64)>(
            "SELECT count(*), count(*) FILTER (WHERE due_at <= yishi_ts($1)) FROM timers",
        )
        .bind(now)
        .fetch_one(self.pool())
        .await
        .map_err(map_err)?;
        let (outbox_pending, outbox_dead) = sqlx::query_as::<_, (i64, i64)>(
            "SELECT count(*) FILTER (WHERE next_at <> 'infinity'), count(*) FILTER (WHERE next_at = 'infinity') \
             FROM outbox WHERE delivered_at IS NULL",
        )
        .fetch_one(self.pool())
        .await
        .map_err(map_err)?;
        Ok(Gauges { active, timers_pending, timers_overdue, outbox_pending, outbox_dead })
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(self.pool()).await.map_err(map_err)?;
        Ok(())
    }

    async fn durability(&self) -> StoreResult<Durability> {
        let level: String = sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
            .fetch_one(self.pool())
            .await
            .map_err(map_err)?;
        // on, remote_apply, remote_write and local all wait for the local disk; off does not.
        Ok(if level == "off" { Durability::Normal } else { Durability::Full })
    }

    async fn backup(&self, _to: &std::path::Path) -> StoreResult<BackupReport> {
        Err(StoreError::Fatal(format!(
            "{} is backed up with PostgreSQL's own tools (pg_dump, or its base backups and WAL archive), \
             not by yishi (see docs/operations.md)",
            self.inner.described
        )))
    }

    async fn integrity_check(&self) -> StoreResult<String> {
        // What the engine relies on that no constraint states: every case's history ends at
        // its last_seq, with no gap.
        let (broken, example): (i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*), min(id) FROM instances AS i \
             WHERE i.last_seq <> COALESCE((SELECT max(seq) FROM events AS e WHERE e.instance_id = i.id), 0) \
                OR i.last_seq <> (SELECT count(*) FROM events AS e WHERE e.instance_id = i.id)",
        )
        .fetch_one(self.pool())
        .await
        .map_err(map_err)?;
        Ok(match example {
            Some(id) if broken > 0 => format!("{broken} cases whose history does not match last_seq (first: {id})"),
            _ => "ok".into(),
        })
    }

    async fn set_active(
        &self,
        versions: &BTreeMap<String, i64>,
        changed_by: &str,
        status: &str,
        now: i64,
    ) -> StoreResult<i64> {
        let mut tx = self.pool().begin().await.map_err(map_err)?;
        // The state row first: it serialises nodes setting the active set at once.
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO catalog_state (id, epoch, changed_at, changed_by, status) \
             VALUES (1, 1, yishi_ts($1), $2, $3::json) \
             ON CONFLICT (id) DO UPDATE SET epoch = catalog_state.epoch + 1, changed_at = excluded.changed_at, \
             changed_by = excluded.changed_by, status = excluded.status RETURNING epoch",
        )
        .bind(now)
        .bind(changed_by)
        .bind(status)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query("DELETE FROM active_versions").execute(&mut *tx).await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO active_versions (workflow, version) \
             SELECT key, value::text::bigint FROM json_each($1::json)",
        )
        .bind(serde_json::to_string(versions).unwrap_or_default())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(epoch)
    }

    async fn active_epoch(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COALESCE((SELECT epoch FROM catalog_state), 0)")
            .fetch_one(self.pool())
            .await
            .map_err(map_err)
    }

    async fn active_set(&self) -> StoreResult<ActiveSet> {
        // One snapshot: the set and its epoch agree.
        let mut tx = self.pool().begin().await.map_err(map_err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let state = sqlx::query_as::<_, (i64, i64, String, String)>(
            "SELECT epoch, yishi_ms(changed_at), changed_by, status::text FROM catalog_state",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some((epoch, changed_at, changed_by, status)) = state else { return Ok(ActiveSet::default()) };
        let versions = sqlx::query_as::<_, (String, i64)>("SELECT workflow, version FROM active_versions")
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(ActiveSet { epoch, versions: versions.into_iter().collect(), changed_at, changed_by, status })
    }

    async fn try_lead(&self) -> StoreResult<bool> {
        let mut held = self.inner.lead.lock().await;
        if let Some(conn) = held.as_mut() {
            // Still leading while the connection holding the lock lives.
            if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
                return Ok(true);
            }
            *held = None;
        }
        let mut conn = self.pool().acquire().await.map_err(map_err)?.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended('yishi.lead', 0))")
            .fetch_one(&mut conn)
            .await
            .map_err(map_err)?;
        if got {
            *held = Some(conn);
        }
        Ok(got)
    }

    async fn heartbeat(&self, n: &NodeRow, _now: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO nodes (id, build, address, started_at, heartbeat_at, leader, doing) \
             VALUES ($1, $2, $3, yishi_ts($4), clock_timestamp(), $5, $6) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, leader = excluded.leader, \
             doing = excluded.doing, address = excluded.address",
        )
        .bind(&n.id)
        .bind(&n.build)
        .bind(&n.address)
        .bind(n.started_at)
        .bind(n.leader)
        .bind(&n.doing)
        .execute(self.pool())
        .await
        .map_err(map_err)?;
        sqlx::query("DELETE FROM nodes WHERE heartbeat_at < clock_timestamp() - interval '1 day'")
            .execute(self.pool())
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn nodes(&self, _now: i64) -> StoreResult<Vec<NodeRow>> {
        let rows = sqlx::query_as::<_, (String, String, String, i64, i64, i64, bool, String)>(
            "SELECT id, build, address, yishi_ms(started_at), yishi_ms(heartbeat_at), \
             GREATEST(0, yishi_ms(clock_timestamp()) - yishi_ms(heartbeat_at)), leader, doing \
             FROM nodes ORDER BY heartbeat_at DESC, id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(|(id, build, address, started_at, heartbeat_at, silent_ms, leader, doing)| NodeRow {
                id,
                build,
                address,
                started_at,
                heartbeat_at,
                alive: false,
                silent_ms,
                leader,
                doing,
            })
            .collect())
    }

    async fn close(&self) {
        let _ = self.barrier().await;
        // Ends the session that holds the lead, if this node led.
        self.inner.lead.lock().await.take();
        self.inner.pool.close().await;
    }
}

/// `AND` the condition that `col` is one of `units`: a unit exactly, or when it ends in `/`,
/// that unit and every unit below it ('p/' <= unit < 'p0', as `unit` sorts by bytes (COLLATE "C")).
/// Each term can be read from an index on `col`.
fn push_units(q: &mut QueryBuilder<Postgres>, col: &str, units: &[String]) {
    q.push(" AND (");
    if units.is_empty() {
        q.push("false");
    }
    for (i, u) in units.iter().enumerate() {
        if i > 0 {
            q.push(" OR ");
        }
        match u.strip_suffix('/') {
            Some(prefix) => {
                q.push(format!("{col} = ")).push_bind(prefix.to_owned());
                q.push(format!(" OR ({col} >= ")).push_bind(format!("{prefix}/"));
                q.push(format!(" AND {col} < ")).push_bind(format!("{prefix}0")).push(")");
            }
            None => {
                q.push(format!("{col} = ")).push_bind(u.to_owned());
            }
        }
    }
    q.push(")");
}

/// The statistics query of [`Store::raised_counts`], after `prefix` (`EXPLAIN `).
fn raised_counts_query(prefix: &str, units: &[String], from: i64, to: i64) -> QueryBuilder<Postgres> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "{prefix}SELECT unit, workflow, COUNT(*) AS raised, \
         COUNT(*) FILTER (WHERE (state -> 'figures' ->> 'responded')::boolean) AS responded, \
         COUNT(*) FILTER (WHERE (state -> 'figures' ->> 'answers')::bigint > 0) AS rated, \
         COUNT(*) FILTER (WHERE (state -> 'figures' ->> 'resolved')::boolean) AS resolved, \
         COUNT(*) FILTER (WHERE (state -> 'figures' ->> 'satisfied')::boolean) AS satisfied, \
         COUNT(*) FILTER (WHERE (state -> 'figures' ->> 'overdue')::boolean) AS overdue, \
         COALESCE(SUM((state -> 'figures' ->> 'answers')::bigint), 0)::bigint AS answers, \
         COALESCE(SUM((state -> 'figures' ->> 'score_sum')::double precision), 0) AS score_sum \
         FROM instances WHERE true"
    ));
    if !units.is_empty() {
        push_units(&mut q, "unit", units);
    }
    q.push(" AND created_at >= yishi_ts(").push_bind(from).push(") AND created_at < yishi_ts(").push_bind(to);
    q.push(") AND outcome IS DISTINCT FROM 'merged' GROUP BY unit, workflow ORDER BY unit, workflow");
    q
}

impl PgStore {
    /// How PostgreSQL runs the statistics query (`EXPLAIN`), with sequential scans ruled out
    /// so that a small test table shows whether the index can serve it: for the test that it
    /// reads its index.
    pub async fn plan_of_raised_counts(&self, units: &[String], from: i64, to: i64) -> StoreResult<String> {
        let mut tx = self.pool().begin().await.map_err(map_err)?;
        sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await.map_err(map_err)?;
        let mut q = raised_counts_query("EXPLAIN ", units, from, to);
        let rows: Vec<String> = q.build_query_scalar().fetch_all(&mut *tx).await.map_err(map_err)?;
        Ok(rows.join("\n"))
    }
}
