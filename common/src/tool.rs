//! Running the system's tools (`nft`, `conntrack`): the one place a child process is spawned
//! with its input piped in and its output collected, so every caller tells "not installed"
//! from "ran and failed" the same way and reports the tool's own message on one line.

use std::ffi::OsStr;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// What a tool did: whether it exited 0, its stdout, and its stderr folded to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args` with `stdin` piped in (or none). `Err` only when the tool could not be
/// started or fed (not installed, not executable); a non-zero exit is `Ok` with
/// `success: false`, for the caller to judge (some tools exit 1 for "nothing matched").
pub fn run<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    stdin: Option<&str>,
) -> std::io::Result<Ran> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok(Ran {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: one_line(&out.stderr),
    })
}

/// A tool's stderr, trimmed, its non-empty lines joined by " | ".
fn one_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_goes_in_and_both_outputs_come_back() {
        let ran = run(
            "sh",
            &["-c", "cat; echo 'a\n\n  b' >&2; exit 3"],
            Some("hello"),
        )
        .expect("sh runs");
        assert_eq!(
            ran,
            Ran {
                success: false,
                stdout: "hello".into(),
                stderr: "a | b".into(),
            }
        );
    }

    #[test]
    fn a_missing_tool_is_an_error_not_a_failure() {
        let err = run::<&str>("roamgw-no-such-tool", &[], None).expect_err("not installed");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
