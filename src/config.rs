//! Configuration of `yishi serve`, in stages: raw flags and environment ([`ServeArgs`]) are
//! checked into the settings the server runs with.

use std::path::PathBuf;

use clap::ValueEnum;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The workflows folder.
    #[arg(long, env = "YISHI_WORKFLOWS", default_value = "workflows")]
    pub workflows: PathBuf,
    /// The database: a SQLite file (created on first run) or `postgres://user@host/db`.
    #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
    pub db: String,
    /// Address to listen on.
    #[arg(long, env = "YISHI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Do not watch the workflows folder (reload with SIGHUP or the API instead).
    #[arg(long)]
    pub no_watch: bool,
    /// `full`: every commit reaches the disk before it is acknowledged (survives power loss).
    /// `normal`: survives crashes and kills of the process, not power loss; several times faster
    /// for one-at-a-time work.
    #[arg(long, env = "YISHI_SYNC", value_enum, default_value_t = SyncMode::Full)]
    pub sync: SyncMode,
    /// The time zone for times shown to people (tz database name, e.g. `Asia/Shanghai`).
    #[arg(long, env = "YISHI_TZ", default_value = "Asia/Shanghai")]
    pub tz: String,
    /// Seconds a client has to send its request headers before the connection is closed.
    #[arg(long, env = "YISHI_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout: u64,
    /// Log lines as `text` (for people) or `json` (one object a line, for a log collector).
    #[arg(long, env = "YISHI_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum SyncMode {
    Full,
    Normal,
}

impl SyncMode {
    pub fn durability(self) -> yishi_engine::store::Durability {
        match self {
            SyncMode::Full => yishi_engine::store::Durability::Full,
            SyncMode::Normal => yishi_engine::store::Durability::Normal,
        }
    }
}
