//! The config directory: `gateway.toml` (the desired state) and `keys/` (one 0600 file per
//! secret). Every change is lock → load → change → validate → atomic write, so concurrent CLIs
//! never lose an update and a failed change leaves the file byte-identical.

use std::path::{Path, PathBuf};

use roamgw_common::fsutil::{self, DirLock, FsError, PRIVATE_FILE_MODE};
use roamgw_common::keys::KeyError;
use roamgw_common::state::{GatewayState, StateError};
use roamgw_common::{PresharedKey, PrivateKey, PublicKey, RoamerName};

pub const DEFAULT_CONFIG_DIR: &str = "/etc/roamgw";
pub const STATE_FILE: &str = "gateway.toml";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no gateway is set up in {0}: run `roamgw init` first (or point --config-dir at the right directory)")]
    NotInitialized(PathBuf),
    #[error("{path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: StateError,
    },
    #[error("{path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error("{0}{hint}", hint = permission_hint(.0))]
    Fs(#[from] FsError),
    #[error("{path} is readable by others (mode {mode:04o}): a secret there may be known; `chmod 600 {path}` if it was never exposed, else rotate it")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path} does not match the gateway's public key in the state ({expected}): restore the matching key file, or `roamgw init --force` for new keys (every roamer then needs its new config)")]
    KeyMismatch { path: PathBuf, expected: PublicKey },
    #[error("the preshared key of roamer '{name}' is missing ({path}): restore it, or `roamgw remove-roamer {name} --force` and add it again (its config changes)")]
    MissingPsk { name: RoamerName, path: PathBuf },
}

/// What to do about a file roamgw may not touch (empty for other errors).
pub fn permission_hint(e: &FsError) -> &'static str {
    if e.source.kind() == std::io::ErrorKind::PermissionDenied {
        " (run as root, or use --config-dir for a directory of your own)"
    } else {
        ""
    }
}

/// A key file as `wg genkey` writes one: the base64 text and a newline, mode 0600.
fn write_secret(path: &Path, base64: &str) -> Result<(), StoreError> {
    let text = zeroize::Zeroizing::new(format!("{base64}\n"));
    Ok(fsutil::write_atomic(
        path,
        text.as_bytes(),
        PRIVATE_FILE_MODE,
    )?)
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    pub fn gateway_key_path(&self) -> PathBuf {
        self.keys_dir().join("gateway.key")
    }

    pub fn roamer_key_path(&self, name: &RoamerName) -> PathBuf {
        self.keys_dir().join(format!("{name}.key"))
    }

    pub fn roamer_psk_path(&self, name: &RoamerName) -> PathBuf {
        self.keys_dir().join(format!("{name}.psk"))
    }

    pub fn is_initialized(&self) -> bool {
        self.state_path().exists()
    }

    /// Creates the directories (0700). Used by `init` only: other commands need an existing setup.
    pub fn create_dirs(&self) -> Result<(), StoreError> {
        fsutil::ensure_private_dir(&self.dir)?;
        fsutil::ensure_private_dir(&self.keys_dir())?;
        Ok(())
    }

    pub fn lock(&self) -> Result<DirLock, StoreError> {
        if !self.dir.is_dir() {
            return Err(StoreError::NotInitialized(self.dir.clone()));
        }
        Ok(DirLock::acquire(&self.dir)?)
    }

    /// Reads the state. The file is only ever replaced by rename, so a read without the lock
    /// sees a whole version.
    pub fn load(&self) -> Result<GatewayState, StoreError> {
        let path = self.state_path();
        let text = match fsutil::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.is_not_found() => return Err(StoreError::NotInitialized(self.dir.clone())),
            Err(e) => return Err(e.into()),
        };
        GatewayState::from_toml(&text).map_err(|source| StoreError::State { path, source })
    }

    pub fn save(&self, state: &GatewayState) -> Result<(), StoreError> {
        let not_saved = |source| StoreError::State {
            path: self.state_path(),
            source,
        };
        state.validate().map_err(not_saved)?;
        let text = state.to_toml().map_err(not_saved)?;
        fsutil::write_atomic(&self.state_path(), text.as_bytes(), PRIVATE_FILE_MODE)?;
        Ok(())
    }

    pub fn write_private_key(&self, path: &Path, key: &PrivateKey) -> Result<(), StoreError> {
        write_secret(path, &key.expose_base64())
    }

    /// A secret file as it was before (`None`: it was not there): a refused rotation leaves
    /// the keys that match the state.
    pub fn put_back_secret(&self, path: &Path, old: Option<&str>) {
        let _ = match old {
            Some(text) => fsutil::write_atomic(path, text.as_bytes(), PRIVATE_FILE_MODE)
                .map_err(|e| e.to_string()),
            None => std::fs::remove_file(path).map_err(|e| e.to_string()),
        };
    }

    pub fn write_psk(&self, path: &Path, key: &PresharedKey) -> Result<(), StoreError> {
        write_secret(path, &key.expose_base64())
    }

    fn read_key<K>(&self, path: &Path) -> Result<Option<K>, StoreError>
    where
        K: std::str::FromStr<Err = KeyError>,
    {
        // As ssh does with private keys: a secret others can read is not used.
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::Exposed {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        match fsutil::read_to_string(path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|source| StoreError::Key {
                    path: path.to_path_buf(),
                    source,
                }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The gateway's private key, which must belong to the public key the state (and so every
    /// roamer's config) names.
    pub fn gateway_private_key(&self, state: &GatewayState) -> Result<PrivateKey, StoreError> {
        let path = self.gateway_key_path();
        let key: PrivateKey = self.read_key(&path)?.ok_or_else(|| {
            StoreError::Fs(FsError::new(
                "missing gateway key (restore it from a backup, or `roamgw init --force` for new keys)",
                &path,
                std::io::ErrorKind::NotFound.into(),
            ))
        })?;
        if key.public_key() != state.gateway.public_key {
            return Err(StoreError::KeyMismatch {
                path,
                expected: state.gateway.public_key,
            });
        }
        Ok(key)
    }

    /// The roamer's private key, if it was generated here (not with `--public-key`).
    pub fn roamer_private_key(&self, name: &RoamerName) -> Result<Option<PrivateKey>, StoreError> {
        self.read_key(&self.roamer_key_path(name))
    }

    /// Every roamer has one (`add-roamer` writes it first): a missing file is an error, never
    /// a silent tunnel without a preshared key.
    pub fn roamer_psk(&self, name: &RoamerName) -> Result<PresharedKey, StoreError> {
        let path = self.roamer_psk_path(name);
        self.read_key(&path)?.ok_or(StoreError::MissingPsk {
            name: name.clone(),
            path,
        })
    }

    /// Removes a roamer's key files; a file that is already gone is fine.
    pub fn remove_roamer_keys(&self, name: &RoamerName) -> Result<(), StoreError> {
        for path in [self.roamer_key_path(name), self.roamer_psk_path(name)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(FsError::new("cannot remove", &path, e).into()),
            }
        }
        Ok(())
    }
}
