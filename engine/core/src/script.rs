//! The Rhai sandbox: scripts are compiled once at check time and run with hard limits.
//!
//! A script sees only what it is given (the instance's data, the params, the step's settings,
//! the current time and a few more named values); it has no file, network or process access
//! (`no_module` removes `import`; `eval` is disabled; `print` goes to the log). Limits on
//! operations, call depth, expression depth, string, array and map sizes and wall-clock time
//! turn a runaway script into a [`ScriptError`] on that one evaluation.

use crate::i18n::Message;
use crate::msg;
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use rhai::{AST, Dynamic, Engine, EvalAltResult, Map, Position, Scope};
use serde::Serialize;

/// Limits applied to every evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_function_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub wall_clock: StdDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 200_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            wall_clock: StdDuration::from_millis(250),
        }
    }
}

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// A configured Rhai engine shared by every script of a catalog.
pub struct Sandbox {
    engine: Engine,
    limits: Limits,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("limits", &self.limits).finish()
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new(Limits::default())
    }
}

impl Sandbox {
    pub fn new(limits: Limits) -> Self {
        let mut engine = Engine::new();
        engine.set_max_operations(limits.max_operations);
        engine.set_max_call_levels(limits.max_call_levels);
        engine.set_max_expr_depths(limits.max_expr_depth, limits.max_function_expr_depth);
        engine.set_max_string_size(limits.max_string_size);
        engine.set_max_array_size(limits.max_array_size);
        engine.set_max_map_size(limits.max_map_size);
        engine.set_strict_variables(true);
        engine.disable_symbol("eval");
        engine.on_print(|s| tracing::info!(target: "yishi::script", "{s}"));
        engine.on_debug(|s, _, pos| tracing::debug!(target: "yishi::script", "{pos:?}: {s}"));
        engine.on_progress(|ops| {
            if ops % 512 == 0 {
                let late = DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() > t));
                if late {
                    return Some(Dynamic::from("wall-clock limit"));
                }
            }
            None
        });
        // Helpers that scripts commonly need.
        engine.register_fn("days", |n: i64| n * 86_400_000);
        engine.register_fn("hours", |n: i64| n * 3_600_000);
        Sandbox { engine, limits }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles `text`, written at `origin` in a rules file. `names` are the variables the
    /// script may use: any other variable is a compile error (strict variables).
    pub fn compile(&self, text: &str, origin: ScriptOrigin, names: &[&str]) -> Result<Script, ScriptError> {
        let mut scope = Scope::new();
        for n in names {
            scope.push_dynamic(*n, Dynamic::UNIT);
        }
        let ast = self.engine.compile_with_scope(&scope, text).map_err(|e| {
            let pos = e.position();
            ScriptError {
                kind: ScriptErrorKind::Syntax,
                message: msg!("script-syntax", detail = e.err_type().to_string()),
                position: origin.map(pos),
            }
        })?;
        Ok(Script { ast: Arc::new(ast), origin: Arc::new(origin), text: Arc::from(text) })
    }

    /// Evaluates `script` with `vars` as its variables. Returns the value and the variables
    /// after the run (so that a script step's changes to `data` can be read back).
    pub fn eval(
        &self,
        script: &Script,
        vars: Vec<(&'static str, Dynamic)>,
    ) -> Result<(Dynamic, Scope<'static>), ScriptError> {
        let mut scope = Scope::new();
        for (name, value) in vars {
            scope.push_dynamic(name, value);
        }
        let deadline = Instant::now() + self.limits.wall_clock;
        let previous = DEADLINE.with(|d| d.replace(Some(deadline)));
        let result = self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, &script.ast);
        DEADLINE.with(|d| d.set(previous));
        match result {
            Ok(v) => Ok((v, scope)),
            Err(e) => Err(script.runtime_error(*e)),
        }
    }

    /// Calls function `name` defined in `script` (custom step kinds written in Rhai).
    pub fn call(&self, script: &Script, name: &str, args: Vec<Dynamic>) -> Result<Dynamic, ScriptError> {
        let mut scope = Scope::new();
        let deadline = Instant::now() + self.limits.wall_clock;
        let previous = DEADLINE.with(|d| d.replace(Some(deadline)));
        let result = self.engine.call_fn::<Dynamic>(&mut scope, &script.ast, name, args);
        DEADLINE.with(|d| d.set(previous));
        result.map_err(|e| script.runtime_error(*e))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Where a script is written: a file and the line and column where its text begins, so
/// that positions inside the script map to positions in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScriptOrigin {
    pub file: String,
    /// 1-based line of the script's first character in `file`.
    pub line: u32,
    /// 1-based column of the script's first character in `file`.
    pub column: u32,
}

