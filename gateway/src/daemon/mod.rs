//! `roamgw run`: the gateway daemon.
//!
//! One per config directory (a lock with its pid, `roamgw.pid`). Brings up the WireGuard
//! device, its address and peers, and the data plane from the state; sets each roamer's last
//! known endpoint ([`endpoints`]) and starts the handshakes itself, so laptops answer at once
//! after a restart or a reboot. Then it keeps things as the state says:
//! - CLI changes arrive on the control socket and are live before the CLI returns;
//! - drift is repaired as it happens: nftables transactions by others on our table, firewalld
//!   reloads, our interface or its address vanishing ([`watch`]), plus a periodic check as a
//!   safety net on a timer of its own that no request can postpone;
//! - SIGHUP re-reads the state; SIGTERM/SIGINT take it all down.
//!
//! A `kill -9` leaves at most the table, a stale socket file and (kernel WireGuard) the link
//! behind; the next start takes them over.

pub mod endpoints;
mod pair;
mod start;
pub mod watch;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use roamgw_common::clock::{unix_ms, unix_now};
use signal_hook::consts::SIGHUP;
use tracing::{debug, error, info, warn};

use crate::change::StateChange;
use crate::control::{self, PeerView, Reply, Request};
use crate::device;
use crate::engine::{ChangeError, Engine, Fault, Role};
use crate::monitor::{EventKind, Monitor};
use crate::store::Store;
use endpoints::Endpoints;
use start::{
    bind_control_socket, start_signal_thread, start_watchers, stopping, take_lock, ToEventLoop,
};
use watch::Drift;

/// The safety net: a full check this often, whatever else happens.
const PERIODIC_CHECK: Duration = Duration::from_secs(30);
/// How often the peers' endpoints are read to be remembered (a read of the device, no I/O
/// unless one changed).
const ENDPOINT_SCAN: Duration = Duration::from_secs(1);
/// Drift events come in bursts (a `flush ruleset` is one per table): repair once, this long
/// after the first.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// How long a new daemon waits for one that was just killed to finish exiting.
const PREDECESSOR_GRACE: Duration = Duration::from_secs(10);

/// The default for `roamgw run --state-dir`: systemd's `StateDirectory=` when it set one.
pub fn default_state_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .and_then(|dirs| {
            // systemd lists several as a colon-separated list; ours is the first.
            dirs.to_str()
                .and_then(|d| d.split(':').next())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("/var/lib/roamgw"))
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "roamgw run is already running for {dir} (pid {pid}); nothing was changed \
         (stop it with `systemctl stop roamgw` or `kill {pid}`)"
    )]
    AlreadyRunning { dir: PathBuf, pid: u32 },
    #[error("cannot serve the control socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Lock(#[from] roamgw_common::fsutil::FsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Start(#[from] ChangeError),
    #[error(transparent)]
    Web(#[from] crate::web::WebError),
    #[error("{0}")]
    Ha(String),
}

enum Event {
    Signal(i32),
    Control(Request, mpsc::Sender<Reply>),
    Drift(Drift),
    Pair(pair::PairEvent),
    /// The device saw a roamer's endpoint change: record it now, not at the next scan.
    EndpointChanged,
}

struct Daemon {
    store: Store,
    engine: Engine,
    endpoints: Endpoints,
    endpoints_path: PathBuf,
    /// nftables generations our own transactions produced, as (before, after] ranges.
    own_generations: VecDeque<(u32, u32)>,
    /// Whether the last check found the anchor address on an interface (said once per change).
    anchor_present: Option<bool>,
    endpoints_unsaved_warned: bool,
    /// What `--http` shows of the daemon's own work.
    monitor: std::sync::Arc<Monitor>,
    /// The pair this droplet is half of (`roamgw ha`), if any.
    pair: Option<pair::Pair>,
    /// WireGuard over TCP, while `gateway.tcp_port` is set.
    tcp: Option<roamgw_wg::tcp::server::TcpFallback>,
}

