//! Source snapshots: the folder a user submits with `shoal run submit --dir ./src`.
//!
//! A snapshot is a gzip-compressed tar of the files in the folder that git would track plus the
//! Shoal-specific exclusions, packed so that the same tree always gives the same bytes and the
//! same sha256 digest. The digest lets the hub deduplicate uploads and lets a run record exactly
//! which sources it trained from.
//!
//! # What goes in
//! - Regular files only. Empty directories are not kept (as in git).
//! - `.gitignore` files in the folder and its subfolders are honoured, with git's syntax and
//!   precedence (nested files win, `!pattern` re-includes), even when the folder is not inside a
//!   git repository. Ignore files *above* the folder, git's global excludes and
//!   `.git/info/exclude` are not read: the snapshot depends only on the folder's own contents.
//! - `.shoalignore` files ([`SHOAL_IGNORE_FILENAME`]) use the same syntax and take precedence over
//!   a `.gitignore` in the same folder, so `!data/small.csv` in `.shoalignore` ships a file git
//!   ignores, and `checkpoints/` keeps tracked-but-heavy files out of runs. As in git, a file
//!   inside an excluded folder cannot be re-included: the folder is never entered.
//! - `.git` (directory or worktree file) is always skipped.
//! - Symlinks are **not** followed and not stored: a link may point outside the folder (or at a
//!   secret), and a worker must never create links while unpacking. They are left out and
//!   reported in [`Snapshot::skipped`] (as are sockets, FIFOs and device files) so the CLI can
//!   warn about them.
//!
//! # Determinism
//! Entries are sorted by path; every header has mtime 0, uid/gid 0 and no user/group names; the
//! mode is normalised to `0755` when any executable bit is set and `0644` otherwise (so
//! `./train.sh` stays runnable); gzip uses a fixed level and no timestamp.
//!
//! # Unpacking
//! [`unpack`] is the worker side and treats the archive as untrusted: only regular files and
//! directories with relative, `..`-free paths are accepted, into an empty destination, within a
//! byte limit.
//!
//! Packing and unpacking use blocking file I/O; call them from `spawn_blocking` in async code.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use crate::error::{ComputeError, ComputeResult};

/// Name of the Shoal-specific ignore file: `.gitignore` syntax, read in every subfolder.
pub const SHOAL_IGNORE_FILENAME: &str = ".shoalignore";

/// Mode stored for files with any executable bit set.
const EXECUTABLE_MODE: u32 = 0o755;
/// Mode stored for every other file.
const REGULAR_MODE: u32 = 0o644;
/// Mode for directories created while unpacking.
const DIR_MODE: u32 = 0o755;

/// A packed source folder, held in memory (what the CLI uploads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The `tar.gz` archive.
    pub bytes: Vec<u8>,
    /// Lowercase hex sha256 of `bytes`; identical trees give identical digests.
    pub digest: String,
    /// Number of files in the archive.
    pub files: usize,
    /// Sum of the files' sizes, the figure the limit applies to.
    pub unpacked_bytes: u64,
    /// Paths (relative to the folder) of symlinks and special files that were left out.
    pub skipped: Vec<PathBuf>,
}

/// What [`pack_dir_to_writer`] wrote, for callers that stream the archive to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Lowercase hex sha256 of the archive bytes written.
    pub digest: String,
    /// Size of the archive written.
    pub archive_bytes: u64,
    /// Number of files in the archive.
    pub files: usize,
    /// Sum of the files' sizes, the figure the limit applies to.
    pub unpacked_bytes: u64,
    /// Paths (relative to the folder) of symlinks and special files that were left out.
    pub skipped: Vec<PathBuf>,
}

/// What [`unpack`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Number of files written.
    pub files: usize,
    /// Sum of the files' sizes.
    pub unpacked_bytes: u64,
}

/// One file selected for the snapshot.
#[derive(Debug)]
struct SelectedFile {
    /// Path relative to the snapshot root; what the archive stores.
    rel_path: PathBuf,
    /// Where to read it from.
    abs_path: PathBuf,
    /// Size seen while listing; the archive header promises exactly this many bytes.
    size: u64,
    /// Whether any executable bit was set, kept so scripts stay runnable.
    executable: bool,
}

