//! Stage 0, reading: each workflow file into its header and raw steps (with spans), recovering
//! from TOML errors so that every problem of a file is reported in one run.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diag::{Code, Diagnostics, Origin, did_you_mean};
use crate::i18n::Message;
use crate::model::{StepCommon, WorkflowHeader, header_keys, step_keys, valid_id};
use crate::msg;

/// A step as parsed from one file.
#[derive(Clone)]
pub(super) struct RawStep<'a> {
    pub common: StepCommon,
    pub span: Range<usize>,
    pub settings: Spanned<DeValue<'a>>,
    /// Index of the file it comes from.
    pub file: usize,
}

/// A workflow file as read.
pub(super) struct ParsedFile<'a> {
    pub path: &'a str,
    pub text: &'a str,
    pub unit: String,
    pub header: WorkflowHeader,
    pub steps: Vec<RawStep<'a>>,
    /// The file's structure is usable (its steps may still have errors).
    pub clean: bool,
    /// The header had errors that did not stop the checking of the steps (an unknown key).
    pub header_errors: bool,
    /// Ids of steps that could not be read (reported already; not reported again as missing).
    pub broken: Vec<String>,
}

/// What serde said about a value, as a message: a missing key and an unknown key (with a
/// did-you-mean) are named; anything else keeps the library's words inside a sentence.
pub(crate) fn de_error(e: &toml::de::Error) -> (Code, Message, Option<Message>) {
    let text = e.message().trim();
    if let Some(rest) = text.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        return (Code::MissingKey, msg!("check-missing-key", key = key), None);
    }
    if let Some(rest) = text.strip_prefix("unknown field `")
        && let Some((key, rest)) = rest.split_once('`')
    {
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let hint = did_you_mean(key, expected.iter().copied())
            .or_else(|| (!expected.is_empty()).then(|| msg!("hint-known-keys", keys = expected.clone())));
        return (Code::UnknownKey, msg!("check-unknown-key", key = key), hint);
    }
    (Code::WrongType, msg!("check-bad-value", detail = text), None)
}

pub(super) fn push_de_error(
    diags: &mut Diagnostics,
    path: &str,
    text: &str,
    e: &toml::de::Error,
    fallback: Option<Range<usize>>,
) {
    let (code, message, hint) = de_error(e);
    diags.push(code, &Origin::new(path, e.span().or(fallback)), Some(text), message, hint);
}

/// Parses a whole small file (unit, list, scenario, calendar) into `T`.
pub fn parse_typed<T: DeserializeOwned>(path: &str, text: &str, diags: &mut Diagnostics) -> Option<T> {
    match toml::from_str::<T>(text) {
        Ok(v) => Some(v),
        Err(e) => {
            push_de_error(diags, path, text, &e, None);
            None
        }
    }
}

trait FromDe: Sized {
    fn deserialize_from(v: Spanned<DeValue<'_>>) -> Result<Self, toml::de::Error>;
}

impl<T: DeserializeOwned> FromDe for T {
    fn deserialize_from(v: Spanned<DeValue<'_>>) -> Result<Self, toml::de::Error> {
        T::deserialize(ValueDeserializer::from(v))
    }
}

/// Reads a workflow file; `None` when it has no usable header (its problems are reported).
pub(super) fn parse_workflow<'a>(path: &'a str, text: &'a str, diags: &mut Diagnostics) -> Option<ParsedFile<'a>> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            diags.push(
                Code::TomlSyntax,
                &Origin::new(path, e.span()),
                Some(text),
                msg!("check-toml-syntax", detail = e.message().trim()),
                None,
            );
        }
        return None;
    }
    let doc_span = doc.span();
    let mut table = doc.into_inner();
    let mut clean = true;
    // Errors in the header that still let the steps be checked; the workflow must not run.
    let mut header_errors = false;
    let unknown: Vec<_> =
        table.keys().filter(|k| !header_keys().iter().any(|h| h == k.get_ref().as_ref())).cloned().collect();
    for k in unknown {
        let hint = did_you_mean(k.get_ref(), header_keys().iter().map(String::as_str));
        diags.push(
            Code::UnknownKey,
            &Origin::new(path, Some(k.span())),
            Some(text),
            msg!("check-unknown-top-key", key = k.get_ref().as_ref()),
            hint,
        );
        table.remove(&k);
        header_errors = true;
    }
    let steps_key = table.keys().find(|k| k.get_ref().as_ref() == "steps").cloned();
    let steps_value = steps_key.and_then(|k| table.remove(&k));
    let header = match WorkflowHeader::deserialize_from(Spanned::new(doc_span.clone(), DeValue::Table(table))) {
        Ok(h) => Some(h),
        Err(e) => {
            push_de_error(diags, path, text, &e, Some(0..0));
            None
        }
    };
    let (steps, broken) = match steps_value {
        None => (Vec::new(), Vec::new()),
        Some(v) => {
            let span = v.span();
            match v.into_inner() {
                DeValue::Array(items) => parse_steps(path, text, items.into_iter().collect(), diags),
                _ => {
                    let origin = Origin::new(path, Some(span));
                    diags.push(Code::WrongType, &origin, Some(text), msg!("check-steps-not-array"), None);
                    clean = false;
                    (Vec::new(), Vec::new())
                }
            }
        }
    };
    let header = header?;
    if !valid_id(&header.id) {
        let origin = Origin::new(path, Some(0..0));
        diags.push(Code::WrongType, &origin, Some(text), msg!("check-bad-workflow-id", id = &header.id), None);
        clean = false;
    }
    let unit = crate::files::parent_dir(path).to_owned();
    Some(ParsedFile { path, text, unit, header, steps, clean, header_errors, broken })
}

fn parse_steps<'a>(
    path: &'a str,
    text: &'a str,
    items: Vec<Spanned<DeValue<'a>>>,
    diags: &mut Diagnostics,
) -> (Vec<RawStep<'a>>, Vec<String>) {
    let mut steps = Vec::new();
    let mut broken = Vec::new();
    for item in items {
        let id = item.get_ref().get("id").and_then(|v| v.get_ref().as_str()).map(str::to_owned);
        match parse_step(path, text, item, diags) {
            Some(s) => steps.push(s),
            None => broken.push(id.unwrap_or_default()),
        }
    }
    (steps, broken)
}

fn parse_step<'a>(
    path: &'a str,
    text: &'a str,
    item: Spanned<DeValue<'a>>,
    diags: &mut Diagnostics,
) -> Option<RawStep<'a>> {
    let span = item.span();
    let DeValue::Table(table) = item.into_inner() else {
        diags.push(Code::WrongType, &Origin::new(path, Some(span)), Some(text), msg!("check-step-not-table"), None);
        return None;
    };
    let mut common = DeTable::new();
    let mut settings = DeTable::new();
    for (k, v) in table {
        if step_keys().iter().any(|s| s == k.get_ref().as_ref()) {
            common.insert(k, v);
        } else {
            settings.insert(k, v);
        }
    }
    let common = match StepCommon::deserialize_from(Spanned::new(span.clone(), DeValue::Table(common))) {
        Ok(c) => c,
        Err(e) => {
            push_de_error(diags, path, text, &e, Some(span.clone()));
            return None;
        }
    };
    if !valid_id(common.id.get_ref()) {
        let origin = Origin::new(path, Some(common.id.span()));
        diags.push(Code::WrongType, &origin, Some(text), msg!("check-bad-step-id", id = common.id.get_ref()), None);
        return None;
    }
    Some(RawStep {
        common,
        span: span.clone(),
        settings: Spanned::new(span, DeValue::Table(settings)),
        file: usize::MAX,
    })
}
