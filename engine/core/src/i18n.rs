//! Messages for people, in their language. Everything the engine says to a person is a
//! [`Message`]: a key of the catalog and its arguments, rendered at the edge (CLI, API,
//! console) in the reader's [`Lang`]. Messages are stored as data (a refusal in a case's
//! history, a diagnostic), never as text, so each reader sees them in their own language.
//!
//! The catalog is one Fluent file per language (`engine/core/locales/*.ftl`), compiled into the
//! binary. A test keeps the languages in step: the same keys, the same placeholders.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use serde::{Deserialize, Serialize};

/// A language the catalog speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lang {
    /// Simplified Chinese, the default.
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::ZhCn, Lang::En];

    /// The BCP 47 tag (`zh-CN`, `en`).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    /// Reads a language tag or a locale name (`zh`, `zh-CN`, `zh_CN.UTF-8`, `zh-Hans`, `en-US`,
    /// `C`); `None` for a language the catalog does not speak.
    pub fn parse(tag: &str) -> Option<Lang> {
        let t = tag.trim().to_ascii_lowercase();
        let base = t.split(['-', '_', '.', '@']).next().unwrap_or("");
        match base {
            "zh" => Some(Lang::ZhCn),
            "en" | "c" | "posix" => Some(Lang::En),
            _ => None,
        }
    }

    /// The best language for an HTTP `Accept-Language` header (quality values honoured), or
    /// `None` when it names none the catalog speaks.
    pub fn negotiate(accept: &str) -> Option<Lang> {
        let mut best: Option<(f32, usize, Lang)> = None;
        for (i, part) in accept.split(',').enumerate() {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim();
            let q = it
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q <= 0.0 || tag == "*" {
                continue;
            }
            if let Some(lang) = Lang::parse(tag)
                && best.is_none_or(|(bq, bi, _)| q > bq || (q == bq && i < bi))
            {
                best = Some((q, i, lang));
            }
        }
        best.map(|(_, _, l)| l)
    }

    /// The separator of a list of items (`a, b` / `a、b`).
    fn list_separator(self) -> &'static str {
        match self {
            Lang::ZhCn => "、",
            Lang::En => ", ",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// One argument of a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Arg {
    Int(i64),
    Num(f64),
    Str(String),
    /// A message of its own, rendered in the same language (a type's name in a sentence).
    Msg(Box<Message>),
    /// Items joined the language's way.
    List(Vec<Arg>),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Str(s.to_owned())
    }
}
impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Str(s)
    }
}
impl From<&String> for Arg {
    fn from(s: &String) -> Self {
        Arg::Str(s.clone())
    }
}
impl From<Cow<'_, str>> for Arg {
    fn from(s: Cow<'_, str>) -> Self {
        Arg::Str(s.into_owned())
    }
}
macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl From<$t> for Arg {
            fn from(n: $t) -> Self {
                Arg::Int(n as i64)
            }
        }
    )*};
}
int_arg!(i64, i32, u32, u64, usize, u16, u8);
impl From<f64> for Arg {
    fn from(n: f64) -> Self {
        Arg::Num(n)
    }
}
impl From<Message> for Arg {
    fn from(m: Message) -> Self {
        Arg::Msg(Box::new(m))
    }
}
impl<T: Into<Arg>> From<Vec<T>> for Arg {
    fn from(items: Vec<T>) -> Self {
        Arg::List(items.into_iter().map(Into::into).collect())
    }
}

/// What to say to a person: a catalog key and its arguments. Stored (and sent between
/// processes) as the key and arguments; serialised inside [`rendering`] as the text in that
/// language, which is how the API and the console send messages to people.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub key: Cow<'static, str>,
    pub args: BTreeMap<String, Arg>,
}

impl Message {
    pub fn new(key: &'static str) -> Self {
        Message { key: Cow::Borrowed(key), args: BTreeMap::new() }
    }

    /// Adds an argument.
    pub fn arg(mut self, name: &str, value: impl Into<Arg>) -> Self {
        self.args.insert(name.to_owned(), value.into());
        self
    }

    /// Text that came from outside the catalog (a library's error, a person's words), shown
    /// as it is.
    pub fn verbatim(text: impl Into<String>) -> Self {
        Message::new("verbatim").arg("text", text.into())
    }

    /// Words a workflow's author wrote (a title, a summary), in one language or several.
    pub fn text(t: &crate::model::Text) -> Self {
        match t {
            crate::model::Text::Plain(s) => Message::verbatim(s.clone()),
            crate::model::Text::Translated(m) => {
                let mut out = Message::new("translated");
                for (lang, s) in m {
                    out.args.insert(lang.clone(), Arg::Str(s.clone()));
                }
                out
            }
        }
    }

    /// The message in `lang`.
    pub fn render(&self, lang: Lang) -> String {
        CATALOG.render(self, lang)
    }
}

