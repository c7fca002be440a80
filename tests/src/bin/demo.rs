//! The newcomer's demo: builds the namespace internet, runs the real roamgw flow on the
//! "droplet", shows an outside client reaching the laptop behind CGNAT through the floating
//! IP, and tears everything down. Run it with `bash scripts/demo` (as root).

use roamgw_e2e::{GatewayMode, Scenario, FLOATING_IP, PUBLIC_IP};

fn main() {
    println!("[#] building a small internet in network namespaces:");
    println!("      client 192.0.2.2 -- router + cloud provider NAT (floating IP {FLOATING_IP} -> anchor 10.16.0.5)");
    println!("      -- droplet {PUBLIC_IP} (+ anchor 10.16.0.5)");
    println!("      -- CGNAT 198.51.100.2 -- laptop 100.64.0.2");
    let mut demo = Scenario::build(GatewayMode::Daemon, &[], true);
    demo.ok(&["add-port", "22"]);
    println!(
        "[#] servers on port 22: the laptop answers \"roamer\", the droplet answers \"droplet\""
    );
    for (what, addr) in [
        (
            "the floating IP, the laptop's address",
            format!("{FLOATING_IP}:22"),
        ),
        ("the droplet's own public IP", format!("{PUBLIC_IP}:22")),
    ] {
        let banner = demo.banner(&addr).unwrap_or_else(|| "(no answer)".into());
        println!("[#] client -> {addr} ({what}): {banner}");
    }
    demo.ok(&["list"]);
    demo.ok(&["status"]);
    demo.stop_daemon();
    println!("[#] tearing the namespace internet down");
}
