//! The `roamer` binary's bad-input corpus: each case fails with exit 1 (refused) or 2 (usage),
//! one line on stderr with the expected words, no panic, and the config file untouched.

use std::process::Command;

const VALID: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/valid-roamer/inline-key.toml"
);

fn bad_input(config: &str) -> Vec<(Vec<String>, &'static str)> {
    let cases: Vec<(&[&str], &'static str)> = vec![
        (
            &["check", "--config", "/nonexistent/roamer.toml"],
            "no roamer config at /nonexistent/roamer.toml",
        ),
        (&["check", "--config", "/tmp"], "Is a directory"),
        (
            &["check", "--config", "@", "--jsn"],
            "a similar argument exists: '--json'",
        ),
        (
            &["check", "--config"],
            "a value is required for '--config <FILE>'",
        ),
        (
            &["run", "--config", "@", "--wireguard", "magic"],
            "possible values: auto, kernel, userspace",
        ),
        (
            &["run", "--config", "/nonexistent.toml"],
            "roamgw show-config NAME --format roamer",
        ),
        (
            &["run", "--config", "@", "--interface", "x"],
            "unexpected argument '--interface'",
        ),
        (&["up", "--config", "/nonexistent.toml"], "no roamer config"),
        (
            &["up", "--config", "@", "--wait", "x"],
            "invalid value 'x' for '--wait",
        ),
        (
            &["down", "--config", "/nonexistent.toml"],
            "no roamer config",
        ),
        (
            &["status", "--config", "/nonexistent.toml"],
            "no roamer config",
        ),
        (&["status", "--bogus"], "unexpected argument '--bogus'"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&[], "Usage:"),
    ];
    cases
        .into_iter()
        .map(|(args, expected)| {
            (
                args.iter().map(|a| a.replace('@', config)).collect(),
                expected,
            )
        })
        .collect()
}

#[test]
fn bad_input_corpus_fails_cleanly_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("roamer.toml");
    std::fs::copy(VALID, &config).expect("copy config");
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let before = std::fs::read(&config).expect("config");
    let cases = bad_input(config.to_str().expect("utf-8"));
    assert!(cases.len() >= 14, "the corpus shrank to {}", cases.len());
    for (args, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_roamer"))
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .expect("roamer");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let what = format!("roamer {args:?}");
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{what}: exit {:?}",
            out.status.code()
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        // The bare command's message is the help itself.
        if !args.is_empty() {
            assert_eq!(stderr.trim_end().lines().count(), 1, "{what}: {stderr}");
        }
        assert!(
            stderr.contains(expected),
            "{what}: expected {expected:?} in {stderr}"
        );
        assert_eq!(
            std::fs::read(&config).expect("config"),
            before,
            "{what} changed the config"
        );
    }
}

#[test]
fn completions_and_man_page() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_roamer"))
            .args(args)
            .output()
            .expect("roamer");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        assert!(
            script.contains("status") && script.contains("check"),
            "{shell}"
        );
    }
    let man = run(&["man"]);
    for section in ["ROAMER RUN", "ROAMER STATUS", "ROAMER CHECK"] {
        assert!(man.contains(section), "{section} missing");
    }
}
