//! Outgoing webhooks over http and https (reqwest with rustls: the system's roots, webpki's
//! roots, and an optional CA file): Yishi's own signed JSON, or the documented message formats
//! of WeCom (企业微信) and DingTalk (钉钉) group robots, with DingTalk's signed URLs. A robot
//! that answers a non-zero `errcode` has not delivered, whatever the HTTP status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use yishi_core::i18n::{Lang, Message};
use yishi_core::msg;
use yishi_core::webhook::{Robot, RobotKind, UrlProblem, parse_url};
use yishi_engine::service::WebhookSender;

/// Header carrying the time a delivery was signed (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-yishi-timestamp";
/// Header carrying `sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}`.
pub const SIGNATURE_HEADER: &str = "x-yishi-signature";

/// How webhooks are sent: from the `[webhooks]` part of the configuration.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// Extra trusted CA certificates (PEM), for receivers behind a private CA.
    pub ca_file: Option<PathBuf>,
    /// Signs Yishi's own JSON deliveries, so receivers can check they came from this server.
    pub signing_secret: Option<String>,
    /// Robot secrets by name (DingTalk 加签), named by `secret` in a notify step.
    pub robot_secrets: BTreeMap<String, String>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// The language of robot messages.
    pub lang: Lang,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            ca_file: None,
            signing_secret: None,
            robot_secrets: BTreeMap::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            lang: Lang::default(),
        }
    }
}

/// Sends webhooks; any failure is retried by the outbox with backoff.
pub struct HttpWebhooks {
    client: reqwest::Client,
    options: WebhookOptions,
}

impl Default for HttpWebhooks {
    fn default() -> Self {
        HttpWebhooks::new(WebhookOptions::default()).expect("the default client builds")
    }
}

