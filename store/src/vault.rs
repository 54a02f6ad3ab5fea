//! Secrets of a workspace (the Key Vault of the design): stored encrypted with
//! ChaCha20-Poly1305 under a key kept outside the metadata store, listed by name and date only,
//! read back only by the hub's own code that injects them (a run's environment, a webhook's
//! signature).
//!
//! Each value is sealed with a fresh random 96-bit nonce, and the workspace and name are the
//! associated data: a ciphertext copied onto another secret's record does not open. The key
//! comes from `SHOAL_SECRETS_KEY` (64 hex digits) or a key file of its own (mode 0600, created
//! on first start), never from the store, so a copy of the store alone reveals no value.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

use crate::error::{check_name, ErrorCode, InvalidName, IoError, ServiceError};
use crate::secrets::{random_bytes, write_private_file, RandomSourceError};
use crate::storage::{Records, StoreError};
use crate::workspace::{WorkspaceContents, WorkspaceError, WorkspaceResult};

const TREE: &str = "secrets";
/// The environment variable that may hold the key (64 hex digits) instead of a file.
pub const KEY_ENV_VAR: &str = "SHOAL_SECRETS_KEY";
/// The key file's name in the hub's data folder.
pub const KEY_FILE: &str = "secrets.key";
/// The largest value a secret may hold.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// What vault operations return.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("secret '{name}' not found in workspace '{workspace}'")]
    NotFound { workspace: String, name: String },
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error("secret '{name}' is {size} bytes, over the limit of {MAX_SECRET_BYTES} bytes")]
    TooLarge { name: String, size: usize },
    #[error("secret '{name}' is empty")]
    Empty { name: String },
    /// The stored value does not open under this key: the key changed, or the record was
    /// altered.
    #[error(
        "secret '{name}' cannot be decrypted with this hub's secrets key (was the key replaced?)"
    )]
    Undecryptable { name: String },
    #[error("the secrets key {0}")]
    BadKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Random(#[from] RandomSourceError),
}

impl ServiceError for VaultError {
    fn error_code(&self) -> ErrorCode {
        match self {
            VaultError::NotFound { .. } => ErrorCode::NotFound,
            VaultError::InvalidName(_) | VaultError::TooLarge { .. } | VaultError::Empty { .. } => {
                ErrorCode::InvalidArgument
            }
            VaultError::Undecryptable { .. } => ErrorCode::FailedPrecondition,
            VaultError::BadKey(_) | VaultError::Io(_) | VaultError::Random(_) => {
                ErrorCode::Internal
            }
            VaultError::Store(e) => e.error_code(),
        }
    }
}

pub type VaultResult<T> = Result<T, VaultError>;

/// A secret as listings show it: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    pub workspace: String,
    pub name: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct SealedSecret {
    #[serde(flatten)]
    info: SecretInfo,
    nonce: String,
    ciphertext: String,
}

/// The secrets of every workspace.
#[derive(Clone)]
pub struct Vault {
    records: Records,
    cipher: ChaCha20Poly1305,
}

impl Vault {
    /// A vault whose key comes from [`KEY_ENV_VAR`] when set, else from `key_file` (created
    /// with a random key, mode 0600, on first use).
    ///
    /// # Errors
    /// [`VaultError::BadKey`] for a key that is not 64 hex digits (naming where it came from);
    /// I/O errors naming the file.
    pub fn open(records: Records, key_file: &Path) -> VaultResult<Vault> {
        let (text, source) = match std::env::var(KEY_ENV_VAR) {
            Ok(text) => (text, KEY_ENV_VAR.to_string()),
            Err(_) => match std::fs::read_to_string(key_file) {
                Ok(text) => (text, key_file.display().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let key = hex::encode(random_bytes::<32>()?);
                    write_private_file(key_file, &key)?;
                    tracing::info!(path = %key_file.display(), "wrote a new secrets key");
                    (key, key_file.display().to_string())
                }
                Err(e) => {
                    return Err(IoError::with(format!("read {}", key_file.display()))(e).into())
                }
            },
        };
        let key: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| VaultError::BadKey(format!("in {source} is not 64 hex digits")))?;
        Ok(Vault::with_key(records, key))
    }

    /// A vault with the given 32-byte key.
    pub fn with_key(records: Records, key: [u8; 32]) -> Vault {
        Vault {
            records,
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// Creates or replaces a secret.
    ///
    /// # Errors
    /// An invalid name, an empty or oversized value, or a storage error.
    pub fn set(&self, workspace: &str, name: &str, value: &[u8]) -> VaultResult<SecretInfo> {
        check_name("secret name", name)?;
        if value.is_empty() {
            return Err(VaultError::Empty { name: name.into() });
        }
        if value.len() > MAX_SECRET_BYTES {
            return Err(VaultError::TooLarge {
                name: name.into(),
                size: value.len(),
            });
        }
        let nonce = random_bytes::<12>()?;
        let aad = associated_data(workspace, name);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::BadKey("cannot seal a value".into()))?;
        let now = crate::clock::now_ms();
        let created_ms = self
            .records
            .get::<SealedSecret>(TREE, &key(workspace, name))?
            .map(|old| old.info.created_ms)
            .unwrap_or(now);
        let info = SecretInfo {
            workspace: workspace.into(),
            name: name.into(),
            created_ms,
            updated_ms: now,
        };
        let sealed = SealedSecret {
            info: info.clone(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        };
        self.records.put(TREE, &key(workspace, name), &sealed)?;
        Ok(info)
    }

    /// A secret's value, for the hub's own use (never returned to a caller of the API).
    ///
    /// # Errors
    /// `NotFound`, or [`VaultError::Undecryptable`] when the key or the record changed.
    pub fn reveal(&self, workspace: &str, name: &str) -> VaultResult<Vec<u8>> {
        let sealed: SealedSecret =
            self.records
                .get(TREE, &key(workspace, name))?
                .ok_or_else(|| VaultError::NotFound {
                    workspace: workspace.into(),
                    name: name.into(),
                })?;
        let undecryptable = || VaultError::Undecryptable { name: name.into() };
        let nonce = hex::decode(&sealed.nonce).map_err(|_| undecryptable())?;
        let ciphertext = hex::decode(&sealed.ciphertext).map_err(|_| undecryptable())?;
        if nonce.len() != 12 {
            return Err(undecryptable());
        }
        self.cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &associated_data(workspace, name),
                },
            )
            .map_err(|_| undecryptable())
    }

    /// The secrets of a workspace, by name: names and dates only.
    ///
    /// # Errors
    /// A storage error.
    pub fn list(&self, workspace: &str) -> VaultResult<Vec<SecretInfo>> {
        let sealed: Vec<SealedSecret> = self.records.scan(TREE, &format!("{workspace}/"))?;
        Ok(sealed.into_iter().map(|s| s.info).collect())
    }

    /// Whether a secret exists.
    ///
    /// # Errors
    /// A storage error.
    pub fn exists(&self, workspace: &str, name: &str) -> VaultResult<bool> {
        Ok(self
            .records
            .get_bytes(TREE, &key(workspace, name))?
            .is_some())
    }

    /// Deletes a secret.
    ///
    /// # Errors
    /// `NotFound`, or a storage error.
    pub fn delete(&self, workspace: &str, name: &str) -> VaultResult<()> {
        if self.records.delete(TREE, &key(workspace, name))? {
            Ok(())
        } else {
            Err(VaultError::NotFound {
                workspace: workspace.into(),
                name: name.into(),
            })
        }
    }
}