pub fn run_until_stopped(
    store: Store,
    state_dir: &Path,
    http: Option<(std::net::SocketAddr, Option<crate::web::Token>)>,
) -> Result<(), DaemonError> {
    let _lock = take_lock(&store)?;
    let state = store.load()?;
    let monitor = std::sync::Arc::new(Monitor::remembering(crate::monitor::events_path(
        state_dir,
        state.gateway.interface.as_str(),
    )));
    let (events, inbox) = mpsc::channel();
    if let Some((addr, token)) = http {
        let changes = std::sync::Arc::new(ToEventLoop(events.clone()));
        crate::web::serve(addr, token, monitor.clone(), changes)?;
    }
    start_signal_thread(events.clone())?;
    let listener = bind_control_socket(&store)?;
    start_watchers(&events);

    let endpoints_path = endpoints::path(state_dir, state.gateway.interface.as_str());
    let endpoints = Endpoints::load(&endpoints_path).unwrap_or_else(|e| {
        warn!("starting without remembered endpoints: {e}");
        Endpoints::default()
    });
    let pair = pair::start(&store, &events)?;
    let mut engine = Engine::on_this_machine(store.clone(), state, Role::Daemon);
    let endpoint_events = events.clone();
    engine.on_endpoint_change(std::sync::Arc::new(move || {
        let _ = endpoint_events.send(Event::EndpointChanged);
    }));
    monitor.publish(engine.shared_state());
    let mut daemon = Daemon {
        store,
        engine,
        endpoints,
        endpoints_path,
        own_generations: VecDeque::new(),
        anchor_present: None,
        endpoints_unsaved_warned: false,
        monitor,
        pair,
        tcp: None,
    };
    daemon.pair_before_bring_up()?;
    if let Err(e) = daemon.bring_up() {
        daemon.take_down();
        return Err(e);
    }
    daemon.sync_tcp();
    let control_events = events.clone();
    control::serve(listener, move |request| {
        let (tx, rx) = mpsc::channel();
        if control_events.send(Event::Control(request, tx)).is_err() {
            return stopping();
        }
        rx.recv().unwrap_or_else(|_| stopping())
    })
    .map_err(|source| DaemonError::Socket {
        path: control::socket_path(&daemon.store),
        source,
    })?;
    info!(
        interface = %daemon.engine.state().gateway.interface,
        roamers = daemon.engine.state().roamers.len(),
        forwards = daemon.engine.state().forwards.len(),
        "roamgw is up"
    );
    daemon.monitor.event(
        unix_now(),
        EventKind::Started,
        format!(
            "roamgw run started (roamers: {}, forwards: {})",
            daemon.engine.state().roamers.len(),
            daemon.engine.state().forwards.len()
        ),
    );
    daemon.serve(&inbox);
    daemon.take_down();
    let _ = std::fs::remove_file(control::socket_path(&daemon.store));
    Ok(())
}

impl Daemon {
    /// The event loop. Its timers are deadlines, not receive timeouts: a stream of requests
    /// (a monitoring check polling `status`) cannot postpone them.
    fn serve(&mut self, inbox: &mpsc::Receiver<Event>) {
        let mut next_check = Instant::now() + PERIODIC_CHECK;
        let mut next_scan = Instant::now() + ENDPOINT_SCAN;
        let mut repair: Option<(Instant, Drift)> = None;
        loop {
            let next = repair
                .as_ref()
                .map_or(next_check, |(at, _)| *at)
                .min(next_check)
                .min(next_scan);
            match inbox.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(Event::Signal(SIGHUP)) => self.reread(),
                Ok(Event::Signal(signal)) => {
                    info!(signal, "stopping");
                    // What changed since the last scan, kept for the next start.
                    self.remember_endpoints();
                    return;
                }
                Ok(Event::Control(request, reply)) => {
                    let _ = reply.send(self.handle(request));
                }
                Ok(Event::Drift(drift)) => {
                    if self.is_own(&drift) {
                        debug!("{drift}: our own");
                    } else if repair.is_none() {
                        repair = Some((Instant::now() + DEBOUNCE, drift));
                    }
                }
                Ok(Event::Pair(event)) => self.pair_event(event),
                Ok(Event::EndpointChanged) => self.remember_endpoints(),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if repair.as_ref().is_some_and(|(at, _)| now >= *at) {
                if let Some((_, cause)) = repair.take() {
                    // Links and addresses change all the time on a busy host: say only
                    // what they made us repair.
                    let quiet = matches!(cause, Drift::Network(_));
                    self.check(&cause.to_string(), quiet);
                }
            }
            if now >= next_check {
                next_check = now + PERIODIC_CHECK;
                self.check("periodic check", true);
            }
            if now >= next_scan {
                next_scan = now + ENDPOINT_SCAN;
                self.remember_endpoints();
            }
            // After the reply: the CLI does not wait for it (and it copies nothing).
            self.monitor.publish(self.engine.shared_state());
            self.pair_tick();
        }
    }

