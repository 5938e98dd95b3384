//! The SQLite store, the embedded default: WAL, foreign keys, embedded migrations; commits on a
//! writer connection of their own with group commit ([`writer`]). One process writes a
//! database file: a serving process takes an exclusive lock on it ([`SqliteStore::hold`]).

mod copy;
mod fixture;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::decode;
use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another's lock before it reports the database busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The embedded SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Reads, and the rare writes outside commits (versions, tokens, outbox bookkeeping).
    pool: SqlitePool,
    writer: Arc<writer::Writer>,
    /// The file, or `None` in memory.
    path: Option<PathBuf>,
    /// The last instance id handed out (one process writes the file).
    last_id: AtomicI64,
    /// The exclusive lock of a serving process, held until the store is dropped.
    lock: std::sync::Mutex<Option<std::fs::File>>,
}

pub(super) fn map_err(e: sqlx::Error) -> StoreError {
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

/// How the store connects to a database file. The pool's connections (sqlx) and the writer's
/// own ([`writer`]) take the same settings from here.
#[derive(Clone, Debug)]
pub struct FileOptions {
    path: PathBuf,
    create: bool,
    sync: Durability,
    read_only: bool,
    /// Set by the caller of [`SqliteStore::open_file`], after the store's own.
    pragmas: Vec<(String, String)>,
}

impl FileOptions {
    /// Runs `PRAGMA key = value` on every connection, after the store's own settings.
    #[must_use]
    pub fn pragma(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.pragmas.push((key.into(), value.into()));
        self
    }

    /// Opens the file read-only: every commit fails as SQLite reports it.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The pragmas every connection runs once it is open (the journal mode aside: the pool's
    /// first connection sets WAL, which stays with the file).
    fn pragmas(&self) -> impl Iterator<Item = (&str, &str)> {
        let sync = match self.sync {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        [("synchronous", sync), ("foreign_keys", "ON"), ("temp_store", "memory"), ("cache_size", "-32000")]
            .into_iter()
            .chain(self.pragmas.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The settings of the pool's connections (and the checkpointer's).
    fn sqlx(&self) -> SqliteConnectOptions {
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(self.create)
            .read_only(self.read_only)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        self.pragmas().fold(options, |o, (k, v)| o.pragma(k.to_owned(), v.to_owned()))
    }
}

impl SqliteStore {
    /// Opens the database `options.url` names (a path, `sqlite:PATH` or `sqlite::memory:`),
    /// creating it only when `options.create` is set, and applies migrations.
    pub async fn open(options: &StoreOptions) -> StoreResult<Self> {
        let url = options.url.as_str();
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        if path == ":memory:" {
            return Self::memory().await;
        }
        Self::open_file(Path::new(path), options, |o| o).await
    }

    /// Opens a database file with extra connection settings (tests use them to make the disk
    /// "full" (`max_page_count`) or the file read-only, exactly as SQLite reports those).
    pub async fn open_file(
        path: &Path,
        options: &StoreOptions,
        extra: impl FnOnce(FileOptions) -> FileOptions,
    ) -> StoreResult<Self> {
        if !options.create && !path.exists() {
            return Err(StoreError::NotFound(format!("no database at {}", path.display())));
        }
        if !path.exists() {
            // Cases hold residents' words: a new database is readable by its owner only (SQLite
            // gives the WAL and shared-memory files the database file's permissions).
            let mut new = std::fs::OpenOptions::new();
            new.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut new, 0o600);
            if let Err(e) = new.open(path)
                && e.kind() != std::io::ErrorKind::AlreadyExists
            {
                return Err(StoreError::Unavailable(format!("{}: {e}", path.display())));
            }
        }
        let file = extra(FileOptions {
            path: path.to_owned(),
            create: options.create,
            sync: options.sync,
            read_only: false,
            pragmas: Vec::new(),
        });
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(file.sqlx())
            .await
            .map_err(map_err)?;
        let writer = writer::Writer::start(Some(file), pool.clone())?;
        Self::ready(pool, writer, Some(path.to_owned())).await
    }

    /// A private in-memory database (tests, scenarios, benchmarks of the engine alone).
    pub async fn memory() -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:").map_err(map_err)?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await
            .map_err(map_err)?;
        let writer = writer::Writer::start(None, pool.clone())?;
        Self::ready(pool, writer, None).await
    }

    async fn ready(pool: SqlitePool, writer: Arc<writer::Writer>, path: Option<PathBuf>) -> StoreResult<Self> {
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Fatal(format!("migrating the database: {e}")))?;
        // Purged cases took their ids with them: never hand one out again.
        let last: i64 = sqlx::query_scalar(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM instances), 0), COALESCE((SELECT MAX(max_id) FROM purges), 0))",
        )
        .fetch_one(&pool)
        .await
        .map_err(map_err)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                pool,
                writer,
                path,
                last_id: AtomicI64::new(last),
                lock: std::sync::Mutex::new(None),
            }),
        })
    }

    /// Takes the database file for this process alone (a serving process): a second server on
    /// the same file would be a second writer, which SQLite cannot share safely with this one's
    /// caches. Fails, naming the file, when another process holds it.
    pub fn hold(&self) -> StoreResult<()> {
        let Some(path) = &self.inner.path else { return Ok(()) };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {
                *self.inner.lock.lock().expect("lock mutex") = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Held(path.display().to_string())),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(StoreError::Unavailable(format!("cannot lock {}: {e}", path.display())))
            }
        }
    }

    fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }
}

