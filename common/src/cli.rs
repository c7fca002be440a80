//! What both binaries do the same way at their edges: one-line usage errors and logging.

use std::process::ExitCode;

/// Prints help and version as clap does; any other parse error as one line on stderr, exit 2.
pub fn exit_on_clap_error(error: clap::Error, program: &str) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    // No command given: the help is the message, and it is a usage error like any other.
    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = error.print();
        return ExitCode::from(2);
    }
    eprintln!("{program}: {}", one_line(&error.render().to_string()));
    ExitCode::from(2)
}

/// Folds clap's multi-line message into one line, dropping its usage and "try --help" lines.
fn one_line(rendered: &str) -> String {
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .collect();
    let mut line = parts.join(" ");
    line.push_str(" (see --help)");
    line
}

/// The `-v` flag both binaries take.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Verbosity {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Logs to stderr, compact and without timestamps (journald adds its own). `-v` is debug,
/// `-vv` trace; `RUST_LOG` overrides both.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_errors_fold_to_one_line() {
        let text = "error: invalid value '0' for '<SPEC>': port 0 is not a real port\n\nFor more information, try '--help'.\n";
        assert_eq!(
            super::one_line(text),
            "error: invalid value '0' for '<SPEC>': port 0 is not a real port (see --help)"
        );
        let text = "error: the following required arguments were not provided:\n  <SPEC>\n\nUsage: roamgw add-port <SPEC>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            super::one_line(text),
            "error: the following required arguments were not provided: <SPEC> (see --help)"
        );
    }
}
