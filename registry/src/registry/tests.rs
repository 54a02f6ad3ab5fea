//! The registry over an in-memory store and a real artifact folder, with tiny ONNX models
//! built in code and validated by tract.

use std::collections::BTreeMap;

use shoal_drift::{ClassBaseline, FeatureKind, OutputKind};
use shoal_model::build::{Mlp, SplitMix64};
use shoal_model::{DType, Dim};
use shoal_store::{ErrorCode, ServiceError, WorkspaceContents, WorkspaceError, DEFAULT_WORKSPACE};

use super::*;

const WS: &str = DEFAULT_WORKSPACE;

/// A registry over a fresh in-memory store with the default workspace, and artifacts in a
/// temporary folder that lives as long as the fixture.
struct Fixture {
    registry: Registry,
    workspaces: Workspaces,
    _artifacts: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let records = Records::in_memory();
    let workspaces = Workspaces::new(records.clone());
    workspaces.ensure_default().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let artifacts = ArtifactStore::open(dir.path()).unwrap();
    Fixture {
        registry: Registry::new(records, artifacts, workspaces.clone()),
        workspaces,
        _artifacts: dir,
    }
}

fn mlp() -> Mlp {
    Mlp::seeded(&[4, 3, 2], 9)
}

/// Stores `bytes` as an artifact the way an upload does; returns (digest, size).
async fn store(registry: &Registry, bytes: &[u8]) -> (String, u64) {
    let mut writer = registry.artifacts().writer().await.unwrap();
    writer.write(bytes).await.unwrap();
    writer.finish().await.unwrap()
}

fn new_version(workspace: &str, name: &str) -> NewVersion {
    NewVersion {
        workspace: workspace.into(),
        name: name.into(),
        description: format!("{name} for tests"),
        tags: BTreeMap::from([("team".to_string(), "edge".to_string())]),
    }
}

async fn register_bytes(
    registry: &Registry,
    workspace: &str,
    name: &str,
    bytes: &[u8],
) -> RegistryResult<ModelVersion> {
    let (digest, size) = store(registry, bytes).await;
    registry
        .register(new_version(workspace, name), digest, size)
        .await
}

async fn register(registry: &Registry, name: &str, seed: u64) -> ModelVersion {
    register_bytes(registry, WS, name, &Mlp::seeded(&[4, 3, 2], seed).to_onnx())
        .await
        .unwrap()
}

#[tokio::test]
async fn registering_a_valid_model_takes_version_one_then_two() {
    let f = fixture();
    let bytes = mlp().to_onnx();
    let (digest, size) = store(&f.registry, &bytes).await;
    assert_eq!(size, bytes.len() as u64);

    let first = f
        .registry
        .register(new_version(WS, "sensor"), digest.clone(), size)
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.model, "sensor");
    assert_eq!(first.digest, digest);
    assert_eq!(first.size_bytes, size);
    assert_eq!(first.tags.get("team").map(String::as_str), Some("edge"));
    assert!(first.baseline.is_none());
    // The signature is what tract read from the model: x [N, 4] → y [N, 2], f32.
    let input = &first.signature.inputs[0];
    assert_eq!(input.name, "x");
    assert_eq!(input.dtype, DType::F32);
    assert_eq!(input.shape.last(), Some(&Dim::Fixed(4)));
    assert_eq!(first.signature.outputs[0].name, "y");
    assert_eq!(
        first.signature.outputs[0].shape.last(),
        Some(&Dim::Fixed(2))
    );

    let second = register(&f.registry, "sensor", 10).await;
    assert_eq!(second.version, 2);
    assert_ne!(second.digest, first.digest);

    let model = f.registry.model(WS, "sensor").unwrap();
    assert_eq!(model.latest_version, 2);
    let versions: Vec<u32> = f
        .registry
        .versions(WS, "sensor")
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, vec![1, 2]);
    assert_eq!(f.registry.models(WS).unwrap().len(), 1);
}

#[tokio::test]
async fn versions_list_in_numeric_order_past_nine() {
    let f = fixture();
    for seed in 0..11 {
        register(&f.registry, "many", seed).await;
    }
    let versions: Vec<u32> = f
        .registry
        .versions(WS, "many")
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, (1..=11).collect::<Vec<u32>>());
    assert_eq!(f.registry.resolve(WS, "many", LATEST).unwrap().version, 11);
}

