//! The `roamgw` command line. One meaning per command and flag (docs/usage.md).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;
use roamgw_common::state::{Backend, ClientIp, WireguardMode};
use roamgw_common::{InterfaceName, PortSpec, PublicKey, RoamerName};

pub use crate::change::{parse_cidr, parse_source};
use crate::store::DEFAULT_CONFIG_DIR;

mod ha;
mod init;
pub use ha::{HaArgs, HaCommand, HaJoinArgs, HaNotifyArgs, HaSetupArgs};
pub use init::{BackendArg, InitArgs, WireguardArg};

#[derive(Debug, Parser)]
#[command(
    name = "roamgw",
    version,
    about = "Give a laptop behind CGNAT a static public IP for chosen ports, through this droplet",
    long_about = "roamgw runs on the droplet. It forwards chosen ports of the droplet's floating IP \
                  through a WireGuard tunnel to a roaming laptop (a \"roamer\"), and never touches \
                  traffic to the droplet's own public IP.",
    after_help = "Walkthrough:\n  \
                  roamgw init --public-ip 203.0.113.10 --floating-ip 203.0.113.50\n  \
                  roamgw add-roamer laptop\n  \
                  roamgw add-port 22\n  \
                  roamgw show-config laptop --format roamer > roamer.toml   # copy to the laptop\n\n\
                  Changes are saved to the state at once, and are live before the command returns \
                  while `roamgw run` runs (systemctl start roamgw); with --wireguard external, \
                  after `roamgw up`.\n\n\
                  Exit codes: 0 done; 1 refused or failed (one line on stderr says why); 2 a usage \
                  error (or no command); `status`: 3 data plane down, 4 up but out of sync."
)]
pub struct Cli {
    /// Directory of the state (gateway.toml) and keys.
    #[arg(long, global = true, env = "ROAMGW_CONFIG_DIR", default_value = DEFAULT_CONFIG_DIR, value_name = "DIR")]
    pub config_dir: PathBuf,

    #[command(flatten)]
    pub verbosity: roamgw_common::cli::Verbosity,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up this droplet: keys, addresses and the empty list of roamers and forwards.
    #[command(after_help = "Examples:\n  \
        roamgw init                                   # detect public IP and anchor from the interfaces\n  \
        roamgw init --public-ip 203.0.113.10 --anchor-ip 10.16.0.5 --floating-ip 203.0.113.50\n  \
        roamgw init --endpoint droplet.example.com --wireguard external --interface wgnet0")]
    Init(InitArgs),

