//! What each `roamgw` subcommand does. Every handler returns the text for stdout; notes and
//! warnings go to the log (stderr). A failing handler changes nothing on disk.

use std::fmt::Write as _;

use roamgw_common::names::Endpoint;
use roamgw_common::state::{
    check_subnet, Forward, GatewaySettings, GatewayState, WireguardMode, STATE_VERSION,
};
use roamgw_common::{PresharedKey, PrivateKey};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::backend;
use crate::change::{roamer_names, StateChange};
use crate::cli::{
    AddPortArgs, AddRoamerArgs, ConfigFormat, InitArgs, RemovePortArgs, RemoveRoamerArgs,
    ShowConfigArgs,
};
use crate::control;
use crate::detect;
use crate::render;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad input or a refused change: the message says what is wrong and how to fix it.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Detect(#[from] detect::DetectError),
    #[error(transparent)]
    Key(#[from] roamgw_common::keys::KeyError),
    #[error(transparent)]
    DataPlane(#[from] backend::DataPlaneError),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
}

fn refused(message: impl Into<String>) -> CommandError {
    CommandError::Refused(message.into())
}

type Result<T> = std::result::Result<T, CommandError>;

const PENDING: &str = "saved; pending until the data plane is up (`roamgw up` or `roamgw run`)";
const LIVE: &str = "live";
/// How long the daemon may take to make a change live before the CLI gives up; the daemon
/// refuses a change whose CLI has given up, so the answer always matches what happened.
const DAEMON_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
/// How long the CLI waits for the daemon's reply: the deadline plus time for the refusal.
const DAEMON_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

/// Sends a request to the daemon if one runs: `Ok(None)` when none does. A daemon that holds
/// the directory but does not answer is an error: nothing may change behind its back.
fn ask_daemon(store: &Store, request: &control::Request) -> Result<Option<String>> {
    match control::request(store, request, DAEMON_TIMEOUT) {
        Ok(control::Reply::Applied { summary }) => Ok(Some(summary)),
        Ok(control::Reply::Error { message }) => Err(refused(message)),
        Ok(other) => Err(refused(format!(
            "unexpected reply from the daemon: {other:?}"
        ))),
        Err(control::ControlError::NotRunning) => Ok(None),
        Err(e) => Err(refused(e.to_string())),
    }
}

/// Makes a change, with the state lock held by the caller. With `roamgw run` up, the daemon
/// applies it to the state it holds, makes it live and saves it. Without, it is applied to the
/// file: when the data plane is up it goes live first and is saved after, so a failure leaves
/// the file untouched; when it is not up, it is saved as pending. Returns the summary and
/// the word for the user: live or pending.
fn make_change(store: &Store, change: StateChange) -> Result<(String, &'static str)> {
    let request = control::Request::Change {
        change: change.clone(),
        deadline_unix_ms: control::deadline_in(DAEMON_DEADLINE),
    };
    if let Some(summary) = ask_daemon(store, &request)? {
        return Ok((summary, LIVE));
    }
    let mut state = store.load()?;
    let old = state.clone();
    let applied = crate::change::apply(&mut state, &change).map_err(|e| refused(e.0))?;
    let Some(plan) = backend::of(&state).apply_change(&old, &state, &applied.forwards)? else {
        store.save(&state)?;
        return Ok((applied.summary, PENDING));
    };
    debug!("{plan}");
    if let Err(e) = store.save(&state) {
        // The file is the truth: put the kernel back to what it says.
        if let Err(undo) = backend::of(&old).apply_if_up(&old) {
            warn!("could not undo the live change after the save failed: {undo}");
        }
        return Err(e.into());
    }
    backend::end_changed_flows(&state, &applied.forwards);
    Ok((applied.summary, LIVE))
}

pub fn init(store: &Store, args: InitArgs) -> Result<String> {
    if let Some(pid) = control::daemon_pid(store).map_err(|e| refused(e.to_string()))? {
        return Err(refused(format!(
            "roamgw run (pid {pid}) is up for this directory: stop it first (systemctl stop roamgw), then init"
        )));
    }
    if store.is_initialized() && !args.force {
        return Err(refused(format!(
            "a gateway is already set up in {}: pass --force to replace it (new keys; every roamer then needs its new config)",
            store.dir().display()
        )));
    }
    check_subnet(args.subnet).map_err(|e| refused(e.to_string()))?;
    let (public_ip, anchor_ip) = match (args.public_ip, args.anchor_ip) {
        (Some(public), Some(anchor)) => (public, anchor),
        (public, anchor) => {
            let addrs = detect::system_addrs()?;
            let found = detect::detect_addresses(&addrs, &detect::system_routes(), public)?;
            info!(
                interface = %found.interface,
                public_ip = %found.public_ip,
                anchor_ip = %found.anchor_ip,
                "detected the public interface"
            );
            (found.public_ip, anchor.unwrap_or(found.anchor_ip))
        }
    };
    if public_ip == anchor_ip {
        return Err(refused(format!(
            "--public-ip and --anchor-ip are both {public_ip}: the anchor is the private address the floating IP maps to"
        )));
    }
    let endpoint = match &args.endpoint {
        Some(text) => Endpoint::parse_with_default_port(text, args.listen_port)
            .map_err(|e| refused(e.to_string()))?,
        None => Endpoint {
            host: public_ip.to_string(),
            port: args.listen_port,
        },
    };
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
    let address = args.subnet.hosts().next().ok_or_else(|| {
        refused(format!(
            "tunnel subnet {} has no host addresses",
            args.subnet
        ))
    })?;
    let key = PrivateKey::generate()?;
    let state = GatewayState {
        version: STATE_VERSION,
        gateway: GatewaySettings {
            public_ip,
            endpoint,
            floating_ip: args.floating_ip,
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
        },
        roamers: Vec::new(),
        forwards: Vec::new(),
    };
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
    if let Some(plan) = backend::of(&state).apply_if_up(&state)? {
        info!("the data plane was up; now: {plan}");
    }

    let g = &state.gateway;
    let floating = g
        .floating_ip
        .map(|ip| format!(" (floating IP {ip})"))
        .unwrap_or_default();
    Ok(format!(
        "initialized {dir}\n  public IP {public} (never touched)\n  anchor {anchor}{floating}\n  \
         WireGuard {iface} ({mode}) {addr}/{prefix}, listening on udp {port}; roamers dial {endpoint}\n  \
         backend {backend}\nnext: roamgw add-roamer laptop\n",
        dir = store.dir().display(),
        public = g.public_ip,
        anchor = g.anchor_ip,
        iface = g.interface,
        mode = g.wireguard,
        addr = g.address,
        prefix = g.subnet.prefix_len(),
        port = g.listen_port,
        endpoint = g.endpoint,
        backend = g.backend,
    ))
}

pub fn add_roamer(store: &Store, args: AddRoamerArgs) -> Result<String> {
    let _lock = store.lock()?;
    let (private_key, public_key) = match args.public_key {
        Some(public) => (None, public),
        None => {
            let key = PrivateKey::generate()?;
            let public = key.public_key();
            (Some(key), public)
        }
    };
    let psk = PresharedKey::generate()?;
    let change = StateChange::AddRoamer {
        name: args.name.clone(),
        public_key,
        address: args.address,
    };
    // The key files must exist before the change is applied (the daemon reads the PSK for the
    // peer), yet a refused change must not overwrite an existing roamer's files: so a dry run
    // on the saved state first, with the same checks and messages.
    let mut dry_run = store.load()?;
    crate::change::apply(&mut dry_run, &change).map_err(|e| refused(e.0))?;
    if let Some(key) = &private_key {
        store.write_private_key(&store.roamer_key_path(&args.name), key)?;
    }
    store.write_psk(&store.roamer_psk_path(&args.name), &psk)?;
    let (summary, how) = match make_change(store, change) {
        Ok(done) => done,
        Err(e) => {
            let _ = store.remove_roamer_keys(&args.name);
            return Err(e);
        }
    };
    let held = if private_key.is_some() {
        "its private key is kept here until you remove the roamer"
    } else {
        "its private key stays on the laptop"
    };
    let several = dry_run.roamers.len() > 1;
    Ok(format!(
        "{summary} ({held}); {how}\n\
         next: roamgw show-config {name} --format roamer > roamer.toml   # copy to the laptop, 0600\n      \
         roamgw add-port 22{to}\n",
        name = args.name,
        to = if several { format!(" --to {}", args.name) } else { String::new() },
    ))
}

pub fn remove_roamer(store: &Store, args: RemoveRoamerArgs) -> Result<String> {
    let _lock = store.lock()?;
    let change = StateChange::RemoveRoamer {
        name: args.name.clone(),
        force: args.force,
    };
    let (summary, how) = make_change(store, change)?;
    store.remove_roamer_keys(&args.name)?;
    Ok(format!("{summary}; {how}\n"))
}

#[derive(Serialize)]
struct RoamerView<'a> {
    name: &'a str,
    address: String,
    public_key: String,
    private_key_on_gateway: bool,
    forwards: Vec<String>,
}

pub fn roamers(store: &Store, json: bool) -> Result<String> {
    let state = store.load()?;
    let mut views = Vec::new();
    for roamer in &state.roamers {
        views.push(RoamerView {
            name: roamer.name.as_str(),
            address: roamer.address.to_string(),
            public_key: roamer.public_key.to_string(),
            private_key_on_gateway: store.roamer_key_path(&roamer.name).exists(),
            forwards: state
                .forwards
                .iter()
                .filter(|f| f.to == roamer.name)
                .map(Forward::key)
                .collect(),
        });
    }
    if json {
        return Ok(to_json(&views));
    }
    if views.is_empty() {
        return Ok("no roamers; add one with `roamgw add-roamer NAME`\n".into());
    }
    let mut table = Table::new(["NAME", "ADDRESS", "PUBLIC KEY", "KEY HELD BY", "FORWARDS"]);
    for v in &views {
        table.row([
            v.name.to_string(),
            v.address.clone(),
            v.public_key.clone(),
            if v.private_key_on_gateway {
                "gateway+roamer"
            } else {
                "roamer"
            }
            .into(),
            if v.forwards.is_empty() {
                "-".into()
            } else {
                v.forwards.join(" ")
            },
        ]);
    }
    Ok(table.render())
}

pub fn add_port(store: &Store, args: AddPortArgs) -> Result<String> {
    let _lock = store.lock()?;
    let change = StateChange::AddPort {
        spec: args.spec,
        to: args.to,
        allow_from: args.allow_from,
    };
    let (summary, how) = make_change(store, change)?;
    Ok(format!("{summary}; {how}\n"))
}

pub fn remove_port(store: &Store, args: RemovePortArgs) -> Result<String> {
    let _lock = store.lock()?;
    let (summary, how) = make_change(store, StateChange::RemovePort { spec: args.spec })?;
    Ok(format!("{summary}; {how}\n"))
}

#[derive(Serialize)]
struct ForwardView {
    #[serde(skip_serializing_if = "Option::is_none")]
    packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    spec: String,
    protocols: String,
    public: String,
    to: String,
    local: String,
    allow_from: Vec<String>,
}

pub fn list(store: &Store, json: bool) -> Result<String> {
    let state = store.load()?;
    let g = &state.gateway;
    let public_ip = g.floating_ip.unwrap_or(g.anchor_ip);
    let counters = backend::of(&state).counters(&state);
    let views: Vec<ForwardView> = state
        .forwards
        .iter()
        .map(|f| {
            let address = state
                .roamer(&f.to)
                .map(|r| r.address.to_string())
                .unwrap_or_default();
            let counter = counters.as_ref().and_then(|c| c.get(&f.key()));
            ForwardView {
                packets: counter.map(|c| c.packets),
                bytes: counter.map(|c| c.bytes),
                spec: f.key(),
                protocols: f.spec.protocols.to_string(),
                public: format!("{public_ip}:{}", f.spec.public),
                to: f.to.to_string(),
                local: format!("{address}:{}", f.spec.local),
                allow_from: f.allow_from.iter().map(ToString::to_string).collect(),
            }
        })
        .collect();
    if json {
        return Ok(to_json(&views));
    }
    if views.is_empty() {
        return Ok("no forwards; add one with `roamgw add-port 22`\n".into());
    }
    let mut table = Table::new([
        "SPEC",
        "PUBLIC",
        "TO",
        "LOCAL",
        "ALLOW FROM",
        "PACKETS",
        "BYTES",
    ]);
    for v in views {
        table.row([
            v.spec,
            v.public,
            v.to,
            v.local,
            if v.allow_from.is_empty() {
                "anyone".into()
            } else {
                v.allow_from.join(",")
            },
            v.packets.map_or("-".into(), |p| p.to_string()),
            v.bytes.map_or("-".into(), |b| b.to_string()),
        ]);
    }
    let mut out = table.render();
    if counters.is_none() {
        out.push_str("(counters show once the data plane is up)\n");
    }
    Ok(out)
}

pub fn show_config(store: &Store, args: ShowConfigArgs) -> Result<String> {
    let state = store.load()?;
    if args.gateway {
        if args.format != ConfigFormat::WgQuick {
            return Err(refused("the gateway side exists only as --format wg-quick"));
        }
        let key = store.gateway_private_key()?;
        let psks = state
            .roamers
            .iter()
            .map(|r| store.roamer_psk(&r.name))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let text = render::gateway_wg_quick(&state, key, psks);
        return if args.qr { qr(&text) } else { Ok(text) };
    }
    let name = args
        .name
        .ok_or_else(|| refused("name a roamer, or pass --gateway"))?;
    let roamer = state
        .roamer(&name)
        .ok_or_else(|| refused(format!("no roamer '{name}' ({})", roamer_names(&state))))?;
    let config = render::roamer_config(
        &state,
        roamer,
        store.roamer_private_key(&name)?,
        store.roamer_psk(&name)?,
    );
    let text = match args.format {
        ConfigFormat::Roamer => render::roamer_toml(&config),
        ConfigFormat::WgQuick => render::roamer_wg_quick(&config),
    };
    if args.qr {
        return qr(&text);
    }
    Ok(text)
}

pub fn run(store: Store, args: crate::cli::RunArgs) -> Result<String> {
    let state_dir = args
        .state_dir
        .unwrap_or_else(crate::daemon::default_state_dir);
    crate::daemon::run(store, &state_dir)?;
    Ok(String::new())
}

/// Per roamer: endpoint, handshake, traffic, from the daemon or from an external wireguard-go.
fn peer_views(store: &Store, state: &GatewayState) -> Vec<control::PeerView> {
    if let Ok(control::Reply::Status { peers }) = control::request(
        store,
        &control::Request::Status,
        std::time::Duration::from_secs(5),
    ) {
        return peers;
    }
    let status = roamgw_common::wg::open_existing(state.gateway.interface.as_str())
        .and_then(|d| d.status().ok());
    control::PeerView::for_roamers(state, status.as_ref())
}

pub fn rules(store: &Store) -> Result<String> {
    let state = store.load()?;
    Ok(backend::of(&state).rules_text(&state)?)
}

fn forward_count(state: &GatewayState) -> String {
    match state.forwards.len() {
        1 => "1 forward".into(),
        n => format!("{n} forwards"),
    }
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
    let plan = backend::up(&state)?;
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
    Ok(if backend::down(purge)? {
        if purge {
            "data plane down: table ip roamgw and roamgw's firewalld zone and policies removed\n"
                .into()
        } else {
            "data plane down: table ip roamgw removed, roamgw's firewalld policies (if any) emptied\n"
                .into()
        }
    } else {
        "data plane was not up\n".into()
    })
}

pub fn apply(store: &Store, dry_run: bool) -> Result<String> {
    let state = store.load()?;
    if dry_run {
        return Ok(format!("{}\n", backend::of(&state).dry_run(&state)?));
    }
    let request = control::Request::Reconcile {
        deadline_unix_ms: control::deadline_in(DAEMON_DEADLINE),
    };
    if let Some(summary) = ask_daemon(store, &request)? {
        return Ok(format!("{summary} (by roamgw run)\n"));
    }
    let plan = backend::up(&state)?;
    Ok(format!("{plan}\n"))
}

#[derive(Serialize)]
struct StatusView {
    config_dir: String,
    backend: String,
    anchor_ip: String,
    floating_ip: Option<String>,
    public_ip: String,
    interface: String,
    interface_present: bool,
    /// `kernel` or `userspace` WireGuard.
    interface_kind: Option<roamgw_common::wg::Kind>,
    data_plane_up: bool,
    in_sync: Option<bool>,
    drift: Option<String>,
    ip_forward: Option<bool>,
    daemon_running: bool,
    daemon_pid: Option<u32>,
    roamers: Vec<control::PeerView>,
    forwards: Vec<ForwardStatus>,
}

#[derive(Serialize)]
struct ForwardStatus {
    spec: String,
    to: String,
    packets: Option<u64>,
    bytes: Option<u64>,
}

pub fn status(store: &Store, json: bool) -> Result<String> {
    let state = store.load()?;
    let daemon_pid = control::daemon_pid_or_none(store);
    let g = &state.gateway;
    let plane = backend::of(&state).view(&state)?;
    let up = plane.is_some();
    let (drift, counters) = plane.map(|v| (v.drift, v.counters)).unwrap_or_default();
    let view = StatusView {
        config_dir: store.dir().display().to_string(),
        backend: g.backend.to_string(),
        anchor_ip: g.anchor_ip.to_string(),
        floating_ip: g.floating_ip.map(|ip| ip.to_string()),
        public_ip: g.public_ip.to_string(),
        interface: g.interface.to_string(),
        interface_present: backend::interface_exists(g.interface.as_str()),
        interface_kind: roamgw_common::wg::interface_kind(g.interface.as_str()),
        data_plane_up: up,
        in_sync: up.then_some(drift.is_none()),
        drift,
        ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .ok()
            .map(|v| v.trim() == "1"),
        daemon_running: daemon_pid.is_some(),
        daemon_pid,
        roamers: peer_views(store, &state),
        forwards: state
            .forwards
            .iter()
            .map(|f| {
                let c = counters.as_ref().and_then(|c| c.get(&f.key()));
                ForwardStatus {
                    spec: f.key(),
                    to: f.to.to_string(),
                    packets: c.map(|c| c.packets),
                    bytes: c.map(|c| c.bytes),
                }
            })
            .collect(),
    };
    if json {
        return Ok(to_json(&view));
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut out = format!(
        "gateway {} (state in {})\n  backend {}; anchor {}{}; public IP {} (untouched)\n  \
         WireGuard interface {}: {}{}\n  data plane: {}\n  ip_forward: {}\n  {}, {}\n",
        g.public_ip,
        view.config_dir,
        view.backend,
        view.anchor_ip,
        view.floating_ip
            .as_ref()
            .map(|f| format!(" (floating IP {f})"))
            .unwrap_or_default(),
        view.public_ip,
        view.interface,
        match (view.interface_present, view.interface_kind) {
            (true, Some(kind)) => format!("present, {kind} WireGuard"),
            (true, None) => "present".to_string(),
            (false, _) => "missing".to_string(),
        },
        if view.daemon_running {
            " (roamgw run is up)"
        } else {
            ""
        },
        match (&view.data_plane_up, &view.drift) {
            (false, _) =>
                "down (`roamgw run`, or `roamgw up` with --wireguard external)".to_string(),
            (true, None) => "up, in sync with the state".to_string(),
            (true, Some(d)) => format!("up, DRIFT: {d} (`roamgw apply` repairs it)"),
        },
        view.ip_forward.map(yes_no).unwrap_or("unknown"),
        match view.roamers.len() {
            1 => "1 roamer".to_string(),
            n => format!("{n} roamers"),
        },
        forward_count(&state),
    );
    if !view.roamers.is_empty() {
        let mut table = Table::new(["ROAMER", "ENDPOINT", "HANDSHAKE", "RX", "TX"]);
        for r in &view.roamers {
            table.row([
                r.name.clone(),
                r.endpoint.clone().unwrap_or_else(|| "-".into()),
                r.last_handshake_secs
                    .map_or("never".into(), |s| format!("{s} s ago")),
                r.rx_bytes.to_string(),
                r.tx_bytes.to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    if !view.forwards.is_empty() {
        let mut table = Table::new(["SPEC", "TO", "PACKETS", "BYTES"]);
        for f in &view.forwards {
            table.row([
                f.spec.clone(),
                f.to.clone(),
                f.packets.map_or("-".into(), |p| p.to_string()),
                f.bytes.map_or("-".into(), |b| b.to_string()),
            ]);
        }
        out.push_str(&table.render());
    }
    Ok(out)
}

/// The text as a QR code drawn with half-block characters (two modules per character row).
fn qr(text: &str) -> Result<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| {
        refused(format!(
            "the config does not fit in a QR code ({e}); copy the file instead"
        ))
    })?;
    let mut out = code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build();
    out.push('\n');
    Ok(out)
}

fn to_json<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| unreachable!("plain data serializes: {e}"));
    text.push('\n');
    text
}

/// A plain aligned text table.
struct Table<const N: usize> {
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    fn new(header: [&str; N]) -> Self {
        Self {
            rows: vec![header.map(str::to_string)],
        }
    }

    fn row(&mut self, cells: [String; N]) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let widths: Vec<usize> = (0..N)
            .map(|i| self.rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == N {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}
