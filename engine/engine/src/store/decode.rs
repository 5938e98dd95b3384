//! Rows read back from either backend into the contract's types: one decoder for each, generic
//! over sqlx's row type (both backends select the same column names, as the same Rust types:
//! integers, text, and documents as their JSON text).

use serde_json::{Map, Value};
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::rows::LoadedState;
use super::{InstanceRow, InstanceSummary, StoreError, StoreResult, TimerRow, TokenRow, VersionRow};

fn fatal(e: sqlx::Error) -> StoreError {
    StoreError::Fatal(format!("reading a row: {e}"))
}

/// A timer from a query selecting instance_id, token, name, step and due_at.
pub(crate) fn timer_row<'r, R>(r: &'r R) -> Result<TimerRow, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let token: i64 = r.try_get("token")?;
    Ok(TimerRow {
        instance_id: r.try_get("instance_id")?,
        token: token as u32,
        name: r.try_get("name")?,
        step: r.try_get("step")?,
        due_at: r.try_get("due_at")?,
    })
}

/// A token from a query selecting id, name, role, scope, acts_as (JSON text), secret_hash,
/// created_at and revoked_at.
pub(crate) fn token_row<'r, R>(r: &'r R) -> Result<TokenRow, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
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

/// An account from a query selecting every column of `accounts` (`acts_as` as text).
pub(crate) fn account_row<'r, R>(r: &'r R) -> Result<crate::store::AccountRow, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let acts_as: String = r.try_get("acts_as")?;
    let must_change: i64 = r.try_get("must_change")?;
    Ok(crate::store::AccountRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        password_hash: r.try_get("password_hash")?,
        role: r.try_get("role")?,
        scope: r.try_get("scope")?,
        acts_as: serde_json::from_str(&acts_as).unwrap_or_default(),
        must_change: must_change != 0,
        failures: r.try_get("failures")?,
        locked_until: r.try_get("locked_until")?,
        disabled_at: r.try_get("disabled_at")?,
        created_at: r.try_get("created_at")?,
        changed_at: r.try_get("changed_at")?,
    })
}

/// A session from a query selecting every column of `sessions`.
pub(crate) fn session_row<'r, R>(r: &'r R) -> Result<crate::store::SessionRow, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(crate::store::SessionRow {
        id_hash: r.try_get("id_hash")?,
        account_id: r.try_get("account_id")?,
        token_id: r.try_get("token_id")?,
        csrf: r.try_get("csrf")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

/// A version from a query selecting id, workflow, seq, hash, created_at and created_by.
pub(crate) fn version_row<'r, R>(r: &'r R) -> Result<VersionRow, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(VersionRow {
        id: r.try_get("id")?,
        workflow: r.try_get("workflow")?,
        seq: r.try_get("seq")?,
        hash: r.try_get("hash")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

/// A listing entry from a query selecting id, unit, workflow, version (the number), version_id,
/// status, outcome, active_steps (JSON text), revision, created_at and updated_at.
pub(crate) fn summary<'r, R>(r: &'r R) -> Result<InstanceSummary, sqlx::Error>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let active: String = r.try_get("active_steps")?;
    Ok(InstanceSummary {
        id: r.try_get("id")?,
        unit: r.try_get("unit")?,
        workflow: r.try_get("workflow")?,
        version: r.try_get("version")?,
        version_id: r.try_get("version_id")?,
        status: r.try_get("status")?,
        outcome: r.try_get("outcome")?,
        active_steps: serde_json::from_str(&active).unwrap_or_default(),
        urgency: r.try_get("urgency")?,
        revision: r.try_get("revision")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// An instance from a query selecting id, unit, workflow, version, revision, last_seq, data and
/// state (JSON text), created_at and updated_at.
pub(crate) fn instance_of<'r, R>(r: &'r R) -> StoreResult<InstanceRow>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: i64 = r.try_get("id").map_err(fatal)?;
    let data: String = r.try_get("data").map_err(fatal)?;
    let state: String = r.try_get("state").map_err(fatal)?;
    let data: Map<String, Value> =
        serde_json::from_str(&data).map_err(|e| StoreError::Fatal(format!("instance {id}: data: {e}")))?;
    let s: LoadedState =
        serde_json::from_str(&state).map_err(|e| StoreError::Fatal(format!("instance {id}: state: {e}")))?;
    Ok(InstanceRow {
        id,
        unit: r.try_get("unit").map_err(fatal)?,
        workflow: r.try_get("workflow").map_err(fatal)?,
        version: r.try_get("version").map_err(fatal)?,
        revision: r.try_get("revision").map_err(fatal)?,
        last_seq: r.try_get("last_seq").map_err(fatal)?,
        state: s.with_data(data),
        created_at: r.try_get("created_at").map_err(fatal)?,
        updated_at: r.try_get("updated_at").map_err(fatal)?,
    })
}
