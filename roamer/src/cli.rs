//! The `roamer` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use roamgw_wg::Preference;

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
        Only the tunnel subnet goes through the tunnel; everything else leaves directly.\n\
        It follows network changes and wake-ups, and puts back what others remove: its \
        interface, its routing rules and tables (systemd-networkd drops foreign rules)."
    )]
    Run(RunArgs),

    /// Start `roamer run` in the background and return once the gateway answers (like `wg-quick up`).
    #[command(
        after_help = "Examples:\n  roamer up\n  roamer up --config ./roamer.toml --wait 30\n\n\
        For a laptop that should always be connected, prefer the systemd unit (contrib/roamer.service)."
    )]
    Up(UpArgs),

    /// Stop the roamer serving this config's interface, however it was started.
    #[command(after_help = "Examples:\n  roamer down\n  roamer down --config ./roamer.toml")]
    Down(ConfigArg),

    /// Show the tunnel: health (up / stale / down and why), gateway, last handshake, traffic.
    #[command(after_help = "Examples:\n  roamer status\n  roamer status --json\n\n\
        Exit status: 0 when the roamer runs, 3 when it does not.")]
    Status(CheckArgs),

    /// Check the laptop for what breaks the tunnel or the forwards: one line per finding, with its fix.
    #[command(
        after_help = "Checks: the config (key modes, subnet collisions, keepalive), the tunnel's \
        health, the routing of replies to forwarded connections (by source, by mark, the UDP table), \
        egress routing, kernel WireGuard.\n\n\
        Examples:\n  roamer doctor\n  roamer doctor --json\n\n\
        Exit status: 1 when a check fails (FAIL), 0 otherwise."
    )]
    Doctor(CheckArgs),

    /// Relay a local UDP port to the gateway's WireGuard over TCP, for a stock wg-quick laptop
    /// on a network that passes no UDP.
    #[command(
        after_help = "Point the wg-quick config's Endpoint at the relay and bring it up:\n  \
        roamer tcp-relay 203.0.113.50:443 &\n  \
        sed -i 's/^Endpoint = .*/Endpoint = 127.0.0.1:51821/' /etc/wireguard/roamgw0.conf\n  \
        wg-quick up roamgw0\n\n\
        The gateway needs `roamgw tcp-fallback 443`. `roamer run` needs none of this: it switches \
        by itself."
    )]
    TcpRelay(TcpRelayArgs),

    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        roamer completions bash > /etc/bash_completion.d/roamer\n  \
        roamer completions zsh > /usr/local/share/zsh/site-functions/_roamer\n  \
        roamer completions fish > ~/.config/fish/completions/roamer.fish")]
    Completions(roamgw_common::cli::CompletionsArgs),

    /// Print the man page (roff), e.g. `roamer man > /usr/share/man/man1/roamer.1`.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The roamer config (`roamgw show-config NAME --format roamer` prints it).
    #[arg(long, env = "ROAMER_CONFIG", default_value = DEFAULT_CONFIG, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,

    /// Which WireGuard runs the tunnel: the kernel's when it has one (auto), or embedded
    /// userspace WireGuard (boringtun).
    #[arg(long, env = "ROAMER_WIREGUARD", value_enum, default_value = "auto")]
    pub wireguard: Preference,

    /// Serve Prometheus metrics at http://ADDR/metrics (off by default), e.g. 127.0.0.1:9588:
    /// health, recoveries and time to recover, traffic, handshake age.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,

    /// Seconds between keepalives on an idle tunnel, instead of the config's
    /// `persistent_keepalive` (2 as generated). It bounds how long a NAT that silently forgets
    /// the mapping cuts the forwards off; 25 saves battery on mobile radios (docs/roamer.md
    /// has the cost of each).
    #[arg(long, env = "ROAMER_KEEPALIVE", value_name = "SECONDS",
          value_parser = clap::value_parser!(u16).range(1..=3600))]
    pub keepalive: Option<u16>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Seconds to wait for the gateway's first answer before returning anyway.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub wait: u64,
}

#[derive(Debug, Args)]
pub struct TcpRelayArgs {
    /// The gateway's WireGuard over TCP (`roamgw tcp-fallback` prints it), HOST:PORT.
    #[arg(value_name = "HOST:PORT")]
    pub gateway: String,

    /// Where wg-quick sends (its Endpoint).
    #[arg(long, default_value = "127.0.0.1:51821", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,

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
