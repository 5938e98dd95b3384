//! Output of commands: lines on stdout that end quietly when the reader goes away, colour only
//! on a terminal (and never with `NO_COLOR`), and tables whose columns line up with Chinese
//! (double-width) text.

use std::io::IsTerminal;

use unicode_width::UnicodeWidthStr;

/// `println!` that ends quietly when stdout is a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::print_line(format_args!($($arg)*)) };
}
pub(crate) use out;

/// Prints a line to stdout; a reader that went away (`yishi check | head`) ends the command
/// quietly (status 141, as SIGPIPE would) instead of a panic.
pub fn print_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141); // as a tool killed by SIGPIPE would
        }
        eprintln!(
            "{}",
            yishi_core::msg!("cli-error", message = e.to_string()).render(yishi_core::i18n::Lang::default())
        );
        std::process::exit(2);
    }
}

/// Whether stdout takes colour: a terminal, and `NO_COLOR` unset (or empty).
pub fn color_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether stderr takes colour.
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `s` padded with spaces to `width` display columns (a Chinese character takes two).
pub fn pad(s: &str, width: usize) -> String {
    let w = UnicodeWidthStr::width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

/// Prints `rows` under `header` as aligned columns; `right` marks columns aligned right
/// (numbers).
pub fn table(header: &[String], rows: &[Vec<String>], right: &[bool]) {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| UnicodeWidthStr::width(h.as_str())).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(UnicodeWidthStr::width(c.as_str()));
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate().take(n) {
            if i > 0 {
                out.push_str("  ");
            }
            let w = UnicodeWidthStr::width(c.as_str());
            let fill = " ".repeat(widths[i].saturating_sub(w));
            if right.get(i).copied().unwrap_or(false) {
                out.push_str(&fill);
                out.push_str(c);
            } else if i + 1 < n {
                out.push_str(c);
                out.push_str(&fill);
            } else {
                out.push_str(c);
            }
        }
        out
    };
    out!("{}", line(header));
    for r in rows {
        out!("{}", line(r));
    }
}

/// A progress bar for a long command, with `message` before it; drawn only on a terminal
/// (indicatif hides it when standard error is not one).
pub fn progress(total: u64, message: String) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {eta}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    indicatif::ProgressBar::new(total).with_style(style).with_message(message)
}

#[cfg(test)]
mod tests {
    #[test]
    fn padding_counts_chinese_characters_twice() {
        assert_eq!(super::pad("版本", 6), "版本  ");
        assert_eq!(super::pad("id", 6), "id    ");
    }
}
