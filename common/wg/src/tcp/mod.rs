//! WireGuard over TCP, for networks that pass no UDP (hotel and conference Wi-Fi that allow
//! only TCP 80/443). Each datagram is framed with its length ([`frame`]); the gateway relays
//! every connection to its device through a loopback UDP socket ([`server`]) and the laptop
//! relays its device's UDP over one connection ([`client`]), both with GSO and GRO
//! ([`loopback`]). Both devices keep speaking
//! plain WireGuard: TCP is only the road.

pub mod client;
pub mod frame;
mod loopback;
pub mod portal;
pub mod server;
mod udp_check;

pub use udp_check::udp_answers;

use std::future::Future;
use std::io;
use std::net::SocketAddr;

/// What a roamer sends the TCP port to learn whether it reaches the gateway (and not a
/// captive portal that intercepts TCP), and the gateway's answer: shorter than the question.
pub const PROBE_REQUEST: &str = "GET /roamgw-probe HTTP/1.1\r\nHost: roamgw\r\n\r\n";
pub const PROBE_ANSWER: &str = "HTTP/1.1 204 roamgw\r\n\r\n";

/// A relay writes what has queued up to this much in one go, and reads as much: one syscall
/// for many datagrams where the traffic allows it.
const BATCH_BYTES: usize = 64 * 1024;

/// A socket for talking to the gateway beside the tunnel, marked
/// ([`roamgw_common::replies::BESIDE_TUNNEL_MARK`]) so that egress through the tunnel leaves it
/// on the laptop's own network. Unmarked when the mark is refused (not root): only egress
/// `0.0.0.0/0` needs it.
fn beside_tunnel(to: SocketAddr, kind: socket2::Type) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(to), kind, None)?;
    if let Err(e) = socket.set_mark(roamgw_common::replies::BESIDE_TUNNEL_MARK) {
        tracing::debug!("cannot mark the socket to {to}: {e}");
    }
    Ok(socket)
}

/// Stops a relay's thread when dropped.
pub struct Running {
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Runs `task` on a thread of its own with `runtime` (which made its sockets) until the
/// returned [`Running`] is dropped.
fn run_on_thread(
    name: &str,
    runtime: tokio::runtime::Runtime,
    task: impl Future<Output = ()> + Send + 'static,
) -> io::Result<Running> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    () = task => {}
                    _ = stopped => {}
                }
            });
        })?;
    Ok(Running { _stop: stop })
}

/// A runtime for one relay thread: I/O and timers, no worker pool.
fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
}
