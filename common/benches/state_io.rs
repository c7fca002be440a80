//! Load + change + save (with fsync) of a gateway state holding many forwards: the part of the
//! `add-port` budget (≤ 20 ms until live at 10,000 forwards) that the state file costs.
//! Run: `cargo bench -p roamgw-common --bench state_io`. Prints p50/p95 per size.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use roamgw_common::fsutil::{write_atomic, DirLock, PRIVATE_FILE_MODE};
use roamgw_common::state::{
    Backend, Forward, GatewaySettings, GatewayState, RoamerEntry, WireguardMode, STATE_VERSION,
};
use roamgw_common::PrivateKey;

fn state_with(forwards: usize) -> GatewayState {
    let key = PrivateKey::generate().expect("random").public_key();
    GatewayState {
        version: STATE_VERSION,
        gateway: GatewaySettings {
            public_ip: Ipv4Addr::new(203, 0, 113, 10),
            endpoint: "203.0.113.10:51820".parse().expect("endpoint"),
            endpoint6: None,
            floating_ip: Some(Ipv4Addr::new(203, 0, 113, 50)),
            anchor_ip: Ipv4Addr::new(10, 16, 0, 5),
            listen_port: 51820,
            subnet: "192.168.32.0/24".parse().expect("net"),
            address: Ipv4Addr::new(192, 168, 32, 1),
            backend: Backend::Nftables,
            wireguard: WireguardMode::Auto,
            interface: "roamgw0".parse().expect("if"),
            mtu: 1420,
            public_key: key,
            anchor_passthrough: false,
            client_ip: Default::default(),
            anchor_gateway: None,
            tcp_port: None,
            subnet6: None,
            forward6: None,
            public_ip6: None,
        },
        roamers: vec![RoamerEntry {
            name: "laptop".parse().expect("name"),
            address: Ipv4Addr::new(192, 168, 32, 2),
            egress: Vec::new(),
            public_key: key,
        }],
        forwards: (0..forwards)
            .map(|i| udp_or_tcp_forward(20_000 + i as u16, "tcp"))
            .collect(),
    }
}

fn udp_or_tcp_forward(port: u16, protocol: &str) -> Forward {
    format!("{port}/{protocol} -> laptop")
        .parse()
        .expect("forward")
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    println!("| forwards | file size | CLI path: load+change+save p50 | p95 | daemon path: change+save p50 | p95 |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for size in [10usize, 1_000, 10_000] {
        let initial = state_with(size);
        write_atomic(
            &path,
            initial.to_toml().expect("serializes").as_bytes(),
            PRIVATE_FILE_MODE,
        )
        .expect("write");
        let bytes = std::fs::metadata(&path).expect("stat").len();
        let mut samples = Vec::new();
        for round in 0..30u16 {
            let start = Instant::now();
            let _lock = DirLock::acquire(dir.path()).expect("lock");
            let text = std::fs::read_to_string(&path).expect("read");
            let mut state = GatewayState::from_toml(&text).expect("parse");
            state.forwards.push(udp_or_tcp_forward(1000 + round, "udp"));
            state.validate().expect("valid");
            write_atomic(
                &path,
                state.to_toml().expect("serializes").as_bytes(),
                PRIVATE_FILE_MODE,
            )
            .expect("write");
            samples.push(start.elapsed());
        }
        // The daemon keeps the state in memory: it only changes, validates, serializes and writes.
        let mut in_memory =
            GatewayState::from_toml(&std::fs::read_to_string(&path).expect("read")).expect("parse");
        let mut daemon_samples = Vec::new();
        for round in 0..30u16 {
            let start = Instant::now();
            in_memory
                .forwards
                .push(udp_or_tcp_forward(2000 + round, "udp"));
            in_memory.validate().expect("valid");
            write_atomic(
                &path,
                in_memory.to_toml().expect("serializes").as_bytes(),
                PRIVATE_FILE_MODE,
            )
            .expect("write");
            daemon_samples.push(start.elapsed());
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {size} | {} KiB | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            bytes / 1024,
            ms(percentile(&mut samples, 0.5)),
            ms(percentile(&mut samples, 0.95)),
            ms(percentile(&mut daemon_samples, 0.5)),
            ms(percentile(&mut daemon_samples, 0.95)),
        );
    }
}
