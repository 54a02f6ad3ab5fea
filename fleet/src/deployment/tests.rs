//! Deployments over an in-memory store, real registered models, a real signing key and a
//! publisher that keeps what it was asked to send.

use ed25519_dalek::Signature;
use prost::Message;
use shoal_proto::device::{ActiveModel, DesiredRefusal, Manifest, ReportedState, UpdateStatus};
use shoal_registry::ModelVersion;
use shoal_store::{ErrorCode, ServiceError, WorkspaceContents};

use super::*;
use crate::publish::Published;
use crate::testkit::{hub, mlp, sensor_rows, WS};

fn ids(devices: &[&str]) -> Vec<String> {
    devices.iter().map(|d| d.to_string()).collect()
}

/// Checks the signature over the domain prefix and the exact body bytes, and decodes them.
fn verified_body(signer: &ManifestSigner, state: &DesiredState) -> DesiredBody {
    let signature = Signature::from_slice(&state.signature).expect("a 64-byte signature");
    signer
        .verifying_key()
        .verify_strict(
            &shoal_proto::device::desired_state_signed_bytes(&state.body),
            &signature,
        )
        .expect("the hub's key signed these bytes");
    DesiredBody::decode(state.body.as_slice()).unwrap()
}

/// The manifest of a verified desired state.
fn verified_manifest(signer: &ManifestSigner, state: &DesiredState) -> Manifest {
    verified_body(signer, state).model.expect("a manifest")
}

fn assert_manifest_names(manifest: &Manifest, version: &ModelVersion) {
    assert_eq!(manifest.workspace, WS);
    assert_eq!(manifest.model, version.model);
    assert_eq!(manifest.version, version.version);
    assert_eq!(manifest.digest, version.digest);
    assert_eq!(manifest.size_bytes, version.size_bytes);
    let signature = manifest.signature.as_ref().expect("an IO signature");
    assert_eq!(signature.inputs[0].name, "x");
    assert_eq!(signature.outputs[0].name, "y");
}

#[tokio::test]
async fn creating_a_deployment_publishes_a_signed_desired_state_to_every_target() {
    let h = hub();
    let version = h.register("sensor", &mlp()).await;
    for id in ["cam-1", "cam-2", "cam-3"] {
        h.add_device(id);
    }
    let (deployments, publisher, signer) = h.deployments();

    // A device named twice is one target.
    let deployment = deployments
        .create(
            WS,
            "roll-1",
            "sensor",
            "",
            ids(&["cam-1", "cam-2", "cam-1"]),
        )
        .await
        .unwrap();
    assert_eq!(deployment.devices, ids(&["cam-1", "cam-2"]));
    assert_eq!(deployment.version, 1);
    assert_eq!(deployment.digest, version.digest);
    assert_eq!(deployment.model_reference, "latest");
    assert_eq!(deployment.strategy, Strategy::AllAtOnce);

    assert_eq!(publisher.published().len(), 2);
    for id in ["cam-1", "cam-2"] {
        let state = publisher.last_desired(WS, id).expect("published");
        let body = verified_body(&signer, &state);
        // Addressed to this device, in this workspace; revisions are hub-wide.
        assert_eq!((body.workspace.as_str(), body.device.as_str()), (WS, id));
        assert!(body.revision >= 1);
        assert_eq!(body.deployment, "roll-1");
        let manifest = verified_manifest(&signer, &state);
        assert_manifest_names(&manifest, &version);
        // What was published is what the device record says the hub wants.
        let device = h.fleet.get(WS, id).unwrap();
        assert_eq!(device.desired.as_ref().unwrap().digest, version.digest);
        assert_eq!(deployments.desired_state(&device).unwrap(), Some(state));
    }
    assert!(publisher.last_desired(WS, "cam-3").is_none());
    assert!(h.fleet.get(WS, "cam-3").unwrap().desired.is_none());

    // The deployment is stored.
    assert_eq!(
        deployments.get(WS, "roll-1").unwrap().devices,
        deployment.devices
    );
    assert_eq!(deployments.list(WS).unwrap().len(), 1);
}

