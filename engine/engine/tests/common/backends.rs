//! A fresh, empty store of each backend, for tests that run on every backend.

use yishi_engine::store::AnyStore;
use yishi_engine::store::sqlite::SqliteStore;

/// A private in-memory SQLite database.
pub async fn sqlite() -> AnyStore {
    AnyStore::Sqlite(SqliteStore::memory().await.expect("in-memory SQLite"))
}
