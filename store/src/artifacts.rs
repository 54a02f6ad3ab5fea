//! Content-addressed blobs on local disk: `artifacts/sha256/ab/abcd…`.
//!
//! A blob is written to a temporary file while its sha256 is computed, then renamed into
//! place, so a reader never sees a half-written blob and equal bytes are stored once.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

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

/// The blobs under one folder.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

/// Whether `digest` is a lowercase hex sha256, and so safe to use in a path.
pub fn is_valid_digest(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ArtifactStore {
    /// # Errors
    /// When the folders cannot be created.
    pub fn open(root: &Path) -> ArtifactResult<ArtifactStore> {
        for sub in ["sha256", "tmp"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(IoError::with(format!(
                "create artifact folder {}",
                dir.display()
            )))?;
        }
        Ok(ArtifactStore {
            root: root.to_path_buf(),
        })
    }

    /// The path of a stored blob. Only call with a digest checked by [`is_valid_digest`].
    pub fn path(&self, digest: &str) -> PathBuf {
        debug_assert!(
            is_valid_digest(digest),
            "digest {digest:?} must be checked first"
        );
        self.root.join("sha256").join(&digest[..2]).join(digest)
    }

    /// The size of a stored blob.
    ///
    /// # Errors
    /// `NotFound` for an unknown or malformed digest.
    pub async fn size(&self, digest: &str) -> ArtifactResult<u64> {
        if !is_valid_digest(digest) {
            return Err(invalid_digest("size of artifact", digest));
        }
        let meta = tokio::fs::metadata(self.path(digest))
            .await
            .map_err(IoError::with(format!("size of artifact {digest}")))?;
        Ok(meta.len())
    }

    pub fn contains(&self, digest: &str) -> bool {
        is_valid_digest(digest) && self.path(digest).is_file()
    }

    /// Starts writing a new blob.
    ///
    /// # Errors
    /// When the temporary file cannot be created.
    pub async fn writer(&self) -> ArtifactResult<BlobWriter> {
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).map_err(|e| IoError {
            what: "name a temporary artifact".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let temp = self.root.join("tmp").join(hex::encode(random));
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(IoError::with(format!("create artifact {}", temp.display())))?;
        Ok(BlobWriter {
            store: self.clone(),
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
        let path = self.path(digest);
        let what = format!("read artifact {digest} at {offset}");
        tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, u64)> {
            let mut file = std::fs::File::open(&path)?;
            let total = file.metadata()?.len();
            if offset > total {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("offset {offset} is past the end ({total} bytes)"),
                ));
            }
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

    /// Reads a whole blob.
    ///
    /// # Errors
    /// `NotFound` for an unknown digest.
    pub async fn read(&self, digest: &str) -> ArtifactResult<Vec<u8>> {
        if !is_valid_digest(digest) {
            return Err(invalid_digest("read artifact", digest));
        }
        tokio::fs::read(self.path(digest))
            .await
            .map_err(IoError::with(format!("read artifact {digest}")))
    }
}

/// A blob being written; [`BlobWriter::finish`] moves it into place under its digest.
pub struct BlobWriter {
    store: ArtifactStore,
    temp: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    written: u64,
}

impl BlobWriter {
    /// # Errors
    /// I/O errors from the temporary file.
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

    /// Makes the blob durable and names it by its digest. Returns `(digest, size)`.
    ///
    /// # Errors
    /// I/O errors from sync or rename.
    pub async fn finish(mut self) -> ArtifactResult<(String, u64)> {
        let what = format!("store artifact {}", self.temp.display());
        self.file.flush().await.map_err(IoError::with(&what))?;
        self.file.sync_all().await.map_err(IoError::with(&what))?;
        let digest = hex::encode(self.hasher.finalize_reset());
        let path = self.store.path(&digest);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(IoError::with(&what))?;
        }
        tokio::fs::rename(&self.temp, &path)
            .await
            .map_err(IoError::with(what))?;
        Ok((digest, self.written))
    }

    /// Throws the partial blob away.
    pub async fn abort(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.temp).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_by_digest_and_reads_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let mut writer = store.writer().await.unwrap();
        writer.write(b"hello ").await.unwrap();
        writer.write(b"world").await.unwrap();
        let (digest, size) = writer.finish().await.unwrap();
        assert_eq!(
            digest,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(size, 11);
        assert!(store.contains(&digest));
        assert_eq!(
            store.read_range(&digest, 6, 100).await.unwrap(),
            (b"world".to_vec(), 11)
        );
        assert!(store.read_range(&digest, 12, 1).await.is_err());
        assert!(store.read_range("../../etc/passwd", 0, 1).await.is_err());
    }
}
