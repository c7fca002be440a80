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
pub mod watch;

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use roamgw_common::fsutil::{PidLock, PidLockError};
use roamgw_common::state::{GatewayState, WireguardMode};
use roamgw_wg::WgDevice;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing::{debug, error, info, warn};

use crate::backend;
use crate::control::{self, PeerView, Reply, Request};
use crate::device;
use crate::monitor::{EventKind, Monitor};
use crate::store::Store;
use endpoints::Endpoints;
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
    Device(#[from] device::DeviceError),
    #[error(transparent)]
    DataPlane(#[from] backend::DataPlaneError),
    #[error(transparent)]
    Web(#[from] crate::web::WebError),
}

enum Event {
    Signal(i32),
    Control(Request, mpsc::Sender<Reply>),
    Drift(Drift),
}

struct Daemon {
    store: Store,
    state: GatewayState,
    device: Option<Box<dyn WgDevice>>,
    endpoints: Endpoints,
    endpoints_path: PathBuf,
    /// nftables generations our own transactions produced, as (before, after] ranges.
    own_generations: VecDeque<(u32, u32)>,
    /// Whether the last check found the anchor address on an interface (said once per change).
    anchor_present: Option<bool>,
    endpoints_unsaved_warned: bool,
    /// The roamers' preshared keys, read once per roamer (again after SIGHUP).
    psks: device::Psks,
    /// What `--http` shows of the daemon's own work.
    monitor: std::sync::Arc<Monitor>,
}

pub fn run(
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
    if let Some((addr, token)) = http {
        crate::web::serve(addr, token, store.clone(), monitor.clone())?;
    }
    let (events, inbox) = mpsc::channel();
    start_signal_thread(events.clone())?;
    let listener = bind_control_socket(&store)?;
    start_watchers(&events);

    let endpoints_path = endpoints::path(state_dir, state.gateway.interface.as_str());
    let endpoints = Endpoints::load(&endpoints_path).unwrap_or_else(|e| {
        warn!("starting without remembered endpoints: {e}");
        Endpoints::default()
    });
    let device = device::open(&state)?;
    let mut daemon = Daemon {
        store,
        state,
        device,
        endpoints,
        endpoints_path,
        own_generations: VecDeque::new(),
        anchor_present: None,
        endpoints_unsaved_warned: false,
        psks: device::Psks::new(),
        monitor,
    };
    if let Err(e) = daemon.bring_up() {
        daemon.take_down();
        return Err(e);
    }
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
        interface = %daemon.state.gateway.interface,
        roamers = daemon.state.roamers.len(),
        forwards = daemon.state.forwards.len(),
        "roamgw is up"
    );
    daemon.monitor.event(
        unix_now(),
        EventKind::Started,
        format!(
            "roamgw run started (roamers: {}, forwards: {})",
            daemon.state.roamers.len(),
            daemon.state.forwards.len()
        ),
    );
    daemon.serve(&inbox);
    daemon.take_down();
    let _ = std::fs::remove_file(control::socket_path(&daemon.store));
    Ok(())
}

fn stopping() -> Reply {
    Reply::Error {
        message: "the daemon is stopping; nothing was changed".into(),
    }
}

fn take_lock(store: &Store) -> Result<PidLock, DaemonError> {
    if !store.is_initialized() {
        // The state's own error says what to do.
        store.load()?;
    }
    PidLock::acquire(&control::pid_path(store), PREDECESSOR_GRACE).map_err(|e| match e {
        PidLockError::Held(pid) => DaemonError::AlreadyRunning {
            dir: store.dir().to_path_buf(),
            pid,
        },
        PidLockError::Fs(e) => e.into(),
    })
}

fn start_signal_thread(events: mpsc::Sender<Event>) -> Result<(), DaemonError> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(DaemonError::Signals)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if events.send(Event::Signal(signal)).is_err() {
                    break;
                }
            }
        })
        .map_err(DaemonError::Signals)?;
    Ok(())
}

/// Subscribes before anything is brought up, so no change after that is missed. A watcher
/// that cannot start leaves that kind of drift to the periodic check.
fn start_watchers(events: &mpsc::Sender<Event>) {
    let sender = |events: &mpsc::Sender<Event>| {
        let events = events.clone();
        move |drift: Drift| {
            let _ = events.send(Event::Drift(drift));
        }
    };
    if let Err(e) = watch::watch_ruleset(crate::nft::model::TABLE, sender(events)) {
        warn!("cannot watch nftables ({e}): drift is found by the periodic check only");
    }
    watch::watch_firewalld(sender(events));
    if let Err(e) = watch::watch_network(sender(events)) {
        warn!("cannot watch links and addresses ({e}): found by the periodic check only");
    }
}

