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
}
