//! A change to the desired state, as a value. The CLI applies it to the state file when no
//! daemon runs, or sends it to `roamgw run`, which applies it to the state it holds in memory
//! (no re-parse of thousands of forwards). Either way the checks and messages are these.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use roamgw_common::state::{check_forward_ports, Forward, GatewayState, RoamerEntry};
use roamgw_common::{PortSpec, PublicKey, RoamerName};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StateChange {
    /// The roamer's key files are written before this is applied (the PSK is read from them).
    AddRoamer {
        name: RoamerName,
        public_key: PublicKey,
        address: Option<Ipv4Addr>,
    },
    RemoveRoamer {
        name: RoamerName,
        force: bool,
    },
    AddPort {
        spec: PortSpec,
        to: Option<RoamerName>,
        allow_from: Vec<Ipv4Net>,
    },
    RemovePort {
        spec: PortSpec,
    },
}

/// A refused change: the message says what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refused(message: impl Into<String>) -> Refused {
    Refused(message.into())
}

/// The forwards a change removed and added: the caller knows, so nothing has to compare
/// thousands of forwards to find out.
#[derive(Debug, Clone, Default)]
pub struct ForwardChange {
    pub removed: Vec<Forward>,
    pub added: Vec<Forward>,
}

/// What a change did: the line for the user, and the forwards it removed and added.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub summary: String,
    pub forwards: ForwardChange,
}

/// Applies `change` to `state`; on a refusal `state` is unchanged.
pub fn apply(state: &mut GatewayState, change: &StateChange) -> Result<Applied, Refused> {
    match change {
        // Forward changes check everything before they touch the state: no copy, which
        // matters with thousands of forwards.
        StateChange::AddPort {
            spec,
            to,
            allow_from,
        } => add_port(state, spec, to.clone(), allow_from),
        StateChange::RemovePort { spec } => remove_port(state, spec),
        StateChange::AddRoamer {
            name,
            public_key,
            address,
        } => on_copy(state, |next| add_roamer(next, name, *public_key, *address)),
        StateChange::RemoveRoamer { name, force } => {
            on_copy(state, |next| remove_roamer(next, name, *force))
        }
    }
}

/// Runs `f` on a copy and keeps it only if it is valid.
fn on_copy(
    state: &mut GatewayState,
    f: impl FnOnce(&mut GatewayState) -> Result<Applied, Refused>,
) -> Result<Applied, Refused> {
    let mut next = state.clone();
    let applied = f(&mut next)?;
    next.validate().map_err(|e| refused(e.to_string()))?;
    *state = next;
    Ok(applied)
}

pub fn roamer_names(state: &GatewayState) -> String {
    if state.roamers.is_empty() {
        return "there are none yet: add one with `roamgw add-roamer NAME`".into();
    }
    let names: Vec<&str> = state.roamers.iter().map(|r| r.name.as_str()).collect();
    format!("roamers: {}", names.join(", "))
}

fn add_roamer(
    state: &mut GatewayState,
    name: &RoamerName,
    public_key: PublicKey,
    address: Option<Ipv4Addr>,
) -> Result<Applied, Refused> {
    if state.roamer(name).is_some() {
        return Err(refused(format!(
            "roamer '{name}' already exists: pick another name, or `roamgw remove-roamer {name}` first"
        )));
    }
    if let Some(other) = state.roamers.iter().find(|r| r.public_key == public_key) {
        return Err(refused(format!(
            "roamer '{}' already uses this public key: each roamer needs its own key",
            other.name
        )));
    }
    let address = match address {
        Some(address) => address,
        None => state.next_free_address().ok_or_else(|| {
            refused(format!(
                "tunnel subnet {} is full: remove a roamer, or start over with a larger --subnet",
                state.gateway.subnet
            ))
        })?,
    };
    state.roamers.push(RoamerEntry {
        name: name.clone(),
        address,
        public_key,
    });
    Ok(Applied {
        summary: format!("added roamer {name}: tunnel address {address}, public key {public_key}"),
        forwards: ForwardChange::default(),
    })
}