#[tokio::test]
async fn a_manifest_signed_by_another_key_does_not_verify() {
    let h = hub();
    h.register("sensor", &mlp()).await;
    h.add_device("cam-1");
    let (deployments, publisher, _) = h.deployments();
    deployments
        .create(WS, "roll-1", "sensor", "1", ids(&["cam-1"]))
        .await
        .unwrap();
    let state = publisher.last_desired(WS, "cam-1").unwrap();
    let signed = shoal_proto::device::desired_state_signed_bytes(&state.body);
    let signature = Signature::from_slice(&state.signature).unwrap();

    let elsewhere = tempfile::tempdir().unwrap();
    let stranger = ManifestSigner::load_or_create(elsewhere.path()).unwrap();
    assert!(stranger
        .verifying_key()
        .verify_strict(&signed, &signature)
        .is_err());
    // Nor do tampered bytes under the right key.
    let signer = ManifestSigner::load_or_create(h.dir.path()).unwrap();
    let mut tampered = signed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(signer
        .verifying_key()
        .verify_strict(&tampered, &signature)
        .is_err());
}

#[tokio::test]
async fn the_revision_grows_with_each_deployment_to_the_same_device() {
    let h = hub();
    let v1 = h.register("sensor", &mlp()).await;
    let v2 = h
        .register("sensor", &shoal_model::build::Mlp::seeded(&[4, 3, 2], 10))
        .await;
    h.registry.set_alias(WS, "sensor", "production", 1).unwrap();
    h.add_device("cam-1");
    h.add_device("cam-2");
    let (deployments, publisher, signer) = h.deployments();

    let first = deployments
        .create(WS, "first", "sensor", "production", ids(&["cam-1"]))
        .await
        .unwrap();
    assert_eq!(first.model_reference, "production");
    assert_eq!(first.version, 1);
    let second = deployments
        .create(WS, "second", "sensor", "2", ids(&["cam-1", "cam-2"]))
        .await
        .unwrap();
    assert_eq!(second.version, 2);

    let cam1 = publisher.last_desired(WS, "cam-1").unwrap();
    let body = verified_body(&signer, &cam1);
    assert_eq!(body.revision, 2);
    assert_eq!(body.deployment, "second");
    assert_manifest_names(&verified_manifest(&signer, &cam1), &v2);
    // Revisions are hub-wide: cam-2's first one comes after cam-1's.
    let cam2 = publisher.last_desired(WS, "cam-2").unwrap();
    assert_eq!(verified_body(&signer, &cam2).revision, 3);

    // The revisions cam-1 saw, in order, and the version of each.
    let seen: Vec<(u64, u32)> = publisher
        .published()
        .into_iter()
        .filter_map(|p| match p {
            Published::Desired { device, state, .. } if device == "cam-1" => {
                let body = verified_body(&signer, &state);
                Some((body.revision, body.model.unwrap().version))
            }
            _ => None,
        })
        .collect();
    assert_eq!(seen, vec![(1, v1.version), (2, v2.version)]);
}

