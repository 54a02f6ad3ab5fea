//! Random ids and secrets, constant-time comparison, and files only their owner may read.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::IoError;

/// The system's random source failed; nothing random can be made.
#[derive(Debug, thiserror::Error)]
#[error("random source: {0}")]
pub struct RandomSourceError(String);

impl crate::ServiceError for RandomSourceError {
    fn error_code(&self) -> crate::ErrorCode {
        crate::ErrorCode::Internal
    }
}

/// Random bytes as lowercase hex.
///
/// # Errors
/// When the system's random source fails.
pub fn random_hex(bytes: usize) -> Result<String, RandomSourceError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(|e| RandomSourceError(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// `N` random bytes.
///
/// # Errors
/// When the system's random source fails.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomSourceError> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| RandomSourceError(e.to_string()))?;
    Ok(buf)
}

/// sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares two secrets (or their hashes) in time that depends only on their length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes a new file (refusing to replace one) that only its owner may read (mode 0600),
/// with `contents` and a newline, and syncs it.
///
/// # Errors
/// [`IoError`] naming the file.
pub fn write_private_file(path: &Path, contents: &str) -> Result<(), IoError> {
    use std::io::Write;
    let what = || format!("write {}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(IoError::with(what()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(IoError::with(what()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_has_the_asked_length() {
        assert_eq!(random_hex(4).unwrap().len(), 8);
        assert_eq!(random_hex(100).unwrap().len(), 200);
        assert_ne!(random_hex(16).unwrap(), random_hex(16).unwrap());
    }

    #[test]
    fn private_files_are_0600_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private_file(&path, "s3cret").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s3cret\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = write_private_file(&path, "other").unwrap_err();
        assert!(again.to_string().contains("secret"), "{again}");
    }
}
