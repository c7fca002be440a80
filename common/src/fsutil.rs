//! Crash-safe file handling: atomic replace (tmp + fsync + rename + fsync of the directory),
//! private permissions, and an exclusive lock so concurrent CLIs never lose an update.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// Mode of files that hold secrets or the state.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of directories that hold such files.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct FsError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }
}

/// Creates `dir` (and parents) with mode 0700; an existing directory gets its mode tightened.
pub fn ensure_private_dir(dir: &Path) -> Result<(), FsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|e| FsError::new("cannot create directory", dir, e))?;
    let meta = fs::metadata(dir).map_err(|e| FsError::new("cannot stat", dir, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(|e| FsError::new("cannot chmod 0700", dir, e))?;
    }
    Ok(())
}

/// [`write_atomic`] of a file only root reads (0600), creating its directory (0700) first.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), FsError> {
    if let Some(dir) = path.parent() {
        ensure_private_dir(dir)?;
    }
    write_atomic(path, contents, PRIVATE_FILE_MODE)
}

/// Replaces `path` with `contents` so that a crash leaves either the old or the new file, never a mix.
/// The file is created with `mode` before any byte is written, so a secret is never readable by others.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| FsError::new("cannot create", &tmp, e))?;
        // An old tmp file from a crashed run may carry a wider mode: open() does not change it.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| FsError::new("cannot chmod", &tmp, e))?;
        file.write_all(contents)
            .map_err(|e| FsError::new("cannot write", &tmp, e))?;
        file.sync_all()
            .map_err(|e| FsError::new("cannot fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| FsError::new("cannot rename into place", path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| FsError::new("cannot fsync directory", dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a file to a string, with the path in the error.
pub fn read_to_string(path: &Path) -> Result<String, FsError> {
    fs::read_to_string(path).map_err(|e| FsError::new("cannot read", path, e))
}

/// An exclusive advisory lock held until dropped. Every command that reads-modifies-writes the
/// state holds it across the whole sequence.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Blocks until the lock on `<dir>/.lock` is ours.
    pub fn acquire(dir: &Path) -> Result<Self, FsError> {
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE_MODE)
            .open(&path)
            .map_err(|e| FsError::new("cannot open lock file", &path, e))?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| FsError::new("cannot lock", &path, e.into()))?;
        Ok(Self { _file: file })
    }
}

/// An exclusive lock that one process holds for its whole life (a daemon per config
/// directory), with the holder's pid in the file so others can name it. The kernel drops the
/// lock when the process dies, however it dies, so a stale file never blocks a new start.
#[derive(Debug)]
pub struct PidLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum PidLockError {
    #[error("held by pid {0}")]
    Held(u32),
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// How a process looks from /proc: gone (or a zombie, whose files are closed), exiting (killed,
/// its kernel resources still being released), or alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Gone,
    Exiting,
    Alive,
}

/// PF_EXITING in /proc/PID/stat's flags: set from the start of exit until the task is reaped.
const PF_EXITING: u64 = 0x4;

pub fn liveness(pid: u32) -> Liveness {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Liveness::Gone;
    };
    parse_liveness(&stat)
}

fn parse_liveness(stat: &str) -> Liveness {
    // "PID (comm) STATE PPID PGRP SESSION TTY TPGID FLAGS ...": comm may hold spaces and ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    match (
        fields.first(),
        fields.get(6).and_then(|f| f.parse::<u64>().ok()),
    ) {
        (Some(&("Z" | "X" | "x")), _) | (None, _) => Liveness::Gone,
        (_, Some(flags)) if flags & PF_EXITING != 0 => Liveness::Exiting,
        _ => Liveness::Alive,
    }
}

impl PidLock {
    fn open(path: &Path) -> Result<File, FsError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE_MODE)
            .open(path)
            .map_err(|e| FsError::new("cannot open lock file", path, e))
    }

    /// Takes the lock for this process and writes its pid. A live holder is an error at once;
    /// a holder that is exiting (a daemon killed a moment ago) is waited for, up to `patience`.
    pub fn acquire(path: &Path, patience: std::time::Duration) -> Result<Self, PidLockError> {
        let mut file = Self::open(path)?;
        let deadline = std::time::Instant::now() + patience;
        // A CLI's probe holds the lock shared for a few microseconds: a live holder must be
        // seen more than once before we believe it.
        let mut live_sightings = 0;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {}
                Err(e) => return Err(FsError::new("cannot lock", path, e.into()).into()),
            }
            let holder = read_pid(path);
            if let Some(pid) = holder.filter(|pid| liveness(*pid) == Liveness::Alive) {
                live_sightings += 1;
                if live_sightings >= 3 {
                    return Err(PidLockError::Held(pid));
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(PidLockError::Held(holder.unwrap_or(0)));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(|e| FsError::new("cannot write", path, e))?;
        Ok(Self { _file: file })
    }

    /// The pid of the process holding the lock at `path`, without taking it; `None` when no
    /// process holds it (or the file does not exist). `Some(0)`: held, pid not written yet.
    pub fn holder(path: &Path) -> Result<Option<u32>, FsError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::new("cannot open lock file", path, e)),
        };
        match flock(&file, FlockOperation::NonBlockingLockShared) {
            // Free: our shared lock goes with the file.
            Ok(()) => Ok(None),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(Some(read_pid(path).unwrap_or(0))),
            Err(e) => Err(FsError::new("cannot lock", path, e.into())),
        }
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.toml");
        write_atomic(&path, b"one", PRIVATE_FILE_MODE).expect("write");
        write_atomic(&path, b"two", PRIVATE_FILE_MODE).expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn private_dir_is_tightened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("a/b");
        fs::create_dir_all(&sub).expect("mkdir");
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).expect("chmod");
        ensure_private_dir(&sub).expect("ensure");
        let mode = fs::metadata(&sub).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn lock_serializes_threads() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("tempdir");
        let inside = Arc::new(AtomicU32::new(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let path = dir.path().to_path_buf();
                let inside = inside.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _lock = DirLock::acquire(&path).expect("lock");
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
    }

    #[test]
    fn liveness_reads_state_and_exit_flag() {
        let alive = "42 (roamgw run) S 1 42 42 0 -1 4194560 100 0 0 0";
        let exiting = "42 (roamgw) R 1 42 42 0 -1 4194564 100 0 0 0";
        let zombie = "42 (a) b) Z 1 42 42 0 -1 4194564 100 0 0 0";
        assert_eq!(parse_liveness(alive), Liveness::Alive);
        assert_eq!(parse_liveness(exiting), Liveness::Exiting);
        assert_eq!(parse_liveness(zombie), Liveness::Gone);
        assert_eq!(parse_liveness(""), Liveness::Gone);
    }

    #[test]
    fn pid_lock_names_its_holder_and_is_free_after_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("roamgw.pid");
        assert_eq!(PidLock::holder(&path).expect("probe"), None);
        let lock = PidLock::acquire(&path, std::time::Duration::ZERO).expect("lock");
        assert_eq!(
            PidLock::holder(&path).expect("probe"),
            Some(std::process::id())
        );
        // flock locks belong to the open file: a second open in this process is refused.
        match PidLock::acquire(&path, std::time::Duration::from_millis(100)) {
            Err(PidLockError::Held(pid)) => assert_eq!(pid, std::process::id()),
            other => panic!("second lock: {other:?}"),
        }
        drop(lock);
        assert_eq!(PidLock::holder(&path).expect("probe"), None);
        PidLock::acquire(&path, std::time::Duration::ZERO).expect("free again");
    }
}
