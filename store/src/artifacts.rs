//! Content-addressed blobs: every artifact (models, datasets, source snapshots, run outputs)
//! is kept once under its sha256.
//!
//! [`ArtifactStore`] is the handle the domains use. Writing is the same for every back end: a
//! blob is staged in a local temporary file while its sha256 is computed, then handed to the
//! [`ArtifactBackend`], which keeps it under its digest, so a reader never sees a
//! half-written blob and equal bytes are stored once. Where blobs live is the back end's:
//! [`LocalDisk`] (`artifacts/sha256/ab/abcd…`, the embedded default) or [`MemoryArtifacts`]
//! (tests); object storage is the next one. Every back end passes `artifact_test_suite!`.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::IoError;

/// Artifact-store results: I/O errors that name the blob or file and the operation.
pub type ArtifactResult<T> = Result<T, IoError>;

fn invalid_digest(what: &str, digest: &str) -> IoError {
    IoError {
        what: format!("{what} {digest:?}"),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a sha256 digest"),
    }
}

fn missing(what: &str, digest: &str) -> IoError {
    IoError {
        what: format!("{what} {digest}"),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such blob"),
    }
}

/// Whether `digest` is a lowercase hex sha256, and so safe to use in a path.
pub fn is_valid_digest(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where blobs live. Digests reaching a back end are valid ([`is_valid_digest`]).
#[async_trait]
pub trait ArtifactBackend: Send + Sync + 'static {
    /// Keeps the staged file, whose sha256 is `digest`, under that digest; the staged file is
    /// consumed. A blob already there is kept as it is.
    ///
    /// # Errors
    /// I/O errors naming the blob.
    async fn put(&self, digest: &str, staged: &Path) -> ArtifactResult<()>;

    /// Whether the blob is there. It may block (a remote back end asks its service).
    fn contains(&self, digest: &str) -> bool;

    /// The blob's size.
    ///
    /// # Errors
    /// `NotFound` for an unknown blob.
    async fn size(&self, digest: &str) -> ArtifactResult<u64>;

    /// Up to `length` bytes at `offset` (fewer at the end), and the blob's size.
    ///
    /// # Errors
    /// `NotFound` for an unknown blob; `InvalidInput` for an offset past the end.
    async fn read_range(
        &self,
        digest: &str,
        offset: u64,
        length: u64,
    ) -> ArtifactResult<(Vec<u8>, u64)>;

    /// A local file holding the blob's bytes, for readers that need a path (CSV profiling,
    /// training, unpacking). A remote back end fetches it into a local cache first.
    ///
    /// # Errors
    /// `NotFound` for an unknown blob.
    async fn local_path(&self, digest: &str) -> ArtifactResult<PathBuf>;
}

/// The blobs of a hub: staging on local disk, keeping by the back end. Cheap to clone.
#[derive(Clone)]
pub struct ArtifactStore {
    /// Where blobs are written while they are hashed.
    staging: PathBuf,
    backend: Arc<dyn ArtifactBackend>,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("staging", &self.staging)
            .finish_non_exhaustive()
    }
}

impl ArtifactStore {
    /// The embedded default: blobs in `root/sha256/`, staging in `root/tmp/`.
    ///
    /// # Errors
    /// When the folders cannot be created.
    pub fn open(root: &Path) -> ArtifactResult<ArtifactStore> {
        let backend = LocalDisk::open(&root.join("sha256"))?;
        ArtifactStore::with_backend(&root.join("tmp"), Arc::new(backend))
    }

    /// A store over any back end, staging uploads in `staging`.
    ///
    /// # Errors
    /// When the staging folder cannot be created.
    pub fn with_backend(
        staging: &Path,
        backend: Arc<dyn ArtifactBackend>,
    ) -> ArtifactResult<ArtifactStore> {
        create_dir(staging)?;
        Ok(ArtifactStore {
            staging: staging.to_path_buf(),
            backend,
        })
    }

    /// The size of a stored blob.
    ///
    /// # Errors
    /// `NotFound` for an unknown or malformed digest.
    pub async fn size(&self, digest: &str) -> ArtifactResult<u64> {
        if !is_valid_digest(digest) {
            return Err(invalid_digest("size of artifact", digest));
        }
        self.backend.size(digest).await
    }

