//! `roamgw run --http` and `roamer run --http`: a real Prometheus (Debian's) in the droplet's
//! namespace scrapes both (the laptop through the tunnel, at its tunnel address); PromQL
//! through Prometheus's HTTP API returns the forward's bytes after traffic, a drift repair
//! after `nft flush ruleset`, and the roamer's recovery after the laptop roams.

use std::time::Duration;

use roamgw_e2e::{wait_until, GatewayMode, Laptop, Ns, Scenario, FLOATING_IP};

const METRICS: &str = "127.0.0.1:9587";
/// The laptop's tunnel address: what the gateway reaches it by.
const ROAMER_METRICS: &str = "192.168.32.2:9588";
const PROMETHEUS: &str = "127.0.0.1:9090";

/// The first value PromQL `query` gives, through Prometheus's HTTP API.
fn query(ns: &Ns, query: &str) -> Option<f64> {
    let out = ns.output(&[
        "curl",
        "-s",
        "--get",
        &format!("http://{PROMETHEUS}/api/v1/query"),
        "--data-urlencode",
        &format!("query={query}"),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Whether PromQL `q` reaches `at_least` within `deadline`.
fn reaches(ns: &Ns, q: &str, at_least: f64, deadline: Duration) -> bool {
    wait_until(deadline, || query(ns, q).is_some_and(|v| v >= at_least))
}

#[test]
fn prometheus_scrapes_the_gateway_and_the_roamer() {
    let mut s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    s.ok(&["add-port", "22"]);
    s.restart_daemon_with(&["--http", METRICS], "daemon-http.log");
    s.start_roamer_with(&["--http", ROAMER_METRICS]);
    s.await_tunnel(Laptop::Roamer);
    s.bed.tcp_banner_server(&s.bed.roam, 22, "roamer");
    let gw = s.bed.gw.clone();
    for target in [METRICS, ROAMER_METRICS] {
        assert!(
            wait_until(Duration::from_secs(10), || gw
                .output(&["curl", "-sf", &format!("http://{target}/metrics")])
                .status
                .success()),
            "no metrics at {target}:\ndaemon:\n{}\nroamer:\n{}",
            s.bed.log("daemon-http.log"),
            s.bed.log("roamer.log")
        );
    }
    let dir = s.bed.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  \
             - job_name: roamgw\n    static_configs:\n      - targets: ['{METRICS}']\n  \
             - job_name: roamer\n    static_configs:\n      - targets: ['{ROAMER_METRICS}']\n"
        ),
    )
    .expect("config");
    s.bed.spawn_logged(
        &s.bed.gw,
        &[
            "prometheus",
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address={PROMETHEUS}"),
        ],
        "prometheus.log",
    );
    let forward = || s.banner(&format!("{FLOATING_IP}:22")).as_deref() == Some("roamer");
    assert!(
        wait_until(Duration::from_secs(10), forward),
        "the forward does not answer"
    );
    for _ in 0..5 {
        assert!(forward());
    }
    let bytes = r#"roamgw_forward_bytes_total{forward="22/tcp",direction="in"}"#;
    assert!(
        reaches(&gw, bytes, 1.0, Duration::from_secs(30)),
        "Prometheus has no forward bytes:\n{}",
        s.bed.log("prometheus.log")
    );
    assert_eq!(query(&gw, "roamgw_up"), Some(1.0));
    assert!(
        reaches(
            &gw,
            r#"roamer_health{state="up"}"#,
            1.0,
            Duration::from_secs(10)
        ),
        "the roamer's health is not up in Prometheus:\n{}",
        s.bed.log("roamer.log")
    );
    let received = query(&gw, "roamer_receive_bytes_total");
    assert!(received.is_some_and(|v| v > 0.0), "{received:?}");

    // The laptop roams: a new address behind the CGNAT. The roamer notices, probes, and the
    // tunnel carries data again; Prometheus sees the recovery and the gateway's new endpoint.
    s.bed.move_laptop("100.64.0.3");
    assert!(
        reaches(
            &gw,
            "roamer_recovery_duration_seconds_count",
            1.0,
            Duration::from_secs(30)
        ),
        "no recovery in Prometheus:\n{}",
        s.bed.log("roamer.log")
    );
    let took = query(
        &gw,
        "roamer_recovery_duration_seconds_sum / roamer_recovery_duration_seconds_count",
    );
    assert!(took.is_some_and(|t| t < 10.0), "time to recover: {took:?}");
    assert!(
        reaches(
            &gw,
            r#"roamgw_roamer_endpoint_changes_total{roamer="laptop"}"#,
            1.0,
            Duration::from_secs(15)
        ),
        "the gateway did not count the roam:\n{}",
        s.bed.log("daemon-http.log")
    );
    assert!(forward(), "the forward does not answer after the roam");

    s.bed.gw.run(&["nft", "flush", "ruleset"]);
    assert!(
        reaches(
            &gw,
            "roamgw_drift_repairs_total",
            1.0,
            Duration::from_secs(15)
        ),
        "no drift repair counted:\n{}",
        s.bed.log("daemon-http.log")
    );
    let handshake = query(
        &gw,
        r#"roamgw_roamer_last_handshake_seconds{roamer="laptop"}"#,
    );
    assert!(handshake.is_some_and(|v| v < 60.0), "{handshake:?}");
    s.daemon = None; // the testbed stops the processes it spawned
}
