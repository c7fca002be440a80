//! The `roamer` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_CONFIG: &str = "/etc/roamgw/roamer.toml";

#[derive(Debug, Parser)]
#[command(
    name = "roamer",
    version,
    about = "The laptop side of roamgw: keeps a WireGuard tunnel to the gateway up while the laptop roams",
    after_help = "Get the config on the droplet with `roamgw show-config laptop --format roamer`, store it\n\
                  as /etc/roamgw/roamer.toml (0600), then:\n  roamer check"
)]
pub struct Cli {
    #[command(flatten)]
    pub verbosity: roamgw_common::cli::Verbosity,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a roamer config and report what `roamer run` would do with it.
    #[command(
        after_help = "Examples:\n  roamer check\n  roamer check --config ./roamer.toml --json"
    )]
    Check(CheckArgs),

    /// Bring the tunnel up and keep it up until SIGTERM/SIGINT (as root, or with CAP_NET_ADMIN).
    #[command(
        after_help = "Examples:\n  roamer run\n  roamer run --config ./roamer.toml\n\n\
        Only the tunnel subnet goes through the tunnel; everything else leaves directly."
    )]
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The roamer config (`roamgw show-config NAME --format roamer` prints it).
    #[arg(long, env = "ROAMER_CONFIG", default_value = DEFAULT_CONFIG, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The roamer config (`roamgw show-config NAME --format roamer` prints it).
    #[arg(long, env = "ROAMER_CONFIG", default_value = DEFAULT_CONFIG, value_name = "FILE")]
    pub config: PathBuf,

    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
