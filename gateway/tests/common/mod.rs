//! Helpers for tests that run the `roamgw` binary against a temporary config directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Gateway {
    pub dir: tempfile::TempDir,
}

/// `roamgw init` with the documentation addresses, no detection needed.
pub const INIT: &[&str] = &[
    "init",
    "--public-ip",
    "203.0.113.10",
    "--anchor-ip",
    "10.16.0.5",
    "--floating-ip",
    "203.0.113.50",
];

impl Gateway {
    /// An initialized gateway with roamer `laptop` and forward `22`, set up without root.
    pub fn with_laptop() -> Self {
        let gateway = Self::empty();
        gateway.ok(INIT);
        gateway.ok(&["add-roamer", "laptop"]);
        gateway.ok(&["add-port", "22"]);
        gateway
    }

    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    pub fn state_path(&self) -> PathBuf {
        self.config_dir().join("gateway.toml")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_roamgw"))
            .arg("--config-dir")
            .arg(self.config_dir())
            .args(args)
            .env_remove("ROAMGW_CONFIG_DIR")
            .env_remove("RUST_LOG")
            // Never a real metadata service of the machine the tests run on.
            .env("ROAMGW_METADATA_URL", "off")
            .output()
            .expect("run roamgw")
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "roamgw {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }
}

pub fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures"))
}
