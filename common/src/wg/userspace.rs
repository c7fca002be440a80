//! boringtun, embedded: the userspace WireGuard device, and everything we do around it.
//!
//! Measured traps of boringtun 0.7 this module works around (docs/decisions.md):
//! - `use_connected_socket: true` (its default) breaks roaming: after the peer's address
//!   changed, 0 of 60 pings got through. We use unconnected sockets.
//! - More than one worker thread was slower than one on two cores.
//! - Its own UAPI socket mode installs SIGINT/SIGTERM handlers that fight ours: we configure it
//!   over a socketpair instead, and serve `/var/run/wireguard/<if>.sock` ourselves so `wg show`
//!   keeps working.
//! - Peer changes: see [`super::sync_peers`].

use std::io::{BufRead, BufReader, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use boringtun::device::{DeviceConfig, DeviceHandle};

use super::uapi::{self, DeviceStatus, SetRequest, UapiError};
use super::WgDevice;

/// Where `wg` looks for userspace interfaces.
pub const UAPI_DIR: &str = "/var/run/wireguard";

#[derive(Debug, thiserror::Error)]
pub enum UserspaceError {
    #[error("cannot create the userspace WireGuard interface {name}: {message} (needs root and /dev/net/tun)")]
    Create { name: String, message: String },
    #[error("cannot serve {path} for `wg show`: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct UserspaceDevice {
    name: String,
    // Fields drop in order: our end of the UAPI socketpair, then the `wg` socket, then the
    // device, which exits and takes its TUN interface with it.
    control: Arc<Mutex<UnixStream>>,
    _relay: Relay,
    _handle: DeviceHandle,
}

impl UserspaceDevice {
    /// Creates the TUN interface `name` with boringtun running on it.
    pub fn create(name: &str) -> Result<Self, UserspaceError> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| UserspaceError::Create {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        let config = DeviceConfig {
            n_threads: 1,
            use_connected_socket: false,
            use_multi_queue: false,
            // boringtun owns this end from now on.
            uapi_fd: theirs.into_raw_fd(),
        };
        let handle = DeviceHandle::new(name, config).map_err(|e| UserspaceError::Create {
            name: name.to_string(),
            message: format!("{e:?}"),
        })?;
        let control = Arc::new(Mutex::new(ours));
        let relay = Relay::start(name, Arc::clone(&control))?;
        Ok(UserspaceDevice {
            name: name.to_string(),
            control,
            _relay: relay,
            _handle: handle,
        })
    }

    fn with_control<T>(
        &self,
        f: impl FnOnce(&mut UnixStream) -> Result<T, UapiError>,
    ) -> Result<T, UapiError> {
        let mut stream = self.control.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut stream)
    }
}

impl WgDevice for UserspaceDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn status(&self) -> Result<DeviceStatus, UapiError> {
        let mut status = self.with_control(|s| uapi::get(s, uapi::GET_ONE_LINE))?;
        for peer in &mut status.peers {
            peer.last_handshake = peer.last_handshake.and_then(handshake_from_elapsed);
        }
        Ok(status)
    }

    fn set(&self, request: &SetRequest) -> Result<(), UapiError> {
        self.with_control(|s| uapi::set(s, request))
    }
}

/// `/var/run/wireguard/<if>.sock` for `wg show`: `get` is relayed to the device; `set` is
/// refused (errno=1), because peers are roamgw's to manage and a raw set could change a peer
/// in place, which boringtun does not survive.
struct Relay {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(name: &str, control: Arc<Mutex<UnixStream>>) -> Result<Self, UserspaceError> {
        let dir = PathBuf::from(UAPI_DIR);
        let path = dir.join(format!("{name}.sock"));
        let socket_error = |source| UserspaceError::Socket {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(socket_error)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(socket_error)?;
        // A socket left by a crashed run (kill -9) would make bind fail.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(socket_error)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(socket_error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name(format!("uapi-{name}"))
            .spawn(move || {
                for connection in listener.incoming() {
                    if thread_stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(stream) = connection {
                        let _ = serve(stream, &control);
                    }
                }
            })
            .map_err(socket_error)?;
        Ok(Relay { path, stop })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag, then remove the socket.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// boringtun reports the time *since* the last handshake where the protocol has the time *of*
/// it (seconds since the epoch): `wg show` then printed "55 years ago". Turn the one into the
/// other.
fn handshake_from_elapsed(reported: std::time::SystemTime) -> Option<std::time::SystemTime> {
    let elapsed = reported.duration_since(std::time::UNIX_EPOCH).ok()?;
    std::time::SystemTime::now().checked_sub(elapsed)
}

fn fix_handshake_lines(reply: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut out = String::with_capacity(reply.len());
    // The nsec line follows the sec line: rewrite both as one instant.
    let mut pending_sec: Option<u64> = None;
    for line in reply.lines() {
        if let Some(sec) = line
            .strip_prefix("last_handshake_time_sec=")
            .and_then(|v| v.parse::<u64>().ok())
        {
            pending_sec = Some(sec);
            continue;
        }
        if let (Some(sec), Some(nsec)) = (
            pending_sec,
            line.strip_prefix("last_handshake_time_nsec=")
                .and_then(|v| v.parse::<u32>().ok()),
        ) {
            let at = now.saturating_sub(std::time::Duration::new(sec, nsec));
            out.push_str(&format!(
                "last_handshake_time_sec={}\nlast_handshake_time_nsec={}\n",
                at.as_secs(),
                at.subsec_nanos()
            ));
            pending_sec = None;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn serve(stream: UnixStream, control: &Mutex<UnixStream>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut command = String::new();
    reader.read_line(&mut command)?;
    // Consume the rest of the request, up to the empty line.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\n" {
            break;
        }
    }
    let reply = match command.trim_end() {
        "get=1" => {
            let mut device = control.lock().unwrap_or_else(|p| p.into_inner());
            device.write_all(uapi::GET_ONE_LINE)?;
            let reply = uapi::read_reply(&mut BufReader::new(&mut *device))
                .unwrap_or_else(|_| "errno=5\n".into());
            fix_handshake_lines(&reply)
        }
        "set=1" => "errno=1\n".to_string(),
        _ => "errno=22\n".to_string(),
    };
    writer.write_all(reply.as_bytes())?;
    writer.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn handshake_lines_become_instants() {
        let fixed = super::fix_handshake_lines("public_key=ab\nlast_handshake_time_sec=5\nlast_handshake_time_nsec=0\nrx_bytes=1\nerrno=0\n");
        let sec: u64 = fixed
            .lines()
            .find_map(|l| l.strip_prefix("last_handshake_time_sec="))
            .and_then(|v| v.parse().ok())
            .expect("sec line");
        assert!(sec > 1_700_000_000, "{fixed}");
        assert!(fixed.ends_with("rx_bytes=1\nerrno=0\n"), "{fixed}");
    }
}
