//! Reading our table back: `nft -j list table inet roamgw` parsed into the same [`Element`]s the
//! desired state is made of. Only our table is ever listed (listing the whole ruleset can fail
//! on other tables' constructs).
//!
//! Counters are parsed as u64 here on purpose: the nftables crate's schema holds them in u32
//! and fails to parse a table whose counter passed 4 GiB. Elements of sets with counters come
//! wrapped as `{"elem": {"val": KEY, "counter": {...}}}`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use roamgw_common::{PortRange, Protocol};
use serde_json::Value;

use super::model::{Element, FAMILY, TABLE};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValue {
    pub packets: u64,
    pub bytes: u64,
}

/// Our table as the kernel has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub marker: Option<u32>,
    pub elements: BTreeSet<Element>,
    /// The counter of each counting element.
    pub counters: BTreeMap<Element, CounterValue>,
    /// Rules per chain, to notice rules added or deleted behind our back.
    pub rules_per_chain: BTreeMap<String, usize>,
    /// Handshake initiations the table dropped: their source was over its share (chain
    /// `handshakes`).
    pub handshakes_dropped: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read table {FAMILY} {TABLE} as nft lists it: {0}")]
pub struct ParseError(String);

fn bad(what: impl Into<String>) -> ParseError {
    ParseError(what.into())
}

fn as_str<'a>(v: &'a Value, what: &str) -> Result<&'a str, ParseError> {
    v.as_str()
        .ok_or_else(|| bad(format!("{what}: expected a string, got {v}")))
}

fn ip(v: &Value) -> Result<IpAddr, ParseError> {
    as_str(v, "address")?
        .parse()
        .map_err(|_| bad(format!("not an address: {v}")))
}

fn ip4(v: &Value) -> Result<Ipv4Addr, ParseError> {
    match ip(v)? {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(bad(format!("not an IPv4 address: {v}"))),
    }
}

fn port(v: &Value) -> Result<u16, ParseError> {
    v.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| bad(format!("not a port: {v}")))
}

fn ports(v: &Value) -> Result<PortRange, ParseError> {
    let range = match v.get("range") {
        Some(Value::Array(bounds)) if bounds.len() == 2 => {
            PortRange::new(port(&bounds[0])?, port(&bounds[1])?)
        }
        Some(other) => return Err(bad(format!("not a port range: {other}"))),
        None => PortRange::single(port(v)?),
    };
    range.map_err(|e| bad(e.to_string()))
}

/// A protocol as nft lists it: by name, or by number where /etc/protocols is missing (a
/// minimal system without netbase).
fn protocol(v: &Value) -> Result<Protocol, ParseError> {
    match v {
        Value::String(name) if name == "tcp" => Ok(Protocol::Tcp),
        Value::String(name) if name == "udp" => Ok(Protocol::Udp),
        Value::Number(n) if n.as_u64() == Some(6) => Ok(Protocol::Tcp),
        Value::Number(n) if n.as_u64() == Some(17) => Ok(Protocol::Udp),
        other => Err(bad(format!("unexpected protocol {other}"))),
    }
}

fn source(v: &Value) -> Result<IpNet, ParseError> {
    if let Some(prefix) = v.get("prefix") {
        let addr = ip(prefix.get("addr").unwrap_or(&Value::Null))?;
        let len = prefix
            .get("len")
            .and_then(Value::as_u64)
            .and_then(|l| u8::try_from(l).ok())
            .ok_or_else(|| bad(format!("bad prefix {v}")))?;
        return IpNet::new(addr, len).map_err(|_| bad(format!("bad prefix {v}")));
    }
    Ok(IpNet::from(ip(v)?))
}

fn source4(v: &Value) -> Result<Ipv4Net, ParseError> {
    match source(v)? {
        IpNet::V4(net) => Ok(net),
        IpNet::V6(_) => Err(bad(format!("not an IPv4 prefix: {v}"))),
    }
}

/// An element may come wrapped as `{"elem": {"val": ...}}` when it carries extra attributes.
fn unwrap_elem(v: &Value) -> &Value {
    v.get("elem").and_then(|e| e.get("val")).unwrap_or(v)
}

fn concat(v: &Value) -> Result<&Vec<Value>, ParseError> {
    unwrap_elem(v)
        .get("concat")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("expected a concatenation, got {v}")))
}

/// anchor . protocol . port(s)
fn key3(v: &Value) -> Result<(IpAddr, Protocol, &Value), ParseError> {
    match concat(v)?.as_slice() {
        [a, p, port] => Ok((ip(a)?, protocol(p)?, port)),
        other => Err(bad(format!(
            "expected anchor . protocol . port, got {other:?}"
        ))),
    }
}

fn map_entries(object: &Value) -> Result<Vec<(&Value, &Value)>, ParseError> {
    let Some(elems) = object.get("elem").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    elems
        .iter()
        .map(|e| match e.as_array().map(Vec::as_slice) {
            Some([key, value]) => Ok((key, value)),
            _ => Err(bad(format!("expected [key, value], got {e}"))),
        })
        .collect()
}