fn bind_control_socket(store: &Store) -> Result<UnixListener, DaemonError> {
    let path = control::socket_path(store);
    let socket_error = |source| DaemonError::Socket {
        path: path.clone(),
        source,
    };
    // We hold the lock: a socket file here is a leftover of a daemon that died.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(socket_error)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(socket_error)?;
    Ok(listener)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
        }
    }

    fn reread(&mut self) {
        match self.store.load() {
            Ok(state) => {
                info!("SIGHUP: state re-read");
                self.state = state;
                // Key files may have been replaced too.
                self.psks.clear();
                self.check("SIGHUP", false);
            }
            Err(e) => error!("SIGHUP: keeping the running state, the file is not usable: {e}"),
        }
    }

    /// Runs `write` and records the nftables generations it produced as ours, so the
    /// notifications of our own transactions do not come back as drift.
    fn own<T>(&mut self, write: impl FnOnce(&mut Self) -> T) -> T {
        let before = roamgw_wg::nftwatch::generation();
        let out = write(self);
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
        self.configure_device()?;
        let plan = self.own(|d| backend::up(&d.state))?;
        info!("{plan}");
        self.initiate_handshakes();
        Ok(())
    }

    /// Identity, peers (a peer new to the device gets its remembered endpoint), address.
    fn configure_device(&mut self) -> Result<(), DaemonError> {
        let Some(device) = &self.device else {
            return Ok(());
        };
        let key = self.store.gateway_private_key(&self.state)?;
        roamgw_wg::set_identity(device.as_ref(), &key, self.state.gateway.listen_port)
            .map_err(device::DeviceError::from)?;
        let current = device.status().map_err(device::DeviceError::from)?;
        device::refresh_psks(&mut self.psks, &self.state, &self.store)?;
        let mut peers = device::desired_peers(&self.state, &self.psks);
        for peer in &mut peers {
            let learned = current
                .peer(&peer.public_key)
                .and_then(|have| have.endpoint);
            if learned.is_none() {
                peer.endpoint = self.endpoints.endpoint(&peer.public_key);
            }
        }
        let sync = roamgw_wg::sync_peers(device.as_ref(), &peers)
            .and_then(roamgw_wg::PeerSync::all_applied)
            .map_err(device::DeviceError::from)?;
        info!("{sync}");
        device::configure_link(&self.state)?;
        Ok(())
    }

    /// Sends one datagram into the tunnel for every roamer whose peer has an endpoint: with no
    /// session yet, that makes the device start a handshake to it now.
    fn initiate_handshakes(&self) {
        let Some(device) = &self.device else {
            return;
        };
        let Ok(status) = device.status() else {
            return;
        };
        let targets: Vec<_> = self
            .state
            .roamers
            .iter()
            .filter(|r| {
                status
                    .peer(&r.public_key)
                    .is_some_and(|p| p.endpoint.is_some())
            })
            .map(|r| r.address)
            .collect();
        if targets.is_empty() {
            return;
        }
        match device::poke(&targets) {
            Ok(()) => info!(
                roamers = targets.len(),
                "handshakes started to the remembered endpoints"
            ),
            Err(e) => warn!("cannot start handshakes to the remembered endpoints: {e}"),
        }
    }

    fn take_down(&mut self) {
        self.remember_endpoints();
        match backend::down(false) {
            Ok(_) => info!("data plane down"),
            Err(e) => error!("could not take the data plane down: {e}"),
        }
        // Dropping the device removes the TUN interface and the `wg` socket.
        self.device.take();
    }

    fn remember_endpoints(&mut self) {
        let Some(device) = &self.device else {
            return;
        };
        let Ok(status) = device.status() else {
            return;
        };
        let roamers: Vec<_> = self.state.roamers.iter().map(|r| r.public_key).collect();
        let before = self.endpoints.clone();
        if !self.endpoints.observe(&status, &roamers, unix_now()) {
            return;
        }
        for (key, from, to) in self.endpoints.moves_since(&before) {
            let roamer = self
                .state
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
        match self.own(|d| d.repair()) {
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
    fn repair(&mut self) -> Result<Vec<String>, String> {
        let mut repaired = Vec::new();
        // Ours to run (not --wireguard external): a device that is gone, or that could not be
        // created at the last try, is created again.
        if self.state.gateway.wireguard != WireguardMode::External {
            let name = self.state.gateway.interface.to_string();
            if self.device.is_none() || !backend::interface_exists(&name) {
                // The old device first: its `wg show` socket has the new one's name.
                self.device = None;
                self.device = device::open(&self.state).map_err(|e| e.to_string())?;
                self.configure_device().map_err(|e| e.to_string())?;
                self.initiate_handshakes();
                repaired.push(format!("interface {name} created again"));
            } else if !device::link_configured(&self.state) {
                device::configure_link(&self.state).map_err(|e| e.to_string())?;
                repaired.push(format!("address and routing of {name} restored"));
            }
        }
        device::refresh_psks(&mut self.psks, &self.state, &self.store)
            .map_err(|e| e.to_string())?;
        if let Some(device) = &self.device {
            let peers = device::desired_peers(&self.state, &self.psks);
            let sync = roamgw_wg::sync_peers(device.as_ref(), &peers).map_err(|e| e.to_string())?;
            if !sync.is_empty() {
                repaired.push(sync.to_string());
            }
        }
        let applied = backend::up(&self.state).map_err(|e| e.to_string())?;
        if !applied.is_nothing() {
            repaired.push(applied.to_string());
        }
        self.say_anchor_presence();
        Ok(repaired)
    }

    fn say_anchor_presence(&mut self) {
        let anchor = self.state.gateway.anchor_ip;
        let present = device::address_present(anchor);
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
                Reply::Error {
                    message: "the request waited past the time its command gave up; nothing was changed (try again)".into(),
                }
            }
            Request::Change { change, .. } => match self.own(|d| d.apply(&change)) {
                Ok(summary) => Reply::Applied { summary },
                Err(message) => Reply::Error { message },
            },
            Request::Reconcile { .. } => match self.own(|d| d.repair()) {
                Ok(repaired) if repaired.is_empty() => Reply::Applied {
                    summary: "up to date: the data plane matches the state, nothing to repair".into(),
                },
                Ok(repaired) => Reply::Applied {
                    summary: format!("repaired: {}", repaired.join("; ")),
                },
                Err(message) => Reply::Error { message },
            },
            Request::Status => Reply::Status {
                peers: self.peer_views(),
            },
        }
    }

    /// A CLI change: applied to a copy of the running state, made live (peers, then table),
    /// then saved; on a failure the running state is put back and nothing is saved.
    fn apply(&mut self, change: &crate::change::StateChange) -> Result<String, String> {
        let started = Instant::now();
        let mut new = self.state.clone();
        let applied = crate::change::apply(&mut new, change).map_err(|e| e.0)?;
        let result = self.make_live(&new, &applied.forwards).and_then(|_| {
            self.store.save(&new).map_err(|e| e.to_string())?;
            Ok(())
        });
        match result {
            Ok(()) => {
                backend::end_changed_flows(&new, &applied.forwards);
                self.state = new;
                self.monitor
                    .change_applied(unix_now(), started.elapsed(), &applied.summary);
                info!("{}", applied.summary);
                Ok(applied.summary)
            }
            Err(e) => {
                warn!("change refused ({e}); restoring the running state");
                self.check("a refused change", true);
                Err(e)
            }
        }
    }

    fn make_live(
        &mut self,
        new: &GatewayState,
        change: &crate::change::ForwardChange,
    ) -> Result<String, String> {
        let mut summary = Vec::new();
        if new.gateway.public_key != self.state.gateway.public_key {
            if let Some(device) = &self.device {
                let key = self
                    .store
                    .gateway_private_key(new)
                    .map_err(|e| e.to_string())?;
                roamgw_wg::set_identity(device.as_ref(), &key, new.gateway.listen_port)
                    .map_err(|e| e.to_string())?;
                summary.push("new gateway key".to_string());
            }
        }
        // A change of forwards only leaves the peers alone.
        if new.roamers != self.state.roamers {
            // A roamer with a new key has a new PSK too: read again.
            let old = &self.state;
            self.psks.retain(|name, _| {
                new.roamer(name).map(|r| r.public_key) == old.roamer(name).map(|r| r.public_key)
            });
            device::refresh_psks(&mut self.psks, new, &self.store).map_err(|e| e.to_string())?;
            if let Some(device) = &self.device {
                let peers = device::desired_peers(new, &self.psks);
                let sync = roamgw_wg::sync_peers(device.as_ref(), &peers)
                    .and_then(roamgw_wg::PeerSync::all_applied)
                    .map_err(|e| e.to_string())?;
                if !sync.is_empty() {
                    summary.push(sync.to_string());
                }
            }
        }
        match backend::of(new)
            .apply_change(&self.state, new, change)
            .map_err(|e| e.to_string())?
        {
            Some(plan) => summary.push(
                plan.to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            None => {
                return Err("table ip roamgw is gone: the daemon will rebuild it; try again".into())
            }
        }
        Ok(summary.join("; "))
    }

    fn peer_views(&self) -> Vec<PeerView> {
        let status = match &self.device {
            Some(device) => device.status().ok(),
            None => roamgw_wg::open_existing(self.state.gateway.interface.as_str())
                .and_then(|d| d.status().ok()),
        };
        PeerView::for_roamers(&self.state, status.as_ref())
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
