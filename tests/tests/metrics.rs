//! `roamgw run --http ADDR`: a real Prometheus (Debian's) in the droplet's namespace scrapes
//! it; PromQL through Prometheus's HTTP API returns the forward's bytes after traffic and a
//! drift repair after `nft flush ruleset`.

use std::time::Duration;

use roamgw_e2e::{wait_until, GatewayMode, Laptop, Ns, Scenario, FLOATING_IP};

const METRICS: &str = "127.0.0.1:9587";
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

#[test]
fn prometheus_scrapes_forward_bytes_and_drift_repairs() {
    let mut s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    s.ok(&["add-port", "22"]);
    // The daemon again, with metrics on.
    s.stop_daemon();
    let mut run = s.bed.roamgw_run_command();
    run.extend(["--http".to_string(), METRICS.to_string()]);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    s.bed.spawn_logged(&s.bed.gw, &run, "daemon-http.log");
    let gw = s.bed.gw.clone();
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .output(&["curl", "-sf", &format!("http://{METRICS}/metrics")])
            .status
            .success()),
        "no metrics:\n{}",
        s.bed.log("daemon-http.log")
    );
    let dir = s.bed.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: roamgw\n    static_configs:\n      - targets: ['{METRICS}']\n"),
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
    // The metrics answer from the daemon's start; the forward once it is up.
    let forward = || s.banner(&format!("{FLOATING_IP}:22")).as_deref() == Some("roamer");
    assert!(
        wait_until(Duration::from_secs(10), forward),
        "the forward is not back"
    );
    for _ in 0..5 {
        assert!(forward());
    }
    let bytes = r#"roamgw_forward_bytes_total{forward="22/tcp",direction="in"}"#;
    assert!(
        wait_until(Duration::from_secs(30), || query(&gw, bytes)
            .is_some_and(|v| v > 0.0)),
        "Prometheus has no forward bytes:\n{}",
        s.bed.log("prometheus.log")
    );
    assert_eq!(query(&gw, "roamgw_up"), Some(1.0));
    s.bed.gw.run(&["nft", "flush", "ruleset"]);
    assert!(
        wait_until(Duration::from_secs(15), || query(
            &gw,
            "roamgw_drift_repairs_total"
        )
        .is_some_and(|v| v >= 1.0)),
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
