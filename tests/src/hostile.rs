//! Networks that are hard on the tunnel, made in the testbed's CGNAT namespace: one that
//! passes no UDP but DNS (hotel Wi-Fi), and a lossy link to the laptop. Each is one nftables
//! table of its own, so undoing it is deleting the table.

use crate::Testbed;

const NO_UDP: &str = "rg_block_udp";
const LOSS: &str = "rg_loss";

fn nft(bed: &Testbed, commands: &[String]) {
    for command in commands {
        let mut args = vec!["nft"];
        args.extend(command.split(' '));
        bed.cgn.run(&args);
    }
}

/// The CGNAT drops every UDP datagram it forwards except DNS.
pub fn block_udp(bed: &Testbed) {
    nft(
        bed,
        &[
            format!("add table inet {NO_UDP}"),
            format!("add chain inet {NO_UDP} block {{ type filter hook forward priority -10 ; }}"),
            format!(
                "add rule inet {NO_UDP} block meta l4proto udp udp dport != 53 udp sport != 53 drop"
            ),
        ],
    );
}

pub fn unblock_udp(bed: &Testbed) {
    nft(bed, &[format!("delete table inet {NO_UDP}")]);
}

/// The CGNAT drops `percent` % of what it forwards, either way, at random (the kernel here
/// has no netem).
pub fn lose(bed: &Testbed, percent: u8) {
    nft(
        bed,
        &[
            format!("add table inet {LOSS}"),
            format!("add chain inet {LOSS} lose {{ type filter hook forward priority -20 ; }}"),
            format!("add rule inet {LOSS} lose numgen random mod 100 < {percent} drop"),
        ],
    );
}

pub fn stop_losing(bed: &Testbed) {
    nft(bed, &[format!("delete table inet {LOSS}")]);
}
