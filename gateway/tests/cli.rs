//! The `roamgw` binary as a user drives it, without root: the walkthrough, the bad-input
//! corpus, and concurrent CLIs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{fixtures, Gateway};

#[test]
fn walkthrough_works_in_a_temp_dir() {
    let gw = Gateway::empty();
    let out = gw.ok(common::INIT);
    assert!(out.contains("anchor 10.16.0.5"), "{out}");
    let out = gw.ok(&["add-roamer", "laptop"]);
    assert!(out.contains("tunnel address 192.168.32.2"), "{out}");
    let out = gw.ok(&["add-port", "22"]);
    assert!(
        out.contains("203.0.113.50:22 -> laptop 192.168.32.2:22"),
        "{out}"
    );
    assert!(out.contains("pending"), "{out}");

    let roamer = gw.ok(&["show-config", "laptop", "--format", "roamer"]);
    let config =
        roamgw_common::state::RoamerConfig::from_toml(&roamer).expect("roamer config parses");
    assert_eq!(config.address.to_string(), "192.168.32.2/24");
    assert_eq!(config.gateway.endpoint.to_string(), "203.0.113.10:51820");

    let wg = gw.ok(&["show-config", "laptop", "--format", "wg-quick"]);
    let parsed: roamgw_common::wgquick::WgQuickConfig = wg.parse().expect("wg-quick parses");
    assert_eq!(
        parsed.peers[0].persistent_keepalive,
        Some(roamgw_common::state::DEFAULT_KEEPALIVE_SECS)
    );

    let qr = gw.ok(&["show-config", "laptop", "--format", "wg-quick", "--qr"]);
    assert!(qr.contains('█') && qr.lines().count() > 20, "{qr}");

    let list: serde_json::Value = serde_json::from_str(&gw.ok(&["list", "--json"])).expect("json");
    assert_eq!(list[0]["spec"], "22/tcp");
    assert_eq!(list[0]["local"], "192.168.32.2:22");
    let roamers: serde_json::Value =
        serde_json::from_str(&gw.ok(&["roamers", "--json"])).expect("json");
    assert_eq!(roamers[0]["name"], "laptop");

    gw.ok(&["remove-port", "22/tcp"]);
    gw.ok(&["remove-roamer", "laptop"]);
    assert!(gw.ok(&["list"]).contains("no forwards"));
}

#[test]
fn files_are_private() {
    let gw = Gateway::with_laptop();
    let mode = |p: &std::path::Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&gw.config_dir()), 0o700);
    assert_eq!(mode(&gw.config_dir().join("keys")), 0o700);
    for name in [
        "gateway.toml",
        "keys/gateway.key",
        "keys/laptop.key",
        "keys/laptop.psk",
    ] {
        assert_eq!(mode(&gw.config_dir().join(name)), 0o600, "{name}");
    }
}

#[test]
fn remove_roamer_with_forwards_needs_force_and_removes_keys() {
    let gw = Gateway::with_laptop();
    assert!(!gw.run(&["remove-roamer", "laptop"]).status.success());
    let out = gw.ok(&["remove-roamer", "laptop", "--force"]);
    assert!(out.contains("22/tcp"), "{out}");
    assert!(!gw.config_dir().join("keys/laptop.key").exists());
    assert!(!gw.config_dir().join("keys/laptop.psk").exists());
}

