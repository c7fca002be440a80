//! Running nft: list our table, apply a whole-table transaction (text, `nft -f -`), or apply
//! element changes (JSON built with the nftables crate, `nft -j -f -`). Every error carries
//! nft's own message; nothing of nft's output reaches the terminal otherwise.

use nftables::expr::{Expression, NamedExpression, Prefix, Range};
use nftables::schema::{self, NfCmd, NfListObject, NfObject, Nftables};
use nftables::types::NfFamily;

use super::model::{Element, FAMILY, LEGACY_FAMILY, TABLE};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft ({0}): install the nftables package")]
    Missing(std::io::Error),
    #[error("nft {action} failed: {message}{hint}", hint = if message.contains("Operation not permitted") { " (run as root: nft needs CAP_NET_ADMIN)" } else { "" })]
    Failed {
        action: &'static str,
        message: String,
    },
}

impl NftError {
    /// True when this user cannot use nft at all: no nft binary, or no CAP_NET_ADMIN. Commands
    /// that also work without the data plane then treat it as not up.
    pub fn is_unavailable(&self) -> bool {
        match self {
            NftError::Missing(_) => true,
            NftError::Failed { message, .. } => message.contains("Operation not permitted"),
        }
    }
}

fn nft(args: &[&str], stdin: Option<&str>, action: &'static str) -> Result<String, NftError> {
    let ran = roamgw_common::tool::run("nft", args, stdin).map_err(NftError::Missing)?;
    if !ran.success {
        return Err(NftError::Failed {
            action,
            message: ran.stderr,
        });
    }
    Ok(ran.stdout)
}

/// `nft -j list table inet roamgw`; `None` when the table does not exist.
pub fn list_table() -> Result<Option<String>, NftError> {
    list_named(FAMILY, TABLE)
}

/// `nft -j list table <family> <table>` of one of our tables; `None` when it does not exist.
pub fn list_named(family: &str, table: &str) -> Result<Option<String>, NftError> {
    match nft(&["-j", "list", "table", family, table], None, "list table") {
        Ok(json) => Ok(Some(json)),
        Err(NftError::Failed { message, .. }) if message.contains("No such file or directory") => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `nft -j list ruleset`: every table, read only (`roamgw doctor` looks for conflicts).
pub fn list_ruleset() -> Result<String, NftError> {
    nft(&["-j", "list", "ruleset"], None, "list ruleset")
}

/// Applies a text transaction atomically (`nft -f -`).
pub fn apply_text(transaction: &str) -> Result<(), NftError> {
    nft(&["-f", "-"], Some(transaction), "apply").map(|_| ())
}

/// Removes our table, and the IPv4-only one of earlier versions; a table that is already gone
/// is fine.
pub fn delete_table() -> Result<(), NftError> {
    apply_text(&format!(
        "{}{}",
        delete_text(FAMILY, TABLE),
        delete_text(LEGACY_FAMILY, TABLE)
    ))
}

/// Removes one of our tables; one that is already gone is fine.
pub fn delete_named(family: &str, table: &str) -> Result<(), NftError> {
    apply_text(&delete_text(family, table))
}

/// "Add then delete": the delete succeeds when the table does not exist.
pub fn delete_text(family: &str, table: &str) -> String {
    format!("table {family} {table} {{}}\ndelete table {family} {table}\n")
}

fn s(text: String) -> Expression<'static> {
    Expression::String(text.into())
}

fn port(p: u16) -> Expression<'static> {
    Expression::Number(u32::from(p))
}

fn ports(range: roamgw_common::PortRange) -> Expression<'static> {
    if range.is_single() {
        port(range.first())
    } else {
        Expression::Range(Box::new(Range {
            range: [port(range.first()), port(range.last())],
        }))
    }
}

fn concat(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(items))
}

fn key3(
    anchor: std::net::IpAddr,
    protocol: roamgw_common::Protocol,
    p: Expression<'static>,
) -> Expression<'static> {
    concat(vec![
        s(anchor.to_string()),
        s(protocol.as_str().to_string()),
        p,
    ])
}

fn pair(key: Expression<'static>, value: Expression<'static>) -> Expression<'static> {
    Expression::List(vec![key, value])
}

