//! The laptop on NetworkManager (issue 30), twice:
//! - the keyfile `roamgw show-config laptop --format nm` prints, read by Debian's own nmcli
//!   1.42 offline (`nmcli --offline connection modify` parses a keyfile from stdin and writes
//!   it back normalized, without a daemon): every setting the reply routing depends on must
//!   come back as written, since a setting nmcli dropped would be lost on the laptop too;
//! - Debian's NetworkManager 1.42 itself in the qemu guest under systemd (kernel WireGuard),
//!   the laptop being the guest: the keyfile brought up by `nmcli connection up`, the forward
//!   works and the laptop sees the client's own address over TCP and UDP; a reply rule someone
//!   removed comes back with `nmcli device reapply`. Not on the CI machine itself: a running
//!   NetworkManager would take over its interfaces.
//!
//! NetworkManager is not installed: its packages are downloaded once and unpacked under
//! target/nm (as tests/guest/run does with the guest's kernel), and run from there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use roamgw_e2e::{
    binary, install_bundle, journal, sh, wait_until, Scenario, Testbed, CLIENT, FLOATING_IP,
};

/// Debian's NetworkManager packages (the daemon, nmcli, and the two libraries they need
/// beyond this machine's), unpacked once under target/nm.
const PACKAGES: [&str; 3] = ["network-manager", "libnm0", "libndp0"];

/// The root NetworkManager is unpacked in, and its library directory (LD_LIBRARY_PATH).
fn nm_root() -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/nm");
    let root = dir.join("root");
    let libs = root.join("usr/lib/x86_64-linux-gnu");
    // The last package of the list marks a complete unpack (an older one lacked libndp).
    if !libs.join("libndp.so.0").exists() {
        std::fs::create_dir_all(&dir).expect("target/nm");
        let got = Command::new("apt-get")
            .args(["download", "-qq"])
            .args(PACKAGES)
            .current_dir(&dir)
            .status()
            .expect("apt-get download (a Debian machine is needed)");
        assert!(got.success(), "apt-get download {PACKAGES:?} failed");
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
    (root, libs)
}

/// The unpacked nmcli, with its libraries.
fn nmcli_command() -> Command {
    let (root, libs) = nm_root();
    let mut command = Command::new(root.join("usr/bin/nmcli"));
    command.env("LD_LIBRARY_PATH", libs);
    command
}

