//! `roamer run`: the laptop's tunnel, up until SIGTERM/SIGINT, following the laptop from
//! network to network.
//!
//! Brings the tunnel up (kernel WireGuard, or embedded userspace WireGuard; address, MTU,
//! the tunnel subnet's route) and probes it at once: the handshake starts when the peer is
//! added (both devices), the answered probe is what says the path works; boringtun's own
//! device, which we used first, started no handshake before it had something to send
//! (10–14 ms to a working forward with a poke, 10.2 s without). Then one loop
//! feeds [`crate::health::Machine`] with rtnetlink changes, resolver answers and a 500 ms tick
//! (the device's rx counter, and the CLOCK_BOOTTIME/CLOCK_MONOTONIC gap that betrays a
//! suspend), and carries out what it asks: probe, re-resolve, reconnect.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use roamgw_common::state::{RoamerConfig, RoamerGateway};
use roamgw_common::PrivateKey;
use roamgw_wg::netlink::{Links, NetlinkError, NetworkChange};
use roamgw_wg::{create_device, set_identity, sync_peers, Preference, ReplySource};
use roamgw_wg::{PeerConfig, WgDevice};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::{debug, error, info, warn};

mod family;
mod session;
mod transport;

use session::Session;

use crate::cli::RunArgs;
use crate::config::{self, ConfigError, Loaded};
use crate::health::Input;
use crate::metrics::Monitor;
use crate::routing::{self, Wanted};
use crate::status;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "cannot resolve the gateway {endpoint}: {message} (check the name, or the laptop's DNS)"
    )]
    Resolve { endpoint: String, message: String },
    #[error(transparent)]
    Device(#[from] roamgw_wg::CreateError),
    #[error(transparent)]
    Wg(#[from] roamgw_wg::DeviceError),
    #[error(transparent)]
    Netlink(#[from] roamgw_wg::netlink::NetlinkError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot write the status file: {0}")]
    Status(#[from] roamgw_common::fsutil::FsError),
    #[error("cannot serve metrics on http://{addr}: {source} (pick another address for --http)")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("another roamer (pid {0}) runs interface {1}: stop it first (`roamer down`)")]
    AlreadyRunning(u32, String),
}

pub(crate) fn resolve(endpoint: &roamgw_common::Endpoint) -> Result<SocketAddr, RunError> {
    let resolve_error = |message: String| RunError::Resolve {
        endpoint: endpoint.to_string(),
        message,
    };
    (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(|e| resolve_error(e.to_string()))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| resolve_error("no IPv4 address".into()))
}

enum Event {
    Network(NetworkChange),
    /// A committed nftables transaction (the laptop's firewall, or our own table).
    Ruleset,
    /// `Ok(None)`: the race was called off by a network change.
    Resolved(Result<Option<SocketAddr>, String>),
    /// Whether the gateway answered the UDP check (the tunnel runs over TCP meanwhile).
    UdpChecked(bool),
    PortalChecked(roamgw_wg::tcp::portal::Reached),
    Stop(i32),
}

fn peer_config(config: &RoamerConfig, endpoint: SocketAddr) -> PeerConfig {
    PeerConfig {
        public_key: config.gateway.public_key,
        preshared_key: config.gateway.preshared_key.clone(),
        endpoint: Some(endpoint),
        // Any inner source from the gateway: a forward that keeps the client's address
        // arrives with it. What goes into the tunnel is decided by routes, not by this: the
        // tunnel subnet, and replies by their source (`bring_up`).
        allowed_ips: config.any_source(),
        persistent_keepalive: config.gateway.persistent_keepalive,
    }
}

/// Where to dial the gateway on this network. `keep` (the address in use, while the tunnel
/// works) stays while the gateway still has it: no race then, as each attempt moves the
/// gateway's idea of where we are for a moment. Otherwise, with addresses of both families,
/// the happy-eyeballs race decides; when nothing answers (UDP blocked, say) the first IPv4
/// address, which the TCP fallback also takes. `None`: `cancelled` was set during the race
/// (the network changed; the caller asks again).
pub(crate) fn choose_gateway(
    gateway: &RoamerGateway,
    key: &PrivateKey,
    keep: Option<SocketAddr>,
    cancelled: &AtomicBool,
) -> Result<Option<SocketAddr>, String> {
    let candidates = family::lookup(gateway)?;
    if let Some(keep) = keep.filter(|k| candidates.contains(k)) {
        return Ok(Some(keep));
    }
    let first_v4 = candidates.iter().find(|a| a.is_ipv4()).copied();
    if !family::both_families(&candidates) {
        return Ok(Some(first_v4.unwrap_or(candidates[0])));
    }
    let (public, preshared) = (gateway.public_key, gateway.preshared_key.clone());
    let key = key.clone();
    let answers = move |candidate, wait| {
        roamgw_wg::tcp::udp_answers(&key, &public, preshared.as_ref(), candidate, wait)
            .unwrap_or(false)
    };
    let raced = family::race(
        &candidates,
        answers,
        family::ATTEMPT_DELAY,
        family::ANSWER_WAIT,
        cancelled,
    );
    match raced {
        Ok((winner, took)) => {
            info!(gateway = %winner, took_ms = took.as_millis() as u64, "happy eyeballs: the gateway answered over {}", family_name(winner));
            Ok(Some(winner))
        }
        Err(family::NoWinner::Cancelled) => {
            debug!("happy eyeballs: the network changed during the race");
            Ok(None)
        }
        Err(family::NoWinner::Silent) => {
            let fallback = first_v4.unwrap_or(candidates[0]);
            info!(gateway = %fallback, "happy eyeballs: no address answered; dialling {fallback}");
            Ok(Some(fallback))
        }
    }
}

pub(crate) fn family_name(address: SocketAddr) -> &'static str {
    if address.is_ipv6() {
        "IPv6"
    } else {
        "IPv4"
    }
}

fn resolve_in_background(
    gateway: RoamerGateway,
    key: PrivateKey,
    keep: Option<SocketAddr>,
    cancelled: Arc<AtomicBool>,
    events: mpsc::Sender<Event>,
) {
    in_background("resolve", events, move || {
        Event::Resolved(choose_gateway(&gateway, &key, keep, &cancelled))
    });
}

/// Asks `question` on a thread of its own (a lookup or a check that may take seconds must not
/// stall the loop); its answer comes back to the loop as an event.
fn in_background(
    name: &str,
    events: mpsc::Sender<Event>,
    question: impl FnOnce() -> Event + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = events.send(question());
        });
    if let Err(e) = spawned {
        warn!("cannot start a {name} thread: {e}");
    }
}

