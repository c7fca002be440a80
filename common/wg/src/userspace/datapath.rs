//! The userspace device's data path: boringtun's `noise::Tunn` does the WireGuard protocol;
//! the I/O around it is ours, because that is where the time goes (measured in
//! docs/benchmarks.md):
//! - TUN with `IFF_VNET_HDR` and TSO (tun-rs): the kernel hands us a TCP burst of up to 64 KB
//!   in one read, already cut into MTU-sized packets by tun-rs; on the way back, decrypted
//!   TCP segments of one flow are coalesced into one write (userspace GRO).
//! - UDP with GSO and GRO (quinn-udp): one `sendmsg` per burst of equal-sized datagrams, one
//!   `recvmmsg` for many datagrams, each possibly a GRO train.
//! - One thread per direction plus one for timers; a peer's `Tunn` sits behind its own lock.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Tunn, TunnResult};
use quinn_udp::RecvMeta;
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use tun_rs::{GROTable, SyncDevice, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

use super::super::model::{DeviceStatus, HandshakeDefence};
use super::gso::{GsoBatch, Send};
use super::inbound::{enqueue_handshake, is_initiation, receive, Queued};
use super::limiter::SourceLimiter;
use super::table::{Peer, Table};
use super::udp::{from_wire, Path, Sent, UdpPort};
use roamgw_common::keys::PublicKey;

/// Largest packet the TUN hands us after splitting (MTU is at most 9000, see the state's checks).
pub const MAX_PACKET: usize = 9000;
/// WireGuard's data message overhead; boringtun also wants 148 bytes for a handshake.
pub const OVERHEAD: usize = 32;
pub const MIN_OUT: usize = 148;
/// Receive slots per `recvmmsg`; each holds a GRO train of up to 64 KB.
const RECV_SLOTS: usize = 8;
const GRO_BUFFER: usize = 65_535;
/// How far decrypted TCP segments are coalesced into one TUN write. 128 slots of this may all
/// be touched: 32 KB kept roamer's RSS at 12.8 MB for 2,941 Mbit/s; 64 KB gave 15.2 MB for
/// 3,030 (within the noise), 16 KB 10.9 MB for 2,374 (docs/benchmarks.md).
const TUN_GRO_BYTES: usize = 32_768;
/// Decrypted packets per batched TUN write. Coalescing makes one write of ~22 full-sized
/// segments (TUN_GRO_BYTES), so 64 packets need as many writes per packet as 128 did, and
/// half the buffers are ever touched (docs/benchmarks.md, data path).
const TUN_BATCH: usize = 64;
/// boringtun's device runs timers at this period.
const TIMER_PERIOD: Duration = Duration::from_millis(250);

pub fn lock_read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

/// What the device threads share.
pub struct Shared {
    pub table: RwLock<Table>,
    pub udp: RwLock<Option<Arc<UdpPort>>>,
    stop: AtomicBool,
    wake_tx: OwnedFd,
    wake_rx: OwnedFd,
    wake_timers: OwnedFd,
    /// Sockets are bound on the timer thread: it runs in the network namespace the device was
    /// created in, which the thread configuring the device need not be in.
    binds: Mutex<Vec<BindRequest>>,
    /// Answer each peer from the address it reached us on (crate::ReplySource::Arrival).
    sticky_source: bool,
    pub(super) initiations_dropped: AtomicU64,
    pub(super) cookie_replies: AtomicU64,
    endpoint_hook: RwLock<Option<crate::EndpointHook>>,
}

/// A port to bind, and where the result goes.
pub type BindRequest = (u16, mpsc::Sender<io::Result<UdpPort>>);

impl Shared {
    pub fn new(source: crate::ReplySource) -> io::Result<Self> {
        let wake = || eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK);
        let (sticky_source, first) = match source {
            crate::ReplySource::Arrival { first } => (true, first),
            crate::ReplySource::Route => (false, None),
        };
        Ok(Shared {
            table: RwLock::new(Table::with_first_source(first)),
            udp: RwLock::new(None),
            stop: AtomicBool::new(false),
            wake_tx: wake()?,
            wake_rx: wake()?,
            wake_timers: wake()?,
            binds: Mutex::new(Vec::new()),
            sticky_source,
            initiations_dropped: AtomicU64::new(0),
            cookie_replies: AtomicU64::new(0),
            endpoint_hook: RwLock::new(None),
        })
    }

    pub fn udp(&self) -> Option<Arc<UdpPort>> {
        lock_read(&self.udp).clone()
    }

    pub fn status(&self) -> DeviceStatus {
        let port = self.udp().map_or(0, |udp| udp.port());
        let mut status = lock_read(&self.table).status(port);
        status.defence = Some(HandshakeDefence {
            initiations_dropped: self.initiations_dropped.load(Ordering::Relaxed),
            cookie_replies: self.cookie_replies.load(Ordering::Relaxed),
        });
        status
    }

    pub fn on_endpoint_change(&self, hook: crate::EndpointHook) {
        *self
            .endpoint_hook
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// WireGuard's roaming: the peer's endpoint is where its last authenticated datagram came
    /// from; a change is told to whoever records endpoints.
    pub(super) fn learn_endpoint(&self, peer: &Peer, from: Path) {
        if peer.learn_endpoint(from) {
            if let Some(hook) = lock_read(&self.endpoint_hook).as_ref() {
                hook();
            }
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Tells the receive thread that the socket changed.
    pub fn socket_changed(&self) {
        let _ = rustix::io::write(&self.wake_rx, &1u64.to_ne_bytes());
    }

    /// Binds a UDP socket to `port` in the device's network namespace.
    pub fn bind(&self, port: u16) -> io::Result<UdpPort> {
        let (reply, result) = mpsc::channel();
        self.binds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((port, reply));
        let _ = rustix::io::write(&self.wake_timers, &1u64.to_ne_bytes());
        result
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| io::Error::other("the device's timer thread did not answer"))?
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for fd in [&self.wake_tx, &self.wake_rx, &self.wake_timers] {
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }

    /// Starts a handshake with `key` now (a configured endpoint is known).
    pub fn initiate(&self, key: &PublicKey) {
        let (Some(udp), Some(peer)) = (self.udp(), lock_read(&self.table).peer(key).cloned())
        else {
            return;
        };
        let Some(path) = peer.path() else {
            return;
        };
        let mut out = [0u8; MIN_OUT];
        let sent = match peer.tunn().format_handshake_initiation(&mut out, false) {
            TunnResult::WriteToNetwork(packet) => udp.send_one(path, packet),
            _ => Sent::Done,
        };
        // The table after the peer's session lock, not inside it (the data path takes them
        // the other way round).
        if sent == Sent::SourceGone {
            lock_read(&self.table).forget_source(path.local);
        }
    }
}

/// Waits until `fd` is readable (`true`) or `wake` fired / the timeout passed (`false`).
fn wait_readable(fd: Option<BorrowedFd<'_>>, wake: &OwnedFd, timeout: Option<Duration>) -> bool {
    let mut fds = vec![PollFd::new(wake, PollFlags::IN)];
    if let Some(fd) = fd {
        fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
    }
    let timeout = timeout.map(timespec);
    if poll(&mut fds, timeout.as_ref()).is_err() {
        return false;
    }
    if !fds[0].revents().is_empty() {
        let _ = rustix::io::read(wake, &mut [0u8; 8]);
    }
    fds.get(1).is_some_and(|f| !f.revents().is_empty())
}

/// How many packets a batched read brought; `None` when the queue is drained or the read
/// failed. A failed syscall (not a packet tun-rs could not split) may fail again at once, e.g.
/// when the interface was deleted under us: it waits a little rather than spin.
fn batch_count(read: io::Result<usize>, what: &str) -> Option<usize> {
    match read {
        Ok(count) => Some(count),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Err(e) => {
            tracing::debug!("{what}: {e}");
            if e.raw_os_error().is_some() {
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        }
    }
}

/// TUN → encrypt → UDP.
pub fn transmit_loop(shared: &Shared, tun: &SyncDevice) {
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + GRO_BUFFER];
    let mut packets = vec![vec![0u8; MAX_PACKET]; IDEAL_BATCH_SIZE];
    let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
    let mut batch = GsoBatch::new();
    while !shared.stopping() {
        if !wait_readable(Some(tun.as_fd()), &shared.wake_tx, None) {
            continue;
        }
        // Drains what is there, but a stop request ends even an endless stream.
        while !shared.stopping() {
            let read = tun.recv_multiple(&mut original, &mut packets, &mut sizes, 0);
            let Some(count) = batch_count(read, "TUN read") else {
                break;
            };
            let Some(udp) = shared.udp() else { continue };
            let table = lock_read(&shared.table);
            let mut send = |s: Send<'_, Path>| {
                if udp.send(s.destination, s.contents, s.segment) == Sent::SourceGone {
                    table.forget_source(s.destination.local);
                }
            };
            for (packet, &size) in packets.iter().zip(&sizes).take(count) {
                let packet = &packet[..size];
                let Some(peer) = Tunn::dst_address(packet).and_then(|ip| table.route(ip)) else {
                    continue;
                };
                // Without an endpoint (a roamer not heard from yet) there is nowhere to send.
                let Some(path) = peer.path() else {
                    continue;
                };
                let slot = batch.slot((packet.len() + OVERHEAD).max(MIN_OUT));
                let len = match peer.tunn().encapsulate(packet, slot) {
                    TunnResult::WriteToNetwork(out) => out.len(),
                    TunnResult::Err(e) => {
                        tracing::trace!("encapsulate: {e:?}");
                        continue;
                    }
                    _ => continue,
                };
                batch.commit(path, len, udp.max_segments(), &mut send);
            }
            batch.flush(&mut send);
        }
    }
}

/// Decrypted packets waiting for one batched TUN write.
struct TunBatch {
    packets: Vec<Vec<u8>>,
    used: usize,
    gro: GROTable,
}

impl TunBatch {
    fn new() -> Self {
        TunBatch {
            // Room to coalesce segments into the first packet of a flow.
            packets: (0..TUN_BATCH)
                .map(|_| Vec::with_capacity(2 * VIRTIO_NET_HDR_LEN + TUN_GRO_BYTES))
                .collect(),
            used: 0,
            gro: GROTable::default(),
        }
    }

    /// The next free buffer, `len` bytes after the virtio header.
    fn next(&mut self, len: usize) -> &mut Vec<u8> {
        let buf = &mut self.packets[self.used];
        buf.clear();
        buf.resize(VIRTIO_NET_HDR_LEN + len, 0);
        buf
    }

    fn keep(&mut self, tun: &SyncDevice, len: usize) {
        self.packets[self.used].truncate(VIRTIO_NET_HDR_LEN + len);
        self.used += 1;
        if self.used == self.packets.len() {
            self.flush(tun);
        }
    }

    fn flush(&mut self, tun: &SyncDevice) {
        if self.used == 0 {
            return;
        }
        if let Err(e) = tun.send_multiple(
            &mut self.gro,
            &mut self.packets[..self.used],
            VIRTIO_NET_HDR_LEN,
        ) {
            tracing::debug!("TUN write: {e}");
        }
        self.used = 0;
    }
}

/// UDP → decrypt → TUN; handshake messages go on to `handshakes`.
pub fn receive_loop(shared: &Shared, tun: &SyncDevice, handshakes: SyncSender<Queued>) {
    let mut slots = vec![vec![0u8; GRO_BUFFER]; RECV_SLOTS];
    let mut meta = [RecvMeta::default(); RECV_SLOTS];
    let mut to_tun = TunBatch::new();
    let mut scratch = vec![0u8; MAX_PACKET + OVERHEAD + MIN_OUT];
    let mut limiter = SourceLimiter::new(Instant::now());
    while !shared.stopping() {
        let Some(udp) = shared.udp() else {
            wait_readable(None, &shared.wake_rx, Some(Duration::from_secs(1)));
            continue;
        };
        if !wait_readable(Some(udp.fd()), &shared.wake_rx, None) {
            continue;
        }
        while !shared.stopping() {
            let mut slices: Vec<IoSliceMut<'_>> =
                slots.iter_mut().map(|s| IoSliceMut::new(s)).collect();
            let read = udp.recv(&mut slices, &mut meta);
            let Some(count) = batch_count(read, "UDP receive") else {
                break;
            };
            drop(slices);
            let now = Instant::now();
            let table = lock_read(&shared.table);
            for (meta, slot) in meta.iter().zip(&slots).take(count) {
                let from = Path {
                    remote: from_wire(meta.addr),
                    local: meta.dst_ip.filter(|_| shared.sticky_source),
                };
                for datagram in slot[..meta.len].chunks(meta.stride.max(1)) {
                    if is_initiation(datagram) && !limiter.allows(from.remote.ip(), now) {
                        shared.initiations_dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if enqueue_handshake(shared, &handshakes, from, datagram) {
                        continue;
                    }
                    if let Some(len) = receive(
                        shared,
                        &table,
                        &udp,
                        from,
                        datagram,
                        to_tun.next(datagram.len()),
                        &mut scratch,
                    ) {
                        to_tun.keep(tun, len);
                    }
                }
            }
            drop(table);
            to_tun.flush(tun);
        }
    }
}

/// Handshake retries, keepalives, session expiry; the handshake rate limit's window.
pub fn timer_loop(shared: &Shared) {
    let mut out = vec![0u8; MAX_PACKET + OVERHEAD + MIN_OUT];
    let mut limiter_reset = Instant::now();
    while !shared.stopping() {
        wait_readable(None, &shared.wake_timers, Some(TIMER_PERIOD));
        let binds = std::mem::take(&mut *shared.binds.lock().unwrap_or_else(|p| p.into_inner()));
        for (port, reply) in binds {
            let _ = reply.send(UdpPort::bind(port));
        }
        let udp = shared.udp();
        let table = lock_read(&shared.table);
        for peer in table.peers() {
            match peer.tunn().update_timers(&mut out) {
                TunnResult::WriteToNetwork(packet) => {
                    if let (Some(udp), Some(path)) = (&udp, peer.path()) {
                        if udp.send_one(path, packet) == Sent::SourceGone {
                            table.forget_source(path.local);
                        }
                    }
                }
                TunnResult::Err(WireGuardError::ConnectionExpired) | TunnResult::Done => {}
                TunnResult::Err(e) => tracing::debug!(peer = %peer.public_key, "timers: {e:?}"),
                _ => {}
            }
        }
        if limiter_reset.elapsed() >= Duration::from_secs(1) {
            if let Some(identity) = table.identity() {
                identity.rate_limiter.reset_count();
            }
            limiter_reset = Instant::now();
        }
    }
}
