//! What both `doctor` commands print: findings, one a line, each problem with its fix.

use serde::Serialize;

/// How bad a finding is. `Fail` makes `doctor` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub message: String,
    /// What to do about it; `None` when nothing is to be done.
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, message: impl Into<String>) -> Self {
        Self::new(check, Level::Ok, message, None)
    }

    pub fn warn(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(check, Level::Warn, message, Some(fix.into()))
    }

    pub fn fail(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(check, Level::Fail, message, Some(fix.into()))
    }

    fn new(
        check: &'static str,
        level: Level,
        message: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Finding {
            check,
            level,
            message: message.into(),
            fix,
        }
    }
}

/// How long a WireGuard session lives without a new handshake (REJECT_AFTER_TIME): a peer
/// whose last completed handshake is older has no working tunnel.
pub const SESSION_SECS: u64 = 180;

/// Whether a handshake `secs` ago (`None`: never) still carries a session.
pub fn session_alive(secs: Option<u64>) -> bool {
    secs.is_some_and(|s| s <= SESSION_SECS)
}

/// Which WireGuard this machine runs: the same line on the gateway and on the laptop.
pub fn wireguard_kind(kernel_available: bool) -> Finding {
    if kernel_available {
        Finding::ok("wireguard", "kernel WireGuard available")
    } else {
        Finding::ok(
            "wireguard",
            "no kernel WireGuard: the embedded userspace device is used",
        )
    }
}

/// The text `doctor` prints (or JSON), and its exit code: 1 when a finding fails.
pub fn report(findings: &[Finding], json: bool) -> (String, u8) {
    let code = u8::from(findings.iter().any(|f| f.level == Level::Fail));
    if json {
        return (
            serde_json::to_string_pretty(findings).unwrap_or_default() + "\n",
            code,
        );
    }
    let mut out = String::new();
    for f in findings {
        let level = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        out.push_str(&format!("{level} {}: {}", f.check, f.message));
        if let Some(fix) = &f.fix {
            out.push_str(&format!(" — fix: {fix}"));
        }
        out.push('\n');
    }
    (out, code)
}

/// One thing broken on purpose: its name, how to break healthy facts, and the check and level
/// it must show up as.
pub type Break<'a, F> = (&'a str, fn(&mut F), &'static str, Level);

/// For the doctors' table tests: each case, applied to fresh healthy facts, must give exactly
/// one finding that is not `Ok`, of the expected check and level, with a fix.
pub fn assert_each_break_is_found<F>(
    healthy: impl Fn() -> F,
    evaluate: impl Fn(&F) -> Vec<Finding>,
    cases: &[Break<'_, F>],
) {
    for (what, break_it, check, level) in cases {
        let mut facts = healthy();
        break_it(&mut facts);
        let findings = evaluate(&facts);
        let bad: Vec<&Finding> = findings.iter().filter(|f| f.level != Level::Ok).collect();
        assert_eq!(bad.len(), 1, "{what}: {findings:?}");
        assert_eq!((bad[0].check, bad[0].level), (*check, *level), "{what}");
        assert!(bad[0].fix.is_some(), "{what}: no fix");
    }
}
