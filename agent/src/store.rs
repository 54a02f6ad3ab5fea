//! The agent's data directory: verified models, partial downloads and `state.json`.
//!
//! ```text
//! {data_dir}/
//!   models/<digest>.onnx      verified models: the active one and the previous one
//!   baselines/<digest>.pb     their drift baselines (encoded `DriftBaseline`), fetched as blobs
//!   downloads/<digest>.part   partial downloads; their length is where a download resumes
//!   state.json                active and previous model (as signed desired states), boot
//!                             epoch, and the highest desired-state revision accepted
//! ```
//!
//! `state.json` is replaced atomically (temporary file, fsync, rename, fsync of the directory),
//! so a power cut leaves either the old or the new file, never a mix. It holds the signed
//! desired states rather than plain names so that the agent re-verifies what it boots into,
//! and the highest revision it accepted, so that a replayed older desired state is refused
//! after a restart too.
//!
//! Every function here does blocking file I/O; async code calls them through
//! [`Store::blocking`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shoal_proto::device::{DesiredState, DriftBaseline};
use thiserror::Error;

use crate::manifest::VerifiedManifest;

/// The version of the `state.json` format.
pub const STATE_FORMAT: u32 = 2;
const STATE_FILE: &str = "state.json";
const MODELS_DIR: &str = "models";
const BASELINES_DIR: &str = "baselines";
const DOWNLOADS_DIR: &str = "downloads";

/// Why the data directory could not be read or written.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} is corrupt: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    #[error("a storage task failed: {0}")]
    Task(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What survives a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredState {
    /// The file format, [`STATE_FORMAT`].
    pub format: u32,
    /// Incremented on every start, so the hub can tell this run's messages from the last one's.
    pub boot_epoch: u64,
    /// The model the agent serves.
    pub active: Option<StoredModel>,
    /// The model it served before, kept on disk for rollback.
    pub previous: Option<StoredModel>,
    /// The highest desired-state revision this device accepted: anything lower is a replay.
    #[serde(default)]
    pub accepted: Option<AcceptedRevision>,
}

/// A desired state the device accepted, by revision and the digest of its signed body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedRevision {
    pub revision: u64,
    /// sha256 of the signed body: the same revision re-published (after a hub restart) is
    /// byte for byte the same; different contents under it are refused.
    pub body_sha256: String,
}

/// One model as its signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredModel {
    /// For people reading the file; the agent trusts only the signed desired state below.
    pub model: String,
    pub version: u32,
    pub digest: String,
    /// The desired-state body the hub signed (it carries the manifest), base64 (standard
    /// alphabet, padded).
    pub desired: String,
    /// The hub's ed25519 signature over it, base64.
    pub signature: String,
}

// === impl StoredState ===

impl StoredState {
    pub fn empty(boot_epoch: u64) -> StoredState {
        StoredState {
            format: STATE_FORMAT,
            boot_epoch,
            active: None,
            previous: None,
            accepted: None,
        }
    }
}

// === impl StoredModel ===

impl StoredModel {
    pub fn from_verified(verified: &VerifiedManifest) -> StoredModel {
        StoredModel {
            model: verified.manifest.model.clone(),
            version: verified.manifest.version,
            digest: verified.manifest.digest.clone(),
            desired: BASE64.encode(&verified.signed.body),
            signature: BASE64.encode(&verified.signed.signature),
        }
    }

    /// The signed desired state, still to be verified.
    ///
    /// # Errors
    /// A message when either field is not base64.
    pub fn signed_desired(&self) -> Result<DesiredState, String> {
        let body = BASE64
            .decode(&self.desired)
            .map_err(|e| format!("desired state is not base64: {e}"))?;
        let signature = BASE64
            .decode(&self.signature)
            .map_err(|e| format!("signature is not base64: {e}"))?;
        Ok(DesiredState { body, signature })
    }
}

/// The data directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

// === impl Store ===