fn remove_roamer(
    state: &mut GatewayState,
    name: &RoamerName,
    force: bool,
) -> Result<Applied, Refused> {
    if state.roamer(name).is_none() {
        return Err(refused(format!(
            "no roamer '{name}' ({})",
            roamer_names(state)
        )));
    }
    let forwards: Vec<String> = state
        .forwards
        .iter()
        .filter(|f| &f.to == name)
        .map(Forward::key)
        .collect();
    if !forwards.is_empty() && !force {
        return Err(refused(format!(
            "roamer '{name}' still has forwards ({}): remove them, or pass --force to remove them too",
            forwards.join(", ")
        )));
    }
    let (removed, kept): (Vec<Forward>, Vec<Forward>) = std::mem::take(&mut state.forwards)
        .into_iter()
        .partition(|f| &f.to == name);
    state.forwards = kept;
    state.roamers.retain(|r| &r.name != name);
    let dropped = if forwards.is_empty() {
        String::new()
    } else {
        format!(" and its forwards {}", forwards.join(", "))
    };
    Ok(Applied {
        summary: format!("removed roamer {name}{dropped}"),
        forwards: ForwardChange {
            removed,
            added: Vec::new(),
        },
    })
}

fn resolve_roamer(state: &GatewayState, to: Option<RoamerName>) -> Result<RoamerName, Refused> {
    match to {
        Some(name) if state.roamer(&name).is_some() => Ok(name),
        Some(name) => Err(refused(format!(
            "no roamer '{name}' ({})",
            roamer_names(state)
        ))),
        None => match state.roamers.as_slice() {
            [one] => Ok(one.name.clone()),
            [] => Err(refused(
                "no roamer yet: add one with `roamgw add-roamer NAME` first",
            )),
            _ => Err(refused(format!(
                "say which roamer with --to NAME ({})",
                roamer_names(state)
            ))),
        },
    }
}

fn add_port(
    state: &mut GatewayState,
    spec: &PortSpec,
    to: Option<RoamerName>,
    allow_from: &[Ipv4Net],
) -> Result<Applied, Refused> {
    let to = resolve_roamer(state, to)?;
    check_forward_ports(spec, state.gateway.listen_port).map_err(|e| refused(e.to_string()))?;
    if let Some(existing) = state.forwards.iter().find(|f| f.spec.overlaps(spec)) {
        return Err(if &existing.spec == spec {
            refused(format!(
                "{spec} is already forwarded to {}: remove it first with `roamgw remove-port {}`",
                existing.to, existing.spec
            ))
        } else {
            refused(format!(
                "{spec} overlaps the forward {} -> {}: pick other ports, or `roamgw remove-port {}` first",
                existing.spec, existing.to, existing.spec
            ))
        });
    }
    if let Some(net) = allow_from.iter().find(|n| **n != n.trunc()) {
        return Err(refused(format!(
            "{net} has host bits set: write {}",
            net.trunc()
        )));
    }
    let mut allow_from = allow_from.to_vec();
    allow_from.sort();
    allow_from.dedup();
    let forward = Forward {
        spec: *spec,
        to,
        allow_from,
    };
    let summary = describe_forward(state, &forward);
    state.forwards.push(forward.clone());
    Ok(Applied {
        summary,
        forwards: ForwardChange {
            removed: Vec::new(),
            added: vec![forward],
        },
    })
}

fn remove_port(state: &mut GatewayState, spec: &PortSpec) -> Result<Applied, Refused> {
    let Some(index) = state.forwards.iter().position(|f| &f.spec == spec) else {
        let near: Vec<String> = state
            .forwards
            .iter()
            .filter(|f| f.spec.public.overlaps(spec.public))
            .map(Forward::key)
            .collect();
        return Err(refused(if near.is_empty() {
            format!("no forward {spec}; `roamgw list` shows the forwards")
        } else {
            format!(
                "no forward {spec}; did you mean {}? (give the spec as `roamgw list` shows it)",
                near.join(" or ")
            )
        }));
    };
    let removed = state.forwards.remove(index);
    Ok(Applied {
        summary: format!("removed forward {} -> {}", removed.spec, removed.to),
        forwards: ForwardChange {
            removed: vec![removed],
            added: Vec::new(),
        },
    })
}

pub fn describe_forward(state: &GatewayState, forward: &Forward) -> String {
    let g = &state.gateway;
    let public = g.floating_ip.unwrap_or(g.anchor_ip);
    let address = state
        .roamer(&forward.to)
        .map(|r| r.address.to_string())
        .unwrap_or_default();
    let sources = if forward.allow_from.is_empty() {
        String::new()
    } else {
        let nets: Vec<String> = forward.allow_from.iter().map(ToString::to_string).collect();
        format!(", only from {}", nets.join(", "))
    };
    format!(
        "forward {spec}: {public}:{ports} -> {to} {address}:{local}{sources}",
        spec = forward.spec,
        ports = forward.spec.public,
        to = forward.to,
        local = forward.spec.local,
    )
}
