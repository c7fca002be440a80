//! The rest of the host's nftables ruleset, read only: what other firewalls do to traffic that
//! our forwards need (`roamgw doctor`).

/// Other tables' chains that matter to the forwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtherTables {
    /// Input chains that drop by default ("family table/chain").
    pub dropping_input_chains: Vec<String>,
    /// Chains with a DNAT rule.
    pub dnat_chains: Vec<String>,
}

/// Empty when the ruleset cannot be read (not root, no nft): doctor then has nothing to add.
pub fn read() -> OtherTables {
    let (dropping_input_chains, dnat_chains) = super::exec::list_ruleset()
        .map(|json| foreign_chains(&json))
        .unwrap_or_default();
    OtherTables {
        dropping_input_chains,
        dnat_chains,
    }
}

/// Other tables' base chains, from `nft -j list ruleset`: input chains that drop by default,
/// and chains with a DNAT rule. Our own table is left out.
fn foreign_chains(ruleset_json: &str) -> (Vec<String>, Vec<String>) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(ruleset_json) else {
        return (Vec::new(), Vec::new());
    };
    let objects = value["nftables"].as_array().cloned().unwrap_or_default();
    // Ours, and the IPv4-only table of earlier versions, which the next apply removes.
    let ours = |o: &serde_json::Value| {
        o["table"] == super::model::TABLE
            && [super::model::FAMILY, super::model::LEGACY_FAMILY]
                .contains(&o["family"].as_str().unwrap_or(""))
    };
    let name = |o: &serde_json::Value| {
        format!(
            "{} {}/{}",
            o["family"].as_str().unwrap_or("?"),
            o["table"].as_str().unwrap_or("?"),
            o.get("chain")
                .or(o.get("name"))
                .and_then(|c| c.as_str())
                .unwrap_or("?")
        )
    };
    let mut dropping = Vec::new();
    let mut dnat = Vec::new();
    for object in &objects {
        if let Some(chain) = object.get("chain").filter(|c| !ours(c)) {
            if chain["hook"] == "input" && chain["policy"] == "drop" {
                dropping.push(name(chain));
            }
        }
        if let Some(rule) = object.get("rule").filter(|r| !ours(r)) {
            let has_dnat = rule["expr"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x.get("dnat").is_some()));
            if has_dnat && !dnat.contains(&name(rule)) {
                dnat.push(name(rule));
            }
        }
    }
    (dropping, dnat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_tables_are_read_and_ours_is_not() {
        let json = r#"{"nftables": [
            {"chain": {"family": "inet", "table": "filter", "name": "input", "hook": "input", "policy": "drop"}},
            {"chain": {"family": "ip", "table": "roamgw", "name": "input", "hook": "input", "policy": "drop"}},
            {"rule": {"family": "ip", "table": "other", "chain": "pre", "expr": [{"dnat": {"addr": "10.0.0.1"}}]}},
            {"rule": {"family": "ip", "table": "roamgw", "chain": "prerouting", "expr": [{"dnat": {"addr": "x"}}]}},
            {"rule": {"family": "inet", "table": "roamgw", "chain": "prerouting", "expr": [{"dnat": {"addr": "x"}}]}}
        ]}"#;
        let (dropping, dnat) = foreign_chains(json);
        assert_eq!(dropping, ["inet filter/input"]);
        assert_eq!(dnat, ["ip other/pre"]);
    }
}
