//! What changes under the daemon, as events: nftables transactions by others that touch our
//! table (netlink, NFNLGRP_NFTABLES), firewalld reloads and restarts (D-Bus signals), and links
//! and addresses coming and going (rtnetlink). Each watcher runs on a thread of its own and
//! sends a [`Drift`]; the daemon debounces them and repairs.
//!
//! Our own nftables transactions are told apart by their generation: the kernel numbers every
//! committed transaction, the notification of a commit carries its number, and the daemon
//! reads the number before and after each of its own writes ([`generation`]).

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use tracing::{debug, warn};

/// Something that may have broken the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// A committed nftables transaction touched our table; `None`: notifications were lost
    /// (socket overrun), so it may have.
    Ruleset { generation: Option<u32> },
    /// firewalld reloaded (its runtime config rebuilt from the permanent one), or (re)started.
    Firewalld(&'static str),
    /// A link or an address went away.
    Network(roamgw_wg::netlink::NetworkChange),
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Ruleset {
                generation: Some(g),
            } => write!(
                f,
                "nftables transaction {g} by another process touched our table"
            ),
            Drift::Ruleset { generation: None } => {
                f.write_str("nftables notifications overran: the table may have changed")
            }
            Drift::Firewalld(what) => write!(f, "firewalld {what}"),
            Drift::Network(change) => f.write_str(change.describe()),
        }
    }
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNLGRP_NFTABLES: u32 = 7;
const NFT_MSG_NEWGEN: u8 = 15;
const NFT_MSG_GETGEN: u8 = 16;
/// The first attribute of every nftables object message is its table's name; of NEWGEN, the
/// generation id (big-endian u32).
const NFTA_TABLE_NAME_OR_GEN_ID: u16 = 1;
const NLMSG_HDR: usize = 16;
const NFGENMSG: usize = 4;
const NLM_F_REQUEST: u16 = 1;
const NFPROTO_IPV4: u8 = 2;
const ENOBUFS: i32 = 105;

/// One thing a batch of nftables notifications says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// An object of the table we watch changed (in the transaction being committed).
    Touched,
    /// A transaction was committed, with this generation.
    Committed(u32),
}

/// The attributes of one netlink message payload after its family header: (type, value).
fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        let value = &data[4..len];
        data = data.get((len + 3) & !3..).unwrap_or(&[]);
        Some((kind, value))
    })
}

/// What a buffer of nftables netlink messages says about table `table` of family `family`.
pub fn parse_notifications(mut buffer: &[u8], table: &str, family: u8) -> Vec<Notice> {
    let mut notices = Vec::new();
    while buffer.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
        if len < NLMSG_HDR || len > buffer.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buffer[4], buffer[5]]);
        let message = &buffer[NLMSG_HDR..len];
        buffer = buffer.get((len + 3) & !3..).unwrap_or(&[]);
        if kind >> 8 != NFNL_SUBSYS_NFTABLES || message.len() < NFGENMSG {
            continue;
        }
        let first = attributes(&message[NFGENMSG..])
            .find(|(attribute, _)| *attribute == NFTA_TABLE_NAME_OR_GEN_ID)
            .map(|(_, value)| value);
        if (kind & 0xff) as u8 == NFT_MSG_NEWGEN {
            if let Some(&[a, b, c, d]) = first {
                notices.push(Notice::Committed(u32::from_be_bytes([a, b, c, d])));
            }
        } else if message[0] == family
            && first.is_some_and(|name| name.split(|&b| b == 0).next() == Some(table.as_bytes()))
        {
            notices.push(Notice::Touched);
        }
    }
    notices
}

/// The generation of the committed nftables ruleset: it grows by one with every committed
/// transaction. `None` when it cannot be read (no CAP_NET_ADMIN).
pub fn generation() -> Option<u32> {
    let socket = Socket::new(NETLINK_NETFILTER).ok()?;
    socket.connect(&SocketAddr::new(0, 0)).ok()?;
    let mut request = Vec::with_capacity(NLMSG_HDR + NFGENMSG);
    let total = (NLMSG_HDR + NFGENMSG) as u32;
    request.extend_from_slice(&total.to_ne_bytes());
    request
        .extend_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | u16::from(NFT_MSG_GETGEN)).to_ne_bytes());
    request.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    request.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    request.extend_from_slice(&[0, 0, 0, 0]); // nfgenmsg: AF_UNSPEC, version 0, res_id 0
    socket.send(&request, 0).ok()?;
    let mut reply = vec![0u8; 4096];
    let n = socket.recv(&mut &mut reply[..], 0).ok()?;
    parse_notifications(&reply[..n], "", 0)
        .into_iter()
        .find_map(|notice| match notice {
            Notice::Committed(generation) => Some(generation),
            Notice::Touched => None,
        })
}

/// Watches nftables for committed transactions that touch table `ip <table>` and calls
/// `on_drift` once per such transaction. Returns once subscribed.
pub fn watch_ruleset(
    table: &'static str,
    on_drift: impl Fn(Drift) + Send + 'static,
) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.add_membership(NFNLGRP_NFTABLES)?;
    // A `flush ruleset`, or our own start with 10,000 forwards, is many messages at once: 16 MB
    // (forced past net.core.rmem_max; we have CAP_NET_ADMIN) holds ~80,000 of them.
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, 16 * 1024 * 1024).is_err() {
        let _ = socket.set_rx_buf_sz(16 * 1024 * 1024);
    }
    std::thread::Builder::new()
        .name("nft-watch".into())
        .spawn(move || {
            let mut touched = false;
            let mut buffer = vec![0u8; 256 * 1024];
            loop {
                let n = match socket.recv(&mut &mut buffer[..], 0) {
                    Ok(n) => n,
                    Err(e) if e.raw_os_error() == Some(ENOBUFS) => {
                        touched = false;
                        on_drift(Drift::Ruleset { generation: None });
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        warn!("nftables watch stopped: {e}; drift is found by the periodic check only");
                        return;
                    }
                };
                for notice in parse_notifications(&buffer[..n], table, NFPROTO_IPV4) {
                    match notice {
                        Notice::Touched => touched = true,
                        Notice::Committed(generation) if touched => {
                            touched = false;
                            on_drift(Drift::Ruleset {
                                generation: Some(generation),
                            });
                        }
                        Notice::Committed(_) => {}
                    }
                }
            }
        })?;
    Ok(())
}