impl Store {
    /// Opens the data directory, creating it and its subdirectories when missing.
    ///
    /// # Errors
    /// `Io` when a directory cannot be created.
    pub fn open(root: &Path) -> StoreResult<Store> {
        for dir in [
            root.to_path_buf(),
            root.join(MODELS_DIR),
            root.join(BASELINES_DIR),
            root.join(DOWNLOADS_DIR),
        ] {
            fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// Runs blocking store work on tokio's blocking pool.
    ///
    /// # Errors
    /// What `work` returns, or `Task` when it panicked.
    pub async fn blocking<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> StoreResult<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state_path(&self) -> PathBuf {
        self.root.join(STATE_FILE)
    }

    /// Where a verified model lives. `digest` must have passed [`crate::manifest::is_digest`].
    pub fn model_path(&self, digest: &str) -> PathBuf {
        debug_assert!(
            crate::manifest::is_digest(digest),
            "digest {digest:?} used as a file name"
        );
        self.root.join(MODELS_DIR).join(format!("{digest}.onnx"))
    }

    /// Where a verified drift baseline lives. `digest` must have passed
    /// [`crate::manifest::is_digest`].
    pub fn baseline_path(&self, digest: &str) -> PathBuf {
        debug_assert!(
            crate::manifest::is_digest(digest),
            "digest {digest:?} used as a file name"
        );
        self.root.join(BASELINES_DIR).join(format!("{digest}.pb"))
    }

    /// Reads a drift baseline kept on disk, checking its sha256 and size against what the
    /// signed manifest says.
    ///
    /// # Errors
    /// `Io` when it cannot be read, `Corrupt` when it does not match or does not decode.
    pub fn read_baseline(&self, digest: &str, size: u64) -> StoreResult<DriftBaseline> {
        let path = self.baseline_path(digest);
        let bytes = fs::read(&path).map_err(io_error("read", &path))?;
        let got = hex::encode(Sha256::digest(&bytes));
        if got != digest || bytes.len() as u64 != size {
            return Err(StoreError::Corrupt {
                path,
                problem: format!(
                    "expected sha256 {digest} and {size} bytes, found {got} and {} bytes",
                    bytes.len()
                ),
            });
        }
        DriftBaseline::decode(bytes.as_slice()).map_err(|e| StoreError::Corrupt {
            path,
            problem: format!("not a drift baseline: {e}"),
        })
    }

    /// Where a partial download lives. `digest` must have passed [`crate::manifest::is_digest`].
    pub fn part_path(&self, digest: &str) -> PathBuf {
        debug_assert!(
            crate::manifest::is_digest(digest),
            "digest {digest:?} used as a file name"
        );
        self.root.join(DOWNLOADS_DIR).join(format!("{digest}.part"))
    }

    /// Reads `state.json`; `None` when there is none yet (a fresh device).
    ///
    /// # Errors
    /// `Io` when it exists but cannot be read, `Corrupt` when it does not parse.
    pub fn read_state(&self) -> StoreResult<Option<StoredState>> {
        let path = self.state_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        let state: StoredState =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                problem: e.to_string(),
            })?;
        if state.format != STATE_FORMAT {
            return Err(StoreError::Corrupt {
                path,
                problem: format!("unknown format {}, expected {STATE_FORMAT}", state.format),
            });
        }
        Ok(Some(state))
    }

