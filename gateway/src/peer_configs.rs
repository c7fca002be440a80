//! Configs for the other side: the roamer's TOML, the roamer as stock wg-quick, and the gateway
//! itself as stock wg-quick (the manual setup's equivalent).

use std::path::PathBuf;

use ipnet::Ipv4Net;
use roamgw_common::names::Endpoint;
use roamgw_common::replies;
use roamgw_common::state::{
    GatewayState, RoamerConfig, RoamerEntry, RoamerGateway, StateError, DEFAULT_KEEPALIVE_SECS,
    ROAMER_CONFIG_VERSION,
};
use roamgw_common::wgquick::{Interface, Peer, WgQuickConfig};
use roamgw_common::{PresharedKey, PrivateKey};

/// Where the laptop keeps its own key when the droplet never saw it (`add-roamer --public-key`).
pub const ROAMER_KEY_FILE: &str = "/etc/roamgw/roamer.key";

fn roamer_net(state: &GatewayState, roamer: &RoamerEntry) -> Ipv4Net {
    roamgw_common::state::address_in(state.gateway.subnet, roamer.address)
}

pub fn roamer_config(
    state: &GatewayState,
    roamer: &RoamerEntry,
    private_key: Option<PrivateKey>,
    psk: Option<PresharedKey>,
) -> RoamerConfig {
    let private_key_file = private_key
        .is_none()
        .then(|| PathBuf::from(ROAMER_KEY_FILE));
    RoamerConfig {
        version: ROAMER_CONFIG_VERSION,
        name: roamer.name.clone(),
        interface: state.gateway.interface.clone(),
        address: roamer_net(state, roamer),
        address6: state.gateway.tunnel6_net(roamer.address),
        private_key,
        private_key_file,
        mtu: state.gateway.mtu,
        gateway: RoamerGateway {
            endpoint: state.gateway.endpoint.clone(),
            endpoint6: state.gateway.endpoint6.clone(),
            address: Some(state.gateway.address),
            public_key: state.gateway.public_key,
            preshared_key: psk,
            allowed_ips: std::iter::once(state.gateway.subnet)
                .chain(roamer.egress.iter().copied())
                .collect(),
            persistent_keepalive: DEFAULT_KEEPALIVE_SECS,
            tcp_fallback: state.gateway.tcp_port.map(|port| Endpoint {
                host: state.gateway.endpoint.host.clone(),
                port,
            }),
        },
    }
}

pub fn roamer_toml(config: &RoamerConfig) -> Result<String, StateError> {
    let mut out = format!(
        "# roamer config for '{}', made by `roamgw show-config`. Holds secrets: keep it 0600.\n\
         # Use: roamer run --config /etc/roamgw/roamer.toml\n",
        config.name
    );
    if config.private_key.is_none() {
        out.push_str(&format!(
            "# The private key stays on the laptop: put `wg genkey` output matching the public key\n\
             # given to `roamgw add-roamer --public-key` in {ROAMER_KEY_FILE} (0600).\n"
        ));
    }
    out.push('\n');
    out.push_str(&config.to_toml()?);
    Ok(out)
}

/// Who reads a wg-quick config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgQuickFor {
    /// Stock wg-quick on Linux: replies are routed by their source, so forwards may keep the
    /// client's address.
    Linux,
    /// The WireGuard mobile apps (the QR code): no hooks, no routing tables. Only the tunnel
    /// subnet goes through the tunnel, so their forwards need `--client-ip masquerade`.
    App,
}

/// The roamer as stock wg-quick. For Linux it accepts any source from the gateway (AllowedIPs
/// 0.0.0.0/0, for forwards that keep the client's address) but routes nothing by it
/// (`Table = off`): the address's own route carries the tunnel subnet, and the hooks route
/// replies by their source (roamgw_common::replies), as `roamer run` does.
pub fn roamer_wg_quick(config: &RoamerConfig, reader: WgQuickFor) -> String {
    let mut interface = Interface {
        private_key: config.private_key.clone(),
        address: config.tunnel_addresses(),
        mtu: Some(config.mtu),
        ..Interface::default()
    };
    let allowed_ips = match reader {
        WgQuickFor::Linux => {
            let (post_up, pre_down) = replies::wg_quick_hooks(
                &config.interface,
                config.reply_sources(),
                &config.egress(),
            );
            interface.table = Some("off".into());
            interface.post_up = post_up;
            interface.pre_down = pre_down;
            config.any_source()
        }
        WgQuickFor::App => config.allowed_ips(),
    };
    let mut header = format!(
        "# wg-quick config for roamer '{}', made by `roamgw show-config`. Holds secrets: keep it 0600.\n\
         # Save as /etc/wireguard/{}.conf and run `wg-quick up {}`.\n\
         # Routed through the tunnel: the tunnel subnet, and replies to forwarded connections\n\
         # (by their source address, rule priority {} / table {}); nothing else.\n",
        config.name,
        config.interface,
        config.interface,
        replies::RULE_PRIORITY,
        replies::table(&config.interface)
    );
    if config.private_key.is_none() {
        let path = format!("/etc/wireguard/{}.key", config.name);
        header.push_str(&format!(
            "# The private key stays on the laptop, in {path}.\n"
        ));
        interface
            .post_up
            .push(format!("wg set %i private-key {path}"));
    }
    let file = WgQuickConfig {
        interface,
        peers: vec![Peer {
            public_key: config.gateway.public_key,
            preshared_key: config.gateway.preshared_key.clone(),
            allowed_ips,
            endpoint: Some(config.gateway.endpoint.clone()),
            persistent_keepalive: (config.gateway.persistent_keepalive > 0)
                .then_some(config.gateway.persistent_keepalive),
        }],
    };
    header + &file.render()
}

/// The gateway as stock wg-quick: the tunnel only. Forwarding rules are roamgw's job
/// (`roamgw init --wireguard external` adopts such an interface).
pub fn gateway_wg_quick(
    state: &GatewayState,
    private_key: PrivateKey,
    psks: Vec<Option<PresharedKey>>,
) -> String {
    let g = &state.gateway;
    let file = WgQuickConfig {
        interface: Interface {
            private_key: Some(private_key),
            listen_port: Some(g.listen_port),
            address: crate::device::tunnel_addresses(state),
            mtu: Some(g.mtu),
            ..Interface::default()
        },
        peers: state
            .roamers
            .iter()
            .zip(psks)
            .map(|(roamer, psk)| Peer {
                public_key: roamer.public_key,
                preshared_key: psk,
                allowed_ips: crate::device::roamer_allowed_ips(state, roamer),
                // The gateway never pins a roamer's endpoint: WireGuard learns it from its packets.
                endpoint: None,
                persistent_keepalive: None,
            })
            .collect(),
    };
    format!(
        "# wg-quick config for the roamgw gateway, made by `roamgw show-config --gateway`. Holds secrets: keep it 0600.\n\
         # Save as /etc/wireguard/{0}.conf, `wg-quick up {0}`, and let roamgw manage the rules:\n\
         #   roamgw init ... --wireguard external --interface {0}\n{1}",
        g.interface,
        file.render()
    )
}
