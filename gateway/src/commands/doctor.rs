//! `roamgw doctor`: reads the system into facts, and prints the findings.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::doctor::{evaluate, Facts};

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
}

fn gather(store: &Store, state: &GatewayState) -> Facts {
    let g = &state.gateway;
    let routes = detect::system_routes();
    let default_interface = routes
        .iter()
        .find(|r| r.destination.prefix_len() == 0)
        .map(|r| r.interface.clone());
    let sysctl = |name: &str| read_trimmed(&format!("/proc/sys/net/ipv4/{name}"));
    let rp_filter = default_interface.as_ref().and_then(|interface| {
        // The kernel applies the larger of `all` and the interface's own value.
        let own = sysctl(&format!("conf/{interface}/rp_filter"))?
            .parse::<u8>()
            .ok()?;
        let all = sysctl("conf/all/rp_filter")
            .and_then(|v| v.parse::<u8>().ok())
            .unwrap_or(0);
        Some((interface.clone(), own.max(all)))
    });
    let path_mtu = default_interface.as_ref().and_then(|interface| {
        let mtu = read_trimmed(&format!("/sys/class/net/{interface}/mtu"))?;
        Some((interface.clone(), mtu.parse().ok()?))
    });
    let mut secrets = vec![store.gateway_key_path()];
    for roamer in &state.roamers {
        secrets.push(store.roamer_key_path(&roamer.name));
        secrets.push(store.roamer_psk_path(&roamer.name));
    }
    let exposed_secrets = secrets
        .iter()
        .filter_map(|path| {
            let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then(|| (path.display().to_string(), mode))
        })
        .collect();
    let others = dataplane::nftables::others::read();
    let (peers, _) = status::peer_views(store, state);
    let gateway_key_problem = store
        .gateway_private_key(state)
        .err()
        .map(|e| e.to_string());
    Facts {
        gateway_key_problem,
        ip_forward: sysctl("ip_forward").map(|v| v == "1"),
        rp_filter,
        listen_port: g.listen_port,
        anchor: g.anchor_ip.to_string(),
        anchor_gateway: g.anchor_gateway,
        handshakes: peers
            .iter()
            .map(|p| (p.name.clone(), p.last_handshake_secs))
            .collect(),
        interface_up: dataplane::interface_exists(g.interface.as_str()),
        tunnel_mtu: g.mtu,
        path_mtu,
        subnet: g.subnet,
        collisions: detect::colliding_routes(&routes, g.subnet, g.interface.as_str())
            .into_iter()
            .map(|r| format!("{} on {}", r.destination, r.interface))
            .collect(),
        exposed_secrets,
        kernel_wireguard: roamgw_wg::kernel_available(),
        dropping_input_chains: others.dropping_input_chains,
        foreign_dnat: others.dnat_chains,
        firewalld_running: dataplane::firewalld::Firewalld::is_running(),
        dialed_floating_ip: g.floating_ip.filter(|ip| g.endpoint.host == ip.to_string()),
        roamer_sources: peers
            .iter()
            .filter(|p| roamgw_common::doctor::session_alive(p.last_handshake_secs))
            .filter_map(|p| p.endpoint.as_deref()?.parse::<std::net::SocketAddr>().ok())
            .map(|endpoint| endpoint.ip())
            .collect(),
    }
}

/// Exit 1 when a finding fails.
pub fn doctor(store: &Store, json: bool) -> Result<crate::Outcome> {
    let state = store.load()?;
    let (stdout, exit_code) =
        roamgw_common::doctor::report(&evaluate(&gather(store, &state)), json);
    Ok(crate::Outcome { stdout, exit_code })
}