    /// Add a roamer (a laptop): a tunnel address, keys and a preshared key.
    #[command(after_help = "Examples:\n  \
        roamgw add-roamer laptop\n  \
        roamgw add-roamer laptop --public-key \"$(ssh laptop 'wg pubkey < /etc/roamgw/roamer.key')\"\n\n\
        Then: roamgw show-config laptop --format roamer")]
    AddRoamer(AddRoamerArgs),

    /// Remove a roamer and its keys.
    #[command(after_help = "Examples:\n  \
        roamgw remove-roamer laptop\n  \
        roamgw remove-roamer laptop --force   # also removes the forwards that point at it")]
    RemoveRoamer(RemoveRoamerArgs),

    /// List the roamers.
    #[command(after_help = "Examples:\n  roamgw roamers\n  roamgw roamers --json")]
    Roamers(JsonArgs),

    /// Forward ports of the floating IP to a roamer.
    #[command(
        after_help = "SPEC = PUBLIC[:LOCAL][/PROTOCOL]; PROTOCOL is tcp (default), udp or tcp+udp.\n\n\
        Examples:\n  \
        roamgw add-port 22                          # floating-IP:22/tcp -> the only roamer's port 22\n  \
        roamgw add-port 2222:22 --to laptop         # public 2222 -> local 22\n  \
        roamgw add-port 60000-60100/udp             # a range (mosh)\n  \
        roamgw add-port 53/tcp+udp\n  \
        roamgw add-port 8000-8010:9000-9010         # an equal-length range remap\n  \
        roamgw add-port 22 --allow-from 192.0.2.0/24 --allow-from 198.51.100.7\n  \
        roamgw add-port 2200:22 --to phone --client-ip masquerade   # a phone app routes no replies\n\n\
        By default the roamer sees the client's own address (--client-ip keep): `roamer run` and \
        the wg-quick config from `show-config` send the replies back through the tunnel."
    )]
    AddPort(AddPortArgs),

    /// Let a roamer send chosen destinations out through the droplet (off by default).
    #[command(
        after_help = "The traffic leaves with the anchor address, so the outside sees the floating IP; the \
        droplet's own traffic and the tunnel itself never take that path. The roamer needs its \
        new config afterwards (`roamgw show-config NAME`). Needs the nftables backend.\n\n\
        Examples:\n  \
        roamgw egress laptop 0.0.0.0/0                      # everything\n  \
        roamgw egress laptop 192.0.2.0/24 198.51.100.7     # only these (replaces the list)\n  \
        roamgw egress laptop --off\n  \
        roamgw egress laptop                                # show it"
    )]
    Egress(EgressArgs),

    /// WireGuard over TCP for laptops on networks that pass no UDP (hotel and conference Wi-Fi).
    #[command(
        after_help = "Listens on the anchor (where the floating IP arrives; the public IP when that \
        is the endpoint), so a service on the public IP's port, such as the mirror's nginx on 443, \
        is not in the way; a port another process already listens on is refused. Roamers learn it \
        from their new config (`roamgw show-config NAME`) and switch to it by themselves when UDP \
        gets no answer.\n\n\
        Examples:\n  \
        roamgw tcp-fallback 443\n  \
        roamgw tcp-fallback --off\n  \
        roamgw tcp-fallback            # show it"
    )]
    TcpFallback(TcpFallbackArgs),

    /// The droplet's IPv6 address, for laptops on networks with IPv6 (mobile carriers first).
    #[command(
        after_help = "The gateway listens on IPv4 and IPv6 either way; this tells roamers the address         to try. On every network a roamer races it against the IPv4 endpoint (IPv6 first, IPv4         250 ms later, the first handshake wins, RFC 8305), so a network whose IPv6 is broken costs         a quarter of a second, and an IPv6-only network works. Give the droplet's own IPv6 (or a         reserved one): a DNS name in --endpoint with AAAA records works without this.\n\n\
        Examples:\n  \
        roamgw endpoint6 2001:db8::10\n  \
        roamgw endpoint6 --off\n  \
        roamgw endpoint6                # show it"
    )]
    Endpoint6(Endpoint6Args),

    /// The IPv6 address forwards answer on: every forward then answers there too.
    #[command(
        after_help = "Dedicate an address to forwards, as the floating IP is for IPv4: a reserved IPv6         (DigitalOcean), or one address of the droplet's range (DigitalOcean gives 16, Hetzner a         /64), put on the droplet's interface (`ip -6 addr add 2001:db8::5/128 dev eth0`, and in         its network config). Never the droplet's own IPv6: its services there stay untouched. No         provider NAT is in front of it, so the laptop sees the client's own IPv6 (or the gateway's         tunnel address with --client-ip masquerade), and allow-lists take IPv6 CIDRs. The first         one gives the tunnel its IPv6 prefix (a random ULA /64): every roamer then needs its new         config.\n\n\
        Examples:\n  \
        roamgw forward6 2001:db8::5\n  \
        roamgw forward6 --off\n  \
        roamgw forward6                 # show it"
    )]
    Forward6(Forward6Args),

    /// Stop forwarding ports; give the spec as it was added.
    #[command(
        after_help = "Examples:\n  roamgw remove-port 22\n  roamgw remove-port 60000-60100/udp"
    )]
    RemovePort(RemovePortArgs),

    /// List the forwards.
    #[command(after_help = "Examples:\n  roamgw list\n  roamgw list --json")]
    List(JsonArgs),

    /// Print a roamer's config (for the laptop), or the gateway side as a stock wg-quick file.
    #[command(after_help = "Examples:\n  \
        roamgw show-config laptop --format roamer > roamer.toml     # for `roamer run --config`\n  \
        roamgw show-config laptop --format wg-quick > wgnet0.conf   # for stock wg-quick\n  \
        roamgw show-config --gateway --format wg-quick              # the droplet side, as wg-quick\n  \
        roamgw show-config phone --format wg-quick --qr             # scan with the WireGuard app\n\n\
        The output holds secrets: store it 0600.")]
    ShowConfig(ShowConfigArgs),

    /// Print the exact nftables transaction that `up`/`apply` would run (a dry run).
    #[command(
        after_help = "Examples:\n  roamgw rules\n  roamgw rules | nft -c -f -    # let nft check it"
    )]
    Rules,

    /// Bring the data plane up from the state: IP forwarding, table inet roamgw (for
    /// --wireguard external; otherwise `roamgw run` does this).
    #[command(after_help = "Examples:\n  roamgw up\n\n\
        With --wireguard external, bring the WireGuard interface up yourself first\n\
        (wg-quick up roamgw0, with the file from `roamgw show-config --gateway --format wg-quick`).")]
    Up,

    /// Take the data plane down: remove table inet roamgw, empty roamgw's firewalld policies
    /// (nothing else is touched).
    #[command(
        after_help = "Examples:\n  roamgw down\n  roamgw down --purge    # also remove roamgw's firewalld zone and policies"
    )]
    Down(DownArgs),

    /// Reconcile now: repair whatever differs from the state (a no-op when nothing does).
    #[command(after_help = "Examples:\n  roamgw apply\n  roamgw apply --dry-run")]
    Apply(ApplyArgs),

    /// The daemon: WireGuard device, peers and rules from the state, kept in sync; CLI changes
    /// go live through it. SIGHUP re-reads the state, SIGTERM takes everything down.
    #[command(
        after_help = "Examples:\n  roamgw run                    # foreground; systemd: contrib/roamgw.service\n  \
        RUST_LOG=debug roamgw run\n  \
        roamgw run --http 127.0.0.1:9587   # status page at /, Prometheus metrics at /metrics\n\n\
        While it runs, add-roamer/add-port/remove-* return once the change is live.\n\
        One daemon per config directory (its pid in roamgw.pid); a second one refuses to start."
    )]
    Run(RunArgs),

    /// Show the data plane: table, forwarding, interface, and per-forward counters.
    #[command(after_help = "Examples:\n  roamgw status\n  roamgw status --json")]
    Status(JsonArgs),

    /// Adopt the manual setup: the droplet's wg-quick file and firewalld rich rules become roamgw's.
    #[command(
        after_help = "Reads the wg-quick file (keys, address, port, peers) and the zone's rich rules \
        (`forward-port … to-addr=<laptop>` to the anchor, `masquerade` toward the laptop), writes the state \
        with the same keys (the laptops keep their configs; forwards masquerade, as before), makes roamgw's \
        rules live (firewalld backend, wg-quick keeps running the interface), and only then removes the old \
        rich rules. --dry-run shows the plan.\n\n\
        Examples:\n  \
        roamgw import --wg-quick /etc/wireguard/wgnet0.conf --name laptop --dry-run\n  \
        roamgw import --wg-quick /etc/wireguard/wgnet0.conf --name laptop --floating-ip 203.0.113.50"
    )]
    Import(ImportArgs),

    /// Give a roamer (or the gateway) a new key; forwards stay as they are.
    #[command(
        after_help = "A roamer gets a new key pair (or the public key you give, its private key staying \
        on the laptop) and a new preshared key; the old ones stop working at once, so the laptop is \
        off the tunnel until it has its new config. The gateway's own key: every roamer needs its new \
        config (docs/operations.md has the order of steps).\n\n\
        Examples:\n  \
        roamgw rotate-key laptop && roamgw show-config laptop --format roamer > roamer.toml\n  \
        roamgw rotate-key laptop --public-key \"$(ssh laptop 'wg genkey | tee /etc/roamgw/roamer.key | wg pubkey')\"\n  \
        roamgw rotate-key --gateway"
    )]
    RotateKey(RotateKeyArgs),

    /// Check this droplet for what breaks roamgw: one line per finding, with its fix.
    #[command(
        after_help = "Checks: ip_forward, rp_filter, other tables that drop input (the WireGuard \
        port) or DNAT, firewalld, each roamer's handshake (cloud firewall), tunnel MTU against the path, \
        tunnel subnet collisions, key file modes, kernel WireGuard.\n\n\
        Examples:\n  roamgw doctor\n  roamgw doctor --json\n\n\
        Exit status: 1 when a check fails (FAIL), 0 otherwise (WARN lines included)."
    )]
    Doctor(JsonArgs),

    /// Two droplets, one reserved IP: keepalived elects, roamgw moves the IP and keeps the
    /// standby in step.
    #[command(after_help = "Examples:\n  \
        roamgw ha setup --peer 10.116.0.3        # on the droplet that serves now\n  \
        roamgw ha join --peer 10.116.0.2 --pair-key KEY   # on the other, after `roamgw init`\n  \
        roamgw ha status\n\n\
        docs/ha.md walks through it.")]
    Ha(HaArgs),

    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        roamgw completions bash > /etc/bash_completion.d/roamgw\n  \
        roamgw completions zsh > /usr/local/share/zsh/site-functions/_roamgw\n  \
        roamgw completions fish > ~/.config/fish/completions/roamgw.fish")]
    Completions(roamgw_common::cli::CompletionsArgs),

    /// Print the man page (roff), e.g. `roamgw man > /usr/share/man/man1/roamgw.1`.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where the daemon remembers what it learns at run time (each roamer's last endpoint, so
    /// a restart or a reboot can start the handshakes itself). Default: systemd's
    /// $STATE_DIRECTORY, else /var/lib/roamgw.
    #[arg(long, env = "ROAMGW_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Serve the status page at http://ADDR/ and Prometheus metrics at http://ADDR/metrics
    /// (off by default), e.g. 127.0.0.1:9587. Reach it from elsewhere through an SSH tunnel
    /// (ssh -L 9587:127.0.0.1:9587 droplet) rather than a public address.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,

    /// Allow adding and removing forwards from the status page to whoever presents the token
    /// in this file (mode 0600, at least 16 characters, e.g. `openssl rand -hex 32`).
    /// Without it the page is read-only.
    #[arg(
        long,
        env = "ROAMGW_HTTP_TOKEN_FILE",
        value_name = "FILE",
        requires = "http"
    )]
    pub http_token_file: Option<PathBuf>,

    /// Serve --http on an address that is not loopback. Whoever reaches it sees every laptop's
    /// endpoint (where it is) and handshake times: the token guards changes, not reading.
    #[arg(long, requires = "http")]
    pub http_public: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Only say what would change.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct AddRoamerArgs {
    /// Roamer name: 1-32 of a-z 0-9 - _ (e.g. laptop).
    pub name: RoamerName,

    /// The roamer's public key (`wg pubkey`): its private key then never exists on the droplet.
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<PublicKey>,

    /// Tunnel address; default: the next free one in the subnet.
    #[arg(long, value_name = "IP")]
    pub address: Option<Ipv4Addr>,
}

