//! `roamgw import`: the manual setup becomes roamgw's, without touching the laptops.

use std::net::Ipv4Addr;

use super::setup::{addresses, refuse_to_replace, AddressFlags};
use super::*;
use crate::cli::ImportArgs;
use crate::import::{plan, ImportPlan};
use roamgw_common::state::{Backend, ClientIp, RoamerEntry, DEFAULT_MTU};
use roamgw_common::wgquick::WgQuickConfig;
use roamgw_common::InterfaceName;

pub fn import(store: &Store, args: ImportArgs) -> Result<String> {
    refuse_to_replace(store, args.force)?;
    let text = roamgw_common::fsutil::read_to_string(&args.wg_quick)
        .map_err(|e| refused(e.to_string()))?;
    let wg: WgQuickConfig = text
        .parse()
        .map_err(|e| refused(format!("{}: {e}", args.wg_quick.display())))?;
    let interface: InterfaceName = args
        .wg_quick
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .parse()
        .map_err(|e| {
            refused(format!(
                "{}: the file name is the interface: {e}",
                args.wg_quick.display()
            ))
        })?;
    let found = addresses(&AddressFlags {
        public_ip: args.public_ip,
        anchor_ip: args.anchor_ip,
        floating_ip: args.floating_ip,
        anchor_gateway: None,
    })?;
    let fw = crate::dataplane::firewalld::Firewalld::if_running()
        .map_err(|e| refused(e.to_string()))?
        .ok_or_else(|| refused("firewalld is not running: roamgw import reads the manual setup's rich rules from it"))?;
    let zone = match &args.zone {
        Some(zone) => zone.clone(),
        None => fw.default_zone().map_err(|e| refused(e.to_string()))?,
    };
    let rich: Vec<String> = fw
        .rich_rules(&zone)
        .map_err(|e| refused(e.to_string()))?
        .into_iter()
        .collect();
    let plan = plan(&wg, &rich, found.anchor_ip, args.name.as_ref())
        .map_err(|e| refused(e.to_string()))?;
    let state = state_of(
        &plan,
        interface,
        found.public_ip,
        found.anchor_ip,
        found.floating_ip,
    )?;
    let summary = describe(&plan, &zone);
    if args.dry_run {
        return Ok(format!("would import (nothing changed):\n{summary}"));
    }
    store.create_dirs()?;
    let _lock = store.lock()?;
    store.write_private_key(&store.gateway_key_path(), &plan.private_key)?;
    for roamer in &plan.roamers {
        let psk = roamer.preshared_key.as_ref().ok_or_else(|| {
            refused(format!(
                "peer {} has no PresharedKey: roamgw requires one; add the same `wg genpsk` to both ends first",
                roamer.public_key
            ))
        })?;
        store.write_psk(&store.roamer_psk_path(&roamer.name), psk)?;
    }
    store.save(&state)?;
    // roamgw's rules go live first; only then do the old ones go.
    dataplane::of(&state).up(&state)?;
    fw.remove_rich_rules(&zone, &plan.replaced_rules)
        .map_err(|e| {
            refused(format!(
                "roamgw's rules are live, but the old ones stay: {e}"
            ))
        })?;
    Ok(format!(
        "imported into {}:\n{summary}roamgw's rules are live and the old rich rules are gone; the laptops keep their configs.\n\
         undo: roamgw down --purge, then add the rich rules above again (firewall-cmd --permanent --zone={zone} --add-rich-rule '...'; firewall-cmd --reload)\n",
        store.dir().display()
    ))
}

fn state_of(
    plan: &ImportPlan,
    interface: InterfaceName,
    public_ip: Ipv4Addr,
    anchor_ip: Ipv4Addr,
    floating_ip: Option<Ipv4Addr>,
) -> Result<GatewayState> {
    let state = GatewayState {
        version: STATE_VERSION,
        gateway: GatewaySettings {
            public_ip,
            endpoint: roamgw_common::names::Endpoint {
                host: public_ip.to_string(),
                port: plan.listen_port,
            },
            endpoint6: None,
            floating_ip,
            anchor_ip,
            listen_port: plan.listen_port,
            subnet: plan.address.trunc(),
            address: plan.address.addr(),
            backend: Backend::Firewalld,
            wireguard: WireguardMode::External,
            interface,
            mtu: plan.mtu.unwrap_or(DEFAULT_MTU),
            public_key: plan.private_key.public_key(),
            anchor_passthrough: false,
            // The laptops' configs of the manual setup route no replies for other sources.
            client_ip: ClientIp::Masquerade,
            anchor_gateway: None,
            tcp_port: None,
            subnet6: None,
            forward6: None,
            public_ip6: None,
        },
        roamers: plan
            .roamers
            .iter()
            .map(|r| RoamerEntry {
                name: r.name.clone(),
                address: r.address,
                public_key: r.public_key,
                egress: Vec::new(),
            })
            .collect(),
        forwards: plan.forwards.clone(),
    };
    state.validate().map_err(|e| refused(e.to_string()))?;
    Ok(state)
}

fn describe(plan: &ImportPlan, zone: &str) -> String {
    let mut out = String::new();
    for r in &plan.roamers {
        let _ = writeln!(
            out,
            "  roamer {} {} (public key {})",
            r.name, r.address, r.public_key
        );
    }
    for f in &plan.forwards {
        let _ = writeln!(out, "  forward {f}");
    }
    for rule in &plan.replaced_rules {
        let _ = writeln!(out, "  replaces, in zone {zone}: {rule}");
    }
    out
}
