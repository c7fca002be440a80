//! The daemon's control socket (`<config dir>/roamgw.sock`, 0600): one JSON request per
//! connection, one JSON reply. CLI changes go through it while `roamgw run` is up, so they are
//! live when the command returns and the device is never restarted.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::Store;

pub const SOCKET_FILE: &str = "roamgw.sock";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Apply this change to the running state, make it live and save it (the CLI holds the
    /// state lock meanwhile).
    Change { change: crate::change::StateChange },
    /// The live view for `roamgw status`.
    Status,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    Applied { summary: String },
    Status { peers: Vec<PeerView> },
    Error { message: String },
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
        status: Option<&roamgw_common::wg::uapi::DeviceStatus>,
    ) -> Vec<PeerView> {
        let now = std::time::SystemTime::now();
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
    #[error("talking to the roamgw daemon at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the roamgw daemon sent a reply this roamgw does not understand: {0}")]
    Protocol(String),
}

pub fn socket_path(store: &Store) -> PathBuf {
    store.dir().join(SOCKET_FILE)
}

/// Sends a request to the running daemon; `Ok(None)` when no daemon listens.
pub fn request(
    store: &Store,
    request: &Request,
    timeout: Duration,
) -> Result<Option<Reply>, ControlError> {
    let path = socket_path(store);
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        // No socket, or a stale one from a daemon that is gone: no daemon.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(io(e)),
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line =
        serde_json::to_string(request).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).map_err(io)?;
    serde_json::from_str(&reply)
        .map(Some)
        .map_err(|e| ControlError::Protocol(format!("{e}: {reply:?}")))
}

/// Whether a daemon answers on the socket. A connect alone is not enough: a daemon killed
/// with -9 can take seconds to finish exiting (the kernel tearing its TUN interface down
/// waits for the device's last references), and meanwhile its listening socket still accepts
/// connections that nobody reads.
pub fn daemon_running(store: &Store) -> bool {
    matches!(
        request(store, &Request::Status, Duration::from_secs(2)),
        Ok(Some(Reply::Status { .. }))
    )
}
