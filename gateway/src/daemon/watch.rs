//! What changes under the daemon, as events: nftables transactions by others that touch our
//! table (netlink, NFNLGRP_NFTABLES), firewalld reloads and restarts (D-Bus signals), and links
//! and addresses coming and going (rtnetlink). Each watcher runs on a thread of its own and
//! sends a [`Drift`]; the daemon debounces them and repairs.
//!
//! Our own nftables transactions are told apart by their generation
//! (roamgw_wg::nftwatch::generation, read before and after each of our writes).

use std::io;

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

/// Watches nftables for committed transactions that touch table `inet <table>` and calls
/// `on_drift` once per such transaction. Returns once subscribed.
pub fn watch_ruleset(
    table: &'static str,
    on_drift: impl Fn(Drift) + Send + 'static,
) -> io::Result<()> {
    roamgw_wg::nftwatch::watch_commits(Some(table), move |generation| {
        on_drift(Drift::Ruleset { generation })
    })
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