    fn reread(&mut self) {
        match self.store.load() {
            Ok(state) => {
                info!("SIGHUP: state re-read");
                self.engine.replace_state(state);
                self.check("SIGHUP", false);
                self.sync_tcp();
            }
            Err(e) => error!("SIGHUP: keeping the running state, the file is not usable: {e}"),
        }
    }

    /// Runs `write` on the engine (with the remembered endpoints for new peers) and records
    /// the nftables generations it produced as ours, so the notifications of our own
    /// transactions do not come back as drift.
    fn own<T>(&mut self, write: impl FnOnce(&mut Engine, &Endpoints) -> T) -> T {
        let before = roamgw_wg::nftwatch::generation();
        let out = write(&mut self.engine, &self.endpoints);
        if let (Some(before), Some(after)) = (before, roamgw_wg::nftwatch::generation()) {
            if after != before {
                if self.own_generations.len() >= 64 {
                    self.own_generations.pop_front();
                }
                self.own_generations.push_back((before, after));
            }
        }
        out
    }

    fn is_own(&self, drift: &Drift) -> bool {
        match drift {
            Drift::Ruleset {
                generation: Some(g),
            } => is_own_generation(&self.own_generations, *g),
            // Notifications were lost (our own big transactions can do that): if nothing was
            // committed since our last write, they can only have been ours.
            Drift::Ruleset { generation: None } => self
                .own_generations
                .back()
                .is_some_and(|&(_, after)| roamgw_wg::nftwatch::generation() == Some(after)),
            _ => false,
        }
    }

    fn bring_up(&mut self) -> Result<(), DaemonError> {
        let plan = self.own(|engine, endpoints| engine.bring_up(&|key| endpoints.endpoint(key)))?;
        info!("{plan}");
        Ok(())
    }

    fn take_down(&mut self) {
        self.remember_endpoints();
        match self.engine.take_down() {
            Ok(_) => info!("data plane down"),
            Err(e) => error!("could not take the data plane down: {e}"),
        }
    }

    fn remember_endpoints(&mut self) {
        let Some(device) = self.engine.device() else {
            return;
        };
        let Ok(status) = device.status() else {
            return;
        };
        self.monitor.observe_device(unix_ms(), status.clone());
        let state = self.engine.state();
        let roamers: Vec<_> = state.roamers.iter().map(|r| r.public_key).collect();
        let before = self.endpoints.clone();
        if !self.endpoints.observe(&status, &roamers, unix_now()) {
            return;
        }
        for (key, from, to) in self.endpoints.moves_since(&before) {
            let roamer = state
                .roamers
                .iter()
                .find(|r| r.public_key.to_string() == key);
            if let Some(roamer) = roamer {
                self.monitor
                    .roamed(unix_now(), roamer.name.as_str(), from, to);
            }
        }
        match self.endpoints.save(&self.endpoints_path) {
            Ok(()) => {
                debug!(path = %self.endpoints_path.display(), "endpoints remembered");
                self.endpoints_unsaved_warned = false;
            }
            Err(e) if !self.endpoints_unsaved_warned => {
                warn!("cannot remember the roamers' endpoints (a restart will wait for the laptops to handshake): {e}");
                self.endpoints_unsaved_warned = true;
            }
            Err(_) => {}
        }
    }

    /// Repairs whatever differs from the state; errors are logged, the daemon stays up.
    /// `quiet`: finding nothing to repair is not worth an info line.
    fn check(&mut self, cause: &str, quiet: bool) {
        match self.repair() {
            Ok(repaired) if repaired.is_empty() && quiet => debug!(cause, "in sync"),
            Ok(repaired) if repaired.is_empty() => info!(cause, "checked: in sync"),
            Ok(repaired) => {
                let what = repaired.join("; ");
                self.monitor
                    .drift_repaired(unix_now(), &format!("{cause}: repaired {what}"));
                info!(cause, "repaired: {what}")
            }
            Err(e) => error!(cause, "repair failed: {e}"),
        }
    }

    /// Brings the device, the link and the data plane back to the state. Returns what it did.
    fn repair(&mut self) -> Result<Vec<String>, ChangeError> {
        let repaired =
            self.own(|engine, endpoints| engine.reconcile(&|key| endpoints.endpoint(key)));
        self.say_anchor_presence();
        repaired
    }