#[derive(Debug, Args)]
pub struct RemoveRoamerArgs {
    pub name: RoamerName,

    /// Also remove the forwards that point at this roamer.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AddPortArgs {
    /// PUBLIC[:LOCAL][/PROTOCOL], e.g. 22, 53/udp, 2222:22, 60000-60100/udp, 53/tcp+udp.
    pub spec: PortSpec,

    /// The roamer to forward to; may be omitted when there is exactly one.
    #[arg(long, value_name = "ROAMER")]
    pub to: Option<RoamerName>,

    /// Only these sources may connect (repeat for several): IPv4 or IPv6 CIDRs, an address
    /// means /32 or /128. Each family's forward admits that family's sources, so a list of
    /// IPv4 CIDRs only shuts the IPv6 forward (with `roamgw forward6`). Default: anyone.
    #[arg(long = "allow-from", value_name = "CIDR", value_parser = parse_source)]
    pub allow_from: Vec<ipnet::IpNet>,

    /// What source address the roamer sees: `keep` the client's own (the roamer or the
    /// generated wg-quick config routes the replies back), or `masquerade` it as the gateway's
    /// tunnel address (works with any laptop config). Default: the gateway's, set at init.
    #[arg(long = "client-ip", value_enum, value_name = "MODE")]
    pub client_ip: Option<ClientIp>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The droplet's wg-quick file; its name is the interface (wgnet0.conf -> wgnet0).
    #[arg(long, value_name = "FILE")]
    pub wg_quick: PathBuf,

