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

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use roamgw_common::state::RoamerConfig;
use roamgw_wg::netlink::{Links, NetlinkError, NetworkChange};
use roamgw_wg::{create_device, reset_peer, set_identity, sync_peers, Preference};
use roamgw_wg::{PeerConfig, WgDevice};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::{debug, error, info, warn};

use crate::config::{self, ConfigError, Loaded};
use crate::health::{Action, Health, Input, Machine, Timing};
use crate::metrics::Monitor;
use crate::routing::{self, Installed, Repair, Wanted};
use crate::status::{self, RunState};

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

fn resolve(endpoint: &roamgw_common::Endpoint) -> Result<SocketAddr, RunError> {
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

/// Port 9 (discard): nothing listens there, so the gateway's kernel answers with ICMP port
/// unreachable, which comes back through the tunnel as data.
const PROBE_PORT: u16 = 9;
const TICK: Duration = Duration::from_millis(500);
/// While a probe is out: reading the counters costs microseconds, a late "up" costs users.
const FAST_TICK: Duration = Duration::from_millis(20);
/// Network events come in bursts (address gone, address added, route added): act once the
/// burst is quiet for this long, or at the latest after `DEBOUNCE_MAX`.
const DEBOUNCE_QUIET: Duration = Duration::from_millis(100);
const DEBOUNCE_MAX: Duration = Duration::from_millis(500);
/// How often the laptop's routing for the tunnel is compared with what roamer installed when
/// no event says to (a safety net: netlink dumps and one `nft list table`).
const DRIFT_CHECK: Duration = Duration::from_secs(10);
const DRIFT_AFTER_CHANGE: Duration = Duration::from_secs(1);
/// After a rule, a tunnel route or an nftables change: long enough for the rest of a flush
/// (or of a firewall's start) to go too.
const DRIFT_AFTER_REMOVAL: Duration = Duration::from_millis(100);
/// Boot time running ahead of monotonic time by more than this: the laptop slept.
const SUSPEND_GAP: Duration = Duration::from_secs(2);

enum Event {
    Network(NetworkChange),
    /// A committed nftables transaction (the laptop's firewall, or our own table).
    Ruleset,
    Resolved(Result<SocketAddr, String>),
    Stop(i32),
}

/// How long the machine was suspended between two (CLOCK_BOOTTIME, CLOCK_MONOTONIC) readings:
/// boot time counts the sleep, monotonic time does not. `None` below [`SUSPEND_GAP`] (a busy
/// machine's scheduling noise).
fn slept_between(before: (Duration, Duration), after: (Duration, Duration)) -> Option<Duration> {
    let slept = after
        .0
        .saturating_sub(before.0)
        .saturating_sub(after.1.saturating_sub(before.1));
    (slept > SUSPEND_GAP).then_some(slept)
}

/// Seconds the machine has been up, suspend included (CLOCK_BOOTTIME).
fn boottime() -> Duration {
    clock(rustix::time::ClockId::Boottime)
}

fn monotonic() -> Duration {
    clock(rustix::time::ClockId::Monotonic)
}

fn clock(id: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(id);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn peer_config(config: &RoamerConfig, endpoint: SocketAddr) -> PeerConfig {
    PeerConfig {
        public_key: config.gateway.public_key,
        preshared_key: config.gateway.preshared_key.clone(),
        endpoint: Some(endpoint),
        // Any inner source from the gateway: a forward that keeps the client's address
        // arrives with it. What goes into the tunnel is decided by routes, not by this: the
        // tunnel subnet, and replies by their source (`bring_up`).
        allowed_ips: vec![ipnet::IpNet::V4(ipnet::Ipv4Net::default())],
        persistent_keepalive: config.gateway.persistent_keepalive,
    }
}

/// Sends probes into the tunnel; the answers show up in the device's rx counter.
struct Prober {
    socket: Option<UdpSocket>,
    target: (Ipv4Addr, u16),
}

impl Prober {
    fn new(gateway: Ipv4Addr) -> Self {
        let socket = UdpSocket::bind("0.0.0.0:0")
            .inspect_err(|e| warn!("no probe socket ({e}): dead paths go unnoticed"))
            .ok();
        Prober {
            socket,
            target: (gateway, PROBE_PORT),
        }
    }

    fn probe(&self) {
        if let Some(socket) = &self.socket {
            // Fails while the laptop has no route at all; the next network change retries.
            if let Err(e) = socket.send_to(b"roamer probe", self.target) {
                debug!("probe not sent: {e}");
            }
        }
    }
}

fn resolve_in_background(endpoint: roamgw_common::Endpoint, events: mpsc::Sender<Event>) {
    let spawned = std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let answer = resolve(&endpoint).map_err(|e| e.to_string());
            let _ = events.send(Event::Resolved(answer));
        });
    if let Err(e) = spawned {
        warn!("cannot start a resolver thread: {e}");
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
    links.configure(interface, config.mtu, config.address)?;
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

/// Takes the laptop's routing for the tunnel down, saying so when it cannot.
fn unroute(config: &RoamerConfig) {
    if let Err(e) = routing::remove(config) {
        warn!("{e}");
    }
}

pub fn run(
    config_path: &Path,
    wireguard: Preference,
    http: Option<std::net::SocketAddr>,
) -> Result<(), RunError> {
    let routes = roamgw_common::routes::system_routes();
    let loaded = config::load(config_path, &routes)?;
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    let config = &loaded.config;
    let interface = config.interface.as_str();
    refuse_to_start(config)?;
    let endpoint = resolve(&config.gateway.endpoint)?;
    let (events, inbox) = mpsc::channel();
    forward_stop_signals(events.clone())?;
    let mut device = create_device(interface, wireguard)?;
    let links = Links::connect()?;
    let tunnel = bring_up(device.as_ref(), &links, &loaded, endpoint)?;
    let tunnel_index = Arc::new(AtomicU32::new(tunnel.index));
    // After bring_up (`--http` may name the tunnel address); a failure takes the routes and
    // rules down again (the device goes with `device`).
    let monitor = Arc::new(Monitor::default());
    let network_events = events.clone();
    let watching = http
        .map_or(Ok(()), |addr| {
            crate::metrics::serve(
                addr,
                monitor.clone(),
                config.name.to_string(),
                interface.to_string(),
                config.gateway.public_key,
            )
            .map_err(|source| RunError::Http { addr, source })
        })
        .and_then(|()| {
            roamgw_wg::netlink::watch_network(Some(tunnel_index.clone()), move |change| {
                let _ = network_events.send(Event::Network(change));
            })
            .map_err(RunError::from)
        });
    let ruleset_events = events.clone();
    if let Err(e) = roamgw_wg::nftwatch::watch_commits(None, move |_| {
        let _ = ruleset_events.send(Event::Ruleset);
    }) {
        warn!("cannot watch nftables ({e}): its changes are looked at every 10 s");
    }
    if let Err(e) = watching {
        unroute(config);
        return Err(e);
    }

    let mut session = Session {
        config,
        config_path,
        prober: Prober::new(config.gateway_tunnel_address()),
        machine: Machine::new(
            Timing::new(config.gateway.persistent_keepalive),
            endpoint,
            boottime(),
            u64::from(std::process::id()),
        ),
        events: events.clone(),
        started: status::unix_now(),
        warned: loaded.warnings.clone(),
        burst: None,
        next_tick: Instant::now(),
        clocks: (boottime(), monotonic()),
        monitor,
        disrupted_since: None,
        links,
        tunnel,
        next_drift_check: Instant::now() + DRIFT_CHECK,
        drift_failures: Vec::new(),
        ruleset_changed: false,
    };
    session.prober.probe();
    session.write_status();
    info!(
        interface,
        address = %config.address,
        gateway = %config.gateway.endpoint,
        resolved = %endpoint,
        keepalive = config.gateway.persistent_keepalive,
        "tunnel up, waiting for the gateway's answer"
    );
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
                device = match recreate(wireguard, &session, &loaded) {
                    Ok((new, tunnel)) => {
                        tunnel_index.store(tunnel.index, Ordering::Relaxed);
                        session.tunnel = tunnel;
                        session.monitor.drift_repaired();
                        inputs.push(Input::NetworkChanged);
                        new
                    }
                    Err(e) => {
                        error!("stopping: cannot create the tunnel interface again: {e}");
                        status::remove(interface);
                        unroute(config);
                        return Err(e);
                    }
                };
            }
            Ok(event) => session.on_event(event, &mut inputs),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break 0,
        }
        let now = Instant::now();
        session.on_settled_network(now, &mut inputs);
        session.on_tick(now, device.as_ref(), &mut inputs);
        session.act(device.as_ref(), inputs);
        session.repair_drift(now, device.as_ref());
    };
    info!(signal, "stopping");
    status::remove(interface);
    unroute(config);
    // Removes the interface.
    drop(device);
    Ok(())
}

