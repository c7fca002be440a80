//! `roamgw ha …`: set up this droplet's half of a pair, keepalived's hook, the pair's status.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;

use roamgw_common::state::ha::{HaSettings, Provider, HA_VERSION};

use super::*;
use crate::cli::{HaArgs, HaCommand, HaNotifyArgs, HaSetupArgs};
use crate::ha::provider::Token;
use crate::ha::replicate::PairKey;
use crate::ha::{self, HaRole, HaView, Holding};

/// The first line of a keepalived configuration roamgw wrote (and may write again).
const OURS: &str = "# Written by `roamgw ha setup`";

pub fn ha(store: &Store, args: HaArgs) -> Result<String> {
    match args.command {
        HaCommand::Setup(args) => setup(store, &args, None),
        HaCommand::Join(args) => {
            let key = PairKey::from_base64(&args.pair_key).map_err(|e| refused(e.to_string()))?;
            setup(store, &args.setup, Some(key))
        }
        HaCommand::Notify(args) => notify(store, &args),
        HaCommand::Status(args) => status(store, args.json),
        HaCommand::Keepalived => {
            let settings = paired(store)?;
            Ok(settings.keepalived_conf(&roamgw_path(), store.dir()))
        }
    }
}

/// This droplet's half of the pair, or the line that says it has none.
fn paired(store: &Store) -> Result<HaSettings> {
    ha::settings(store)
        .map_err(|e| refused(e.to_string()))?
        .ok_or_else(|| refused(ha::NOT_PAIRED))
}

/// Setup (`join`: `None`) or join (the active's pair key): every check first, then the files.
fn setup(store: &Store, args: &HaSetupArgs, joining: Option<PairKey>) -> Result<String> {
    let _lock = store.lock()?;
    if !store.is_initialized() {
        return Err(refused(
            "this droplet has no gateway yet: run `roamgw init` first (it finds this droplet's own addresses), then this command again",
        ));
    }
    let state = store.load()?;
    if joining.is_some() && (!state.roamers.is_empty() || !state.forwards.is_empty()) {
        return Err(refused(format!(
            "this droplet already has its own gateway ({} roamers, {} forwards), and a standby takes the active's: join with a droplet that has only run `roamgw init`",
            state.roamers.len(),
            state.forwards.len()
        )));
    }
    let settings = settings_for(&state, args, joining.is_some())?;
    let keepalived = settings.keepalived_conf(&roamgw_path(), store.dir());
    let print_only = args.keepalived_conf.as_os_str() == "-";
    if !print_only {
        check_ours(&args.keepalived_conf)?;
    }
    let (key, role) = match joining {
        Some(key) => (key, HaRole::Standby),
        None => (
            PairKey::generate().map_err(|e| refused(e.to_string()))?,
            HaRole::Active,
        ),
    };
    let text = settings.to_toml().map_err(|e| refused(e.to_string()))?;
    let write = |path: &Path, bytes: &[u8]| {
        roamgw_common::fsutil::write_private(path, bytes).map_err(StoreError::from)
    };
    write(&ha::settings_path(store), text.as_bytes())?;
    write(&ha::pair_key_path(store), key.to_base64().as_bytes())?;
    ha::save_role(store, role).map_err(|e| refused(e.to_string()))?;
    let mut out = format!(
        "this droplet ({}, droplet {}) is the {role} of a pair with {}; reserved IP {}\n",
        settings.this, settings.droplet_id, settings.peer, settings.reserved_ip
    );
    if print_only {
        out.push_str(&keepalived);
    } else {
        roamgw_common::fsutil::write_atomic(&args.keepalived_conf, keepalived.as_bytes(), 0o644)
            .map_err(StoreError::from)?;
        let _ = writeln!(
            out,
            "keepalived's configuration: {}",
            args.keepalived_conf.display()
        );
    }
    out.push_str(&next_steps(
        &state,
        &settings,
        args,
        (role == HaRole::Active).then_some(&key),
    ));
    Ok(out)
}