/// Packs `dir` into an in-memory snapshot.
///
/// `limit_bytes` bounds the total size of the selected files (before compression), checked
/// before anything is read, so an oversized folder fails fast with the full size in the error.
///
/// # Errors
/// [`ComputeError::SnapshotTooLarge`] over the limit, [`ComputeError::Walk`] for unreadable
/// folders or bad ignore patterns, [`ComputeError::Io`] / [`ComputeError::FileChangedWhilePacking`]
/// while reading files.
pub fn pack_dir(dir: &Path, limit_bytes: u64) -> ComputeResult<Snapshot> {
    let mut bytes = Vec::new();
    let info = pack_dir_to_writer(dir, limit_bytes, &mut bytes)?;
    debug_assert_eq!(info.archive_bytes, bytes.len() as u64);
    Ok(Snapshot {
        bytes,
        digest: info.digest,
        files: info.files,
        unpacked_bytes: info.unpacked_bytes,
        skipped: info.skipped,
    })
}

/// Packs `dir` into `out` (a file, a socket, ...) without holding the archive in memory.
///
/// Same selection, limit and determinism as [`pack_dir`]. On error, `out` holds a partial
/// archive that the caller should discard.
///
/// # Errors
/// As [`pack_dir`], plus [`ComputeError::Io`] when writing to `out` fails.
pub fn pack_dir_to_writer<W: Write>(
    dir: &Path,
    limit_bytes: u64,
    out: W,
) -> ComputeResult<SnapshotInfo> {
    let (selected, skipped) = select_files(dir)?;
    let mut unpacked_bytes: u64 = 0;
    for file in &selected {
        unpacked_bytes = unpacked_bytes.saturating_add(file.size);
    }
    if unpacked_bytes > limit_bytes {
        return Err(ComputeError::SnapshotTooLarge {
            dir: dir.to_path_buf(),
            limit: limit_bytes,
            size: unpacked_bytes,
        });
    }

    let write_err = |source: io::Error| ComputeError::io("write snapshot archive for", dir, source);
    let hashing = HashingWriter::new(out);
    // `GzEncoder` writes no timestamp or file name, so its output depends only on the input.
    let gz = GzEncoder::new(hashing, Compression::default());
    let mut builder = tar::Builder::new(gz);
    for file in &selected {
        append_file(&mut builder, file)?;
    }
    let gz = builder.into_inner().map_err(write_err)?;
    let mut hashing = gz.finish().map_err(write_err)?;
    hashing.flush().map_err(write_err)?;
    let (digest, archive_bytes) = hashing.finish();
    Ok(SnapshotInfo {
        digest,
        archive_bytes,
        files: selected.len(),
        unpacked_bytes,
        skipped,
    })
}

/// Lists the files of `dir` that go into a snapshot, sorted, plus the entries left out.
fn select_files(dir: &Path) -> ComputeResult<(Vec<SelectedFile>, Vec<PathBuf>)> {
    let walk_err = |source: ignore::Error| ComputeError::Walk {
        dir: dir.to_path_buf(),
        source,
    };
    let meta = fs::metadata(dir).map_err(|e| ComputeError::io("read", dir, e))?;
    if !meta.is_dir() {
        return Err(ComputeError::io(
            "snapshot",
            dir,
            io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        ));
    }

    let mut walker = ignore::WalkBuilder::new(dir);
    walker
        .standard_filters(false)
        .hidden(false)
        .parents(false)
        .git_ignore(true)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|entry| entry.file_name() != ".git");
    walker.add_custom_ignore_filename(SHOAL_IGNORE_FILENAME);

    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    for entry in walker.build() {
        let entry = entry.map_err(walk_err)?;
        if entry.depth() == 0 {
            continue;
        }
        let abs_path = entry.path().to_path_buf();
        let rel_path = abs_path
            .strip_prefix(dir)
            .expect("the walker yields paths under its root")
            .to_path_buf();
        let Some(file_type) = entry.file_type() else {
            // Only stdin entries lack a type, and the walker is never given stdin.
            continue;
        };
        if file_type.is_dir() {
            continue;
        }
        if !file_type.is_file() {
            skipped.push(rel_path);
            continue;
        }
        let meta = entry.metadata().map_err(walk_err)?;
        selected.push(SelectedFile {
            rel_path,
            abs_path,
            size: meta.len(),
            executable: meta.permissions().mode() & 0o111 != 0,
        });
    }
    // The walker's order depends on the directory listing; sort so the archive does not.
    selected.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    skipped.sort();
    Ok((selected, skipped))
}

