//! `roamer check` over the config corpora: every valid file passes, every invalid file fails
//! with one line that carries the expected reason.

use std::fs;
use std::path::Path;
use std::process::Command;

fn fixtures(name: &str) -> std::path::PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures")).join(name)
}

fn toml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn roamer_check(config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_roamer"))
        .args(["check", "--config"])
        .arg(config.file_name().expect("file name"))
        // Relative key files in the fixtures resolve against the fixture directory.
        .current_dir(config.parent().expect("dir"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run roamer")
}

#[test]
fn valid_configs_pass() {
    let files = toml_files(&fixtures("valid-roamer"));
    assert!(files.len() >= 3, "valid corpus shrank");
    for path in files {
        let out = roamer_check(&path);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("is valid: roamer 'laptop'"), "{stdout}");
    }
}

#[test]
fn invalid_configs_fail_for_the_expected_reason() {
    let files = toml_files(&fixtures("invalid-roamer"));
    assert!(files.len() >= 10, "invalid corpus shrank");
    for path in files {
        let expected = fs::read_to_string(path.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{} has no .expected file", path.display()));
        let out = roamer_check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} passed", path.display());
        assert!(!stderr.contains("panicked"), "{}: {stderr}", path.display());
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{}: {stderr}",
            path.display()
        );
        assert!(
            stderr.contains(expected.trim()),
            "{}: expected '{}' in: {stderr}",
            path.display(),
            expected.trim()
        );
    }
}

#[test]
fn json_report_is_machine_readable() {
    let out = Command::new(env!("CARGO_BIN_EXE_roamer"))
        .args(["check", "--json", "--config"])
        .arg(fixtures("valid-roamer").join("inline-key.toml"))
        .output()
        .expect("run roamer");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["gateway_endpoint"], "droplet.example.com:51820");
    assert_eq!(report["gateway_endpoint_is_dns_name"], true);
    assert_eq!(report["persistent_keepalive"], 10);
}
