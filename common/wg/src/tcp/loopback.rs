//! A relay's socket toward a WireGuard device on the same host, with the device's own GSO and
//! GRO ([`UdpPort`]): a burst the device sends arrives in one receive and leaves in one TCP
//! write; a burst of frames from TCP reaches the device in one send. One syscall per
//! datagram each way held WireGuard over TCP to 0.40× UDP (docs/benchmarks.md).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::RecvMeta;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::frame::{self, Deframer};
use crate::userspace::gso::{GsoBatch, Send};
use crate::userspace::udp::{Path, UdpPort};

/// The largest GRO train a receive brings.
const TRAIN: usize = 65_535;

pub(super) struct Loopback {
    port: UdpPort<UdpSocket>,
}

/// A relay's buffers, apart from its socket so both directions can share the socket.
#[derive(Default)]
pub(super) struct Buffers {
    /// Allocated at the first receive: a connection the device never answers costs nothing.
    train: Vec<u8>,
    gather: GsoBatch<SocketAddr>,
}

impl Loopback {
    /// Binds `local`; inside a runtime (the socket joins its reactor).
    pub(super) fn bind(local: SocketAddr) -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        Ok(Loopback {
            port: UdpPort::with(UdpSocket::from_std(socket)?, false)?,
        })
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.port.socket().local_addr()
    }

    /// Takes datagrams only from `device` (the gateway's relays: anything else on the host
    /// is not their device).
    pub(super) async fn connect(&self, device: SocketAddr) -> io::Result<()> {
        self.port.socket().connect(device).await
    }

    /// Waits for what the device sends and frames it into `framed` (emptied first), with
    /// whatever else it has sent by now, up to [`super::BATCH_BYTES`]; returns the sender.
    pub(super) async fn recv_framed(
        &self,
        buffers: &mut Buffers,
        framed: &mut Vec<u8>,
    ) -> io::Result<SocketAddr> {
        framed.clear();
        let train = &mut buffers.train;
        let mut meta = [RecvMeta::default()];
        self.port
            .socket()
            .async_io(Interest::READABLE, || {
                // Only once the device has sent something: the future waits in every
                // connection's loop from the start.
                if train.is_empty() {
                    train.resize(TRAIN, 0);
                }
                self.port.recv(&mut [IoSliceMut::new(train)], &mut meta)
            })
            .await?;
        let from = meta[0].addr;
        loop {
            for datagram in train[..meta[0].len].chunks(meta[0].stride.max(1)) {
                // A device never sends more than a frame holds (MTU-sized datagrams).
                let _ = frame::encode(datagram, framed);
            }
            if framed.len() >= super::BATCH_BYTES {
                break;
            }
            // Non-blocking: an empty socket ends the batch (tokio finds out at the next wait).
            let more = self.port.recv(&mut [IoSliceMut::new(train)], &mut meta);
            if more.is_err() {
                break;
            }
        }
        Ok(from)
    }

    /// Sends every whole datagram `deframer` holds to `to`, equal-sized runs in one send
    /// each; returns how many. The first that `accept` refuses ends it with [`Refused`] (what
    /// came before it is sent).
    pub(super) fn send_deframed(
        &self,
        buffers: &mut Buffers,
        deframer: &mut Deframer,
        to: SocketAddr,
        accept: impl Fn(&[u8]) -> bool,
    ) -> Result<usize, Refused> {
        let port = &self.port;
        // A full socket buffer is waited on inside; a datagram lost anyway is WireGuard's to
        // retry.
        let mut send = |s: Send<'_>| {
            let _ = port.send(Path::from(s.destination), s.contents, s.segment);
        };
        let mut count = 0;
        let mut refused = false;
        while let Some(datagram) = deframer.next_datagram() {
            if !accept(datagram) {
                refused = true;
                break;
            }
            let slot = buffers.gather.slot(datagram.len());
            slot.copy_from_slice(datagram);
            buffers
                .gather
                .commit(to, datagram.len(), port.max_segments(), &mut send);
            count += 1;
        }
        buffers.gather.flush(&mut send);
        if refused {
            Err(Refused)
        } else {
            Ok(count)
        }
    }
}

/// A datagram the relay's check refused.
#[derive(Debug)]
pub(super) struct Refused;