    fn say_anchor_presence(&mut self) {
        let anchor = self.engine.state().gateway.anchor_ip;
        let present = device::address_present(anchor.into());
        if self.anchor_present == Some(present) {
            return;
        }
        if !present {
            warn!(%anchor, "the anchor address is on no interface: forwards cannot arrive until it is back");
        } else if self.anchor_present == Some(false) {
            info!(%anchor, "the anchor address is back");
        }
        self.anchor_present = Some(present);
    }

    fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Change {
                deadline_unix_ms, ..
            }
            | Request::Reconcile { deadline_unix_ms }
                if control::expired(deadline_unix_ms) =>
            {
                Reply::failed(ChangeError::new(
                    Fault::Unavailable,
                    "the request waited past the time its command gave up; nothing was changed (try again)",
                ))
            }
            Request::Change { change, .. } => match self
                .refuse_on_standby()
                .and_then(|()| self.apply(&change))
            {
                Ok(summary) => Reply::Applied { summary },
                Err(e) => Reply::failed(e),
            },
            Request::Reconcile { .. } => match self.repair() {
                Ok(repaired) if repaired.is_empty() => Reply::Applied {
                    summary: "up to date: the data plane matches the state, nothing to repair".into(),
                },
                Ok(repaired) => Reply::Applied {
                    summary: format!("repaired: {}", repaired.join("; ")),
                },
                Err(e) => Reply::failed(e),
            },
            Request::Status => Reply::Status {
                peers: self.peer_views(),
                flood: self.monitor.flood(),
            },
            Request::HaNotify { role } => match self.set_role(role) {
                Ok(summary) => Reply::Applied { summary },
                Err(e) => Reply::failed(e),
            },
            Request::HaStatus => match &self.pair {
                Some(pair) => Reply::Ha(Box::new(pair.view())),
                None => Reply::failed(ChangeError::new(Fault::Input, crate::ha::NOT_PAIRED)),
            },
        }
    }

    /// A change through the engine; one that failed past its checks is followed by a full
    /// check (the engine has put back what it changed; the check also rebuilds what someone
    /// else removed).
    fn apply(&mut self, change: &StateChange) -> Result<String, ChangeError> {
        let started = Instant::now();
        match self.own(|engine, _| engine.apply(change)) {
            Ok(done) => {
                self.monitor
                    .change_applied(unix_now(), started.elapsed(), &done.summary);
                info!("{}", done.summary);
                self.sync_tcp();
                Ok(done.summary)
            }
            // A refused request touched nothing: no check needed.
            Err(e) if e.fault == Fault::Input => Err(e),
            Err(e) => {
                self.check("a change that failed", true);
                Err(e)
            }
        }
    }

    /// Listens for WireGuard over TCP where the state says, or stops (the CLI checked that the
    /// port was free; taken since, it is an error in the log).
    fn sync_tcp(&mut self) {
        let g = &self.engine.state().gateway;
        let wanted = g.tcp_listen().map(std::net::SocketAddr::V4);
        if self.tcp.as_ref().map(|t| t.listen) == wanted {
            return;
        }
        self.tcp = None;
        let Some(listen) = wanted else {
            info!("WireGuard over TCP: off");
            return;
        };
        let device = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, g.listen_port));
        match roamgw_wg::tcp::server::TcpFallback::start(listen, device, Default::default()) {
            Ok(tcp) => {
                info!(%listen, "WireGuard over TCP: listening");
                self.tcp = Some(tcp);
            }
            Err(e) => error!("WireGuard over TCP: cannot listen on {listen}: {e}"),
        }
    }

    fn peer_views(&self) -> Vec<PeerView> {
        let state = self.engine.state();
        let status = match self.engine.device() {
            Some(device) => device.status().ok(),
            None => roamgw_wg::open_existing(state.gateway.interface.as_str())
                .and_then(|d| d.status().ok()),
        };
        PeerView::for_roamers(state, status.as_ref())
    }
}

