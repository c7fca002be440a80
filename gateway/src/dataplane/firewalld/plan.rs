//! What firewalld has of roamgw's objects ([`Observed`], read over D-Bus by
//! `Firewalld::observe`) and the pure difference from what the state asks for ([`plan`]). No
//! I/O here: the table tests below are the specification.

use std::collections::{BTreeMap, BTreeSet};

use zbus::zvariant::OwnedObjectPath;

use super::{Difference, PolicyView};
use crate::dataplane::firewalld::model::{Desired, ZONE};

/// An object of firewalld's permanent configuration: where it is, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permanent<T> {
    pub path: OwnedObjectPath,
    pub value: T,
}

/// firewalld's view of roamgw's objects, as read for one [`Desired`]: only what the plan
/// compares is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Our permanent zone's interfaces (`None`: no such zone, or no zone desired).
    pub zone: Option<Permanent<Vec<String>>>,
    /// The desired ipsets found in the permanent configuration, with their entries.
    pub ipsets: BTreeMap<String, Permanent<BTreeSet<String>>>,
    /// Every ipset of ours (by name prefix) in the permanent configuration; read only when a
    /// zone is desired (the firewalld backend owns ipsets, the nftables allowance does not).
    pub our_ipsets: Vec<(String, OwnedObjectPath)>,
    /// The desired policies found in the permanent configuration.
    pub policies: BTreeMap<String, Permanent<PolicyView>>,
    pub runtime_zones: Vec<String>,
    /// Ipsets at runtime (names), and the entries of the desired ones among them.
    pub runtime_ipset_names: Vec<String>,
    pub runtime_ipsets: BTreeMap<String, BTreeSet<String>>,
    /// Policies at runtime (names), and the settings of the desired ones among them.
    pub runtime_policy_names: Vec<String>,
    pub runtime_policies: BTreeMap<String, PolicyView>,
    /// The runtime zone of each interface of the desired zone.
    pub bindings: BTreeMap<String, String>,
}

