//! `roamgw run`: the gateway daemon.
//!
//! Brings up the WireGuard device, its address and peers, and the nftables table from the
//! state; then reconciles: on every CLI change (control socket), on SIGHUP (state re-read from
//! disk), and every 30 s (drift: a flushed ruleset, a vanished peer). SIGTERM/SIGINT take it
//! all down again. A `kill -9` leaves at most the table and a stale socket behind; the next
//! start replaces both.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::time::Duration;

use roamgw_common::state::GatewayState;
use roamgw_common::wg::{self, WgDevice};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing::{error, info, warn};

use crate::control::{self, PeerView, Reply, Request};
use crate::dataplane::{self, ForwardChange};
use crate::device;
use crate::store::Store;

const RECONCILE_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("a roamgw daemon already runs for {0} (its control socket answers)")]
    AlreadyRunning(std::path::PathBuf),
    #[error("cannot serve the control socket {path}: {source}")]
    Socket {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Device(#[from] device::DeviceError),
    #[error(transparent)]
    DataPlane(#[from] dataplane::DataPlaneError),
}

enum Event {
    Signal(i32),
    Control(Request, mpsc::Sender<Reply>),
}

struct Daemon {
    store: Store,
    state: GatewayState,
    device: Option<Box<dyn WgDevice>>,
}

pub fn run(store: Store) -> Result<(), DaemonError> {
    if control::daemon_running(&store) {
        return Err(DaemonError::AlreadyRunning(store.dir().to_path_buf()));
    }
    let state = store.load()?;
    let (events, inbox) = mpsc::channel();
    start_signal_thread(events.clone())?;
    let listener = bind_control_socket(&store)?;

    let device = device::open(&state)?;
    let mut daemon = Daemon {
        store,
        state,
        device,
    };
    let started = daemon.bring_up();
    if let Err(e) = started {
        daemon.take_down();
        return Err(e);
    }
    start_control_thread(listener, events);
    info!(
        interface = %daemon.state.gateway.interface,
        roamers = daemon.state.roamers.len(),
        forwards = daemon.state.forwards.len(),
        "roamgw is up"
    );

    loop {
        match inbox.recv_timeout(RECONCILE_EVERY) {
            Ok(Event::Signal(SIGHUP)) => match daemon.store.load() {
                Ok(state) => {
                    info!("SIGHUP: state re-read");
                    daemon.state = state;
                    daemon.reconcile();
                }
                Err(e) => error!("SIGHUP: keeping the running state, the file is not usable: {e}"),
            },
            Ok(Event::Signal(signal)) => {
                info!(signal, "stopping");
                break;
            }
            Ok(Event::Control(request, reply)) => {
                let _ = reply.send(daemon.handle(request));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => daemon.reconcile(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    daemon.take_down();
    let _ = std::fs::remove_file(control::socket_path(&daemon.store));
    Ok(())
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

fn bind_control_socket(store: &Store) -> Result<UnixListener, DaemonError> {
    let path = control::socket_path(store);
    let socket_error = |source| DaemonError::Socket {
        path: path.clone(),
        source,
    };
    // Not answering (checked above): a leftover of a daemon that was killed.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(socket_error)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(socket_error)?;
    Ok(listener)
}

fn start_control_thread(listener: UnixListener, events: mpsc::Sender<Event>) {
    let spawned = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = serve(stream, &events) {
                    warn!("control connection: {e}");
                }
            }
        });
    if let Err(e) = spawned {
        error!("cannot start the control thread: {e}");
    }
}

fn serve(stream: UnixStream, events: &mpsc::Sender<Event>) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(stream.try_clone()?).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(request) => {
            let (tx, rx) = mpsc::channel();
            events
                .send(Event::Control(request, tx))
                .map_err(|_| std::io::Error::other("daemon stopping"))?;
            rx.recv().unwrap_or(Reply::Error {
                message: "the daemon is stopping".into(),
            })
        }
        Err(e) => Reply::Error {
            message: format!("bad request: {e}"),
        },
    };
    let mut text = serde_json::to_string(&reply).map_err(std::io::Error::other)?;
    text.push('\n');
    let mut stream = stream;
    stream.write_all(text.as_bytes())
}

impl Daemon {
    fn bring_up(&mut self) -> Result<(), DaemonError> {
        if let Some(device) = &self.device {
            let key = self.store.gateway_private_key()?;
            wg::set_identity(device.as_ref(), &key, self.state.gateway.listen_port)
                .map_err(device::DeviceError::from)?;
            let peers = device::desired_peers(&self.state, &self.store)?;
            let sync =
                wg::sync_peers(device.as_ref(), &peers).map_err(device::DeviceError::from)?;
            info!("{sync}");
            device::configure_link(&self.state)?;
        }
        let plan = dataplane::up(&self.state)?;
        info!("{plan}");
        Ok(())
    }

    fn take_down(&mut self) {
        match dataplane::down(false) {
            Ok(_) => info!("data plane down"),
            Err(e) => error!("could not take the data plane down: {e}"),
        }
        // Dropping the device removes the TUN interface and the `wg` socket.
        self.device.take();
    }

    /// Repairs drift; errors are logged, the daemon stays up.
    fn reconcile(&mut self) {
        if let Some(device) = &self.device {
            match device::desired_peers(&self.state, &self.store)
                .map_err(|e| e.to_string())
                .and_then(|peers| {
                    wg::sync_peers(device.as_ref(), &peers).map_err(|e| e.to_string())
                }) {
                Ok(sync) if !sync.is_empty() => info!("repaired {sync}"),
                Ok(_) => {}
                Err(e) => error!("peer reconcile failed: {e}"),
            }
        }
        match dataplane::observe().and_then(|o| dataplane::reconcile(&self.state, o.as_ref())) {
            Ok(applied) if applied.is_nothing() => {}
            Ok(applied) => info!("repaired: {applied}"),
            Err(e) => error!("table reconcile failed: {e}"),
        }
    }

    fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Change { change } => match self.apply(&change) {
                Ok(summary) => Reply::Applied { summary },
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
        let mut new = self.state.clone();
        let applied = crate::change::apply(&mut new, change).map_err(|e| e.0)?;
        let result = self.make_live(&new, &applied.forwards).and_then(|_| {
            self.store.save(&new).map_err(|e| e.to_string())?;
            Ok(())
        });
        match result {
            Ok(()) => {
                dataplane::end_changed_flows(&new, &applied.forwards);
                self.state = new;
                info!("{}", applied.summary);
                Ok(applied.summary)
            }
            Err(e) => {
                warn!("change refused ({e}); restoring the running state");
                self.reconcile();
                Err(e)
            }
        }
    }

    fn make_live(&self, new: &GatewayState, change: &ForwardChange) -> Result<String, String> {
        let mut summary = Vec::new();
        if let Some(device) = &self.device {
            let peers = device::desired_peers(new, &self.store).map_err(|e| e.to_string())?;
            let sync = wg::sync_peers(device.as_ref(), &peers).map_err(|e| e.to_string())?;
            if !sync.is_empty() {
                summary.push(sync.to_string());
            }
        }
        match dataplane::apply_change(&self.state, new, change).map_err(|e| e.to_string())? {
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
            None => roamgw_common::wg::open_existing(self.state.gateway.interface.as_str())
                .and_then(|d| d.status().ok()),
        };
        PeerView::for_roamers(&self.state, status.as_ref())
    }
}