/// A new device under the interface's name, brought up as at start with the gateway's
/// current address.
fn recreate(
    wireguard: Preference,
    session: &Session<'_>,
    loaded: &Loaded,
) -> Result<(Box<dyn WgDevice>, Tunnel), RunError> {
    let device = create_device(loaded.config.interface.as_str(), wireguard)?;
    let tunnel = bring_up(
        device.as_ref(),
        &session.links,
        loaded,
        session.machine.endpoint(),
    )?;
    session.prober.probe();
    Ok((device, tunnel))
}

/// The running tunnel: what the loop in [`run`] feeds the health machine with, and carries
/// out for it. Each step is a method; the machine itself is pure (crate::health).
struct Session<'a> {
    config: &'a RoamerConfig,
    config_path: &'a Path,
    prober: Prober,
    machine: Machine,
    events: mpsc::Sender<Event>,
    /// When the run began (Unix seconds), for the status file.
    started: u64,
    /// Warnings already said once (subnet collisions), so a network change repeats none.
    warned: Vec<String>,
    /// A burst of network changes being merged: (first, last, what).
    burst: Option<(Instant, Instant, NetworkChange)>,
    next_tick: Instant,
    /// (CLOCK_BOOTTIME, CLOCK_MONOTONIC) at the last tick: a gap between them is a suspend.
    clocks: (Duration, Duration),
    /// What `--http` shows.
    monitor: Arc<Monitor>,
    /// When the path came into question (a network change, a wake-up, an unanswered probe)
    /// and has not been confirmed since: the start of a recovery.
    disrupted_since: Option<Duration>,
    links: Links,
    tunnel: Tunnel,
    next_drift_check: Instant,
    /// Repairs that failed, as said in the log.
    drift_failures: Vec<String>,
    /// nftables changed since the last look.
    ruleset_changed: bool,
}

