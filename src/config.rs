//! Configuration of `yishi serve`, in stages: raw flags and environment ([`ServeArgs`]), then a
//! configuration file (`--config yishi.toml`) filling what neither gave, checked into the
//! settings the server runs with. Flags win over the environment, which wins over the file,
//! which wins over the defaults.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use yishi_core::i18n::{Lang, Message};
use yishi_core::msg;

use crate::webhook::WebhookOptions;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// A configuration file (TOML) for every setting below; flags and environment variables
    /// override it.
    #[arg(long, env = "YISHI_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// The workflows folder.
    #[arg(long, env = "YISHI_WORKFLOWS", default_value = "workflows")]
    pub workflows: PathBuf,
    /// The database: a SQLite file (created on first run) or `postgres://user@host/db`.
    #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
    pub db: String,
    /// Connections to a PostgreSQL database (per node).
    #[arg(long, env = "YISHI_DB_POOL", default_value_t = 16)]
    pub db_pool: u32,
    /// Seconds to wait for a PostgreSQL connection before a request is answered 503.
    #[arg(long, env = "YISHI_DB_CONNECT_TIMEOUT", default_value_t = 5)]
    pub db_connect_timeout: u64,
    /// Seconds a PostgreSQL statement may run before the database cancels it.
    #[arg(long, env = "YISHI_DB_STATEMENT_TIMEOUT", default_value_t = 30)]
    pub db_statement_timeout: u64,
    /// Milliseconds between a node's rounds on a shared database: taking the lead when it is
    /// free, following versions another node activated, reporting a heartbeat.
    #[arg(long, env = "YISHI_CLUSTER_INTERVAL_MS", default_value_t = 1000)]
    pub cluster_interval_ms: u64,
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
    /// A PEM file of extra CA certificates trusted for https webhooks.
    #[arg(long, env = "YISHI_WEBHOOK_CA_FILE")]
    pub webhook_ca_file: Option<PathBuf>,
    /// Signs webhook deliveries (HMAC-SHA256); better in the environment or the file than on a
    /// command line, which other users of the machine can read.
    #[arg(long, env = "YISHI_WEBHOOK_SIGNING_SECRET", hide_env_values = true)]
    pub webhook_signing_secret: Option<String>,
    /// Seconds a webhook may take to connect.
    #[arg(long, env = "YISHI_WEBHOOK_CONNECT_TIMEOUT", default_value_t = 5)]
    pub webhook_connect_timeout: u64,
    /// Seconds a webhook delivery may take in all.
    #[arg(long, env = "YISHI_WEBHOOK_TIMEOUT", default_value_t = 10)]
    pub webhook_timeout: u64,
    /// Settings given by a flag or an environment variable (filled in by the parser).
    #[arg(skip)]
    pub explicit: BTreeSet<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// The file's form, and what `--print-config` shows. Every key is optional in a file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflows: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_pool: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_connect_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_statement_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(default)]
    pub webhooks: WebhooksFile,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub robot_secrets: BTreeMap<String, String>,
}

const TOP_KEYS: &[&str] = &[
    "workflows",
    "db",
    "db_pool",
    "db_connect_timeout",
    "db_statement_timeout",
    "cluster_interval_ms",
    "listen",
    "watch",
    "sync",
    "tz",
    "header_timeout",
    "log_format",
    "webhooks",
];
const WEBHOOK_KEYS: &[&str] = &["ca_file", "signing_secret", "connect_timeout", "timeout", "robot_secrets"];

/// What `--print-config` shows instead of a secret.
const MASK: &str = "********";

/// What `serve` runs with: the arguments with the file's values filled in, and the robot
/// secrets only the file can hold.
#[derive(Debug)]
pub struct Settings {
    pub args: ServeArgs,
    pub robot_secrets: BTreeMap<String, String>,
}