/// Whether generation `g` lies in one of the (before, after] ranges (generations wrap).
fn is_own_generation(ranges: &VecDeque<(u32, u32)>, g: u32) -> bool {
    ranges
        .iter()
        .any(|&(before, after)| g.wrapping_sub(before).wrapping_sub(1) < after.wrapping_sub(before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_generation_ranges_include_the_end_and_survive_wrapping() {
        let own = VecDeque::from([(10u32, 12u32), (u32::MAX - 1, 1)]);
        let is_own = |g| is_own_generation(&own, g);
        assert!(!is_own(10), "the generation before our write is not ours");
        assert!(is_own(11) && is_own(12));
        assert!(!is_own(13));
        assert!(is_own(u32::MAX) && is_own(0) && is_own(1));
        assert!(!is_own(2));
    }
}

/// The event loop with the engine's fakes: requests, drift, SIGHUP and shutdown, no root.
#[cfg(test)]
mod loop_tests {
    use std::sync::Arc;

    use signal_hook::consts::SIGTERM;

    use super::*;
    use crate::engine::fakes::{self, add_port, forward_keys, with, Shared};

    fn daemon(world: &Shared, dir: &Path) -> Daemon {
        let store = Store::new(dir);
        store.create_dirs().expect("dirs");
        let mut engine = fakes::engine(Role::Daemon, world);
        store.save(engine.state()).expect("state file");
        engine.bring_up(&|_| None).expect("up");
        Daemon {
            store,
            engine,
            endpoints: Endpoints::default(),
            endpoints_path: dir.join("endpoints.json"),
            own_generations: VecDeque::new(),
            anchor_present: None,
            endpoints_unsaved_warned: false,
            monitor: Arc::new(Monitor::default()),
            pair: None,
            tcp: None,
        }
    }

    fn request(events: &mpsc::Sender<Event>, change: StateChange) -> Reply {
        let (reply, answer) = mpsc::channel();
        let request = Request::Change {
            change,
            deadline_unix_ms: None,
        };
        events.send(Event::Control(request, reply)).expect("loop");
        answer.recv().expect("a reply")
    }

    /// Polls the fakes' world until `done` holds (the loop runs on the test's own thread).
    fn eventually(world: &Shared, done: impl Fn(&fakes::World) -> bool) -> bool {
        (0..200).any(|_| {
            if with(world, |w| done(w)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
            false
        })
    }

    #[test]
    fn serves_changes_repairs_drift_rereads_on_sighup_and_stops() {
        let dir = tempfile::tempdir().expect("tmp");
        let world = Shared::default();
        let mut daemon = daemon(&world, dir.path());
        let store = daemon.store.clone();
        let monitor = daemon.monitor.clone();
        let (events, inbox) = mpsc::channel();
        let driver = {
            let world = world.clone();
            std::thread::spawn(move || {
                // A control request: live, saved, answered, and shown (published).
                let reply = request(&events, add_port("8080"));
                assert!(
                    matches!(&reply, Reply::Applied { summary } if summary.contains("8080")),
                    "{reply:?}"
                );
                let saved = with(&world, |w| w.saved.clone()).expect("saved state");
                assert!(forward_keys(&saved).iter().any(|k| k.starts_with("8080")));
                let shown = || monitor.state().map(|s| forward_keys(&s));
                let deadline = Instant::now() + Duration::from_secs(5);
                while shown() != Some(forward_keys(&saved)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                assert_eq!(shown(), Some(forward_keys(&saved)), "published");
                // A refused one: the fault crosses the loop.
                let reply = request(&events, add_port("8080"));
                assert!(
                    matches!(
                        reply,
                        Reply::Error {
                            fault: Fault::Input,
                            ..
                        }
                    ),
                    "{reply:?}"
                );
                // Drift: someone emptied our table.
                with(&world, |w| w.plane = Some(Vec::new()));
                let drift = Drift::Ruleset {
                    generation: Some(u32::MAX / 2),
                };
                events.send(Event::Drift(drift)).expect("loop");
                let want = forward_keys(&saved);
                assert!(
                    eventually(&world, |w| w.plane.as_ref() == Some(&want)),
                    "repaired"
                );
                // SIGHUP: the file changed behind the daemon's back.
                let mut edited = saved.clone();
                edited.forwards.retain(|f| !f.key().starts_with("8080"));
                store.save(&edited).expect("edit");
                events.send(Event::Signal(SIGHUP)).expect("loop");
                let want = forward_keys(&edited);
                assert!(
                    eventually(&world, |w| w.plane.as_ref() == Some(&want)),
                    "re-read"
                );
                events.send(Event::Signal(SIGTERM)).expect("loop");
            })
        };
        daemon.serve(&inbox);
        driver.join().expect("the driver's checks");
        daemon.take_down();
        with(&world, |w| assert!(w.plane.is_none(), "taken down"));
        assert!(daemon.engine.device().is_none(), "device dropped");
    }
}