/// Another roamer on this interface stops the start before anything is created.
fn refuse_to_start(config: &RoamerConfig) -> Result<(), RunError> {
    let interface = config.interface.as_str();
    if let Some(other) = status::read_live(interface) {
        if other.pid != std::process::id() {
            return Err(RunError::AlreadyRunning(other.pid, interface.to_string()));
        }
    }
    Ok(())
}

/// SIGTERM and SIGINT become one `Event::Stop` in the loop's inbox.
fn forward_stop_signals(events: mpsc::Sender<Event>) -> Result<(), RunError> {
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(RunError::Signals)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let _ = events.send(Event::Stop(signal));
            }
        })
        .map_err(RunError::Signals)?;
    Ok(())
}

/// Key, the gateway peer, MTU and address, then the laptop's routing for the tunnel
/// (crate::routing). The address's connected route is the tunnel subnet: the only route the
/// roamer needs, so updates and browsing keep going straight out.
fn bring_up(
    device: &dyn WgDevice,
    links: &Links,
    loaded: &Loaded,
    endpoint: SocketAddr,
) -> Result<Tunnel, RunError> {
    let config = &loaded.config;
    let interface = config.interface.as_str();
    set_identity(device, &loaded.key, 0)?;
    sync_peers(device, &[peer_config(config, endpoint)])?.all_applied()?;
    links.configure(interface, config.mtu, &config.tunnel_addresses())?;
    let index = links
        .index(interface)?
        .ok_or_else(|| NetlinkError::NoSuchInterface(interface.to_string()))?;
    routing::install_replies(links, index, config)?;
    let udp_replies = routing::install_udp_replies(config);
    // A table that failed to load while nft is there is wanted all the same: the repair
    // loop tries again (every 10 s at the latest), rather than UDP replies from 0.0.0.0
    // leaving past the tunnel for the roamer's whole life.
    let nft_present = udp_replies.is_ok() || routing::nft(&["--version"], None).is_ok();
    if let Err(e) = &udp_replies {
        warn!(
            "UDP servers that reply from 0.0.0.0 will answer kept client addresses from the \
             laptop's own address, not through the tunnel, {}: {e}",
            if nft_present {
                "until the table loads (tried again with every check)"
            } else {
                "as long as nft is missing"
            }
        );
    }
    let egress = config.egress();
    if !egress.is_empty() {
        routing::install_egress(links, index, config, device.status()?.listen_port)?;
        info!(destinations = ?egress, "egress through the gateway");
    }
    Ok(Tunnel {
        index,
        wanted: Wanted::of(config, nft_present),
    })
}

/// The interface brought up, and what of the laptop's routing roamer keeps in place.
struct Tunnel {
    index: u32,
    wanted: Wanted,
}

/// What a stopping run leaves behind: no status file, none of its routing.
fn leave(config: &RoamerConfig) {
    status::remove(config.interface.as_str());
    unroute(config);
}

/// Takes the laptop's routing for the tunnel down, saying so when it cannot.
fn unroute(config: &RoamerConfig) {
    if let Err(e) = routing::remove(config) {
        warn!("{e}");
    }
}

