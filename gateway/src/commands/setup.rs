//! Setting up and running the gateway: init, run, up, down, apply, rules.

use std::net::Ipv4Addr;

use super::*;

pub fn init(store: &Store, args: InitArgs) -> Result<String> {
    refuse_to_replace(store, args.force)?;
    check_subnet(args.subnet).map_err(|e| refused(e.to_string()))?;
    let found = addresses(&AddressFlags::from(&args))?;
    warn_on_colliding_routes(&args);
    let key = PrivateKey::generate()?;
    let source = found.source.clone();
    let state = initial_state(args, found, &key)?;
    state.validate().map_err(|e| refused(e.to_string()))?;

    store.create_dirs()?;
    let _lock = store.lock()?;
    if let Ok(old) = store.load() {
        for roamer in &old.roamers {
            store.remove_roamer_keys(&roamer.name)?;
        }
    }
    store.write_private_key(&store.gateway_key_path(), &key)?;
    store.save(&state)?;
    if let Some(plan) = dataplane::of(&state).apply_if_up(&state)? {
        info!("the data plane was up; now: {plan}");
    }
    Ok(init_summary(store, &state, &source))
}

/// A running daemon, or a gateway set up before without `--force`, is never replaced.
pub(super) fn refuse_to_replace(store: &Store, force: bool) -> Result<()> {
    if let Some(pid) = control::daemon_pid(store).map_err(|e| refused(e.to_string()))? {
        return Err(refused(format!(
            "roamgw run (pid {pid}) is up for this directory: stop it first (systemctl stop roamgw), then init"
        )));
    }
    if store.is_initialized() && !force {
        return Err(refused(format!(
            "a gateway is already set up in {}: pass --force to replace it (new keys; every roamer then needs its new config)",
            store.dir().display()
        )));
    }
    Ok(())
}

/// The droplet's addresses, and where they came from.
pub(super) struct Addresses {
    pub public_ip: Ipv4Addr,
    pub anchor_ip: Ipv4Addr,
    pub floating_ip: Option<Ipv4Addr>,
    pub anchor_gateway: Option<Ipv4Addr>,
    /// The provider's account of the droplet's IPv6, when it gave one.
    pub own_ipv6: Option<std::net::Ipv6Addr>,
    pub reserved_ipv6: Option<std::net::Ipv6Addr>,
    pub source: String,
}

/// The address flags of `init` and `import`.
pub(super) struct AddressFlags {
    pub public_ip: Option<Ipv4Addr>,
    pub anchor_ip: Option<Ipv4Addr>,
    pub floating_ip: Option<Ipv4Addr>,
    pub anchor_gateway: Option<Ipv4Addr>,
}

impl From<&InitArgs> for AddressFlags {
    fn from(args: &InitArgs) -> Self {
        AddressFlags {
            public_ip: args.public_ip,
            anchor_ip: args.anchor_ip,
            floating_ip: args.floating_ip,
            anchor_gateway: args.anchor_gateway,
        }
    }
}

/// The flags, and for what they leave out: the provider's metadata service when it answers
/// (DigitalOcean), else this machine's interfaces.
pub(super) fn addresses(args: &AddressFlags) -> Result<Addresses> {
    let cloud = match (args.public_ip, args.anchor_ip) {
        (Some(_), Some(_)) => None,
        _ => crate::cloud::digitalocean(),
    };
    let (public_ip, anchor_ip, source) = match (args.public_ip, args.anchor_ip, &cloud) {
        (Some(public), Some(anchor), _) => (public, anchor, "the flags".to_string()),
        (public, anchor, Some(found)) if found.anchor_ip.is_some() || anchor.is_some() => (
            public.unwrap_or(found.public_ip),
            anchor.or(found.anchor_ip).unwrap_or(found.public_ip),
            format!("{}'s metadata service ({})", found.provider, found.source),
        ),
        (public, anchor, _) => {
            let addrs = detect::system_addrs()?;
            let found = detect::detect_addresses(&addrs, &detect::system_routes(), public)?;
            (
                found.public_ip,
                anchor.unwrap_or(found.anchor_ip),
                format!("the addresses of {}", found.interface),
            )
        }
    };
    debug!(%public_ip, %anchor_ip, "addresses from {source}");
    if public_ip == anchor_ip {
        return Err(refused(format!(
            "--public-ip and --anchor-ip are both {public_ip}: the anchor is the private address the floating IP maps to"
        )));
    }
    Ok(Addresses {
        public_ip,
        anchor_ip,
        floating_ip: args
            .floating_ip
            .or(cloud.as_ref().and_then(|c| c.floating_ip)),
        anchor_gateway: args
            .anchor_gateway
            .or(cloud.as_ref().and_then(|c| c.anchor_gateway)),
        own_ipv6: cloud.as_ref().and_then(|c| c.own_ipv6),
        reserved_ipv6: cloud.as_ref().and_then(|c| c.reserved_ipv6),
        source,
    })
}

