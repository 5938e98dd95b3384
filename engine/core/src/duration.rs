//! Durations as admins write them: `30m`, `48h`, `7d`, `2w`, `1d12h`, and `5wd` for working days.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A span of time: calendar time in seconds, or a number of working days (which need a
/// [`crate::calendar::Calendar`] to turn into an instant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Duration {
    Seconds(i64),
    WorkingDays(u32),
}

/// Why a duration could not be read: the text, and the catalog key of the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct DurationError {
    pub text: String,
    pub why: &'static str,
}

impl DurationError {
    pub fn message(&self) -> crate::i18n::Message {
        crate::msg!("duration-bad", text = &self.text, why = crate::i18n::Message::new(self.why))
    }
}

impl Duration {
    /// The length in milliseconds when counted without a calendar (a working day as a day):
    /// for times counted back from a date, such as a reminder before a deadline.
    pub fn nominal_ms(self) -> i64 {
        match self {
            Duration::Seconds(s) => s * 1000,
            Duration::WorkingDays(n) => i64::from(n) * 86_400_000,
        }
    }

    /// Parses `30s`, `15m`, `48h`, `7d`, `2w`, combinations such as `1d12h`, or `5wd`.
    pub fn parse(text: &str) -> Result<Duration, DurationError> {
        let err = |why| DurationError { text: text.to_owned(), why };
        let s = text.trim();
        if s.is_empty() {
            return Err(err("duration-empty"));
        }
        if let Some(n) = s.strip_suffix("wd") {
            let n: u32 = n.trim().parse().map_err(|_| err("duration-working-days"))?;
            return Ok(Duration::WorkingDays(n));
        }
        let mut total: i64 = 0;
        let mut num = String::new();
        let mut any = false;
        for ch in s.chars() {
            if ch.is_ascii_digit() {
                num.push(ch);
            } else if ch.is_whitespace() {
                continue;
            } else {
                let unit = match ch {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    'd' => 86_400,
                    'w' => 7 * 86_400,
                    _ => return Err(err("duration-units")),
                };
                if num.is_empty() {
                    return Err(err("duration-unit-needs-number"));
                }
                let n: i64 = num.parse().map_err(|_| err("duration-number-too-large"))?;
                total =
                    n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(|| err("duration-too-long"))?;
                num.clear();
                any = true;
            }
        }
        if !num.is_empty() {
            return Err(err("duration-number-needs-unit"));
        }
        if !any {
            return Err(err("duration-example"));
        }
        Ok(Duration::Seconds(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Duration::WorkingDays(n) => write!(f, "{n}wd"),
            Duration::Seconds(0) => f.write_str("0s"),
            Duration::Seconds(mut s) => {
                for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
                    if s >= len {
                        write!(f, "{}{unit}", s / len)?;
                        s %= len;
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_admins_write() {
        assert_eq!(Duration::parse("7d"), Ok(Duration::Seconds(7 * 86_400)));
        assert_eq!(Duration::parse("1d12h"), Ok(Duration::Seconds(86_400 + 12 * 3600)));
        assert_eq!(Duration::parse("5wd"), Ok(Duration::WorkingDays(5)));
        assert_eq!(Duration::parse(" 30m "), Ok(Duration::Seconds(1800)));
        assert!(Duration::parse("7").is_err());
        assert!(Duration::parse("d").is_err());
        assert!(Duration::parse("7y").is_err());
        assert!(Duration::parse("").is_err());
        assert_eq!(Duration::Seconds(86_400 + 90).to_string(), "1d1m30s");
    }
}
