//! The engine with fakes: what happens when a change half-fails, without root.

use roamgw_common::{PrivateKey, PublicKey};

use super::fakes::*;
use super::*;

fn no_endpoints(_: &PublicKey) -> Option<std::net::SocketAddr> {
    None
}

/// A daemon's engine, up: device with its peers, plane at the fixture's forwards.
fn daemon_up() -> (Engine, Shared) {
    let world = Shared::default();
    let mut engine = engine(Role::Daemon, &world);
    engine.bring_up(&no_endpoints).expect("up");
    (engine, world)
}

fn add_roamer(name: &str) -> StateChange {
    StateChange::AddRoamer {
        name: name.parse().expect("name"),
        public_key: PrivateKey::generate().expect("key").public_key(),
        address: None,
    }
}

#[test]
fn a_change_goes_live_is_saved_and_ends_its_flows() {
    let (mut engine, world) = daemon_up();
    let done = engine.apply(&add_port("8080")).expect("applied");
    assert!(done.live, "{done:?}");
    let want = forward_keys(engine.state());
    assert!(want.iter().any(|k| k.starts_with("8080")), "{want:?}");
    with(&world, |w| {
        assert_eq!(w.plane.as_ref(), Some(&want), "the plane has it");
        assert_eq!(
            w.saved.as_ref().map(forward_keys),
            Some(want.clone()),
            "saved"
        );
        assert_eq!(w.flows_ended, 1);
    });
}

#[test]
fn a_refusal_touches_nothing() {
    let (mut engine, world) = daemon_up();
    let before = engine.state().clone();
    let calls = with(&world, |w| w.plane_calls.len());
    let e = engine
        .apply(&add_port("22"))
        .expect_err("22 is forwarded already");
    assert_eq!(e.fault, Fault::Input, "{e}");
    assert_eq!(engine.state(), &before);
    with(&world, |w| {
        assert!(w.saved.is_none());
        assert_eq!(w.plane_calls.len(), calls, "the plane was not asked");
    });
}

#[test]
fn a_change_the_backend_refuses_leaves_state_rules_and_device_as_they_were() {
    let (mut engine, world) = daemon_up();
    let before = engine.state().clone();
    let (rules, peers) = with(&world, |w| {
        w.refuse_plane_changes = true;
        (w.plane.clone(), w.device.peers.clone())
    });
    let e = engine
        .apply(&add_roamer("phone"))
        .expect_err("the kernel said no");
    assert_eq!(e.fault, Fault::DataPlane, "{e}");
    assert!(e.message.contains("the kernel said no"), "{e}");
    assert_eq!(engine.state(), &before, "running state kept");
    with(&world, |w| {
        assert!(w.saved.is_none(), "nothing saved");
        assert_eq!(w.plane, rules, "rules as they were");
        assert_eq!(
            w.device.peers, peers,
            "the new roamer's peer was taken out again"
        );
        assert_eq!(
            w.plane_calls.last(),
            Some(&"apply_if_up"),
            "the one rollback ran"
        );
    });
}

#[test]
fn a_device_that_fails_half_way_is_rolled_back() {
    let (mut engine, world) = daemon_up();
    let before = engine.state().clone();
    let keys = |w: &World| {
        w.device
            .peers
            .iter()
            .map(|p| p.public_key)
            .collect::<Vec<_>>()
    };
    let peers = with(&world, |w| keys(w));
    // A roamer's new key is two `set`s (the old peer out, the new one in): the second fails.
    with(&world, |w| w.device_sets_left = Some(1));
    let e = engine
        .apply(&StateChange::RotateRoamerKey {
            name: "laptop".parse().expect("name"),
            public_key: PrivateKey::generate().expect("key").public_key(),
        })
        .expect_err("the device failed half-way");
    assert_eq!(e.fault, Fault::DataPlane, "{e}");
    assert_eq!(engine.state(), &before);
    with(&world, |w| {
        assert!(w.saved.is_none());
        assert_eq!(keys(w), peers, "the old key is the peer again");
    });
}

#[test]
fn a_save_that_fails_puts_the_rules_back() {
    let (mut engine, world) = daemon_up();
    let rules = with(&world, |w| {
        w.refuse_saves = true;
        w.plane.clone()
    });
    let e = engine.apply(&add_port("8080")).expect_err("disk full");
    assert_eq!(e.fault, Fault::Files, "{e}");
    with(&world, |w| {
        assert_eq!(w.plane, rules, "the forward is not live");
        assert_eq!(w.flows_ended, 0);
    });
}

#[test]
fn a_command_without_a_daemon_saves_a_change_as_pending_when_nothing_is_up() {
    let world = Shared::default();
    let mut engine = engine(Role::Command, &world);
    let done = engine.apply(&add_port("8080")).expect("saved");
    assert!(!done.live);
    with(&world, |w| {
        assert!(w.saved.is_some());
        assert!(w.plane.is_none(), "nothing brought up");
        assert_eq!(w.devices_opened, 0, "a command never creates the device");
    });
}

