//! Run outputs: the files a job leaves under `outputs/` in its working directory.
//!
//! Training scripts save models, plots and reports under `./outputs`; after the job ends the
//! runner lists them with sizes and sha256 digests so they can be uploaded and registered (a
//! model version refers to an output by digest).
//!
//! Symlinks are skipped, including a symlinked `outputs` folder itself: a script could
//! otherwise point `outputs/` at any file readable by the runner (on the hub's `local` target,
//! the hub's own secrets) and have it uploaded. Sockets, FIFOs and devices are skipped too.
//! Files whose names are not valid UTF-8 cannot be given a portable name and are skipped with
//! a warning in the log.
//!
//! Listing reads every file to hash it with blocking I/O; call [`collect_outputs`] from
//! `spawn_blocking` in async code.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tracing::warn;

use crate::error::{ComputeError, ComputeResult};

/// One file produced by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Path relative to the outputs folder with `/` separators: the artifact's name in the hub.
    pub rel_path: String,
    /// Where to read it for upload.
    pub abs_path: PathBuf,
    /// Size in bytes, as hashed.
    pub size: u64,
    /// Lowercase hex sha256 of the content, for integrity checks and deduplication.
    pub sha256: String,
}

/// Lists the regular files under `outputs_dir`, recursively, sorted by `rel_path`.
///
/// A missing folder (the job wrote no outputs) gives an empty list.
///
/// # Errors
/// [`ComputeError::Io`] when a folder cannot be listed or a file cannot be read.
pub fn collect_outputs(outputs_dir: &Path) -> ComputeResult<Vec<OutputFile>> {
    let meta = match fs::symlink_metadata(outputs_dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ComputeError::io("read", outputs_dir, e)),
    };
    if meta.file_type().is_symlink() {
        warn!(path = %outputs_dir.display(), "outputs folder is a symlink, not collecting it");
        return Ok(Vec::new());
    }
    if !meta.is_dir() {
        return Err(ComputeError::io(
            "collect outputs from",
            outputs_dir,
            io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        ));
    }

    let mut files = Vec::new();
    // Explicit stack rather than recursion: output trees can be deep.
    let mut pending_dirs = vec![(outputs_dir.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending_dirs.pop() {
        let listing = fs::read_dir(&dir).map_err(|e| ComputeError::io("list", &dir, e))?;
        for entry in listing {
            let entry = entry.map_err(|e| ComputeError::io("list", &dir, e))?;
            let abs_path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                warn!(path = %abs_path.display(), "skipping output with a non-UTF-8 name");
                continue;
            };
            let rel_path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            // `DirEntry::file_type` does not follow symlinks.
            let file_type = entry
                .file_type()
                .map_err(|e| ComputeError::io("inspect", &abs_path, e))?;
            if file_type.is_dir() {
                pending_dirs.push((abs_path, rel_path));
            } else if file_type.is_file() {
                let (size, sha256) = hash_file(&abs_path)?;
                files.push(OutputFile {
                    rel_path,
                    abs_path,
                    size,
                    sha256,
                });
            }
        }
    }
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(files)
}

/// Returns the size and sha256 of a file, read once.
fn hash_file(path: &Path) -> ComputeResult<(u64, String)> {
    let mut file = fs::File::open(path).map_err(|e| ComputeError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size: u64 = 0;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| ComputeError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}
