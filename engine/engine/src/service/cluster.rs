//! Nodes on one database. One node leads: it alone reads the workflows folder and activates
//! what changes there, recording the active set in the database; every other node follows
//! that set within a poll interval ([`Engine::follow`]). The lead is a PostgreSQL session
//! advisory lock, so when the leading node dies its session ends and another node takes the
//! lead at its next tick. Each node reports a heartbeat, visible in `GET /api/v1/nodes` and in
//! the metrics. On SQLite (one process) the one node always leads.

use std::sync::Arc;
use std::time::Duration;

use metrics::{describe_gauge, gauge};

use super::{Engine, EngineError};
use crate::store::{NodeRow, Store};

/// Whether this node leads (1) or follows (0).
pub const NODE_LEADER: &str = "yishi_node_leader";
/// Nodes whose heartbeat is recent, database-wide.
pub const NODES_ALIVE: &str = "yishi_nodes_alive";

/// A node silent for longer than this many poll intervals is counted as gone.
const ALIVE_INTERVALS: i64 = 5;

/// This process as a node: what it reports at each heartbeat.
#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub address: String,
    pub started_at: i64,
    /// How often it looks for the lead and for a changed active set, and reports itself.
    pub interval: Duration,
}

impl Node {
    /// A node id: host name, process id and a random part (unique across restarts).
    pub fn new(address: String, started_at: i64, interval: Duration) -> Node {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "yishi".into());
        let id = format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>());
        Node { id, address, started_at, interval }
    }

    fn row(&self, leader: bool, doing: &str) -> NodeRow {
        NodeRow {
            id: self.id.clone(),
            build: env!("CARGO_PKG_VERSION").to_owned(),
            address: self.address.clone(),
            started_at: self.started_at,
            heartbeat_at: 0,
            silent_ms: 0,
            alive: true,
            leader,
            doing: doing.to_owned(),
        }
    }
}

/// Gives the node families their HELP text.
pub fn describe() {
    describe_gauge!(NODE_LEADER, "Whether this node leads (reads the workflows folder and activates): 1 or 0.");
    describe_gauge!(NODES_ALIVE, "Nodes serving the database whose heartbeat is recent (database-wide).");
}

impl Engine {
    /// Nodes heard from in the last day, most recent first, with how long each has been silent.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, EngineError> {
        let limit = self.config.node_interval.as_millis() as i64 * ALIVE_INTERVALS;
        let mut nodes = self.store.nodes(self.now()).await?;
        for n in &mut nodes {
            n.alive = n.doing != "stopped" && n.silent_ms <= limit;
        }
        Ok(nodes)
    }

    /// The node's round, every `node.interval` until `stop` (`leading`: whether it leads now): keeps or takes the lead (on
    /// taking it, activates the folder through `reloader`), follows the active set while
    /// following, and reports a heartbeat. A database that does not answer is logged and tried
    /// again next round; on `stop` the node reports itself stopped.
    pub async fn run_node(
        self: Arc<Self>,
        node: Node,
        reloader: Arc<crate::reload::Reloader>,
        mut leading: bool,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        loop {
            match self.round(&node, &reloader, leading).await {
                Ok(now_leading) => leading = now_leading,
                Err(e) => tracing::warn!(error = %e, "node round failed; trying again"),
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(node.interval) => {}
            }
        }
        let _ = self.store.heartbeat(&node.row(false, "stopped"), self.now()).await;
    }

    async fn round(
        &self,
        node: &Node,
        reloader: &crate::reload::Reloader,
        was_leading: bool,
    ) -> Result<bool, EngineError> {
        let leading = self.try_lead().await?;
        if leading && !was_leading && self.store.shared() {
            tracing::info!(node = %node.id, "this node leads: it reads the workflows folder");
            reloader.reload("lead taken").await?;
        } else if !leading {
            if was_leading {
                tracing::warn!(node = %node.id, "this node lost the lead; it follows the active versions");
            }
            self.follow().await?;
        }
        self.store.heartbeat(&node.row(leading, "serving"), self.now()).await?;
        self.count(|| {
            gauge!(NODE_LEADER).set(if leading { 1.0 } else { 0.0 });
        });
        if self.config.observed {
            let alive = self.nodes().await?.iter().filter(|n| n.alive).count();
            gauge!(NODES_ALIVE).set(alive as f64);
        }
        Ok(leading)
    }
}
