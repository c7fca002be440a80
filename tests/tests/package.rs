//! The packages from `bash scripts/package`: the .deb installed into a fresh Debian root
//! (mmdebstrap, bookworm, with the dependencies it declares), where `roamgw --version`,
//! `roamgw init` and `systemd-analyze verify` of the units run; the .rpm's file list,
//! scriptlets and dependencies read with `rpm -qp`; the roamer's systemd-sysext image merged
//! on the qemu guest booted with systemd (the laptop is the guest itself): `systemctl start
//! roamer` from the image, the forward works, and unmerge leaves nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use roamgw_e2e::{journal, wait_until, Scenario, FLOATING_IP};

fn run(command: &mut Command) -> String {
    let out = command.output().expect("run");
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn packages_install_and_carry_what_they_should() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the package test needs root (chroot, dpkg in the new root); run it as root"
    );
    for (tool, package) in [
        ("mmdebstrap", "mmdebstrap"),
        ("rpmbuild", "rpm"),
        ("dpkg-deb", "dpkg"),
    ] {
        assert!(
            roamgw_e2e::on_path(tool),
            "`{tool}` is missing: run `bash scripts/install-deps` (package {package})"
        );
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    run(Command::new("bash").arg(repo.join("scripts/package")));
    let version = env!("CARGO_PKG_VERSION");
    let deb = repo.join(format!("dist/roamgw_{version}_amd64.deb"));
    let rpm = repo.join(format!("dist/roamgw-{version}-1.x86_64.rpm"));

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    run(Command::new("mmdebstrap").args([
        "--variant=apt",
        "--include=systemd,nftables,iproute2,procps",
        "--mode=root",
        "--quiet",
        "bookworm",
        root.to_str().expect("utf-8"),
        "http://deb.debian.org/debian",
    ]));
    std::fs::copy(&deb, root.join("tmp/roamgw.deb")).expect("copy the .deb");
    let chroot = |args: &[&str]| {
        let mut c = Command::new("chroot");
        c.arg(&root).args(args).env("ROAMGW_METADATA_URL", "off");
        run(&mut c)
    };
    chroot(&["dpkg", "-i", "/tmp/roamgw.deb"]);
    assert!(chroot(&["roamgw", "--version"]).contains(version));
    assert!(chroot(&["roamer", "--version"]).contains(version));
    let init = chroot(&[
        "roamgw",
        "init",
        "--public-ip",
        "203.0.113.10",
        "--anchor-ip",
        "10.16.0.5",
        "--floating-ip",
        "203.0.113.50",
        "--wireguard",
        "external",
    ]);
    assert!(init.contains("initialized /etc/roamgw"), "{init}");
    chroot(&[
        "systemd-analyze",
        "verify",
        "--man=no",
        "/usr/lib/systemd/system/roamgw.service",
        "/usr/lib/systemd/system/roamer.service",
    ]);
    for file in [
        "usr/share/man/man1/roamgw.1.gz",
        "usr/share/man/man1/roamer.1.gz",
        "usr/share/bash-completion/completions/roamgw",
        "usr/share/zsh/vendor-completions/_roamer",
        "usr/share/fish/vendor_completions.d/roamgw.fish",
        "usr/share/doc/roamgw/docs/operations.md",
    ] {
        assert!(root.join(file).exists(), "{file} not installed");
    }
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/roamgw.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/bin/roamgw"), "{unit}");

    let rpm = rpm.to_str().expect("utf-8");
    let files = run(Command::new("rpm").args(["-qlp", rpm]));
    for file in [
        "/usr/bin/roamgw",
        "/usr/bin/roamer",
        "/usr/lib/systemd/system/roamer.service",
        "/usr/share/man/man1/roamgw.1.gz",
    ] {
        assert!(
            files.lines().any(|l| l == file),
            "{file} not in the .rpm:\n{files}"
        );
    }
    let scripts = run(Command::new("rpm").args(["-qp", "--scripts", rpm]));
    assert!(
        scripts.contains("postinstall") && scripts.contains("daemon-reload"),
        "{scripts}"
    );
    let requires = run(Command::new("rpm").args(["-qpR", rpm]));
    assert!(
        requires.contains("nftables") && requires.contains("iproute"),
        "{requires}"
    );

    let image = sysext_image();
    let listing = run(Command::new("unsquashfs").arg("-l").arg(&image));
    for file in [
        "/usr/bin/roamer",
        "/usr/lib/systemd/system/roamer.service",
        "/usr/share/man/man1/roamer.1.gz",
        "/usr/lib/extension-release.d/extension-release.roamer",
    ] {
        assert!(
            listing.contains(file),
            "{file} not in the image:\n{listing}"
        );
    }
    assert!(
        !listing.contains("/etc"),
        "a sysext image holds /usr only:\n{listing}"
    );
    let (ok, console) = roamgw_e2e::run_in_systemd_guest("guest_sysext", 300);
    assert!(
        ok && console.contains("test result: ok. 1 passed"),
        "the sysext test failed in the guest:\n{console}"
    );
}

fn sysext_image() -> PathBuf {
    let version = env!("CARGO_PKG_VERSION");
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(format!("dist/roamer-{version}-x86-64.raw"))
}

#[test]
#[ignore = "runs inside the qemu guest that packages_install_and_carry_what_they_should boots"]
fn guest_sysext() {
    roamgw_e2e::assert_in_guest("packages_install_and_carry_what_they_should");
    let s = Scenario::laptop_is_this_machine();
    let roamer_unit = Path::new("/usr/lib/systemd/system/roamer.service");
    assert!(!roamer_unit.exists(), "roamer.service before the merge");

    std::fs::create_dir_all("/var/lib/extensions").expect("extensions dir");
    std::fs::copy(sysext_image(), "/var/lib/extensions/roamer.raw").expect("copy the image");
    run(Command::new("systemd-sysext").arg("merge"));
    let status = run(Command::new("systemd-sysext").arg("status"));
    assert!(status.contains("roamer"), "{status}");
    assert!(roamer_unit.exists(), "no roamer.service after the merge");

    let config = s.ok(&["show-config", "laptop", "--format", "roamer"]);
    std::fs::create_dir_all("/etc/roamgw").expect("/etc/roamgw");
    std::fs::write("/etc/roamgw/roamer.toml", config).expect("roamer.toml");
    run(Command::new("chmod").args(["0600", "/etc/roamgw/roamer.toml"]));
    s.bed.tcp_banner_server(&s.bed.roam, 22, "roamer");
    s.ok(&["add-port", "22"]);
    run(Command::new("systemctl").arg("daemon-reload"));
    run(Command::new("systemctl").args(["start", "roamer"]));
    let took = s.bed.time_until_banner(
        &format!("{FLOATING_IP}:22"),
        "roamer",
        Instant::now(),
        Duration::from_secs(20),
    );
    assert!(
        took.is_some(),
        "no forward with roamer.service from the image:\n{}",
        journal("roamer")
    );

    run(Command::new("systemctl").args(["stop", "roamer"]));
    run(Command::new("systemd-sysext").arg("unmerge"));
    run(Command::new("systemctl").arg("daemon-reload"));
    assert!(!roamer_unit.exists(), "roamer.service after the unmerge");
    assert!(
        !Path::new("/usr/bin/roamer").exists(),
        "roamer after the unmerge"
    );
    let gone = wait_until(Duration::from_secs(5), || {
        !Command::new("systemctl")
            .args(["cat", "roamer"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(gone, "systemd still knows roamer.service after the unmerge");
}
