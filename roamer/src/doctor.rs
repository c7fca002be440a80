//! `roamer doctor`: what is wrong on the laptop, one finding a line, each with its fix. The
//! system is read once into [`Facts`]; [`evaluate`] is pure and table-tested.

use roamgw_common::doctor::Finding;
use roamgw_common::replies;
use roamgw_common::state::RoamerConfig;
use roamgw_wg::netlink::Links;

use crate::config;
use crate::health::Health;
use crate::routing::{self, Installed, Repair, Wanted, EGRESS_RULES};
use crate::status::Report;

/// Said when part of the laptop's routing is missing.
const PUT_BACK: &str = "a running roamer puts it back within 10 s (its log says \"put back\"); if it stays missing, see that log (journalctl -u roamer) or restart the roamer";

/// What `roamer doctor` reads from the laptop.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub interface: String,
    pub running: bool,
    pub health: Option<Health>,
    /// Warnings of the config (key modes, subnet collisions, keepalive).
    pub config_warnings: Vec<String>,
    /// The laptop's routing for the tunnel, as found.
    pub installed: Installed,
    /// Egress destinations configured (distinct networks).
    pub egress: usize,
    /// The tunnel has an IPv6 address (its replies have a rule and route of their own).
    pub ipv6_replies: bool,
    pub nft_available: bool,
    pub kernel_wireguard: bool,
}

pub fn evaluate(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(
        f.config_warnings
            .iter()
            .map(|w| Finding::warn("config", w.clone(), "see the warning: it names the change")),
    );
    if f.config_warnings.is_empty() {
        out.push(Finding::ok("config", "valid, no warnings"));
    }
    if !f.running {
        out.push(Finding::warn(
            "tunnel",
            format!("roamer is not running on {}", f.interface),
            "roamer up (or systemctl start roamer)",
        ));
    } else {
        out.push(match &f.health {
            Some(Health::Up) => Finding::ok("tunnel", "up: the gateway answers"),
            Some(other) => Finding::warn(
                "tunnel",
                format!("{other}"),
                "roamer status tells why; check the laptop's network and the gateway (roamgw doctor there)",
            ),
            None => Finding::warn("tunnel", "no health yet", "wait a few seconds, then roamer status"),
        });
        let wanted = Wanted {
            udp_reply_table: f.nft_available,
            egress_destinations: f.egress,
            ipv6_replies: f.ipv6_replies,
        };
        let missing = routing::repairs(&f.installed, &wanted);
        let found = &f.installed;
        out.push(if !missing.contains(&Repair::Replies) {
            Finding::ok("replies", "routed into the tunnel by source and mark")
        } else {
            Finding::fail(
                "replies",
                format!(
                    "{} of {} reply rules (priority {}){}: clients of forwards that keep their address get no answer",
                    found.reply_rules,
                    wanted.reply_rules(),
                    replies::RULE_PRIORITY,
                    if found.reply_routes == 0 { ", their table empty" } else { "" },
                ),
                PUT_BACK,
            )
        });
        out.push(match (found.udp_reply_table, f.nft_available) {
            (true, _) => Finding::ok("udp_replies", "table for UDP replies loaded"),
            (false, false) => Finding::warn(
                "udp_replies",
                "no nft: UDP servers bound to 0.0.0.0 answer kept clients from the laptop's own address",
                "install nftables and restart the roamer",
            ),
            (false, true) => Finding::warn(
                "udp_replies",
                "the table for UDP replies is missing",
                PUT_BACK,
            ),
        });
        if f.egress > 0 {
            out.push(if !missing.contains(&Repair::Egress) {
                Finding::ok(
                    "egress",
                    format!("{} destination(s) through the gateway", f.egress),
                )
            } else {
                Finding::fail(
                    "egress",
                    format!(
                        "{} of {EGRESS_RULES} egress rules, {} of {} routes",
                        found.egress_rules, found.egress_routes, f.egress
                    ),
                    PUT_BACK,
                )
            });
        }
    }
    out.push(roamgw_common::doctor::wireguard_kind(f.kernel_wireguard));
    out
}

/// Reads the laptop.
pub fn gather(config: &RoamerConfig, config_path: &std::path::Path) -> Facts {
    let report = Report::gather(config);
    let routes = roamgw_common::routes::Routes::system();
    let config_warnings = config::load(config_path, &routes)
        .map(|loaded| loaded.warnings)
        .unwrap_or_else(|e| vec![e.to_string()]);
    let installed = Links::connect()
        .and_then(|links| Installed::read(&links, config))
        .unwrap_or_default();
    Facts {
        interface: config.interface.to_string(),
        running: report.running,
        health: report.health,
        config_warnings,
        installed,
        egress: Wanted::of(config, true).egress_destinations,
        ipv6_replies: config.address6.is_some(),
        nft_available: routing::nft(&["--version"], None).is_ok(),
        kernel_wireguard: roamgw_wg::kernel_available(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roamgw_common::doctor::Level;
    use roamgw_common::doctor::{assert_each_break_is_found, Break};

    fn healthy() -> Facts {
        Facts {
            interface: "roamgw0".into(),
            running: true,
            health: Some(Health::Up),
            installed: Installed {
                reply_rules: crate::routing::REPLY_RULES,
                reply_routes: 1,
                udp_reply_table: true,
                ..Installed::default()
            },
            nft_available: true,
            kernel_wireguard: true,
            ..Facts::default()
        }
    }

    #[test]
    fn each_broken_thing_is_one_finding() {
        assert!(evaluate(&healthy()).iter().all(|f| f.level == Level::Ok));
        let cases: &[Break<Facts>] = &[
            ("not running", |f| f.running = false, "tunnel", Level::Warn),
            (
                "stale",
                |f| f.health = Some(Health::Stale("no answer".into())),
                "tunnel",
                Level::Warn,
            ),
            (
                "reply rule gone",
                |f| f.installed.reply_rules = 1,
                "replies",
                Level::Fail,
            ),
            (
                "reply table flushed",
                |f| f.installed.reply_routes = 0,
                "replies",
                Level::Fail,
            ),
            (
                "no nft",
                |f| (f.installed.udp_reply_table, f.nft_available) = (false, false),
                "udp_replies",
                Level::Warn,
            ),
            (
                "egress rules gone",
                |f| (f.egress, f.installed.egress_rules) = (1, 0),
                "egress",
                Level::Fail,
            ),
            (
                "a config warning",
                |f| f.config_warnings = vec!["mode 644".into()],
                "config",
                Level::Warn,
            ),
        ];
        assert_each_break_is_found(healthy, evaluate, cases);
    }
}
