//! `roamgw init`'s flags, and the backend and WireGuard choices they take.

use super::*;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The droplet's own public IPv4 address; roamgw never touches traffic to it. Default: the
    /// one public address on the default-route interface.
    #[arg(long, value_name = "IP")]
    pub public_ip: Option<Ipv4Addr>,

    /// What roamers dial, HOST[:PORT]; may be a DNS name. Default: the public IP and --listen-port.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub endpoint: Option<String>,

    /// The droplet's IPv6 address, for laptops on networks with IPv6 (e.g. 2001:db8::10 or
    /// [2001:db8::10]:51820): roamers race it against --endpoint, IPv6 first. The listener
    /// takes both families either way.
    #[arg(long, value_name = "IPV6[:PORT]")]
    pub endpoint6: Option<String>,

    /// The droplet's own IPv6 address: never a forward address (its services there stay
    /// untouched). Default: from the provider's metadata (DigitalOcean).
    #[arg(long, value_name = "IPV6")]
    pub public_ip6: Option<std::net::Ipv6Addr>,

    /// The IPv6 address forwards answer on, dedicated to them (a reserved IPv6, or one of the
    /// droplet's range, on its interface). Default: DigitalOcean's reserved IPv6 when one is
    /// assigned; else none (`roamgw forward6` adds one later).
    #[arg(long, value_name = "IPV6")]
    pub forward6: Option<std::net::Ipv6Addr>,

    /// The tunnel's IPv6 prefix. Default: a random ULA /64 (fdXX:XXXX:XXXX::/64) when the
    /// droplet has IPv6.
    #[arg(long, value_name = "CIDR")]
    pub subnet6: Option<ipnet::Ipv6Net>,

    /// The provider's floating IP (shown in listings; the droplet itself only sees the anchor).
    #[arg(long, value_name = "IP")]
    pub floating_ip: Option<Ipv4Addr>,

    /// The private address the floating IP is 1:1-NATed to on the public interface. Default:
    /// the one private address beside the public one.
    #[arg(long, value_name = "IP")]
    pub anchor_ip: Option<Ipv4Addr>,

    /// UDP port WireGuard listens on.
    #[arg(long, default_value_t = roamgw_common::state::DEFAULT_LISTEN_PORT, value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub listen_port: u16,

    /// Tunnel subnet; the gateway takes its first address, roamers the next free ones.
    #[arg(long, default_value = roamgw_common::state::DEFAULT_SUBNET, value_name = "CIDR")]
    pub subnet: Ipv4Net,

    /// Firewall backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Nftables)]
    pub backend: BackendArg,

    /// Who runs the WireGuard interface: auto (kernel if available, else userspace), kernel,
    /// userspace (embedded), or external (you run it, e.g. wg-quick; roamgw manages rules only).
    #[arg(long, value_enum, default_value_t = WireguardArg::Auto)]
    pub wireguard: WireguardArg,

    /// WireGuard interface name.
    #[arg(long, default_value = roamgw_common::state::DEFAULT_INTERFACE, value_name = "NAME")]
    pub interface: InterfaceName,

    /// Tunnel MTU (1420 fits a 1500-byte path; lower it for PPPoE or nested tunnels).
    #[arg(long, default_value_t = roamgw_common::state::DEFAULT_MTU, value_name = "BYTES",
          value_parser = clap::value_parser!(u16).range(1280..=9000))]
    pub mtu: u16,

    /// Let the droplet's own services answer on the floating IP too (default: only forwards do).
    #[arg(long)]
    pub anchor_passthrough: bool,

    /// What source address roamers see on forwards added without --client-ip: `keep` the
    /// client's own, or `masquerade` it as the gateway's tunnel address.
    #[arg(long = "client-ip", value_enum, value_name = "MODE", default_value_t = ClientIp::Keep)]
    pub client_ip: ClientIp,

    /// The next hop for roamers' egress, which leaves with the anchor address, where the
    /// provider needs one (DigitalOcean: the anchor's gateway, from
    /// /metadata/v1/interfaces/public/0/anchor_ipv4/gateway). Default: the default route.
    #[arg(long, value_name = "IP")]
    pub anchor_gateway: Option<Ipv4Addr>,

    /// Replace an existing setup: new gateway keys, no roamers, no forwards.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    Nftables,
    Firewalld,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Nftables => Backend::Nftables,
            BackendArg::Firewalld => Backend::Firewalld,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WireguardArg {
    Auto,
    Kernel,
    Userspace,
    External,
}

impl From<WireguardArg> for WireguardMode {
    fn from(w: WireguardArg) -> Self {
        match w {
            WireguardArg::Auto => WireguardMode::Auto,
            WireguardArg::Kernel => WireguardMode::Kernel,
            WireguardArg::Userspace => WireguardMode::Userspace,
            WireguardArg::External => WireguardMode::External,
        }
    }
}
