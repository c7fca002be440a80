//! One datagram from the network, and the queue that keeps handshakes apart from data.
//!
//! Handshake messages are checked, answered and turned into sessions on a thread of their own,
//! fed through a bounded queue, as the kernel's WireGuard does: a flood of initiations (each a
//! mac1 check and a cookie reply, or a Diffie-Hellman) then waits in, and overflows, its own
//! queue instead of standing between an established session's data and its decryption.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, TunnResult};
use tun_rs::VIRTIO_NET_HDR_LEN;

use super::datapath::{lock_read, Shared, MAX_PACKET, MIN_OUT, OVERHEAD};
use super::table::Table;
use super::udp::{Path, UdpPort};
use roamgw_common::keys::PublicKey;

/// The size of a handshake initiation, the largest handshake message.
const HANDSHAKE_INIT_LEN: usize = 148;
const HANDSHAKE_RESPONSE_LEN: usize = 92;
/// The size of a WireGuard cookie reply message.
const COOKIE_REPLY_LEN: usize = 64;
/// Handshake messages waiting for their thread. A cookie reply costs microseconds and a real
/// handshake ~0.1 ms, so a full queue is a few tens of milliseconds of work: a legitimate
/// initiation behind it is still answered well inside its 5 s retry.
pub const HANDSHAKE_QUEUE: usize = 1024;
/// Queued messages handled under one hold of the peer table, so a change to the
/// configuration waits for at most this many.
const HANDSHAKES_PER_LOCK: usize = 64;

/// A handshake message copied off the receive buffers.
pub struct Queued {
    from: Path,
    len: usize,
    bytes: [u8; HANDSHAKE_INIT_LEN],
}

pub fn handshake_queue() -> (SyncSender<Queued>, Receiver<Queued>) {
    mpsc::sync_channel(HANDSHAKE_QUEUE)
}

/// A handshake initiation by its type and size; whether it is one really is checked later.
pub fn is_initiation(datagram: &[u8]) -> bool {
    datagram.first() == Some(&1) && datagram.len() == HANDSHAKE_INIT_LEN
}

/// A handshake message (initiation, response, cookie reply) by its type and size.
fn is_handshake(datagram: &[u8]) -> bool {
    matches!(
        (datagram.first(), datagram.len()),
        (Some(1), HANDSHAKE_INIT_LEN)
            | (Some(2), HANDSHAKE_RESPONSE_LEN)
            | (Some(3), COOKIE_REPLY_LEN)
    )
}