const FIREWALLD: &str = "org.fedoraproject.FirewallD1";

/// Watches the system bus for firewalld's `Reloaded` signal and for firewalld (re)starting.
/// Without a system bus there is nothing to watch (and no firewalld): not an error.
pub fn watch_firewalld(on_drift: impl Fn(Drift) + Send + Sync + 'static) {
    let conn = match zbus::blocking::Connection::system() {
        Ok(conn) => conn,
        Err(e) => {
            debug!("no system bus ({e}): not watching firewalld");
            return;
        }
    };
    let on_drift = std::sync::Arc::new(on_drift);
    let rules = [
        (
            format!("type='signal',interface='{FIREWALLD}',member='Reloaded'"),
            "reloaded",
        ),
        (
            format!(
                "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',\
                 member='NameOwnerChanged',arg0='{FIREWALLD}'"
            ),
            "started or stopped",
        ),
    ];
    for (rule, what) in rules {
        let messages = match zbus::blocking::MessageIterator::for_match_rule(
            rule.as_str(),
            &conn,
            Some(64),
        ) {
            Ok(messages) => messages,
            Err(e) => {
                warn!("cannot watch firewalld ({e}): its reloads are found by the periodic check only");
                continue;
            }
        };
        let on_drift = std::sync::Arc::clone(&on_drift);
        // The stream does not keep the connection open by itself.
        let conn = conn.clone();
        let spawned = std::thread::Builder::new()
            .name("firewalld-watch".into())
            .spawn(move || {
                let _conn = conn;
                for message in messages {
                    if message.is_ok() {
                        on_drift(Drift::Firewalld(what));
                    }
                }
            });
        if let Err(e) = spawned {
            warn!("cannot watch firewalld: {e}");
        }
    }
}

/// Watches links, addresses and routing rules (ours included: our interface vanishing is the
/// point).
pub fn watch_network(
    on_drift: impl Fn(Drift) + Send + 'static,
) -> Result<(), roamgw_wg::netlink::NetlinkError> {
    use roamgw_wg::netlink::NetworkChange as C;
    roamgw_wg::netlink::watch_network(None, move |change| {
        // Only what goes away can break a forward (an address that appears cannot, and most
        // are our own: the tunnel's). A rule: the anchor gateway's, which systemd-networkd
        // (Ubuntu droplets) drops as foreign whenever it configures a link.
        if matches!(change, C::LinkRemoved | C::AddressRemoved | C::RuleRemoved) {
            on_drift(Drift::Network(change));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn message(msg: u8, family: u8, attributes: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = attributes.concat();
        let len = NLMSG_HDR + NFGENMSG + body.len();
        let mut out = Vec::new();
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | u16::from(msg)).to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(&[family, 0, 0, 0]);
        out.extend_from_slice(&body);
        out
    }

    fn table(name: &str) -> Vec<u8> {
        attribute(1, format!("{name}\0").as_bytes())
    }

    fn newgen(generation: u32) -> Vec<u8> {
        message(
            NFT_MSG_NEWGEN,
            0,
            &[
                attribute(1, &generation.to_be_bytes()),
                attribute(2, &4242u32.to_be_bytes()),
                attribute(3, b"nft\0"),
            ],
        )
    }

    #[test]
    fn notifications_table() {
        const DELTABLE: u8 = 2;
        const NEWSETELEM: u8 = 12;
        const DELRULE: u8 = 8;
        // (what, messages, what they say)
        type Case = (&'static str, Vec<Vec<u8>>, Vec<Notice>);
        let cases: Vec<Case> = vec![
            (
                "our table deleted",
                vec![
                    message(DELTABLE, NFPROTO_IPV4, &[table("roamgw")]),
                    newgen(7),
                ],
                vec![Notice::Touched, Notice::Committed(7)],
            ),
            (
                "an element of ours",
                vec![
                    message(
                        NEWSETELEM,
                        NFPROTO_IPV4,
                        &[table("roamgw"), attribute(2, b"dnat\0")],
                    ),
                    newgen(8),
                ],
                vec![Notice::Touched, Notice::Committed(8)],
            ),
            (
                "someone else's table",
                vec![
                    message(DELRULE, NFPROTO_IPV4, &[table("filter")]),
                    newgen(9),
                ],
                vec![Notice::Committed(9)],
            ),
            (
                "same name, inet family",
                vec![message(DELTABLE, 1, &[table("roamgw")]), newgen(10)],
                vec![Notice::Committed(10)],
            ),
            (
                "a prefix of our name is not our name",
                vec![message(DELTABLE, NFPROTO_IPV4, &[table("roam")])],
                vec![],
            ),
            ("truncated", vec![newgen(11)[..10].to_vec()], vec![]),
        ];
        for (what, messages, want) in cases {
            assert_eq!(
                parse_notifications(&messages.concat(), "roamgw", NFPROTO_IPV4),
                want,
                "{what}"
            );
        }
    }
}