impl ScriptOrigin {
    pub fn map(&self, pos: Position) -> Option<(String, u32, u32)> {
        let line = pos.line()? as u32;
        let col = pos.position().unwrap_or(1) as u32;
        let (l, c) = if line == 1 { (self.line, self.column + col - 1) } else { (self.line + line - 1, col) };
        Some((self.file.clone(), l, c))
    }
}

/// A compiled script. Cheap to clone.
#[derive(Clone)]
pub struct Script {
    ast: Arc<AST>,
    origin: Arc<ScriptOrigin>,
    text: Arc<str>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("origin", &self.origin).field("text", &self.text).finish()
    }
}

impl Script {
    pub fn text(&self) -> &str {
        &self.text
    }
    pub fn origin(&self) -> &ScriptOrigin {
        &self.origin
    }
    /// Whether the script defines a function `name` with `arity` parameters.
    pub fn has_fn(&self, name: &str, arity: usize) -> bool {
        self.ast.iter_functions().any(|f| f.name == name && f.params.len() == arity)
    }

    fn runtime_error(&self, e: EvalAltResult) -> ScriptError {
        let pos = e.position();
        let limit = match &e {
            EvalAltResult::ErrorTooManyOperations(_) => Some(msg!("limit-operations")),
            EvalAltResult::ErrorStackOverflow(_) => Some(msg!("limit-call-depth")),
            EvalAltResult::ErrorDataTooLarge(..) => Some(msg!("limit-size")),
            EvalAltResult::ErrorTerminated(..) => Some(msg!("limit-wall-clock")),
            EvalAltResult::ErrorTooManyVariables(_) | EvalAltResult::ErrorTooManyModules(_) => {
                Some(msg!("limit-resources"))
            }
            _ => None,
        };
        let (kind, message) = match limit {
            Some(limit) => (ScriptErrorKind::Limit, msg!("script-limit", limit = limit, detail = e.to_string())),
            None => (ScriptErrorKind::Runtime, msg!("script-runtime", detail = e.to_string())),
        };
        ScriptError { kind, message, position: self.origin.map(pos) }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptErrorKind {
    Syntax,
    Runtime,
    /// A sandbox limit stopped the script.
    Limit,
    /// The script returned a value of the wrong kind.
    WrongResult,
}

/// A script that failed, with where in the rules file it failed.
#[derive(Clone, Debug, PartialEq, Serialize, thiserror::Error)]
#[error("{}{message}", position.as_ref().map(|(f, l, c)| format!("{f}:{l}:{c}: ")).unwrap_or_default())]
pub struct ScriptError {
    pub kind: ScriptErrorKind,
    /// What went wrong (the script engine's own words inside a sentence of the catalog).
    pub message: Message,
    /// File, line and column in the rules file, when known.
    pub position: Option<(String, u32, u32)>,
}

impl ScriptError {
    /// The message with where it happened, when known.
    pub fn located(&self) -> Message {
        match &self.position {
            Some((file, line, column)) => {
                msg!("script-at", file = file, line = *line, column = *column, error = self.message.clone())
            }
            None => self.message.clone(),
        }
    }

    /// The script returned `got` where `expected` (a description, such as `type-duration`)
    /// was needed.
    pub fn wrong_result(script: &Script, expected: Message, got: &Dynamic) -> Self {
        ScriptError {
            kind: ScriptErrorKind::WrongResult,
            message: msg!(
                "script-wrong-result",
                got_type = got.type_name(),
                got = got.to_string(),
                expected = expected
            ),
            position: Some((script.origin.file.clone(), script.origin.line, script.origin.column)),
        }
    }
}

/// JSON to Rhai.
pub fn to_dynamic(value: &serde_json::Value) -> Dynamic {
    rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT)
}

/// Rhai to JSON. Values Rhai has that JSON lacks (functions, timestamps) become strings.
pub fn from_dynamic(value: &Dynamic) -> serde_json::Value {
    rhai::serde::from_dynamic::<serde_json::Value>(value)
        .unwrap_or_else(|_| serde_json::Value::String(value.to_string()))
}

/// Rhai map from a JSON object (an empty map for anything else).
pub fn to_map(value: &serde_json::Value) -> Dynamic {
    match value {
        serde_json::Value::Object(_) => to_dynamic(value),
        _ => Dynamic::from_map(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> ScriptOrigin {
        ScriptOrigin { file: "w.toml".into(), line: 10, column: 5 }
    }

    fn run(src: &str) -> Result<Dynamic, ScriptError> {
        let sb = Sandbox::default();
        let s = sb.compile(src, origin(), &["data"])?;
        sb.eval(&s, vec![("data", to_map(&serde_json::json!({"n": 7})))]).map(|(v, _)| v)
    }

    #[test]
    fn evaluates_with_data() {
        assert_eq!(run("data.n * 6").unwrap().as_int().unwrap(), 42);
    }

    #[test]
    fn syntax_errors_map_into_the_file() {
        let err = run("data.n +* 2").unwrap_err();
        assert_eq!(err.kind, ScriptErrorKind::Syntax);
        let (file, line, col) = err.position.unwrap();
        assert_eq!((file.as_str(), line), ("w.toml", 10));
        assert!(col > 5);
    }

    #[test]
    fn unknown_variables_are_compile_errors() {
        assert_eq!(run("other_instance.data").unwrap_err().kind, ScriptErrorKind::Syntax);
    }

    #[test]
    fn infinite_loop_is_stopped() {
        let err = run("loop { }").unwrap_err();
        assert!(err.kind == ScriptErrorKind::Limit, "{err:?}");
    }

    #[test]
    fn runaway_recursion_is_stopped() {
        let err = run("fn f(x) { f(x + 1) } f(0)").unwrap_err();
        assert!(err.kind == ScriptErrorKind::Limit, "{err:?}");
    }

    #[test]
    fn string_and_array_bombs_are_stopped() {
        let err = run("let s = \"xxxxxxxx\"; loop { s += s; }").unwrap_err();
        assert!(err.kind == ScriptErrorKind::Limit, "{err:?}");
        let err = run("let a = []; loop { a.push(1); }").unwrap_err();
        assert!(err.kind == ScriptErrorKind::Limit, "{err:?}");
    }

    #[test]
    fn wall_clock_limit_stops_slow_scripts() {
        let sb =
            Sandbox::new(Limits { max_operations: 0, wall_clock: StdDuration::from_millis(50), ..Limits::default() });
        let s = sb.compile("loop { }", origin(), &[]).unwrap();
        let err = sb.eval(&s, vec![]).unwrap_err();
        assert_eq!(err.kind, ScriptErrorKind::Limit, "{err:?}");
        assert_eq!(err.message.args["limit"], crate::i18n::Arg::Msg(Box::new(msg!("limit-wall-clock"))));
    }

    #[test]
    fn deeply_nested_expressions_are_refused_at_compile_time() {
        let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        let err = run(&deep).unwrap_err();
        assert_eq!(err.kind, ScriptErrorKind::Syntax, "{err:?}");
    }

    #[test]
    fn no_file_or_module_access() {
        assert!(run("import \"x\" as y; 1").is_err());
        assert!(run("eval(\"1\")").is_err());
    }

    #[test]
    fn thrown_errors_are_runtime_errors() {
        let err = run("throw \"nope\"").unwrap_err();
        assert_eq!(err.kind, ScriptErrorKind::Runtime);
        assert!(err.message.to_string().contains("nope"));
    }
}
