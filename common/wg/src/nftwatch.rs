//! nftables change notifications (netlink, NFNLGRP_NFTABLES): which committed transactions
//! touched a table, and the ruleset's generation. The gateway repairs its table when another
//! process touched it; the roamer probes the gateway when the laptop's firewall changed (a
//! firewall that starts tracking connections refuses the tunnel's packets from the gateway
//! until the laptop sends one) and looks at its own table.
//!
//! Our own transactions are told apart by their generation: the kernel numbers every committed
//! transaction, the notification of a commit carries its number, and the writer reads the
//! number before and after each of its own writes ([`generation`]).

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

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
/// The family of roamgw's table (`inet roamgw`).
pub const NFPROTO_INET: u8 = 1;
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

/// Watches nftables for committed transactions and calls `on_commit` with the generation of
/// each one that touched table `inet <table>` (every one when `table` is `None`), and with
/// `None` when notifications were lost (socket overrun), so one may have. Returns once
/// subscribed.
pub fn watch_commits(
    table: Option<&'static str>,
    on_commit: impl Fn(Option<u32>) + Send + 'static,
) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.add_membership(NFNLGRP_NFTABLES)?;
    // A `flush ruleset`, or the gateway's own start with 10,000 forwards, is many messages at
    // once: 16 MB (forced past net.core.rmem_max; we have CAP_NET_ADMIN) holds ~80,000 of them.
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
                        on_commit(None);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!("nftables watch stopped: {e}; drift is found by the periodic check only");
                        return;
                    }
                };
                for notice in parse_notifications(&buffer[..n], table.unwrap_or(""), NFPROTO_INET) {
                    match notice {
                        Notice::Touched => touched = true,
                        Notice::Committed(generation) if touched || table.is_none() => {
                            touched = false;
                            on_commit(Some(generation));
                        }
                        Notice::Committed(_) => {}
                    }
                }
            }
        })?;
    Ok(())
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
                    message(DELTABLE, NFPROTO_INET, &[table("roamgw")]),
                    newgen(7),
                ],
                vec![Notice::Touched, Notice::Committed(7)],
            ),
            (
                "an element of ours",
                vec![
                    message(
                        NEWSETELEM,
                        NFPROTO_INET,
                        &[table("roamgw"), attribute(2, b"dnat\0")],
                    ),
                    newgen(8),
                ],
                vec![Notice::Touched, Notice::Committed(8)],
            ),
            (
                "someone else's table",
                vec![
                    message(DELRULE, NFPROTO_INET, &[table("filter")]),
                    newgen(9),
                ],
                vec![Notice::Committed(9)],
            ),
            (
                "same name, ip family (the IPv4-only table of earlier versions)",
                vec![message(DELTABLE, 2, &[table("roamgw")]), newgen(10)],
                vec![Notice::Committed(10)],
            ),
            (
                "a prefix of our name is not our name",
                vec![message(DELTABLE, NFPROTO_INET, &[table("roam")])],
                vec![],
            ),
            ("truncated", vec![newgen(11)[..10].to_vec()], vec![]),
        ];
        for (what, messages, want) in cases {
            assert_eq!(
                parse_notifications(&messages.concat(), "roamgw", NFPROTO_INET),
                want,
                "{what}"
            );
        }
    }
}