    /// The roamer's name when the file has one peer (default: roamer1, roamer2, ...).
    #[arg(long, value_name = "NAME")]
    pub name: Option<RoamerName>,

    /// The firewalld zone with the rich rules. Default: the default zone.
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,

    /// As for init (default: the metadata service or the interfaces).
    #[arg(long, value_name = "IP")]
    pub public_ip: Option<Ipv4Addr>,

    /// As for init.
    #[arg(long, value_name = "IP")]
    pub anchor_ip: Option<Ipv4Addr>,

    /// As for init.
    #[arg(long, value_name = "IP")]
    pub floating_ip: Option<Ipv4Addr>,

    /// Show the plan, change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Replace an existing roamgw setup.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RotateKeyArgs {
    /// The roamer whose key to replace.
    #[arg(required_unless_present = "gateway", conflicts_with = "gateway")]
    pub name: Option<RoamerName>,

    /// The roamer's new public key; its private key stays on the laptop.
    #[arg(long, value_name = "KEY", requires = "name")]
    pub public_key: Option<PublicKey>,

    /// Replace the gateway's own key instead.
    #[arg(long)]
    pub gateway: bool,
}

#[derive(Debug, Args)]
pub struct EgressArgs {
    /// The roamer.
    pub name: RoamerName,

    /// Destinations (CIDR, or an address for /32); 0.0.0.0/0 for everything.
    #[arg(value_name = "CIDR", value_parser = parse_cidr, conflicts_with = "off")]
    pub destinations: Vec<Ipv4Net>,