#[test]
fn the_daemon_refuses_a_change_while_its_plane_is_gone() {
    let (mut engine, world) = daemon_up();
    with(&world, |w| w.plane = None);
    let e = engine.apply(&add_port("8080")).expect_err("not up");
    assert_eq!(e.fault, Fault::DataPlane);
    with(&world, |w| assert!(w.saved.is_none()));
}

#[test]
fn reconcile_repairs_drift_and_a_second_one_is_a_no_op() {
    let (mut engine, world) = daemon_up();
    // Someone flushed the ruleset and deleted the interface.
    with(&world, |w| {
        w.plane = Some(Vec::new());
        w.link_exists = false;
    });
    let repaired = engine.reconcile(&no_endpoints).expect("repaired");
    assert!(
        repaired.iter().any(|r| r.contains("created again")),
        "{repaired:?}"
    );
    with(&world, |w| {
        assert_eq!(w.devices_opened, 2);
        assert_eq!(w.plane.as_ref(), Some(&forward_keys(engine.state())));
        assert_eq!(w.device.peers.len(), engine.state().roamers.len());
    });
    assert_eq!(
        engine.reconcile(&no_endpoints).expect("again"),
        Vec::<String>::new()
    );
}

#[test]
fn a_new_device_gets_the_remembered_endpoints_and_is_poked() {
    let world = Shared::default();
    let mut engine = engine(Role::Daemon, &world);
    let endpoint: std::net::SocketAddr = "198.51.100.2:40000".parse().expect("addr");
    engine.bring_up(&|_| Some(endpoint)).expect("up");
    with(&world, |w| {
        assert!(w.device.peers.iter().all(|p| p.endpoint == Some(endpoint)));
        assert_eq!(w.poked.len(), engine.state().roamers.len());
        assert_eq!(w.identity_sets, 1);
    });
}

#[test]
fn a_quiet_standby_sends_nothing_until_it_wakes() {
    let world = Shared::default();
    let mut engine = engine(Role::Daemon, &world);
    let endpoint: std::net::SocketAddr = "198.51.100.2:40000".parse().expect("addr");
    engine.go_quiet().expect("quiet");
    engine.bring_up(&|_| Some(endpoint)).expect("up");
    engine.initiate_handshakes();
    with(&world, |w| {
        assert!(w.device.peers.iter().all(|p| p.endpoint.is_none()));
        assert!(w.poked.is_empty());
    });
    engine.wake(&|_| Some(endpoint)).expect("wakes");
    with(&world, |w| {
        assert!(w.device.peers.iter().all(|p| p.endpoint == Some(endpoint)));
        assert_eq!(w.poked.len(), engine.state().roamers.len());
        assert_eq!(w.identity_sets, 1, "waking does not touch the identity");
    });
    // Demoted again: the endpoints (and sessions) are gone.
    engine.go_quiet().expect("quiet");
    with(&world, |w| {
        assert!(w.device.peers.iter().all(|p| p.endpoint.is_none()));
    });
}

#[test]
fn a_rotated_gateway_key_is_set_on_the_device() {
    let (mut engine, world) = daemon_up();
    let public_key = PrivateKey::generate().expect("key").public_key();
    engine
        .apply(&StateChange::RotateGatewayKey { public_key })
        .expect("rotated");
    with(&world, |w| assert_eq!(w.identity_sets, 2));
}

#[test]
fn each_fault_has_its_exit_code_and_http_status() {
    let table = [
        (Fault::Input, 1, 409),
        (Fault::DataPlane, 5, 502),
        (Fault::Files, 6, 500),
        (Fault::Unavailable, 7, 503),
    ];
    for (fault, code, status) in table {
        assert_eq!(
            (fault.exit_code(), fault.http_status()),
            (code, status),
            "{fault:?}"
        );
    }
    let store = StoreError::NotInitialized("/etc/roamgw".into());
    assert_eq!(ChangeError::from(store).fault, Fault::Files);
    let refused = crate::change::Refused("no".into());
    assert_eq!(ChangeError::from(refused).fault, Fault::Input);
}

#[test]
fn a_peer_that_does_not_apply_does_not_stop_the_repair_of_the_rules() {
    let (mut engine, world) = daemon_up();
    with(&world, |w| {
        w.plane = Some(Vec::new());
        w.device.peers.clear();
        w.device_sets_left = Some(0);
    });
    let repaired = engine.reconcile(&no_endpoints).expect("repaired");
    assert!(!repaired.is_empty(), "{repaired:?}");
    with(&world, |w| {
        assert_eq!(
            w.plane.as_ref(),
            Some(&forward_keys(engine.state())),
            "rules back"
        )
    });
}