/// The JSON expression of an element (a map element is a [key, value] pair).
fn element_expr(element: &Element) -> Expression<'static> {
    match element {
        Element::DnatAddr {
            anchor,
            protocol,
            port: p,
            to,
        } => pair(key3(*anchor, *protocol, port(*p)), s(to.to_string())),
        Element::DnatPort {
            anchor,
            protocol,
            port: p,
            to_port,
        } => pair(key3(*anchor, *protocol, port(*p)), port(*to_port)),
        Element::DnatRange {
            anchor,
            protocol,
            ports: r,
            to,
        } => pair(key3(*anchor, *protocol, ports(*r)), s(to.to_string())),
        Element::CountSingle {
            anchor,
            protocol,
            port: p,
        }
        | Element::ReplySingle {
            anchor,
            protocol,
            port: p,
        } => key3(*anchor, *protocol, port(*p)),
        Element::CountRange {
            anchor,
            protocol,
            ports: r,
        }
        | Element::ReplyRange {
            anchor,
            protocol,
            ports: r,
        } => key3(*anchor, *protocol, ports(*r)),
        Element::Restricted {
            anchor,
            protocol,
            ports: r,
        } => key3(*anchor, *protocol, ports(*r)),
        Element::Allowed {
            anchor,
            protocol,
            ports: r,
            source,
        } => concat(vec![
            s(anchor.to_string()),
            s(protocol.as_str().to_string()),
            ports(*r),
            Expression::Named(NamedExpression::Prefix(Prefix {
                addr: Box::new(s(source.network().to_string())),
                len: u32::from(source.prefix_len()),
            })),
        ]),
        Element::ClosedAnchor(a) | Element::ForwardAddr(a) => s(a.to_string()),
        Element::Egress { from, to } => concat(vec![
            s(from.to_string()),
            Expression::Named(NamedExpression::Prefix(Prefix {
                addr: Box::new(s(to.network().to_string())),
                len: u32::from(to.prefix_len()),
            })),
        ]),
        Element::MasqueradeSingle {
            anchor,
            protocol,
            port: p,
        } => key3(*anchor, *protocol, port(*p)),
        Element::MasqueradeRange {
            anchor,
            protocol,
            ports: r,
        } => key3(*anchor, *protocol, ports(*r)),
    }
}

fn list_object(element: &Element) -> NfListObject<'static> {
    NfListObject::Element(schema::Element {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: element.container().into(),
        elem: vec![element_expr(element)].into(),
    })
}

/// The JSON batch for an element update: removals, then additions, in one transaction.
pub fn update_batch(remove: &[Element], add: &[Element]) -> Nftables<'static> {
    let objects: Vec<NfObject<'static>> = remove
        .iter()
        .map(|e| NfObject::CmdObject(NfCmd::Delete(list_object(e))))
        .chain(
            add.iter()
                .map(|e| NfObject::CmdObject(NfCmd::Add(list_object(e)))),
        )
        .collect();
    Nftables {
        objects: objects.into(),
    }
}

/// Applies element changes atomically: the nftables crate's JSON batch, sent through our own
/// `nft -j -f -` so that nft's stderr is captured (the crate lets it through to the user's
/// terminal) and becomes the error's message.
pub fn apply_update(remove: &[Element], add: &[Element]) -> Result<(), NftError> {
    let batch =
        serde_json::to_string(&update_batch(remove, add)).map_err(|e| NftError::Failed {
            action: "element update",
            message: e.to_string(),
        })?;
    nft(&["-j", "-f", "-"], Some(&batch), "element update").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn update_batch_serializes_like_nft_lists_it() {
        let anchor = Ipv4Addr::new(10, 16, 0, 5);
        let elements = crate::dataplane::nftables::model::forward_elements(
            anchor.into(),
            &"60000-60100/udp".parse().expect("spec"),
            Ipv4Addr::new(192, 168, 32, 2).into(),
            &["192.0.2.0/24".parse().expect("net")],
        );
        let json = serde_json::to_string(&update_batch(&[], &elements)).expect("json");
        for expected in [
            r#""name":"count_range","elem":[{"concat":["10.16.0.5","udp",{"range":[60000,60100]}]}]"#,
            r#""name":"dnat_range","elem":[[{"concat":["10.16.0.5","udp",{"range":[60000,60100]}]},"192.168.32.2"]]"#,
            r#"{"prefix":{"addr":"192.0.2.0","len":24}}"#,
        ] {
            assert!(json.contains(expected), "missing {expected} in {json}");
        }
    }
}
