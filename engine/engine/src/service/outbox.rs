//! The outbox: work committed with a change and carried out after it: webhook notices posted,
//! linked cases started. Each item is claimed by one process at a time (a lease) and retried
//! with exponential backoff; starting a linked case is idempotent, so a retry never starts two.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use yishi_core::kind::Actor;

use super::{Engine, EngineError};
use crate::store::Store;

/// How long a claimed item is kept from other processes.
const LEASE: Duration = Duration::from_secs(60);

/// Sends a webhook notice. The binary provides an HTTP implementation; tests provide fakes.
pub trait WebhookSender: Send + Sync + 'static {
    fn send<'a>(
        &'a self,
        url: &'a str,
        body: &'a Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;
}

/// The wait before attempt `attempts + 1` of item `id`: 2, 4, 8 ... seconds (at most about an
/// hour), less up to a fifth so that items that failed together do not retry together.
fn backoff_ms(id: i64, attempts: i64) -> i64 {
    let base = 1000 * (1_i64 << attempts.clamp(1, 12));
    // A spread from the item and attempt (no clock, no global state): the same inputs give
    // the same wait, which keeps tests and replays exact.
    let spread = (id.wrapping_mul(2_654_435_761).wrapping_add(attempts * 40_503)).rem_euclid(1000);
    base - base / 5 * spread / 1000
}

/// Attempts before a notice is given up (kept, with its last error, for an operator).
pub const MAX_DELIVERY_ATTEMPTS: i64 = 10;

impl Engine {
    /// Delivers what the outbox holds: starts spawned cases and posts webhook notices,
    /// retrying failures with exponential backoff. Returns how many items were handled.
    pub async fn deliver_outbox(&self, sender: &dyn WebhookSender) -> Result<usize, EngineError> {
        let now = self.now();
        let items = self.store.claim_outbox(now, 200, LEASE).await?;
        let n = items.len();
        for item in items {
            let result = match item.notice.get("kind").and_then(Value::as_str) {
                Some("spawn") => {
                    let workflow = item.notice.get("workflow").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let mut data = item.notice.get("data").and_then(Value::as_object).cloned().unwrap_or_default();
                    data.insert("parent_case".into(), Value::from(item.instance_id));
                    let system = Actor { id: "yishi".into(), roles: Vec::new() };
                    let idem = super::Idempotency { key: format!("spawn:{}", item.id), fingerprint: String::new() };
                    match self.start(&workflow, data, &system, Some(&idem)).await {
                        Ok(v) => {
                            if self.config.observed {
                                tracing::info!(parent = item.instance_id, child = v.id, workflow = %workflow, "started a linked case");
                            }
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                Some("webhook") => {
                    let mut notice = item.notice.get("notice").cloned().unwrap_or(Value::Null);
                    // Receivers get the words, in the server's language, not catalog keys.
                    yishi_core::i18n::render_in_json(&mut notice, self.config.lang);
                    let url = notice.get("webhook").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let body = serde_json::json!({ "instance": item.instance_id, "notice": notice });
                    sender.send(&url, &body).await
                }
                _ => Err("unknown outbox item".into()),
            };
            match result {
                Ok(()) => {
                    self.count(|| super::metrics::delivery("delivered"));
                    self.store.outbox_result(item.id, true, None, 0, now).await?
                }
                Err(e) => {
                    let attempts = item.attempts + 1;
                    let retry_at = if attempts >= MAX_DELIVERY_ATTEMPTS {
                        crate::store::GIVEN_UP
                    } else {
                        now + backoff_ms(item.id, attempts)
                    };
                    self.count(|| {
                        super::metrics::delivery(if retry_at == crate::store::GIVEN_UP { "given_up" } else { "failed" })
                    });
                    tracing::warn!(outbox = item.id, instance = item.instance_id, attempts, error = %e, "delivery failed");
                    self.store.outbox_result(item.id, false, Some(&e), retry_at, now).await?;
                }
            }
        }
        Ok(n)
    }

    /// Deliveries given up on, with their last errors.
    pub async fn dead_letters(&self) -> Result<Vec<crate::store::DeadLetter>, EngineError> {
        Ok(self.store.dead_letters().await?)
    }

    /// Puts one dead letter (or all) back in line now. Returns how many.
    pub async fn retry_dead(&self, id: Option<i64>) -> Result<u64, EngineError> {
        let n = self.store.retry_dead(id, self.now()).await?;
        if n > 0 {
            self.outbox_wake.notify_one();
        }
        Ok(n)
    }

    /// Drops one dead letter (or all). Returns how many.
    pub async fn discard_dead(&self, id: Option<i64>) -> Result<u64, EngineError> {
        Ok(self.store.discard_dead(id).await?)
    }

    /// Runs [`Engine::deliver_outbox`] whenever something is committed to the outbox, and every
    /// few seconds for retries, until `shutdown` resolves.
    pub async fn run_outbox(
        self: Arc<Self>,
        sender: Arc<dyn WebhookSender>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.deliver_outbox(sender.as_ref()).await {
                tracing::warn!(error = %e, "outbox delivery failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = self.outbox_wake.notified() => {}
                _ = &mut shutdown => return,
            }
        }
    }
}
