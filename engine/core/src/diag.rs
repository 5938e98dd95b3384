//! Diagnostics: what the checker reports about rules files (code, file, line, column, message, hint).

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// Stable diagnostic codes. The number never changes meaning; new problems get new numbers.
///
/// `Y00xx`: file and syntax problems; `Y01xx`: structure and references; `Y02xx`: graph
/// problems; `Y03xx`: scripts; `Y04xx`: step-kind settings; `Y05xx`: layering; `Y06xx`: scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// The file could not be read.
    Unreadable,
    /// TOML syntax error.
    TomlSyntax,
    /// A key that the format does not know.
    UnknownKey,
    /// A value of the wrong type or shape.
    WrongType,
    /// A required key is missing.
    MissingKey,
    /// Two things share an id.
    Duplicate,
    /// A step kind that no plugin provides.
    UnknownKind,
    /// A transition to a step that does not exist.
    UnknownStep,
    /// A role that the workflow does not declare.
    UnknownRole,
    /// A param that is missing, unknown or ill-typed.
    BadParam,
    /// A list, script or calendar file that is missing.
    MissingFile,
    /// A file reference that escapes the workflows folder.
    EscapingPath,
    /// A duration that cannot be read.
    BadDuration,
    /// An outcome of a step that leads nowhere, or a mapping for an outcome the step never has.
    UnmappedOutcome,
    /// A step that can never be reached from the start.
    Unreachable,
    /// A step from which no end can be reached.
    NoWayOut,
    /// A join that can never fire.
    DeadJoin,
    /// A step that nobody may act on.
    NobodyMayAct,
    /// A Rhai syntax error.
    ScriptSyntax,
    /// A script that is well formed but misused (wrong return kind, missing function).
    ScriptMisuse,
    /// Settings rejected by the step kind.
    BadSettings,
    /// `extends` names a workflow that does not exist.
    MissingParent,
    /// `extends` forms a cycle.
    CircularExtends,
    /// A layering operation that cannot apply (replace or insert around a missing step).
    BadOverride,
    /// A scenario whose expectation failed.
    ScenarioFailed,
    /// A scenario file that cannot run.
    BadScenario,
}

impl Code {
    /// The stable code, such as `Y0103`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unreadable => "Y0001",
            Code::TomlSyntax => "Y0002",
            Code::UnknownKey => "Y0101",
            Code::WrongType => "Y0102",
            Code::MissingKey => "Y0103",
            Code::Duplicate => "Y0104",
            Code::UnknownKind => "Y0105",
            Code::UnknownStep => "Y0106",
            Code::UnknownRole => "Y0107",
            Code::BadParam => "Y0108",
            Code::MissingFile => "Y0109",
            Code::EscapingPath => "Y0110",
            Code::BadDuration => "Y0111",
            Code::UnmappedOutcome => "Y0112",
            Code::NobodyMayAct => "Y0113",
            Code::Unreachable => "Y0201",
            Code::NoWayOut => "Y0202",
            Code::DeadJoin => "Y0203",
            Code::ScriptSyntax => "Y0301",
            Code::ScriptMisuse => "Y0302",
            Code::BadSettings => "Y0401",
            Code::MissingParent => "Y0501",
            Code::CircularExtends => "Y0502",
            Code::BadOverride => "Y0503",
            Code::ScenarioFailed => "Y0601",
            Code::BadScenario => "Y0602",
        }
    }
}

impl schemars::JsonSchema for Code {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Code".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^Y[0-9]{4}$", "description": "A stable diagnostic code, e.g. Y0105." })
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a diagnostic is. Errors stop a workflow from being activated; warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in the rules files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    /// Path relative to the workflows folder, with `/` separators.
    pub file: String,
    /// 1-based line; 0 when the problem is about the whole file.
    pub line: u32,
    /// 1-based column in characters; 0 when the problem is about the whole file.
    pub column: u32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line > 0 {
            write!(f, "{}:{}:{}: {sev}[{}]: {}", self.file, self.line, self.column, self.code, self.message)?;
        } else {
            write!(f, "{}: {sev}[{}]: {}", self.file, self.code, self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Where in which file: a file path plus a byte range in its text.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Origin {
    pub file: String,
    pub span: Option<Range<usize>>,
}

impl Origin {
    pub fn new(file: impl Into<String>, span: Option<Range<usize>>) -> Self {
        Origin { file: file.into(), span }
    }
    pub fn file(file: impl Into<String>) -> Self {
        Origin { file: file.into(), span: None }
    }
}

/// Collects diagnostics, turning byte spans into lines and columns.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a diagnostic at `origin`; `text` is the text of `origin.file` (for line numbers).
    pub fn push(
        &mut self,
        code: Code,
        origin: &Origin,
        text: Option<&str>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push_with(Severity::Error, code, origin, text, message, hint);
    }

    pub fn warn(
        &mut self,
        code: Code,
        origin: &Origin,
        text: Option<&str>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push_with(Severity::Warning, code, origin, text, message, hint);
    }

    fn push_with(
        &mut self,
        severity: Severity,
        code: Code,
        origin: &Origin,
        text: Option<&str>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let (line, column) = match (&origin.span, text) {
            (Some(span), Some(text)) => line_col(text, span.start),
            _ => (0, 0),
        };
        self.items.push(Diagnostic {
            code,
            severity,
            file: origin.file.clone(),
            line,
            column,
            message: message.into(),
            hint,
        });
    }

    /// Adds a diagnostic at an explicit line and column.
    pub fn push_at(
        &mut self,
        code: Code,
        file: &str,
        line: u32,
        column: u32,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.items.push(Diagnostic {
            code,
            severity: Severity::Error,
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
            hint,
        });
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorted by file, line, column, code; duplicates removed.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| {
            (&a.file, a.line, a.column, a.code, &a.message).cmp(&(&b.file, b.line, b.column, b.code, &b.message))
        });
        self.items.dedup();
        self.items
    }
}

/// 1-based line and character column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.bytes().filter(|&b| b == b'\n').count() as u32 + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() as u32 + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}
