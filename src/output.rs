//! Output of commands: lines on stdout that end quietly when the reader goes away.

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
        eprintln!("yishi: cannot write the output: {e}");
        std::process::exit(2);
    }
}