/// The keyfile as nmcli reads and writes it back; Err with nmcli's complaint.
fn through_nmcli(keyfile: &str) -> Result<String, String> {
    let mut child = nmcli_command()
        .args([
            "--offline",
            "connection",
            "modify",
            "connection.autoconnect",
            "yes",
        ])
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

const GUEST_TEST: &str = "guest_networkmanager";
const PORT: u16 = 7000;

#[test]
fn networkmanager_laptop_in_a_qemu_guest() {
    // Unpacked here: the guest sees this machine's tree but has no network of its own.
    nm_root();
    let (ok, console) = roamgw_e2e::run_in_systemd_guest(GUEST_TEST, 300);
    assert!(
        ok && console.contains("test result: ok. 1 passed"),
        "the NetworkManager test failed in the guest:\n{console}"
    );
    for line in console.lines().filter(|l| l.starts_with("NetworkManager ")) {
        eprintln!("guest: {line}");
    }
}

/// nmcli of the unpacked NetworkManager, which must succeed; stdout.
fn nmcli(args: &[&str]) -> String {
    let out = nmcli_command().args(args).output().expect("nmcli");
    assert!(
        out.status.success(),
        "nmcli {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// NetworkManager as a unit of the guest's systemd, managing `interface` and nothing else
/// (the laptop's own link keeps the testbed's address and route). The shared tree has no
/// udev, and NetworkManager waits for udev to have seen a link unless /sys is read-only, as
/// in a container: the unit gets a read-only /sys.
fn start_networkmanager(interface: &str) {
    let (root, libs) = nm_root();
    std::fs::create_dir_all("/etc/NetworkManager/system-connections").expect("nm dirs");
    std::fs::create_dir_all("/var/lib/NetworkManager").expect("nm state dir");
    std::fs::write(
        "/etc/NetworkManager/NetworkManager.conf",
        format!(
            "[main]\nplugins=keyfile\nno-auto-default=*\ndns=none\nrc-manager=unmanaged\n\
             auth-polkit=false\n\n[keyfile]\nunmanaged-devices=except:interface-name:{interface}\n\n\
             [connectivity]\nenabled=false\n"
        ),
    )
    .expect("NetworkManager.conf");
    // The daemon's D-Bus policy (its name on the system bus), from the package.
    std::fs::copy(
        root.join("usr/share/dbus-1/system.d/org.freedesktop.NetworkManager.conf"),
        "/etc/dbus-1/system.d/org.freedesktop.NetworkManager.conf",
    )
    .expect("D-Bus policy");
    sh(&["systemctl", "start", "dbus"]);
    sh(&["systemctl", "reload", "dbus"]);
    sh(&[
        "systemd-run",
        "--unit",
        "NetworkManager",
        "-p",
        "BindReadOnlyPaths=/sys",
        "--setenv",
        &format!("LD_LIBRARY_PATH={}", libs.display()),
        &root.join("usr/sbin/NetworkManager").to_string_lossy(),
        "--no-daemon",
    ]);
    let running = wait_until(Duration::from_secs(60), || {
        nmcli_command()
            .args(["-t", "general", "status"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        running,
        "NetworkManager did not start:\n{}",
        journal("NetworkManager")
    );
}

/// What the laptop's servers saw of a TCP connection and a UDP datagram from the client.
fn seen(bed: &Testbed) -> (Option<String>, Option<String>) {
    bed.seen_from_client(&format!("{FLOATING_IP}:{PORT}"))
}

#[test]
#[ignore = "runs inside the qemu guest that networkmanager_laptop_in_a_qemu_guest boots"]
fn guest_networkmanager() {
    roamgw_e2e::assert_in_guest("networkmanager_laptop_in_a_qemu_guest");
    let s = Scenario::laptop_is_this_machine();
    let keyfile = s.ok(&["show-config", "laptop", "--format", "nm"]);
    let interface = keyfile
        .lines()
        .find_map(|l| l.strip_prefix("interface-name="))
        .expect("interface-name")
        .to_string();
    let started = Instant::now();
    start_networkmanager(&interface);
    let path = format!("{}/{interface}.nmconnection", roamgw_common::nm::DIR);
    std::fs::write(&path, &keyfile).expect("keyfile");
    sh(&["chmod", "600", &path]);
    nmcli(&["connection", "reload"]);
    nmcli(&["connection", "up", &interface]);
    eprintln!(
        "NetworkManager started and the connection up in {:?}",
        started.elapsed()
    );
    let bundle = s.ok(&["show-config", "laptop", "--format", "networkd"]);
    let unit = install_bundle(&bundle, |p| p.ends_with(".service"));
    assert_eq!(unit.len(), 1, "the UDP reply unit:\n{bundle}");
    sh(&["systemctl", "daemon-reload"]);
    sh(&[
        "systemctl",
        "start",
        &format!("roamgw-udp-replies@{interface}"),
    ]);
    s.bed.peer_address_server(&s.bed.roam, PORT);
    s.ok(&["add-port", &format!("{PORT}/tcp+udp")]);
    let client = Some(CLIENT.to_string());
    let kept = wait_until(Duration::from_secs(15), || seen(&s.bed).0 == client);
    assert!(
        kept,
        "no forward through NetworkManager's tunnel:\n{}\n{}\n{}",
        sh(&["wg", "show"]),
        sh(&["ip", "rule", "show"]),
        journal("NetworkManager")
    );
    assert_eq!(
        seen(&s.bed),
        (client.clone(), client.clone()),
        "the client's own address"
    );

    // The reply rule removed by someone else: NetworkManager puts its own rules back when the
    // connection is reapplied (it does not watch them).
    let table = roamgw_common::replies::table(&interface.parse().expect("name")).to_string();
    let priority = roamgw_common::replies::RULE_PRIORITY.to_string();
    let rule = [
        "from",
        "192.168.32.2",
        "lookup",
        &table,
        "priority",
        &priority,
    ];
    sh(&[&["ip", "rule", "del"][..], &rule].concat());
    let by_itself = wait_until(Duration::from_secs(5), || {
        sh(&["ip", "rule", "show"]).contains(&format!("from 192.168.32.2 lookup {table}"))
    });
    eprintln!("NetworkManager put a removed reply rule back by itself within 5 s: {by_itself}");
    nmcli(&["device", "reapply", &interface]);
    let back = wait_until(Duration::from_secs(15), || {
        seen(&s.bed) == (client.clone(), client.clone())
    });
    assert!(
        back,
        "no forward after `nmcli device reapply`:\n{}\n{}",
        sh(&["ip", "rule", "show"]),
        journal("NetworkManager")
    );
}