#[tokio::test]
async fn an_unknown_device_or_model_is_refused_and_nothing_is_published() {
    let h = hub();
    h.register("sensor", &mlp()).await;
    h.add_device("cam-1");
    let (deployments, publisher, _) = h.deployments();

    let error = deployments
        .create(WS, "roll", "sensor", "", ids(&["cam-1", "ghost"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, FleetError::NotFound { kind: "device", name } if name == "ghost"),
        "{error:?}"
    );

    let error = deployments
        .create(WS, "roll", "missing", "", ids(&["cam-1"]))
        .await
        .unwrap_err();
    assert_eq!(error.error_code(), ErrorCode::NotFound, "{error:?}");
    assert!(error.to_string().contains("missing"), "{error}");

    let error = deployments
        .create(WS, "roll", "sensor", "7", ids(&["cam-1"]))
        .await
        .unwrap_err();
    assert_eq!(error.error_code(), ErrorCode::NotFound, "{error:?}");

    let error = deployments
        .create(WS, "roll", "sensor", "", Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(error, FleetError::InvalidArgument(_)), "{error:?}");

    let error = deployments
        .create(WS, "bad name", "sensor", "", ids(&["cam-1"]))
        .await
        .unwrap_err();
    assert_eq!(error.error_code(), ErrorCode::InvalidArgument, "{error:?}");

    let error = deployments
        .create("nowhere", "roll", "sensor", "", ids(&["cam-1"]))
        .await
        .unwrap_err();
    assert_eq!(error.error_code(), ErrorCode::NotFound, "{error:?}");

    assert!(publisher.published().is_empty());
    assert!(deployments.list(WS).unwrap().is_empty());
    assert!(h.fleet.get(WS, "cam-1").unwrap().desired.is_none());
}

#[tokio::test]
async fn a_taken_deployment_name_is_refused_and_publishes_nothing_more() {
    let h = hub();
    h.register("sensor", &mlp()).await;
    h.add_device("cam-1");
    h.add_device("cam-2");
    let (deployments, publisher, _) = h.deployments();
    deployments
        .create(WS, "roll", "sensor", "", ids(&["cam-1"]))
        .await
        .unwrap();
    let error = deployments
        .create(WS, "roll", "sensor", "", ids(&["cam-2"]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, FleetError::AlreadyExists { .. }),
        "{error:?}"
    );
    assert_eq!(publisher.published().len(), 1);
    assert!(h.fleet.get(WS, "cam-2").unwrap().desired.is_none());
    assert_eq!(
        deployments.get(WS, "roll").unwrap().devices,
        ids(&["cam-1"])
    );
}

fn report(
    device: &str,
    active: Option<&str>,
    update: Option<(&str, UpdatePhase, &str)>,
) -> Vec<u8> {
    ReportedState {
        device_id: device.into(),
        active: active.map(|digest| ActiveModel {
            model: "sensor".into(),
            version: 1,
            digest: digest.into(),
        }),
        update: update.map(|(digest, phase, error)| UpdateStatus {
            digest: digest.into(),
            phase: phase as i32,
            error: error.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test]
async fn rollout_status_follows_what_each_device_reported() {
    let h = hub();
    let version = h.register("sensor", &mlp()).await;
    let digest = version.digest.as_str();
    let devices = [
        "pending", "fetching", "checking", "broken", "done", "running", "gone",
    ];
    for id in devices {
        h.add_device(id);
    }
    let (deployments, _, _) = h.deployments();
    let deployment = deployments
        .create(WS, "roll", "sensor", "", ids(&devices))
        .await
        .unwrap();
    let states = |d: &Deployment| -> Vec<(String, &'static str, String)> {
        deployments
            .rollout_status(d)
            .unwrap()
            .into_iter()
            .map(|r| (r.device, r.state, r.error))
            .collect()
    };
    assert!(states(&deployment).iter().all(|(_, s, _)| *s == "pending"));

    // An update of another model says nothing about this deployment.
    h.fleet
        .record_state(
            WS,
            "pending",
            &report(
                "pending",
                Some("old"),
                Some(("other", UpdatePhase::Downloading, "")),
            ),
        )
        .unwrap();
    h.fleet
        .record_state(
            WS,
            "fetching",
            &report(
                "fetching",
                None,
                Some((digest, UpdatePhase::Downloading, "")),
            ),
        )
        .unwrap();
    h.fleet
        .record_state(
            WS,
            "checking",
            &report("checking", None, Some((digest, UpdatePhase::Verifying, ""))),
        )
        .unwrap();
    h.fleet
        .record_state(
            WS,
            "broken",
            &report(
                "broken",
                Some("old"),
                Some((digest, UpdatePhase::Failed, "signature mismatch")),
            ),
        )
        .unwrap();
    h.fleet
        .record_state(
            WS,
            "done",
            &report("done", None, Some((digest, UpdatePhase::Active, ""))),
        )
        .unwrap();
    h.fleet
        .record_state(WS, "running", &report("running", Some(digest), None))
        .unwrap();
    h.fleet.remove(WS, "gone").unwrap();
    // A device that refused this very revision says why; one refusing an older (replayed)
    // revision says nothing about this deployment.
    let revision = h
        .fleet
        .get(WS, "pending")
        .unwrap()
        .desired
        .unwrap()
        .revision;
    let mut refusing = ReportedState::decode(
        report(
            "pending",
            Some("old"),
            Some(("other", UpdatePhase::Downloading, "")),
        )
        .as_slice(),
    )
    .unwrap();
    refusing.refused = Some(DesiredRefusal {
        revision: revision - 1,
        reason: "revision is older".into(),
        at_ms: 1,
    });
    h.fleet
        .record_state(WS, "pending", &refusing.encode_to_vec())
        .unwrap();

    let s = |id: &str, state: &'static str, error: &str| (id.to_string(), state, error.to_string());
    assert_eq!(
        states(&deployment),
        vec![
            s("pending", "pending", ""),
            s("fetching", "downloading", ""),
            s("checking", "verifying", ""),
            s("broken", "failed", "signature mismatch"),
            s("done", "active", ""),
            s("running", "active", ""),
            s("gone", "failed", "device was removed"),
        ]
    );

    refusing.refused = Some(DesiredRefusal {
        revision,
        reason: "addressed to device 'other'".into(),
        at_ms: 2,
    });
    h.fleet
        .record_state(WS, "pending", &refusing.encode_to_vec())
        .unwrap();
    let pending = states(&deployment).remove(0);
    assert_eq!(
        pending,
        s(
            "pending",
            "failed",
            "the device refused the desired state: addressed to device 'other'"
        )
    );

    // A later deployment to a device supersedes this one there.
    deployments
        .create(WS, "next", "sensor", "", ids(&["running"]))
        .await
        .unwrap();
    let running = states(&deployment)
        .into_iter()
        .find(|(id, _, _)| id == "running")
        .unwrap();
    assert_eq!(running.1, "superseded");
}

#[tokio::test]
async fn refresh_version_republishes_the_new_manifest_to_devices_running_it() {
    let h = hub();
    let v1 = h.register("sensor", &mlp()).await;
    h.register("sensor", &shoal_model::build::Mlp::seeded(&[4, 3, 2], 10))
        .await;
    for id in ["cam-1", "cam-2", "cam-3", "idle"] {
        h.add_device(id);
    }
    let (deployments, publisher, signer) = h.deployments();
    deployments
        .create(WS, "v1", "sensor", "1", ids(&["cam-1", "cam-2"]))
        .await
        .unwrap();
    deployments
        .create(WS, "v2", "sensor", "2", ids(&["cam-3"]))
        .await
        .unwrap();
    let before = publisher.published().len();
    let old = verified_manifest(&signer, &publisher.last_desired(WS, "cam-1").unwrap());
    assert!(old.baseline.is_none());

    // A baseline set after the deployment changes the manifest of v1.
    h.set_baseline("sensor", "1", &sensor_rows(1, 200, 0.0))
        .await;
    let told = deployments.refresh_version(WS, "sensor", 1).await.unwrap();
    assert_eq!(told, 2);
    let published = publisher.published();
    assert_eq!(published.len(), before + 2);
    for id in ["cam-1", "cam-2"] {
        let state = publisher.last_desired(WS, id).unwrap();
        // A new revision of the same deployment: the same desired model, with a new manifest
        // that refers to the baseline blob (never a changed manifest under an old revision).
        let body = verified_body(&signer, &state);
        assert!(body.revision > 3, "{}", body.revision);
        assert_eq!(body.deployment, "v1");
        let manifest = verified_manifest(&signer, &state);
        assert_manifest_names(&manifest, &v1);
        let baseline = manifest.baseline.expect("a baseline reference");
        let stored = h
            .registry
            .resolve(WS, "sensor", "1")
            .unwrap()
            .baseline
            .unwrap();
        assert_eq!(baseline.digest, stored.digest);
        let blob = h.registry.artifacts().read(&baseline.digest).await.unwrap();
        assert_eq!(blob.len() as u64, baseline.size_bytes);
        let decoded = shoal_proto::device::DriftBaseline::decode(blob.as_slice()).unwrap();
        assert_eq!(decoded.rows, 200);
        assert_eq!(decoded.features.len(), 4);
        assert_eq!(decoded.outputs.len(), 1);
        // The device may now fetch the baseline blob too.
        let desired = h.fleet.get(WS, id).unwrap().desired.unwrap();
        assert!(desired.references_blob(&baseline.digest));
    }
    // cam-3 runs v2 and idle runs nothing: neither was told.
    assert!(published[before..].iter().all(|p| matches!(
        p,
        Published::Desired { device, .. } if device == "cam-1" || device == "cam-2"
    )));
    assert_eq!(
        deployments.refresh_version(WS, "sensor", 3).await.unwrap(),
        0
    );
    assert_eq!(
        deployments.refresh_version(WS, "other", 1).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn republish_all_sends_every_desired_state_again() {
    let h = hub();
    h.register("sensor", &mlp()).await;
    for id in ["cam-1", "cam-2", "idle"] {
        h.add_device(id);
    }
    let (deployments, first, _) = h.deployments();
    deployments
        .create(WS, "roll", "sensor", "", ids(&["cam-1", "cam-2"]))
        .await
        .unwrap();

    // A hub restart: new deployments, a new (empty) publisher, the same key.
    let (restarted, publisher, _) = h.deployments();
    restarted.republish_all().await;
    let mut told: Vec<String> = publisher
        .published()
        .into_iter()
        .map(|p| match p {
            Published::Desired { device, state, .. } => {
                // Byte for byte what was published before: agents take it as the revision
                // they already hold, not as a replay.
                assert_eq!(Some(state), first.last_desired(WS, &device));
                device
            }
            other => panic!("only desired states: {other:?}"),
        })
        .collect();
    told.sort();
    assert_eq!(told, ids(&["cam-1", "cam-2"]));
}

#[tokio::test]
async fn workspace_contents_count_deployments_and_delete_them() {
    let h = hub();
    h.register("sensor", &mlp()).await;
    h.add_device("cam-1");
    let (deployments, _, _) = h.deployments();
    assert!(deployments.held(WS).unwrap().is_empty());
    for name in ["a", "b"] {
        deployments
            .create(WS, name, "sensor", "", ids(&["cam-1"]))
            .await
            .unwrap();
    }
    assert_eq!(
        deployments.held(WS).unwrap(),
        vec!["2 deployments".to_string()]
    );
    deployments.delete_all(WS).unwrap();
    assert!(deployments.held(WS).unwrap().is_empty());
    assert!(matches!(
        deployments.get(WS, "a"),
        Err(FleetError::NotFound { .. })
    ));
}

#[tokio::test]
async fn removing_a_device_clears_its_retained_topics_and_its_login() {
    let h = hub();
    let enrollment = h.fleet.add(WS, "cam-1", Default::default()).unwrap();
    let (deployments, publisher, _) = h.deployments();
    deployments.remove_device(WS, "cam-1").await.unwrap();
    assert_eq!(
        publisher.published(),
        vec![Published::Cleared {
            workspace: WS.into(),
            device: "cam-1".into(),
        }]
    );
    assert!(!h
        .fleet
        .auth()
        .check(&format!("cam-1@{WS}"), &enrollment.password));
    let again = deployments.remove_device(WS, "cam-1").await.unwrap_err();
    assert_eq!(again.error_code(), ErrorCode::NotFound);
    assert_eq!(
        publisher.published().len(),
        1,
        "nothing cleared for an unknown device"
    );
}
