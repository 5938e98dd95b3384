//! Diagnostics: what the checker reports about rules files: a stable code, where (file, line,
//! column and the byte span, for a snippet with a marker under it), what (a [`Message`], in the
//! reader's language when rendered), related places (labels) and a hint.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::i18n::{Lang, Message};
use crate::msg;

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
    /// Working days counted from today run into a year the calendar has no holidays for.
    CalendarUncovered,
    /// An urgency level the workflow does not declare.
    UnknownLevel,
    /// A step waits for gatherings (sittings) of a workflow its unit does not have.
    NoGatheringWorkflow,
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
    /// Every code, for reading one back from its text.
    pub const ALL: [Code; 29] = [
        Code::Unreadable,
        Code::TomlSyntax,
        Code::UnknownKey,
        Code::WrongType,
        Code::MissingKey,
        Code::Duplicate,
        Code::UnknownKind,
        Code::UnknownStep,
        Code::UnknownRole,
        Code::BadParam,
        Code::MissingFile,
        Code::EscapingPath,
        Code::BadDuration,
        Code::UnmappedOutcome,
        Code::NobodyMayAct,
        Code::CalendarUncovered,
        Code::UnknownLevel,
        Code::NoGatheringWorkflow,
        Code::Unreachable,
        Code::NoWayOut,
        Code::DeadJoin,
        Code::ScriptSyntax,
        Code::ScriptMisuse,
        Code::BadSettings,
        Code::MissingParent,
        Code::CircularExtends,
        Code::BadOverride,
        Code::ScenarioFailed,
        Code::BadScenario,
    ];

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
            Code::CalendarUncovered => "Y0114",
            Code::UnknownLevel => "Y0115",
            Code::NoGatheringWorkflow => "Y0116",
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

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Code::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown diagnostic code {text}")))
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a diagnostic is. Errors stop a workflow from being activated; warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A place in a file: 1-based line and column (in characters), and the byte range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Place {
    /// Path relative to the workflows folder, with `/` separators.
    pub file: String,
    /// 1-based line; 0 when the problem is about the whole file.
    pub line: u32,
    /// 1-based column in characters; 0 when the problem is about the whole file.
    pub column: u32,
    /// Where the marked text ends (line and column just after it); equal to the start for a
    /// point.
    pub end_line: u32,
    pub end_column: u32,
    /// The marked text as a byte range of the file: `[start, end]`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "span_pair",
        deserialize_with = "pair_span"
    )]
    #[schemars(with = "Option<(usize, usize)>")]
    pub span: Option<Range<usize>>,
}

fn pair_span<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Range<usize>>, D::Error> {
    Ok(Option::<(usize, usize)>::deserialize(d)?.map(|(start, end)| start..end))
}

fn span_pair<S: serde::Serializer>(span: &Option<Range<usize>>, s: S) -> Result<S::Ok, S::Error> {
    span.as_ref().map(|r| (r.start, r.end)).serialize(s)
}

impl Place {
    /// The place of byte range `span` in `text` (the text of `file`).
    pub fn new(file: &str, span: Option<Range<usize>>, text: Option<&str>) -> Self {
        match (span, text) {
            (Some(span), Some(text)) => {
                let (line, column) = line_col(text, span.start);
                let (end_line, end_column) = line_col(text, span.end.max(span.start));
                Place { file: file.to_owned(), line, column, end_line, end_column, span: Some(span) }
            }
            _ => Place { file: file.to_owned(), ..Place::default() },
        }
    }

    /// The character at `line` and `column` of `text` (a position a script engine reported
    /// inside the file).
    pub fn in_text(file: &str, text: &str, line: u32, column: u32) -> Self {
        let start = text.split_inclusive('\n').take(line.saturating_sub(1) as usize).map(str::len).sum::<usize>();
        let rest = &text[start.min(text.len())..];
        let offset: usize = rest.chars().take(column.saturating_sub(1) as usize).map(char::len_utf8).sum();
        let at = start + offset;
        let end = at + rest[offset.min(rest.len())..].chars().next().map_or(0, char::len_utf8);
        Place::new(file, Some(at..end), Some(text))
    }

    /// A place given by line and column only (a position a script engine reported).
    pub fn at(file: &str, line: u32, column: u32) -> Self {
        Place { file: file.to_owned(), line, column, end_line: line, end_column: column, span: None }
    }
}

/// A related place, with what it has to do with the problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Label {
    #[serde(flatten)]
    pub place: Place,
    pub message: Message,
}

/// One problem found in the rules files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    #[serde(flatten)]
    pub place: Place,
    pub message: Message,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<Message>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The file the problem is in.
    pub fn file(&self) -> &str {
        &self.place.file
    }

    /// One line, `file:line:column: error[code]: message`, and the hint, in `lang`.
    pub fn render_line(&self, lang: Lang) -> String {
        let sev = match self.severity {
            Severity::Error => msg!("diag-error"),
            Severity::Warning => msg!("diag-warning"),
        }
        .render(lang);
        let p = &self.place;
        let mut out = if p.line > 0 {
            format!("{}:{}:{}: {sev}[{}]: {}", p.file, p.line, p.column, self.code, self.message.render(lang))
        } else {
            format!("{}: {sev}[{}]: {}", p.file, self.code, self.message.render(lang))
        };
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n  {}", msg!("diag-hint", hint = hint.clone()).render(lang)));
        }
        out
    }
}

/// In English, for logs and tests.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_line(Lang::En))
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

    /// Adds an error at `origin`; `text` is the text of `origin.file` (for line numbers).
    pub fn push(&mut self, code: Code, origin: &Origin, text: Option<&str>, message: Message, hint: Option<Message>) {
        self.add(Severity::Error, code, Place::new(&origin.file, origin.span.clone(), text), message, hint);
    }

    /// Adds a warning at `origin`.
    pub fn warn(&mut self, code: Code, origin: &Origin, text: Option<&str>, message: Message, hint: Option<Message>) {
        self.add(Severity::Warning, code, Place::new(&origin.file, origin.span.clone(), text), message, hint);
    }

    /// Adds an error at a place given by line and column.
    pub fn push_at(&mut self, code: Code, place: Place, message: Message, hint: Option<Message>) {
        self.add(Severity::Error, code, place, message, hint);
    }

    /// Adds a diagnostic as it is.
    pub fn add_diagnostic(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    fn add(&mut self, severity: Severity, code: Code, place: Place, message: Message, hint: Option<Message>) {
        self.items.push(Diagnostic { code, severity, place, message, labels: Vec::new(), hint });
    }

    /// Adds a label to the diagnostic added last (a related place: where a duplicate was first
    /// defined, the value that was inherited).
    pub fn label(&mut self, origin: &Origin, text: Option<&str>, message: Message) {
        if let Some(d) = self.items.last_mut() {
            d.labels.push(Label { place: Place::new(&origin.file, origin.span.clone(), text), message });
        }
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorted by file, line, column, code; duplicates removed.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        let key = |d: &Diagnostic| (d.place.file.clone(), d.place.line, d.place.column, d.code, d.message.key.clone());
        self.items.sort_by_key(key);
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
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "did you mean `x`?" for the closest of `candidates`, if any is close enough.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<Message> {
    closest(word, candidates).map(|c| msg!("hint-did-you-mean", word = c))
}
