//! One run's live state and what the loop in [`super::run`] does with each event, tick and
//! drift check: feed the health machine (crate::health, pure), carry out its actions, repair
//! the laptop's routing, write the status file.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use roamgw_common::state::RoamerConfig;
use roamgw_common::PrivateKey;
use roamgw_wg::netlink::{Links, NetworkChange};
use roamgw_wg::tcp::client::TcpClient;
use roamgw_wg::WgDevice;
use tracing::{debug, info, warn};

use super::{resolve_in_background, Event, Tunnel};
use crate::config;
use crate::health::{Action, Health, Input, Machine, Timing};
use crate::metrics::Monitor;
use crate::routing::{self, Installed, Repair};
use crate::status::{self, RunState};

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
pub(super) fn boottime() -> Duration {
    clock(rustix::time::ClockId::Boottime)
}

pub(super) fn monotonic() -> Duration {
    clock(rustix::time::ClockId::Monotonic)
}

fn clock(id: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(id);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Sends probes into the tunnel; the answers show up in the device's rx counter.
pub(super) struct Prober {
    socket: Option<UdpSocket>,
    target: (Ipv4Addr, u16),
}

impl Prober {
    pub(super) fn new(gateway: Ipv4Addr) -> Self {
        let socket = UdpSocket::bind("0.0.0.0:0")
            .inspect_err(|e| warn!("no probe socket ({e}): dead paths go unnoticed"))
            .ok();
        Prober {
            socket,
            target: (gateway, PROBE_PORT),
        }
    }

    pub(super) fn probe(&self) {
        if let Some(socket) = &self.socket {
            // Fails while the laptop has no route at all; the next network change retries.
            if let Err(e) = socket.send_to(b"roamer probe", self.target) {
                debug!("probe not sent: {e}");
            }
        }
    }
}

/// The running tunnel: what the loop in [`run`] feeds the health machine with, and carries
/// out for it. Each step is a method; the machine itself is pure (crate::health).
pub(super) struct Session<'a> {
    pub(super) config: &'a RoamerConfig,
    pub(super) config_path: &'a Path,
    pub(super) prober: Prober,
    pub(super) machine: Machine,
    pub(super) events: mpsc::Sender<Event>,
    /// When the run began (Unix seconds), for the status file.
    pub(super) started: u64,
    /// Warnings already said once (subnet collisions), so a network change repeats none.
    pub(super) warned: Vec<String>,
    /// A burst of network changes being merged: (first, last, what).
    pub(super) burst: Option<(Instant, Instant, NetworkChange)>,
    /// Set to call off the gateway race that is out, if any.
    pub(super) race: Arc<AtomicBool>,
    pub(super) next_tick: Instant,
    /// (CLOCK_BOOTTIME, CLOCK_MONOTONIC) at the last tick: a gap between them is a suspend.
    pub(super) clocks: (Duration, Duration),
    /// What `--http` shows.
    pub(super) monitor: Arc<Monitor>,
    /// When the path came into question (a network change, a wake-up, an unanswered probe)
    /// and has not been confirmed since: the start of a recovery.
    pub(super) disrupted_since: Option<Duration>,
    pub(super) links: Links,
    pub(super) tunnel: Tunnel,
    pub(super) next_drift_check: Instant,
    /// Repairs that failed, as said in the log.
    pub(super) drift_failures: Vec<String>,
    /// nftables changed since the last look.
    pub(super) ruleset_changed: bool,
    /// The relay to the gateway's WireGuard over TCP, while the tunnel uses it.
    pub(super) tcp: Option<TcpClient>,
    /// The laptop's key, for the UDP check beside a tunnel that runs over TCP.
    pub(super) key: PrivateKey,
}