#[test]
fn concurrent_clis_never_lose_an_update() {
    let gw = Gateway::with_laptop();
    let children: Vec<_> = (0..16)
        .map(|i| {
            std::process::Command::new(env!("CARGO_BIN_EXE_roamgw"))
                .arg("--config-dir")
                .arg(gw.config_dir())
                .args(["add-port", &format!("{}/udp", 40000 + i)])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    let list: serde_json::Value = serde_json::from_str(&gw.ok(&["list", "--json"])).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(17));
}

/// Each case: arguments, and a piece of the one-line error it must print.
const BAD_INPUT: &[(&[&str], &str)] = &[
    // port specs
    (&["add-port", "0"], "port 0"),
    (&["add-port", "65536"], "out of range"),
    (&["add-port", "100-90"], "reversed"),
    (&["add-port", "22/icmp"], "unknown protocol"),
    (&["add-port", "ssh"], "not a port number"),
    (&["add-port", ""], "empty port spec"),
    (&["add-port", "1000-2000:1-5"], "same length"),
    (&["add-port", "1:2:3"], "PUBLIC[:LOCAL][/PROTOCOL]"),
    (&["add-port", "22"], "already forwarded"),
    (&["add-port", "20-30"], "overlaps the forward 22/tcp"),
    (&["add-port", "22/tcp+udp"], "overlaps"),
    (&["add-port", "51820/udp"], "WireGuard port"),
    (&["add-port", "51000-52000/udp"], "WireGuard port"),
    (&["remove-port", "23"], "no forward 23/tcp"),
    (&["remove-port", "22/udp"], "did you mean 22/tcp"),
    (&["remove-port", "x"], "not a port number"),
    // names
    (&["add-roamer", "Laptop"], "roamer name 'Laptop' is invalid"),
    (&["add-roamer", "../etc"], "is invalid"),
    (&["add-roamer", ""], "is invalid"),
    (&["add-roamer", "laptop"], "already exists"),
    (
        &["add-roamer", "a234567890123456789012345678901234"],
        "1-32 characters",
    ),
    (&["add-port", "80", "--to", "nobody"], "no roamer 'nobody'"),
    (&["remove-roamer", "nobody"], "no roamer 'nobody'"),
    (&["remove-roamer", "laptop"], "still has forwards"),
    (&["show-config", "nobody"], "no roamer 'nobody'"),
    (
        &["show-config", "--gateway", "--format", "roamer"],
        "only as --format wg-quick",
    ),
    // keys
    (
        &["add-roamer", "pc", "--public-key", "abc"],
        "not valid base64",
    ),
    (
        &["add-roamer", "pc", "--public-key", "AAAA"],
        "decodes to 3 bytes",
    ),
    (
        &[
            "add-roamer",
            "pc",
            "--public-key",
            "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@=",
        ],
        "not valid base64",
    ),
    // addresses
    (
        &["add-roamer", "pc", "--address", "10.0.0.1"],
        "outside the tunnel subnet",
    ),
    (
        &["add-roamer", "pc", "--address", "192.168.32.1"],
        "already used by the gateway",
    ),
    (
        &["add-roamer", "pc", "--address", "192.168.32.2"],
        "already used by roamer 'laptop'",
    ),
    (
        &["add-roamer", "pc", "--address", "192.168.32.255"],
        "the broadcast address of the tunnel subnet",
    ),
    (
        &["add-roamer", "pc", "--address", "192.168.32.0"],
        "the network address of the tunnel subnet",
    ),
    (
        &["add-roamer", "pc", "--address", "999.1.1.1"],
        "invalid value",
    ),
    // CIDRs
    (
        &["add-port", "80", "--allow-from", "192.0.2.5/24"],
        "write 192.0.2.0/24",
    ),
    (
        &["add-port", "80", "--allow-from", "300.0.0.0/8"],
        "not an address or CIDR",
    ),
    (
        &["add-port", "80", "--allow-from", "192.0.2.0/33"],
        "not an address or CIDR",
    ),
    (
        &["add-port", "80", "--allow-from", "nope"],
        "not an address or CIDR",
    ),
    // init over an existing setup, and bad init values (none may touch the state)
    (&["init"], "already set up"),
    (
        &[
            "init",
            "--force",
            "--public-ip",
            "10.16.0.5",
            "--anchor-ip",
            "203.0.113.10",
        ],
        "swapped?",
    ),
    (&["init", "--force", "--listen-port", "0"], "invalid value"),
    (&["init", "--force", "--mtu", "100"], "invalid value"),
    (
        &["init", "--force", "--interface", "this-name-is-too-long"],
        "interface name",
    ),
    (
        &[
            "init",
            "--force",
            "--public-ip",
            "203.0.113.10",
            "--anchor-ip",
            "203.0.113.10",
        ],
        "both 203.0.113.10",
    ),
    (
        &["init", "--force", "--backend", "iptables"],
        "invalid value 'iptables'",
    ),
    (
        &["init", "--force", "--wireguard", "magic"],
        "invalid value 'magic'",
    ),
    (
        &["init", "--force", "--public-ip", "192.0.2.99"],
        "not an address of this machine",
    ),
    // usage
    (&["frobnicate"], "unrecognized subcommand"),
    (&["add-port", "22", "--bogus"], "unexpected argument"),
    (&["add-port"], "required arguments were not provided"),
    (&["show-config"], "required arguments were not provided"),
    // grown for issue 14: what a new user types in the first hour
    (&["add-port", "--", "-5"], "'-5' has a port missing"),
    (&["add-port", "22:"], "'22:' has a port missing"),
    (&["add-port", ":22"], "':22' has a port missing"),
    (&["add-port", "1-65536"], "port 65536 is out of range"),
    (&["add-port", "22/TCP"], "already forwarded"),
    (&["add-port", "80", "--to", ""], "roamer name '' is invalid"),
    (
        &["add-port", "80", "--to", "Laptop"],
        "roamer name 'Laptop' is invalid",
    ),
    (
        &["add-port", "80", "--allow-from", "192.0.2.0/33"],
        "not an address or CIDR",
    ),
    (
        &["add-port", "80", "--allow-from", "2001:db8::/129"],
        "not an address or CIDR",
    ),
    (&["add-port"], "required arguments were not provided"),
    (&["remove-port", "abc"], "'abc' is not a port number"),
    (&["remove-port", ""], "empty port spec"),
    (&["add-roamer", ""], "roamer name '' is invalid"),
    (&["add-roamer", "a b"], "roamer name 'a b' is invalid"),
    (
        &["add-roamer", "pc", "--public-key", "short"],
        "not valid base64",
    ),
    (
        &["add-roamer", "pc", "--address", "192.168.33.5"],
        "outside the tunnel subnet",
    ),
    (&["remove-roamer"], "required arguments were not provided"),
    (
        &["remove-roamer", "nobody"],
        "no roamer 'nobody' (roamers: laptop)",
    ),
    (
        &["show-config", "nobody", "--format", "roamer"],
        "no roamer 'nobody'",
    ),
    (
        &["show-config", "laptop", "--format", "xml"],
        "possible values: roamer, wg-quick",
    ),
    (
        &["show-config", "--gateway", "--format", "roamer"],
        "only as --format wg-quick",
    ),
    (
        &["show-config", "--format", "wg-quick"],
        "required arguments were not provided",
    ),
    (&["status", "--bogus"], "unexpected argument '--bogus'"),
    (&["list", "--jsn"], "a similar argument exists: '--json'"),
    (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
];

/// `init --force --public-ip 203.0.113.10 --anchor-ip 10.16.0.5` with these flags more: each
/// refused (the corpus test runs them with that prefix).
const BAD_INIT: &[(&[&str], &str)] = &[
    (&["--subnet", "192.168.32.0/31"], "too small"),
    (&["--subnet", "192.168.32.1/24"], "host bits set"),
    (
        &["--endpoint", "bad host!"],
        "endpoint 'bad host!' is invalid",
    ),
    (
        &["--endpoint", "[fe80::1]"],
        "link-local, loopback, multicast or unspecified",
    ),
    (&["--endpoint", "[fe80::1%eth0]:51820"], "has a zone id"),
    (&["--endpoint6", "gw.example.com"], "is not an IPv6 address"),
    (&["--endpoint6", "fe80::1"], "link-local"),
    (&["--forward6", "fe80::5"], "link-local"),
    (&["--forward6", "ff02::1"], "multicast"),
    (
        &["--forward6", "2001:db8::1", "--public-ip6", "2001:db8::1"],
        "the droplet's own IPv6",
    ),
    (
        &["--forward6", "2001:db8::5", "--subnet6", "fd00::1/64"],
        "host bits set",
    ),
    (
        &["--floating-ip", "203.0.113.10"],
        "is the droplet's own public IP",
    ),
    (
        &["--subnet", "10.16.0.0/16"],
        "contains the anchor 10.16.0.5",
    ),
    (&["--endpoint", "host:0"], "endpoint port"),
    (&["--mtu", "100"], "100 is not in 1280..=9000"),
    (&["--listen-port", "0"], "0 is not in 1..=65535"),
    (
        &["--interface", "this-name-is-way-too-long"],
        "interface name 'this-name-is-way-too-long' is invalid",
    ),
    (&["--backend", "pf"], "possible values: nftables, firewalld"),
    (
        &["--wireguard", "magic"],
        "possible values: auto, kernel, userspace, external",
    ),
    (
        &["--subnet", "300.0.0.0/24"],
        "invalid value '300.0.0.0/24'",
    ),
    (
        &["--floating-ip", "x"],
        "invalid value 'x' for '--floating-ip",
    ),
];

fn assert_clean_failure(out: &std::process::Output, what: &str, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "{what}: exit {:?} (1: refused, 2: usage)",
        out.status.code()
    );
    assert!(!stderr.contains("panicked"), "{what}: panicked: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{what}: not one line: {stderr}"
    );
    assert!(
        stderr.contains(expected),
        "{what}: expected '{expected}' in: {stderr}"
    );
}

#[test]
fn bad_input_corpus_fails_cleanly_and_changes_nothing() {
    assert!(
        BAD_INPUT.len() + BAD_INIT.len() >= 90,
        "the corpus shrank to {}",
        BAD_INPUT.len() + BAD_INIT.len()
    );
    let gw = Gateway::with_laptop();
    let before = fs::read(gw.state_path()).expect("state");
    let keys_before: Vec<_> = fs::read_dir(gw.config_dir().join("keys"))
        .expect("keys")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let init = [
        "init",
        "--force",
        "--public-ip",
        "203.0.113.10",
        "--anchor-ip",
        "10.16.0.5",
    ];
    let init_cases: Vec<(Vec<&str>, &str)> = BAD_INIT
        .iter()
        .map(|(flags, expected)| ([&init[..], flags].concat(), *expected))
        .collect();
    let cases = BAD_INPUT
        .iter()
        .map(|(args, expected)| (args.to_vec(), *expected))
        .chain(init_cases);
    for (args, expected) in cases {
        let args = &args[..];
        let out = gw.run(args);
        assert_clean_failure(&out, &format!("roamgw {args:?}"), expected);
        assert_eq!(
            fs::read(gw.state_path()).expect("state"),
            before,
            "roamgw {args:?} changed the state"
        );
    }
    let keys_after: Vec<_> = fs::read_dir(gw.config_dir().join("keys"))
        .expect("keys")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        keys_before, keys_after,
        "a failed command left key files behind"
    );
}

