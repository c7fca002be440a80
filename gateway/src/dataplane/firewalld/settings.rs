//! Our objects as firewalld's D-Bus interfaces take and return them (settings dictionaries,
//! ipset tuples), and back into the terms we set.

use std::collections::{BTreeSet, HashMap};

use zbus::zvariant::{OwnedValue, Value};

use super::model::{IpsetSpec, PolicySpec, IPSET_TYPE, PRIORITY};

/// An ipset's settings as firewalld's config interface takes them:
/// (version, short, description, type, options, entries).
pub(super) type IpsetSettings = (
    String,
    String,
    String,
    String,
    HashMap<String, String>,
    Vec<String>,
);

pub(super) fn ipset_settings(spec: &IpsetSpec) -> IpsetSettings {
    (
        String::new(),
        "roamgw forwards".to_string(),
        "Managed by roamgw: the plain forwards to one roamer (anchor,protocol:port).".to_string(),
        IPSET_TYPE.to_string(),
        // firewalld's ipsets hold IPv4 unless told otherwise.
        spec.ipv6
            .then(|| ("family".to_string(), "inet6".to_string()))
            .into_iter()
            .collect(),
        spec.entries.iter().cloned().collect(),
    )
}

pub(super) type Settings = HashMap<String, OwnedValue>;

/// What firewalld has of one of our policies, in the terms we set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyView {
    pub ingress_zones: BTreeSet<String>,
    pub egress_zones: BTreeSet<String>,
    pub ports: BTreeSet<(String, String)>,
    pub masquerade: bool,
    pub rich_rules: BTreeSet<String>,
}

impl PolicyView {
    pub(super) fn of(spec: &PolicySpec) -> Self {
        PolicyView {
            ingress_zones: spec.ingress_zones.iter().cloned().collect(),
            egress_zones: spec.egress_zones.iter().cloned().collect(),
            ports: spec.ports.iter().cloned().collect(),
            masquerade: spec.masquerade,
            rich_rules: spec.rich_rules.clone(),
        }
    }

    pub(super) fn from_settings(settings: &Settings) -> Self {
        fn get<T: TryFrom<OwnedValue>>(s: &Settings, key: &str) -> Option<T> {
            s.get(key)
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| T::try_from(v).ok())
        }
        PolicyView {
            ingress_zones: get::<Vec<String>>(settings, "ingress_zones")
                .unwrap_or_default()
                .into_iter()
                .collect(),
            egress_zones: get::<Vec<String>>(settings, "egress_zones")
                .unwrap_or_default()
                .into_iter()
                .collect(),
            ports: get::<Vec<(String, String)>>(settings, "ports")
                .unwrap_or_default()
                .into_iter()
                .collect(),
            masquerade: get::<bool>(settings, "masquerade").unwrap_or(false),
            rich_rules: get::<Vec<String>>(settings, "rich_rules")
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }
}

pub(super) fn policy_settings(
    spec: &PolicySpec,
    full: bool,
) -> HashMap<&'static str, Value<'static>> {
    let mut s: HashMap<&'static str, Value<'static>> = HashMap::new();
    s.insert("ingress_zones", Value::new(spec.ingress_zones.clone()));
    s.insert("egress_zones", Value::new(spec.egress_zones.clone()));
    s.insert("ports", Value::new(spec.ports.clone()));
    s.insert("masquerade", Value::new(spec.masquerade));
    s.insert(
        "rich_rules",
        Value::new(spec.rich_rules.iter().cloned().collect::<Vec<_>>()),
    );
    if full {
        s.insert("target", Value::new("CONTINUE".to_string()));
        s.insert("priority", Value::new(PRIORITY));
        s.insert("short", Value::new(format!("roamgw: {}", spec.name)));
        s.insert(
            "description",
            Value::new(
                "Managed by roamgw (static public ports for a roaming laptop). Changed by `roamgw`; removed by `roamgw down --purge`."
                    .to_string(),
            ),
        );
    }
    s
}

pub(super) fn zone_settings(interfaces: &[String]) -> HashMap<&'static str, Value<'static>> {
    let mut s: HashMap<&'static str, Value<'static>> = HashMap::new();
    s.insert("interfaces", Value::new(interfaces.to_vec()));
    s.insert("short", Value::new("roamgw tunnel".to_string()));
    s.insert(
        "description",
        Value::new("Managed by roamgw: the WireGuard interface toward the roamers.".to_string()),
    );
    s
}
