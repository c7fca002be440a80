//! `roamer run`: the laptop's tunnel, up until SIGTERM/SIGINT.
//!
//! This first version brings the tunnel up (embedded userspace WireGuard, address, MTU, the
//! tunnel subnet's route) and pokes it at once, so the first handshake does not wait for the
//! first keepalive (measured with boringtun: 10–14 ms to a working forward with a poke, 10.2 s
//! without). Network-change detection, DNS re-resolution and status come next.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;

use ipnet::IpNet;
use roamgw_common::netlink::Links;
use roamgw_common::wg::uapi::PeerConfig;
use roamgw_common::wg::userspace::UserspaceDevice;
use roamgw_common::wg::{set_identity, sync_peers};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::{info, warn};

use crate::check::{self, CheckError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] CheckError),
    #[error(
        "cannot resolve the gateway {endpoint}: {message} (check the name, or the laptop's DNS)"
    )]
    Resolve { endpoint: String, message: String },
    #[error("allowed_ips {0} lies outside the tunnel subnet: only the tunnel subnet is routed by this roamer version")]
    Routes(String),
    #[error(transparent)]
    Device(#[from] roamgw_common::wg::userspace::UserspaceError),
    #[error(transparent)]
    Uapi(#[from] roamgw_common::wg::uapi::UapiError),
    #[error(transparent)]
    Netlink(#[from] roamgw_common::netlink::NetlinkError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

fn resolve(endpoint: &roamgw_common::Endpoint) -> Result<SocketAddr, RunError> {
    let resolve_error = |message: String| RunError::Resolve {
        endpoint: endpoint.to_string(),
        message,
    };
    (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(|e| resolve_error(e.to_string()))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| resolve_error("no IPv4 address".into()))
}

/// One datagram into the tunnel: boringtun starts a handshake when it has something to send,
/// not when a peer with keepalive is added.
fn poke(gateway_tunnel_address: std::net::Ipv4Addr) {
    let sent = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.send_to(b"roamer", (gateway_tunnel_address, 9)));
    if let Err(e) = sent {
        warn!("could not poke the tunnel: {e}");
    }
}

pub fn run(config_path: &Path) -> Result<(), RunError> {
    let routes = roamgw_common::routes::system_routes();
    let loaded = check::load(config_path, &routes)?;
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    let config = &loaded.config;
    let subnet = config.address.trunc();
    if let Some(outside) = config
        .gateway
        .allowed_ips
        .iter()
        .find(|net| !subnet.contains(*net))
    {
        return Err(RunError::Routes(outside.to_string()));
    }
    let endpoint = resolve(&config.gateway.endpoint)?;
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(RunError::Signals)?;

    let device = UserspaceDevice::create(config.interface.as_str())?;
    set_identity(&device, &loaded.key, 0)?;
    sync_peers(
        &device,
        &[PeerConfig {
            public_key: config.gateway.public_key,
            preshared_key: config.gateway.preshared_key.clone(),
            endpoint: Some(endpoint),
            allowed_ips: config
                .gateway
                .allowed_ips
                .iter()
                .copied()
                .map(IpNet::V4)
                .collect(),
            persistent_keepalive: config.gateway.persistent_keepalive,
        }],
    )?;
    // The address's connected route is the tunnel subnet: the only route the roamer needs, so
    // updates and browsing keep going straight out.
    Links::connect()?.configure(config.interface.as_str(), config.mtu, config.address)?;
    poke(subnet.hosts().next().unwrap_or(subnet.network()));
    info!(
        interface = %config.interface,
        address = %config.address,
        gateway = %config.gateway.endpoint,
        resolved = %endpoint,
        keepalive = config.gateway.persistent_keepalive,
        "tunnel up"
    );
    if let Some(signal) = signals.forever().next() {
        info!(signal, "stopping");
    }
    drop(device);
    Ok(())
}
