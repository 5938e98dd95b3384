//! Webhook addresses and robot formats, shared by the checker and the sender so that a URL the
//! sender would refuse is a check error at the same line.

use serde::{Deserialize, Serialize};

/// Why a webhook URL cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not a URL at all (the parser's reason is in the message).
    Unparsable,
    /// A scheme other than `http` or `https`.
    Scheme,
    /// No host to connect to.
    NoHost,
}

/// Parses a webhook URL the way the sender does: `http` or `https`, with a host.
pub fn parse_url(url: &str) -> Result<url::Url, (UrlProblem, String)> {
    let parsed = url::Url::parse(url).map_err(|e| (UrlProblem::Unparsable, e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err((UrlProblem::Scheme, parsed.scheme().to_owned()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err((UrlProblem::NoHost, String::new()));
    }
    Ok(parsed)
}

/// A group robot that takes messages in its own JSON (企业微信 WeCom, 钉钉 DingTalk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RobotKind {
    Wecom,
    Dingtalk,
}

/// How a notice reaches a group robot instead of as Yishi's own JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Robot {
    pub kind: RobotKind,
    /// `markdown` instead of plain `text` messages.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub markdown: bool,
    /// The name of the robot's signing secret in the server's configuration (DingTalk's
    /// 加签); the secret itself never appears in rules or in the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_judged_as_the_sender_judges_them() {
        assert!(parse_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc").is_ok());
        assert!(parse_url("http://127.0.0.1:9000/hook").is_ok());
        assert_eq!(parse_url("ftp://example.org/x").unwrap_err().0, UrlProblem::Scheme);
        assert_eq!(parse_url("https://").unwrap_err().0, UrlProblem::Unparsable);
        assert_eq!(parse_url("not a url").unwrap_err().0, UrlProblem::Unparsable);
        assert_eq!(parse_url("http://exa mple.org/").unwrap_err().0, UrlProblem::Unparsable);
    }
}