impl Session<'_> {
    /// How long the loop may wait for an event: until the next tick or look at the laptop's
    /// routing, or until a burst of network changes has settled.
    fn wait(&self) -> Duration {
        let due = self.next_tick.min(self.next_drift_check);
        let mut wait = due.saturating_duration_since(Instant::now());
        if let Some((first, last, _)) = &self.burst {
            let due = (*last + DEBOUNCE_QUIET).min(*first + DEBOUNCE_MAX);
            wait = wait.min(due.saturating_duration_since(Instant::now()));
        }
        wait
    }

    fn on_event(&mut self, event: Event, inputs: &mut Vec<Input>) {
        match event {
            Event::Network(NetworkChange::RuleRemoved | NetworkChange::TunnelRouteRemoved) => {
                // Ours, maybe (our own repairs delete before they add): a look is cheap.
                let soon = Instant::now() + DRIFT_AFTER_REMOVAL;
                self.next_drift_check = self.next_drift_check.min(soon);
            }
            Event::Ruleset => {
                // A firewall that has just started tracking connections refuses the gateway's
                // packets until the laptop sends one: probe, and look at our table.
                self.ruleset_changed = true;
                let soon = Instant::now() + DRIFT_AFTER_REMOVAL;
                self.next_drift_check = self.next_drift_check.min(soon);
            }
            Event::Network(change) => {
                let now = Instant::now();
                self.burst = Some(match self.burst.take() {
                    Some((first, _, what)) => (first, now, what),
                    None => (now, now, change),
                });
            }
            Event::Resolved(Ok(address)) => inputs.push(Input::Resolved(address)),
            Event::Resolved(Err(message)) => {
                warn!("{message}");
                inputs.push(Input::ResolveFailed(message));
            }
            Event::Stop(_) => {}
        }
    }

    /// A burst of network changes that has been quiet long enough (or gone on too long)
    /// becomes one "network changed"; new subnet collisions are said once.
    fn on_settled_network(&mut self, now: Instant, inputs: &mut Vec<Input>) {
        let Some((first, last, what)) = &self.burst else {
            return;
        };
        if now < (*last + DEBOUNCE_QUIET).min(*first + DEBOUNCE_MAX) {
            return;
        }
        info!(
            change = what.describe(),
            "network changed: probing the gateway"
        );
        inputs.push(Input::NetworkChanged);
        self.burst = None;
        // Network managers redo their rules when a link changes: look at ours soon.
        self.next_drift_check = self.next_drift_check.min(now + DRIFT_AFTER_CHANGE);
        let routes = roamgw_common::routes::system_routes();
        for warning in config::collision_warnings(&routes, self.config) {
            if !self.warned.contains(&warning) {
                warn!("{warning}");
                self.warned.push(warning);
            }
        }
    }

    /// Every tick (faster while an answer is awaited): a suspend shows as a clock gap, and
    /// the device's rx counter says whether the gateway answered.
    fn on_tick(&mut self, now: Instant, device: &dyn WgDevice, inputs: &mut Vec<Input>) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now
            + if self.machine.awaiting_answer() {
                FAST_TICK
            } else {
                TICK
            };
        let now_clocks = (boottime(), monotonic());
        let slept = slept_between(self.clocks, now_clocks);
        self.clocks = now_clocks;
        if let Some(slept) = slept {
            info!(
                slept_secs = slept.as_secs(),
                "woke from suspend: probing the gateway"
            );
            inputs.push(Input::NetworkChanged);
        }
        match device.status() {
            Ok(status) => {
                let rx_bytes = status
                    .peer(&self.config.gateway.public_key)
                    .map_or(0, |p| p.rx_bytes);
                inputs.push(Input::Tick { rx_bytes });
            }
            Err(e) => warn!("cannot read the tunnel's counters: {e}"),
        }
    }

    /// Steps the machine with each input and carries out its actions: probe, re-resolve,
    /// reconnect. A change of health is logged and written to the status file.
    fn act(&mut self, device: &dyn WgDevice, inputs: Vec<Input>) {
        for input in inputs {
            let now = boottime();
            if input == Input::NetworkChanged {
                self.monitor.network_changed();
                self.disrupted_since.get_or_insert(now);
            }
            let before = (self.machine.health().clone(), self.machine.endpoint());
            for action in self.machine.step(now, input) {
                match action {
                    Action::Probe => self.prober.probe(),
                    Action::Resolve => resolve_in_background(
                        self.config.gateway.endpoint.clone(),
                        self.events.clone(),
                    ),
                    Action::Reconnect(address) => {
                        if address != before.1 {
                            self.monitor.gateway_moved();
                            info!(from = %before.1, to = %address, "the gateway moved: following it");
                        }
                        if let Err(e) = reset_peer(device, &peer_config(self.config, address)) {
                            warn!("cannot reconnect to {address}: {e}");
                        }
                        self.prober.probe();
                    }
                }
            }
            self.note_recovery(&before.0, now);
            if (self.machine.health(), self.machine.endpoint()) != (&before.0, before.1) {
                log_health(&before.0, &self.machine);
                self.monitor.set_health(self.machine.health());
                self.write_status();
            }
        }
    }

    /// Puts back what someone else removed of the laptop's routing for the tunnel
    /// (crate::routing), every [`DRIFT_CHECK`] and soon after a network change.
    fn repair_drift(&mut self, now: Instant, device: &dyn WgDevice) {
        if now < self.next_drift_check {
            return;
        }
        self.next_drift_check = now + DRIFT_CHECK;
        if std::mem::take(&mut self.ruleset_changed) {
            self.prober.probe();
        }
        let found = match Installed::read(&self.links, self.config) {
            Ok(found) => found,
            Err(e) => {
                debug!("cannot read the laptop's routing: {e}");
                return;
            }
        };
        for repair in routing::repairs(&found, &self.tunnel.wanted) {
            let done = match repair {
                Repair::Replies => {
                    routing::install_replies(&self.links, self.tunnel.index, self.config)
                        .map_err(|e| e.to_string())
                }
                Repair::UdpReplies => routing::install_udp_replies(self.config),
                Repair::Egress => device
                    .status()
                    .map_err(|e| e.to_string())
                    .and_then(|status| {
                        routing::install_egress(
                            &self.links,
                            self.tunnel.index,
                            self.config,
                            status.listen_port,
                        )
                        .map_err(|e| e.to_string())
                    }),
            };
            match done {
                Ok(()) => {
                    self.monitor.drift_repaired();
                    self.drift_failures
                        .retain(|f| !f.contains(repair.describe()));
                    warn!(
                        ?found,
                        "{} had been changed by something else: put back",
                        repair.describe()
                    );
                }
                Err(e) => {
                    let failure = format!("cannot put back {}: {e}", repair.describe());
                    // Said once while it keeps failing the same way, not every check.
                    if !self.drift_failures.contains(&failure) {
                        warn!("{failure}");
                        self.drift_failures.push(failure);
                    }
                }
            }
        }
    }

    /// A recovery ends when data flows again after the path came into question.
    fn note_recovery(&mut self, before: &Health, now: Duration) {
        let health = self.machine.health();
        if *before == Health::Up && *health != Health::Up {
            self.disrupted_since.get_or_insert(now);
        }
        if *health == Health::Up && !self.machine.awaiting_answer() {
            if let Some(since) = self.disrupted_since.take() {
                let took = now.saturating_sub(since);
                debug!(took_ms = took.as_millis(), "the tunnel carries data again");
                self.monitor.recovered(took);
            }
        }
    }

    fn write_status(&self) {
        let machine = &self.machine;
        let written = status::write(&RunState {
            pid: std::process::id(),
            config: self.config_path.to_path_buf(),
            name: self.config.name.to_string(),
            interface: self.config.interface.to_string(),
            tunnel_address: self.config.address,
            gateway_endpoint: self.config.gateway.endpoint.to_string(),
            gateway_address: machine.endpoint(),
            health: machine.health().clone(),
            health_since: status::unix_now()
                .saturating_sub(boottime().saturating_sub(machine.health_since()).as_secs()),
            started: self.started,
        });
        if let Err(e) = written {
            warn!("{e}");
        }
    }
}

