//! The nft text roamgw applies: the template with its `define`s, the version marker and the
//! elements, as one transaction. `roamgw rules` prints exactly this.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::exec::delete_text;
use super::model::{
    is_count, Desired, Element, COUNT_FAMILY, COUNT_TABLE, COUNT_TEMPLATE, FAMILY, LEGACY_FAMILY,
    MASQ_MARK, TABLE, TEMPLATE,
};
use super::observed::CounterValue;

/// The whole-table transaction: replaces the table (or creates it) in one atomic step.
/// Counter values in `keep` are carried over, so a replace does not reset the statistics.
pub fn full_transaction(desired: &Desired, keep: &BTreeMap<Element, CounterValue>) -> String {
    let s = &desired.settings;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# roamgw: the whole table {FAMILY} {TABLE}, in one transaction"
    );
    let _ = writeln!(out, "define ANCHOR = {}", s.anchor);
    let _ = writeln!(out, "define WG_IF = \"{}\"", s.interface);
    let _ = writeln!(out, "define LISTEN_PORT = {}", s.listen_port);
    let _ = writeln!(out, "define TCP_PORT = {}", s.tcp_port);
    let _ = writeln!(out, "define MASQ_MARK = {MASQ_MARK:#010x}");
    out.push_str(&delete_text(FAMILY, TABLE));
    // The IPv4-only table of earlier versions goes in the same step as this one comes.
    out.push_str(&delete_text(LEGACY_FAMILY, TABLE));
    out.push_str(TEMPLATE);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "add element {FAMILY} {TABLE} marker {{ {:#010x} }}",
        s.marker()
    );
    out.push_str(&elements_text(FAMILY, TABLE, &desired.elements, keep));
    out
}

/// The counting table of the firewalld backend (`nft-templates/roamgw-count.nft`) with
/// `elements` (counting ones only), replaced in one transaction; counts in `keep` carry over.
pub fn counting_transaction(
    elements: &BTreeSet<Element>,
    keep: &BTreeMap<Element, CounterValue>,
) -> String {
    let mut out = delete_text(COUNT_FAMILY, COUNT_TABLE)
        + &delete_text(LEGACY_FAMILY, COUNT_TABLE)
        + COUNT_TEMPLATE;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&elements_text(COUNT_FAMILY, COUNT_TABLE, elements, keep));
    out
}

/// `add element` lines, one per container; counting elements carry over their counts.
fn elements_text(
    family: &str,
    table: &str,
    elements: &BTreeSet<Element>,
    keep: &BTreeMap<Element, CounterValue>,
) -> String {
    let mut out = String::new();
    let mut grouped: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for element in elements {
        let text = match keep.get(element) {
            Some(c) if is_count(element) && (c.packets, c.bytes) != (0, 0) => {
                format!("{element} counter packets {} bytes {}", c.packets, c.bytes)
            }
            _ => element.to_string(),
        };
        grouped.entry(element.container()).or_default().push(text);
    }
    for (container, items) in grouped {
        let _ = writeln!(
            out,
            "add element {family} {table} {container} {{ {} }}",
            items.join(", ")
        );
    }
    out
}

/// The number of rules each chain of the template has, to notice rules changed behind our back.
pub fn template_rules_per_chain() -> BTreeMap<String, usize> {
    rules_per_chain(TEMPLATE)
}

/// The number of rules each chain of an nft file has.
pub fn rules_per_chain(template: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut chain: Option<String> = None;
    for line in template.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("chain ") {
            let name = rest.trim_end_matches('{').trim().to_string();
            counts.insert(name.clone(), 0);
            chain = Some(name);
        } else if line == "}" {
            chain = None;
        } else if let Some(name) = &chain {
            if !(line.is_empty() || line.starts_with('#') || line.starts_with("type ")) {
                *counts.entry(name.clone()).or_insert(0) += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::nftables::model::{forward_elements, TableSettings};
    use std::net::Ipv4Addr;

    /// One share for a source's handshakes, whether the kernel (this table) or the userspace
    /// device enforces it.
    #[test]
    fn the_tables_handshake_share_is_the_devices() {
        let share = roamgw_wg::userspace::limiter::PER_SOURCE;
        assert!(
            TEMPLATE.contains(&format!(
                "limit rate over {share}/second burst {share} packets"
            )),
            "nft-templates/roamgw.nft and limiter::PER_SOURCE disagree"
        );
    }

    fn desired() -> Desired {
        let anchor = Ipv4Addr::new(10, 16, 0, 5);
        let mut elements: BTreeSet<Element> = forward_elements(
            anchor.into(),
            &"22".parse().expect("spec"),
            Ipv4Addr::new(192, 168, 32, 2).into(),
            &["192.0.2.0/24".parse().expect("net")],
        )
        .into_iter()
        .collect();
        elements.insert(Element::ClosedAnchor(anchor.into()));
        Desired {
            settings: TableSettings {
                anchor,
                interface: "roamgw0".parse().expect("if"),
                listen_port: 51820,
                tcp_port: 0,
            },
            elements,
        }
    }

    #[test]
    fn transaction_has_defines_marker_template_and_elements() {
        let keep = BTreeMap::from([(
            Element::CountSingle {
                anchor: Ipv4Addr::new(10, 16, 0, 5).into(),
                protocol: roamgw_common::Protocol::Tcp,
                port: 22,
            },
            CounterValue {
                packets: 3,
                bytes: 99,
            },
        )]);
        let text = full_transaction(&desired(), &keep);
        let marker = desired().settings.marker();
        for expected in [
            "define ANCHOR = 10.16.0.5\n",
            "define WG_IF = \"roamgw0\"\n",
            "table inet roamgw {}\ndelete table inet roamgw\n",
            "table ip roamgw {}\ndelete table ip roamgw\n",
            &format!("add element inet roamgw marker {{ {marker:#010x} }}\n"),
            "chain prerouting {",
            "add element inet roamgw count_single { 10.16.0.5 . tcp . 22 counter packets 3 bytes 99 }\n",
            "add element inet roamgw dnat_addr { 10.16.0.5 . tcp . 22 : 192.168.32.2 }\n",
            "add element inet roamgw allowed { 10.16.0.5 . tcp . 22 . 192.0.2.0/24 }\n",
            "add element inet roamgw closed_anchors { 10.16.0.5 }\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn template_chains_are_counted() {
        let counts = template_rules_per_chain();
        assert_eq!(counts.get("prerouting"), Some(&4));
        assert_eq!(counts.get("guard"), Some(&10));
        assert!(counts.len() >= 6, "{counts:?}");
    }
}
