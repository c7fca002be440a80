//! The daemon's plumbing: its lock, signals, watchers, control socket, and the queue the
//! status page's changes join.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::time::Duration;

use roamgw_common::fsutil::{PidLock, PidLockError};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing::warn;

use super::watch::{self, Drift};
use super::{DaemonError, Event, PREDECESSOR_GRACE};
use crate::change::StateChange;
use crate::control::{self, Reply, Request};
use crate::engine::{ChangeError, Done, Fault, Submit};
use crate::store::Store;

/// How long a change from the status page may wait for the event loop (the CLI's deadline).
const SUBMIT_DEADLINE: Duration = Duration::from_secs(30);

/// The status page's changes, handed to the event loop as the control socket's are: one
/// engine, one queue.
pub(super) struct ToEventLoop(pub(super) mpsc::Sender<Event>);

impl Submit for ToEventLoop {
    fn submit(&self, change: StateChange) -> Result<Done, ChangeError> {
        let (reply, answer) = mpsc::channel();
        let request = Request::Change {
            change,
            deadline_unix_ms: control::deadline_in(SUBMIT_DEADLINE),
        };
        let reply = match self.0.send(Event::Control(request, reply)) {
            Ok(()) => answer.recv().unwrap_or_else(|_| stopping()),
            Err(_) => stopping(),
        };
        match reply {
            Reply::Applied { summary } => Ok(Done {
                summary,
                live: true,
            }),
            Reply::Error { message, fault } => Err(ChangeError::new(fault, message)),
            other => Err(ChangeError::new(
                Fault::Unavailable,
                format!("unexpected answer from the event loop: {other:?}"),
            )),
        }
    }
}

pub(super) fn stopping() -> Reply {
    Reply::failed(ChangeError::new(
        Fault::Unavailable,
        "the daemon is stopping; nothing was changed",
    ))
}

pub(super) fn take_lock(store: &Store) -> Result<PidLock, DaemonError> {
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

pub(super) fn start_signal_thread(events: mpsc::Sender<Event>) -> Result<(), DaemonError> {
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
pub(super) fn start_watchers(events: &mpsc::Sender<Event>) {
    let sender = |events: &mpsc::Sender<Event>| {
        let events = events.clone();
        move |drift: Drift| {
            let _ = events.send(Event::Drift(drift));
        }
    };
    if let Err(e) = watch::watch_ruleset(crate::dataplane::nftables::model::TABLE, sender(events)) {
        warn!("cannot watch nftables ({e}): drift is found by the periodic check only");
    }
    watch::watch_firewalld(sender(events));
    if let Err(e) = watch::watch_network(sender(events)) {
        warn!("cannot watch links and addresses ({e}): found by the periodic check only");
    }
}

pub(super) fn bind_control_socket(store: &Store) -> Result<UnixListener, DaemonError> {
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
