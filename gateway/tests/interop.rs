//! Interop with the real wireguard-tools: our keys agree with `wg pubkey`, and the wg-quick
//! files we print are accepted by `wg-quick strip`. These need wireguard-tools (and root for
//! wg-quick): a missing tool fails the test, it never skips.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::Gateway;
use roamgw_common::PrivateKey;

fn wg(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("wg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("`wg` not found: install wireguard-tools (apt-get install --no-install-recommends wireguard-tools)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wg");
    assert!(out.status.success(), "wg {args:?} failed");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[test]
fn our_private_keys_give_the_same_public_key_as_wg_pubkey() {
    for _ in 0..8 {
        let key = PrivateKey::generate().expect("random");
        assert_eq!(
            wg(&["pubkey"], &key.expose_base64()),
            key.public_key().to_string()
        );
    }
}

#[test]
fn wg_genkey_output_parses_and_derives_the_same_public_key() {
    for _ in 0..8 {
        let private = wg(&["genkey"], "");
        let ours: PrivateKey = private.parse().expect("wg genkey output parses");
        assert_eq!(ours.public_key().to_string(), wg(&["pubkey"], &private));
        assert_eq!(ours.expose_base64().as_str(), private);
        let psk = wg(&["genpsk"], "");
        let parsed: roamgw_common::PresharedKey = psk.parse().expect("wg genpsk output parses");
        assert_eq!(parsed.expose_base64().as_str(), psk);
    }
}

#[test]
fn roamgw_key_files_agree_with_wg_pubkey() {
    let gw = Gateway::with_laptop();
    let state = std::fs::read_to_string(gw.state_path()).expect("state");
    for (file, label) in [
        ("keys/gateway.key", "gateway"),
        ("keys/laptop.key", "laptop"),
    ] {
        let private = std::fs::read_to_string(gw.config_dir().join(file)).expect("key file");
        let public = wg(&["pubkey"], &private);
        assert!(
            state.contains(&public),
            "{label}'s public key {public} is not in the state"
        );
    }
}

fn wg_quick_strip(interface: &str, text: &str) -> String {
    assert!(
        is_root(),
        "wg-quick strip needs root (it re-executes itself with sudo otherwise): run the tests as root"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{interface}.conf"));
    std::fs::write(&path, text).expect("write conf");
    let out = Command::new("wg-quick")
        .arg("strip")
        .arg(&path)
        .output()
        .expect("`wg-quick` not found: install wireguard-tools");
    assert!(
        out.status.success(),
        "wg-quick strip refused our file: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn is_root() -> bool {
    // The effective uid is the third field of the Uid: line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn generated_wg_quick_files_pass_wg_quick_strip() {
    let gw = Gateway::with_laptop();
    gw.ok(&[
        "add-roamer",
        "phone",
        "--public-key",
        &wg(&["pubkey"], &wg(&["genkey"], "")),
    ]);
    for (interface, args) in [
        (
            "roamgw0",
            vec!["show-config", "laptop", "--format", "wg-quick"],
        ),
        (
            "roamgw0",
            vec!["show-config", "phone", "--format", "wg-quick"],
        ),
        (
            "roamgw0",
            vec!["show-config", "--gateway", "--format", "wg-quick"],
        ),
    ] {
        let text = gw.ok(&args);
        let stripped = wg_quick_strip(interface, &text);
        assert!(stripped.contains("[Peer]"), "{args:?}: {stripped}");
        assert!(
            !stripped.contains("Address"),
            "strip keeps only wg(8) keys: {stripped}"
        );
    }
    let gateway_side = wg_quick_strip(
        "roamgw0",
        &gw.ok(&["show-config", "--gateway", "--format", "wg-quick"]),
    );
    assert_eq!(gateway_side.matches("[Peer]").count(), 2);
}