impl<'a> Session<'a> {
    /// A run that starts now, with the tunnel just brought up to `endpoint`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        config: &'a RoamerConfig,
        config_path: &'a Path,
        endpoint: SocketAddr,
        events: mpsc::Sender<Event>,
        warned: Vec<String>,
        monitor: Arc<Monitor>,
        links: Links,
        tunnel: Tunnel,
        key: PrivateKey,
    ) -> Self {
        Session {
            config,
            config_path,
            prober: Prober::new(config.gateway_tunnel_address()),
            machine: {
                let machine = Machine::new(
                    Timing::new(config.gateway.persistent_keepalive),
                    endpoint,
                    boottime(),
                    u64::from(std::process::id()),
                );
                match config.gateway.tcp_fallback {
                    Some(_) => machine.with_tcp_fallback(),
                    None => machine,
                }
            },
            events,
            started: status::unix_now(),
            warned,
            burst: None,
            race: Arc::new(AtomicBool::new(false)),
            next_tick: Instant::now(),
            clocks: (boottime(), monotonic()),
            monitor,
            disrupted_since: None,
            links,
            tunnel,
            next_drift_check: Instant::now() + DRIFT_CHECK,
            drift_failures: Vec::new(),
            ruleset_changed: false,
            tcp: None,
            key,
        }
    }
}