fn set_entries(object: &Value) -> Vec<&Value> {
    object
        .get("elem")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn parse_map(name: &str, object: &Value, out: &mut BTreeSet<Element>) -> Result<(), ParseError> {
    for (key, value) in map_entries(object)? {
        let (anchor, protocol, port_value) = key3(key)?;
        let element = match family_twin(name) {
            "dnat_addr" => Element::DnatAddr {
                anchor,
                protocol,
                port: port(port_value)?,
                to: ip(value)?,
            },
            "dnat_port" => Element::DnatPort {
                anchor,
                protocol,
                port: port(port_value)?,
                to_port: port(value)?,
            },
            "dnat_range" => Element::DnatRange {
                anchor,
                protocol,
                ports: ports(port_value)?,
                to: ip(value)?,
            },
            // A map we do not know: the rules version marker will differ; ignore its content.
            _ => return Ok(()),
        };
        out.insert(element);
    }
    Ok(())
}

fn counter_of(entry: &Value) -> CounterValue {
    let counter = entry.get("elem").and_then(|e| e.get("counter"));
    let field = |name: &str| {
        counter
            .and_then(|c| c.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    CounterValue {
        packets: field("packets"),
        bytes: field("bytes"),
    }
}

/// The chain of the per-source handshake limit (nft-templates/roamgw.nft).
const HANDSHAKES_CHAIN: &str = "handshakes";

/// The packets a rule's `counter` statement counted.
fn rule_packets(rule: &Value) -> Option<u64> {
    rule.get("expr")?
        .as_array()?
        .iter()
        .find_map(|e| e.get("counter")?.get("packets")?.as_u64())
}

/// The name of a set or map whose IPv6 twin `name` is (`dnat_addr6` is `dnat_addr`'s): the
/// elements tell the family themselves.
fn family_twin(name: &str) -> &str {
    name.strip_suffix('6').unwrap_or(name)
}

fn parse_set(name: &str, object: &Value, observed: &mut Observed) -> Result<(), ParseError> {
    let name = family_twin(name);
    for entry in set_entries(object) {
        let element = match name {
            "count_single" | "count_range" | "reply_single" | "reply_range" => {
                let (anchor, protocol, p) = key3(entry)?;
                let element = match name {
                    "count_single" => Element::CountSingle {
                        anchor,
                        protocol,
                        port: port(p)?,
                    },
                    "count_range" => Element::CountRange {
                        anchor,
                        protocol,
                        ports: ports(p)?,
                    },
                    "reply_single" => Element::ReplySingle {
                        anchor,
                        protocol,
                        port: port(p)?,
                    },
                    _ => Element::ReplyRange {
                        anchor,
                        protocol,
                        ports: ports(p)?,
                    },
                };
                observed.counters.insert(element.clone(), counter_of(entry));
                element
            }
            "restricted" => {
                let (anchor, protocol, p) = key3(entry)?;
                Element::Restricted {
                    anchor,
                    protocol,
                    ports: ports(p)?,
                }
            }
            "allowed" => match concat(entry)?.as_slice() {
                [a, p, port_value, src] => Element::Allowed {
                    anchor: ip(a)?,
                    protocol: protocol(p)?,
                    ports: ports(port_value)?,
                    source: source(src)?,
                },
                other => return Err(bad(format!("unexpected allowed element {other:?}"))),
            },
            "closed_anchors" => Element::ClosedAnchor(ip(unwrap_elem(entry))?),
            "forward_addrs" => Element::ForwardAddr(ip(unwrap_elem(entry))?),
            "egress" => match concat(entry)?.as_slice() {
                [from, to] => Element::Egress {
                    from: ip4(from)?,
                    to: source4(to)?,
                },
                other => return Err(bad(format!("unexpected egress element {other:?}"))),
            },
            "masquerade_single" => {
                let (anchor, protocol, p) = key3(entry)?;
                Element::MasqueradeSingle {
                    anchor,
                    protocol,
                    port: port(p)?,
                }
            }
            "masquerade_range" => {
                let (anchor, protocol, p) = key3(entry)?;
                Element::MasqueradeRange {
                    anchor,
                    protocol,
                    ports: ports(p)?,
                }
            }
            _ => return Ok(()),
        };
        observed.elements.insert(element);
    }
    Ok(())
}

/// Parses the output of `nft -j list table inet roamgw`.
pub fn parse(json: &str) -> Result<Observed, ParseError> {
    parse_table(json, TABLE)
}

/// Parses the listing of one of our tables (the elements of other tables are skipped).
pub fn parse_table(json: &str, table: &str) -> Result<Observed, ParseError> {
    let doc: Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let objects = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no \"nftables\" array"))?;
    let mut observed = Observed::default();
    for object in objects {
        let Some((kind, body)) = object.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        if body
            .get("table")
            .and_then(Value::as_str)
            .is_some_and(|t| t != table)
        {
            continue;
        }
        let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
        match kind.as_str() {
            "map" => parse_map(name, body, &mut observed.elements)?,
            "set" if name == "marker" => {
                observed.marker = set_entries(body)
                    .first()
                    .and_then(|v| v.as_u64())
                    .and_then(|m| u32::try_from(m).ok());
            }
            "set" => parse_set(name, body, &mut observed)?,
            "chain" => {
                observed
                    .rules_per_chain
                    .entry(name.to_string())
                    .or_insert(0);
            }
            "rule" => {
                let chain = body
                    .get("chain")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                *observed
                    .rules_per_chain
                    .entry(chain.to_string())
                    .or_insert(0) += 1;
                if chain == HANDSHAKES_CHAIN {
                    observed.handshakes_dropped = rule_packets(body);
                }
            }
            _ => {}
        }
    }
    Ok(observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("observed-sample.json");

    #[test]
    fn parses_a_real_listing() {
        let observed = parse(SAMPLE).expect("parse");
        assert_eq!(observed.marker, Some(0x1234_abcd));
        assert_eq!(
            observed.counters.get(&Element::CountSingle {
                anchor: "10.16.0.5".parse().expect("ip"),
                protocol: Protocol::Tcp,
                port: 22
            }),
            Some(&CounterValue {
                packets: 5,
                bytes: 100_000_000_000
            })
        );
        assert_eq!(
            observed.counters.get(&Element::ReplySingle {
                anchor: "10.16.0.5".parse().expect("ip"),
                protocol: Protocol::Tcp,
                port: 22
            }),
            Some(&CounterValue {
                packets: 4,
                bytes: 2000
            })
        );
        assert_has(
            &observed,
            &[
                "dnat_addr 10.16.0.5 . tcp . 22 : 192.168.32.2",
                "dnat_port 10.16.0.5 . tcp . 22 : 22",
                "dnat_range 10.16.0.5 . udp . 60000-60100 : 192.168.32.2",
                "count_single 10.16.0.5 . tcp . 22",
                "count_range 10.16.0.5 . udp . 60000-60100",
                "allowed 10.16.0.5 . tcp . 22 . 198.51.100.7/32",
                "restricted 10.16.0.5 . tcp . 22",
                "allowed 10.16.0.5 . tcp . 22 . 192.0.2.0/24",
                "closed_anchors 10.16.0.5",
                "reply_range 10.16.0.5 . udp . 60000-60100",
                "masquerade_single 192.168.32.2 . tcp . 22",
                "masquerade_range 192.168.32.2 . udp . 60000-60100",
            ],
        );
        assert_eq!(observed.rules_per_chain.get("prerouting"), Some(&2));
    }

    /// Each of `expected` ("container element") is among the elements `observed` has.
    fn assert_has(observed: &Observed, expected: &[&str]) {
        let texts: Vec<String> = observed
            .elements
            .iter()
            .map(|e| format!("{} {e}", e.container()))
            .collect();
        for expected in expected {
            assert!(
                texts.contains(&expected.to_string()),
                "missing {expected}: {texts:#?}"
            );
        }
    }

    /// A real listing of the `inet` table with an IPv6 forward address (2001:db8:f::5) and
    /// the tunnel's prefix fd96:6980:bb32::/64: the IPv6 twins parse into IPv6 elements.
    #[test]
    fn parses_the_ipv6_twins() {
        let observed =
            parse(include_str!("observed-inet-sample.json")).expect("parse the inet listing");
        assert_has(
            &observed,
            &[
                "dnat_addr 10.16.0.5 . tcp . 22 : 192.168.32.2",
                "dnat_addr6 2001:db8:f::5 . tcp . 2222 : fd96:6980:bb32::2",
                "dnat_port6 2001:db8:f::5 . tcp . 2222 : 22",
                "dnat_range6 2001:db8:f::5 . udp . 60000-60010 : fd96:6980:bb32::2",
                "allowed 10.16.0.5 . tcp . 22 . 192.0.2.0/24",
                "allowed6 2001:db8:f::5 . tcp . 22 . 2001:db8:c::/48",
                "restricted6 2001:db8:f::5 . tcp . 22",
                "closed_anchors6 2001:db8:f::5",
                "forward_addrs6 2001:db8:f::5",
                "masquerade_single6 2001:db8:f::5 . tcp . 2222",
                "count_range6 2001:db8:f::5 . udp . 60000-60010",
                "reply_single6 2001:db8:f::5 . tcp . 22",
            ],
        );
        assert_eq!(observed.rules_per_chain.get("prerouting"), Some(&4));
        assert_eq!(observed.handshakes_dropped, Some(0));
    }

    /// Without /etc/protocols (no netbase) nft lists protocols by number.
    #[test]
    fn protocols_by_number_are_the_same_elements() {
        let by_number = SAMPLE
            .replace("\"tcp\", ", "6, ")
            .replace("\"udp\", ", "17, ");
        assert_ne!(by_number, SAMPLE, "the sample names its protocols");
        assert_eq!(parse(&by_number), parse(SAMPLE));
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_table() {
        assert!(parse("{}").is_err());
        assert!(parse("not json").is_err());
    }
}
