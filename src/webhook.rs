//! Outgoing webhooks: notices POSTed as JSON over plain HTTP (hyper). An `https://` URL is
//! refused with a clear error and kept in the outbox (see the README's limits).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use yishi_engine::service::WebhookSender;

/// Sends webhooks with a timeout; any non-2xx answer is a failure (retried by the outbox).
pub struct HttpWebhooks {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Default for HttpWebhooks {
    fn default() -> Self {
        HttpWebhooks { client: Client::builder(TokioExecutor::new()).build_http() }
    }
}

impl WebhookSender for HttpWebhooks {
    fn send<'a>(
        &'a self,
        url: &'a str,
        body: &'a Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            if url.starts_with("https://") {
                return Err("https webhooks need TLS, which this build does not include; use an http:// relay".into());
            }
            let uri: hyper::Uri = url.parse().map_err(|e| format!("bad webhook URL `{url}`: {e}"))?;
            let req = hyper::Request::post(uri)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::USER_AGENT, concat!("yishi/", env!("CARGO_PKG_VERSION")))
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| e.to_string())?;
            let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
                .await
                .map_err(|_| "timed out after 10s".to_owned())?
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            let _ = resp.into_body().collect().await;
            if status.is_success() { Ok(()) } else { Err(format!("answered {status}")) }
        })
    }
}
