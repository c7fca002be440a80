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

/// The shells `completions` writes for.
pub use clap_complete::Shell;

/// `completions SHELL`, the same for both binaries.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The completion script of `command` for `shell`.
pub fn completions(mut command: clap::Command, shell: Shell) -> String {
    let name = command.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The man page (roff) of `command`: clap_mangen's page, then a section per subcommand with
/// its options and examples (the same text as its `--help`).
pub fn man_page(mut command: clap::Command) -> String {
    command.build();
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = clap_mangen::Man::new(command.clone()).render(&mut out);
    let mut text = String::from_utf8_lossy(&out).into_owned();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        text.push_str(&format!(
            ".SH \"{} {}\"\n",
            command.get_name().to_uppercase(),
            sub.get_name().to_uppercase()
        ));
        if let Some(about) = sub.get_about() {
            text.push_str(&format!(".PP\n{}\n", roff_escape(&about.to_string())));
        }
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            let name = match (arg.get_long(), arg.get_short()) {
                (Some(long), _) => format!("--{long}"),
                (None, Some(short)) => format!("-{short}"),
                (None, None) => arg.get_id().as_str().to_uppercase(),
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            text.push_str(&format!(
                ".TP\n\\fB{}\\fR\n{}\n",
                roff_escape(&name),
                roff_escape(&help)
            ));
        }
        if let Some(after) = sub.get_after_help() {
            text.push_str(&format!(
                ".PP\n.nf\n{}\n.fi\n",
                roff_escape(&after.to_string())
            ));
        }
    }
    text
}

/// Text safe in a roff line: backslashes doubled, no line that starts with a control character.
fn roff_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .lines()
        .map(|line| {
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