    /// Replaces `state.json` atomically and durably.
    ///
    /// # Errors
    /// `Io` when any step (write, fsync, rename) fails; the old file is then left in place.
    pub fn write_state(&self, state: &StoredState) -> StoreResult<()> {
        let path = self.state_path();
        let temporary = self.root.join(format!("{STATE_FILE}.tmp"));
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            problem: format!("cannot serialize: {e}"),
        })?;
        bytes.push(b'\n');
        let mut file = File::create(&temporary).map_err(io_error("create", &temporary))?;
        file.write_all(&bytes)
            .map_err(io_error("write", &temporary))?;
        file.sync_all().map_err(io_error("sync", &temporary))?;
        drop(file);
        fs::rename(&temporary, &path).map_err(io_error("rename into place", &path))?;
        sync_dir(&self.root)
    }

    /// Moves an unreadable `state.json` aside (for a person to look at) and returns where.
    ///
    /// # Errors
    /// `Io` when it cannot be renamed.
    pub fn move_state_aside(&self, boot_epoch: u64) -> StoreResult<PathBuf> {
        let path = self.state_path();
        let aside = self.root.join(format!("{STATE_FILE}.corrupt-{boot_epoch}"));
        fs::rename(&path, &aside).map_err(io_error("move aside", &path))?;
        Ok(aside)
    }

    /// Opens (or creates) a partial download for appending and returns it with its length.
    ///
    /// # Errors
    /// `Io` when it cannot be opened.
    pub fn open_part(&self, digest: &str) -> StoreResult<(File, u64)> {
        let path = self.part_path(digest);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error("open", &path))?;
        let length = file.metadata().map_err(io_error("stat", &path))?.len();
        Ok((file, length))
    }

    /// Deletes a partial download (missing is fine).
    ///
    /// # Errors
    /// `Io` when it exists and cannot be removed.
    pub fn remove_part(&self, digest: &str) -> StoreResult<()> {
        remove_if_exists(&self.part_path(digest))
    }

    /// Deletes a model file (missing is fine).
    ///
    /// # Errors
    /// `Io` when it exists and cannot be removed.
    pub fn remove_model(&self, digest: &str) -> StoreResult<()> {
        remove_if_exists(&self.model_path(digest))
    }

    /// Moves a complete, verified download to `models/` and makes the rename durable.
    ///
    /// # Errors
    /// `Io` when the rename or the directory sync fails.
    pub fn promote_part(&self, digest: &str) -> StoreResult<PathBuf> {
        let from = self.part_path(digest);
        let to = self.model_path(digest);
        fs::rename(&from, &to).map_err(io_error("move into models/", &from))?;
        sync_dir(&self.root.join(MODELS_DIR))?;
        Ok(to)
    }

    /// Deletes a baseline file (missing is fine).
    ///
    /// # Errors
    /// `Io` when it exists and cannot be removed.
    pub fn remove_baseline(&self, digest: &str) -> StoreResult<()> {
        remove_if_exists(&self.baseline_path(digest))
    }

    /// Moves a complete, verified download to `baselines/` and makes the rename durable.
    ///
    /// # Errors
    /// `Io` when the rename or the directory sync fails.
    pub fn promote_baseline_part(&self, digest: &str) -> StoreResult<PathBuf> {
        let from = self.part_path(digest);
        let to = self.baseline_path(digest);
        fs::rename(&from, &to).map_err(io_error("move into baselines/", &from))?;
        sync_dir(&self.root.join(BASELINES_DIR))?;
        Ok(to)
    }

    /// Deletes every baseline file whose digest is not in `keep`; returns the deleted digests.
    ///
    /// # Errors
    /// `Io` when the directory cannot be listed or a file cannot be removed.
    pub fn remove_baselines_except(&self, keep: &[&str]) -> StoreResult<Vec<String>> {
        remove_except(&self.root.join(BASELINES_DIR), ".pb", keep)
    }

    /// Deletes every model file whose digest is not in `keep`; returns the deleted digests.
    ///
    /// # Errors
    /// `Io` when the directory cannot be listed or a file cannot be removed.
    pub fn remove_models_except(&self, keep: &[&str]) -> StoreResult<Vec<String>> {
        remove_except(&self.root.join(MODELS_DIR), ".onnx", keep)
    }

    /// Deletes every partial download whose digest is not in `keep`.
    ///
    /// # Errors
    /// `Io` when the directory cannot be listed or a file cannot be removed.
    pub fn remove_parts_except(&self, keep: &[&str]) -> StoreResult<Vec<String>> {
        remove_except(&self.root.join(DOWNLOADS_DIR), ".part", keep)
    }
}