#[test]
fn commands_without_a_setup_say_how_to_make_one() {
    let gw = Gateway::empty();
    for args in [
        &["list"][..],
        &["add-port", "22"],
        &["add-roamer", "laptop"],
        &["show-config", "laptop"],
    ] {
        assert_clean_failure(
            &gw.run(args),
            &format!("{args:?}"),
            "run `roamgw init` first",
        );
    }
}

/// Every file in fixtures/invalid-state must be refused with the message in its `.expected`
/// file, and stay byte-identical.
#[test]
fn invalid_state_corpus() {
    let dir = fixtures().join("invalid-state");
    let mut cases = 0;
    for entry in fs::read_dir(&dir).expect("invalid-state fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        cases += 1;
        let expected = fs::read_to_string(path.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{} has no .expected file", path.display()));
        let gw = Gateway::with_laptop();
        let bytes = fs::read(&path).expect("fixture");
        fs::write(gw.state_path(), &bytes).expect("install fixture");
        for args in [&["list"][..], &["add-port", "80"]] {
            let out = gw.run(args);
            assert_clean_failure(
                &out,
                &format!("{} with {args:?}", path.display()),
                expected.trim(),
            );
            assert_eq!(fs::read(gw.state_path()).expect("state"), bytes);
        }
    }
    assert!(cases >= 8, "only {cases} invalid state fixtures");
}

/// The first hour's rough edges (issue 14, items 1–3 and 10): a pending change prints nothing
/// of nft's, says "pending" whenever nothing is up (also for roamers), and names the command
/// that makes it live in this configuration; exit codes say what happened.
#[test]
fn pending_changes_are_quiet_honest_and_name_a_command_that_works() {
    for (wireguard, hint, wrong) in [
        ("auto", "`roamgw run` starts", "`roamgw up`"),
        ("external", "`roamgw up`", "`roamgw run`"),
    ] {
        let gw = Gateway::empty();
        let mut init = common::INIT.to_vec();
        init.extend(["--wireguard", wireguard]);
        gw.ok(&init);
        for args in [
            &["add-roamer", "laptop"][..],
            &["add-port", "22"],
            &["remove-port", "22"],
        ] {
            let out = gw.run(args);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{args:?}: {stderr}");
            assert!(
                stdout.contains("pending") && !stdout.contains("live"),
                "{wireguard} {args:?}: {stdout}"
            );
            assert!(
                stdout.contains(hint) && !stdout.contains(wrong),
                "{wireguard} {args:?}: {stdout}"
            );
            assert!(
                stderr.trim().is_empty(),
                "{wireguard} {args:?}: stderr {stderr:?}"
            );
        }
    }
}

#[test]
fn exit_codes_say_what_happened() {
    let bare = std::process::Command::new(env!("CARGO_BIN_EXE_roamgw"))
        .env_remove("ROAMGW_CONFIG_DIR")
        .output()
        .expect("roamgw");
    assert_eq!(bare.status.code(), Some(2), "no command is a usage error");
    assert!(String::from_utf8_lossy(&bare.stderr).contains("Usage:"));
    let gw = Gateway::with_laptop();
    // The data plane is down here (a temp dir, nothing started): 3, as the help says.
    let status = gw.run(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(3));
    let view: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(view["data_plane_up"], false);
    let help = gw.ok(&["--help"]);
    assert!(
        help.contains("Exit codes:") && help.contains("3 data plane down"),
        "{help}"
    );
}

/// A user who may not read the config directory is told so (and how to fix it), not that no
/// gateway is set up.
#[test]
fn an_unreadable_config_dir_says_permission_denied() {
    let gw = Gateway::with_laptop();
    let run_unprivileged = |args: &[&str]| {
        let mut command = if nix::unistd::geteuid().is_root() {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
            c.arg(env!("CARGO_BIN_EXE_roamgw"));
            c
        } else {
            fs::set_permissions(gw.config_dir(), fs::Permissions::from_mode(0o000)).expect("chmod");
            std::process::Command::new(env!("CARGO_BIN_EXE_roamgw"))
        };
        command
            .arg("--config-dir")
            .arg(gw.config_dir())
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("roamgw")
    };
    let init = [common::INIT, &["--force"]].concat();
    for args in [
        &["list"][..],
        &["add-port", "80"],
        &["status"],
        &init,
        &["down"],
    ] {
        let out = run_unprivileged(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            (stderr.contains("Permission denied") || stderr.contains("Operation not permitted"))
                && stderr.contains("run as root"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("no gateway is set up"),
            "{args:?}: {stderr}"
        );
    }
    fs::set_permissions(gw.config_dir(), fs::Permissions::from_mode(0o700)).expect("chmod");
}

/// Without --floating-ip (and a private anchor) nobody knows what the outside dials: `list`
/// says so instead of showing the anchor as if it were public.
#[test]
fn list_without_a_floating_ip_does_not_pass_the_anchor_off_as_public() {
    let gw = Gateway::empty();
    gw.ok(&[
        "init",
        "--public-ip",
        "203.0.113.10",
        "--anchor-ip",
        "10.16.0.5",
    ]);
    gw.ok(&["add-roamer", "laptop"]);
    let added = gw.ok(&["add-port", "22"]);
    assert!(added.contains("<floating IP>:22"), "{added}");
    let list = gw.ok(&["list"]);
    assert!(!list.contains("10.16.0.5:22"), "{list}");
    assert!(
        list.contains("<floating IP>:22") && list.contains("anchor 10.16.0.5"),
        "{list}"
    );
    let json: serde_json::Value = serde_json::from_str(&gw.ok(&["list", "--json"])).expect("json");
    assert!(json[0]["public"].is_null(), "{json}");
    // With it, the floating IP.
    let gw = Gateway::with_laptop();
    assert!(gw.ok(&["list"]).contains("203.0.113.50:22"));
}

/// The QR code of a wg-quick file fits an 80-column terminal.
#[test]
fn the_qr_code_fits_80_columns() {
    let gw = Gateway::with_laptop();
    let qr = gw.ok(&["show-config", "laptop", "--format", "wg-quick", "--qr"]);
    let widest = qr.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(widest <= 80, "{widest} columns:\n{qr}");
}

/// Secrets (issue 14, item 7): a key file others can read is not used, a missing preshared
/// key is an error rather than a tunnel without one, and a gateway key that does not belong
/// to the state's public key is caught; each message names the file and the fix.
#[test]
fn secrets_that_are_exposed_missing_or_mismatched_are_refused() {
    let config = ["show-config", "laptop", "--format", "wg-quick"];
    let gateway_side = ["show-config", "--gateway", "--format", "wg-quick"];
    let failure = |gw: &Gateway, args: &[&str], words: &[&str]| {
        let out = gw.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        for word in words {
            assert!(stderr.contains(word), "{args:?}: {stderr} lacks {word:?}");
        }
    };

    let gw = Gateway::with_laptop();
    let psk = gw.config_dir().join("keys/laptop.psk");
    fs::set_permissions(&psk, fs::Permissions::from_mode(0o644)).expect("chmod");
    failure(
        &gw,
        &config,
        &["laptop.psk", "readable by others (mode 0644)", "chmod 600"],
    );
    fs::set_permissions(&psk, fs::Permissions::from_mode(0o600)).expect("chmod");
    gw.ok(&config);

    fs::remove_file(&psk).expect("rm psk");
    failure(
        &gw,
        &config,
        &["preshared key of roamer 'laptop' is missing", "laptop.psk"],
    );
    failure(
        &gw,
        &gateway_side,
        &["preshared key of roamer 'laptop' is missing"],
    );

    let gw = Gateway::with_laptop();
    gw.ok(&gateway_side);
    let other = roamgw_common::PrivateKey::generate().expect("key");
    fs::write(
        gw.config_dir().join("keys/gateway.key"),
        format!("{}\n", other.expose_base64().as_str()),
    )
    .expect("write key");
    failure(
        &gw,
        &gateway_side,
        &["gateway.key does not match", "init --force"],
    );
}

/// Completions for the usual shells, and a man page with every visible subcommand.
#[test]
fn completions_and_man_page() {
    let gw = Gateway::with_laptop();
    for shell in ["bash", "zsh", "fish"] {
        let script = gw.ok(&["completions", shell]);
        assert!(
            script.contains("add-port") && script.contains("egress"),
            "{shell}: {script}"
        );
    }
    let bash = gw.ok(&["completions", "bash"]);
    let syntax = std::process::Command::new("bash")
        .args(["-n", "-c", &bash])
        .output()
        .expect("bash");
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let man = gw.ok(&["man"]);
    assert!(
        man.starts_with(".ie \\n(.g .ds Aq") || man.contains(".TH roamgw 1"),
        "{man}"
    );
    for section in [
        "ROAMGW INIT",
        "ROAMGW ADD-PORT",
        "ROAMGW EGRESS",
        "ROAMGW COMPLETIONS",
    ] {
        assert!(man.contains(section), "{section} missing");
    }
    assert!(
        !man.contains("ROAMGW MAN"),
        "the hidden man command stays out of the page"
    );
    let help = gw.ok(&["--help"]);
    assert!(
        help.contains("completions") && !help.contains("  man "),
        "{help}"
    );
}

/// A roamer's key and PSK, and the gateway's key, replaced; forwards kept; the configs
/// printed afterwards carry the new keys.
#[test]
fn rotate_key_replaces_keys_and_keeps_forwards() {
    let gw = Gateway::with_laptop();
    let config_before = gw.ok(&["show-config", "laptop", "--format", "wg-quick"]);
    let said = gw.ok(&["rotate-key", "laptop"]);
    assert!(said.contains("roamgw show-config laptop"), "{said}");
    let config_after = gw.ok(&["show-config", "laptop", "--format", "wg-quick"]);
    let line = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert_ne!(
        line(&config_before, "PrivateKey"),
        line(&config_after, "PrivateKey")
    );
    assert_ne!(
        line(&config_before, "PresharedKey"),
        line(&config_after, "PresharedKey")
    );
    assert!(gw.ok(&["list"]).contains("22/tcp"), "forwards kept");

    let gateway_key = |text: &str| line(text, "PublicKey");
    gw.ok(&["rotate-key", "--gateway"]);
    let config_new_gateway = gw.ok(&["show-config", "laptop", "--format", "wg-quick"]);
    assert_ne!(gateway_key(&config_after), gateway_key(&config_new_gateway));
    // The state and the key file agree (show-config would refuse a mismatch).
    gw.ok(&["show-config", "--gateway", "--format", "wg-quick"]);

    // A refused rotation leaves the old files.
    let out = gw.run(&["rotate-key", "tablet"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        line(
            &gw.ok(&["show-config", "laptop", "--format", "wg-quick"]),
            "PresharedKey"
        ),
        line(&config_new_gateway, "PresharedKey")
    );
}

#[test]
fn an_ipv6_endpoint_reaches_the_configs() {
    let gw = Gateway::with_laptop();
    assert!(gw.ok(&["endpoint6"]).contains("no IPv6 endpoint"));
    let set = gw.ok(&["endpoint6", "2001:db8::10"]);
    assert!(set.contains("[2001:db8::10]:51820 over IPv6 too"), "{set}");
    assert!(gw.ok(&["endpoint6"]).contains("[2001:db8::10]:51820"));
    // The roamer gets both and races them; a wg-quick file holds the one asked for.
    let roamer = gw.ok(&["show-config", "laptop"]);
    let config = roamgw_common::state::RoamerConfig::from_toml(&roamer).expect("parses");
    assert_eq!(
        config.gateway.endpoint6.map(|e| e.to_string()).as_deref(),
        Some("[2001:db8::10]:51820")
    );
    let endpoint_of = |args: &[&str]| -> String {
        let text = gw.ok(args);
        let parsed: roamgw_common::wgquick::WgQuickConfig = text.parse().expect("wg-quick");
        parsed.peers[0]
            .endpoint
            .as_ref()
            .expect("endpoint")
            .to_string()
    };
    let wg = ["show-config", "laptop", "--format", "wg-quick"];
    assert_eq!(endpoint_of(&wg), "203.0.113.10:51820");
    let v6 = [&wg[..], &["--endpoint-family", "ipv6"]].concat();
    assert_eq!(endpoint_of(&v6), "[2001:db8::10]:51820");
    let v4 = gw.ok(&["show-config", "laptop", "--endpoint-family", "ipv4"]);
    assert!(!v4.contains("endpoint6"), "{v4}");
    gw.ok(&["endpoint6", "--off"]);
    let out = gw.run(&v6);
    assert_clean_failure(
        &out,
        "ipv6 without an endpoint6",
        "roamgw endpoint6 ADDRESS",
    );
}

#[test]
fn an_ipv6_forward_address_reaches_the_configs() {
    let gw = Gateway::with_laptop();
    assert!(gw.ok(&["forward6"]).contains("IPv4 only"));
    let before = gw.ok(&["show-config", "laptop"]);
    assert!(!before.contains("address6"), "{before}");
    let set = gw.ok(&["forward6", "2001:db8::5"]);
    assert!(set.contains("forwards answer on 2001:db8::5 too"), "{set}");
    assert!(set.contains("every roamer needs its new config"), "{set}");
    let shown = gw.ok(&["forward6"]);
    assert!(
        shown.contains("2001:db8::5") && shown.contains("::/64"),
        "{shown}"
    );
    // The laptop gets the tunnel's IPv6 address at the offset of its IPv4 one (.2 -> ::2).
    let roamer = gw.ok(&["show-config", "laptop"]);
    let config = roamgw_common::state::RoamerConfig::from_toml(&roamer).expect("parses");
    let address6 = config.address6.expect("an IPv6 tunnel address");
    assert_eq!(
        (address6.prefix_len(), address6.addr().segments()[7]),
        (64, 2)
    );
    assert_eq!(address6.addr().segments()[0] & 0xff00, 0xfd00, "a ULA");
    let wg = gw.ok(&["show-config", "laptop", "--format", "wg-quick"]);
    let parsed: roamgw_common::wgquick::WgQuickConfig = wg.parse().expect("wg-quick");
    assert!(
        parsed
            .interface
            .address
            .contains(&ipnet::IpNet::V6(address6)),
        "{wg}"
    );
    assert!(wg.contains("AllowedIPs = 0.0.0.0/0, ::/0"), "{wg}");
    assert!(
        wg.contains(&format!("ip -6 rule add from {}", address6.addr())),
        "{wg}"
    );
    // A second address keeps the prefix; off keeps it too (the roamers' configs stay valid).
    gw.ok(&["forward6", "2001:db8::6"]);
    gw.ok(&["forward6", "--off"]);
    assert_eq!(gw.ok(&["show-config", "laptop"]), roamer);
    let again = gw.run(&["forward6", "--off"]);
    assert_clean_failure(&again, "forward6 --off twice", "IPv4 only already");
    for (bad, why) in [
        ("fe80::5", "link-local"),
        ("::1", "not an address of the internet"),
    ] {
        let out = gw.run(&["forward6", bad]);
        assert_clean_failure(&out, bad, why);
    }
}

#[test]
fn a_networkd_laptop_gets_its_files() {
    let gw = Gateway::with_laptop();
    gw.ok(&["forward6", "2001:db8::5"]);
    let bundle = gw.ok(&["show-config", "laptop", "--format", "networkd"]);
    for part in [
        "### /etc/systemd/network/50-roamgw0.netdev (0644)",
        "### /etc/systemd/network/50-roamgw0.network (0644)",
        "### /etc/systemd/network/roamgw0.key (0640 root:systemd-network)",
        "### /etc/systemd/system/roamgw-udp-replies@.service (0644)",
        "Endpoint=203.0.113.10:51820",
        "AllowedIPs=0.0.0.0/0,::/0",
        "Family=ipv6",
    ] {
        assert!(bundle.contains(part), "{part} missing:\n{bundle}");
    }
    let qr = gw.run(&["show-config", "laptop", "--format", "networkd", "--qr"]);
    assert_clean_failure(&qr, "networkd as a QR code", "use --format wg-quick");
}
