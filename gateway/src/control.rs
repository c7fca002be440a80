//! The daemon's control socket (`<config dir>/roamgw.sock`, 0600): one JSON request per
//! connection, one JSON reply. CLI changes go through it while `roamgw run` is up, so they are
//! live when the command returns and the device is never restarted.
//!
//! Who runs is decided by the daemon's lock (`<config dir>/roamgw.pid`), not by the socket: a
//! socket file can be stale, and a live daemon can be slow to answer. A CLI that finds the lock
//! held talks to the daemon or reports it stuck; it never changes the data plane behind a
//! running daemon's back.
//!
//! The server cannot be held hostage: every connection has a thread of its own, a request must
//! arrive whole within [`READ_DEADLINE`] and fit in [`MAX_REQUEST`], and a change carries the
//! time after which its CLI stops waiting, so the daemon refuses (rather than applies) a change
//! nobody will hear about.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::engine::{ChangeError, Fault};
use crate::store::Store;

pub const SOCKET_FILE: &str = "roamgw.sock";
/// The daemon's lock, with its pid inside: exactly one `roamgw run` per config directory.
pub const PID_FILE: &str = "roamgw.pid";
/// The largest request the daemon reads (a change of a few forwards is a few hundred bytes).
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long a client may take to send its request.
pub const READ_DEADLINE: Duration = Duration::from_secs(1);
/// Connections served at once; more are refused at once.
const MAX_CONNECTIONS: usize = 64;
/// How long the CLI waits for a socket while the lock says a daemon runs (it binds the socket
/// right after taking the lock).
const STARTING_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Apply this change to the running state, make it live and save it (the CLI holds the
    /// state lock meanwhile). Not applied after `deadline_unix_ms`: its CLI has given up.
    Change {
        change: crate::change::StateChange,
        #[serde(default)]
        deadline_unix_ms: Option<u64>,
    },
    /// The live view for `roamgw status`.
    Status,
    /// `roamgw apply`: reconcile now.
    Reconcile {
        #[serde(default)]
        deadline_unix_ms: Option<u64>,
    },
    /// keepalived's word, through `roamgw ha notify`.
    HaNotify { role: crate::ha::HaRole },
    /// The pair as this daemon sees it, for `roamgw ha status`.
    HaStatus,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    Applied {
        summary: String,
    },
    Status {
        peers: Vec<PeerView>,
        /// The userspace device's handshake-flood counts (an older daemon sends none).
        #[serde(default)]
        flood: Option<crate::flood::FloodView>,
    },
    Ha(Box<crate::ha::HaView>),
    Error {
        message: String,
        /// Whose fault: an older daemon sends none (it meant "refused").
        #[serde(default)]
        fault: Fault,
    },
}

impl Reply {
    pub fn failed(e: ChangeError) -> Reply {
        Reply::Error {
            message: e.message,
            fault: e.fault,
        }
    }
}