    /// No egress for this roamer.
    #[arg(long)]
    pub off: bool,
}

#[derive(Debug, Args)]
pub struct TcpFallbackArgs {
    /// The TCP port (443 passes the most networks).
    #[arg(value_name = "PORT", conflicts_with = "off", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// No WireGuard over TCP.
    #[arg(long)]
    pub off: bool,
}

#[derive(Debug, Args)]
pub struct Forward6Args {
    /// The IPv6 address dedicated to forwards (e.g. 2001:db8::5).
    #[arg(value_name = "IPV6", conflicts_with = "off")]
    pub address: Option<std::net::Ipv6Addr>,

    /// Forwards answer on IPv4 only.
    #[arg(long)]
    pub off: bool,
}

#[derive(Debug, Args)]
pub struct Endpoint6Args {
    /// The droplet's IPv6 address: 2001:db8::10, or [2001:db8::10]:PORT.
    #[arg(value_name = "IPV6[:PORT]", conflicts_with = "off")]
    pub address: Option<String>,

    /// Roamers dial IPv4 only.
    #[arg(long)]
    pub off: bool,
}

#[derive(Debug, Args)]
pub struct RemovePortArgs {
    /// The spec as it was added (as `roamgw list` shows it).
    pub spec: PortSpec,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum EndpointFamily {
    Ipv4,
    Ipv6,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ConfigFormat {
    /// roamer.toml for `roamer run --config`.
    Roamer,
    /// A stock wg-quick .conf.
    WgQuick,
    /// systemd-networkd's .netdev and .network (and the key file, and a unit for the UDP
    /// reply table), each under a `### PATH` line.
    Networkd,
    /// A NetworkManager keyfile for /etc/NetworkManager/system-connections/.
    Nm,
}

#[derive(Debug, Args)]
pub struct ShowConfigArgs {
    /// The roamer whose config to print.
    #[arg(required_unless_present = "gateway", conflicts_with = "gateway")]
    pub name: Option<RoamerName>,

    /// Print the gateway side (needs --format wg-quick).
    #[arg(long)]
    pub gateway: bool,

    #[arg(long, value_enum, default_value_t = ConfigFormat::Roamer)]
    pub format: ConfigFormat,

    /// Which of the gateway's addresses the laptop dials. Default: both where the gateway has
    /// an IPv6 endpoint (`roamgw endpoint6`) and the format can race them (roamer); a wg-quick
    /// file holds one, the IPv4 endpoint unless this says ipv6.
    #[arg(long, value_enum, value_name = "FAMILY")]
    pub endpoint_family: Option<EndpointFamily>,

    /// Print the config as a QR code for the terminal (for the WireGuard mobile apps: use
    /// --format wg-quick). The apps cannot route replies by source: forwards to a phone
    /// need --client-ip masquerade.
    #[arg(long)]
    pub qr: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also remove roamgw's firewalld zone and policies from the permanent configuration
    /// (and reload firewalld once): afterwards firewalld has exactly what it had before roamgw.
    #[arg(long)]
    pub purge: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_help_has_an_example() {
        let cli = Cli::command();
        for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("roamgw "),
                "`roamgw {}` --help has no example",
                sub.get_name()
            );
        }
    }

    #[test]
    fn config_dir_is_accepted_before_and_after_the_subcommand() {
        for args in [
            vec!["roamgw", "--config-dir", "/x", "list"],
            vec!["roamgw", "list", "--config-dir", "/x"],
        ] {
            let cli = Cli::try_parse_from(args).expect("parse");
            assert_eq!(cli.config_dir, PathBuf::from("/x"));
        }
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            parse_cidr("198.51.100.7").expect("ip").to_string(),
            "198.51.100.7/32"
        );
        assert!(parse_cidr("192.0.2.5/24")
            .expect_err("host bits")
            .contains("192.0.2.0/24"));
        assert!(parse_cidr("nope").is_err());
    }
}