/// Hands a handshake message to the handshake thread; `false` when `datagram` is not one and
/// belongs to the data path. A full queue drops the message (its sender retries).
pub fn enqueue_handshake(
    shared: &Shared,
    queue: &SyncSender<Queued>,
    from: Path,
    datagram: &[u8],
) -> bool {
    if !is_handshake(datagram) {
        return false;
    }
    let mut queued = Queued {
        from,
        len: datagram.len(),
        bytes: [0; HANDSHAKE_INIT_LEN],
    };
    queued.bytes[..datagram.len()].copy_from_slice(datagram);
    if let Err(TrySendError::Full(dropped)) = queue.try_send(queued) {
        if is_initiation(&dropped.bytes[..dropped.len]) {
            shared.initiations_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    true
}

/// The handshake thread: ends when the receive thread, which holds the queue's sender, does.
pub fn handshake_loop(shared: &Shared, queue: Receiver<Queued>) {
    let mut out = vec![0u8; VIRTIO_NET_HDR_LEN + MAX_PACKET];
    let mut scratch = vec![0u8; MAX_PACKET + OVERHEAD + MIN_OUT];
    while let Ok(first) = queue.recv() {
        let Some(udp) = shared.udp() else { continue };
        let table = lock_read(&shared.table);
        let more = queue.try_iter().take(HANDSHAKES_PER_LOCK - 1);
        for message in std::iter::once(first).chain(more) {
            let datagram = &message.bytes[..message.len];
            receive(
                shared,
                &table,
                &udp,
                message.from,
                datagram,
                &mut out,
                &mut scratch,
            );
        }
    }
}

/// One datagram that came along `from`: returns the length of the packet decrypted into `out`
/// (after the virtio header) when there is one for the TUN.
#[allow(clippy::too_many_arguments)]
pub(super) fn receive(
    shared: &Shared,
    table: &Table,
    udp: &UdpPort,
    from: Path,
    datagram: &[u8],
    out: &mut [u8],
    scratch: &mut [u8],
) -> Option<usize> {
    let identity = table.identity()?;
    let packet =
        match identity
            .rate_limiter
            .verify_packet(Some(from.remote.ip()), datagram, scratch)
        {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                shared.cookie_replies.fetch_add(1, Ordering::Relaxed);
                udp.send_one(from, cookie);
                return None;
            }
            Err(_) => return None,
        };
    let (peer, kind) = match packet {
        Packet::HandshakeInit(init) => {
            let half = parse_handshake_anon(&identity.secret, &identity.public, &init).ok()?;
            let peer = table.peer(&PublicKey::from_bytes(half.peer_static_public))?;
            (peer, Kind::Initiation)
        }
        Packet::HandshakeResponse(p) => (
            table.by_receiver_index(p.receiver_idx)?,
            Kind::Response(p.receiver_idx),
        ),
        Packet::PacketCookieReply(p) => {
            (table.by_receiver_index(p.receiver_idx)?, Kind::CookieReply)
        }
        Packet::PacketData(p) => (
            table.by_receiver_index(p.receiver_idx)?,
            Kind::Data(p.receiver_idx),
        ),
    };
    let mut tunn = peer.tunn();
    let out = &mut out[VIRTIO_NET_HDR_LEN..];
    let result = tunn.decapsulate(Some(from.remote.ip()), datagram, out);
    if !matches!(result, TunnResult::Err(_)) {
        match kind {
            Kind::Response(ours) => peer.handshake_pending(ours),
            Kind::Data(session) => peer.sent_on_session(session),
            Kind::Initiation | Kind::CookieReply => {}
        }
    }
    match result {
        // The peer is under load and sent a cookie: initiate again with it now (it proves our
        // address) instead of after the 5 s retry, so a handshake during a flood costs a round
        // trip more, not 5 s. One per cookie, and cookies answer only our initiations.
        TunnResult::Done if kind == Kind::CookieReply => {
            if let TunnResult::WriteToNetwork(initiation) =
                tunn.format_handshake_initiation(scratch, true)
            {
                udp.send_one(from, initiation);
            }
            None
        }
        TunnResult::Done => {
            shared.learn_endpoint(peer, from);
            None
        }
        TunnResult::Err(e) => {
            tracing::trace!(from = %from.remote, "decapsulate: {e:?}");
            None
        }
        TunnResult::WriteToNetwork(reply) => {
            // A cookie reply answers a sender we could not authenticate (handshakes over the
            // rate limit): it must not move the peer's endpoint.
            if reply.len() != COOKIE_REPLY_LEN {
                shared.learn_endpoint(peer, from);
                // Our answer's sender index (bytes 4..8) is the session the peer will use.
                let ours = reply.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok());
                if let (Kind::Initiation, Some(ours)) = (kind, ours) {
                    peer.handshake_pending(u32::from_le_bytes(ours));
                }
            }
            udp.send_one(from, reply);
            // A completed handshake releases the packets queued while it ran.
            while let TunnResult::WriteToNetwork(queued) = tunn.decapsulate(None, &[], scratch) {
                udp.send_one(from, queued);
            }
            None
        }
        TunnResult::WriteToTunnelV4(packet, source) => {
            shared.learn_endpoint(peer, from);
            // Cryptokey routing: a peer may only send from its allowed IPs.
            peer.allows(source.into()).then_some(packet.len())
        }
        TunnResult::WriteToTunnelV6(packet, source) => {
            shared.learn_endpoint(peer, from);
            peer.allows(source.into()).then_some(packet.len())
        }
    }
}

/// What an incoming datagram is to the handshake's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Initiation,
    /// With our session index it answers.
    Response(u32),
    /// With the session index it was sent on.
    Data(u32),
    CookieReply,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, len: usize) -> Vec<u8> {
        let mut datagram = vec![0u8; len];
        datagram[0] = kind;
        datagram
    }

    #[test]
    fn handshake_messages_are_told_from_data_by_type_and_size() {
        let cases = [
            (1, 148, true),
            (2, 92, true),
            (3, 64, true),
            (1, 147, false),
            (2, 148, false),
            (4, 148, false),
            (4, 32, false),
            (0, 64, false),
        ];
        for (kind, len, handshake) in cases {
            assert_eq!(is_handshake(&message(kind, len)), handshake, "{kind}/{len}");
        }
        assert!(!is_handshake(&[]));
    }

    #[test]
    fn a_full_queue_drops_initiations_and_counts_them() {
        let shared = Shared::new(crate::ReplySource::Route).expect("eventfd");
        let (queue, waiting) = handshake_queue();
        let from = Path {
            remote: "192.0.2.7:51820".parse().expect("address"),
            local: None,
        };
        let initiation = message(1, HANDSHAKE_INIT_LEN);
        for _ in 0..HANDSHAKE_QUEUE + 5 {
            assert!(enqueue_handshake(&shared, &queue, from, &initiation));
        }
        // Responses over the limit are dropped too, but they are not initiations.
        assert!(enqueue_handshake(&shared, &queue, from, &message(2, 92)));
        assert!(!enqueue_handshake(&shared, &queue, from, &message(4, 64)));
        assert_eq!(shared.initiations_dropped.load(Ordering::Relaxed), 5);
        let first = waiting.try_recv().expect("queued");
        assert_eq!(&first.bytes[..first.len], &initiation[..]);
        assert_eq!(waiting.try_iter().count(), HANDSHAKE_QUEUE - 1);
    }
}