/// The differences between `desired` and `observed`, in the order they must be applied:
/// permanent first (so a reload at any moment keeps them), then one reload if firewalld must
/// learn new objects, then runtime.
pub fn plan(desired: &Desired, observed: &Observed) -> Vec<Difference> {
    let mut out = Vec::new();
    if let Some(zone) = &desired.zone {
        match &observed.zone {
            None => out.push(Difference::CreateZone),
            Some(have) if have.value != zone.interfaces => {
                out.push(Difference::PermanentZone(have.path.clone()));
            }
            Some(_) => {}
        }
    }
    for set in &desired.ipsets {
        match observed.ipsets.get(&set.name) {
            None => out.push(Difference::CreateIpset(set.name.clone())),
            Some(have) if have.value != set.entries => {
                out.push(Difference::PermanentIpset(
                    set.name.clone(),
                    have.path.clone(),
                ));
            }
            Some(_) => {}
        }
    }
    for spec in &desired.policies {
        match observed.policies.get(spec.name) {
            None => out.push(Difference::CreatePolicy(spec.name)),
            Some(have) if have.value != PolicyView::of(spec) => {
                out.push(Difference::PermanentPolicy(spec.name, have.path.clone()));
            }
            Some(_) => {}
        }
    }
    if desired.zone.is_some() {
        for (name, path) in &observed.our_ipsets {
            if !desired.ipsets.iter().any(|s| &s.name == name) {
                out.push(Difference::StaleIpset(name.clone(), path.clone()));
            }
        }
    }
    let zone_missing = desired.zone.is_some() && !observed.runtime_zones.iter().any(|z| z == ZONE);
    let policy_missing = desired
        .policies
        .iter()
        .any(|p| !observed.runtime_policy_names.iter().any(|r| r == p.name));
    let ipset_missing = desired
        .ipsets
        .iter()
        .any(|s| !observed.runtime_ipset_names.contains(&s.name));
    if zone_missing || policy_missing || ipset_missing {
        out.push(Difference::Reload);
    }
    for set in &desired.ipsets {
        // Missing at runtime: known after the reload, compared then.
        if observed.runtime_ipsets.get(&set.name) != Some(&set.entries) {
            out.push(Difference::RuntimeIpset(set.name.clone()));
        }
    }
    for spec in &desired.policies {
        if observed.runtime_policies.get(spec.name) != Some(&PolicyView::of(spec)) {
            out.push(Difference::RuntimePolicy(spec.name));
        }
    }
    if let Some(zone) = &desired.zone {
        for interface in &zone.interfaces {
            if observed.bindings.get(interface).map(String::as_str) != Some(ZONE) {
                out.push(Difference::Binding(interface.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::firewalld::model::{IpsetSpec, PolicySpec, ZoneSpec};

    fn path(n: u32) -> OwnedObjectPath {
        OwnedObjectPath::try_from(format!("/org/fedoraproject/FirewallD1/config/x/{n}"))
            .expect("object path")
    }

    fn policy(name: &'static str, rule: &str) -> PolicySpec {
        PolicySpec {
            name,
            ingress_zones: vec!["ANY".into()],
            egress_zones: vec!["HOST".into()],
            ports: vec![],
            masquerade: false,
            rich_rules: [rule.to_string()].into(),
        }
    }

    fn desired() -> Desired {
        Desired {
            zone: Some(ZoneSpec {
                interfaces: vec!["roamgw0".into()],
            }),
            ipsets: vec![IpsetSpec {
                name: "roamgw-192-168-32-2".into(),
                entries: ["10.16.0.5,tcp:22".to_string()].into(),
                ipv6: false,
            }],
            policies: vec![policy("roamgw-dnat", "rule one")],
        }
    }

    /// Everything as `desired()` asks, permanent and runtime.
    fn in_sync() -> Observed {
        let d = desired();
        Observed {
            zone: Some(Permanent {
                path: path(1),
                value: vec!["roamgw0".into()],
            }),
            ipsets: [(
                d.ipsets[0].name.clone(),
                Permanent {
                    path: path(2),
                    value: d.ipsets[0].entries.clone(),
                },
            )]
            .into(),
            our_ipsets: vec![(d.ipsets[0].name.clone(), path(2))],
            policies: [(
                "roamgw-dnat".to_string(),
                Permanent {
                    path: path(3),
                    value: PolicyView::of(&d.policies[0]),
                },
            )]
            .into(),
            runtime_zones: vec!["public".into(), ZONE.into()],
            runtime_ipset_names: vec![d.ipsets[0].name.clone()],
            runtime_ipsets: [(d.ipsets[0].name.clone(), d.ipsets[0].entries.clone())].into(),
            runtime_policy_names: vec!["roamgw-dnat".into()],
            runtime_policies: [("roamgw-dnat".to_string(), PolicyView::of(&d.policies[0]))].into(),
            bindings: [("roamgw0".to_string(), ZONE.to_string())].into(),
        }
    }

    #[test]
    fn plan_table() {
        type Case = (&'static str, fn(&mut Observed), Vec<Difference>);
        let cases: Vec<Case> = vec![
            ("in sync: nothing", |_| {}, vec![]),
            (
                "nothing there yet: create all, reload once, then runtime",
                |o| *o = Observed::default(),
                vec![
                    Difference::CreateZone,
                    Difference::CreateIpset("roamgw-192-168-32-2".into()),
                    Difference::CreatePolicy("roamgw-dnat"),
                    Difference::Reload,
                    Difference::RuntimeIpset("roamgw-192-168-32-2".into()),
                    Difference::RuntimePolicy("roamgw-dnat"),
                    Difference::Binding("roamgw0".into()),
                ],
            ),
            (
                "an entry added by add-port missing at runtime only",
                |o| {
                    o.runtime_ipsets.values_mut().for_each(|e| e.clear());
                },
                vec![Difference::RuntimeIpset("roamgw-192-168-32-2".into())],
            ),
            (
                "permanent entries differ (runtime fine)",
                |o| {
                    o.ipsets.values_mut().for_each(|p| p.value.clear());
                },
                vec![Difference::PermanentIpset(
                    "roamgw-192-168-32-2".into(),
                    path(2),
                )],
            ),
            (
                "a rich rule changed behind our back, runtime",
                |o| {
                    o.runtime_policies
                        .values_mut()
                        .for_each(|v| v.rich_rules = ["other".to_string()].into());
                },
                vec![Difference::RuntimePolicy("roamgw-dnat")],
            ),
            (
                "a removed roamer's ipset is stale",
                |o| o.our_ipsets.push(("roamgw-192-168-32-9".into(), path(9))),
                vec![Difference::StaleIpset(
                    "roamgw-192-168-32-9".into(),
                    path(9),
                )],
            ),
            (
                "interface moved to another zone",
                |o| {
                    o.bindings.insert("roamgw0".into(), "public".into());
                },
                vec![Difference::Binding("roamgw0".into())],
            ),
            (
                "zone known permanently but not at runtime: reload",
                |o| o.runtime_zones.retain(|z| z != ZONE),
                vec![Difference::Reload],
            ),
        ];
        for (what, change, want) in cases {
            let mut observed = in_sync();
            change(&mut observed);
            assert_eq!(plan(&desired(), &observed), want, "{what}");
        }
    }

    #[test]
    fn the_nftables_allowance_never_removes_ipsets() {
        let allowance = Desired {
            zone: None,
            ipsets: vec![],
            policies: vec![policy("roamgw-host", "allow udp 51820")],
        };
        let observed = Observed {
            our_ipsets: vec![("roamgw-192-168-32-2".into(), path(2))],
            policies: [(
                "roamgw-host".to_string(),
                Permanent {
                    path: path(3),
                    value: PolicyView::of(&allowance.policies[0]),
                },
            )]
            .into(),
            runtime_policy_names: vec!["roamgw-host".into()],
            runtime_policies: [(
                "roamgw-host".to_string(),
                PolicyView::of(&allowance.policies[0]),
            )]
            .into(),
            ..Observed::default()
        };
        assert_eq!(plan(&allowance, &observed), vec![]);
    }
}
