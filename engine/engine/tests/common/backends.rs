//! A fresh, empty store of each backend, for tests that run on every backend.
//!
//! PostgreSQL: each test gets a database of its own on the server `YISHI_TEST_POSTGRES` names
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the test passes. Without
//! a server the PostgreSQL tests say that they were skipped, and why; under CI (`CI` set) they
//! fail instead, so CI never skips them.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;
use yishi_engine::store::sqlite::SqliteStore;
use yishi_engine::store::{AnyStore, StoreOptions};

/// A private in-memory SQLite database.
pub async fn sqlite() -> AnyStore {
    AnyStore::Sqlite(SqliteStore::memory().await.expect("in-memory SQLite"))
}

/// A new SQLite database file, as a server keeps it (commits on the writer thread), in a
/// folder removed when the returned guard is dropped.
pub async fn sqlite_file() -> (AnyStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = dir.path().join("conformance.db").display().to_string();
    let store = yishi_engine::store::open(&StoreOptions::new(url)).await.expect("a new SQLite file");
    (store, dir)
}

/// The server the PostgreSQL tests use.
pub fn postgres_server() -> String {
    std::env::var("YISHI_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of a test's own on the PostgreSQL server; dropped by [`PgDatabase::drop_now`].
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    /// Creates an empty database named after the test, or `None` (with a message saying why)
    /// when no server answers outside CI.
    pub async fn create(test: &str) -> Option<PgDatabase> {
        static N: AtomicU32 = AtomicU32::new(0);
        let server = postgres_server();
        let mut admin = match sqlx::PgConnection::connect(&server).await {
            Ok(c) => c,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped {test} on PostgreSQL: no server at {server} ({e}); set YISHI_TEST_POSTGRES");
                return None;
            }
            Err(e) => panic!("CI needs PostgreSQL at {server} (YISHI_TEST_POSTGRES): {e}"),
        };
        let short: String = test.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(30).collect();
        let name = format!("yishi_t_{}_{}_{short}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        for sql in [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.expect("create a test database");
        }
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b).to_owned();
        Some(PgDatabase { url: format!("{base}/{name}"), name })
    }

    /// Opens the store on it.
    pub async fn store(&self) -> AnyStore {
        yishi_engine::store::open(&StoreOptions::new(&self.url)).await.expect("open the test database")
    }

    /// Drops the database (closing whatever still uses it).
    pub async fn drop_now(self) {
        let mut admin = sqlx::PgConnection::connect(&postgres_server()).await.expect("connect to drop");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
            .execute(&mut admin)
            .await
            .expect("drop the test database");
    }
}