pub fn run(args: &RunArgs) -> Result<(), RunError> {
    let (config_path, wireguard, http) = (&args.config.config, args.wireguard, args.http);
    let routes = roamgw_common::routes::Routes::system();
    let mut loaded = config::load(config_path, &routes)?;
    if let Some(keepalive) = args.keepalive {
        loaded.config.gateway.persistent_keepalive = keepalive;
    }
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    let config = &loaded.config;
    let interface = config.interface.as_str();
    refuse_to_start(config)?;
    let resolve_error = |message: String| RunError::Resolve {
        endpoint: config.gateway.endpoint.to_string(),
        message,
    };
    let endpoint = choose_gateway(&config.gateway, &loaded.key, None, &AtomicBool::new(false))
        .map_err(resolve_error)?
        .ok_or_else(|| resolve_error("the race was called off".into()))?;
    let (events, inbox) = mpsc::channel();
    forward_stop_signals(events.clone())?;
    let mut device = create_device(interface, wireguard, ReplySource::Route)?;
    let links = Links::connect()?;
    let tunnel = bring_up(device.as_ref(), &links, &loaded, endpoint)?;
    let tunnel_index = Arc::new(AtomicU32::new(tunnel.index));
    // After bring_up (`--http` may name the tunnel address); a failure takes the routes and
    // rules down again (the device goes with `device`).
    let monitor = Arc::new(Monitor::default());
    if let Err(e) = watch(config, http, &monitor, &tunnel_index, &events) {
        unroute(config);
        return Err(e);
    }
    let mut session = Session::new(
        config,
        config_path,
        endpoint,
        events.clone(),
        loaded.warnings.clone(),
        monitor,
        links,
        tunnel,
        loaded.key.clone(),
    );
    session.start();
    let signal = loop {
        let mut inputs = Vec::new();
        match inbox.recv_timeout(session.wait()) {
            Ok(Event::Stop(signal)) => break signal,
            Ok(Event::Network(NetworkChange::TunnelRemoved)) => {
                warn!(
                    interface,
                    "the tunnel interface was deleted by something else: creating it again"
                );
                // The old device first: the new one takes its name (and UAPI socket).
                drop(device);
                device = match recreate(wireguard, &mut session, &loaded, &tunnel_index) {
                    Ok(new) => {
                        let rx_bytes = session.rx_bytes(new.as_ref()).unwrap_or(0);
                        inputs.push(Input::NetworkChanged { rx_bytes });
                        new
                    }
                    Err(e) => {
                        error!("stopping: cannot create the tunnel interface again: {e}");
                        leave(config);
                        return Err(e);
                    }
                };
            }
            Ok(event) => session.on_event(event, &mut inputs),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break 0,
        }
        let now = Instant::now();
        session.on_settled_network(now, device.as_ref(), &mut inputs);
        session.on_tick(now, device.as_ref(), &mut inputs);
        session.act(device.as_ref(), inputs);
        session.repair_drift(now, device.as_ref());
    };
    info!(signal, "stopping");
    leave(config);
    // Removes the interface.
    drop(device);
    Ok(())
}

/// A new device under the interface's name, brought up as at start with the gateway's
/// current address; the session and the network watcher follow the new interface.
fn recreate(
    wireguard: Preference,
    session: &mut Session<'_>,
    loaded: &Loaded,
    tunnel_index: &AtomicU32,
) -> Result<Box<dyn WgDevice>, RunError> {
    let device = create_device(
        loaded.config.interface.as_str(),
        wireguard,
        ReplySource::Route,
    )?;
    let tunnel = bring_up(
        device.as_ref(),
        &session.links,
        loaded,
        session.machine.endpoint(),
    )?;
    tunnel_index.store(tunnel.index, Ordering::Relaxed);
    session.tunnel = tunnel;
    session.monitor.drift_repaired();
    session.prober.probe();
    Ok(device)
}

/// What the loop hears besides signals: `--http`'s server (when asked for), the network's
/// changes (rtnetlink) and committed nftables transactions.
fn watch(
    config: &RoamerConfig,
    http: Option<SocketAddr>,
    monitor: &Arc<Monitor>,
    tunnel_index: &Arc<AtomicU32>,
    events: &mpsc::Sender<Event>,
) -> Result<(), RunError> {
    if let Some(addr) = http {
        crate::metrics::serve(addr, monitor.clone(), config.name.to_string())
            .map_err(|source| RunError::Http { addr, source })?;
    }
    let network_events = events.clone();
    roamgw_wg::netlink::watch_network(Some(tunnel_index.clone()), move |change| {
        let _ = network_events.send(Event::Network(change));
    })?;
    let ruleset_events = events.clone();
    if let Err(e) = roamgw_wg::nftwatch::watch_commits(None, move |_| {
        let _ = ruleset_events.send(Event::Ruleset);
    }) {
        warn!("cannot watch nftables ({e}): its changes are looked at every 10 s");
    }
    Ok(())
}