/// This droplet's half of the pair from the flags, the state and what the machine says; the
/// token file is checked, nothing is written.
fn settings_for(state: &GatewayState, args: &HaSetupArgs, joining: bool) -> Result<HaSettings> {
    let reserved_ip = args
        .reserved_ip
        .or(state.gateway.floating_ip)
        .ok_or_else(|| refused("which reserved IP does the pair share? give --reserved-ip"))?;
    let this = match args.this {
        Some(this) => this,
        None => source_towards(args.peer).map_err(|e| {
            refused(format!(
                "cannot tell this droplet's private address towards {}: {e}; give --this",
                args.peer
            ))
        })?,
    };
    let vrrp_interface = interface_with(this).ok_or_else(|| {
        refused(format!(
            "no interface here has {this}: give --this as this droplet's private address"
        ))
    })?;
    let droplet_id = match args.droplet_id {
        Some(id) => id,
        None => crate::cloud::digitalocean()
            .and_then(|c| c.droplet_id)
            .ok_or_else(|| {
                refused("the metadata service did not say this droplet's id: give --droplet-id (`curl -s http://169.254.169.254/metadata/v1/id` on the droplet)")
            })?,
    };
    Token::read(&args.token_file).map_err(|e| refused(e.to_string()))?;
    let settings = HaSettings {
        version: HA_VERSION,
        provider: Provider::DigitalOcean,
        api: args.api.clone(),
        token_file: args.token_file.clone(),
        reserved_ip,
        droplet_id,
        this,
        peer: args.peer,
        vrrp_interface,
        virtual_router_id: args.virtual_router_id,
        // The first droplet wins when both keepalived start at once.
        priority: if joining { 100 } else { 150 },
        replication_port: args.replication_port,
    };
    settings.validate().map_err(|e| refused(e.to_string()))?;
    Ok(settings)
}

/// What to do next: a note when roamers would not follow the reserved IP, the join line for
/// the other droplet (setup only: `key`), and the services to start.
fn next_steps(
    state: &GatewayState,
    settings: &HaSettings,
    args: &HaSetupArgs,
    key: Option<&PairKey>,
) -> String {
    let mut out = String::new();
    let reserved_ip = settings.reserved_ip;
    if state.gateway.endpoint.ip() != Some(reserved_ip.into()) {
        let _ = writeln!(
            out,
            "note: roamers dial {}, which does not move with the reserved IP; give them {reserved_ip} as their endpoint so they follow a failover",
            state.gateway.endpoint
        );
    }
    if let Some(key) = key {
        let reserved = if args.reserved_ip.is_some() {
            format!(" --reserved-ip {reserved_ip}")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "On the other droplet, after `roamgw init` there:\n  roamgw ha join --peer {} --pair-key '{}'{reserved}",
            settings.this,
            key.to_base64().as_str(),
        );
    }
    out.push_str("Then on both: systemctl restart roamgw && systemctl enable --now keepalived\n");
    out
}

/// keepalived's configuration may be replaced only when roamgw wrote it (or there is none).
fn check_ours(path: &Path) -> Result<()> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.starts_with(OURS) => Err(refused(format!(
            "{} exists and roamgw did not write it: add the vrrp_instance of `roamgw ha keepalived` to it yourself, or give --keepalived-conf another file",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// The address this machine sends from towards `peer` (a UDP connect sends nothing).
fn source_towards(peer: Ipv4Addr) -> std::io::Result<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect((peer, 9))?;
    match socket.local_addr()?.ip() {
        std::net::IpAddr::V4(ip) => Ok(ip),
        std::net::IpAddr::V6(_) => Err(std::io::Error::other("an IPv6 source")),
    }
}

fn interface_with(address: Ipv4Addr) -> Option<String> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        let ip = ifa.address?.as_sockaddr_in()?.ip();
        (ip == address).then_some(ifa.interface_name)
    })
}

/// This binary, as keepalived should call it.
fn roamgw_path() -> std::path::PathBuf {
    std::env::current_exe().unwrap_or_else(|_| "/usr/bin/roamgw".into())
}

fn notify(store: &Store, args: &HaNotifyArgs) -> Result<String> {
    let role = HaRole::from_keepalived(&args.state).ok_or_else(|| {
        refused(format!(
            "keepalived's state {:?} is not MASTER, BACKUP, FAULT or STOP",
            args.state
        ))
    })?;
    paired(store)?;
    let request = control::Request::HaNotify { role };
    match ask_daemon(store, &request)? {
        Some(summary) => Ok(format!("{summary}\n")),
        None => {
            ha::save_role(store, role).map_err(|e| refused(e.to_string()))?;
            Ok(format!(
                "{role}: saved; roamgw run is not running and starts as the {role}\n"
            ))
        }
    }
}