fn log_health(before: &Health, machine: &Machine) {
    match machine.health() {
        Health::Up => match before {
            Health::Connecting => {
                info!(gateway = %machine.endpoint(), "tunnel up: the gateway answers")
            }
            _ => info!(gateway = %machine.endpoint(), "tunnel recovered"),
        },
        Health::Stale(why) => {
            warn!(gateway = %machine.endpoint(), "tunnel stale: {why}; re-resolving and reconnecting")
        }
        Health::Down(why) => {
            warn!(gateway = %machine.endpoint(), "tunnel down: {why}; retrying with backoff")
        }
        Health::Connecting => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_suspend_is_boot_time_that_monotonic_time_did_not_see() {
        // (boot, monotonic) before -> after
        let table = [
            ((secs(100), secs(90)), (secs(101), secs(91)), None), // half a second tick
            ((secs(100), secs(90)), (secs(102), secs(91)), None), // 1 s of noise
            (
                (secs(100), secs(90)),
                (secs(701), secs(91)),
                Some(secs(600)),
            ), // 10 min lid closed
            ((secs(100), secs(90)), (secs(100), secs(90)), None),
        ];
        for (before, after, want) in table {
            assert_eq!(
                slept_between(before, after),
                want,
                "{before:?} -> {after:?}"
            );
        }
    }

    #[test]
    fn the_clocks_read() {
        // Boot time includes suspends, so it never trails monotonic time (read right after it).
        let (boot, mono) = (boottime(), monotonic());
        assert!(
            boot + Duration::from_millis(100) >= mono,
            "{boot:?} {mono:?}"
        );
        assert!(mono > Duration::ZERO);
    }
}