/// One roamer as the daemon sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerView {
    pub name: String,
    pub public_key: String,
    pub endpoint: Option<String>,
    /// Seconds since the last handshake; `None` when none completed.
    pub last_handshake_secs: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl PeerView {
    /// One view per roamer of the state, filled from what the device reports (if anything).
    pub fn for_roamers(
        state: &roamgw_common::state::GatewayState,
        status: Option<&roamgw_wg::DeviceStatus>,
    ) -> Vec<PeerView> {
        let now = SystemTime::now();
        state
            .roamers
            .iter()
            .map(|roamer| {
                let peer = status.and_then(|s| s.peer(&roamer.public_key));
                PeerView {
                    name: roamer.name.to_string(),
                    public_key: roamer.public_key.to_string(),
                    endpoint: peer.and_then(|p| p.endpoint).map(|e| e.to_string()),
                    last_handshake_secs: peer
                        .and_then(|p| p.last_handshake)
                        .and_then(|t| now.duration_since(t).ok())
                        .map(|d| d.as_secs()),
                    rx_bytes: peer.map_or(0, |p| p.rx_bytes),
                    tx_bytes: peer.map_or(0, |p| p.tx_bytes),
                }
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no roamgw daemon runs for this config directory")]
    NotRunning,
    #[error(
        "roamgw run (pid {pid}) holds this config directory but does not answer on {path} ({why}): \
         it is stuck, nothing was changed; see its log (journalctl -u roamgw) and restart it \
         (systemctl restart roamgw)"
    )]
    Stuck {
        pid: u32,
        path: PathBuf,
        why: String,
    },
    #[error("cannot tell whether roamgw run is up: {0}{hint}", hint = crate::store::permission_hint(.0))]
    Lock(#[from] roamgw_common::fsutil::FsError),
    #[error("the roamgw daemon sent a reply this roamgw does not understand: {0}")]
    Protocol(String),
}

pub fn socket_path(store: &Store) -> PathBuf {
    store.dir().join(SOCKET_FILE)
}

pub fn pid_path(store: &Store) -> PathBuf {
    store.dir().join(PID_FILE)
}

/// The pid of the `roamgw run` that holds this config directory, if one does.
pub fn daemon_pid(store: &Store) -> Result<Option<u32>, ControlError> {
    Ok(roamgw_common::fsutil::PidLock::holder(&pid_path(store))?)
}

/// `daemon_pid` for read-only views: a lock file we may not read counts as no daemon.
pub fn daemon_pid_or_none(store: &Store) -> Option<u32> {
    daemon_pid(store).ok().flatten()
}

/// A deadline `after` from now, as the wall-clock milliseconds a request carries.
pub fn deadline_in(after: Duration) -> Option<u64> {
    let at = SystemTime::now().checked_add(after)?;
    at.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

/// Whether a request's deadline has passed.
pub fn expired(deadline_unix_ms: Option<u64>) -> bool {
    deadline_unix_ms.is_some_and(|deadline| deadline_in(Duration::ZERO).unwrap_or(0) > deadline)
}

/// Sends a request to the running daemon and waits up to `timeout` for the reply.
/// [`ControlError::NotRunning`] when no daemon holds the directory.
pub fn request(store: &Store, request: &Request, timeout: Duration) -> Result<Reply, ControlError> {
    let Some(pid) = daemon_pid(store)? else {
        return Err(ControlError::NotRunning);
    };
    let path = socket_path(store);
    let stuck = |why: String| ControlError::Stuck {
        pid,
        path: path.clone(),
        why,
    };
    let started = Instant::now();
    let mut stream = loop {
        match UnixStream::connect(&path) {
            Ok(stream) => break stream,
            // The daemon takes the lock, then binds: it may be starting. Or it died a moment ago.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) && started.elapsed() < STARTING_GRACE =>
            {
                if daemon_pid(store)?.is_none() {
                    return Err(ControlError::NotRunning);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(stuck(e.to_string())),
        }
    };
    let io = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            stuck(format!("no answer in {} s", timeout.as_secs()))
        } else {
            stuck(e.to_string())
        }
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line =
        serde_json::to_string(request).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut reply = String::new();
    BufReader::new(stream.take(16 * 1024 * 1024))
        .read_line(&mut reply)
        .map_err(io)?;
    if reply.is_empty() {
        return Err(stuck("it closed the connection without a reply".into()));
    }
    serde_json::from_str(&reply).map_err(|e| ControlError::Protocol(format!("{e}: {reply:?}")))
}

/// Why a connection's request could not be read.
#[derive(Debug, PartialEq, Eq)]
enum ReadError {
    TimedOut,
    TooLarge,
    Closed,
    Io(std::io::ErrorKind),
}

/// Reads one request line: whole within [`READ_DEADLINE`] (however slowly it trickles in),
/// at most [`MAX_REQUEST`] bytes. The memory used is bounded by the cap, never by the client.
fn read_request(stream: &mut impl ReadWithTimeout) -> Result<Vec<u8>, ReadError> {
    let deadline = Instant::now() + READ_DEADLINE;
    let mut request = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::TimedOut);
        }
        stream
            .set_timeout(left)
            .map_err(|e| ReadError::Io(e.kind()))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadError::TimedOut)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e.kind())),
        };
        if n == 0 {
            return if request.is_empty() {
                Err(ReadError::Closed)
            } else {
                Ok(request)
            };
        }
        let data = &chunk[..n];
        let line_end = data.iter().position(|&b| b == b'\n');
        request.extend_from_slice(&data[..line_end.unwrap_or(n)]);
        if request.len() > MAX_REQUEST {
            return Err(ReadError::TooLarge);
        }
        if line_end.is_some() {
            return Ok(request);
        }
    }
}

/// A stream whose reads can be given a timeout (a trait so the reader is testable in memory).
trait ReadWithTimeout: Read {
    fn set_timeout(&mut self, timeout: Duration) -> std::io::Result<()>;
}

impl ReadWithTimeout for UnixStream {
    fn set_timeout(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(timeout))
    }
}