impl WorkspaceContents for Vault {
    fn held(&self, workspace: &str) -> WorkspaceResult<Vec<String>> {
        let count = self
            .list(workspace)
            .map_err(WorkspaceError::contents)?
            .len();
        Ok(crate::workspace::held_count(count, "secret")
            .into_iter()
            .collect())
    }

    fn delete_all(&self, workspace: &str) -> WorkspaceResult<()> {
        self.records
            .delete_prefix(TREE, &format!("{workspace}/"))
            .map_err(WorkspaceError::contents)?;
        Ok(())
    }
}

fn key(workspace: &str, name: &str) -> String {
    format!("{workspace}/{name}")
}

fn associated_data(workspace: &str, name: &str) -> Vec<u8> {
    format!("shoal-secret/v1\0{workspace}\0{name}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::with_key(Records::in_memory(), [7; 32])
    }

    #[test]
    fn values_round_trip_and_listings_hold_no_value() {
        let vault = vault();
        vault.set("default", "db-password", b"hunter2").unwrap();
        assert_eq!(vault.reveal("default", "db-password").unwrap(), b"hunter2");
        let listed = vault.list("default").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "db-password");
        assert!(!serde_json::to_string(&listed).unwrap().contains("hunter2"));
        assert!(vault.list("other").unwrap().is_empty());
        vault.delete("default", "db-password").unwrap();
        assert!(matches!(
            vault.reveal("default", "db-password"),
            Err(VaultError::NotFound { .. })
        ));
    }

    #[test]
    fn the_store_holds_no_plaintext_and_a_moved_ciphertext_does_not_open() {
        let records = Records::in_memory();
        let vault = Vault::with_key(records.clone(), [7; 32]);
        vault.set("default", "a", b"plain-value-a").unwrap();
        vault.set("default", "b", b"plain-value-b").unwrap();
        let raw = records.get_bytes(TREE, "default/a").unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("plain-value"));
        // Copy a's sealed value onto b's record: it must not open as b.
        records.put_bytes(TREE, "default/b", &raw).unwrap();
        assert!(matches!(
            vault.reveal("default", "b"),
            Err(VaultError::Undecryptable { .. })
        ));
        let other_key = Vault::with_key(records, [8; 32]);
        assert!(matches!(
            other_key.reveal("default", "a"),
            Err(VaultError::Undecryptable { .. })
        ));
    }

    #[test]
    fn bad_names_and_sizes_are_refused() {
        let vault = vault();
        assert!(matches!(
            vault.set("default", "a/b", b"x"),
            Err(VaultError::InvalidName(_))
        ));
        assert!(matches!(
            vault.set("default", "big", &vec![0; MAX_SECRET_BYTES + 1]),
            Err(VaultError::TooLarge { .. })
        ));
        assert!(matches!(
            vault.set("default", "empty", b""),
            Err(VaultError::Empty { .. })
        ));
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let records = Records::in_memory();
        let first = Vault::open(records.clone(), &path).unwrap();
        first.set("default", "s", b"v").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Vault::open(records, &path).unwrap();
        assert_eq!(again.reveal("default", "s").unwrap(), b"v");
    }
}
