//! One agent against a real broker and a scripted hub: updates, failures, resume, rollback,
//! restarts without a broker, and the local API's answers.

mod support;

use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::json;
use shoal_model::build::Mlp;
use shoal_proto::device::UpdatePhase;
use support::*;

fn linear_model(seed: f32) -> (Mlp, Vec<u8>) {
    let weights = (0..8).map(|i| seed + i as f32 * 0.5).collect();
    let mlp = Mlp::linear(4, 2, weights, vec![0.25, -0.5]);
    let bytes = mlp.to_onnx();
    (mlp, bytes)
}

async fn infer_row(agent: &TestAgent, row: [f32; 4]) -> (u16, serde_json::Value) {
    let body = json!({"inputs": {"x": {"shape": [1, 4], "data": row}}});
    agent.post("/v1/infer", body.to_string()).await
}

fn assert_outputs(body: &serde_json::Value, mlp: &Mlp, row: [f32; 4]) {
    let expected = mlp.forward(&row);
    let data = body["outputs"]["y"]["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(body["outputs"]["y"]["shape"], json!([1, 2]), "{body}");
    assert_eq!(body["outputs"]["y"]["dtype"], "f32", "{body}");
    assert_eq!(data.len(), expected.len(), "{body}");
    for (got, want) in data.iter().zip(expected) {
        assert!((got.as_f64().unwrap() as f32 - want).abs() < 1e-4, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_a_signed_model_and_answers_bad_requests_clearly() {
    init_tracing();
    let port = start_broker().await;
    let hub = FakeHub::start(port, "t1/shoal/v1").await;
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(config_file(
        port,
        &hub.prefix,
        &hub.public_key_hex(),
        dir.path(),
    ))
    .await;

    let (status, body) = agent.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body["model"], serde_json::Value::Null);
    let (status, body) = agent.get("/v1/model").await;
    assert_eq!(
        (status, &body["digest"], &body["update"]),
        (200, &serde_json::Value::Null, &serde_json::Value::Null)
    );
    let (status, body) = infer_row(&agent, [1.0, 2.0, 3.0, 4.0]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("no model is active yet"))
    );
    hub.wait_for_state("online", |s| s.boot_epoch == agent.boot_epoch)
        .await;
    assert!(hub.statuses.borrow().as_ref().is_some_and(|s| s.online));

    let (mlp, bytes) = linear_model(0.1);
    let digest = hub.add_blob(&bytes);
    hub.desire(1, Some(hub.sign(&hub.key, "iris", 1, &bytes)))
        .await;
    let state = hub.wait_for_phase(1, UpdatePhase::Active).await;
    assert_eq!(state.active.as_ref().unwrap().digest, digest);
    assert_eq!(state.health, "ok");

    let row = [1.0, -2.0, 3.5, 0.25];
    let (status, body) = infer_row(&agent, row).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["model"].as_str(), body["version"].as_u64()),
        (Some("iris"), Some(1))
    );
    assert_outputs(&body, &mlp, row);

    let (status, body) = agent.get("/v1/model").await;
    assert_eq!(status, 200);
    assert_eq!(body["digest"], digest.as_str());
    assert_eq!(body["signature"]["inputs"][0]["name"], "x");
    assert_eq!(body["signature"]["inputs"][0]["shape"], json!(["N", 4]));
    assert_eq!(body["update"]["phase"], "active");
    let (_, health) = agent.get("/healthz").await;
    assert_eq!(health["mqtt_connected"], true);
    assert_eq!(health["model"]["model"], "iris");

    let cases = [
        ("{\"inputs\":", "malformed JSON: EOF while parsing"),
        (
            "{\"inputs\":{},\"extra\":1}",
            "invalid request: unknown field `extra`",
        ),
        (
            "{\"inputs\":{\"z\":{\"shape\":[1,4],\"data\":[1,2,3,4]}}}",
            "unknown input 'z'",
        ),
        (
            "{\"inputs\":{\"x\":{\"shape\":[1,5],\"data\":[1,2,3,4,5]}}}",
            "input 'x': the model takes shape [N,4], got [1, 5]",
        ),
        (
            "{\"inputs\":{\"x\":{\"shape\":[1,4],\"data\":[1,2]}}}",
            "input 'x': shape [1, 4] holds 4 values, got 2",
        ),
        (
            "{\"inputs\":{\"x\":{\"shape\":[1,4],\"dtype\":\"i64\",\"data\":[1,2,3,4]}}}",
            "input 'x': the model takes f32, got dtype i64",
        ),
        (
            "{\"inputs\":{\"x\":{\"shape\":[4611686018427387904,4],\"data\":[]}}}",
            "input 'x': shape [4611686018427387904, 4] is too large",
        ),
        (
            "{\"inputs\":{\"x\":{\"shape\":[1,4],\"data\":[1,\"a\",3,4]}}}",
            "input 'x': element 1 is \"a\", which is not a f32 value",
        ),
        ("{\"inputs\":{}}", "missing input 'x' (f32 [N,4])"),
    ];
    for (body, message) in cases {
        let (status, answer) = agent.post("/v1/infer", body).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with(message),
            "{body} → {answer}"
        );
    }
    let huge = vec![b' '; 17 * 1024 * 1024];
    let (status, answer) = agent.post("/v1/infer", huge).await;
    assert_eq!(status, 413, "{answer}");
    let (status, _) = agent.get("/nope").await;
    assert_eq!(status, 404);
    // Still serving after all that.
    assert_eq!(infer_row(&agent, row).await.0, 200);

    agent.shutdown().await;
    let mut statuses = hub.statuses.clone();
    tokio::time::timeout(
        WAIT,
        statuses.wait_for(|s| s.as_ref().is_some_and(|s| !s.online)),
    )
    .await
    .expect("offline status after shutdown")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_in_windows_resumes_recovers_lost_chunks_and_rolls_back() {
    init_tracing();
    let port = start_broker().await;
    let hub = FakeHub::start(port, "t2/shoal/v1").await;
    let dir = tempfile::tempdir().unwrap();
    let mut file = config_file(port, &hub.prefix, &hub.public_key_hex(), dir.path());
    file.agent.download_window_bytes = Some(64 * 1024);
    let agent = TestAgent::start(file).await;

    let (_, small) = linear_model(0.3);
    let small_digest = hub.add_blob(&small);
    hub.desire(1, Some(hub.sign(&hub.key, "iris", 1, &small)))
        .await;
    hub.wait_for_phase(1, UpdatePhase::Active).await;

    // A bigger model, a third of which a killed agent already wrote to disk.
    let big_mlp = Mlp::seeded(&[64, 256, 256, 2], 9);
    let big = big_mlp.to_onnx();
    assert!(big.len() > 300_000, "{}", big.len());
    let big_digest = hub.add_blob(&big);
    let already = 100_000u64;
    std::fs::write(
        dir.path().join(format!("downloads/{big_digest}.part")),
        &big[..already as usize],
    )
    .unwrap();
    // The chunk at the start of the third window is lost once: the timeout asks again.
    let lost = already + 2 * 64 * 1024;
    hub.faults.lock().unwrap().drop_once.insert(lost);

    hub.desire(2, Some(hub.sign(&hub.key, "big", 1, &big)))
        .await;
    let state = hub.wait_for_phase(2, UpdatePhase::Active).await;
    let update = state.update.unwrap();
    assert_eq!(update.resumed_from, already);
    assert_eq!(
        (update.received_bytes, update.total_bytes),
        (big.len() as u64, big.len() as u64)
    );
    assert_eq!(state.active.unwrap().digest, big_digest);
    assert_eq!(state.previous.unwrap().digest, small_digest);
    let requests = hub.requests_for(&big_digest);
    assert_eq!(requests[0].offset, already, "{requests:?}");
    assert!(
        requests.iter().all(|r| r.length <= 64 * 1024),
        "{requests:?}"
    );
    assert!(
        requests.iter().filter(|r| r.offset == lost).count() >= 2,
        "lost chunk asked again: {requests:?}"
    );
    assert!(!dir
        .path()
        .join(format!("downloads/{big_digest}.part"))
        .exists());

    let mut models: Vec<String> = std::fs::read_dir(dir.path().join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    models.sort();
    let mut expected = vec![format!("{small_digest}.onnx"), format!("{big_digest}.onnx")];
    expected.sort();
    assert_eq!(models, expected);
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state.json")).unwrap()).unwrap();
    assert_eq!(stored["active"]["digest"], big_digest.as_str());
    assert_eq!(stored["previous"]["digest"], small_digest.as_str());

    let (_, view) = agent.get("/v1/model").await;
    assert_eq!(view["digest"], big_digest.as_str());
    assert_eq!(view["previous"]["digest"], small_digest.as_str());
    assert_eq!(view["update"]["resumed_from"], already);
    let row: Vec<f32> = (0..64).map(|i| i as f32 / 10.0).collect();
    let body = json!({"inputs": {"x": {"shape": [1, 64], "data": row}}});
    let (status, answer) = agent.post("/v1/infer", body.to_string()).await;
    assert_eq!(status, 200, "{answer}");

    // Rolling back to the previous model needs no download.
    let asked_before = hub.requests_for(&small_digest).len();
    hub.desire(3, Some(hub.sign(&hub.key, "iris", 1, &small)))
        .await;
    let state = hub.wait_for_phase(3, UpdatePhase::Active).await;
    assert_eq!(state.active.unwrap().digest, small_digest);
    assert_eq!(state.previous.unwrap().digest, big_digest);
    assert_eq!(hub.requests_for(&small_digest).len(), asked_before);

    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refuses_bad_manifests_and_blobs_and_keeps_serving() {
    init_tracing();
    let port = start_broker().await;
    let hub = FakeHub::start(port, "t3/shoal/v1").await;
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(config_file(
        port,
        &hub.prefix,
        &hub.public_key_hex(),
        dir.path(),
    ))
    .await;

    let (mlp, good) = linear_model(0.7);
    let good_digest = hub.add_blob(&good);
    hub.desire(1, Some(hub.sign(&hub.key, "iris", 1, &good)))
        .await;
    hub.wait_for_phase(1, UpdatePhase::Active).await;
    let row = [0.5, 0.5, -1.0, 2.0];

    let (_, other) = linear_model(1.9);
    hub.add_blob(&other);
    let stranger = SigningKey::from_bytes(&[1u8; 32]);
    hub.desire(2, Some(hub.sign(&stranger, "iris", 2, &other)))
        .await;
    let state = hub
        .wait_for_state("refusing a desired state signed by another key", |s| {
            s.refused.as_ref().is_some_and(|r| r.revision == 2)
        })
        .await;
    assert_eq!(
        state.refused.unwrap().reason,
        "desired state signature does not verify against the hub key"
    );

    hub.faults.lock().unwrap().corrupt = true;
    hub.desire(3, Some(hub.sign(&hub.key, "iris", 2, &other)))
        .await;
    let state = hub.wait_for_phase(3, UpdatePhase::Failed).await;
    let error = state.update.unwrap().error;
    assert!(
        error.starts_with(&format!(
            "digest mismatch: expected {}, got ",
            digest(&other)
        )),
        "{error}"
    );
    assert!(!dir
        .path()
        .join(format!("downloads/{}.part", digest(&other)))
        .exists());
    hub.faults.lock().unwrap().corrupt = false;

    let (_, missing) = linear_model(2.5);
    hub.desire(4, Some(hub.sign(&hub.key, "iris", 3, &missing)))
        .await;
    let state = hub.wait_for_phase(4, UpdatePhase::Failed).await;
    assert_eq!(
        state.update.unwrap().error,
        format!("blob {} not found", digest(&missing))
    );

    let garbage = b"unloadable, but signed and with the right digest".to_vec();
    hub.add_blob(&garbage);
    hub.desire(5, Some(hub.sign(&hub.key, "junk", 1, &garbage)))
        .await;
    let state = hub.wait_for_phase(5, UpdatePhase::Failed).await;
    assert!(
        state.update.unwrap().error.starts_with("not an ONNX model"),
        "{:?}",
        hub.states.borrow()
    );

    hub.publish_desired(vec![0xFF, 0xFF, 0xFF]).await;
    let state = hub
        .wait_for_state("with a malformed desired state", |s| {
            s.refused
                .as_ref()
                .is_some_and(|r| r.reason.starts_with("malformed desired state: "))
        })
        .await;
    assert_eq!(state.active.unwrap().digest, good_digest);

    let (status, body) = infer_row(&agent, row).await;
    assert_eq!(status, 200, "{body}");
    assert_outputs(&body, &mlp, row);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boots_into_the_last_good_model_without_a_broker() {
    init_tracing();
    let port = start_broker().await;
    let hub = FakeHub::start(port, "t4/shoal/v1").await;
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(port, &hub.prefix, &hub.public_key_hex(), dir.path());
    let agent = TestAgent::start(file.clone()).await;
    let (mlp, bytes) = linear_model(-0.4);
    hub.add_blob(&bytes);
    hub.desire(1, Some(hub.sign(&hub.key, "iris", 4, &bytes)))
        .await;
    hub.wait_for_phase(1, UpdatePhase::Active).await;
    let first_epoch = agent.boot_epoch;
    agent.shutdown().await;

    // A port nothing listens on, held for the rest of the test so that nothing can.
    let nowhere = reserve_port();
    let mut offline = file.clone();
    offline.hub.mqtt_url = format!("mqtt://127.0.0.1:{}", nowhere.port);
    let agent = TestAgent::start(offline.clone()).await;
    assert_eq!(agent.boot_epoch, first_epoch + 1);
    let row = [3.0, 1.0, 4.0, 1.5];
    let (status, body) = infer_row(&agent, row).await;
    assert_eq!(status, 200, "{body}");
    assert_outputs(&body, &mlp, row);
    let (_, health) = agent.get("/healthz").await;
    assert_eq!(
        (
            health["mqtt_connected"].as_bool(),
            health["health"].as_str()
        ),
        (Some(false), Some("ok"))
    );
    // Shutdown does not hang on a broker that is not there.
    tokio::time::timeout(Duration::from_secs(8), agent.shutdown())
        .await
        .expect("quick shutdown");

    std::fs::write(dir.path().join("state.json"), b"{ not json").unwrap();
    let agent = TestAgent::start(offline).await;
    let (status, _) = infer_row(&agent, row).await;
    assert_eq!(status, 503);
    let (_, health) = agent.get("/healthz").await;
    assert!(
        health["health"]
            .as_str()
            .unwrap()
            .starts_with("state.json was unreadable"),
        "{health}"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnects_resubscribes_and_resumes_under_a_rate_limit() {
    init_tracing();
    let port = start_broker().await;
    let hub = FakeHub::start(port, "t5/shoal/v1").await;
    let proxy = Proxy::start(port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut file = config_file(proxy.port, &hub.prefix, &hub.public_key_hex(), dir.path());
    let rate = 400_000u64;
    file.agent.download_window_bytes = Some(32 * 1024);
    file.agent.download_rate_limit_bytes_per_sec = Some(rate);
    let agent = TestAgent::start(file).await;
    hub.wait_for_state("online", |s| s.boot_epoch == agent.boot_epoch)
        .await;

    let big = Mlp::seeded(&[64, 256, 256, 2], 3).to_onnx();
    let big_digest = hub.add_blob(&big);
    hub.desire(1, Some(hub.sign(&hub.key, "big", 1, &big)))
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.requests_for(&big_digest).len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the download did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.cut(Duration::from_millis(300)).await;

    let state = hub.wait_for_phase(1, UpdatePhase::Active).await;
    let update = state.update.unwrap();
    assert!(update.resumed_from > 0, "{update:?}");
    assert_eq!(state.active.unwrap().digest, big_digest);
    // The pacing itself is checked without a clock in download.rs's unit tests: a test
    // never asserts wall-clock time.
    let mut statuses = hub.statuses.clone();
    tokio::time::timeout(
        WAIT,
        statuses.wait_for(|s| s.as_ref().is_some_and(|s| s.online)),
    )
    .await
    .expect("online again after reconnecting")
    .unwrap();
    agent.shutdown().await;
}
