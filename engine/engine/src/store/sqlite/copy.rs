//! Rows in and out of SQLite for a database copy, in the layout of [`crate::store::copy`].

use serde_json::Value;

use super::{SqliteStore, map_err};
use crate::store::copy::{Col, TableSpec};
use crate::store::{StoreError, StoreResult};

impl SqliteStore {
    pub(crate) async fn export_rows(
        &self,
        table: &TableSpec,
        after: Option<&[Value]>,
        limit: u32,
    ) -> StoreResult<Vec<Vec<Value>>> {
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|(c, kind)| match kind {
                Col::Doc | Col::Array => format!("json({c})"),
                _ => (*c).to_owned(),
            })
            .collect();
        let mut sql = format!("SELECT json_array({}) FROM {}", columns.join(", "), table.name);
        if after.is_some() {
            let marks = vec!["?"; table.key].join(", ");
            sql.push_str(&format!(" WHERE ({}) > ({marks})", table.key_list()));
        }
        sql.push_str(&format!(" ORDER BY {} LIMIT ?", table.key_list()));
        let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for v in after.unwrap_or_default() {
            q = match v {
                Value::Number(n) => q.bind(n.as_i64()),
                Value::String(s) => q.bind(s.clone()),
                other => q.bind(other.to_string()),
            };
        }
        let rows = q.bind(i64::from(limit)).fetch_all(self.pool()).await.map_err(map_err)?;
        rows.iter()
            .map(|r| serde_json::from_str(r).map_err(|e| StoreError::Fatal(format!("{}: a row: {e}", table.name))))
            .collect()
    }

    pub(crate) async fn import_rows(&self, table: &TableSpec, rows: &[Vec<Value>]) -> StoreResult<()> {
        let values: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| match kind {
                Col::Doc | Col::Array => format!("value->{i}"),
                _ => format!("value->>{i}"),
            })
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) SELECT {} FROM json_each(?)",
            table.name,
            table.column_list(),
            values.join(", ")
        );
        let json = serde_json::to_string(rows).map_err(|e| StoreError::Fatal(e.to_string()))?;
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(json).execute(self.pool()).await.map_err(map_err)?;
        Ok(())
    }

    pub(crate) async fn row_count(&self, table: &TableSpec) -> StoreResult<i64> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {}", table.name)))
            .fetch_one(self.pool())
            .await
            .map_err(map_err)
    }
}
