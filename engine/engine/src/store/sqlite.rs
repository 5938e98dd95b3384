//! The SQLite store: WAL, foreign keys, embedded migrations; each batch of changes committed as
//! one statement on a writer connection of its own, and WAL checkpoints kept off that path.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};

use super::*;
use yishi_core::runtime::{InstanceState, Scope, Status, TimerChange, Token};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The embedded SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Reads, and the rare writes outside commits (versions, tokens, outbox bookkeeping).
    pool: SqlitePool,
    /// Commits go through one connection of their own, so that its page cache stays valid
    /// from one commit to the next (a connection whose cache another connection's write made
    /// stale re-reads every page it touches). `None` for an in-memory database, which exists
    /// only inside the pool's one connection.
    writer: Option<Arc<Writer>>,
}

#[derive(Debug)]
struct Writer {
    options: SqliteConnectOptions,
    /// `None` after a connection failed; the next commit reconnects.
    conn: tokio::sync::Mutex<Option<SqliteConnection>>,
    /// Commits so far; the checkpointer runs when it has moved.
    commits: AtomicU64,
}

/// WAL pages after which the writer checkpoints by itself, should the checkpointer fall behind.
const WRITER_CHECKPOINT_BACKSTOP: u32 = 10_000;
/// How often the checkpointer looks for new commits.
const CHECKPOINT_EVERY: StdDuration = StdDuration::from_millis(250);

impl Writer {
    async fn connect(&self) -> Result<SqliteConnection, sqlx::Error> {
        let mut conn = SqliteConnection::connect_with(&self.options).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_BACKSTOP}")))
            .execute(&mut conn)
            .await?;
        Ok(conn)
    }
}

/// Copies committed pages from the WAL into the database file, on a connection of its own, so
/// that commits do not wait for it: left to itself, the committing connection checkpoints every
/// 1,000 pages (4 MB), writing and syncing them while every caller in its batch waits. Ends when
/// the store is dropped.
async fn checkpointer(writer: std::sync::Weak<Writer>) {
    let mut conn: Option<SqliteConnection> = None;
    let mut seen = 0;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let Some(w) = writer.upgrade() else { return };
        let commits = w.commits.load(Ordering::Relaxed);
        if commits == seen {
            continue;
        }
        if conn.is_none() {
            conn = SqliteConnection::connect_with(&w.options).await.ok();
        }
        drop(w);
        let Some(c) = conn.as_mut() else { continue };
        match sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut *c).await {
            Ok(_) => seen = commits,
            Err(e) => {
                tracing::debug!(error = %e, "checkpoint failed; retrying later");
                conn = None;
            }
        }
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound("row not found".into()),
        sqlx::Error::Database(db) => {
            let code = db.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0) & 0xff;
            match code {
                // BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN
                5 | 6 | 8 | 10 | 13 | 14 => StoreError::Unavailable(db.message().to_owned()),
                19 => StoreError::Conflict(db.message().to_owned()),
                _ => StoreError::Fatal(db.message().to_owned()),
            }
        }
        sqlx::Error::Io(io) => StoreError::Unavailable(io.to_string()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Fatal(e.to_string()),
    }
}

/// The state as stored, without `data` (kept in its own column for filters).
#[derive(Serialize)]
struct StoredState<'a> {
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: &'a Option<String>,
    tokens: &'a [Token],
    #[serde(skip_serializing_if = "<[Scope]>::is_empty")]
    scopes: &'a [Scope],
    visits: &'a BTreeMap<String, u32>,
    next_token: u32,
    next_scope: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: &'a Option<String>,
}

#[derive(Deserialize)]
struct LoadedState {
    status: Status,
    #[serde(default)]
    outcome: Option<String>,
    tokens: Vec<Token>,
    #[serde(default)]
    scopes: Vec<Scope>,
    #[serde(default)]
    visits: BTreeMap<String, u32>,
    next_token: u32,
    next_scope: u32,
    #[serde(default)]
    error: Option<String>,
}