const VERSION_COLUMNS: &str = "id, workflow, seq, hash, created_at, created_by";

impl Store for SqliteStore {
    fn shared(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        match &self.inner.path {
            Some(p) => format!("sqlite:{}", p.display()),
            None => "sqlite::memory:".into(),
        }
    }

    fn commit_stats(&self) -> &CommitStats {
        self.inner.writer.stats()
    }

    async fn put_version(&self, v: &NewVersion<'_>, now: i64) -> StoreResult<VersionRow> {
        let mut tx = self.pool().begin().await.map_err(map_err)?;
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM definitions WHERE workflow = ? AND hash = ?"
        )))
        .bind(v.workflow)
        .bind(v.hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(r) = existing {
            return decode::version_row(&r).map_err(map_err);
        }
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM definitions WHERE workflow = ?")
            .bind(v.workflow)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO definitions (workflow, seq, hash, sources, effective, created_at, created_by) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(v.workflow)
        .bind(seq)
        .bind(v.hash)
        .bind(serde_json::to_string(v.sources).unwrap_or_default())
        .bind(v.effective.to_string())
        .bind(now)
        .bind(v.created_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(VersionRow {
            id,
            workflow: v.workflow.to_owned(),
            seq,
            hash: v.hash.to_owned(),
            created_at: now,
            created_by: v.created_by.to_owned(),
        })
    }

    async fn versions(&self, workflow: Option<&str>) -> StoreResult<Vec<VersionRow>> {
        let rows = match workflow {
            Some(w) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {VERSION_COLUMNS} FROM definitions WHERE workflow = ? ORDER BY seq"
                )))
                .bind(w.to_owned())
                .fetch_all(self.pool())
                .await
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {VERSION_COLUMNS} FROM definitions ORDER BY workflow, seq"
                )))
                .fetch_all(self.pool())
                .await
            }
        }
        .map_err(map_err)?;
        rows.iter().map(decode::version_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn version(&self, id: i64) -> StoreResult<StoredVersion> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS}, sources, effective FROM definitions WHERE id = ?"
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
        let rows = sqlx::query("SELECT version, COUNT(*) AS n FROM instances WHERE status = 'active' GROUP BY version")
            .fetch_all(self.pool())
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| Ok((r.try_get("version")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    async fn next_instance_id(&self) -> StoreResult<i64> {
        Ok(self.inner.last_id.fetch_add(1, Ordering::SeqCst) + 1)
    }

    async fn load(&self, id: i64) -> StoreResult<InstanceRow> {
        let r = sqlx::query(
            "SELECT id, unit, workflow, version, revision, last_seq, data, state, created_at, updated_at \
             FROM instances WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(map_err)?
        .ok_or_else(|| StoreError::NotFound(format!("instance {id}")))?;
        decode::instance_of(&r)
    }

    async fn history(&self, id: i64) -> StoreResult<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT e.seq, e.at, d.seq AS version, e.body FROM events AS e JOIN definitions AS d ON d.id = e.version \
             WHERE e.instance_id = ? ORDER BY e.seq",
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
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT instances.id, unit, instances.workflow, d.seq AS version, d.hash AS version_id, status, outcome, \
             active_steps, json_extract(instances.state, '$.urgency') AS urgency, revision, instances.created_at, updated_at \
             FROM instances JOIN definitions AS d ON d.id = instances.version WHERE 1 = 1",
        );
        if let Some(units) = &f.units {
            push_units(&mut q, "unit", units);
        }
        if let Some(w) = &f.workflow {
            q.push(" AND instances.workflow = ").push_bind(w.clone());
        }
        if let Some(v) = f.version {
            q.push(" AND d.seq = ").push_bind(v);
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
            ("instances.created_at", ">=", f.created_from),
            ("instances.created_at", "<", f.created_to),
            ("updated_at", ">=", f.updated_from),
            ("updated_at", "<", f.updated_to),
        ] {
            if let Some(v) = v {
                q.push(format!(" AND {col} {op} ")).push_bind(v);
            }
        }
        if let Some(t) = &f.title_contains {
            let pattern = format!("%{}%", t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            q.push(" AND json_extract(data, '$.title') LIKE ").push_bind(pattern).push(" ESCAPE '\\'");
        }
        if f.overdue {
            q.push(" AND json_extract(instances.state, '$.figures.overdue') = 1");
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
        if let Some(u) = &f.urgency {
            q.push(" AND json_extract(instances.state, '$.urgency') = ").push_bind(u.clone());
        }
        let rank = |q: &mut QueryBuilder<Sqlite>, table: &str, levels: &[String]| {
            if levels.is_empty() {
                // Not a bare integer, which ORDER BY would read as a column's position.
                q.push(" CAST(0 AS INTEGER)");
                return;
            }
            q.push(format!(" (CASE json_extract({table}.state, '$.urgency')"));
            for (i, l) in levels.iter().enumerate() {
                q.push(" WHEN ").push_bind(l.clone()).push(format!(" THEN {i}"));
            }
            q.push(format!(" ELSE {} END)", levels.len()));
        };
        match (&f.by_urgency, f.before) {
            (None, Some(b)) => {
                q.push(" AND instances.id < ").push_bind(b);
            }
            (Some(levels), Some(b)) => {
                // After the cursor's case: less urgent, or as urgent and older.
                q.push(" AND (");
                rank(&mut q, "instances", levels);
                q.push(", -instances.id) > (SELECT");
                rank(&mut q, "c", levels);
                q.push(", -c.id FROM instances AS c WHERE c.id = ").push_bind(b).push(")");
            }
            (_, None) => {}
        }
        q.push(" ORDER BY");
        if let Some(levels) = &f.by_urgency {
            rank(&mut q, "instances", levels);
            q.push(",");
        }
        q.push(" instances.id DESC LIMIT ").push_bind(i64::from(f.limit.max(1)));
        let rows = q.build().fetch_all(self.pool()).await.map_err(map_err)?;
        rows.iter().map(decode::summary).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn commit(&self, unit: &[Commit]) -> StoreResult<()> {
        self.inner.writer.commit(unit).await
    }

    async fn barrier(&self) -> StoreResult<()> {
        self.inner.writer.commit(&[]).await
    }

    async fn idempotent_response(&self, key: &str) -> StoreResult<Option<Remembered>> {
        let row = sqlx::query("SELECT response, fingerprint, created_at FROM idempotency WHERE key = ?")
            .bind(key)
            .fetch_optional(self.pool())
            .await
            .map_err(map_err)?;
        row.map(|r| {
            Ok(Remembered {
                fingerprint: r.try_get("fingerprint")?,
                response: r.try_get("response")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
        .map_err(map_err)
    }

    async fn forget_idempotency(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency WHERE key = ?").bind(key).execute(self.pool()).await.map_err(map_err)?;
        Ok(())
    }

    async fn next_number(&self, counter: &str) -> StoreResult<i64> {
        self.inner.writer.next_number(counter).await
    }

    async fn claim_due(&self, now: i64, limit: u32, _lease: Duration) -> StoreResult<Vec<TimerRow>> {
        // One process fires a SQLite database's timers: a claim needs no lease.
        let rows = sqlx::query(
            "SELECT instance_id, token, name, step, due_at FROM timers WHERE due_at <= ? ORDER BY due_at LIMIT ?",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        rows.iter().map(decode::timer_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn next_due(&self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(due_at) FROM timers").fetch_one(self.pool()).await.map_err(map_err)
    }

    async fn drop_timer(&self, t: &TimerRow) -> StoreResult<()> {
        self.write(
            "DELETE FROM timers WHERE instance_id = ? AND token = ? AND name = ? AND due_at = ?",
            vec![t.instance_id.into(), i64::from(t.token).into(), t.name.as_str().into(), t.due_at.into()],
        )
        .await
    }

    async fn timers_of(&self, instance_id: i64) -> StoreResult<Vec<TimerRow>> {
        let rows = sqlx::query(
            "SELECT instance_id, token, name, step, due_at FROM timers WHERE instance_id = ? ORDER BY due_at",
        )
        .bind(instance_id)
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        rows.iter().map(decode::timer_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn add_token(&self, t: &NewToken<'_>, now: i64) -> StoreResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO api_tokens (name, key_id, secret_hash, role, scope, acts_as, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        let r = sqlx::query(
            "SELECT id, name, role, scope, acts_as, secret_hash, created_at, revoked_at FROM api_tokens WHERE key_id = ?",
        )
        .bind(key_id)
        .fetch_optional(self.pool())
        .await
        .map_err(map_err)?;
        r.as_ref().map(decode::token_row).transpose().map_err(map_err)
    }

    async fn tokens(&self) -> StoreResult<Vec<TokenRow>> {
        let rows = sqlx::query(
            "SELECT id, name, role, scope, acts_as, secret_hash, created_at, revoked_at FROM api_tokens ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        rows.iter().map(decode::token_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn revoke_token(&self, id: i64, now: i64) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
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
             disabled_at, created_at, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&a.name)
        .bind(&a.password_hash)
        .bind(&a.role)
        .bind(&a.scope)
        .bind(serde_json::to_string(&a.acts_as).unwrap_or_else(|_| "[]".into()))
        .bind(i64::from(a.must_change))
        .bind(a.failures)
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
            "UPDATE accounts SET password_hash = ?, role = ?, scope = ?, acts_as = ?, must_change = ?, failures = ?, \
             locked_until = ?, disabled_at = ?, changed_at = ? WHERE id = ?",
        )
        .bind(&a.password_hash)
        .bind(&a.role)
        .bind(&a.scope)
        .bind(serde_json::to_string(&a.acts_as).unwrap_or_else(|_| "[]".into()))
        .bind(i64::from(a.must_change))
        .bind(a.failures)
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
        let r = sqlx::query("SELECT * FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(map_err)?;
        r.as_ref().map(decode::account_row).transpose().map_err(map_err)
    }

    async fn account_by_name(&self, name: &str) -> StoreResult<Option<AccountRow>> {
        let r = sqlx::query("SELECT * FROM accounts WHERE name = ?")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(map_err)?;
        r.as_ref().map(decode::account_row).transpose().map_err(map_err)
    }

    async fn accounts(&self) -> StoreResult<Vec<AccountRow>> {
        let rows = sqlx::query("SELECT * FROM accounts ORDER BY id").fetch_all(self.pool()).await.map_err(map_err)?;
        rows.iter().map(decode::account_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn add_session(&self, s: &SessionRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, account_id, token_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
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
        let r = sqlx::query("SELECT * FROM sessions WHERE id_hash = ?")
            .bind(id_hash)
            .fetch_optional(self.pool())
            .await
            .map_err(map_err)?;
        r.as_ref().map(decode::session_row).transpose().map_err(map_err)
    }

    async fn end_sessions(&self, which: SessionsOf<'_>) -> StoreResult<u64> {
        let q = match which {
            SessionsOf::One(h) => sqlx::query("DELETE FROM sessions WHERE id_hash = ?").bind(h.to_owned()),
            SessionsOf::Account(id) => sqlx::query("DELETE FROM sessions WHERE account_id = ?").bind(id.to_string()),
            SessionsOf::Token(id) => sqlx::query("DELETE FROM sessions WHERE token_id = ?").bind(id.to_string()),
            SessionsOf::ExpiredBefore(t) => {
                sqlx::query("DELETE FROM sessions WHERE expires_at < ?").bind(t.to_string())
            }
        };
        Ok(q.execute(self.pool()).await.map_err(map_err)?.rows_affected())
    }

    async fn claim_outbox(&self, now: i64, limit: u32, _lease: Duration) -> StoreResult<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT id, instance_id, notice, attempts FROM outbox WHERE delivered_at IS NULL AND next_at <= ? \
             ORDER BY next_at LIMIT ?",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
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
    ) -> StoreResult<()> {
        if delivered {
            self.write(
                "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                vec![now.into(), id.into()],
            )
            .await
        } else {
            self.write(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE id = ?",
                vec![error.into(), retry_at.into(), id.into()],
            )
            .await
        }
    }

    async fn closed_before(&self, cutoff: i64, after_id: i64, limit: u32) -> StoreResult<Vec<InstanceRow>> {
        let rows = sqlx::query(
            "SELECT id, unit, workflow, version, revision, last_seq, data, state, created_at, updated_at \
             FROM instances AS i WHERE status <> 'active' AND updated_at < ? AND id > ? \
             AND NOT EXISTS (SELECT 1 FROM outbox AS o WHERE o.instance_id = i.id AND o.delivered_at IS NULL) \
             ORDER BY id LIMIT ?",
        )
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
            "SELECT workflow, count(*) FROM instances AS i WHERE status <> 'active' AND updated_at < ? \
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
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        let ids = serde_json::to_string(&p.ids).unwrap_or_default();
        let max_id = p.ids.iter().copied().max().unwrap_or(0);
        for sql in [
            "DELETE FROM events WHERE instance_id IN (SELECT value FROM json_each(?))",
            "DELETE FROM timers WHERE instance_id IN (SELECT value FROM json_each(?))",
            "DELETE FROM idempotency WHERE instance_id IN (SELECT value FROM json_each(?))",
        ] {
            sqlx::query(sql).bind(&ids).execute(&mut *tx).await.map_err(map_err)?;
        }
        let removed =
            sqlx::query("DELETE FROM instances WHERE status <> 'active' AND id IN (SELECT value FROM json_each(?))")
                .bind(&ids)
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
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (unit, workflow, month) DO UPDATE SET \
                 started = started + excluded.started, completed = completed + excluded.completed, \
                 cancelled = cancelled + excluded.cancelled, failed = failed + excluded.failed, \
                 raised = raised + excluded.raised, responded = responded + excluded.responded, rated = rated + excluded.rated, \
                 resolved = resolved + excluded.resolved, satisfied = satisfied + excluded.satisfied, \
                 overdue = overdue + excluded.overdue, answers = answers + excluded.answers, \
                 score_sum = score_sum + excluded.score_sum",
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
                sqlx::query("UPDATE purges SET cases = cases + ?, max_id = MAX(max_id, ?) WHERE id = ?")
                    .bind(removed as i64)
                    .bind(max_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                id
            }
            None => sqlx::query_scalar(
                "INSERT INTO purges (at, closed_before, cases, archive, actor, max_id) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
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
             satisfied, overdue, answers, score_sum FROM monthly_figures ORDER BY 1, 2, 3",
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
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT p.key AS party, COUNT(*) AS called, \
             COALESCE(SUM(p.value ->> 'responded'), 0) AS responded, \
             COALESCE(SUM(p.value ->> 'in_time'), 0) AS in_time, \
             COALESCE(SUM((p.value ->> 'answers') > 0), 0) AS rated, \
             COALESCE(SUM((p.value ->> 'satisfied_answers') * 2 > (p.value ->> 'answers')), 0) AS satisfied, \
             COALESCE(SUM(p.value ->> 'answers'), 0) AS answers, \
             TOTAL(p.value ->> 'score_sum') AS score_sum \
             FROM instances INDEXED BY instances_by_unit_created, \
             json_each(instances.state, '$.figures.parties') AS p WHERE true",
        );
        if !units.is_empty() {
            push_units(&mut q, "unit", units);
        }
        q.push(" AND created_at >= ").push_bind(from).push(" AND created_at < ").push_bind(to);
        q.push(" AND outcome IS NOT 'merged' GROUP BY p.key ORDER BY p.key");
        q.build_query_as::<PartyCounts>().fetch_all(self.pool()).await.map_err(map_err)
    }

    async fn case_dates(&self) -> StoreResult<Vec<CaseDates>> {
        sqlx::query_as::<_, CaseDates>(
            "SELECT unit, workflow, status, created_at, updated_at, json_extract(state, '$.figures') AS figures, \
             outcome IS 'merged' AS merged FROM instances",
        )
        .fetch_all(self.pool())
        .await
        .map_err(map_err)
    }

    async fn purges(&self) -> StoreResult<Vec<PurgeRecord>> {
        sqlx::query_as::<_, PurgeRecord>("SELECT id, at, closed_before, cases, archive, actor FROM purges ORDER BY id")
            .fetch_all(self.pool())
            .await
            .map_err(map_err)
    }

    async fn gauges(&self, now: i64) -> StoreResult<Gauges> {
        let active = sqlx::query_as::<_, (String, String, i64)>(
            "SELECT i.workflow, s.value, count(DISTINCT i.id) FROM instances i, json_each(i.active_steps) s \
             WHERE i.status = 'active' GROUP BY i.workflow, s.value ORDER BY 1, 2",
        )
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        let (timers_pending, timers_overdue) =
            sqlx::query_as::<_, (i64, i64)>("SELECT count(*), coalesce(sum(due_at <= ?), 0) FROM timers")
                .bind(now)
                .fetch_one(self.pool())
                .await
                .map_err(map_err)?;
        let (outbox_pending, outbox_dead) = sqlx::query_as::<_, (i64, i64)>(
            "SELECT coalesce(sum(next_at <> ?), 0), coalesce(sum(next_at = ?), 0) FROM outbox WHERE delivered_at IS NULL",
        )
        .bind(GIVEN_UP)
        .bind(GIVEN_UP)
        .fetch_one(self.pool())
        .await
        .map_err(map_err)?;
        Ok(Gauges { active, timers_pending, timers_overdue, outbox_pending, outbox_dead })
    }

    async fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT id, instance_id, notice, attempts, last_error FROM outbox \
             WHERE delivered_at IS NULL AND next_at = ? ORDER BY id",
        )
        .bind(GIVEN_UP)
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                let n: String = r.try_get("notice")?;
                Ok(DeadLetter {
                    id: r.try_get("id")?,
                    instance: r.try_get("instance_id")?,
                    notice: serde_json::from_str(&n).unwrap_or(Value::Null),
                    attempts: r.try_get("attempts")?,
                    last_error: r.try_get("last_error")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    async fn retry_dead(&self, id: Option<i64>, now: i64) -> StoreResult<u64> {
        let r = sqlx::query(
            "UPDATE outbox SET attempts = 0, next_at = ? \
             WHERE delivered_at IS NULL AND next_at = ? AND (? IS NULL OR id = ?)",
        )
        .bind(now)
        .bind(GIVEN_UP)
        .bind(id)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected())
    }

    async fn discard_dead(&self, id: Option<i64>) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM outbox WHERE delivered_at IS NULL AND next_at = ? AND (? IS NULL OR id = ?)")
            .bind(GIVEN_UP)
            .bind(id)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(self.pool()).await.map_err(map_err)?;
        Ok(())
    }

    async fn integrity_check(&self) -> StoreResult<String> {
        sqlx::query_scalar("PRAGMA integrity_check").fetch_one(self.pool()).await.map_err(map_err)
    }

    async fn backup(&self, to: &Path) -> StoreResult<BackupReport> {
        if to.exists() {
            return Err(StoreError::Conflict(format!("{} already exists", to.display())));
        }
        // VACUUM INTO reads one snapshot of the database: commits go on meanwhile and the copy
        // is consistent. The copy is readable by its owner only, like the database.
        let target = to.display().to_string();
        sqlx::query("VACUUM INTO ?").bind(&target).execute(self.pool()).await.map_err(map_err)?;
        #[cfg(unix)]
        std::fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| StoreError::Unavailable(format!("{target}: {e}")))?;
        let copy = SqliteStore::open(&StoreOptions { create: false, ..StoreOptions::new(&target) }).await?;
        let check = copy.integrity_check().await?;
        if check != "ok" {
            return Err(StoreError::Fatal(format!("the copy at {target} fails its integrity check: {check}")));
        }
        let (instances, events, versions): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM instances), (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM definitions)",
        )
        .fetch_one(copy.pool())
        .await
        .map_err(map_err)?;
        let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
        let report = BackupReport { instances, events, versions, bytes };
        copy.close().await;
        Ok(report)
    }

    async fn durability(&self) -> StoreResult<Durability> {
        // 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA; an in-memory database is never durable.
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(self.pool()).await.map_err(map_err)?;
        Ok(if level >= 2 && self.inner.path.is_some() { Durability::Full } else { Durability::Normal })
    }

    async fn set_active(
        &self,
        versions: &BTreeMap<String, i64>,
        changed_by: &str,
        status: &str,
        now: i64,
    ) -> StoreResult<i64> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        sqlx::query("DELETE FROM active_versions").execute(&mut *tx).await.map_err(map_err)?;
        sqlx::query("INSERT INTO active_versions (workflow, version) SELECT key, value FROM json_each(?)")
            .bind(serde_json::to_string(versions).unwrap_or_default())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO catalog_state (id, epoch, changed_at, changed_by, status) VALUES (1, 1, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET epoch = epoch + 1, changed_at = excluded.changed_at, \
             changed_by = excluded.changed_by, status = excluded.status RETURNING epoch",
        )
        .bind(now)
        .bind(changed_by)
        .bind(status)
        .fetch_one(&mut *tx)
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
        let mut tx = self.pool().begin().await.map_err(map_err)?;
        let state = sqlx::query_as::<_, (i64, i64, String, String)>(
            "SELECT epoch, changed_at, changed_by, status FROM catalog_state",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some((epoch, changed_at, changed_by, status)) = state else { return Ok(ActiveSet::default()) };
        let versions = sqlx::query_as::<_, (String, i64)>("SELECT workflow, version FROM active_versions")
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        Ok(ActiveSet { epoch, versions: versions.into_iter().collect(), changed_at, changed_by, status })
    }

    async fn try_lead(&self) -> StoreResult<bool> {
        Ok(true)
    }

    async fn heartbeat(&self, n: &NodeRow, now: i64) -> StoreResult<()> {
        let upsert = writer::Write {
            sql: "INSERT INTO nodes (id, build, address, started_at, heartbeat_at, leader, doing) \
                  VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, \
                  leader = excluded.leader, doing = excluded.doing, address = excluded.address",
            values: vec![
                n.id.as_str().into(),
                n.build.as_str().into(),
                n.address.as_str().into(),
                n.started_at.into(),
                now.into(),
                i64::from(n.leader).into(),
                n.doing.as_str().into(),
            ],
        };
        let forget =
            writer::Write { sql: "DELETE FROM nodes WHERE heartbeat_at < ?", values: vec![(now - 86_400_000).into()] };
        self.inner.writer.write(vec![upsert, forget]).await
    }

    async fn nodes(&self, now: i64) -> StoreResult<Vec<NodeRow>> {
        let rows = sqlx::query_as::<_, (String, String, String, i64, i64, bool, String)>(
            "SELECT id, build, address, started_at, heartbeat_at, leader, doing FROM nodes \
             ORDER BY heartbeat_at DESC, id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(|(id, build, address, started_at, heartbeat_at, leader, doing)| NodeRow {
                id,
                build,
                address,
                started_at,
                heartbeat_at,
                alive: false,
                silent_ms: (now - heartbeat_at).max(0),
                leader,
                doing,
            })
            .collect())
    }

    async fn close(&self) {
        let _ = self.barrier().await;
        self.inner.writer.close().await;
        self.inner.pool.close().await;
    }
}

/// `AND` the condition that `col` is one of `units`: a unit exactly, or when it ends in `/`,
/// that unit and every unit below it ('p/' <= unit < 'p0').
/// Each term can be read from an index on `col`.
fn push_units(q: &mut QueryBuilder<Sqlite>, col: &str, units: &[String]) {
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

/// The statistics query of [`Store::raised_counts`], after `prefix` (`EXPLAIN QUERY PLAN `). It
/// names its index: SQLite refuses it rather than read every case.
fn raised_counts_query(prefix: &str, units: &[String], from: i64, to: i64) -> QueryBuilder<Sqlite> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
        "{prefix}SELECT unit, workflow, COUNT(*) AS raised, \
         COALESCE(SUM(json_extract(state, '$.figures.responded')), 0) AS responded, \
         COALESCE(SUM(json_extract(state, '$.figures.answers') > 0), 0) AS rated, \
         COALESCE(SUM(json_extract(state, '$.figures.resolved')), 0) AS resolved, \
         COALESCE(SUM(json_extract(state, '$.figures.satisfied')), 0) AS satisfied, \
         COALESCE(SUM(json_extract(state, '$.figures.overdue')), 0) AS overdue, \
         COALESCE(SUM(json_extract(state, '$.figures.answers')), 0) AS answers, \
         TOTAL(json_extract(state, '$.figures.score_sum')) AS score_sum \
         FROM instances INDEXED BY instances_by_unit_created WHERE true"
    ));
    if !units.is_empty() {
        push_units(&mut q, "unit", units);
    }
    q.push(" AND created_at >= ").push_bind(from).push(" AND created_at < ").push_bind(to);
    // SQLite parses a row's state once for all the `json_extract`s of it.
    q.push(" AND outcome IS NOT 'merged' GROUP BY unit, workflow ORDER BY unit, workflow");
    q
}

impl SqliteStore {
    /// One statement on the writer's connection (see [`writer::Writer::write`]).
    async fn write(&self, sql: &'static str, values: Vec<writer::Value>) -> StoreResult<()> {
        self.inner.writer.write(vec![writer::Write { sql, values }]).await
    }

    /// How SQLite runs the statistics query (`EXPLAIN QUERY PLAN`), one line per step: for
    /// operators and the test that it reads its index.
    pub async fn plan_of_raised_counts(&self, units: &[String], from: i64, to: i64) -> StoreResult<String> {
        let mut q = raised_counts_query("EXPLAIN QUERY PLAN ", units, from, to);
        let rows = q.build().fetch_all(self.pool()).await.map_err(map_err)?;
        Ok(rows.iter().filter_map(|r| r.try_get::<String, _>("detail").ok()).collect::<Vec<_>>().join("\n"))
    }
}