fn warn_on_colliding_routes(args: &InitArgs) {
    let collisions: Vec<String> = detect::colliding_routes(
        &detect::system_routes(),
        args.subnet,
        args.interface.as_str(),
    )
    .into_iter()
    .map(|r| format!("{} on {}", r.destination, r.interface))
    .collect();
    if !collisions.is_empty() {
        warn!(
            subnet = %args.subnet,
            routes = %collisions.join(", "),
            "the tunnel subnet overlaps routes this droplet already has; pick another with --subnet"
        );
    }
}

/// `--endpoint6`: an IPv6 address, bracketed or bare, with or without a port.
pub(super) fn parse_endpoint6(text: &str, listen_port: u16) -> Result<Endpoint> {
    let bracketed = match text.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{text}]"),
        Err(_) => text.to_string(),
    };
    let endpoint = Endpoint::parse_with_default_port(&bracketed, listen_port)
        .map_err(|e| refused(format!("--endpoint6: {e}")))?;
    roamgw_common::state::check_endpoint6(&endpoint)
        .map_err(|e| refused(format!("--endpoint6 {e}")))?;
    Ok(endpoint)
}

fn initial_state(args: InitArgs, found: Addresses, key: &PrivateKey) -> Result<GatewayState> {
    let Addresses {
        public_ip,
        anchor_ip,
        floating_ip,
        anchor_gateway,
        ..
    } = found;
    let endpoint = match &args.endpoint {
        Some(text) => Endpoint::parse_with_default_port(text, args.listen_port)
            .map_err(|e| refused(e.to_string()))?,
        None => Endpoint {
            host: public_ip.to_string(),
            port: args.listen_port,
        },
    };
    let endpoint6 = match (
        args.endpoint6.as_deref(),
        found.reserved_ipv6.or(found.own_ipv6),
    ) {
        (Some(text), _) => Some(parse_endpoint6(text, args.listen_port)?),
        (None, Some(ipv6)) => Some(Endpoint {
            host: ipv6.to_string(),
            port: args.listen_port,
        }),
        (None, None) => None,
    };
    let public_ip6 = args.public_ip6.or(found.own_ipv6);
    let forward6 = args.forward6.or(found.reserved_ipv6);
    // A droplet with IPv6 gets the tunnel's prefix now, so configs made today carry it.
    let has_ipv6 = endpoint6.is_some() || forward6.is_some();
    let subnet6 = match args.subnet6 {
        Some(net) => Some(net),
        None if has_ipv6 => Some(new_subnet6()?),
        None => None,
    };
    let address = args.subnet.hosts().next().ok_or_else(|| {
        refused(format!(
            "tunnel subnet {} has no host addresses",
            args.subnet
        ))
    })?;
    Ok(GatewayState {
        version: STATE_VERSION,
        gateway: GatewaySettings {
            public_ip,
            endpoint,
            endpoint6,
            floating_ip,
            anchor_ip,
            listen_port: args.listen_port,
            subnet: args.subnet,
            address,
            backend: args.backend.into(),
            wireguard: args.wireguard.into(),
            interface: args.interface,
            mtu: args.mtu,
            public_key: key.public_key(),
            anchor_passthrough: args.anchor_passthrough,
            client_ip: args.client_ip,
            anchor_gateway,
            tcp_port: None,
            subnet6,
            forward6,
            public_ip6,
        },
        roamers: Vec::new(),
        forwards: Vec::new(),
    })
}

fn init_summary(store: &Store, state: &GatewayState, source: &str) -> String {
    let g = &state.gateway;
    let floating = g
        .floating_ip
        .map(|ip| format!(" (floating IP {ip})"))
        .unwrap_or_default();
    format!(
        "initialized {dir}\n  addresses from {source}\n  public IP {public} (never touched)\n  anchor {anchor}{floating}\n  \
         WireGuard {iface} ({mode}) {addr}/{prefix}, listening on udp {port}; roamers dial {endpoint}\n  \
         {ipv6}backend {backend}\nnext: roamgw add-roamer laptop\n",
        dir = store.dir().display(),
        public = g.public_ip,
        anchor = g.anchor_ip,
        iface = g.interface,
        mode = g.wireguard,
        addr = g.address,
        prefix = g.subnet.prefix_len(),
        port = g.listen_port,
        endpoint = match &g.endpoint6 {
            Some(v6) => format!("{} or {v6} (IPv6)", g.endpoint),
            None => g.endpoint.to_string(),
        },
        backend = g.backend,
        ipv6 = ipv6_summary(g),
    )
}

