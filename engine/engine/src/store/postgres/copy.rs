//! Rows in and out of PostgreSQL for a database copy, in the layout of [`crate::store::copy`].

use serde_json::Value;

use super::{PgStore, map_err};
use crate::store::copy::{Col, TableSpec};
use crate::store::{StoreError, StoreResult};

impl PgStore {
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
                Col::Time => format!("yishi_ms({c})"),
                _ => (*c).to_owned(),
            })
            .collect();
        let mut sql = format!("SELECT json_build_array({})::text FROM {}", columns.join(", "), table.name);
        let mut n = 0;
        if after.is_some() {
            let marks: Vec<String> = (1..=table.key)
                .map(|i| match table.columns[i - 1].1 {
                    Col::Int => format!("${i}::bigint"),
                    _ => format!("${i}::text"),
                })
                .collect();
            n = table.key;
            sql.push_str(&format!(" WHERE ({}) > ({})", table.key_list(), marks.join(", ")));
        }
        sql.push_str(&format!(" ORDER BY {} LIMIT ${}", table.key_list(), n + 1));
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
                Col::Int => format!("(value->>{i})::bigint"),
                Col::Real => format!("(value->>{i})::double precision"),
                Col::Text => format!("value->>{i}"),
                Col::Time => format!("yishi_ts((value->>{i})::bigint)"),
                Col::Doc => format!("value->{i}"),
                Col::Array => format!("(value->{i})::jsonb"),
            })
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM json_array_elements($1::json) AS r(value)",
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

    /// After a copy: ids the database hands out next come after every copied one (and after
    /// every purged case's).
    pub(crate) async fn finish_import(&self) -> StoreResult<()> {
        sqlx::raw_sql(
            "SELECT setval('instance_ids', m) FROM (SELECT GREATEST((SELECT max(id) FROM instances), \
                 (SELECT max(max_id) FROM purges)) AS m) AS x WHERE m > 0;
             SELECT setval(pg_get_serial_sequence('definitions', 'id'), max(id)) FROM definitions HAVING max(id) > 0;
             SELECT setval(pg_get_serial_sequence('api_tokens', 'id'), max(id)) FROM api_tokens HAVING max(id) > 0;
             SELECT setval(pg_get_serial_sequence('accounts', 'id'), max(id)) FROM accounts HAVING max(id) > 0;
             SELECT setval(pg_get_serial_sequence('outbox', 'id'), max(id)) FROM outbox HAVING max(id) > 0;
             SELECT setval(pg_get_serial_sequence('purges', 'id'), max(id)) FROM purges HAVING max(id) > 0;",
        )
        .execute(self.pool())
        .await
        .map_err(map_err)?;
        Ok(())
    }
}
