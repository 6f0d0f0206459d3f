//! Standard output of the client subcommands. A write that fails because the reader has gone
//! (EPIPE: `runnel consume t | head`) is an error like any other on its way up, and `main`
//! ends the command quietly with success when it sees one, as `cat` or kcat end.

use std::io::Write;

/// Writes one formatted line to standard output (what [`outln!`] expands to).
pub fn line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args)?;
    stdout.write_all(b"\n")
}

/// Whether `error` comes from writing to a closed pipe.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` that returns the write's error (with `?`) instead of panicking on it.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))?
    };
}
