//! `roamgw ha …`: two droplets, one reserved IP (docs/ha.md).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use roamgw_common::state::ha::{DEFAULT_REPLICATION_PORT, DEFAULT_VIRTUAL_ROUTER_ID};

use super::JsonArgs;
use crate::ha::provider::DIGITALOCEAN_API;

#[derive(Debug, Args)]
pub struct HaArgs {
    #[command(subcommand)]
    pub command: HaCommand,
}

#[derive(Debug, Subcommand)]
pub enum HaCommand {
    /// Make this droplet (the one that serves now) the first of a pair.
    #[command(
        after_help = "Writes ha.toml and a new pair key beside the state, and keepalived's \
        configuration, then prints the one command for the other droplet. Nothing is written when \
        a check fails (the token file missing or readable by others, an unknown droplet id).\n\n\
        Examples:\n  \
        install -m 600 /dev/stdin /etc/roamgw/provider-token <<< \"$DO_TOKEN\"\n  \
        roamgw ha setup --peer 10.116.0.3\n  \
        roamgw ha setup --peer 10.116.0.3 --reserved-ip 203.0.113.50 --keepalived-conf -   # print it only"
    )]
    Setup(HaSetupArgs),

    /// Make this droplet the standby of the pair another droplet set up.
    #[command(
        after_help = "Run what `roamgw ha setup` printed. This droplet needs `roamgw init` \
        first (its own addresses); its keys, roamers and forwards then come from the active one \
        within a second of `roamgw run` starting, and follow every change there.\n\n\
        Examples:\n  \
        roamgw ha join --peer 10.116.0.2 --pair-key \"$KEY\"\n  \
        ROAMGW_PAIR_KEY=\"$KEY\" roamgw ha join --peer 10.116.0.2   # keeps it out of the shell history"
    )]
    Join(HaJoinArgs),

    /// keepalived's notify hook: MASTER makes this droplet active, anything else the standby.
    #[command(
        after_help = "keepalived calls it with INSTANCE NAME STATE PRIORITY; the \
        configuration `roamgw ha setup` writes does so. By hand, for a test:\n  \
        roamgw ha notify INSTANCE roamgw MASTER 100"
    )]
    Notify(HaNotifyArgs),

    /// This droplet's role, whether it holds the reserved IP, and its peer.
    #[command(after_help = "Examples:\n  roamgw ha status\n  roamgw ha status --json")]
    Status(JsonArgs),

    /// Print keepalived's configuration for this droplet (from ha.toml).
    #[command(after_help = "Examples:\n  \
        roamgw ha keepalived                       # to merge into a keepalived.conf of your own\n  \
        roamgw ha keepalived > /etc/keepalived/keepalived.conf")]
    Keepalived,
}

#[derive(Debug, Args)]
pub struct HaSetupArgs {
    /// The other droplet's private address (VRRP and the replication run over it).
    #[arg(long, value_name = "IP")]
    pub peer: Ipv4Addr,

    /// This droplet's private address. Default: the one it reaches --peer from.
    #[arg(long, value_name = "IP")]
    pub this: Option<Ipv4Addr>,

    /// The reserved (floating) IP the pair shares. Default: the state's floating IP.
    #[arg(long, value_name = "IP")]
    pub reserved_ip: Option<Ipv4Addr>,

    /// The provider's API token, alone in a file only root reads (0600). It needs write
    /// access to reserved IPs.
    #[arg(
        long,
        default_value = "/etc/roamgw/provider-token",
        value_name = "FILE"
    )]
    pub token_file: PathBuf,

    /// This droplet's id at the provider. Default: from the metadata service.
    #[arg(long, value_name = "ID")]
    pub droplet_id: Option<u64>,

    /// The provider's API.
    #[arg(long, default_value = DIGITALOCEAN_API, value_name = "URL")]
    pub api: String,

    /// Where keepalived's configuration goes (`-`: print it instead). A file roamgw did not
    /// write is never replaced.
    #[arg(
        long,
        default_value = "/etc/keepalived/keepalived.conf",
        value_name = "FILE"
    )]
    pub keepalived_conf: PathBuf,

    /// VRRP's router id: the same on both droplets, unique on their network.
    #[arg(long, default_value_t = DEFAULT_VIRTUAL_ROUTER_ID, value_name = "1-255",
          value_parser = clap::value_parser!(u8).range(1..))]
    pub virtual_router_id: u8,

    /// TCP port on the private address where each droplet serves its state to the other.
    #[arg(long, default_value_t = DEFAULT_REPLICATION_PORT, value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub replication_port: u16,
}

#[derive(Debug, Args)]
pub struct HaJoinArgs {
    #[command(flatten)]
    pub setup: HaSetupArgs,

    /// The pair key `roamgw ha setup` printed on the active droplet.
    #[arg(
        long,
        env = "ROAMGW_PAIR_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub pair_key: String,
}

#[derive(Debug, Args)]
pub struct HaNotifyArgs {
    /// INSTANCE or GROUP (keepalived's first argument).
    pub kind: String,
    /// The VRRP instance's name.
    pub name: String,
    /// MASTER, BACKUP, FAULT or STOP.
    pub state: String,
    /// The instance's priority (ignored).
    pub priority: Option<String>,
}