/// Appends one file with a normalised header.
fn append_file<W: Write>(builder: &mut tar::Builder<W>, file: &SelectedFile) -> ComputeResult<()> {
    let handle =
        fs::File::open(&file.abs_path).map_err(|e| ComputeError::io("open", &file.abs_path, e))?;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(file.size);
    header.set_mode(if file.executable {
        EXECUTABLE_MODE
    } else {
        REGULAR_MODE
    });
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    let mut reader = ExactSizeReader::new(handle, file.size);
    let result = builder.append_data(&mut header, &file.rel_path, &mut reader);
    if reader.changed {
        return Err(ComputeError::FileChangedWhilePacking {
            path: file.abs_path.clone(),
        });
    }
    result.map_err(|e| ComputeError::io("pack", &file.abs_path, e))
}

/// Unpacks a snapshot archive (`tar.gz`) from `archive` into `dest`.
///
/// `dest` is created if missing and must be empty if it exists. Only regular files and
/// directories are accepted; files get mode `0755` or `0644` depending on the executable bit.
/// `limit_bytes` bounds the total size of the files written.
///
/// # Errors
/// [`ComputeError::UnsafeArchiveEntry`] for absolute paths, `..` components, links, devices,
/// FIFOs or duplicate paths; [`ComputeError::UnpackTooLarge`] over the limit;
/// [`ComputeError::CorruptArchive`] for a damaged stream; [`ComputeError::DestinationNotEmpty`];
/// [`ComputeError::Io`] for write failures. On error, `dest` may hold part of the archive and
/// should be removed by the caller.
pub fn unpack<R: Read>(archive: R, dest: &Path, limit_bytes: u64) -> ComputeResult<UnpackSummary> {
    prepare_destination(dest)?;
    let mut archive = tar::Archive::new(GzDecoder::new(archive));
    let entries = archive
        .entries()
        .map_err(|source| ComputeError::CorruptArchive { source })?;

    let mut summary = UnpackSummary {
        files: 0,
        unpacked_bytes: 0,
    };
    for entry in entries {
        let mut entry = entry.map_err(|source| ComputeError::CorruptArchive { source })?;
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            continue;
        }
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel_path = checked_relative_path(&raw_path)?;
        let unsafe_entry = |reason| ComputeError::UnsafeArchiveEntry {
            path: raw_path.clone(),
            reason,
        };
        let target = dest.join(&rel_path);

        if entry_type.is_dir() {
            create_dir_all_with_mode(&target)?;
            continue;
        }
        if !entry_type.is_file() {
            return Err(unsafe_entry(describe_refused_type(entry_type)));
        }

        let size = entry
            .header()
            .size()
            .map_err(|source| ComputeError::CorruptArchive { source })?;
        let total = summary.unpacked_bytes.saturating_add(size);
        if total > limit_bytes {
            return Err(ComputeError::UnpackTooLarge {
                limit: limit_bytes,
                size: total,
            });
        }
        let executable = entry
            .header()
            .mode()
            .map(|m| m & 0o111 != 0)
            .unwrap_or(false);
        if let Some(parent) = target.parent() {
            create_dir_all_with_mode(parent)?;
        }
        let mut out = fs::OpenOptions::new()
            .write(true)
            // `create_new` refuses an existing path (a duplicate entry) and never follows a
            // symlink at the final component.
            .create_new(true)
            .mode(if executable {
                EXECUTABLE_MODE
            } else {
                REGULAR_MODE
            })
            .open(&target)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    unsafe_entry("duplicate path in archive")
                } else {
                    ComputeError::io("create", &target, e)
                }
            })?;
        // The entry reader stops at the header's size, so `size` bounds what is written.
        let written = io::copy(&mut entry, &mut out).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => {
                ComputeError::CorruptArchive { source: e }
            }
            _ => ComputeError::io("write", &target, e),
        })?;
        if written != size {
            return Err(ComputeError::CorruptArchive {
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("entry {raw_path:?} is truncated"),
                ),
            });
        }
        // Set the mode explicitly: the `mode` given at creation is reduced by the umask.
        fs::set_permissions(
            &target,
            fs::Permissions::from_mode(if executable {
                EXECUTABLE_MODE
            } else {
                REGULAR_MODE
            }),
        )
        .map_err(|e| ComputeError::io("set permissions on", &target, e))?;
        summary.files += 1;
        summary.unpacked_bytes = total;
    }
    Ok(summary)
}

