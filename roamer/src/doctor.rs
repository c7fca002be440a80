//! `roamer doctor`: what is wrong on the laptop, one finding a line, each with its fix. The
//! system is read once into [`Facts`]; [`evaluate`] is pure and table-tested.

use roamgw_common::doctor::Finding;
use roamgw_common::replies;
use roamgw_common::state::RoamerConfig;
use roamgw_wg::netlink::Links;

use crate::config;
use crate::health::Health;
use crate::status::Report;

/// What `roamer doctor` reads from the laptop.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub interface: String,
    pub running: bool,
    pub health: Option<Health>,
    /// Warnings of the config (key modes, subnet collisions, keepalive).
    pub config_warnings: Vec<String>,
    /// Rules that send replies into the tunnel: by source, by mark.
    pub reply_rules: usize,
    pub udp_reply_table: bool,
    /// Egress destinations, and the rules that route them (3 when complete).
    pub egress: usize,
    pub egress_rules: usize,
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
        out.push(if f.reply_rules >= 2 {
            Finding::ok("replies", "routed into the tunnel by source and mark")
        } else {
            Finding::fail(
                "replies",
                format!(
                    "{} of 2 reply rules (priority {}): clients of forwards that keep their address get no answer",
                    f.reply_rules,
                    replies::RULE_PRIORITY
                ),
                "restart the roamer (systemctl restart roamer), which installs them",
            )
        });
        out.push(match (f.udp_reply_table, f.nft_available) {
            (true, _) => Finding::ok("udp_replies", "table for UDP replies loaded"),
            (false, false) => Finding::warn(
                "udp_replies",
                "no nft: UDP servers bound to 0.0.0.0 answer kept clients from the laptop's own address",
                "install nftables and restart the roamer",
            ),
            (false, true) => Finding::warn(
                "udp_replies",
                "the table for UDP replies is missing",
                "restart the roamer",
            ),
        });
        if f.egress > 0 {
            out.push(if f.egress_rules >= 3 {
                Finding::ok(
                    "egress",
                    format!("{} destination(s) through the gateway", f.egress),
                )
            } else {
                Finding::fail(
                    "egress",
                    format!("{} of 3 egress rules", f.egress_rules),
                    "restart the roamer",
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
    let routes = roamgw_common::routes::system_routes();
    let config_warnings = config::load(config_path, &routes)
        .map(|loaded| loaded.warnings)
        .unwrap_or_else(|e| vec![e.to_string()]);
    let links = Links::connect().ok();
    let count = |priority: u32, table: u32| {
        links
            .as_ref()
            .and_then(|l| l.count_rules(priority, table).ok())
            .unwrap_or(0)
    };
    let table = replies::table(&config.interface);
    let egress_table = replies::egress_table(&config.interface);
    let main = roamgw_wg::netlink::MAIN_TABLE;
    let nft = |args: &[&str]| crate::run::nft(args, None).is_ok();
    Facts {
        interface: config.interface.to_string(),
        running: report.running,
        health: report.health,
        config_warnings,
        reply_rules: count(replies::RULE_PRIORITY, table),
        udp_reply_table: nft(&[
            "list",
            "table",
            "ip",
            &replies::nft_table(&config.interface),
        ]),
        egress: config.egress().len(),
        egress_rules: count(replies::EGRESS_PRIORITY, main)
            + count(replies::EGRESS_PRIORITY + 1, main)
            + count(replies::EGRESS_PRIORITY + 2, egress_table),
        nft_available: nft(&["--version"]),
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
            reply_rules: 2,
            udp_reply_table: true,
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
                |f| f.reply_rules = 1,
                "replies",
                Level::Fail,
            ),
            (
                "no nft",
                |f| (f.udp_reply_table, f.nft_available) = (false, false),
                "udp_replies",
                Level::Warn,
            ),
            (
                "egress rules gone",
                |f| (f.egress, f.egress_rules) = (1, 0),
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