    /// Whether the blob is stored; `false` for a malformed digest.
    pub fn contains(&self, digest: &str) -> bool {
        is_valid_digest(digest) && self.backend.contains(digest)
    }

    /// Starts writing a new blob.
    ///
    /// # Errors
    /// When the staging file cannot be created.
    pub async fn writer(&self) -> ArtifactResult<BlobWriter> {
        let random = crate::secrets::random_hex(8).map_err(|e| IoError {
            what: "name a staged artifact".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let temp = self.staging.join(random);
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(IoError::with(format!("create artifact {}", temp.display())))?;
        Ok(BlobWriter {
            backend: self.backend.clone(),
            temp,
            file,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Reads up to `length` bytes at `offset` (fewer at the end of the blob).
    ///
    /// # Errors
    /// `NotFound` for an unknown or invalid digest; I/O errors otherwise.
    pub async fn read_range(
        &self,
        digest: &str,
        offset: u64,
        length: u64,
    ) -> ArtifactResult<(Vec<u8>, u64)> {
        if !is_valid_digest(digest) {
            return Err(invalid_digest("read artifact", digest));
        }
        self.backend.read_range(digest, offset, length).await
    }

    /// Reads a whole blob.
    ///
    /// # Errors
    /// `NotFound` for an unknown digest.
    pub async fn read(&self, digest: &str) -> ArtifactResult<Vec<u8>> {
        let size = self.size(digest).await?;
        Ok(self.backend.read_range(digest, 0, size).await?.0)
    }

    /// A local file holding the blob (see [`ArtifactBackend::local_path`]).
    ///
    /// # Errors
    /// `NotFound` for an unknown or invalid digest.
    pub async fn local_path(&self, digest: &str) -> ArtifactResult<PathBuf> {
        if !is_valid_digest(digest) {
            return Err(invalid_digest("open artifact", digest));
        }
        self.backend.local_path(digest).await
    }
}

/// A blob being written; [`BlobWriter::finish`] hands it to the back end under its digest.
pub struct BlobWriter {
    backend: Arc<dyn ArtifactBackend>,
    temp: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    written: u64,
}

impl BlobWriter {
    /// # Errors
    /// I/O errors from the staging file.
    pub async fn write(&mut self, data: &[u8]) -> ArtifactResult<()> {
        self.hasher.update(data);
        self.file
            .write_all(data)
            .await
            .map_err(IoError::with(format!(
                "write artifact {}",
                self.temp.display()
            )))?;
        self.written += data.len() as u64;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes the blob durable and keeps it under its digest. Returns `(digest, size)`.
    ///
    /// # Errors
    /// I/O errors from sync, or the back end's.
    pub async fn finish(mut self) -> ArtifactResult<(String, u64)> {
        let what = format!("store artifact {}", self.temp.display());
        self.file.flush().await.map_err(IoError::with(&what))?;
        self.file.sync_all().await.map_err(IoError::with(&what))?;
        let digest = hex::encode(self.hasher.finalize_reset());
        let stored = self.backend.put(&digest, &self.temp).await;
        if stored.is_err() {
            let _ = tokio::fs::remove_file(&self.temp).await;
        }
        stored.map(|()| (digest, self.written))
    }

    /// Throws the partial blob away.
    pub async fn abort(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.temp).await;
    }
}

fn create_dir(dir: &Path) -> ArtifactResult<()> {
    std::fs::create_dir_all(dir).map_err(IoError::with(format!(
        "create artifact folder {}",
        dir.display()
    )))
}

// === impl LocalDisk ===

/// Blobs in a local folder: `{root}/ab/abcd…`, renamed into place from staging (so staging
/// must be on the same file system, as `ArtifactStore::open` arranges).
#[derive(Debug, Clone)]
pub struct LocalDisk {
    root: PathBuf,
}

impl LocalDisk {
    /// # Errors
    /// When the folder cannot be created.
    pub fn open(root: &Path) -> ArtifactResult<LocalDisk> {
        create_dir(root)?;
        Ok(LocalDisk {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        debug_assert!(
            is_valid_digest(digest),
            "digest {digest:?} must be checked first"
        );
        self.root.join(&digest[..2]).join(digest)
    }
}

#[async_trait]
impl ArtifactBackend for LocalDisk {
    async fn put(&self, digest: &str, staged: &Path) -> ArtifactResult<()> {
        let path = self.path(digest);
        let what = || format!("store artifact {digest}");
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(IoError::with(what()))?;
        }
        tokio::fs::rename(staged, &path)
            .await
            .map_err(IoError::with(what()))
    }

    fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    async fn size(&self, digest: &str) -> ArtifactResult<u64> {
        let meta = tokio::fs::metadata(self.path(digest))
            .await
            .map_err(IoError::with(format!("size of artifact {digest}")))?;
        Ok(meta.len())
    }

    async fn read_range(
        &self,
        digest: &str,
        offset: u64,
        length: u64,
    ) -> ArtifactResult<(Vec<u8>, u64)> {
        let path = self.path(digest);
        let what = format!("read artifact {digest} at {offset}");
        tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, u64)> {
            let mut file = std::fs::File::open(&path)?;
            let total = file.metadata()?.len();
            check_offset(offset, total)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut data = Vec::with_capacity(length.min(total - offset) as usize);
            file.take(length).read_to_end(&mut data)?;
            Ok((data, total))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|read| read)
        .map_err(IoError::with(what))
    }

    async fn local_path(&self, digest: &str) -> ArtifactResult<PathBuf> {
        let path = self.path(digest);
        if path.is_file() {
            Ok(path)
        } else {
            Err(missing("open artifact", digest))
        }
    }
}

fn check_offset(offset: u64, total: u64) -> std::io::Result<()> {
    if offset > total {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("offset {offset} is past the end ({total} bytes)"),
        ));
    }
    Ok(())
}

// === impl MemoryArtifacts ===

/// Blobs in memory, for tests; [`ArtifactBackend::local_path`] writes a blob out to a cache
/// folder the first time it is asked for.
pub struct MemoryArtifacts {
    blobs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    cache: PathBuf,
}

impl MemoryArtifacts {
    /// # Errors
    /// When the cache folder cannot be created.
    pub fn new(cache: &Path) -> ArtifactResult<MemoryArtifacts> {
        create_dir(cache)?;
        Ok(MemoryArtifacts {
            blobs: Mutex::new(HashMap::new()),
            cache: cache.to_path_buf(),
        })
    }

    fn get(&self, what: &str, digest: &str) -> ArtifactResult<Arc<Vec<u8>>> {
        self.blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
            .ok_or_else(|| missing(what, digest))
    }
}

#[async_trait]
impl ArtifactBackend for MemoryArtifacts {
    async fn put(&self, digest: &str, staged: &Path) -> ArtifactResult<()> {
        let what = || format!("store artifact {digest}");
        let bytes = tokio::fs::read(staged)
            .await
            .map_err(IoError::with(what()))?;
        tokio::fs::remove_file(staged)
            .await
            .map_err(IoError::with(what()))?;
        self.blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(digest.to_string())
            .or_insert_with(|| Arc::new(bytes));
        Ok(())
    }

    fn contains(&self, digest: &str) -> bool {
        self.blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(digest)
    }

    async fn size(&self, digest: &str) -> ArtifactResult<u64> {
        Ok(self.get("size of artifact", digest)?.len() as u64)
    }

    async fn read_range(
        &self,
        digest: &str,
        offset: u64,
        length: u64,
    ) -> ArtifactResult<(Vec<u8>, u64)> {
        let what = format!("read artifact {digest} at {offset}");
        let bytes = self.get(&what, digest)?;
        let total = bytes.len() as u64;
        check_offset(offset, total).map_err(IoError::with(&what))?;
        let end = offset.saturating_add(length).min(total);
        Ok((bytes[offset as usize..end as usize].to_vec(), total))
    }

    async fn local_path(&self, digest: &str) -> ArtifactResult<PathBuf> {
        let bytes = self.get("open artifact", digest)?;
        let path = self.cache.join(digest);
        if !path.is_file() {
            tokio::fs::write(&path, bytes.as_slice())
                .await
                .map_err(IoError::with(format!("cache artifact {digest}")))?;
        }
        Ok(path)
    }
}

/// The behaviour every [`ArtifactBackend`] must show, through an [`ArtifactStore`]. Invoke
/// with an expression that yields `(store, guard)` for a fresh store:
/// `artifact_test_suite!(local, { let d = tempdir(); (ArtifactStore::open(d.path())?, d) });`.
#[macro_export]
macro_rules! artifact_test_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn put(store: &$crate::artifacts::ArtifactStore, bytes: &[u8]) -> (String, u64) {
                let mut writer = store.writer().await.unwrap();
                for piece in bytes.chunks(5) {
                    writer.write(piece).await.unwrap();
                }
                writer.finish().await.unwrap()
            }

            #[tokio::test]
            async fn stores_by_digest_and_reads_ranges() {
                let (store, _guard) = $make;
                let (digest, size) = put(&store, b"hello world").await;
                assert_eq!(
                    digest,
                    "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
                );
                assert_eq!(size, 11);
                assert!(store.contains(&digest));
                assert_eq!(store.size(&digest).await.unwrap(), 11);
                assert_eq!(
                    store.read_range(&digest, 6, 100).await.unwrap(),
                    (b"world".to_vec(), 11)
                );
                assert_eq!(
                    store.read_range(&digest, 11, 4).await.unwrap(),
                    (Vec::new(), 11)
                );
                assert!(store.read_range(&digest, 12, 1).await.is_err());
                assert_eq!(store.read(&digest).await.unwrap(), b"hello world".to_vec());
                let path = store.local_path(&digest).await.unwrap();
                assert_eq!(std::fs::read(path).unwrap(), b"hello world".to_vec());
            }

            #[tokio::test]
            async fn equal_bytes_are_kept_once() {
                let (store, _guard) = $make;
                let first = put(&store, b"same").await;
                let second = put(&store, b"same").await;
                assert_eq!(first, second);
                assert_eq!(store.read(&first.0).await.unwrap(), b"same".to_vec());
            }

            #[tokio::test]
            async fn unknown_and_malformed_digests_are_not_found() {
                let (store, _guard) = $make;
                let unknown = "0".repeat(64);
                assert!(!store.contains(&unknown));
                assert!(!store.contains("../../etc/passwd"));
                for digest in [unknown.as_str(), "../../etc/passwd", "ABC"] {
                    let error = store.read(digest).await.unwrap_err();
                    assert!(error.is_not_found(), "{digest}: {error}");
                    assert!(store.local_path(digest).await.is_err());
                    assert!(store.size(digest).await.is_err());
                }
            }

            #[tokio::test]
            async fn an_aborted_blob_leaves_nothing() {
                let (store, _guard) = $make;
                let mut writer = store.writer().await.unwrap();
                writer.write(b"partial").await.unwrap();
                writer.abort().await;
                let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"partial"));
                assert!(!store.contains(&digest));
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    artifact_test_suite!(local_disk, {
        let dir = tempfile::tempdir().unwrap();
        (ArtifactStore::open(dir.path()).unwrap(), dir)
    });

    artifact_test_suite!(memory, {
        let dir = tempfile::tempdir().unwrap();
        let backend = MemoryArtifacts::new(&dir.path().join("cache")).unwrap();
        let store = ArtifactStore::with_backend(&dir.path().join("tmp"), Arc::new(backend));
        (store.unwrap(), dir)
    });

    #[tokio::test]
    async fn local_blobs_live_under_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let mut writer = store.writer().await.unwrap();
        writer.write(b"x").await.unwrap();
        let (digest, _) = writer.finish().await.unwrap();
        let path = store.local_path(&digest).await.unwrap();
        assert_eq!(
            path,
            dir.path().join("sha256").join(&digest[..2]).join(&digest)
        );
        let staged: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
        assert!(staged.is_empty(), "staging is empty after finish");
    }
}
