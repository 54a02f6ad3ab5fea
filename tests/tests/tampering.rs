//! A model whose bytes were altered, and a manifest signed by someone other than the hub, are
//! both refused; the device keeps serving the model it had.

use prost::Message;
use rumqttc::QoS;
use shoal_integration_tests::{infer_body, wait_for, TestAgent, TestHub};
use shoal_model::build::Mlp;
use shoal_proto::device::{DesiredBody, DesiredState, Manifest, UpdatePhase};
use shoal_proto::topics::DeviceTopics;

async fn wait_for_failed_update(hub: &TestHub, id: &str, digest: &str) -> String {
    wait_for(&format!("{id} to refuse {digest}"), || async {
        let update = hub.device(id).await.reported.and_then(|r| r.update)?;
        (update.digest == digest && update.phase == UpdatePhase::Failed as i32)
            .then_some(update.error)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_model_bytes_are_refused_and_the_old_model_serves() {
    let hub = TestHub::start().await;
    let dirs = tempfile::tempdir().unwrap();
    let v1 = hub
        .register("occupancy", &Mlp::seeded(&[4, 8, 2], 1).to_onnx())
        .await
        .unwrap();
    let agent = TestAgent::start(hub.add_device("cam-01").await, &dirs.path().join("cam-01")).await;
    hub.deploy("first", "occupancy", "1", &["cam-01"]).await;
    agent.wait_for_model(&v1.digest).await;

    // Version 2 is registered, then one byte of its stored blob changes: every chunk the
    // device receives after that offset differs from what the hub signed.
    let v2 = hub
        .register("occupancy", &Mlp::seeded(&[4, 64, 2], 2).to_onnx())
        .await
        .unwrap();
    let blob = hub
        .data_dir
        .join("artifacts/sha256")
        .join(&v2.digest[..2])
        .join(&v2.digest);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();

    hub.deploy("second", "occupancy", "2", &["cam-01"]).await;
    let error = wait_for_failed_update(&hub, "cam-01", &v2.digest).await;
    assert!(error.contains("digest mismatch"), "{error}");
    let (status, model) = agent.get("/v1/model").await;
    assert_eq!(status, 200);
    assert_eq!(
        model["digest"],
        v1.digest.as_str(),
        "the old model still serves"
    );
    let (status, _) = agent.infer(&infer_body(&[[1.0, 2.0, 3.0, 4.0]])).await;
    assert_eq!(status, 200);
    agent.stop().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_signed_by_another_key_is_refused() {
    let hub = TestHub::start().await;
    let dirs = tempfile::tempdir().unwrap();
    let v1 = hub
        .register("occupancy", &Mlp::seeded(&[4, 8, 2], 1).to_onnx())
        .await
        .unwrap();
    let agent = TestAgent::start(hub.add_device("cam-01").await, &dirs.path().join("cam-01")).await;
    hub.deploy("first", "occupancy", "1", &["cam-01"]).await;
    agent.wait_for_model(&v1.digest).await;

    // Someone who can write cam-01's desired topic publishes a desired state whose manifest
    // is signed with a key of their own. Devices cannot (the broker refuses them:
    // broker_rules.rs); a leaked hub login or a compromised broker could, and the agent's
    // signature check is what stands then.
    let (client, mut eventloop) =
        hub.mqtt_client_as_hub(&shoal_integration_tests::unique("mallory-"));
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });

    let forged = DesiredBody {
        workspace: "default".into(),
        device: "cam-01".into(),
        deployment: "forged".into(),
        revision: 1000,
        model: Some(Manifest {
            workspace: "default".into(),
            model: "occupancy".into(),
            version: 99,
            digest: "ab".repeat(32),
            size_bytes: 1234,
            ..Default::default()
        }),
    }
    .encode_to_vec();
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let signature = key
        .sign(&shoal_proto::device::desired_state_signed_bytes(&forged))
        .to_bytes()
        .to_vec();
    let desired = DesiredState {
        body: forged,
        signature,
    };
    let topic = DeviceTopics::new(&hub.topic_prefix, "default", "cam-01").desired();
    client
        .publish(topic, QoS::AtLeastOnce, false, desired.encode_to_vec())
        .await
        .unwrap();

    let error = wait_for("cam-01 to refuse the forged desired state", || async {
        let refused = hub
            .device("cam-01")
            .await
            .reported
            .and_then(|r| r.refused)?;
        (refused.revision == 1000).then_some(refused.reason)
    })
    .await;
    assert!(error.contains("signature"), "{error}");
    let (_, model) = agent.get("/v1/model").await;
    assert_eq!(model["digest"], v1.digest.as_str());
    let (status, _) = agent.infer(&infer_body(&[[1.0, 2.0, 3.0, 4.0]])).await;
    assert_eq!(status, 200);
    agent.stop().await;
    hub.shutdown().await;
}