impl Session<'_> {
    /// The first probe and status file, and the log line that says what was brought up.
    pub(super) fn start(&self) {
        self.prober.probe();
        self.write_status();
        info!(
            interface = self.config.interface.as_str(),
            address = %self.config.address,
            gateway = %self.config.gateway.endpoint,
            resolved = %self.machine.endpoint(),
            keepalive = self.config.gateway.persistent_keepalive,
            "tunnel up, waiting for the gateway's answer"
        );
    }

    /// How long the loop may wait for an event: until the next tick or look at the laptop's
    /// routing, or until a burst of network changes has settled.
    pub(super) fn wait(&self) -> Duration {
        let due = self.next_tick.min(self.next_drift_check);
        let mut wait = due.saturating_duration_since(Instant::now());
        if let Some((first, last, _)) = &self.burst {
            let due = (*last + DEBOUNCE_QUIET).min(*first + DEBOUNCE_MAX);
            wait = wait.min(due.saturating_duration_since(Instant::now()));
        }
        wait
    }

    pub(super) fn on_event(&mut self, event: Event, inputs: &mut Vec<Input>) {
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
                // A race on the network as it was may wait out an attempt from an address
                // that is gone; the settled change asks again.
                self.race.store(true, Ordering::Relaxed);
                let now = Instant::now();
                self.burst = Some(match self.burst.take() {
                    Some((first, _, what)) => (first, now, what),
                    None => (now, now, change),
                });
            }
            Event::Resolved(Ok(Some(address))) => inputs.push(Input::Resolved(address)),
            Event::Resolved(Ok(None)) => {
                inputs.push(Input::ResolveFailed("the network changed".into()));
            }
            Event::PortalChecked(reached) => inputs.push(Input::PortalChecked(reached)),
            Event::UdpChecked(answered) => {
                if answered {
                    info!("the gateway answers over UDP again");
                }
                inputs.push(Input::UdpChecked(answered));
            }
            Event::Resolved(Err(message)) => {
                warn!("{message}");
                inputs.push(Input::ResolveFailed(message));
            }
            Event::Stop(_) => {}
        }
    }

    /// A burst of network changes that has been quiet long enough (or gone on too long)
    /// becomes one "network changed"; new subnet collisions are said once.
    pub(super) fn on_settled_network(
        &mut self,
        now: Instant,
        device: &dyn WgDevice,
        inputs: &mut Vec<Input>,
    ) {
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
        inputs.push(Input::NetworkChanged {
            rx_bytes: self.rx_bytes(device).unwrap_or(0),
        });
        self.burst = None;
        // Network managers redo their rules when a link changes: look at ours soon.
        self.next_drift_check = self.next_drift_check.min(now + DRIFT_AFTER_CHANGE);
        let routes = roamgw_common::routes::Routes::system();
        for warning in config::collision_warnings(&routes, self.config) {
            if !self.warned.contains(&warning) {
                warn!("{warning}");
                self.warned.push(warning);
            }
        }
    }

    /// Every tick (faster while an answer is awaited): a suspend shows as a clock gap, and
    /// the device's rx counter says whether the gateway answered.
    pub(super) fn on_tick(&mut self, now: Instant, device: &dyn WgDevice, inputs: &mut Vec<Input>) {
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
        let Some(rx_bytes) = self.rx_bytes(device) else {
            return;
        };
        if let Some(slept) = slept {
            info!(
                slept_secs = slept.as_secs(),
                "woke from suspend: probing the gateway"
            );
            inputs.push(Input::NetworkChanged { rx_bytes });
        }
        inputs.push(Input::Tick { rx_bytes });
    }

    /// The data the device has received from the gateway, for the health machine.
    pub(super) fn rx_bytes(&self, device: &dyn WgDevice) -> Option<u64> {
        match device.status() {
            Ok(status) => {
                let peer = status.peer(&self.config.gateway.public_key).cloned();
                let rx_bytes = peer.as_ref().map_or(0, |p| p.rx_bytes);
                self.monitor.set_gateway_peer(peer);
                Some(rx_bytes)
            }
            Err(e) => {
                warn!("cannot read the tunnel's counters: {e}");
                None
            }
        }
    }

    /// Steps the machine with each input and carries out its actions: probe, re-resolve,
    /// reconnect. A change of health is logged and written to the status file.
    pub(super) fn act(&mut self, device: &dyn WgDevice, inputs: Vec<Input>) {
        for input in inputs {
            let now = boottime();
            if matches!(input, Input::NetworkChanged { .. }) {
                self.monitor.network_changed();
                self.disrupted_since.get_or_insert(now);
            }
            let before = (self.machine.health().clone(), self.machine.endpoint());
            let transport_before = self.machine.transport();
            for action in self.machine.step(now, input) {
                match action {
                    Action::Probe => self.prober.probe(),
                    Action::Resolve => {
                        self.race = Arc::new(AtomicBool::new(false));
                        resolve_in_background(
                            self.config.gateway.clone(),
                            self.key.clone(),
                            self.machine.refreshing().then_some(before.1),
                            Arc::clone(&self.race),
                            self.events.clone(),
                        );
                    }
                    Action::Reconnect(address) => {
                        if address != before.1 {
                            self.monitor.gateway_moved();
                            info!(from = %before.1, to = %address, "the gateway moved: following it");
                        }
                        self.connect(device, address);
                    }
                    Action::CheckUdp => self.check_udp(),
                    Action::CheckPortal => self.check_portal(),
                    Action::Switch(transport) => {
                        match self.machine.tcp_because() {
                            Some(why) => warn!("{why}: switching to TCP"),
                            None => info!("trying UDP again"),
                        }
                        debug_assert_eq!(transport, self.machine.transport());
                        self.connect(device, self.machine.endpoint());
                    }
                }
            }
            self.note_recovery(&before.0, now);
            let switched = self.machine.transport() != transport_before;
            if switched {
                self.monitor.set_transport(self.machine.transport());
            }
            if (self.machine.health(), self.machine.endpoint()) != (&before.0, before.1) {
                log_health(&before.0, &self.machine);
                self.monitor.set_health(self.machine.health());
                self.write_status();
            } else if switched {
                self.write_status();
            }
        }
    }

    /// Puts back what someone else removed of the laptop's routing for the tunnel
    /// (crate::routing), every [`DRIFT_CHECK`] and soon after a network change.
    pub(super) fn repair_drift(&mut self, now: Instant, device: &dyn WgDevice) {
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

    pub(super) fn write_status(&self) {
        let machine = &self.machine;
        let written = status::write(&RunState {
            pid: std::process::id(),
            config: self.config_path.to_path_buf(),
            name: self.config.name.to_string(),
            interface: self.config.interface.to_string(),
            tunnel_address: self.config.address,
            gateway_endpoint: self.config.gateway.endpoint.to_string(),
            gateway_address: machine.endpoint(),
            transport: machine.transport(),
            tcp_because: machine.tcp_because().map(ToString::to_string),
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
        Health::Portal(url) => {
            warn!(gateway = %machine.endpoint(), "a captive portal answers in the gateway's place: log in at {url}")
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
