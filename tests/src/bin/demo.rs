//! The newcomer's demo: builds the namespace internet, runs the real roamgw flow on the
//! "droplet" and `roamer` on the laptop, shows an outside client reaching the laptop behind
//! CGNAT through the floating IP, moves the laptop to a new address, and tears everything
//! down. Run it with `bash scripts/demo` (as root).

use std::time::{Duration, Instant};

use roamgw_e2e::{GatewayMode, Laptop, Scenario, FLOATING_IP, PUBLIC_IP};

fn main() {
    println!("[#] building a small internet in network namespaces:");
    println!("      client 192.0.2.2 -- router + cloud provider NAT (floating IP {FLOATING_IP} -> anchor 10.16.0.5)");
    println!("      -- droplet {PUBLIC_IP} (+ anchor 10.16.0.5)");
    println!("      -- CGNAT 198.51.100.2 -- laptop 100.64.0.2");
    let mut demo = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], true);
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
    println!("[#] roamer status   (on the laptop)");
    print!(
        "{}",
        String::from_utf8_lossy(&demo.roamer(&["status"]).stdout)
    );
    println!("[#] the laptop moves to another network behind the CGNAT (new address 100.64.0.3)");
    let moved = Instant::now();
    demo.bed.move_laptop("100.64.0.3");
    match demo.bed.time_until_banner(
        &format!("{FLOATING_IP}:22"),
        "roamer",
        moved,
        Duration::from_secs(20),
    ) {
        Some(took) => println!(
            "[#] client -> {FLOATING_IP}:22 works again {} ms after the move",
            took.as_millis()
        ),
        None => println!("[#] client -> {FLOATING_IP}:22 did not come back within 20 s"),
    }
    demo.stop_daemon();
    println!("[#] tearing the namespace internet down");
}