fn stored_state(s: &InstanceState) -> StoredState<'_> {
    StoredState {
        status: s.status,
        outcome: &s.outcome,
        tokens: &s.tokens,
        scopes: &s.scopes,
        visits: &s.visits,
        next_token: s.next_token,
        next_scope: s.next_scope,
        error: &s.error,
    }
}

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sync {
    /// Every commit is synced to disk before it is acknowledged: nothing acknowledged is lost,
    /// even on power loss.
    #[default]
    Full,
    /// Commits are synced at WAL checkpoints: nothing is lost when the process crashes or is
    /// killed, but the last commits may be lost if the machine loses power.
    Normal,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, Sync::Full).await
    }

    /// [`SqliteStore::open`] with a chosen durability.
    pub async fn open_with(path: &Path, sync: Sync) -> Result<Self, StoreError> {
        Self::open_options(path, sync, |o| o).await
    }

    /// Opens with extra connection options (tests use them to make the disk "full"
    /// (`max_page_count`) or the file read-only, exactly as SQLite reports those).
    pub async fn open_options(
        path: &Path,
        sync: Sync,
        extra: impl FnOnce(SqliteConnectOptions) -> SqliteConnectOptions,
    ) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match sync {
                Sync::Full => SqliteSynchronous::Full,
                Sync::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(StdDuration::from_secs(5))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32000");
        let opts = extra(opts);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await
            .map_err(map_err)?;
        let mut store = Self::migrate(pool).await?;
        let writer =
            Arc::new(Writer { options: opts, conn: tokio::sync::Mutex::new(None), commits: AtomicU64::new(0) });
        tokio::spawn(checkpointer(Arc::downgrade(&writer)));
        store.writer = Some(writer);
        Ok(store)
    }

    /// A private in-memory database (tests, benchmarks of the engine alone).
    pub async fn memory() -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:").map_err(map_err)?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await
            .map_err(map_err)?;
        Self::migrate(pool).await
    }

    async fn migrate(pool: SqlitePool) -> Result<Self, StoreError> {
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Fatal(format!("migrating the database: {e}")))?;
        Ok(SqliteStore { pool, writer: None })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn close(&self) {
        if let Some(w) = &self.writer
            && let Some(conn) = w.conn.lock().await.take()
        {
            let _ = conn.close().await;
        }
        self.pool.close().await;
    }

    fn summary(r: &SqliteRow) -> Result<InstanceSummary, sqlx::Error> {
        let active: String = r.try_get("active_steps")?;
        Ok(InstanceSummary {
            id: r.try_get("id")?,
            unit: r.try_get("unit")?,
            workflow: r.try_get("workflow")?,
            version: r.try_get("version")?,
            status: r.try_get("status")?,
            outcome: r.try_get("outcome")?,
            active_steps: serde_json::from_str(&active).unwrap_or_default(),
            revision: r.try_get("revision")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }

    fn version_row(r: &SqliteRow) -> Result<VersionRow, sqlx::Error> {
        Ok(VersionRow {
            id: r.try_get("id")?,
            workflow: r.try_get("workflow")?,
            seq: r.try_get("seq")?,
            hash: r.try_get("hash")?,
            created_at: r.try_get("created_at")?,
        })
    }
}

impl Store for SqliteStore {
    async fn put_version(
        &self,
        workflow: &str,
        hash: &str,
        sources: &BTreeMap<String, String>,
        effective: &Value,
        now: i64,
    ) -> Result<VersionRow, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        if let Some(r) =
            sqlx::query("SELECT id, workflow, seq, hash, created_at FROM definitions WHERE workflow = ? AND hash = ?")
                .bind(workflow)
                .bind(hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?
        {
            return Self::version_row(&r).map_err(map_err);
        }
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM definitions WHERE workflow = ?")
            .bind(workflow)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let id: i64 = sqlx::query_scalar("INSERT INTO definitions (workflow, seq, hash, sources, effective, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id")
            .bind(workflow)
            .bind(seq)
            .bind(hash)
            .bind(serde_json::to_string(sources).unwrap_or_default())
            .bind(effective.to_string())
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(VersionRow { id, workflow: workflow.to_owned(), seq, hash: hash.to_owned(), created_at: now })
    }

    async fn versions(&self, workflow: Option<&str>) -> Result<Vec<VersionRow>, StoreError> {
        let rows = match workflow {
            Some(w) => {
                sqlx::query(
                    "SELECT id, workflow, seq, hash, created_at FROM definitions WHERE workflow = ? ORDER BY seq",
                )
                .bind(w)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query("SELECT id, workflow, seq, hash, created_at FROM definitions ORDER BY workflow, seq")
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(map_err)?;
        rows.iter().map(Self::version_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn version(&self, id: i64) -> Result<(VersionRow, BTreeMap<String, String>, Value), StoreError> {
        let r =
            sqlx::query("SELECT id, workflow, seq, hash, created_at, sources, effective FROM definitions WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?
                .ok_or_else(|| StoreError::NotFound(format!("version {id}")))?;
        let sources: String = r.try_get("sources").map_err(map_err)?;
        let effective: String = r.try_get("effective").map_err(map_err)?;
        Ok((
            Self::version_row(&r).map_err(map_err)?,
            serde_json::from_str(&sources).map_err(|e| StoreError::Fatal(e.to_string()))?,
            serde_json::from_str(&effective).unwrap_or(Value::Null),
        ))
    }

    async fn active_counts(&self) -> Result<BTreeMap<i64, i64>, StoreError> {
        let rows = sqlx::query("SELECT version, COUNT(*) AS n FROM instances WHERE status = 'active' GROUP BY version")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| Ok((r.try_get("version")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    async fn max_instance_id(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM instances").fetch_one(&self.pool).await.map_err(map_err)
    }

    async fn load(&self, id: i64) -> Result<InstanceRow, StoreError> {
        let r = sqlx::query("SELECT id, unit, workflow, version, revision, last_seq, data, state, created_at, updated_at FROM instances WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or_else(|| StoreError::NotFound(format!("instance {id}")))?;
        let data: String = r.try_get("data").map_err(map_err)?;
        let state: String = r.try_get("state").map_err(map_err)?;
        let data: Map<String, Value> =
            serde_json::from_str(&data).map_err(|e| StoreError::Fatal(format!("instance {id}: data: {e}")))?;
        let s: LoadedState =
            serde_json::from_str(&state).map_err(|e| StoreError::Fatal(format!("instance {id}: state: {e}")))?;
        Ok(InstanceRow {
            id,
            unit: r.try_get("unit").map_err(map_err)?,
            workflow: r.try_get("workflow").map_err(map_err)?,
            version: r.try_get("version").map_err(map_err)?,
            revision: r.try_get("revision").map_err(map_err)?,
            last_seq: r.try_get("last_seq").map_err(map_err)?,
            state: InstanceState {
                status: s.status,
                outcome: s.outcome,
                tokens: s.tokens,
                scopes: s.scopes,
                data,
                visits: s.visits,
                next_token: s.next_token,
                next_scope: s.next_scope,
                error: s.error,
            },
            created_at: r.try_get("created_at").map_err(map_err)?,
            updated_at: r.try_get("updated_at").map_err(map_err)?,
        })
    }

    async fn history(&self, id: i64) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query("SELECT seq, at, version, body FROM events WHERE instance_id = ? ORDER BY seq")
            .bind(id)
            .fetch_all(&self.pool)
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

    async fn list(&self, f: &ListFilter) -> Result<Vec<InstanceSummary>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, unit, workflow, version, status, outcome, active_steps, revision, created_at, updated_at FROM instances WHERE 1 = 1",
        );
        if let Some(units) = &f.units {
            q.push(" AND (0");
            for u in units {
                if let Some(prefix) = u.strip_suffix('/') {
                    q.push(" OR unit = ").push_bind(prefix.to_owned());
                    q.push(" OR (unit >= ")
                        .push_bind(format!("{prefix}/"))
                        .push(" AND unit < ")
                        .push_bind(format!("{prefix}0"))
                        .push(")");
                } else {
                    q.push(" OR unit = ").push_bind(u.clone());
                }
            }
            q.push(")");
        }
        if let Some(w) = &f.workflow {
            q.push(" AND workflow = ").push_bind(w.clone());
        }
        if let Some(v) = f.version {
            q.push(" AND version = ").push_bind(v);
        }
        if let Some(s) = &f.status {
            q.push(" AND status = ").push_bind(s.clone());
        }
        if let Some(s) = &f.step {
            q.push(" AND EXISTS (SELECT 1 FROM json_each(instances.active_steps) WHERE value = ")
                .push_bind(s.clone())
                .push(")");
        }
        for (col, op, v) in [
            ("created_at", ">=", f.created_from),
            ("created_at", "<", f.created_to),
            ("updated_at", ">=", f.updated_from),
            ("updated_at", "<", f.updated_to),
        ] {
            if let Some(v) = v {
                q.push(format!(" AND {col} {op} ")).push_bind(v);
            }
        }
        if let Some((field, value)) = &f.data {
            q.push(" AND json_extract(data, ").push_bind(format!("$.\"{}\"", field.replace('"', ""))).push(")");
            match value {
                Value::String(s) => q.push(" = ").push_bind(s.clone()),
                Value::Bool(b) => q.push(" = ").push_bind(*b),
                Value::Number(n) if n.is_i64() => q.push(" = ").push_bind(n.as_i64().unwrap_or_default()),
                Value::Number(n) => q.push(" = ").push_bind(n.as_f64().unwrap_or_default()),
                Value::Null => q.push(" IS NULL"),
                other => q.push(" = json(").push_bind(other.to_string()).push(")"),
            };
        }
        if let Some(b) = f.before {
            q.push(" AND id < ").push_bind(b);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(f.limit.max(1)));
        let rows = q.build().fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(Self::summary).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn commit(&self, batch: &[Commit]) -> Result<(), StoreError> {
        let mut query = sqlx::query("INSERT INTO commit_batch VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        for rows in commit_rows(batch) {
            query = query.bind(rows);
        }
        let result = match &self.writer {
            None => query.execute(&self.pool).await,
            Some(w) => {
                let mut conn = w.conn.lock().await;
                if conn.is_none() {
                    *conn = Some(w.connect().await.map_err(map_err)?);
                }
                let result = query.execute(conn.as_mut().expect("connected above")).await;
                match &result {
                    Ok(_) => {
                        w.commits.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_)) => *conn = None,
                    Err(_) => {}
                }
                result
            }
        };
        result.map(drop).map_err(|e| match map_err(e) {
            StoreError::Conflict(m) if m.contains("instances.revision") => {
                StoreError::Conflict("an instance changed since it was read".into())
            }
            other => other,
        })
    }

    async fn counter(&self, name: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM counters WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .unwrap_or(0))
    }

    async fn idempotent_response(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT response FROM idempotency WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn due_timers(&self, now: i64, limit: u32) -> Result<Vec<TimerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance_id, token, name, step, due_at FROM timers WHERE due_at <= ? ORDER BY due_at LIMIT ?",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(timer_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT MIN(due_at) FROM timers").fetch_one(&self.pool).await.map_err(map_err)
    }

    async fn drop_timer(&self, t: &TimerRow) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM timers WHERE instance_id = ? AND token = ? AND name = ?")
            .bind(t.instance_id)
            .bind(i64::from(t.token))
            .bind(&t.name)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn timers_of(&self, instance_id: i64) -> Result<Vec<TimerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance_id, token, name, step, due_at FROM timers WHERE instance_id = ? ORDER BY due_at",
        )
        .bind(instance_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(timer_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn add_token(&self, t: &NewToken<'_>, now: i64) -> Result<i64, StoreError> {
        sqlx::query_scalar("INSERT INTO api_tokens (name, key_id, secret_hash, role, scope, acts_as, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id")
            .bind(t.name)
            .bind(t.key_id)
            .bind(t.secret_hash)
            .bind(t.role)
            .bind(t.scope)
            .bind(serde_json::to_string(t.acts_as).unwrap_or_else(|_| "[]".into()))
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn token_by_key(&self, key_id: &str) -> Result<Option<TokenRow>, StoreError> {
        let r =
            sqlx::query("SELECT id, name, role, scope, acts_as, secret_hash, created_at, revoked_at FROM api_tokens WHERE key_id = ?")
                .bind(key_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
        r.as_ref().map(token_row).transpose().map_err(map_err)
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, role, scope, acts_as, secret_hash, created_at, revoked_at FROM api_tokens ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(token_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn revoke_token(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(map_err)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn pending_outbox(&self, now: i64, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query("SELECT id, instance_id, notice, attempts FROM outbox WHERE delivered_at IS NULL AND next_at <= ? ORDER BY next_at LIMIT ?").bind(now).bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter()
            .map(|r| {
                let n: String = r.try_get("notice")?;
                Ok(OutboxRow {
                    id: r.try_get("id")?,
                    instance_id: r.try_get("instance_id")?,
                    notice: serde_json::from_str(&n).unwrap_or(Value::Null),
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    async fn outbox_result(
        &self,
        id: i64,
        delivered: bool,
        error: Option<&str>,
        retry_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        if delivered {
            sqlx::query("UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        } else {
            sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE id = ?")
                .bind(error)
                .bind(retry_at)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }

    async fn integrity_check(&self) -> Result<String, StoreError> {
        sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&self.pool).await.map_err(map_err)
    }
}

/// The arguments of `INSERT INTO commit_batch` (migrations/0002_commit_batch.sql): each part
/// of the batch as one JSON array of rows, or `None` when the batch has none of that part.
/// Documents (data, state, event bodies) are written inline, not as strings, so that neither
/// side escapes and unescapes them; the trigger stores their JSON text.
/// The statement's text never changes, so SQLite prepares it once per connection, whatever
/// the size of the batch.
fn commit_rows(batch: &[Commit]) -> [Option<String>; 11] {
    let n = batch.len();
    let n_events: usize = batch.iter().map(|c| c.events.len()).sum();
    let created = json_rows(
        n,
        batch.iter().filter(|c| c.create.is_some()).filter_map(|c| {
            let s = c.state.as_ref()?;
            let (unit, workflow) = c.create.as_ref()?;
            Some((
                c.instance_id,
                unit,
                workflow,
                c.version,
                s.status.as_str(),
                &s.outcome,
                s.active_steps(),
                &s.data,
                stored_state(s),
                c.last_seq(),
                c.now,
            ))
        }),
    );
    let changed = json_rows(
        n,
        batch.iter().filter(|c| c.create.is_none()).filter_map(|c| {
            let s = c.state.as_ref()?;
            Some((
                c.instance_id,
                c.base_revision,
                s.status.as_str(),
                &s.outcome,
                s.active_steps(),
                &s.data,
                stored_state(s),
                c.last_seq(),
                c.now,
                c.version,
            ))
        }),
    );
    // Events-only commits (refused actions) still move last_seq.
    let refused = json_rows(
        0,
        batch.iter().filter(|c| c.state.is_none() && !c.events.is_empty()).map(|c| (c.instance_id, c.last_seq())),
    );
    let events = json_rows(
        n_events,
        batch.iter().flat_map(|c| {
            c.events
                .iter()
                .enumerate()
                .map(move |(i, (e, at))| (c.instance_id, c.first_seq + i as i64, at, c.version, e.kind(), e))
        }),
    );
    // Timers: the net effect of each commit, deletes first. A new instance has none stored.
    let mut clear_all: Vec<i64> = Vec::new();
    let mut clear_token: Vec<(i64, u32)> = Vec::new();
    let mut clear_one: Vec<(i64, u32, &str)> = Vec::new();
    let mut sets: Vec<(i64, u32, &str, &str, i64)> = Vec::new();
    for c in batch {
        let stored = c.create.is_none();
        let mut local: Vec<(u32, &str, &str, i64)> = Vec::new();
        for t in &c.timers {
            match t {
                TimerChange::Set { token, step, name, due_at } => {
                    local.retain(|(t, n, _, _)| (t, n) != (token, &name.as_str()));
                    local.push((*token, name.as_str(), step.as_str(), *due_at));
                }
                TimerChange::Clear { token, name } => {
                    local.retain(|(t, n, _, _)| (t, n) != (token, &name.as_str()));
                    if stored {
                        clear_one.push((c.instance_id, *token, name.as_str()));
                    }
                }
                TimerChange::ClearToken { token } => {
                    local.retain(|(t, _, _, _)| t != token);
                    if stored {
                        clear_token.push((c.instance_id, *token));
                    }
                }
                TimerChange::ClearAll => {
                    local.clear();
                    if stored {
                        clear_all.push(c.instance_id);
                    }
                }
            }
        }
        sets.extend(local.into_iter().map(|(token, name, step, due)| (c.instance_id, token, name, step, due)));
    }
    let idempotency =
        json_rows(0, batch.iter().filter_map(|c| c.idempotency.as_ref().map(|(k, r)| (k, c.instance_id, r, c.now))));
    let outbox =
        json_rows(0, batch.iter().flat_map(|c| c.outbox.iter().map(move |n| (c.instance_id, n.to_string(), c.now))));
    let counters = json_rows(0, batch.iter().flat_map(|c| c.counters.iter()));
    [
        created,
        changed,
        refused,
        events,
        json_rows(0, clear_all.iter()),
        json_rows(0, clear_token.iter()),
        json_rows(0, clear_one.iter()),
        json_rows(0, sets.iter()),
        idempotency,
        outbox,
        counters,
    ]
}

/// Rows as one JSON array of arrays, or `None` when there are none. With `expected` rows,
/// the buffer is sized from the first row (a batch's arrays run to hundreds of kilobytes).
fn json_rows<T: Serialize>(expected: usize, rows: impl Iterator<Item = T>) -> Option<String> {
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    let mut empty = true;
    for row in rows {
        if empty {
            serde_json::to_writer(&mut out, &row).expect("rows of plain values serialise");
            out.reserve((out.len() + 1) * expected.saturating_sub(1) * 5 / 4);
            empty = false;
            continue;
        }
        out.push(b',');
        serde_json::to_writer(&mut out, &row).expect("rows of plain values serialise");
    }
    out.push(b']');
    (!empty).then(|| String::from_utf8(out).expect("serde_json writes UTF-8"))
}

fn timer_row(r: &SqliteRow) -> Result<TimerRow, sqlx::Error> {
    let token: i64 = r.try_get("token")?;
    Ok(TimerRow {
        instance_id: r.try_get("instance_id")?,
        token: token as u32,
        name: r.try_get("name")?,
        step: r.try_get("step")?,
        due_at: r.try_get("due_at")?,
    })
}

fn token_row(r: &SqliteRow) -> Result<TokenRow, sqlx::Error> {
    let acts_as: String = r.try_get("acts_as")?;
    Ok(TokenRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        scope: r.try_get("scope")?,
        acts_as: serde_json::from_str(&acts_as).unwrap_or_default(),
        secret_hash: r.try_get("secret_hash")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use yishi_core::runtime::{Event, InstanceState};

    fn commit(id: i64, create: bool, base: i64, version: i64) -> Commit {
        Commit {
            instance_id: id,
            create: create.then(|| ("u".into(), "u/w".into())),
            version,
            base_revision: base,
            state: Some(InstanceState::default()),
            events: vec![(Event::Completed { outcome: None }, 1)],
            first_seq: if create { 1 } else { base + 1 },
            timers: Vec::new(),
            idempotency: None,
            outbox: Vec::new(),
            counters: Vec::new(),
            now: 1,
        }
    }

    #[tokio::test]
    async fn hostile_text_round_trips_exactly() {
        let store = SqliteStore::memory().await.unwrap();
        let v = store.put_version("u/w", "h", &Default::default(), &serde_json::json!({}), 0).await.unwrap();
        let nasty = "'); DROP TABLE events; -- \0 引号 \"quotes\" \\ \n";
        let mut c = commit(1, true, 0, v.id);
        let state = c.state.as_mut().unwrap();
        state.data.insert("x".into(), serde_json::json!(nasty));
        state.outcome = Some(nasty.to_owned());
        let ev = Event::Cancelled { reason: nasty.to_owned() };
        c.events = vec![(ev.clone(), 5)];
        c.timers = vec![TimerChange::Set { token: 1, step: nasty.into(), name: nasty.into(), due_at: 9 }];
        c.idempotency = Some((nasty.into(), nasty.into()));
        c.outbox = vec![serde_json::json!({ "n": nasty })];
        c.counters = vec![(nasty.into(), 3)];
        store.commit(&[c]).await.unwrap();
        let row = store.load(1).await.unwrap();
        assert_eq!(row.state.data["x"], serde_json::json!(nasty));
        assert_eq!(row.state.outcome.as_deref(), Some(nasty));
        let listed = store.list(&ListFilter { limit: 5, ..ListFilter::default() }).await.unwrap();
        assert_eq!(listed[0].outcome.as_deref(), Some(nasty));
        assert_eq!(store.history(1).await.unwrap()[0].event, ev);
        assert_eq!(store.timers_of(1).await.unwrap()[0].name, nasty);
        assert_eq!(store.counter(nasty).await.unwrap(), 3);
        assert_eq!(store.idempotent_response(nasty).await.unwrap().as_deref(), Some(nasty));
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
    }

    #[tokio::test]
    async fn a_stale_revision_aborts_the_whole_batch() {
        let store = SqliteStore::memory().await.unwrap();
        let v = store.put_version("u/w", "h", &Default::default(), &serde_json::json!({}), 0).await.unwrap();
        store.commit(&[commit(1, true, 0, v.id), commit(2, true, 0, v.id)]).await.unwrap();
        let err = store.commit(&[commit(1, false, 1, v.id), commit(2, false, 7, v.id)]).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(store.load(1).await.unwrap().revision, 1, "nothing of the batch was kept");
        assert_eq!(store.history(1).await.unwrap().len(), 1);
        store.commit(&[commit(1, false, 1, v.id)]).await.unwrap();
        assert_eq!(store.load(1).await.unwrap().revision, 2, "the store is usable after the rollback");
    }
}
