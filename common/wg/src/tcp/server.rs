//! The gateway's side: each accepted connection gets a UDP socket of its own on loopback,
//! connected to the WireGuard device's port. The device sees the connection as one more peer
//! endpoint (127.0.0.1:port) and answers it as it answers any other: only once a handshake
//! authenticates, never with more bytes than it was sent (a response is 92 bytes to an
//! initiation's 148, a cookie reply 64). So nothing reaches a connection before its peer is
//! known, and the relay adds no amplification of its own.
//!
//! Limits: a connection the device has not answered within [`Limits::handshake`] is closed
//! (junk, scanners, slow-loris); an answered one is closed after [`Limits::idle`] without a
//! frame; a frame that is not shaped like WireGuard closes its connection at once; at most
//! [`Limits::connections`] at a time, and when they are all taken the oldest unanswered one
//! makes room, so idle connections cannot lock a roamer out.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::frame::{is_wireguard, Deframer};
use super::loopback::{Buffers, Loopback};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connections: usize,
    pub handshake: Duration,
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 1024,
            handshake: Duration::from_secs(5),
            // WireGuard drops a session after 180 s without a new handshake; a live peer
            // sends at least a keepalive within that.
            idle: Duration::from_secs(180),
        }
    }
}

/// Why a connection ended (logged at debug: outsiders decide most of them).
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("the peer closed it")]
    Eof,
    #[error("a frame that is not WireGuard")]
    Junk,
    #[error("no handshake within {0:?}")]
    NoHandshake(Duration),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("made room for a new connection")]
    Evicted,
    #[error("answered a roamer's probe")]
    Probed,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The live connections: which loopback endpoint is which TCP peer, and which have not been
/// answered yet (the ones that may be evicted).
#[derive(Debug, Default)]
pub struct Relays {
    inner: Mutex<Registry>,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct Registry {
    /// The device-facing socket's address → the TCP peer's address.
    peers: BTreeMap<SocketAddr, SocketAddr>,
    /// Unanswered connections by age (ids grow), with what wakes them to leave.
    unanswered: BTreeMap<u64, Arc<Notify>>,
}

impl Relays {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The TCP peer behind a device endpoint, when that endpoint is one of ours.
    pub fn peer_of(&self, endpoint: SocketAddr) -> Option<SocketAddr> {
        self.registry().peers.get(&endpoint).copied()
    }

    /// Enters a connection: its device-facing socket `local`, its TCP `peer`, unanswered.
    fn register(
        &self,
        id: u64,
        local: SocketAddr,
        peer: SocketAddr,
        leave: &Arc<Notify>,
    ) -> Registered<'_> {
        let mut registry = self.registry();
        registry.peers.insert(local, peer);
        registry.unanswered.insert(id, leave.clone());
        Registered {
            relays: self,
            id,
            local,
        }
    }

