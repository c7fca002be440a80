//! Key rotation with `roamgw run` up: the roamer's key (the laptop is off until it has its new
//! config, then back), then the gateway's (the same for every roamer). Forwards stay.

use std::time::Duration;

use roamgw_e2e::{wait_until, GatewayMode, Laptop, Scenario, FLOATING_IP};

fn forward_works(s: &Scenario) -> bool {
    s.banner(&format!("{FLOATING_IP}:22")).as_deref() == Some("roamer")
}

/// `roamer` again with the config the gateway prints now; the forward works within 10 s.
fn new_config_works(s: &Scenario, what: &str) {
    s.roamer_down();
    s.start_roamer();
    assert!(
        wait_until(Duration::from_secs(10), || forward_works(s)),
        "after {what}, with the new config:\nroamer:\n{}\ndaemon:\n{}",
        s.bed.log("roamer.log"),
        s.bed.log("daemon.log")
    );
}

#[test]
fn rotated_keys_take_effect_and_forwards_stay() {
    let s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    s.forward_22_works();
    s.ok(&["rotate-key", "laptop"]);
    // The old key no longer opens the tunnel: the laptop's old session is gone with its peer.
    assert!(
        wait_until(Duration::from_secs(5), || !forward_works(&s)),
        "the old key still works"
    );
    new_config_works(&s, "rotate-key laptop");
    s.ok(&["rotate-key", "--gateway"]);
    new_config_works(&s, "rotate-key --gateway");
    assert!(s.ok(&["list"]).contains("22/tcp"));
}