fn status(store: &Store, json: bool) -> Result<String> {
    let settings = paired(store)?;
    let view = match control::request(
        store,
        &control::Request::HaStatus,
        std::time::Duration::from_secs(5),
    ) {
        Ok(control::Reply::Ha(view)) => Some(*view),
        _ => None,
    };
    if json {
        return Ok(serde_json::to_string_pretty(&serde_json::json!({
            "daemon_running": view.is_some(),
            "saved_role": ha::saved_role(store),
            "pair": view,
        }))
        .unwrap_or_default()
            + "\n");
    }
    let Some(view) = view else {
        let token = Token::read(&settings.token_file)
            .err()
            .map(|e| format!("\ntoken:        {e}"))
            .unwrap_or_default();
        return Ok(format!(
            "role:         {} (saved; roamgw run is not running){token}\nreserved IP:  {}\npeer:         {}\n",
            ha::saved_role(store),
            settings.reserved_ip,
            settings.peer
        ));
    };
    Ok(render(&view, roamgw_common::clock::unix_ms()))
}

/// The human view of the pair.
pub fn render(view: &HaView, now_ms: u64) -> String {
    let ago = |ms: u64| format!("{:.1} s ago", now_ms.saturating_sub(ms) as f64 / 1000.0);
    let holding = match (&view.role, &view.holding) {
        (HaRole::Standby, _) => "held by the active droplet; this one is quiet".to_string(),
        (_, Holding::Held { took_ms }) => {
            format!("held here (the provider moved it in {:.1} s)", *took_ms as f64 / 1000.0)
        }
        (_, Holding::Claiming { since_ms }) => format!("claiming (asked {})", ago(*since_ms)),
        (_, Holding::Lost { holder, .. }) => format!(
            "on {}, not here: quiet until the peer is the standby (split brain, or the peer claimed it later)",
            holder.map_or("no droplet".into(), |h| format!("droplet {h}"))
        ),
        (_, Holding::Failed { error, at_ms }) => {
            format!("not held: {error} ({}; trying again)", ago(*at_ms))
        }
        (_, Holding::Unknown) => "not asked yet".to_string(),
    };
    let peer = match (&view.peer.error, view.peer.role) {
        (Some(error), _) => format!("unreachable: {error}"),
        (None, Some(role)) => {
            let sync = match (view.role, role, view.peer.taken_ms) {
                (HaRole::Standby, HaRole::Active, Some(at)) if view.peer.in_sync => {
                    format!(", in step (last change taken {})", ago(at))
                }
                (HaRole::Standby, HaRole::Active, _) => ", not yet in step".into(),
                (HaRole::Active, HaRole::Active, _) => {
                    ", ALSO ACTIVE: both droplets think they lead (the provider decides who holds the IP)".into()
                }
                _ => String::new(),
            };
            format!("{role}{sync}")
        }
        (None, None) => "not heard from yet".into(),
    };
    format!(
        "role:         {role} (droplet {id})\nreserved IP:  {ip} {holding}\npeer:         {peer_ip} {peer}\n",
        role = view.role,
        id = view.droplet_id,
        ip = view.reserved_ip,
        peer_ip = view.peer_address,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::replicate::PeerSeen;

    fn view(role: HaRole, holding: Holding, peer: PeerSeen) -> HaView {
        HaView {
            role,
            reserved_ip: "203.0.113.50".parse().expect("ip"),
            droplet_id: 1,
            holding,
            peer_address: "10.10.0.2".parse().expect("ip"),
            peer,
        }
    }

    #[test]
    fn status_names_the_split_brain_and_the_sync() {
        let lost = render(
            &view(
                HaRole::Active,
                Holding::Lost {
                    holder: Some(2),
                    since_ms: 0,
                },
                PeerSeen {
                    error: Some("connection timed out".into()),
                    ..PeerSeen::default()
                },
            ),
            0,
        );
        assert!(lost.contains("on droplet 2, not here"), "{lost}");
        assert!(lost.contains("unreachable: connection timed out"), "{lost}");
        let synced = render(
            &view(
                HaRole::Standby,
                Holding::Unknown,
                PeerSeen {
                    role: Some(HaRole::Active),
                    answered_ms: Some(9_000),
                    in_sync: true,
                    taken_ms: Some(9_500),
                    error: None,
                },
            ),
            10_000,
        );
        assert!(
            synced.contains("active, in step (last change taken 0.5 s ago)"),
            "{synced}"
        );
    }
}