    /// Makes room for one more connection: `false` when every one is answered and the limit
    /// is reached (the new one is then refused).
    fn admit(&self, limit: usize) -> bool {
        let mut registry = self.registry();
        if registry.peers.len() < limit {
            return true;
        }
        match registry.unanswered.pop_first() {
            Some((_, leave)) => {
                leave.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's entries in the registry, taken out when it ends, however it ends.
struct Registered<'a> {
    relays: &'a Relays,
    id: u64,
    local: SocketAddr,
}

impl Registered<'_> {
    /// The device answered: no longer one that may be evicted.
    fn answered(&self) {
        self.relays.registry().unanswered.remove(&self.id);
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut registry = self.relays.registry();
        registry.peers.remove(&self.local);
        registry.unanswered.remove(&self.id);
    }
}

/// Accepts connections on `listener` and relays each to `device` until the task is dropped.
pub async fn serve(listener: TcpListener, device: SocketAddr, limits: Limits, relays: Arc<Relays>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and the like: wait rather than spin.
                warn!("tcp fallback: cannot accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !relays.admit(limits.connections) {
            debug!(%peer, "tcp fallback: all {} connections are in use: refused", limits.connections);
            continue;
        }
        let relays = relays.clone();
        tokio::spawn(async move {
            let id = relays.next_id.fetch_add(1, Ordering::Relaxed);
            let leave = Arc::new(Notify::new());
            let ended = connection(stream, peer, device, limits, &relays, id, &leave).await;
            if let Err(why) = ended {
                debug!(%peer, "tcp fallback: connection closed: {why}");
            }
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    device: SocketAddr,
    limits: Limits,
    relays: &Relays,
    id: u64,
    leave: &Arc<Notify>,
) -> Result<(), Closed> {
    stream.set_nodelay(true)?;
    let udp = Loopback::bind((Ipv4Addr::LOCALHOST, 0).into())?;
    udp.connect(device).await?;
    let registered = relays.register(id, udp.local_addr()?, peer, leave);
    let (mut from_peer, mut to_peer) = stream.into_split();
    let mut deframer = Deframer::default();
    // Small until the device answers: an unanswered connection costs little.
    let mut read = vec![0u8; 4096];
    let mut buffers = Buffers::default();
    let mut frames = Vec::new();
    let mut answered = false;
    let deadline = tokio::time::sleep(limits.handshake);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            n = from_peer.read(&mut read) => {
                let n = n?;
                if n == 0 {
                    return Err(Closed::Eof);
                }
                if !answered && deframer.pending() == 0 && read[..n].starts_with(b"GET ") {
                    return answer_probe(&read[..n], &mut to_peer).await;
                }
                deframer.push(&read[..n]);
                let whole = udp
                    .send_deframed(&mut buffers, &mut deframer, device, is_wireguard)
                    .map_err(|_| Closed::Junk)?;
                if answered && whole > 0 {
                    deadline.as_mut().reset(Instant::now() + limits.idle);
                }
            }
            got = udp.recv_framed(&mut buffers, &mut frames) => {
                if got.is_err() {
                    continue;
                }
                // A peer that stops reading stalls only its own connection, and not forever.
                tokio::time::timeout(limits.handshake, to_peer.write_all(&frames))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the peer does not read"))??;
                if !answered {
                    answered = true;
                    read.resize(super::BATCH_BYTES, 0);
                    registered.answered();
                    deadline.as_mut().reset(Instant::now() + limits.idle);
                }
            }
            () = &mut deadline => {
                return Err(if answered { Closed::Idle(limits.idle) } else { Closed::NoHandshake(limits.handshake) });
            }
            () = leave.notified(), if !answered => return Err(Closed::Evicted),
        }
    }
}

/// Asks the roamer's [`super::PROBE_REQUEST`] (a WireGuard frame never starts with "GET ": its
/// length would be 18,245 bytes): the answer tells the roamer that the connection reached the
/// gateway and not a captive portal. Anything else that starts like HTTP is junk.
async fn answer_probe(
    request: &[u8],
    to_peer: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Result<(), Closed> {
    if !request.starts_with(super::PROBE_REQUEST.as_bytes()) {
        return Err(Closed::Junk);
    }
    to_peer.write_all(super::PROBE_ANSWER.as_bytes()).await?;
    let _ = to_peer.shutdown().await;
    Err(Closed::Probed)
}

/// The fallback listening on its own thread: bound at once (so a port already taken is an
/// error here, not a log line later), served until dropped.
pub struct TcpFallback {
    pub listen: SocketAddr,
    pub relays: Arc<Relays>,
    _running: super::Running,
}

impl TcpFallback {
    pub fn start(listen: SocketAddr, device: SocketAddr, limits: Limits) -> io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let listen = std_listener.local_addr()?;
        let runtime = super::runtime()?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let relays = Arc::new(Relays::default());
        let task = serve(listener, device, limits, relays.clone());
        Ok(TcpFallback {
            listen,
            relays,
            _running: super::run_on_thread("roamgw-tcp", runtime, task)?,
        })
    }
}