#[tokio::test]
async fn garbage_bytes_are_refused_and_take_no_version() {
    let f = fixture();
    let error = register_bytes(&f.registry, WS, "sensor", b"this is not an onnx model")
        .await
        .expect_err("garbage is refused");
    assert!(
        matches!(error, RegistryError::InvalidArgument(_)),
        "{error:?}"
    );
    assert_eq!(error.error_code(), ErrorCode::InvalidArgument);
    assert!(error.to_string().starts_with("model refused:"), "{error}");
    // No model, no version was taken.
    assert!(matches!(
        f.registry.model(WS, "sensor"),
        Err(RegistryError::NotFound { .. })
    ));

    // A model tract parses but cannot run (an operator it does not know) is refused too.
    let error = register_bytes(
        &f.registry,
        WS,
        "sensor",
        &shoal_model::build::single_operator_model("NoSuchOperator"),
    )
    .await
    .expect_err("an unknown operator is refused");
    assert!(
        matches!(error, RegistryError::InvalidArgument(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("NoSuchOperator"), "{error}");

    // The first valid upload is still version 1.
    assert_eq!(register(&f.registry, "sensor", 1).await.version, 1);
}

#[tokio::test]
async fn a_refused_upload_after_good_ones_leaves_the_latest_version_alone() {
    let f = fixture();
    register(&f.registry, "sensor", 1).await;
    register_bytes(&f.registry, WS, "sensor", b"garbage")
        .await
        .expect_err("garbage is refused");
    assert_eq!(f.registry.model(WS, "sensor").unwrap().latest_version, 1);
    assert_eq!(register(&f.registry, "sensor", 2).await.version, 2);
}

#[tokio::test]
async fn a_version_resolves_by_number_latest_and_alias() {
    let f = fixture();
    let v1 = register(&f.registry, "sensor", 1).await;
    let v2 = register(&f.registry, "sensor", 2).await;
    let r = &f.registry;

    assert_eq!(r.resolve(WS, "sensor", "1").unwrap(), v1);
    assert_eq!(r.resolve(WS, "sensor", "2").unwrap(), v2);
    assert_eq!(r.resolve(WS, "sensor", LATEST).unwrap(), v2);
    assert_eq!(r.resolve(WS, "sensor", "").unwrap(), v2);

    r.set_alias(WS, "sensor", "production", 1).unwrap();
    assert_eq!(r.resolve(WS, "sensor", "production").unwrap(), v1);

    let error = r.resolve(WS, "sensor", "3").unwrap_err();
    assert!(matches!(error, RegistryError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("sensor@3"), "{error}");
    let error = r.resolve(WS, "sensor", "staging").unwrap_err();
    assert!(error.to_string().contains("sensor@staging"), "{error}");
    let error = r.resolve(WS, "other", LATEST).unwrap_err();
    assert!(matches!(
        error,
        RegistryError::NotFound { kind: "model", .. }
    ));
}

#[tokio::test]
async fn an_alias_moves_to_a_new_version() {
    let f = fixture();
    register(&f.registry, "sensor", 1).await;
    register(&f.registry, "sensor", 2).await;
    let r = &f.registry;

    let model = r.set_alias(WS, "sensor", "production", 1).unwrap();
    assert_eq!(model.aliases.get("production"), Some(&1));
    assert_eq!(Registry::aliases_of(&model, 1), vec!["production"]);

    let model = r.set_alias(WS, "sensor", "production", 2).unwrap();
    assert_eq!(model.aliases.get("production"), Some(&2));
    assert!(Registry::aliases_of(&model, 1).is_empty());
    assert_eq!(r.resolve(WS, "sensor", "production").unwrap().version, 2);
    // What was returned is what was stored.
    assert_eq!(r.model(WS, "sensor").unwrap(), model);
}

#[tokio::test]
async fn a_deleted_alias_no_longer_resolves() {
    let f = fixture();
    register(&f.registry, "sensor", 1).await;
    let r = &f.registry;
    r.set_alias(WS, "sensor", "production", 1).unwrap();
    r.set_alias(WS, "sensor", "canary", 1).unwrap();

    let model = r.delete_alias(WS, "sensor", "production").unwrap();
    assert_eq!(model.aliases.keys().collect::<Vec<_>>(), vec!["canary"]);
    assert!(matches!(
        r.resolve(WS, "sensor", "production"),
        Err(RegistryError::NotFound { .. })
    ));
    // The version itself is untouched.
    assert_eq!(r.resolve(WS, "sensor", "1").unwrap().version, 1);

    let error = r.delete_alias(WS, "sensor", "production").unwrap_err();
    assert!(
        matches!(error, RegistryError::NotFound { kind: "alias", .. }),
        "{error:?}"
    );
    assert!(matches!(
        r.delete_alias(WS, "missing", "canary"),
        Err(RegistryError::NotFound { kind: "model", .. })
    ));
}

#[tokio::test]
async fn an_alias_to_a_missing_version_or_that_reads_as_a_reference_is_refused() {
    let f = fixture();
    register(&f.registry, "sensor", 1).await;
    let r = &f.registry;
    r.set_alias(WS, "sensor", "production", 1).unwrap();

    let error = r.set_alias(WS, "sensor", "production", 5).unwrap_err();
    assert!(matches!(error, RegistryError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("sensor@5"), "{error}");
    // The alias still points where it did.
    assert_eq!(r.model(WS, "sensor").unwrap().aliases["production"], 1);

    for alias in ["7", LATEST] {
        let error = r.set_alias(WS, "sensor", alias, 1).unwrap_err();
        assert!(
            matches!(error, RegistryError::InvalidArgument(_)),
            "{alias}: {error:?}"
        );
        assert!(error.to_string().contains(alias), "{error}");
    }
    let error = r.set_alias(WS, "sensor", "no spaces", 1).unwrap_err();
    assert_eq!(error.error_code(), ErrorCode::InvalidArgument, "{error:?}");
    assert!(matches!(
        r.set_alias(WS, "missing", "production", 1),
        Err(RegistryError::NotFound { .. })
    ));
    assert_eq!(r.model(WS, "sensor").unwrap().aliases.len(), 1);
}

#[tokio::test]
async fn an_unknown_workspace_is_not_found() {
    let f = fixture();
    let r = &f.registry;
    let error = register_bytes(r, "nowhere", "sensor", &mlp().to_onnx())
        .await
        .unwrap_err();
    assert_eq!(error.error_code(), ErrorCode::NotFound, "{error:?}");
    assert!(error.to_string().contains("nowhere"), "{error}");
    assert_eq!(
        r.models("nowhere").unwrap_err().error_code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        r.model("nowhere", "sensor").unwrap_err().error_code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        r.create_model("nowhere", "sensor", "")
            .unwrap_err()
            .error_code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        r.check_new_version(&new_version("nowhere", "sensor"))
            .unwrap_err()
            .error_code(),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn bad_model_names_and_tag_keys_are_refused_before_upload() {
    let f = fixture();
    let r = &f.registry;
    let error = r
        .check_new_version(&new_version(WS, "has/slash"))
        .unwrap_err();
    assert_eq!(error.error_code(), ErrorCode::InvalidArgument);
    assert!(error.to_string().contains("has/slash"), "{error}");

    let mut new = new_version(WS, "sensor");
    new.tags.insert(String::new(), "x".into());
    let error = r.check_new_version(&new).unwrap_err();
    assert!(
        matches!(error, RegistryError::InvalidArgument(_)),
        "{error:?}"
    );
    let mut new = new_version(WS, "sensor");
    new.tags.insert("k".repeat(129), "x".into());
    assert!(r.check_new_version(&new).is_err());
    let mut new = new_version(WS, "sensor");
    new.tags.insert("k".repeat(128), "x".into());
    r.check_new_version(&new).unwrap();
}

#[tokio::test]
async fn a_created_model_takes_version_one_at_its_first_registration() {
    let f = fixture();
    let r = &f.registry;
    let created = r.create_model(WS, "sensor", "made first").unwrap();
    assert_eq!(created.latest_version, 0);
    assert!(r.versions(WS, "sensor").unwrap().is_empty());
    // An empty model has no latest version to resolve.
    assert!(matches!(
        r.resolve(WS, "sensor", LATEST),
        Err(RegistryError::NotFound { .. })
    ));

    let error = r.create_model(WS, "sensor", "again").unwrap_err();
    assert!(
        matches!(error, RegistryError::AlreadyExists { .. }),
        "{error:?}"
    );
    assert_eq!(
        r.create_model(WS, "bad name", "").unwrap_err().error_code(),
        ErrorCode::InvalidArgument
    );

    let v1 = register(r, "sensor", 1).await;
    assert_eq!(v1.version, 1);
    let model = r.model(WS, "sensor").unwrap();
    assert_eq!(model.latest_version, 1);
    // The model keeps the description it was created with.
    assert_eq!(model.description, "made first");
    assert_eq!(model.created_at_ms, created.created_at_ms);

    let model = r.set_model_description(WS, "sensor", "changed").unwrap();
    assert_eq!(model.description, "changed");
    assert_eq!(r.model(WS, "sensor").unwrap().latest_version, 1);
}

#[tokio::test]
async fn workspace_contents_count_models_and_delete_them_with_their_versions() {
    let f = fixture();
    let r = &f.registry;
    f.workspaces.create("other", "").unwrap();
    // "default-2" shares a prefix with "default" but not "default/".
    f.workspaces.create("default-2", "").unwrap();
    assert!(r.held(WS).unwrap().is_empty());

    register(r, "a", 1).await;
    register(r, "a", 2).await;
    register(r, "b", 3).await;
    register_bytes(r, "other", "a", &mlp().to_onnx())
        .await
        .unwrap();
    register_bytes(r, "default-2", "z", &mlp().to_onnx())
        .await
        .unwrap();
    assert_eq!(r.held(WS).unwrap(), vec!["2 models".to_string()]);
    assert_eq!(r.held("other").unwrap(), vec!["1 model".to_string()]);

    // A workspace that holds models is not deleted without force.
    let error = f.workspaces.delete(WS, false, &[r]).unwrap_err();
    assert!(
        matches!(&error, WorkspaceError::NotEmpty { held, .. } if held == "2 models"),
        "{error:?}"
    );
    assert_eq!(r.models(WS).unwrap().len(), 2);

    r.delete_all(WS).unwrap();
    assert!(r.held(WS).unwrap().is_empty());
    assert!(r.models(WS).unwrap().is_empty());
    assert!(matches!(
        r.versions(WS, "a"),
        Err(RegistryError::NotFound { .. })
    ));
    // A re-registered name starts over at version 1: the old versions are gone too.
    assert_eq!(register(r, "a", 4).await.version, 1);
    assert_eq!(r.versions(WS, "a").unwrap().len(), 1);

    // Other workspaces keep theirs.
    assert_eq!(r.versions("other", "a").unwrap().len(), 1);
    assert_eq!(r.versions("default-2", "z").unwrap().len(), 1);

    f.workspaces.delete("other", true, &[r]).unwrap();
    assert_eq!(
        r.models("other").unwrap_err().error_code(),
        ErrorCode::NotFound
    );
    assert!(r.held("other").unwrap().is_empty());
}

/// Sensor-like rows: column i uniform in [i, i + 10).
fn sensor_rows(seed: u64, n: usize) -> Vec<[f32; 4]> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| std::array::from_fn(|i| i as f32 + 5.0 + 5.0 * rng.unit() as f32))
        .collect()
}

const FEATURES: [&str; 4] = ["temp", "hum", "light", "co2"];

fn write_csv(dir: &std::path::Path, rows: &[[f32; 4]]) -> std::path::PathBuf {
    // An extra column the baseline does not use, placed first.
    let mut text = format!("id,{}\n", FEATURES.join(","));
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        text += &format!("{i},{}\n", cells.join(","));
    }
    let path = dir.join("baseline.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn features() -> Vec<String> {
    FEATURES.map(String::from).to_vec()
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
            if *v > best.1 {
                (i, *v)
            } else {
                best
            }
        })
        .0
}

#[tokio::test]
async fn a_baseline_set_from_csv_profiles_features_and_the_models_outputs() {
    let f = fixture();
    let r = &f.registry;
    let model = mlp();
    register_bytes(r, WS, "sensor", &model.to_onnx())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rows = sensor_rows(3, 300);
    let csv = write_csv(dir.path(), &rows);

    let version = r
        .set_baseline(WS, "sensor", LATEST, "", features(), csv)
        .await
        .unwrap();
    let baseline = version.baseline.as_ref().expect("a baseline");
    assert_eq!(baseline.input, "x");
    assert_eq!(baseline.baseline.rows, 300);
    let names: Vec<&str> = baseline
        .baseline
        .features
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, FEATURES);
    for (i, feature) in baseline.baseline.features.iter().enumerate() {
        let FeatureKind::Numeric(numeric) = &feature.kind else {
            panic!("{} is numeric", feature.name);
        };
        assert_eq!(numeric.counts.iter().sum::<u64>(), 300);
        let min = numeric.moments.min().unwrap();
        let max = numeric.moments.max().unwrap();
        assert!(min >= i as f64 && max < i as f64 + 10.0, "{min}..{max}");
    }
    // The output baseline is the model's argmax classes on the same rows.
    assert_eq!(baseline.baseline.outputs.len(), 1);
    assert_eq!(baseline.baseline.outputs[0].name, "y");
    let expected =
        ClassBaseline::from_predictions(2, rows.iter().map(|row| argmax(&model.forward(row))));
    assert_eq!(
        baseline.baseline.outputs[0].kind,
        OutputKind::Classes(expected)
    );

    // It is stored, and goes into the manifest devices receive.
    let stored = r.resolve(WS, "sensor", "1").unwrap();
    let kept = stored.baseline.as_ref().expect("the baseline is stored");
    assert_eq!(kept.input, "x");
    assert_eq!(kept.baseline.rows, 300);
    assert_eq!(kept.baseline.outputs, baseline.baseline.outputs);
    for (kept, made) in kept
        .baseline
        .features
        .iter()
        .zip(&baseline.baseline.features)
    {
        let (FeatureKind::Numeric(kept), FeatureKind::Numeric(made)) = (&kept.kind, &made.kind)
        else {
            panic!("numeric features");
        };
        assert_eq!(kept.counts, made.counts);
        // Equal up to the JSON round trip of the store (see
        // `a_stored_baseline_reads_back_bit_for_bit`).
        assert_eq!(kept.edges.len(), made.edges.len());
        for (a, b) in kept.edges.iter().zip(&made.edges) {
            assert!((a - b).abs() <= 1e-12 * b.abs(), "{a} vs {b}");
        }
    }
    // The manifest refers to the encoded baseline, a blob in the artifact store.
    let manifest = stored.manifest();
    let reference = manifest.baseline.expect("a baseline reference");
    let kept = stored.baseline.as_ref().unwrap();
    assert_eq!(
        (reference.digest.as_str(), reference.size_bytes),
        (kept.digest.as_str(), kept.size_bytes)
    );
    let blob = r.artifacts().read(&reference.digest).await.unwrap();
    assert_eq!(blob.len() as u64, reference.size_bytes);
    let wire =
        <shoal_proto::device::DriftBaseline as prost::Message>::decode(blob.as_slice()).unwrap();
    assert_eq!(wire.rows, 300);
    assert_eq!(wire.features.len(), 4);
    assert_eq!(wire.outputs.len(), 1);
    assert_eq!(
        stored.baseline.as_ref().unwrap().bindings()[3],
        shoal_drift::wire::FeatureBinding {
            input: "x".into(),
            column: 3
        }
    );
}

#[tokio::test]
async fn a_baseline_that_does_not_fit_the_input_is_refused_and_nothing_is_stored() {
    let f = fixture();
    let r = &f.registry;
    register(r, "sensor", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = write_csv(dir.path(), &sensor_rows(3, 50));

    let error = r
        .set_baseline(WS, "sensor", "1", "", features()[..3].to_vec(), csv.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::InvalidArgument(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("4 wide"), "{error}");

    let error = r
        .set_baseline(WS, "sensor", "1", "", Vec::new(), csv.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::InvalidArgument(_)),
        "{error:?}"
    );

    let error = r
        .set_baseline(WS, "sensor", "1", "nope", features(), csv.clone())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no input 'nope'"), "{error}");

    let mut missing = features();
    missing[2] = "lux".into();
    let error = r
        .set_baseline(WS, "sensor", "1", "x", missing, csv.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::InvalidArgument(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("lux"), "{error}");

    let error = r
        .set_baseline(WS, "sensor", "9", "", features(), csv)
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::NotFound { .. }), "{error:?}");

    assert!(r.resolve(WS, "sensor", "1").unwrap().baseline.is_none());
}

#[tokio::test]
async fn a_stored_baseline_reads_back_bit_for_bit() {
    let f = fixture();
    let r = &f.registry;
    register(r, "sensor", 9).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = write_csv(dir.path(), &sensor_rows(3, 300));
    let returned = r
        .set_baseline(WS, "sensor", LATEST, "", features(), csv)
        .await
        .unwrap();
    assert_eq!(r.resolve(WS, "sensor", "1").unwrap(), returned);
}
