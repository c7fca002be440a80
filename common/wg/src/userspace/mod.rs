//! Userspace WireGuard: boringtun's protocol core (`noise::Tunn`) inside an I/O loop of our
//! own, on a TUN interface.
//!
//! Why not boringtun's own device (measured, docs/decisions.md): it has no batching or offload
//! (one syscall per packet each way), it roams only with unconnected sockets, and changing a
//! peer in place could panic it. Here:
//! - [`datapath`]: TUN offloads and UDP GSO/GRO, one thread per direction;
//! - [`inbound`]: what a datagram does; handshakes on a thread of their own;
//! - [`table`]: peers, cryptokey routing, session indexes; a change keeps the session;
//! - [`gso`]: how encrypted datagrams are gathered into one send.
//!
//! Configuration is in-process (no UAPI text on the way); `/var/run/wireguard/<if>.sock` is
//! served for `wg show`.

mod datapath;
pub(crate) mod gso;
mod inbound;
pub mod limiter;
mod table;
pub(crate) mod udp;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tun_rs::{DeviceBuilder, SyncDevice};
use zeroize::Zeroizing;

use super::model::{DeviceStatus, SetOp, SetRequest};
use super::uapi;
use super::WgDevice;
use crate::DeviceError;
use datapath::{lock_read, Shared};

/// Where `wg` looks for userspace interfaces.
pub const UAPI_DIR: &str = "/var/run/wireguard";

#[derive(Debug, thiserror::Error)]
pub enum UserspaceError {
    #[error("cannot create the userspace WireGuard interface {name}: {message} (needs root and /dev/net/tun)")]
    Create { name: String, message: String },
    #[error("another WireGuard device named {name} runs on this host ({path} answers; network namespaces share that directory): give this one another interface name")]
    Taken { name: String, path: PathBuf },
    #[error("cannot serve {path} for `wg show`: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct UserspaceDevice {
    name: String,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    _relay: Relay,
}

fn create_tun(name: &str) -> std::io::Result<SyncDevice> {
    let build = |offload: bool| {
        DeviceBuilder::new()
            .name(name)
            .packet_information(false)
            .offload(offload)
            .build_sync()
    };
    build(true).or_else(|e| {
        tracing::warn!(
            interface = name,
            "TUN offload unavailable ({e}): one packet per read"
        );
        build(false)
    })
}

impl UserspaceDevice {
    /// Creates the TUN interface `name` with WireGuard running on it (no key, no peers yet).
    pub fn create(name: &str, source: crate::ReplySource) -> Result<Self, UserspaceError> {
        let create_error = |e: std::io::Error| UserspaceError::Create {
            name: name.to_string(),
            message: e.to_string(),
        };
        // Its socket would be taken over: whoever reads the device by name (`wg show`, our
        // status) would read ours, and the other device would lose its name.
        let path = uapi_path(name);
        if UnixStream::connect(&path).is_ok() {
            return Err(UserspaceError::Taken {
                name: name.to_string(),
                path,
            });
        }
        let tun = Arc::new(create_tun(name).map_err(create_error)?);
        tun.set_nonblocking(true).map_err(create_error)?;
        let shared = Arc::new(Shared::new(source).map_err(create_error)?);
        // Weak: the relay's thread may outlive the device by a moment, and must not keep its
        // sockets (the listen port) open meanwhile: a device created again at once (after
        // `ip link del`) binds the same port.
        let for_relay = Arc::downgrade(&shared);
        let relay = Relay::start(
            name,
            Box::new(move || {
                let Some(shared) = for_relay.upgrade() else {
                    return zeroize::Zeroizing::new("errno=19\n".to_string());
                };
                let status = shared.status();
                let table = lock_read(&shared.table);
                uapi::render_get(&status, table.private_key(), &|key| {
                    table.peer(key).and_then(|p| p.preshared_key().cloned())
                })
            }),
        )?;
        // Built before the threads start, so a failed spawn stops those already running.
        let mut device = UserspaceDevice {
            name: name.to_string(),
            shared,
            threads: Vec::new(),
            _relay: relay,
        };
        let spawn = |role: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("{role}-{name}"))
                .spawn(run)
                .map_err(create_error)
        };
        let (s, t) = (Arc::clone(&device.shared), Arc::clone(&tun));
        device.threads.push(spawn(
            "wg-tx",
            Box::new(move || datapath::transmit_loop(&s, &t)),
        )?);
        let (to_handshakes, handshakes) = inbound::handshake_queue();
        let (s, t) = (Arc::clone(&device.shared), tun);
        device.threads.push(spawn(
            "wg-rx",
            Box::new(move || datapath::receive_loop(&s, &t, to_handshakes)),
        )?);
        // Ends when the receive thread drops the queue's sender.
        let s = Arc::clone(&device.shared);
        device.threads.push(spawn(
            "wg-hs",
            Box::new(move || inbound::handshake_loop(&s, handshakes)),
        )?);
        let s = Arc::clone(&device.shared);
        device.threads.push(spawn(
            "wg-timers",
            Box::new(move || datapath::timer_loop(&s)),
        )?);
        Ok(device)
    }
}

impl Drop for UserspaceDevice {
    fn drop(&mut self) {
        self.shared.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // The TUN closes with the last thread's handle, and the interface goes with it.
    }
}

impl WgDevice for UserspaceDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn status(&self) -> Result<DeviceStatus, DeviceError> {
        Ok(self.shared.status())
    }

    fn on_endpoint_change(&self, hook: crate::EndpointHook) {
        self.shared.on_endpoint_change(hook);
    }

    fn set(&self, request: &SetRequest) -> Result<(), DeviceError> {
        // Bind before changing anything, so a port in use refuses the whole transaction.
        let new_socket = match request.ops().iter().rev().find_map(|op| match op {
            SetOp::ListenPort(port) => Some(*port),
            _ => None,
        }) {
            Some(port)
                if self
                    .shared
                    .udp()
                    .is_none_or(|u| port != 0 && u.port() != port) =>
            {
                Some(Arc::new(self.shared.bind(port).map_err(|e| {
                    DeviceError::Userspace(format!("cannot listen on UDP port {port}: {e}"))
                })?))
            }
            _ => None,
        };
        let initiate = self
            .shared
            .table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(request.ops())?;
        if let Some(udp) = new_socket {
            *self.shared.udp.write().unwrap_or_else(|p| p.into_inner()) = Some(udp);
            self.shared.socket_changed();
        }
        for key in &initiate {
            self.shared.initiate(key);
        }
        Ok(())
    }
}

/// Renders the device's `get=1` reply.
type Render = Box<dyn Fn() -> Zeroizing<String> + Send + Sync>;

/// Where `wg` finds a userspace device named `name`.
pub fn uapi_path(name: &str) -> PathBuf {
    PathBuf::from(UAPI_DIR).join(format!("{name}.sock"))
}

/// `/var/run/wireguard/<if>.sock` for `wg show`: `get` is answered from the device; `set` is
/// refused (errno=1), because peers are roamgw's to manage.
struct Relay {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(name: &str, render: Render) -> Result<Self, UserspaceError> {
        let dir = PathBuf::from(UAPI_DIR);
        let path = uapi_path(name);
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
                        let _ = serve(stream, &render);
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

fn serve(stream: UnixStream, render: &Render) -> std::io::Result<()> {
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
        "get=1" => render(),
        "set=1" => Zeroizing::new("errno=1\n".to_string()),
        _ => Zeroizing::new("errno=22\n".to_string()),
    };
    writer.write_all(reply.as_bytes())?;
    writer.write_all(b"\n")
}
