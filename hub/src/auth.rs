//! The hub's admin API token: created on first start as `admin.token` (mode 0600) in the data
//! folder, read back on later starts, and compared by hash in constant time.

use std::path::{Path, PathBuf};

use shoal_store::secrets::{constant_time_eq, random_hex, sha256, write_private_file};
use shoal_store::IoError;

use crate::error::{HubError, HubResult};

pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The admin token, as the hub keeps it: its hash, and the file it lives in.
pub struct AdminToken {
    /// sha256 of the bearer token; the token itself stays in `admin.token`.
    hash: [u8; 32],
    path: PathBuf,
}

impl AdminToken {
    /// Reads the token from `data_dir`, creating it on first start.
    ///
    /// # Errors
    /// I/O errors naming the file, or an empty token file.
    pub fn load_or_create(data_dir: &Path) -> HubResult<AdminToken> {
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        let token = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = format!("shoal_{}", random_hex(24)?);
                write_private_file(&path, &token)?;
                tracing::info!(path = %path.display(), "wrote a new admin token");
                token
            }
            Err(e) => return Err(IoError::with(format!("read {}", path.display()))(e).into()),
        };
        if token.is_empty() {
            return Err(HubError::Config(format!("{} is empty", path.display())));
        }
        Ok(AdminToken {
            hash: sha256(token.as_bytes()),
            path,
        })
    }

    /// Whether `token` is the admin token.
    pub fn matches(&self, token: &str) -> bool {
        constant_time_eq(&sha256(token.as_bytes()), &self.hash)
    }

    /// The file the token is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The token itself, read from its file (for the environment of runs the hub starts).
    pub fn read(&self) -> String {
        std::fs::read_to_string(&self.path)
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_persists_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let admin = AdminToken::load_or_create(dir.path()).unwrap();
        let token = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        assert!(admin.matches(token.trim()));
        assert!(!admin.matches("shoal_wrong"));
        assert_eq!(admin.read(), token.trim());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(admin.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = AdminToken::load_or_create(dir.path()).unwrap();
        assert!(again.matches(token.trim()));
    }
}
