//! The laptop on NetworkManager (issue 30): the keyfile `roamgw show-config laptop --format
//! nm` prints, read by Debian's own nmcli 1.42 offline (`nmcli --offline connection modify`
//! parses a keyfile from stdin and writes it back normalized, without a daemon). Every
//! setting the reply routing depends on must come back as written: a setting nmcli dropped
//! or rewrote would be lost on the laptop too. NetworkManager itself is not started: on a
//! CI machine a running NetworkManager would take over the machine's own interfaces.
//!
//! nmcli is not installed: its packages are downloaded once and unpacked under
//! target/nm (as tests/guest/run does with the guest's kernel).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use roamgw_e2e::binary;

/// nmcli from Debian's packages, unpacked once under target/nm.
fn nmcli() -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/nm");
    let root = dir.join("root");
    let nmcli = root.join("usr/bin/nmcli");
    if !nmcli.exists() {
        std::fs::create_dir_all(&dir).expect("target/nm");
        let got = Command::new("apt-get")
            .args(["download", "-qq", "network-manager", "libnm0"])
            .current_dir(&dir)
            .status()
            .expect("apt-get download (a Debian machine is needed)");
        assert!(
            got.success(),
            "apt-get download network-manager libnm0 failed"
        );
        for deb in std::fs::read_dir(&dir).expect("read target/nm").flatten() {
            if deb.path().extension().is_some_and(|e| e == "deb") {
                let unpacked = Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(deb.path())
                    .arg(&root)
                    .status()
                    .expect("dpkg-deb");
                assert!(unpacked.success(), "dpkg-deb -x {}", deb.path().display());
            }
        }
    }
    (nmcli, root.join("usr/lib/x86_64-linux-gnu"))
}

/// The keyfile as nmcli reads and writes it back; Err with nmcli's complaint.
fn through_nmcli(keyfile: &str) -> Result<String, String> {
    let (nmcli, libs) = nmcli();
    let mut child = Command::new(nmcli)
        .args([
            "--offline",
            "connection",
            "modify",
            "connection.autoconnect",
            "yes",
        ])
        .env("LD_LIBRARY_PATH", libs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nmcli");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), keyfile.as_bytes())
        .expect("write keyfile");
    let out = child.wait_with_output().expect("nmcli output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn roamgw(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(binary("roamgw"))
        .args(args)
        .env("ROAMGW_CONFIG_DIR", dir)
        .env("ROAMGW_METADATA_URL", "off")
        .output()
        .expect("roamgw");
    assert!(
        out.status.success(),
        "roamgw {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn networkmanager_reads_the_keyfile_as_written() {
    let dir = tempfile::tempdir().expect("dir");
    let init = [
        "init",
        "--public-ip",
        "203.0.113.10",
        "--anchor-ip",
        "10.16.0.5",
        "--forward6",
        "2001:db8::5",
        "--wireguard",
        "userspace",
    ];
    roamgw(dir.path(), &init);
    roamgw(dir.path(), &["add-roamer", "laptop"]);
    let keyfile = roamgw(dir.path(), &["show-config", "laptop", "--format", "nm"]);
    let read = through_nmcli(&keyfile).unwrap_or_else(|e| panic!("nmcli refused:\n{e}\n{keyfile}"));
    // nmcli writes marks in hex: 52354 is 0xcc82.
    for setting in [
        "type=wireguard",
        "interface-name=roamgw0",
        "peer-routes=false",
        "endpoint=203.0.113.10:51820",
        "persistent-keepalive=2",
        "allowed-ips=0.0.0.0/0;::/0;",
        "never-default=true",
        "route1=0.0.0.0/0",
        "route1=::/0",
        "route1_options=table=52354",
        "routing-rule1=priority 5100 from 192.168.32.2 table 52354",
        "routing-rule2=priority 5100 from 0.0.0.0/0 fwmark 0xcc82 table 52354",
        "routing-rule2=priority 5100 from ::/0 fwmark 0xcc82 table 52354",
    ] {
        assert!(read.contains(setting), "nmcli lost {setting}:\n{read}");
    }
    let address6 = keyfile
        .lines()
        .filter(|l| l.starts_with("address1=fd"))
        .collect::<Vec<_>>();
    assert_eq!(address6.len(), 1, "{keyfile}");
    assert!(read.contains(address6[0]), "{read}");
    // Why every setting is compared: NetworkManager drops a setting it cannot read without a
    // word (exit 0) and keeps the rest, so a rule it did not understand would just be missing.
    let broken = keyfile.replace("routing-rule1=priority 5100", "routing-rule1=priority five");
    let read = through_nmcli(&broken).expect("nmcli reads the rest");
    assert!(
        !read.contains("from 192.168.32.2 table"),
        "a rule nmcli cannot read is dropped:\n{read}"
    );
}