/// The sha256 (lowercase hex) and length of a file, read in blocks.
///
/// # Errors
/// `Io` when the file cannot be read.
pub fn sha256_file(path: &Path) -> StoreResult<(String, u64)> {
    let mut file = File::open(path).map_err(io_error("open", path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut length = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io_error("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        length += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), length))
}

fn remove_if_exists(path: &Path) -> StoreResult<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path)(e)),
    }
}

fn remove_except(dir: &Path, suffix: &str, keep: &[&str]) -> StoreResult<Vec<String>> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        let Some(digest) = name.to_str().and_then(|n| n.strip_suffix(suffix)) else {
            continue;
        };
        if keep.contains(&digest) {
            continue;
        }
        remove_if_exists(&entry.path())?;
        removed.push(digest.to_string());
    }
    Ok(removed)
}

/// Makes a rename or creation in `dir` durable (a no-op where directories cannot be opened).
fn sync_dir(dir: &Path) -> StoreResult<()> {
    #[cfg(unix)]
    {
        let handle = File::open(dir).map_err(io_error("open", dir))?;
        handle.sync_all().map_err(io_error("sync", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::{hub_key, manifest, sign, DEVICE};

    const DIGEST_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const DIGEST_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn verified(digest: &str) -> VerifiedManifest {
        let key = hub_key();
        VerifiedManifest::verify(
            &sign(&key, &manifest("default", digest, 10)),
            &key.verifying_key(),
            "default",
            DEVICE,
        )
        .unwrap()
    }

    #[test]
    fn state_round_trips_and_keeps_the_signed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.read_state().unwrap(), None);

        let active = verified(DIGEST_A);
        let state = StoredState {
            format: STATE_FORMAT,
            boot_epoch: 7,
            active: Some(StoredModel::from_verified(&active)),
            previous: Some(StoredModel::from_verified(&verified(DIGEST_B))),
            accepted: Some(AcceptedRevision {
                revision: 12,
                body_sha256: "ab".repeat(32),
            }),
        };
        store.write_state(&state).unwrap();
        let read = store.read_state().unwrap().unwrap();
        assert_eq!(read, state);
        let signed = read.active.unwrap().signed_desired().unwrap();
        assert_eq!(signed, active.signed);
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn a_corrupt_state_file_is_reported_and_can_be_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(store.state_path(), b"{\"format\":1,\"boot_ep").unwrap();
        let error = store.read_state().unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(
            error.to_string().contains("state.json is corrupt: EOF"),
            "{error}"
        );

        let aside = store.move_state_aside(3).unwrap();
        assert!(aside.ends_with("state.json.corrupt-3"));
        assert_eq!(store.read_state().unwrap(), None);

        fs::write(
            store.state_path(),
            b"{\"format\":9,\"boot_epoch\":1,\"active\":null,\"previous\":null}",
        )
        .unwrap();
        let error = store.read_state().unwrap_err().to_string();
        assert!(error.contains("unknown format 9"), "{error}");
    }

    #[test]
    fn parts_resume_from_their_length_and_cleanup_keeps_what_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (mut part, length) = store.open_part(DIGEST_A).unwrap();
        assert_eq!(length, 0);
        part.write_all(b"hello").unwrap();
        drop(part);
        let (_, length) = store.open_part(DIGEST_A).unwrap();
        assert_eq!(length, 5);

        let path = store.promote_part(DIGEST_A).unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            (hex::encode(Sha256::digest(b"hello")), 5)
        );
        fs::write(store.model_path(DIGEST_B), b"old").unwrap();
        fs::write(store.part_path(DIGEST_B), b"stale").unwrap();
        assert_eq!(
            store.remove_models_except(&[DIGEST_A]).unwrap(),
            vec![DIGEST_B.to_string()]
        );
        assert_eq!(
            store.remove_parts_except(&[]).unwrap(),
            vec![DIGEST_B.to_string()]
        );
        assert!(store.model_path(DIGEST_A).exists());
    }
}
