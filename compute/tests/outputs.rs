//! Listing the files a run leaves under `outputs/`.

use std::fs;

use shoal_compute::collect_outputs;

/// sha256 of the five bytes `hello`.
const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
/// sha256 of the empty string.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn nested_outputs_are_listed_sorted_with_digests() {
    let workdir = tempfile::tempdir().expect("tempdir");
    let outputs = workdir.path().join("outputs");
    fs::create_dir_all(outputs.join("plots/val")).expect("mkdir");
    fs::write(outputs.join("model.onnx"), b"hello").expect("write");
    fs::write(outputs.join("plots/val/loss.png"), b"").expect("write");
    fs::write(outputs.join("a.txt"), b"hello").expect("write");
    fs::create_dir_all(outputs.join("empty")).expect("mkdir");
    fs::write(workdir.path().join("secret.txt"), b"not an output").expect("write");
    std::os::unix::fs::symlink(workdir.path().join("secret.txt"), outputs.join("leak.txt"))
        .expect("symlink");
    std::os::unix::fs::symlink(workdir.path(), outputs.join("leak-dir")).expect("symlink");

    let files = collect_outputs(&outputs).expect("collect");
    let summary: Vec<(&str, u64, &str)> = files
        .iter()
        .map(|f| (f.rel_path.as_str(), f.size, f.sha256.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a.txt", 5, HELLO_SHA256),
            ("model.onnx", 5, HELLO_SHA256),
            ("plots/val/loss.png", 0, EMPTY_SHA256),
        ]
    );
    assert_eq!(files[2].abs_path, outputs.join("plots/val/loss.png"));
}

#[test]
fn missing_outputs_folder_is_empty() {
    let workdir = tempfile::tempdir().expect("tempdir");
    let files = collect_outputs(&workdir.path().join("outputs")).expect("collect");
    assert!(files.is_empty());
}

#[test]
fn symlinked_outputs_folder_is_not_followed() {
    let workdir = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    fs::write(elsewhere.path().join("id_rsa"), b"private").expect("write");
    std::os::unix::fs::symlink(elsewhere.path(), workdir.path().join("outputs")).expect("symlink");
    let files = collect_outputs(&workdir.path().join("outputs")).expect("collect");
    assert!(files.is_empty(), "{files:?}");
}
