//! Source snapshots: ignore rules, determinism, modes, limits, and refusing hostile archives.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::write::GzEncoder;
use flate2::Compression;
use shoal_compute::{pack_dir, pack_dir_to_writer, unpack, ComputeError};

const LIMIT: u64 = 1024 * 1024;

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("test paths have a parent")).expect("mkdir");
    fs::write(path, content).expect("write test file");
}

/// A source tree exercising every rule; returns the files a snapshot must contain.
fn build_source_tree(root: &Path) -> Vec<&'static str> {
    write(
        root,
        ".gitignore",
        "*.log\n*.csv\n/datasets/\n__pycache__/\n",
    );
    // As in git, a negation cannot re-include a file inside an excluded folder, so the
    // re-included csv sits in a folder that is not itself excluded.
    write(
        root,
        ".shoalignore",
        "checkpoints/\nsecrets.env\n!data/labels.csv\n",
    );
    write(root, "train.py", "print('train')\n");
    write(root, "run.sh", "#!/bin/sh\npython train.py\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o750)).expect("chmod");
    write(root, "debug.log", "ignored by *.log\n");
    write(root, "secrets.env", "TOKEN=ignored by .shoalignore\n");
    write(root, "datasets/big.bin", "ignored by /datasets/\n");
    write(root, "data/raw.csv", "ignored by *.csv\n");
    write(
        root,
        "data/labels.csv",
        "re-included by .shoalignore, which beats .gitignore\n",
    );
    write(root, "checkpoints/epoch1.pt", "ignored by .shoalignore\n");
    write(root, "pkg/__pycache__/m.pyc", "ignored by __pycache__/\n");
    write(root, "pkg/model.py", "class Model: ...\n");
    // Nested rules: ignore a folder locally, and re-include one *.log file.
    write(root, "pkg/.gitignore", "scratch/\n!keep.log\n");
    write(root, "pkg/keep.log", "re-included by a nested negation\n");
    write(
        root,
        "pkg/scratch/tmp.txt",
        "ignored by the nested .gitignore\n",
    );
    write(root, "pkg/sub/.shoalignore", "*.parquet\n");
    write(
        root,
        "pkg/sub/table.parquet",
        "ignored by a nested .shoalignore\n",
    );
    write(root, "pkg/sub/util.py", "def f(): ...\n");
    write(root, ".git/config", "[core]\n");
    write(root, ".git/HEAD", "ref: refs/heads/main\n");
    write(root, ".env.example", "hidden files are kept\n");
    std::os::unix::fs::symlink("train.py", root.join("link.py")).expect("symlink");

    vec![
        ".env.example",
        ".gitignore",
        ".shoalignore",
        "data/labels.csv",
        "pkg/.gitignore",
        "pkg/keep.log",
        "pkg/model.py",
        "pkg/sub/.shoalignore",
        "pkg/sub/util.py",
        "run.sh",
        "train.py",
    ]
}

