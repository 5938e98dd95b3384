//! The message catalog is whole: every key the code names exists in every language (with the
//! same placeholders, checked in `yishi-core`), every command and argument of the CLI has its
//! help in the catalog, and no user-facing text is written as a literal outside it (plugins
//! included): printed lines, verbatim messages. Logs and panics are for operators and
//! developers and stay in English.

use std::path::{Path, PathBuf};

use syn::visit::Visit;
use yishi_core::i18n::has_key;

fn sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["src", "engine/core/src", "engine/engine/src", "plugins/src"] {
        walk(&root.join(dir), &mut out);
    }
    assert!(out.len() > 40, "found the sources: {}", out.len());
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Whether a literal says something to a person: letters outside `{...}` placeholders.
fn speaks(text: &str) -> bool {
    let mut depth = 0;
    text.chars().any(|c| {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        depth == 0 && c != '{' && c != '}' && (c.is_alphabetic())
    })
}

#[derive(Default)]
struct Finder {
    file: String,
    keys: Vec<(String, String)>,
    literals: Vec<String>,
}

impl Finder {
    fn first_literal(tokens: &proc_macro2::TokenStream) -> Option<syn::LitStr> {
        let first = tokens.clone().into_iter().next()?;
        syn::parse2::<syn::LitStr>(first.into()).ok()
    }
}

impl<'ast> Visit<'ast> for Finder {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let is_test =
            m.attrs.iter().any(|a| a.path().is_ident("cfg") && a.meta.to_token_stream_string().contains("test"));
        if !is_test {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !f.attrs.iter().any(|a| a.path().is_ident("test")) {
            syn::visit::visit_item_fn(self, f);
        }
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let name = m.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
        match name.as_str() {
            "msg" => {
                if let Some(lit) = Self::first_literal(&m.tokens) {
                    self.keys.push((self.file.clone(), lit.value()));
                }
            }
            "out" | "println" | "eprintln" | "print" | "eprint" | "format_args" => {
                if let Some(lit) = Self::first_literal(&m.tokens)
                    && speaks(&lit.value())
                {
                    self.literals.push(format!("{}: {name}!(\"{}\")", self.file, lit.value()));
                }
            }
            _ => {}
        }
        // Macros hold expressions (`msg!` inside `out!`): look inside them too.
        if let Ok(exprs) = m.parse_body_with(syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated)
        {
            for e in &exprs {
                self.visit_expr(e);
            }
        }
    }
    fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
        if let syn::Expr::Path(p) = &*c.func {
            let path: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
            let tail = path.iter().rev().take(2).rev().cloned().collect::<Vec<_>>().join("::");
            if let Some(syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. })) = c.args.first() {
                match tail.as_str() {
                    "Message::new" => self.keys.push((self.file.clone(), s.value())),
                    "Message::verbatim" if speaks(&s.value()) => {
                        self.literals.push(format!("{}: Message::verbatim(\"{}\")", self.file, s.value()));
                    }
                    _ => {}
                }
            }
        }
        syn::visit::visit_expr_call(self, c);
    }
}

trait MetaText {
    fn to_token_stream_string(&self) -> String;
}
impl MetaText for syn::Meta {
    fn to_token_stream_string(&self) -> String {
        quote_meta(self)
    }
}
fn quote_meta(m: &syn::Meta) -> String {
    match m {
        syn::Meta::List(l) => l.tokens.to_string(),
        syn::Meta::Path(p) => p.segments.iter().map(|s| s.ident.to_string()).collect::<Vec<_>>().join("::"),
        syn::Meta::NameValue(_) => String::new(),
    }
}

fn scan() -> Finder {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut f = Finder::default();
    for path in sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        f.file = path.strip_prefix(root).unwrap().display().to_string();
        f.visit_file(&file);
    }
    f
}

#[test]
fn every_key_the_code_names_is_in_the_catalog() {
    let f = scan();
    assert!(f.keys.len() > 300, "found the keys: {}", f.keys.len());
    let missing: Vec<String> = f
        .keys
        .iter()
        .filter(|(_, k)| !has_key(k) && k != "verbatim" && k != "translated")
        .map(|(file, k)| format!("{file}: `{k}`"))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from engine/core/locales (edit tools/catalog/messages.py):\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_user_facing_text_is_a_literal_outside_the_catalog() {
    let f = scan();
    assert!(f.literals.is_empty(), "write these through the catalog (msg!):\n{}", f.literals.join("\n"));
}

#[test]
fn the_finder_finds_what_it_looks_for() {
    let text = r#"
        fn f() { out!("hello {x}"); out!("{}", msg!("cli-ok")); let _ = Message::verbatim("words"); eprintln!("{}: {}", a, b); }
        #[cfg(test)] mod tests { fn g() { out!("fine in tests"); } }
    "#;
    let mut f = Finder { file: "x.rs".into(), ..Finder::default() };
    f.visit_file(&syn::parse_file(text).unwrap());
    assert_eq!(f.keys, [("x.rs".to_owned(), "cli-ok".to_owned())]);
    assert_eq!(f.literals, ["x.rs: out!(\"hello {x}\")", "x.rs: Message::verbatim(\"words\")"]);
}

#[test]
fn every_command_and_argument_has_help_in_the_catalog() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        let about = if path.is_empty() { "cli-about".to_owned() } else { format!("cli-about-{path}") };
        if !has_key(&about) {
            missing.push(about);
        }
        for a in cmd.get_arguments() {
            let id = a.get_id().to_string();
            if id == "help" || id == "version" {
                continue;
            }
            let own = if path.is_empty() { format!("cli-arg-{id}") } else { format!("cli-arg-{path}-{id}") }
                .replace('_', "-");
            let common = format!("cli-arg-common-{id}").replace('_', "-");
            if !has_key(&own) && !has_key(&common) {
                missing.push(own);
            }
        }
        for s in cmd.get_subcommands() {
            let p = if path.is_empty() { s.get_name().to_owned() } else { format!("{path}-{}", s.get_name()) };
            walk(s, &p, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&yishi::cli::Cli::command(), "", &mut missing);
    assert!(missing.is_empty(), "help missing from the catalog:\n{}", missing.join("\n"));
}
