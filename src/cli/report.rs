//! Diagnostics as a person reads them at a terminal: the source line, a marker under the exact
//! span (Chinese characters take two columns, and the marker follows), labels on related places
//! and the hint, in the style of rustc (annotate-snippets), in the reader's language.

use annotate_snippets::renderer::DecorStyle;
use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};
use yishi_core::diag::{Diagnostic, Severity};
use yishi_core::files::FileSet;
use yishi_core::i18n::Lang;
use yishi_core::msg;

/// How to draw reports.
pub struct Style {
    pub color: bool,
    pub lang: Lang,
}

/// One diagnostic with its source, as text (ending without a newline).
pub fn render(d: &Diagnostic, files: &FileSet, style: &Style) -> String {
    let lang = style.lang;
    let title = d.message.render(lang);
    let level = match d.severity {
        Severity::Error => Level::ERROR.with_name(msg!("diag-error").render(lang)),
        Severity::Warning => Level::WARNING.with_name(msg!("diag-warning").render(lang)),
    };
    let help = Level::HELP.with_name(msg!("diag-hint-name").render(lang));
    let p = &d.place;
    let text = files.get(&p.file);
    let head = level.primary_title(title).id(d.code.as_str());
    let mut main = match (text, &p.span) {
        (Some(text), Some(span)) => {
            let mut snippet = Snippet::source(text).path(p.file.as_str()).fold(true);
            let end = span.end.max(span.start).min(text.len());
            snippet = snippet.annotation(AnnotationKind::Primary.span(span.start.min(end)..end));
            for l in d.labels.iter().filter(|l| l.place.file == p.file) {
                if let Some(ls) = &l.place.span {
                    let le = ls.end.max(ls.start).min(text.len());
                    snippet = snippet
                        .annotation(AnnotationKind::Context.span(ls.start.min(le)..le).label(l.message.render(lang)));
                }
            }
            head.element(snippet)
        }
        _ if p.line > 0 => {
            head.element(Origin::path(p.file.as_str()).line(p.line as usize).char_column(p.column as usize))
        }
        _ => head.element(Origin::path(p.file.as_str())),
    };
    for l in d.labels.iter().filter(|l| l.place.file != p.file) {
        main = main.element(Origin::path(l.place.file.as_str()).line(l.place.line.max(1) as usize));
        main = main.element(Level::NOTE.message(l.message.render(lang)));
    }
    let mut groups = vec![main];
    if let Some(hint) = &d.hint {
        groups.push(Group::with_title(help.secondary_title(hint.render(lang))));
    }
    let renderer = if style.color { Renderer::styled() } else { Renderer::plain() }.decor_style(DecorStyle::Ascii);
    renderer.render(&groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yishi_core::diag::{Code, Diagnostics, Origin as At};

    #[test]
    fn the_marker_sits_under_chinese_text() {
        let mut files = FileSet::new();
        let text = "id = \"议事\"\n[[steps]]\nid = \"表决\"\nkind = \"投票\"\n";
        files.insert("u/w.toml", text);
        let start = text.find("\"投票\"").unwrap();
        let mut diags = Diagnostics::new();
        diags.push(
            Code::UnknownKind,
            &At::new("u/w.toml", Some(start..start + "\"投票\"".len())),
            Some(text),
            msg!("check-unknown-kind", kind = "投票"),
            Some(msg!("hint-did-you-mean", word = "vote")),
        );
        let d = &diags.into_sorted()[0];
        let out = render(d, &files, &Style { color: false, lang: Lang::ZhCn });
        assert!(out.contains("错误[Y0105]: 没有名为 `投票` 的步骤类型"), "{out}");
        assert!(out.contains("u/w.toml:4:8"), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        let src = lines.iter().position(|l| l.contains("kind = \"投票\"")).unwrap();
        let marker = lines[src + 1];
        // `kind = ` is 7 columns; `"投票"` is 6 columns wide (two double-width characters).
        let prefix = lines[src].find("kind").unwrap();
        assert_eq!(&marker[prefix..], "       ^^^^^^", "{out}");
        assert!(out.contains("提示: 你是不是想写 `vote`？"), "{out}");
    }
}
