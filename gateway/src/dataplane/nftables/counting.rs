//! The firewalld backend's forward counters: firewalld keeps none, so roamgw keeps the same
//! counting sets as table `inet roamgw` in a table of its own, `inet roamgw_count`, that only
//! counts (nft-templates/roamgw-count.nft). Rewritten whole when its elements differ from the
//! state's (counts carried over); removed with the firewalld objects.

use std::collections::BTreeSet;

use roamgw_common::state::GatewayState;

use super::exec::{self, NftError};
use super::model::{self, is_count, Element, COUNT_FAMILY, COUNT_TABLE, COUNT_TEMPLATE};
use super::observed::{self, Observed, ParseError};
use super::render;

#[derive(Debug, thiserror::Error)]
pub enum CountingError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// The counting elements of the state's forwards.
pub fn desired(state: &GatewayState) -> BTreeSet<Element> {
    model::desired(state)
        .elements
        .into_iter()
        .filter(is_count)
        .collect()
}

/// The table as the kernel has it; `None` when it does not exist.
pub fn observe() -> Result<Option<Observed>, CountingError> {
    Ok(match exec::list_named(COUNT_FAMILY, COUNT_TABLE)? {
        Some(json) => Some(observed::parse_table(&json, COUNT_TABLE)?),
        None => None,
    })
}

/// What differs between the table and the state; `None`: nothing.
pub fn difference(desired: &BTreeSet<Element>, observed: Option<&Observed>) -> Option<String> {
    let Some(observed) = observed else {
        return Some(format!("table {COUNT_FAMILY} {COUNT_TABLE} is missing"));
    };
    if observed.rules_per_chain != render::rules_per_chain(COUNT_TEMPLATE) {
        return Some(format!(
            "the rules of table {COUNT_FAMILY} {COUNT_TABLE} were changed"
        ));
    }
    let missing = desired.difference(&observed.elements).count();
    let extra = observed.elements.difference(desired).count();
    (missing + extra > 0).then(|| {
        format!(
            "table {COUNT_FAMILY} {COUNT_TABLE}: {missing} counters missing, {extra} not wanted"
        )
    })
}

/// Brings the table to the state; returns what it repaired, if anything.
pub fn sync(state: &GatewayState) -> Result<Option<String>, CountingError> {
    let want = desired(state);
    let observed = observe()?;
    let Some(difference) = difference(&want, observed.as_ref()) else {
        return Ok(None);
    };
    let keep = observed.map(|o| o.counters).unwrap_or_default();
    exec::apply_text(&render::counting_transaction(&want, &keep))?;
    Ok(Some(difference))
}

/// Removes the table, and the `ip` one of earlier versions.
pub fn remove() -> Result<(), CountingError> {
    exec::delete_named(COUNT_FAMILY, COUNT_TABLE)?;
    Ok(exec::delete_named(model::LEGACY_FAMILY, COUNT_TABLE)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn count(port: u16) -> Element {
        Element::CountSingle {
            anchor: Ipv4Addr::new(10, 16, 0, 5).into(),
            protocol: roamgw_common::Protocol::Tcp,
            port,
        }
    }

    fn table(elements: &[Element]) -> Observed {
        Observed {
            elements: elements.iter().cloned().collect(),
            rules_per_chain: render::rules_per_chain(COUNT_TEMPLATE),
            ..Observed::default()
        }
    }

    #[test]
    fn differences_table() {
        let want: BTreeSet<Element> = [count(22), count(80)].into_iter().collect();
        let mut changed_rules = table(&[count(22), count(80)]);
        changed_rules.rules_per_chain.insert("count_in".into(), 0);
        let cases: Vec<(&str, Option<Observed>, Option<&str>)> = vec![
            ("in step", Some(table(&[count(22), count(80)])), None),
            ("missing", None, Some("table inet roamgw_count is missing")),
            (
                "a forward added",
                Some(table(&[count(22)])),
                Some("table inet roamgw_count: 1 counters missing, 0 not wanted"),
            ),
            (
                "a forward removed",
                Some(table(&[count(22), count(80), count(443)])),
                Some("table inet roamgw_count: 0 counters missing, 1 not wanted"),
            ),
            (
                "rules flushed",
                Some(changed_rules),
                Some("the rules of table inet roamgw_count were changed"),
            ),
        ];
        for (name, observed, expected) in cases {
            assert_eq!(
                difference(&want, observed.as_ref()).as_deref(),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn the_transaction_replaces_the_table_with_counts_kept() {
        let want: BTreeSet<Element> = [count(22)].into_iter().collect();
        let keep = [(
            count(22),
            observed::CounterValue {
                packets: 2,
                bytes: 120,
            },
        )]
        .into_iter()
        .collect();
        let text = render::counting_transaction(&want, &keep);
        assert!(text.starts_with(
            "table inet roamgw_count {}\ndelete table inet roamgw_count\ntable ip roamgw_count {}\ndelete table ip roamgw_count\n"
        ));
        assert!(text.contains(
            "add element inet roamgw_count count_single { 10.16.0.5 . tcp . 22 counter packets 2 bytes 120 }"
        ));
        let rules: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect();
        for verdict in ["dnat ip to", "masquerade", "drop", "accept", "reject"] {
            assert!(
                !rules
                    .iter()
                    .any(|l| l.split_whitespace().any(|w| w == verdict)),
                "a counting table decides nothing: {verdict}"
            );
        }
    }
}
