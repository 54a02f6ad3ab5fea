//! The crate's error type.
//!
//! One enum for the whole crate because its three parts are used together: a worker unpacks a
//! snapshot, runs the job and collects its outputs, and reports any failure of the three the
//! same way (a failed run with a message). Variants carry the path or command involved so the
//! message shown to the user says what went wrong where.

use std::io;
use std::path::PathBuf;

/// Result alias for everything in `shoal-compute`.
pub type ComputeResult<T> = Result<T, ComputeError>;

/// What can go wrong while snapshotting sources, running a job or collecting its outputs.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// A filesystem operation failed; `op` says what was being done ("read", "create", ...).
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Walking the source folder failed: an unreadable directory or an invalid pattern in a
    /// `.gitignore` / `.shoalignore` file. Packing refuses to guess which files were meant.
    #[error("failed to walk source folder {}: {source}", dir.display())]
    Walk {
        dir: PathBuf,
        #[source]
        source: ignore::Error,
    },

    /// The files selected for a snapshot add up to more than the allowed size.
    #[error(
        "source folder {} holds {size} bytes of files to snapshot, over the limit of {limit} bytes \
         (add large files to .shoalignore)",
        dir.display()
    )]
    SnapshotTooLarge { dir: PathBuf, limit: u64, size: u64 },

    /// A file changed size between listing and packing, so the archive would not match the tree.
    #[error("file {} changed while it was being packed", path.display())]
    FileChangedWhilePacking { path: PathBuf },

    /// An archive being unpacked holds something that could escape or subvert the destination.
    #[error("refusing archive entry {path:?}: {reason}")]
    UnsafeArchiveEntry { path: String, reason: &'static str },

    /// An archive being unpacked holds more file bytes than allowed (a decompression bomb or a
    /// snapshot built with a larger limit).
    #[error("archive unpacks to more than the limit of {limit} bytes (at least {size} bytes)")]
    UnpackTooLarge { limit: u64, size: u64 },

    /// The archive stream itself is corrupt (bad gzip or tar framing).
    #[error("corrupt snapshot archive: {source}")]
    CorruptArchive {
        #[source]
        source: io::Error,
    },

    /// Unpacking goes into a fresh folder only, so nothing already there can be overwritten or
    /// used (through a pre-placed symlink) to redirect writes.
    #[error("unpack destination {} is not empty", path.display())]
    DestinationNotEmpty { path: PathBuf },

    /// A job spec with no command at all.
    #[error("job has an empty command line")]
    EmptyCommand,

    /// The folders the job must not see could not be hidden from it.
    #[error("{0}")]
    Sandbox(#[from] crate::sandbox::SandboxError),

    /// The job's working directory does not exist; checked before spawning because the OS
    /// reports a missing workdir with the same error as a missing command.
    #[error("job working directory {} does not exist or is not a directory", path.display())]
    WorkdirMissing { path: PathBuf },

    /// The job's program could not be found on `PATH` or at the given path.
    #[error("command not found: `{command}`")]
    CommandNotFound { command: String },

    /// The job's program exists but could not be started (permissions, exec format, limits).
    #[error("failed to start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },

    /// Waiting for the job's process failed; the process state is unknown.
    #[error("failed to wait for job process {pid}: {source}")]
    Wait {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

impl ComputeError {
    /// Builds an [`ComputeError::Io`]; a helper so call sites stay one line.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ComputeError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
