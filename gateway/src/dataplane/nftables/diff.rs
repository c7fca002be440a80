//! desired + observed -> plan. Pure: table-tested without a kernel, and the plan's Display is
//! both the dry-run output and the log line.

use std::fmt;

use super::model::{Desired, Element};
use super::observed::Observed;
use super::render::template_rules_per_chain;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The table is as desired: applying again is a no-op.
    Nothing,
    /// Replace (or create) the whole table in one transaction; why, in words.
    Replace { reasons: Vec<String> },
    /// Change elements only. Removals run before additions, so a changed value of a map key
    /// (delete old, add new) works in one transaction.
    Update {
        remove: Vec<Element>,
        add: Vec<Element>,
    },
}

pub fn plan(desired: &Desired, observed: Option<&Observed>) -> Plan {
    let Some(observed) = observed else {
        return Plan::Replace {
            reasons: vec!["table inet roamgw does not exist".into()],
        };
    };
    let mut reasons = Vec::new();
    let marker = desired.settings.marker();
    if observed.marker != Some(marker) {
        let found = observed
            .marker
            .map_or("none".to_string(), |m| format!("{m:#010x}"));
        reasons.push(format!("rules marker is {found}, want {marker:#010x}"));
    }
    let want_rules = template_rules_per_chain();
    if observed.rules_per_chain != want_rules {
        reasons.push("rules were changed behind roamgw's back".into());
    }
    if !reasons.is_empty() {
        return Plan::Replace { reasons };
    }
    // Removals in reverse order: elements before the counters they refer to.
    let mut remove: Vec<Element> = observed
        .elements
        .difference(&desired.elements)
        .cloned()
        .collect();
    remove.reverse();
    let add: Vec<Element> = desired
        .elements
        .difference(&observed.elements)
        .cloned()
        .collect();
    if remove.is_empty() && add.is_empty() {
        Plan::Nothing
    } else {
        Plan::Update { remove, add }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::Nothing => write!(f, "table inet roamgw is up to date"),
            Plan::Replace { reasons } => {
                write!(f, "replace table inet roamgw: {}", reasons.join("; "))
            }
            Plan::Update { remove, add } => {
                write!(
                    f,
                    "update table inet roamgw: -{} +{} elements",
                    remove.len(),
                    add.len()
                )?;
                for e in remove {
                    write!(f, "\n  - {} {e}", e.container())?;
                }
                for e in add {
                    write!(f, "\n  + {} {e}", e.container())?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::nftables::model::{forward_elements, TableSettings};
    use std::collections::BTreeSet;
    use std::net::{IpAddr, Ipv4Addr};

    const ANCHOR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 16, 0, 5));
    const LAPTOP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 32, 2));
    const PHONE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 32, 3));

    fn settings() -> TableSettings {
        TableSettings {
            anchor: Ipv4Addr::new(10, 16, 0, 5),
            interface: "roamgw0".parse().expect("if"),
            listen_port: 51820,
            tcp_port: 0,
        }
    }

    fn with(forwards: &[(&str, IpAddr)]) -> BTreeSet<Element> {
        let mut set: BTreeSet<Element> = forwards
            .iter()
            .flat_map(|(spec, to)| forward_elements(ANCHOR, &spec.parse().expect("spec"), *to, &[]))
            .collect();
        set.insert(Element::ClosedAnchor(ANCHOR));
        set
    }

    fn desired(forwards: &[(&str, IpAddr)]) -> Desired {
        Desired {
            settings: settings(),
            elements: with(forwards),
        }
    }

    fn observed(forwards: &[(&str, IpAddr)]) -> Observed {
        Observed {
            marker: Some(settings().marker()),
            elements: with(forwards),
            counters: Default::default(),
            rules_per_chain: template_rules_per_chain(),
            handshakes_dropped: None,
        }
    }

    fn counts(plan: &Plan) -> (usize, usize) {
        match plan {
            Plan::Update { remove, add } => (remove.len(), add.len()),
            other => panic!("expected an update, got {other}"),
        }
    }

    #[test]
    fn table_of_transitions() {
        // (observed forwards, desired forwards, expected removes, expected adds)
        type Forwards<'a> = &'a [(&'a str, IpAddr)];
        let table: &[(Forwards, Forwards, usize, usize)] = &[
            (&[], &[("22", LAPTOP)], 0, 4),
            (&[("22", LAPTOP)], &[], 4, 0),
            (
                &[("22", LAPTOP)],
                &[("22", LAPTOP), ("60000-60100/udp", LAPTOP)],
                0,
                3,
            ),
            // Moving a forward to another roamer changes the address element only.
            (&[("22", LAPTOP)], &[("22", PHONE)], 1, 1),
            (&[("2222:22", LAPTOP)], &[("2222:2200", LAPTOP)], 1, 1),
        ];
        for (before, after, removes, adds) in table {
            let p = plan(&desired(after), Some(&observed(before)));
            assert_eq!(
                counts(&p),
                (*removes, *adds),
                "{before:?} -> {after:?}: {p}"
            );
        }
    }

    #[test]
    fn same_state_is_a_no_op() {
        let forwards = [
            ("22", LAPTOP),
            ("53/tcp+udp", PHONE),
            ("8000-8002:9000-9002", LAPTOP),
        ];
        assert_eq!(
            plan(&desired(&forwards), Some(&observed(&forwards))),
            Plan::Nothing
        );
    }

    #[test]
    fn missing_table_marker_or_rules_mean_replace() {
        assert!(matches!(plan(&desired(&[]), None), Plan::Replace { .. }));
        let mut o = observed(&[]);
        o.marker = Some(0);
        assert!(matches!(
            plan(&desired(&[]), Some(&o)),
            Plan::Replace { .. }
        ));
        let mut o = observed(&[]);
        o.rules_per_chain.insert("forward".into(), 1);
        let p = plan(&desired(&[]), Some(&o));
        assert!(p.to_string().contains("behind roamgw's back"), "{p}");
    }
}
