//! The packages from `bash scripts/package`: the .deb installed into a fresh Debian root
//! (mmdebstrap, bookworm, with the dependencies it declares), where `roamgw --version`,
//! `roamgw init` and `systemd-analyze verify` of the units run; the .rpm's file list,
//! scriptlets and dependencies read with `rpm -qp`.

use std::path::Path;
use std::process::Command;

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
}