thread_local! {
    static RENDERING: std::cell::Cell<Option<Lang>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with every [`Message`] it serialises rendered as text in `lang` (an API response
/// body, a console page), instead of as its key and arguments.
pub fn rendering<T>(lang: Lang, f: impl FnOnce() -> T) -> T {
    let previous = RENDERING.with(|r| r.replace(Some(lang)));
    let out = f();
    RENDERING.with(|r| r.set(previous));
    out
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(lang) = RENDERING.with(std::cell::Cell::get) {
            return s.serialize_str(&self.render(lang));
        }
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Message", 2)?;
        st.serialize_field("key", &self.key)?;
        if !self.args.is_empty() {
            st.serialize_field("args", &self.args)?;
        }
        st.end()
    }
}

/// A message as stored: the key and arguments, or (as stored before messages were data) plain
/// English text, kept as it is.
impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Stored {
            key: String,
            #[serde(default)]
            args: BTreeMap<String, Arg>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Data(Stored),
        }
        Ok(match Either::deserialize(d)? {
            Either::Text(t) => Message::verbatim(t),
            Either::Data(s) => Message { key: Cow::Owned(s.key), args: s.args },
        })
    }
}

impl schemars::JsonSchema for Message {
    fn schema_name() -> Cow<'static, str> {
        "Message".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Text for people, in the language of the request (Accept-Language)."
        })
    }
}

/// The English text, for logs and `Display`.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(Lang::En))
    }
}

/// `msg!("key", name = value, ...)`: a [`Message`].
#[macro_export]
macro_rules! msg {
    ($key:literal $(, $name:ident = $value:expr)* $(,)?) => {
        $crate::i18n::Message::new($key) $(.arg(stringify!($name), $value))*
    };
}

/// The Fluent source of each language.
pub const SOURCES: [(Lang, &str); 2] =
    [(Lang::ZhCn, include_str!("../locales/zh-CN.ftl")), (Lang::En, include_str!("../locales/en.ftl"))];

struct Catalog {
    bundles: Vec<(Lang, FluentBundle<FluentResource>)>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let bundles = SOURCES
        .iter()
        .map(|(lang, src)| {
            let resource = FluentResource::try_new((*src).to_owned()).unwrap_or_else(|(r, errors)| {
                // A syntax error in the catalog is a build defect the catalog test reports; the
                // rest of the file still works.
                tracing::error!(lang = %lang, ?errors, "the message catalog has syntax errors");
                r
            });
            let id = lang.tag().parse().expect("language tags of the catalog parse");
            let mut bundle = FluentBundle::new_concurrent(vec![id]);
            bundle.set_use_isolating(false);
            if let Err(errors) = bundle.add_resource(resource) {
                tracing::error!(lang = %lang, ?errors, "the message catalog has duplicate keys");
            }
            (*lang, bundle)
        })
        .collect();
    Catalog { bundles }
});

impl Catalog {
    fn bundle(&self, lang: Lang) -> &FluentBundle<FluentResource> {
        &self.bundles.iter().find(|(l, _)| *l == lang).unwrap_or(&self.bundles[0]).1
    }

    fn render(&self, m: &Message, lang: Lang) -> String {
        if m.key == "verbatim" {
            return m.args.get("text").map(|a| self.arg_text(a, lang)).unwrap_or_default();
        }
        if m.key == "translated" {
            let pick = m
                .args
                .iter()
                .find(|(k, _)| Lang::parse(k) == Some(lang))
                .or_else(|| m.args.iter().find(|(k, _)| Lang::parse(k) == Some(Lang::En)))
                .or_else(|| m.args.iter().next());
            return pick.map(|(_, a)| self.arg_text(a, lang)).unwrap_or_default();
        }
        let mut args = FluentArgs::with_capacity(m.args.len());
        for (name, a) in &m.args {
            let value = match a {
                Arg::Int(n) => FluentValue::from(*n),
                Arg::Num(n) => FluentValue::from(*n),
                other => FluentValue::from(self.arg_text(other, lang)),
            };
            args.set(name.as_str(), value);
        }
        for l in [lang, Lang::En] {
            let bundle = self.bundle(l);
            if let Some(pattern) = bundle.get_message(&m.key).and_then(|msg| msg.value()) {
                let mut errors = Vec::new();
                let text = bundle.format_pattern(pattern, Some(&args), &mut errors);
                return text.into_owned();
            }
        }
        // A key the catalog lacks (a test catches these): say what is known rather than nothing.
        let args: Vec<String> = m.args.iter().map(|(k, v)| format!("{k}={}", self.arg_text(v, lang))).collect();
        format!("{} {}", m.key, args.join(" ")).trim().to_owned()
    }

    fn arg_text(&self, a: &Arg, lang: Lang) -> String {
        match a {
            Arg::Int(n) => n.to_string(),
            Arg::Num(n) => n.to_string(),
            Arg::Str(s) => s.clone(),
            Arg::Msg(m) => self.render(m, lang),
            Arg::List(items) => {
                items.iter().map(|i| self.arg_text(i, lang)).collect::<Vec<_>>().join(lang.list_separator())
            }
        }
    }
}

/// Whether the catalog has a message `key`.
pub fn has_key(key: &str) -> bool {
    CATALOG.bundle(Lang::En).has_message(key)
}

