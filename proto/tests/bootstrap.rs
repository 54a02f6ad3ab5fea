//! Regenerates the protobuf code and fails if the committed copy in `src/generated/` differs.
//!
//! The generated code is committed so that agents cross-compile without protoc. To refresh it
//! after editing a `.proto` file, run `SHOAL_BLESS=1 cargo test -p shoal-proto --test bootstrap`.

use std::path::{Path, PathBuf};

const PROTOS: &[&str] = &[
    "shoal/device/v1/device.proto",
    "shoal/workspace/v1/workspace.proto",
    "shoal/registry/v1/registry.proto",
    "shoal/fleet/v1/fleet.proto",
    "shoal/deployment/v1/deployment.proto",
    "shoal/telemetry/v1/telemetry.proto",
    "shoal/training/v1/training.proto",
    "shoal/secret/v1/secret.proto",
    "shoal/access/v1/access.proto",
];

#[test]
fn generated_code_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = root.join("src/generated");
    let fresh = tempfile::tempdir().expect("a temporary folder");

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path().expect("vendored protoc"));
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    tonic_prost_build::configure()
        .out_dir(fresh.path())
        .file_descriptor_set_path(fresh.path().join("descriptor.bin"))
        .server_mod_attribute(".", "#[cfg(feature = \"grpc\")]")
        .client_mod_attribute(".", "#[cfg(feature = \"grpc\")]")
        .compile_with_config(config, &protos, &[root.to_path_buf()])
        .expect("protoc and codegen succeed");

    let bless = std::env::var_os("SHOAL_BLESS").is_some();
    let mut stale = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(fresh.path())
        .expect("read the generated folder")
        .map(|entry| entry.expect("a folder entry").file_name())
        .collect();
    names.sort();
    for name in names {
        let new = std::fs::read(fresh.path().join(&name)).expect("read generated file");
        let old = std::fs::read(committed.join(&name)).unwrap_or_default();
        if new != old {
            if bless {
                std::fs::write(committed.join(&name), &new).expect("write generated file");
            } else {
                stale.push(name.to_string_lossy().into_owned());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated code is stale: {stale:?}; run SHOAL_BLESS=1 cargo test -p shoal-proto --test bootstrap"
    );
}
