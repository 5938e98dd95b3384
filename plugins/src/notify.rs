//! `notify`: tells people or systems what happened (the log, and an outgoing webhook with
//! retries through the outbox) without blocking the case.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;
use yishi_core::i18n::Message;
use yishi_core::kind::*;
use yishi_core::msg;
use yishi_core::webhook::{Robot, RobotKind, UrlProblem, parse_url};

pub struct NotifyKind;

/// Settings of `notify`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NotifySettings {
    /// Roles or ids the message is for.
    #[serde(default)]
    to: Vec<String>,
    /// The message; `{key}` is replaced by the top-level data value `key` (e.g. `{registration}`).
    message: String,
    /// A topic for receivers to route on (default `notice`).
    topic: Option<String>,
    /// An `http://` or `https://` URL to POST the notice to (delivered after the commit, retried).
    #[schemars(with = "Option<String>")]
    webhook: Option<Spanned<String>>,
    /// What the webhook takes: `json` (Yishi's own, signed when the server has a signing
    /// secret; the default), `wecom` (企业微信 group robot) or `dingtalk` (钉钉 group robot).
    #[schemars(with = "Option<String>")]
    format: Option<Spanned<Format>>,
    /// For robots: `text` (the default) or `markdown` messages.
    #[schemars(with = "Option<String>")]
    style: Option<Spanned<Style>>,
    /// For a DingTalk robot with 加签: the name of its secret in the server's configuration
    /// (`[webhooks.robot_secrets]`); never the secret itself.
    #[schemars(with = "Option<String>")]
    secret: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Format {
    Json,
    Wecom,
    Dingtalk,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Style {
    Text,
    Markdown,
}

#[derive(Debug)]
struct NotifyStep {
    to: Vec<String>,
    message: String,
    topic: String,
    webhook: Option<String>,
    robot: Option<Robot>,
}

impl StepKind for NotifyKind {
    fn name(&self) -> &str {
        "notify"
    }
    fn summary(&self) -> Message {
        msg!("kind-notify")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(NotifySettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let s: NotifySettings = cx.settings(settings, "notify")?;
        // The sender's own test: a URL it would refuse fails here, at the same line.
        if let Some(w) = &s.webhook
            && let Err((problem, detail)) = parse_url(w.get_ref())
        {
            let url = w.get_ref();
            let why = match problem {
                UrlProblem::Unparsable => msg!("webhook-url-unparsable", url = url, detail = detail),
                UrlProblem::Scheme => msg!("webhook-url-scheme", url = url, scheme = detail),
                UrlProblem::NoHost => msg!("webhook-url-no-host", url = url),
            };
            cx.error(Some(w.span()), why, None);
            return None;
        }
        let format = s.format.as_ref().map_or(Format::Json, |f| *f.get_ref());
        if let Some(f) = &s.format
            && format != Format::Json
            && s.webhook.is_none()
        {
            cx.error(Some(f.span()), msg!("check-robot-needs-webhook"), None);
            return None;
        }
        for (span, used) in [
            (s.style.as_ref().map(Spanned::span), s.style.is_some() && format == Format::Json),
            (s.secret.as_ref().map(Spanned::span), s.secret.is_some() && format != Format::Dingtalk),
        ] {
            if used {
                cx.error(span, msg!("check-robot-setting-unused"), Some(msg!("hint-robot-format")));
                return None;
            }
        }
        let kind = match format {
            Format::Json => None,
            Format::Wecom => Some(RobotKind::Wecom),
            Format::Dingtalk => Some(RobotKind::Dingtalk),
        };
        let robot = kind.map(|kind| Robot {
            kind,
            markdown: s.style.as_ref().is_some_and(|st| *st.get_ref() == Style::Markdown),
            secret: s.secret.map(Spanned::into_inner),
        });
        Some(Arc::new(NotifyStep {
            to: s.to,
            message: s.message,
            topic: s.topic.unwrap_or_else(|| "notice".into()),
            webhook: s.webhook.map(Spanned::into_inner),
            robot,
        }))
    }
}

fn render(template: &str, cx: &StepCx<'_>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                let key = &after[..end];
                match cx.get(key) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
                    _ => {
                        out.push('{');
                        out.push_str(key);
                        out.push('}');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

impl Step for NotifyStep {
    fn outcomes(&self) -> Vec<String> {
        vec!["sent".into()]
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        let message = render(&self.message, cx);
        let body = json!({ "step": cx.step_id, "registration": cx.get("registration") });
        cx.notify(Notice {
            topic: self.topic.clone(),
            to: self.to.clone(),
            message: Message::verbatim(message),
            webhook: self.webhook.clone(),
            robot: self.robot.clone(),
            body,
        });
        Ok(Flow::Done("sent".into()))
    }
}
