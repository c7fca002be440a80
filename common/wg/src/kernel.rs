//! Kernel WireGuard through defguard_wireguard_rs (generic netlink). Its API is synchronous:
//! our callers are synchronous too (an async caller must use `spawn_blocking`).
//!
//! What we take from it and what we do not (docs/decisions.md):
//! - creating the link, the device identity, peers and reading the device: yes;
//! - its `remove_interface`: no — it also tears down DNS settings and can fail there; the link
//!   is deleted over rtnetlink instead ([`crate::netlink::Links::delete`]);
//! - its userspace mode: never (a boringtun fork with connected sockets, see `userspace`).

use defguard_wireguard_rs::host::Host;
use defguard_wireguard_rs::key::Key;
use defguard_wireguard_rs::net::IpAddrMask;
use defguard_wireguard_rs::peer::Peer;
use defguard_wireguard_rs::{InterfaceConfiguration, Kernel, WGApi, WireguardInterfaceApi};
use ipnet::IpNet;

use super::model::{DeviceStatus, PeerConfig, PeerStatus, SetOp, SetRequest};
use super::DeviceError;
use super::WgDevice;
use crate::netlink::{CreateLinkError, Links};
use roamgw_common::keys::PublicKey;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("this kernel has no WireGuard (creating {name}: {message}); use the userspace device (--wireguard userspace or auto)")]
    Unavailable { name: String, message: String },
    #[error("cannot create the kernel WireGuard interface {name}: {message}")]
    Create { name: String, message: String },
}

pub struct KernelDevice {
    name: String,
    api: WGApi<Kernel>,
    /// Created (or taken over) by us, and deleted when dropped; an attached one is only read.
    owned: bool,
}

fn kernel_error(e: impl std::fmt::Display) -> DeviceError {
    DeviceError::Kernel(e.to_string())
}

impl KernelDevice {
    /// Creates the `wireguard` link `name`; one of that name that exists already is taken
    /// over as it is (the caller decides whether it may be ours).
    pub fn create(name: &str) -> Result<Self, KernelError> {
        let create_error = |message: String| KernelError::Create {
            name: name.to_string(),
            message,
        };
        // Created over rtnetlink, not defguard's create_interface: that one logs and drops the
        // errno, and "no WireGuard in this kernel" must be told apart from other failures.
        let links = Links::connect().map_err(|e| create_error(e.to_string()))?;
        match links.create_wireguard(name) {
            Ok(_) => {}
            Err(CreateLinkError::Unsupported) => {
                return Err(KernelError::Unavailable {
                    name: name.to_string(),
                    message: "no `wireguard` link kind".into(),
                })
            }
            Err(CreateLinkError::Other(e)) => return Err(create_error(e.to_string())),
        }
        let api = WGApi::<Kernel>::new(name).map_err(|e| create_error(e.to_string()))?;
        Ok(KernelDevice {
            name: name.to_string(),
            api,
            owned: true,
        })
    }

    /// An existing kernel interface someone else runs, to read (`status`); left as it is when
    /// dropped.
    pub fn attach(name: &str) -> Option<Self> {
        let api = WGApi::<Kernel>::new(name).ok()?;
        Some(KernelDevice {
            name: name.to_string(),
            api,
            owned: false,
        })
    }
}

impl Drop for KernelDevice {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Ok(links) = Links::connect() {
            let _ = links.delete(&self.name);
        }
    }
}

fn to_key(key: &PublicKey) -> Key {
    Key::new(*key.as_bytes())
}

fn to_peer(peer: &PeerConfig) -> Peer {
    let mut out = Peer::new(to_key(&peer.public_key));
    out.preshared_key = peer
        .preshared_key
        .as_ref()
        .map(|psk| Key::new(*psk.expose_bytes()));
    out.endpoint = peer.endpoint;
    out.persistent_keepalive_interval = Some(peer.persistent_keepalive);
    out.allowed_ips = peer
        .allowed_ips
        .iter()
        .map(|net| IpAddrMask::new(net.addr(), net.prefix_len()))
        .collect();
    out
}

fn from_peer(peer: &Peer) -> PeerStatus {
    PeerStatus {
        public_key: PublicKey::from_bytes(peer.public_key.as_array()),
        has_preshared_key: peer
            .preshared_key
            .as_ref()
            .is_some_and(|k| k.as_array() != [0; 32]),
        endpoint: peer.endpoint,
        allowed_ips: peer
            .allowed_ips
            .iter()
            .filter_map(|m| IpNet::new(m.address, m.cidr).ok())
            .collect(),
        persistent_keepalive: peer.persistent_keepalive_interval.unwrap_or(0),
        last_handshake: peer
            .last_handshake
            .filter(|t| *t > std::time::SystemTime::UNIX_EPOCH),
        rx_bytes: peer.rx_bytes,
        tx_bytes: peer.tx_bytes,
    }
}

fn from_host(host: &Host) -> DeviceStatus {
    let mut peers: Vec<PeerStatus> = host.peers.values().map(from_peer).collect();
    peers.sort_by(|a, b| a.public_key.as_bytes().cmp(b.public_key.as_bytes()));
    DeviceStatus {
        listen_port: host.listen_port,
        fwmark: host.fwmark.unwrap_or(0),
        peers,
        defence: None,
    }
}

impl WgDevice for KernelDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn status(&self) -> Result<DeviceStatus, DeviceError> {
        self.api
            .read_interface_data()
            .map(|host| from_host(&host))
            .map_err(kernel_error)
    }

    fn set(&self, request: &SetRequest) -> Result<(), DeviceError> {
        let mut key = None;
        let mut port = None;
        for op in request.ops() {
            match op {
                SetOp::PrivateKey(k) => key = Some(k),
                SetOp::ListenPort(p) => port = Some(*p),
                SetOp::Peer(peer) => self
                    .api
                    .configure_peer(&to_peer(peer))
                    .map_err(kernel_error)?,
                SetOp::RemovePeer(k) => self.api.remove_peer(&to_key(k)).map_err(kernel_error)?,
            }
        }
        match (key, port) {
            (None, None) => Ok(()),
            (Some(key), Some(port)) => {
                // Only at bring-up: it flushes the link's addresses, which come after.
                let config = InterfaceConfiguration {
                    name: self.name.clone(),
                    prvkey: key.expose_base64().to_string(),
                    addresses: Vec::new(),
                    port,
                    peers: Vec::new(),
                    mtu: None,
                    fwmark: None,
                };
                self.api.configure_interface(&config).map_err(kernel_error)
            }
            _ => Err(DeviceError::Kernel(
                "the private key and the listen port are set together".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roamgw_common::keys::{PresharedKey, PrivateKey};

    #[test]
    fn peers_convert_both_ways() {
        let public_key = PrivateKey::generate().expect("key").public_key();
        let config = PeerConfig {
            public_key,
            preshared_key: Some(PresharedKey::generate().expect("psk")),
            endpoint: Some("203.0.113.10:51820".parse().expect("endpoint")),
            allowed_ips: vec!["192.168.32.2/32".parse().expect("net")],
            persistent_keepalive: 10,
        };
        let peer = to_peer(&config);
        let status = from_peer(&peer);
        assert_eq!(status.public_key, public_key);
        assert!(status.has_preshared_key);
        assert_eq!(status.endpoint, config.endpoint);
        assert_eq!(status.allowed_ips, config.allowed_ips);
        assert_eq!(status.persistent_keepalive, 10);
        assert_eq!(status.last_handshake, None);
    }
}