impl Settings {
    /// Reads `args.config` (when given) and fills every setting neither a flag nor the
    /// environment gave. Unknown keys are errors with a suggestion.
    pub fn resolve(mut args: ServeArgs) -> Result<Settings, Message> {
        let Some(path) = args.config.clone() else {
            return Ok(Settings { args, robot_secrets: BTreeMap::new() });
        };
        let mut file = read_file(&path)?;
        // A relative path in the file is relative to the file, as people read it.
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let near = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        file.workflows = file.workflows.map(near);
        file.webhooks.ca_file = file.webhooks.ca_file.map(near);
        file.db = file.db.map(|db| {
            if db.contains("://") || db.starts_with("sqlite:") {
                db
            } else {
                near(PathBuf::from(db)).display().to_string()
            }
        });
        let given = |id: &str| args.explicit.contains(id);
        macro_rules! fill {
            ($field:ident, $value:expr) => {
                if !given(stringify!($field))
                    && let Some(v) = $value
                {
                    args.$field = v;
                }
            };
        }
        fill!(workflows, file.workflows);
        fill!(db, file.db);
        fill!(db_pool, file.db_pool);
        fill!(db_connect_timeout, file.db_connect_timeout);
        fill!(db_statement_timeout, file.db_statement_timeout);
        fill!(cluster_interval_ms, file.cluster_interval_ms);
        fill!(listen, file.listen);
        fill!(no_watch, file.watch.map(|w| !w));
        fill!(sync, file.sync);
        fill!(tz, file.tz);
        fill!(header_timeout, file.header_timeout);
        fill!(log_format, file.log_format);
        fill!(webhook_ca_file, file.webhooks.ca_file.map(Some));
        fill!(webhook_signing_secret, file.webhooks.signing_secret.map(Some));
        fill!(webhook_connect_timeout, file.webhooks.connect_timeout);
        fill!(webhook_timeout, file.webhooks.timeout);
        Ok(Settings { args, robot_secrets: file.webhooks.robot_secrets })
    }

    /// How the database is opened.
    pub fn store_options(&self) -> yishi_engine::store::StoreOptions {
        let a = &self.args;
        yishi_engine::store::StoreOptions {
            sync: a.sync.durability(),
            pool_size: a.db_pool.max(1),
            connect_timeout: Duration::from_secs(a.db_connect_timeout.max(1)),
            statement_timeout: Duration::from_secs(a.db_statement_timeout.max(1)),
            ..yishi_engine::store::StoreOptions::new(&a.db)
        }
    }

    /// How webhooks are sent.
    pub fn webhooks(&self, lang: Lang) -> WebhookOptions {
        WebhookOptions {
            ca_file: self.args.webhook_ca_file.clone(),
            signing_secret: self.args.webhook_signing_secret.clone(),
            robot_secrets: self.robot_secrets.clone(),
            connect_timeout: Duration::from_secs(self.args.webhook_connect_timeout.max(1)),
            timeout: Duration::from_secs(self.args.webhook_timeout.max(1)),
            lang,
        }
    }

    /// The effective configuration as a configuration file, secrets and passwords masked.
    pub fn to_toml(&self) -> String {
        let a = &self.args;
        let shown = FileConfig {
            workflows: Some(a.workflows.clone()),
            db: Some(yishi_engine::store::redact(&a.db)),
            db_pool: Some(a.db_pool),
            db_connect_timeout: Some(a.db_connect_timeout),
            db_statement_timeout: Some(a.db_statement_timeout),
            cluster_interval_ms: Some(a.cluster_interval_ms),
            listen: Some(a.listen.clone()),
            watch: Some(!a.no_watch),
            sync: Some(a.sync),
            tz: Some(a.tz.clone()),
            header_timeout: Some(a.header_timeout),
            log_format: Some(a.log_format),
            webhooks: WebhooksFile {
                ca_file: a.webhook_ca_file.clone(),
                signing_secret: a.webhook_signing_secret.as_ref().map(|_| MASK.to_owned()),
                connect_timeout: Some(a.webhook_connect_timeout),
                timeout: Some(a.webhook_timeout),
                robot_secrets: self.robot_secrets.keys().map(|k| (k.clone(), MASK.to_owned())).collect(),
            },
        };
        toml::to_string(&shown).unwrap_or_default()
    }
}

fn read_file(path: &Path) -> Result<FileConfig, Message> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| msg!("config-unreadable", file = &file, detail = e.to_string()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| msg!("config-syntax", file = &file, detail = e.message().to_owned()))?;
    unknown_keys(&table, TOP_KEYS, "", &file)?;
    if let Some(toml::Value::Table(w)) = table.get("webhooks") {
        unknown_keys(w, WEBHOOK_KEYS, "webhooks.", &file)?;
    }
    FileConfig::deserialize(toml::Value::Table(table))
        .map_err(|e| msg!("config-bad-value", file = &file, detail = e.message().to_owned()))
}

fn unknown_keys(table: &toml::Table, known: &[&str], prefix: &str, file: &str) -> Result<(), Message> {
    for key in table.keys() {
        if !known.contains(&key.as_str()) {
            let near = yishi_core::diag::closest(key, known.iter().copied());
            let key = format!("{prefix}{key}");
            return Err(match near {
                Some(near) => {
                    msg!("config-unknown-key-near", file = file, key = &key, near = format!("{prefix}{near}"))
                }
                None => msg!("config-unknown-key", file = file, key = &key, known = known.join(", ")),
            });
        }
    }
    Ok(())
}