/// Serves the socket on threads of its own: one per connection, `handle` called for every
/// well-formed request (it may block while the daemon works; other connections go on).
pub fn serve(
    listener: UnixListener,
    handle: impl Fn(Request) -> Reply + Send + Sync + 'static,
) -> std::io::Result<()> {
    let handle = Arc::new(handle);
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let mut stream = match stream {
                    Ok(stream) => stream,
                    Err(e) => {
                        warn!("control socket: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let _ = write_reply(
                        &mut stream,
                        &Reply::failed(ChangeError::new(
                            Fault::Unavailable,
                            format!(
                                "the daemon is serving {MAX_CONNECTIONS} connections: try again"
                            ),
                        )),
                    );
                    continue;
                }
                let handle = Arc::clone(&handle);
                let active_here = Arc::clone(&active);
                let spawned = std::thread::Builder::new()
                    .name("control-conn".into())
                    .spawn(move || {
                        serve_one(stream, handle.as_ref());
                        active_here.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    active.fetch_sub(1, Ordering::SeqCst);
                    warn!("control socket: cannot start a connection thread: {e}");
                }
            }
        })?;
    Ok(())
}

fn serve_one(mut stream: UnixStream, handle: &(dyn Fn(Request) -> Reply + Send + Sync)) {
    let reply = match read_request(&mut stream) {
        Ok(bytes) => match serde_json::from_slice::<Request>(&bytes) {
            Ok(request) => handle(request),
            Err(e) => Reply::failed(ChangeError::new(Fault::Input, format!("bad request: {e}"))),
        },
        Err(ReadError::TooLarge) => Reply::failed(ChangeError::new(
            Fault::Input,
            format!(
                "request larger than {} KiB: refused, nothing was changed",
                MAX_REQUEST / 1024
            ),
        )),
        Err(e) => {
            debug!("control connection dropped: {e:?}");
            return;
        }
    };
    if let Err(e) = write_reply(&mut stream, &reply) {
        debug!("control connection: the client left before the reply: {e}");
    }
}

fn write_reply(stream: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut text = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    text.push('\n');
    stream.set_write_timeout(Some(READ_DEADLINE))?;
    stream.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out the chunks it was given, one per read, then end of file (or a timeout).
    struct Chunks {
        chunks: std::collections::VecDeque<Vec<u8>>,
        then_timeout: bool,
    }

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.chunks.pop_front() {
                Some(chunk) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        self.chunks.push_front(chunk[n..].to_vec());
                    }
                    Ok(n)
                }
                None if self.then_timeout => Err(std::io::ErrorKind::WouldBlock.into()),
                None => Ok(0),
            }
        }
    }

    impl ReadWithTimeout for Chunks {
        fn set_timeout(&mut self, _: Duration) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn read(chunks: &[&[u8]], then_timeout: bool) -> Result<Vec<u8>, ReadError> {
        read_request(&mut Chunks {
            chunks: chunks.iter().map(|c| c.to_vec()).collect(),
            then_timeout,
        })
    }

    #[test]
    fn request_reading_table() {
        let big = vec![b'x'; MAX_REQUEST + 1];
        let exactly = vec![b'x'; MAX_REQUEST];
        // (what, chunks the client sends, then idle (else EOF), result)
        type Case<'a> = (&'a str, Vec<&'a [u8]>, bool, Result<Vec<u8>, ReadError>);
        let cases: Vec<Case> = vec![
            (
                "one line",
                vec![b"\"status\"\n"],
                false,
                Ok(b"\"status\"".to_vec()),
            ),
            (
                "in pieces",
                vec![b"\"sta", b"tus\"\nrest"],
                false,
                Ok(b"\"status\"".to_vec()),
            ),
            (
                "no newline, then EOF",
                vec![b"\"status\""],
                false,
                Ok(b"\"status\"".to_vec()),
            ),
            ("nothing", vec![], false, Err(ReadError::Closed)),
            ("idle client", vec![], true, Err(ReadError::TimedOut)),
            (
                "half a line, then idle",
                vec![b"{\"chan"],
                true,
                Err(ReadError::TimedOut),
            ),
            ("over the cap", vec![&big], true, Err(ReadError::TooLarge)),
            (
                "at the cap",
                vec![&exactly, b"\n"],
                false,
                Ok(exactly.clone()),
            ),
        ];
        for (name, chunks, then_timeout, want) in cases {
            assert_eq!(read(&chunks, then_timeout), want, "{name}");
        }
    }

    #[test]
    fn expired_deadlines() {
        assert!(!expired(None));
        assert!(!expired(deadline_in(Duration::from_secs(60))));
        assert!(expired(Some(1)));
    }
}