/// A random ULA /64 for the tunnel.
pub(super) fn new_subnet6() -> Result<ipnet::Ipv6Net> {
    roamgw_common::state::random_ula().map_err(|e| {
        refused(format!(
            "cannot pick the tunnel's IPv6 prefix: no randomness ({e}); give one with --subnet6"
        ))
    })
}

/// What `init` made of IPv6: the tunnel's prefix, and the address forwards answer on (or how
/// to give one).
fn ipv6_summary(g: &roamgw_common::state::GatewaySettings) -> String {
    let Some(subnet6) = g.subnet6 else {
        return String::new();
    };
    let forwards = match g.forward6 {
        Some(forward6) => format!("forwards answer on {forward6} too"),
        None => {
            "no forwards over IPv6 until `roamgw forward6 ADDRESS` dedicates an address to them"
                .into()
        }
    };
    format!("IPv6 tunnel prefix {subnet6}; {forwards}\n  ")
}

pub fn run(store: Store, args: crate::cli::RunArgs) -> Result<String> {
    let state_dir = args
        .state_dir
        .unwrap_or_else(crate::daemon::default_state_dir);
    if let Some(addr) = args
        .http
        .filter(|a| !a.ip().is_loopback() && !args.http_public)
    {
        return Err(refused(format!(
            "--http {addr} would show every laptop's endpoint (where it is) and handshake times to whoever reaches that address: serve 127.0.0.1:{port} and look through an SSH tunnel (ssh -L {port}:127.0.0.1:{port} droplet), or add --http-public if that is what you want",
            port = addr.port()
        )));
    }
    // The token is read before anything starts, so a bad file changes nothing.
    let http = match args.http {
        Some(addr) => Some((
            addr,
            args.http_token_file
                .as_deref()
                .map(crate::web::Token::load)
                .transpose()
                .map_err(crate::daemon::DaemonError::from)?,
        )),
        None => None,
    };
    crate::daemon::run_until_stopped(store, &state_dir, http)?;
    Ok(String::new())
}

pub fn rules(store: &Store) -> Result<String> {
    let state = store.load()?;
    Ok(dataplane::of(&state).rules_text(&state)?)
}

pub fn up(store: &Store) -> Result<String> {
    let state = store.load()?;
    if let Some(pid) = control::daemon_pid_or_none(store) {
        return Ok(format!("roamgw run (pid {pid}) is up for this directory: the data plane is its job (`roamgw apply` repairs drift)\n"));
    }
    if matches!(
        state.gateway.wireguard,
        WireguardMode::Auto | WireguardMode::Userspace | WireguardMode::Kernel
    ) {
        return Err(refused(format!(
            "this gateway runs WireGuard itself ({}): start `roamgw run` (systemctl start roamgw) instead of `up`; \
             `up` is for --wireguard external",
            state.gateway.wireguard
        )));
    }
    let plan = dataplane::of(&state).up(&state)?;
    info!("{plan}");
    Ok(format!(
        "data plane up: {} live on {}\n",
        forward_count(&state),
        state.gateway.anchor_ip
    ))
}

pub fn down(store: &Store, purge: bool) -> Result<String> {
    if let Some(pid) = control::daemon_pid_or_none(store) {
        return Err(refused(format!(
            "roamgw run (pid {pid}) keeps this data plane up and would bring it back: stop it instead \
             (`systemctl stop roamgw`, or `kill {pid}`), which takes the table and the interface down{}; nothing was changed",
            if purge { ", then run `roamgw down --purge` for the firewalld config" } else { "" }
        )));
    }
    Ok(if dataplane::down(purge)? {
        if purge {
            "data plane down: table inet roamgw and roamgw's firewalld zone and policies removed\n"
                .into()
        } else {
            "data plane down: table inet roamgw removed, roamgw's firewalld policies (if any) emptied\n"
                .into()
        }
    } else {
        "data plane was not up\n".into()
    })
}

pub fn apply(store: &Store, dry_run: bool) -> Result<String> {
    let state = store.load()?;
    if dry_run {
        return Ok(format!("{}\n", dataplane::of(&state).dry_run(&state)?));
    }
    let request = control::Request::Reconcile {
        deadline_unix_ms: control::deadline_in(DAEMON_DEADLINE),
    };
    if let Some(summary) = ask_daemon(store, &request)? {
        return Ok(format!("{summary} (by roamgw run)\n"));
    }
    let plan = dataplane::of(&state).up(&state)?;
    Ok(format!("{plan}\n"))
}
