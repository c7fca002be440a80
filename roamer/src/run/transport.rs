//! How the tunnel reaches the gateway, for [`Session`]: straight over UDP, or through the
//! relay to the gateway's WireGuard over TCP (crate::health decides which), and the check
//! beside the tunnel of whether UDP gets through again.

use std::net::SocketAddr;
use std::time::Duration;

use roamgw_wg::tcp::client::TcpClient;
use roamgw_wg::{reset_peer, WgDevice};
use tracing::{debug, info, warn};

use super::session::Session;
use super::{in_background, peer_config, Event};
use crate::health::Transport;

/// A check's answer (UDP, or the TCP port for a portal) comes within this or not at all (as a
/// probe's does).
const CHECK_WAIT: Duration = Duration::from_secs(2);

impl Session<'_> {
    /// Asks on a thread of its own whether the gateway answers over UDP again.
    pub(super) fn check_udp(&self) {
        let (key, gateway) = (self.key.clone(), &self.config.gateway);
        let (public, preshared) = (gateway.public_key, gateway.preshared_key.clone());
        let endpoint = self.machine.endpoint();
        in_background("udp-check", self.events.clone(), move || {
            let answered = roamgw_wg::tcp::udp_answers(
                &key,
                &public,
                preshared.as_ref(),
                endpoint,
                CHECK_WAIT,
            )
            .unwrap_or_else(|e| {
                debug!("UDP check: {e}");
                false
            });
            Event::UdpChecked(answered)
        });
    }

    /// A fresh session with the gateway at `address` over the machine's transport (through
    /// the TCP relay, started or moved as needed), then a probe.
    pub(super) fn connect(&mut self, device: &dyn WgDevice, address: SocketAddr) {
        self.monitor.set_gateway_address(address);
        let endpoint = match self.machine.transport() {
            Transport::Udp => {
                self.tcp = None;
                address
            }
            Transport::Tcp => match self.tcp_relay(address) {
                Ok(local) => local,
                Err(e) => {
                    warn!("cannot start the TCP relay: {e}");
                    address
                }
            },
        };
        if let Err(e) = reset_peer(device, &peer_config(self.config, endpoint)) {
            warn!("cannot reconnect to {address}: {e}");
        }
        self.prober.probe();
    }

    /// The relay's local address, for the gateway at `address`: its TCP fallback is on the
    /// same host when the config names the same host (the usual case), else looked up.
    fn tcp_relay(&mut self, address: SocketAddr) -> std::io::Result<SocketAddr> {
        let target = self.tcp_target(address)?;
        if let Some(relay) = self.tcp.as_ref().filter(|r| r.gateway == target) {
            return Ok(relay.local);
        }
        let relay = TcpClient::start(target)?;
        info!(gateway = %target, "WireGuard over TCP");
        let local = relay.local;
        self.tcp = Some(relay);
        Ok(local)
    }

    /// The gateway's TCP fallback, for the gateway at `address`.
    fn tcp_target(&self, address: SocketAddr) -> std::io::Result<SocketAddr> {
        let Some(fallback) = &self.config.gateway.tcp_fallback else {
            return Err(std::io::Error::other("the config names no tcp_fallback"));
        };
        // The TCP fallback listens on IPv4 (the anchor), whichever family UDP takes.
        if fallback.host == self.config.gateway.endpoint.host && address.is_ipv4() {
            Ok(SocketAddr::new(address.ip(), fallback.port))
        } else {
            super::resolve(fallback).map_err(std::io::Error::other)
        }
    }

    /// Asks on a thread of its own whether the gateway's TCP port reaches the gateway or a
    /// captive portal.
    pub(super) fn check_portal(&self) {
        let target = match self.tcp_target(self.machine.endpoint()) {
            Ok(target) => target,
            Err(e) => return debug!("no portal check: {e}"),
        };
        in_background("portal-check", self.events.clone(), move || {
            Event::PortalChecked(roamgw_wg::tcp::portal::check(target, CHECK_WAIT))
        });
    }
}
