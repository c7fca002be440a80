//! `roamer up` / `roamer down`: wg-quick-like one-shot use. The tunnel needs a process for as
//! long as it is up (userspace WireGuard, roaming), so `up` starts `roamer run` in the
//! background, in a process group of its own so the terminal's ^C does not reach it, and
//! returns once the gateway answers.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use roamgw_common::fsutil;

use clap::ValueEnum;

use crate::cli::RunArgs;
use crate::health::Health;
use crate::status::{self, RUN_DIR};

#[derive(Debug, thiserror::Error)]
pub enum UpDownError {
    #[error(transparent)]
    Fs(#[from] fsutil::FsError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot start `roamer run`: {0}")]
    Spawn(std::io::Error),
    #[error("`roamer run` exited: {0} (full log: {1})")]
    Exited(String, PathBuf),
    #[error("roamer (pid {0}) did not stop within {1} s; it is still running")]
    StillRunning(u32, u64),
}

fn log_path(interface: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("roamer-{interface}.log"))
}

/// Starts `roamer run` and waits up to `wait` for the gateway's first answer.
pub fn up(args: &RunArgs, wait: Duration) -> Result<String, UpDownError> {
    let config_path = args.config.config.as_path();
    let config = crate::config::read(config_path)?;
    let interface = config.interface.to_string();
    if let Some(running) = status::read_live(&interface) {
        return Ok(format!(
            "roamer {}: already up on {interface} (pid {}): `roamer status` shows how it is\n",
            config.name, running.pid
        ));
    }
    fsutil::ensure_private_dir(Path::new(RUN_DIR))?;
    let log = log_path(&interface);
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| fsutil::FsError::new("open", &log, e))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| fsutil::FsError::new("open", &log, e))?;
    let exe = std::env::current_exe().map_err(UpDownError::Spawn)?;
    let config_arg = std::path::absolute(config_path).unwrap_or(config_path.to_path_buf());
    let started = Instant::now();
    let mut command = Command::new(exe);
    command
        .arg("run")
        .arg("--config")
        .arg(&config_arg)
        .arg("--wireguard")
        .arg(
            args.wireguard
                .to_possible_value()
                .map_or("auto".to_string(), |v| v.get_name().to_string()),
        );
    if let Some(addr) = args.http {
        command.arg("--http").arg(addr.to_string());
    }
    if let Some(keepalive) = args.keepalive {
        command.arg("--keepalive").arg(keepalive.to_string());
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(UpDownError::Spawn)?;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output")
                .to_string();
            return Err(UpDownError::Exited(last, log));
        }
        if let Some(state) = status::read_live(&interface) {
            if state.health == Health::Up {
                return Ok(format!(
                    "roamer {}: up on {interface} ({}) via {} in {} ms; log: {}\n",
                    config.name,
                    config.address,
                    state.gateway_address,
                    started.elapsed().as_millis(),
                    log.display()
                ));
            }
        }
        if started.elapsed() >= wait {
            return Ok(format!(
                "roamer {}: started on {interface} (pid {}), but the gateway has not answered within {} s; \
                 it keeps trying: see `roamer status` and {}\n",
                config.name,
                child.id(),
                wait.as_secs(),
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the `roamer run` that serves this config's interface, however it was started.
pub fn down(config_path: &Path, wait: Duration) -> Result<String, UpDownError> {
    let config = crate::config::read(config_path)?;
    let interface = config.interface.to_string();
    let Some(running) = status::read_live(&interface) else {
        return Ok(format!(
            "roamer {}: was not running on {interface}\n",
            config.name
        ));
    };
    if let Some(pid) = i32::try_from(running.pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let started = Instant::now();
    while status::process_alive(running.pid) {
        if started.elapsed() >= wait {
            return Err(UpDownError::StillRunning(running.pid, wait.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(format!(
        "roamer {}: down ({interface} removed)\n",
        config.name
    ))
}
