//! `roamgw import` on the manual setup exactly as docs/background.md builds it: wg-quick on
//! both ends (keys by `wg genkey`, a PSK, AllowedIPs = the subnet) and firewalld rich rules
//! (forward-port to the laptop, masquerade toward it). The import keeps the laptop's config
//! working: a forward probed every 100 ms through the switch-over fails at most once.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use roamgw_e2e::firewalld::Firewalld;
use roamgw_e2e::{binary, Testbed, ANCHOR_IP, FLOATING_IP, PUBLIC_IP};

fn wg(args: &[&str], input: Option<&str>) -> String {
    use std::io::Write as _;
    let mut child = Command::new("wg")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wg");
    if let Some(text) = input {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    let out = child.wait_with_output().expect("wg");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_manual_setup_is_imported_without_touching_the_laptop() {
    let bed = Testbed::new();
    let fw = Firewalld::start(&bed, &bed.gw);
    let (gw_key, laptop_key, psk) = (
        wg(&["genkey"], None),
        wg(&["genkey"], None),
        wg(&["genpsk"], None),
    );
    let gw_pub = wg(&["pubkey"], Some(&gw_key));
    let laptop_pub = wg(&["pubkey"], Some(&laptop_key));
    bed.wg_quick_up(
        &bed.gw,
        &bed.gw_wg,
        &format!(
            "[Interface]\nPrivateKey = {gw_key}\nAddress = 192.168.32.1/24\nListenPort = 51820\n\n\
             [Peer]\nPublicKey = {laptop_pub}\nPresharedKey = {psk}\nAllowedIPs = 192.168.32.0/24\n"
        ),
    );
    bed.wg_quick_up(
        &bed.roam,
        &bed.roam_wg,
        &format!(
            "[Interface]\nPrivateKey = {laptop_key}\nAddress = 192.168.32.2/24\n\n\
             [Peer]\nPublicKey = {gw_pub}\nPresharedKey = {psk}\nAllowedIPs = 192.168.32.0/24\n\
             Endpoint = {PUBLIC_IP}:51820\nPersistentKeepalive = 10\n"
        ),
    );
    for args in [
        "--add-port=51820/udp".to_string(),
        "--add-rich-rule=rule family=ipv4 destination address=192.168.32.2/32 masquerade".to_string(),
        format!("--add-rich-rule=rule family=ipv4 destination address={ANCHOR_IP}/32 forward-port port=22 protocol=tcp to-port=22 to-addr=192.168.32.2"),
    ] {
        assert!(fw.cmd(&bed.gw, &["--permanent", &args]).status.success(), "{args}");
    }
    assert!(fw.cmd(&bed.gw, &["--reload"]).status.success());
    bed.tcp_banner_server(&bed.roam, 22, "roamer");
    bed.tcp_banner_server(&bed.gw, 22, "droplet");
    let forward = format!("{FLOATING_IP}:22");
    let works = || bed.cli.tcp_banner(&forward).as_deref() == Some("roamer");
    assert!(
        roamgw_e2e::wait_until(Duration::from_secs(15), works),
        "the manual setup does not work"
    );

    let conf = bed.dir.path().join(format!("{}.conf", bed.gw_wg));
    let conf = conf.to_str().expect("utf-8");
    let import = |extra: &[&str]| {
        let mut args = vec![
            "import",
            "--wg-quick",
            conf,
            "--name",
            "laptop",
            "--public-ip",
            PUBLIC_IP,
            "--anchor-ip",
            ANCHOR_IP,
            "--floating-ip",
            FLOATING_IP,
        ];
        args.extend_from_slice(extra);
        bed.roamgw(&binary("roamgw"), &args)
    };
    let dry = import(&["--dry-run"]);
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        said.contains("22/tcp -> laptop masquerade") && said.contains("replaces"),
        "{said}"
    );
    assert!(
        !bed.config_dir().join("gateway.toml").exists(),
        "a dry run changes nothing"
    );

    // Through the switch-over, a probe every 100 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let prober = {
        let (stop, failed, cli, forward) = (
            stop.clone(),
            failed.clone(),
            bed.cli.clone(),
            forward.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if cli.tcp_banner(&forward).as_deref() != Some("roamer") {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let out = import(&[]);
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    prober.join().expect("prober");
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failures = failed.load(Ordering::SeqCst);
    eprintln!("failed probes through the switch-over: {failures}");
    assert!(
        failures <= 1,
        "{failures} probes failed through the switch-over"
    );

    assert!(works(), "the forward works after the import");
    let list =
        String::from_utf8_lossy(&bed.roamgw(&binary("roamgw"), &["list"]).stdout).into_owned();
    assert!(
        list.contains("22/tcp") && list.contains("masquerade"),
        "{list}"
    );
    for permanent in [false, true] {
        let mut args = vec!["--list-rich-rules"];
        if permanent {
            args.insert(0, "--permanent");
        }
        let rules = String::from_utf8_lossy(&fw.cmd(&bed.gw, &args).stdout).into_owned();
        assert!(
            !rules.contains("forward-port") && !rules.contains("masquerade"),
            "old rules left: {rules}"
        );
    }
    let status = bed.roamgw(&binary("roamgw"), &["status"]);
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    assert_eq!(
        bed.cli.tcp_banner(&format!("{PUBLIC_IP}:22")).as_deref(),
        Some("droplet")
    );
}