/// Lists every file under `root` as sorted relative paths.
fn list_files(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                pending.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                files.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn ignore_rules_are_honoured() {
    let src = tempfile::tempdir().expect("tempdir");
    let expected = build_source_tree(src.path());
    let snapshot = pack_dir(src.path(), LIMIT).expect("pack");

    assert_eq!(snapshot.files, expected.len());
    assert_eq!(snapshot.skipped, vec![PathBuf::from("link.py")]);

    let dest = tempfile::tempdir().expect("tempdir");
    let summary = unpack(&snapshot.bytes[..], dest.path(), LIMIT).expect("unpack");
    assert_eq!(summary.files, expected.len());
    assert_eq!(summary.unpacked_bytes, snapshot.unpacked_bytes);
    assert_eq!(list_files(dest.path()), expected);
    assert_eq!(
        fs::read_to_string(dest.path().join("pkg/model.py")).expect("read"),
        "class Model: ...\n"
    );
}

#[test]
fn same_tree_gives_same_digest() {
    let src = tempfile::tempdir().expect("tempdir");
    build_source_tree(src.path());
    let first = pack_dir(src.path(), LIMIT).expect("pack");

    // Touch a file and rebuild an identical tree elsewhere: neither mtimes nor the directory
    // listing order may change the archive.
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    fs::File::options()
        .write(true)
        .open(src.path().join("train.py"))
        .expect("open")
        .set_modified(old)
        .expect("set mtime");
    let second = pack_dir(src.path(), LIMIT).expect("pack again");
    let copy = tempfile::tempdir().expect("tempdir");
    build_source_tree(copy.path());
    let third = pack_dir(copy.path(), LIMIT).expect("pack copy");

    assert_eq!(first.digest, second.digest);
    assert_eq!(first.bytes, second.bytes);
    assert_eq!(first.digest, third.digest);
    assert_eq!(first.digest.len(), 64);

    write(src.path(), "train.py", "print('changed')\n");
    let changed = pack_dir(src.path(), LIMIT).expect("pack changed");
    assert_ne!(first.digest, changed.digest);
}

#[test]
fn streaming_pack_matches_in_memory_pack() {
    let src = tempfile::tempdir().expect("tempdir");
    build_source_tree(src.path());
    let in_memory = pack_dir(src.path(), LIMIT).expect("pack");
    let mut streamed = Vec::new();
    let info = pack_dir_to_writer(src.path(), LIMIT, &mut streamed).expect("pack to writer");
    assert_eq!(streamed, in_memory.bytes);
    assert_eq!(info.digest, in_memory.digest);
    assert_eq!(info.archive_bytes, streamed.len() as u64);
}

#[test]
fn executable_bit_survives_unpack() {
    let src = tempfile::tempdir().expect("tempdir");
    build_source_tree(src.path());
    let snapshot = pack_dir(src.path(), LIMIT).expect("pack");
    let dest = tempfile::tempdir().expect("tempdir");
    let target = dest.path().join("run");
    unpack(&snapshot.bytes[..], &target, LIMIT).expect("unpack into a new folder");

    let mode = |rel: &str| {
        fs::metadata(target.join(rel))
            .expect("unpacked file")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("run.sh"), 0o755);
    assert_eq!(mode("train.py"), 0o644);
}

#[test]
fn oversized_folder_is_refused_with_sizes() {
    let src = tempfile::tempdir().expect("tempdir");
    write(src.path(), "weights.bin", &"x".repeat(5000));
    write(src.path(), "train.py", "print(1)\n");
    let error = pack_dir(src.path(), 4096).expect_err("over the limit");
    match &error {
        ComputeError::SnapshotTooLarge { limit, size, .. } => {
            assert_eq!(*limit, 4096);
            assert_eq!(*size, 5009);
        }
        other => panic!("unexpected error {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("4096") && message.contains("5009"),
        "{message}"
    );
}

#[test]
fn unpack_refuses_a_non_empty_destination() {
    let src = tempfile::tempdir().expect("tempdir");
    write(src.path(), "train.py", "print(1)\n");
    let snapshot = pack_dir(src.path(), LIMIT).expect("pack");
    let error = unpack(&snapshot.bytes[..], src.path(), LIMIT).expect_err("not empty");
    assert!(
        matches!(error, ComputeError::DestinationNotEmpty { .. }),
        "{error:?}"
    );
}

#[test]
fn unpack_enforces_its_size_limit() {
    let src = tempfile::tempdir().expect("tempdir");
    write(src.path(), "a.bin", &"a".repeat(600));
    write(src.path(), "b.bin", &"b".repeat(600));
    let snapshot = pack_dir(src.path(), LIMIT).expect("pack");
    let dest = tempfile::tempdir().expect("tempdir");
    let error = unpack(&snapshot.bytes[..], dest.path(), 1000).expect_err("over the limit");
    assert!(
        matches!(error, ComputeError::UnpackTooLarge { limit: 1000, .. }),
        "{error:?}"
    );
}

// === hostile archives, built by hand ===

/// Writes a tar header whose name is stored verbatim, bypassing the checks `tar::Header`
/// applies in `set_path`, as an attacker's tool would.
fn raw_header(name: &[u8], entry_type: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(entry_type);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    header
}

fn gzip_tar(entries: &[(tar::Header, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (header, data) in entries {
        builder.append(header, *data).expect("append");
    }
    let gz = builder.into_inner().expect("finish tar");
    gz.finish().expect("finish gzip")
}

fn assert_refused(archive: &[u8], what: &str) {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let dest = sandbox.path().join("dest");
    let error = unpack(archive, &dest, LIMIT).expect_err(what);
    assert!(
        matches!(error, ComputeError::UnsafeArchiveEntry { .. }),
        "{what}: {error:?}"
    );
    assert!(!sandbox.path().join("evil").exists(), "{what} escaped");
}

#[test]
fn unpack_refuses_parent_dir_paths() {
    let archive = gzip_tar(&[(raw_header(b"../evil", tar::EntryType::Regular, 4), b"boom")]);
    assert_refused(&archive, "../evil");
    let archive = gzip_tar(&[(
        raw_header(b"ok/../../evil", tar::EntryType::Regular, 4),
        b"boom",
    )]);
    assert_refused(&archive, "ok/../../evil");
}

#[test]
fn unpack_refuses_absolute_paths() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let absolute = sandbox.path().join("evil");
    let archive = gzip_tar(&[(
        raw_header(
            absolute.to_str().expect("utf-8 temp path").as_bytes(),
            tar::EntryType::Regular,
            4,
        ),
        b"boom",
    )]);
    assert_refused(&archive, "absolute path");
    assert!(!absolute.exists());
}

#[test]
fn unpack_refuses_links_and_devices() {
    let mut symlink = raw_header(b"link", tar::EntryType::Symlink, 0);
    symlink.set_link_name("/etc/passwd").expect("link name");
    symlink.set_cksum();
    assert_refused(&gzip_tar(&[(symlink, b"")]), "symlink");

    let mut hardlink = raw_header(b"hard", tar::EntryType::Link, 0);
    hardlink.set_link_name("/etc/passwd").expect("link name");
    hardlink.set_cksum();
    assert_refused(&gzip_tar(&[(hardlink, b"")]), "hard link");

    let device = raw_header(b"null", tar::EntryType::Char, 0);
    assert_refused(&gzip_tar(&[(device, b"")]), "character device");
}

#[test]
fn unpack_reports_a_corrupt_archive() {
    let dest = tempfile::tempdir().expect("tempdir");
    let mut garbage = GzEncoder::new(Vec::new(), Compression::default());
    garbage.write_all(&[7u8; 1000]).expect("write");
    let garbage = garbage.finish().expect("gzip");
    let error = unpack(&garbage[..], dest.path(), LIMIT).expect_err("corrupt");
    assert!(
        matches!(error, ComputeError::CorruptArchive { .. }),
        "{error:?}"
    );
    let error = unpack(&b"not gzip"[..], dest.path(), LIMIT).expect_err("not gzip");
    assert!(
        matches!(error, ComputeError::CorruptArchive { .. }),
        "{error:?}"
    );
}
