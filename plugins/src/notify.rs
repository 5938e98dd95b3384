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
}

#[derive(Debug)]
struct NotifyStep {
    to: Vec<String>,
    message: String,
    topic: String,
    webhook: Option<String>,
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
        if let Some(w) = &s.webhook
            && !(w.get_ref().starts_with("http://") || w.get_ref().starts_with("https://"))
        {
            cx.error(Some(w.span()), msg!("check-webhook-url", url = w.get_ref()), None);
            return None;
        }
        Some(Arc::new(NotifyStep {
            to: s.to,
            message: s.message,
            topic: s.topic.unwrap_or_else(|| "notice".into()),
            webhook: s.webhook.map(Spanned::into_inner),
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
            body,
        });
        Ok(Flow::Done("sent".into()))
    }
}
