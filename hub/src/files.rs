//! The data folder's own protection: mode 0700, and secret files nobody else can read.
//!
//! Checked at every start, before a key is used: a secret file that another user can read is
//! refused with its path and the command that fixes it (as ssh refuses a private key others
//! can read), because the hub cannot know who read it already. The data folder itself is
//! tightened to 0700 when it is wider, with a warning: it is the hub's own folder.

use std::path::Path;

use shoal_store::IoError;

use crate::error::{HubError, HubResult};

/// Files in the data folder that hold secrets.
pub const SECRET_FILES: &[&str] = &[
    crate::auth::ADMIN_TOKEN_FILE,
    shoal_registry::signing::SIGNING_KEY_FILE,
    shoal_store::vault::KEY_FILE,
    "tls/ca.key",
    "tls/server.key",
];

/// Creates the data folder with mode 0700, or tightens an existing one to it.
///
/// # Errors
/// I/O errors naming the folder.
pub fn secure_data_dir(dir: &Path) -> HubResult<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(IoError::with(format!(
            "create the data folder {}",
            dir.display()
        )))?;
    let mode = std::fs::metadata(dir)
        .map_err(IoError::with(format!(
            "read the data folder {}",
            dir.display()
        )))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(path = %dir.display(), mode = format!("{mode:o}"), "the data folder was open to other users; setting it to 0700");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            IoError::with(format!(
                "set the data folder {} to mode 0700",
                dir.display()
            )),
        )?;
    }
    Ok(())
}

/// Refuses to go on when a secret file in `dir` (those of `names` that exist) can be read or
/// written by anyone but its owner.
///
/// # Errors
/// [`HubError::Config`] naming the file, its mode and the fix.
pub fn check_secret_files(dir: &Path, names: &[&str]) -> HubResult<()> {
    use std::os::unix::fs::PermissionsExt;
    for name in names {
        let path = dir.join(name);
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(IoError::with(format!("read {}", path.display()))(e).into()),
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(HubError::Config(format!(
                "{} is open to other users (mode {mode:o}); a key others may have read is not \
                 used: make it private with `chmod 600 {}` (and replace it if it may have \
                 leaked)",
                path.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_data_folder_is_0700_and_a_wide_one_is_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("hub");
        secure_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        secure_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn a_world_readable_key_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("signing.key");
        std::fs::write(&key, "00").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = check_secret_files(dir.path(), SECRET_FILES)
            .unwrap_err()
            .to_string();
        assert!(error.contains(&key.display().to_string()), "{error}");
        assert!(error.contains("chmod 600"), "{error}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_secret_files(dir.path(), SECRET_FILES).unwrap();
    }
}