/// Replaces, inside a JSON document, every object that is a stored [`Message`] (a `key` of the
/// catalog, and `args`) by its text in `lang`: messages that steps wrote into a case's data.
pub fn render_in_json(v: &mut serde_json::Value, lang: Lang) {
    match v {
        serde_json::Value::Object(m) => {
            let is_message = m.get("key").and_then(serde_json::Value::as_str).is_some_and(|k| {
                (k == "verbatim" || k == "translated" || has_key(k)) && m.keys().all(|x| x == "key" || x == "args")
            });
            if is_message && let Ok(msg) = serde_json::from_value::<Message>(serde_json::Value::Object(m.clone())) {
                *v = serde_json::Value::String(msg.render(lang));
                return;
            }
            for x in m.values_mut() {
                render_in_json(x, lang);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| render_in_json(x, lang)),
        _ => {}
    }
}

/// Keys of a Fluent source and the variables each uses (for the catalog's tests).
pub fn keys_and_variables(source: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    use fluent_syntax::ast;
    let resource = fluent_syntax::parser::parse(source).map_err(|(_, errors)| format!("{errors:?}"))?;
    let mut out = BTreeMap::new();
    for entry in resource.body {
        if let ast::Entry::Message(m) = entry {
            let mut vars = Vec::new();
            if let Some(p) = &m.value {
                pattern_variables(p, &mut vars);
            }
            vars.sort();
            vars.dedup();
            out.insert(m.id.name.to_owned(), vars);
        }
    }
    Ok(out)
}

fn pattern_variables(p: &fluent_syntax::ast::Pattern<&str>, out: &mut Vec<String>) {
    use fluent_syntax::ast::{Expression, InlineExpression, PatternElement};
    fn inline(e: &InlineExpression<&str>, out: &mut Vec<String>) {
        match e {
            InlineExpression::VariableReference { id } => out.push(id.name.to_owned()),
            InlineExpression::Placeable { expression } => expr(expression, out),
            InlineExpression::FunctionReference { arguments, .. } => {
                for a in &arguments.positional {
                    inline(a, out);
                }
            }
            _ => {}
        }
    }
    fn expr(e: &Expression<&str>, out: &mut Vec<String>) {
        match e {
            Expression::Inline(i) => inline(i, out),
            Expression::Select { selector, variants } => {
                inline(selector, out);
                for v in variants {
                    pattern_variables(&v.value, out);
                }
            }
        }
    }
    for el in &p.elements {
        if let PatternElement::Placeable { expression } = el {
            expr(expression, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_language_it_speaks() {
        assert_eq!(Lang::negotiate("zh-CN,zh;q=0.9,en;q=0.8"), Some(Lang::ZhCn));
        assert_eq!(Lang::negotiate("en-US,en;q=0.9,zh;q=0.8"), Some(Lang::En));
        assert_eq!(Lang::negotiate("fr;q=1, en;q=0.3, zh;q=0.5"), Some(Lang::ZhCn));
        assert_eq!(Lang::negotiate("zh;q=0, en"), Some(Lang::En));
        assert_eq!(Lang::negotiate("fr, de"), None);
        assert_eq!(Lang::parse("zh_CN.UTF-8"), Some(Lang::ZhCn));
        assert_eq!(Lang::parse("C.UTF-8"), Some(Lang::En));
    }

    #[test]
    fn every_language_has_the_same_keys_and_placeholders() {
        let mut catalogs = Vec::new();
        for (lang, src) in SOURCES {
            catalogs.push((lang, keys_and_variables(src).unwrap_or_else(|e| panic!("{lang}: {e}"))));
        }
        let (first, reference) = &catalogs[0];
        for (lang, keys) in &catalogs[1..] {
            for (k, vars) in reference {
                match keys.get(k) {
                    None => panic!("`{k}` is in {first} but not in {lang}"),
                    Some(v) if v != vars => panic!("`{k}` uses {vars:?} in {first} but {v:?} in {lang}"),
                    Some(_) => {}
                }
            }
            for k in keys.keys() {
                assert!(reference.contains_key(k), "`{k}` is in {lang} but not in {first}");
            }
        }
    }

    #[test]
    fn messages_render_with_nested_messages_and_lists() {
        let m = msg!("run-field-type", field = "quorum", expected = msg!("type-share"));
        assert_eq!(m.render(Lang::En), "field `quorum` must be a share (0 to 1)");
        assert_eq!(m.render(Lang::ZhCn), "字段 `quorum` 必须是比例（0 到 1 之间）");
        let m = msg!("hint-known-kinds", kinds = vec!["vote", "meeting"]);
        assert_eq!(m.render(Lang::En), "known kinds: vote, meeting");
        assert_eq!(m.render(Lang::ZhCn), "已有的步骤类型：vote、meeting");
        let stored = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Message>(&stored).unwrap(), m, "{stored}");
        let shown = rendering(Lang::ZhCn, || serde_json::to_string(&m).unwrap());
        assert_eq!(shown, "\"已有的步骤类型：vote、meeting\"");
        assert_eq!(
            serde_json::from_str::<Message>("\"old English text\"").unwrap(),
            Message::verbatim("old English text")
        );
        assert_eq!(msg!("no-such-key", x = 1).render(Lang::En), "no-such-key x=1");
    }
}
