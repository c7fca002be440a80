//! Our userspace device and `wg::sync_peers` against a real wireguard-go peer: a peer change
//! while traffic flows neither stops nor panics the device, and the endpoint the device had
//! learned survives the change, so the gateway can reach the roamer at once.

use std::time::Duration;

use ipnet::IpNet;
use roamgw_common::wgquick::{Interface, Peer, WgQuickConfig};
use roamgw_common::PrivateKey;
use roamgw_e2e::{Testbed, PUBLIC_IP};
use roamgw_wg::userspace::UserspaceDevice;
use roamgw_wg::PeerConfig;
use roamgw_wg::{set_identity, sync_peers, WgDevice};

fn laptop_peer(key: &PrivateKey, allowed: &[&str]) -> PeerConfig {
    PeerConfig {
        public_key: key.public_key(),
        preshared_key: None,
        endpoint: None,
        allowed_ips: allowed.iter().map(|a| a.parse().expect("net")).collect(),
        persistent_keepalive: 0,
    }
}

#[test]
fn changing_a_peer_keeps_the_device_and_the_learned_endpoint() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_default())
        .with_test_writer()
        .try_init();
    let bed = Testbed::new();
    let gateway_key = PrivateKey::generate().expect("random");
    let laptop_key = PrivateKey::generate().expect("random");
    let name = bed.gw_wg.clone();
    let device = bed.gw.enter(move || {
        UserspaceDevice::create(&name, roamgw_wg::ReplySource::Arrival { first: None })
            .expect("create the userspace device")
    });
    set_identity(&device, &gateway_key, 51820).expect("identity");
    sync_peers(&device, &[laptop_peer(&laptop_key, &["192.168.32.2/32"])]).expect("add the laptop");
    bed.gw
        .run(&["ip", "addr", "add", "192.168.32.1/24", "dev", &bed.gw_wg]);
    bed.gw.run(&["ip", "link", "set", &bed.gw_wg, "up"]);

    let laptop = WgQuickConfig {
        interface: Interface {
            private_key: Some(laptop_key.clone()),
            address: vec!["192.168.32.2/24".parse().expect("net")],
            ..Interface::default()
        },
        peers: vec![Peer {
            public_key: gateway_key.public_key(),
            preshared_key: None,
            allowed_ips: vec!["192.168.32.0/24".parse::<IpNet>().expect("net")],
            endpoint: Some(format!("{PUBLIC_IP}:51820").parse().expect("endpoint")),
            persistent_keepalive: Some(25),
        }],
    };
    bed.wg_quick_up(&bed.roam, &bed.roam_wg, &laptop.render());
    assert!(
        bed.tunnel_answers_within(Duration::from_secs(10)),
        "no tunnel"
    );
    let learned = device.status().expect("status").peers[0].endpoint;
    assert!(
        learned.is_some(),
        "the device did not learn the laptop's endpoint"
    );

    // Traffic flows from the laptop the whole time.
    bed.spawn(&bed.roam, &["ping", "-i", "0.05", "192.168.32.1"]);
    let other = PrivateKey::generate().expect("random").public_key();
    for round in 0..5 {
        // wireguard-go drops a handshake initiation that comes within 20 ms of the previous one
        // from the same peer (flood protection; the retry then waits REKEY_TIMEOUT, 5 s). Real
        // peer changes are never that close together; rounds here would be.
        std::thread::sleep(Duration::from_millis(50));
        let allowed: &[&str] = if round % 2 == 0 {
            &["192.168.32.2/32", "10.99.0.0/24"]
        } else {
            &["192.168.32.2/32"]
        };
        let phone = PeerConfig {
            public_key: other,
            preshared_key: None,
            endpoint: None,
            allowed_ips: vec!["192.168.32.3/32".parse().expect("net")],
            persistent_keepalive: 0,
        };
        let sync = sync_peers(&device, &[laptop_peer(&laptop_key, allowed), phone]).expect("sync");
        assert_eq!(sync.changed, 1, "round {round}: {sync}");
        let status = device.status().expect("the device still answers");
        let laptop_now = status
            .peer(&laptop_key.public_key())
            .expect("laptop still a peer");
        assert_eq!(
            laptop_now.endpoint, learned,
            "round {round}: the learned endpoint was lost"
        );
        // Gateway-initiated traffic needs that endpoint: it works at once, no keepalive wait.
        let reach = bed.gw.output(&["ping", "-c1", "-W1", "192.168.32.2"]);
        assert!(
            reach.status.success(),
            "round {round}: the gateway cannot reach the laptop after the change"
        );
    }
}