impl HttpWebhooks {
    /// A sender, or why it cannot be made (an unreadable or invalid CA file).
    pub fn new(options: WebhookOptions) -> Result<Self, Message> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .user_agent(concat!("yishi/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &options.ca_file {
            let file = path.display().to_string();
            let pem =
                std::fs::read(path).map_err(|e| msg!("webhook-ca-unreadable", file = &file, detail = e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| msg!("webhook-ca-invalid", file = &file, detail = e.to_string()))?;
            if certs.is_empty() {
                return Err(msg!("webhook-ca-invalid", file = &file, detail = "no certificate"));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build().map_err(|e| msg!("cli-engine-failure", detail = e.to_string()))?;
        Ok(HttpWebhooks { client, options })
    }

    async fn deliver(&self, url: &str, body: &Value) -> Result<(), String> {
        let mut url = parse_url(url).map_err(|(p, detail)| {
            let m = match p {
                UrlProblem::Unparsable => msg!("webhook-url-unparsable", url = url, detail = detail),
                UrlProblem::Scheme => msg!("webhook-url-scheme", url = url, scheme = detail),
                UrlProblem::NoHost => msg!("webhook-url-no-host", url = url),
            };
            m.render(self.options.lang)
        })?;
        let notice = &body["notice"];
        let robot: Option<Robot> = notice.get("robot").and_then(|r| serde_json::from_value(r.clone()).ok());
        let now = chrono::Utc::now();
        let (payload, signature) = match &robot {
            None => {
                let payload = body.to_string();
                let signature = self.options.signing_secret.as_deref().map(|secret| {
                    let ts = now.timestamp().to_string();
                    (ts.clone(), format!("sha256={}", hex(&hmac(secret, format!("{ts}.{payload}").as_bytes()))))
                });
                (payload, signature)
            }
            Some(robot) => {
                if let Some(name) = &robot.secret {
                    let secret = self
                        .options
                        .robot_secrets
                        .get(name)
                        .ok_or_else(|| msg!("webhook-no-robot-secret", name = name).render(self.options.lang))?;
                    sign_dingtalk(&mut url, secret, now.timestamp_millis());
                }
                (robot_message(robot, body, self.options.lang).to_string(), None)
            }
        };
        let mut req = self.client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some((ts, sig)) = signature {
            req = req.header(TIMESTAMP_HEADER, ts).header(SIGNATURE_HEADER, sig);
        }
        // reqwest's errors name the URL, and robots' URLs carry their keys: leave it out.
        let resp = req.body(payload).send().await.map_err(|e| describe_error(&e.without_url()))?;
        let status = resp.status();
        let answer = resp.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        if robot.is_some() {
            // Robots answer 200 with {"errcode": 0, "errmsg": "ok"}; anything else failed.
            let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
            match v.get("errcode").and_then(Value::as_i64) {
                Some(0) => {}
                Some(code) => {
                    let why = v.get("errmsg").and_then(Value::as_str).unwrap_or_default();
                    return Err(format!("the robot answered errcode {code}: {why}"));
                }
                None => return Err("the robot's answer has no errcode".into()),
            }
        }
        Ok(())
    }
}

/// The error and its causes, e.g. "error sending request: invalid peer certificate: UnknownIssuer".
fn describe_error(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

fn hmac(key: &str, data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// DingTalk's signed robots: `timestamp` (ms) and `sign` = base64(HMAC-SHA256 of
/// "{timestamp}\n{secret}" keyed by the secret), added to the URL.
pub fn sign_dingtalk(url: &mut reqwest::Url, secret: &str, timestamp_ms: i64) {
    let sign =
        base64::engine::general_purpose::STANDARD.encode(hmac(secret, format!("{timestamp_ms}\n{secret}").as_bytes()));
    url.query_pairs_mut().append_pair("timestamp", &timestamp_ms.to_string()).append_pair("sign", &sign);
}

/// A robot's message: the notice's words in the catalog's template, as WeCom or DingTalk
/// document it (`msgtype` `text` or `markdown`).
pub fn robot_message(robot: &Robot, body: &Value, lang: Lang) -> Value {
    let notice = &body["notice"];
    let text = |k: &str| notice.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let message = text("message");
    let case = match notice.pointer("/body/registration").and_then(Value::as_str) {
        Some(r) if !r.is_empty() => r.to_owned(),
        _ => format!("#{}", body["instance"].as_i64().unwrap_or_default()),
    };
    let step = notice.pointer("/body/step").and_then(Value::as_str).unwrap_or_default();
    let title = msg!("webhook-robot-title").render(lang);
    if robot.markdown {
        let content =
            msg!("webhook-robot-markdown", title = &title, message = &message, case = &case, step = step).render(lang);
        match robot.kind {
            RobotKind::Wecom => json!({ "msgtype": "markdown", "markdown": { "content": content } }),
            RobotKind::Dingtalk => json!({ "msgtype": "markdown", "markdown": { "title": title, "text": content } }),
        }
    } else {
        let content =
            msg!("webhook-robot-text", title = &title, message = &message, case = &case, step = step).render(lang);
        json!({ "msgtype": "text", "text": { "content": content } })
    }
}

impl HttpWebhooks {
    /// Robot secrets that active notify steps name and the configuration lacks: (workflow,
    /// step, name). Their deliveries would fail; the server warns at start.
    pub fn unknown_robot_secrets(&self, engine: &yishi_engine::service::Engine) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (key, (_, def)) in &engine.active().current {
            for step in def.effective["steps"].as_array().into_iter().flatten() {
                if let Some(name) = step.get("secret").and_then(Value::as_str)
                    && step.get("kind").and_then(Value::as_str) == Some("notify")
                    && !self.options.robot_secrets.contains_key(name)
                {
                    let id = step.get("id").and_then(Value::as_str).unwrap_or_default();
                    out.push((key.clone(), id.to_owned(), name.to_owned()));
                }
            }
        }
        out
    }
}

impl WebhookSender for HttpWebhooks {
    fn send<'a>(
        &'a self,
        url: &'a str,
        body: &'a Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.deliver(url, body))
    }
}
