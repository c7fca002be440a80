//! The in-process model of a WireGuard device, the same for every device we drive (kernel,
//! ours, wireguard-go through its socket): what it reports ([`DeviceStatus`]) and what a
//! `set` transaction changes ([`SetRequest`]). The UAPI text form of both is in `uapi`.

use std::net::SocketAddr;
use std::time::SystemTime;

use ipnet::IpNet;

use roamgw_common::keys::{PresharedKey, PrivateKey, PublicKey};

/// One peer as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub public_key: PublicKey,
    pub has_preshared_key: bool,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: u16,
    /// `None` when no handshake has completed.
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// What `get=1` returns (the private key is left out on purpose: we never need it back).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStatus {
    pub listen_port: u16,
    pub fwmark: u32,
    pub peers: Vec<PeerStatus>,
    /// What the device did about handshake floods since it started: only our userspace
    /// device says (not in the UAPI text, which has no keys for it).
    pub defence: Option<HandshakeDefence>,
}

/// Counts of the userspace device's answers to handshake floods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeDefence {
    /// Initiations dropped unread: their source was over its share (crate::userspace limiter).
    pub initiations_dropped: u64,
    /// Cookie replies sent: initiations over the device's global limit without a valid mac2.
    pub cookie_replies: u64,
}

impl DeviceStatus {
    pub fn peer(&self, key: &PublicKey) -> Option<&PeerStatus> {
        self.peers.iter().find(|p| &p.public_key == key)
    }
}

/// A peer to configure. The gateway sets `endpoint` only on a fresh device, from what it
/// remembered: WireGuard learns it from the roamer's packets, and pinning one would fight
/// roaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: PublicKey,
    pub preshared_key: Option<PresharedKey>,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: u16,
}

/// One change within a `set` transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOp {
    PrivateKey(PrivateKey),
    ListenPort(u16),
    /// Adds or updates a peer; its allowed IPs replace the old ones.
    Peer(PeerConfig),
    RemovePeer(PublicKey),
}

/// One `set` transaction: rendered as a UAPI `set=1` message for userspace devices, applied
/// op by op over netlink for the kernel.
#[derive(Debug, Default)]
pub struct SetRequest {
    ops: Vec<SetOp>,
}

impl SetRequest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn private_key(&mut self, key: &PrivateKey) -> &mut Self {
        self.ops.push(SetOp::PrivateKey(key.clone()));
        self
    }

    pub fn listen_port(&mut self, port: u16) -> &mut Self {
        self.ops.push(SetOp::ListenPort(port));
        self
    }

    pub fn peer(&mut self, peer: &PeerConfig) -> &mut Self {
        self.ops.push(SetOp::Peer(peer.clone()));
        self
    }

    pub fn remove_peer(&mut self, key: &PublicKey) -> &mut Self {
        self.ops.push(SetOp::RemovePeer(*key));
        self
    }

    pub fn ops(&self) -> &[SetOp] {
        &self.ops
    }
}

/// Why a device could not report its status or take a change, whichever kind it is: one
/// reached over its UAPI socket (I/O, errno, a line we do not understand), the kernel's, or ours.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("talking to the WireGuard device: {0}")]
    Io(#[from] std::io::Error),
    #[error("the WireGuard device answered errno={0}")]
    Errno(i32),
    #[error("the WireGuard device sent a line this roamgw does not understand: {0:?}")]
    Malformed(String),
    /// The kernel device, over netlink.
    #[error("kernel WireGuard: {0}")]
    Kernel(String),
    /// Our userspace device refused a change.
    #[error("userspace WireGuard: {0}")]
    Userspace(String),
}