/// Creates `dest` or checks that it is an empty directory.
fn prepare_destination(dest: &Path) -> ComputeResult<()> {
    match fs::read_dir(dest) {
        Ok(mut listing) => {
            if listing.next().is_some() {
                return Err(ComputeError::DestinationNotEmpty {
                    path: dest.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(|e| ComputeError::io("create", dest, e))
        }
        Err(e) => Err(ComputeError::io("read", dest, e)),
    }
}

fn create_dir_all_with_mode(path: &Path) -> ComputeResult<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|e| ComputeError::io("create", path, e))
}

/// Turns an archive path into a relative path made only of normal components.
fn checked_relative_path(raw: &str) -> ComputeResult<PathBuf> {
    let refuse = |reason| ComputeError::UnsafeArchiveEntry {
        path: raw.to_string(),
        reason,
    };
    if raw.contains('\0') {
        return Err(refuse("path contains a NUL byte"));
    }
    let mut clean = PathBuf::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("path contains a `..` component")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("path is absolute"));
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(refuse("path is empty"));
    }
    Ok(clean)
}

fn describe_refused_type(entry_type: tar::EntryType) -> &'static str {
    if entry_type.is_symlink() {
        "symbolic links are not allowed"
    } else if entry_type.is_hard_link() {
        "hard links are not allowed"
    } else if entry_type.is_character_special() || entry_type.is_block_special() {
        "device files are not allowed"
    } else if entry_type.is_fifo() {
        "FIFOs are not allowed"
    } else {
        "only regular files and directories are allowed"
    }
}

// === impl ExactSizeReader ===

/// Reads exactly `remaining` bytes from a file and notices if the file is shorter or longer,
/// because the tar header already promised that size.
struct ExactSizeReader<R> {
    inner: R,
    remaining: u64,
    /// Set when the file turned out not to have the listed size.
    changed: bool,
}

impl<R: Read> ExactSizeReader<R> {
    fn new(inner: R, size: u64) -> Self {
        ExactSizeReader {
            inner,
            remaining: size,
            changed: false,
        }
    }
}

impl<R: Read> Read for ExactSizeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // Probe for growth once the promised bytes are out.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? != 0 {
                self.changed = true;
                return Err(io::Error::other("file grew while packing"));
            }
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 && !buf.is_empty() {
            self.changed = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while packing",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

// === impl HashingWriter ===

/// Passes bytes through while hashing and counting them, so streaming callers get the digest
/// without reading the archive back.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_cleaned() {
        assert_eq!(
            checked_relative_path("./src/train.py").expect("valid"),
            PathBuf::from("src/train.py")
        );
    }

    #[test]
    fn escaping_paths_are_refused() {
        for raw in ["../evil", "a/../../evil", "/etc/passwd", "", "."] {
            assert!(
                matches!(
                    checked_relative_path(raw),
                    Err(ComputeError::UnsafeArchiveEntry { .. })
                ),
                "{raw:?} should be refused"
            );
        }
    }

    #[test]
    fn exact_size_reader_detects_shrink_and_growth() {
        let mut out = Vec::new();
        let mut short = ExactSizeReader::new(&b"abc"[..], 5);
        assert!(io::copy(&mut short, &mut out).is_err());
        assert!(short.changed);

        let mut long = ExactSizeReader::new(&b"abcdef"[..], 5);
        assert!(io::copy(&mut long, &mut out).is_err());
        assert!(long.changed);

        let mut exact = ExactSizeReader::new(&b"abcde"[..], 5);
        out.clear();
        assert_eq!(io::copy(&mut exact, &mut out).expect("exact size"), 5);
        assert!(!exact.changed);
    }
}
