//! Telemetry that survives the edge: one agent against a real broker and a scripted hub that
//! receives windows and acknowledges them (or not). Windows count exactly what was served,
//! stay buffered until acknowledged, survive a cut link and a restart, and a full buffer
//! drops the oldest and says exactly how much it dropped.

mod support;

use std::collections::BTreeMap;

use prost::Message;
use serde_json::json;
use shoal_drift::wire::{baseline_to_wire, FeatureBinding};
use shoal_drift::{
    Baseline, ClassBaseline, FeatureBaseline, FeatureKind, NumericBaseline, OutputBaseline,
    OutputKind,
};
use shoal_model::build::Mlp;
use shoal_proto::device::{output_window, BlobRef, TelemetryWindow, UpdatePhase};
use support::*;

const FEATURES: usize = 4;

fn linear_model(seed: f32) -> Vec<u8> {
    let weights = (0..8).map(|i| seed + i as f32 * 0.5).collect();
    Mlp::linear(4, 2, weights, vec![0.25, -0.5]).to_onnx()
}

/// A manifest whose baseline bins the 4 columns of `x` at the deciles of 0.0..9.9 and counts
/// the argmax of `y` over 2 classes.
fn with_baseline(hub: &FakeHub, name: &str, version: u32, bytes: &[u8]) -> ToSign {
    let values: Vec<f64> = (0..100).map(|v| v as f64 / 10.0).collect();
    let baseline = Baseline {
        rows: 100,
        features: (0..FEATURES)
            .map(|i| FeatureBaseline {
                name: format!("f{i}"),
                kind: FeatureKind::Numeric(NumericBaseline::from_values(values.clone(), 0)),
            })
            .collect(),
        outputs: vec![OutputBaseline {
            name: "y".into(),
            kind: OutputKind::Classes(ClassBaseline::from_predictions(2, [0, 1, 1])),
        }],
    };
    let bindings: Vec<FeatureBinding> = (0..FEATURES as u32)
        .map(|column| FeatureBinding {
            input: "x".into(),
            column,
        })
        .collect();
    // The baseline travels as a blob the manifest refers to, as from a real hub.
    let blob = baseline_to_wire(&baseline, &bindings).encode_to_vec();
    let mut manifest = manifest(name, version, bytes);
    manifest.baseline = Some(BlobRef {
        digest: hub.add_blob(&blob),
        size_bytes: blob.len() as u64,
    });
    hub.sign_manifest(&hub.key, &manifest)
}

/// Runs one request of `rows` rows; returns the status.
async fn infer_rows(agent: &TestAgent, rows: usize) -> u16 {
    let data: Vec<f32> = (0..rows * 4).map(|i| (i % 13) as f32 * 0.8).collect();
    let body = json!({"inputs": {"x": {"shape": [rows, 4], "data": data}}});
    agent.post("/v1/infer", body.to_string()).await.0
}

fn inferences(windows: &BTreeMap<(u64, u64), TelemetryWindow>) -> u64 {
    windows.values().map(|w| w.inferences).sum()
}

fn errors(windows: &BTreeMap<(u64, u64), TelemetryWindow>, kind: &str) -> u64 {
    windows
        .values()
        .map(|w| w.errors.get(kind).copied().unwrap_or(0))
        .sum()
}

/// Deploys a model and waits until it is active.
async fn deploy(hub: &FakeHub, revision: u64, signed: ToSign, bytes: &[u8]) {
    hub.add_blob(bytes);
    hub.desire(revision, Some(signed)).await;
    hub.wait_for_phase(revision, UpdatePhase::Active).await;
}

async fn wait_for_empty_buffer(agent: &TestAgent) {
    wait_until("an empty telemetry buffer", || async {
        let telemetry = agent.telemetry().await;
        telemetry["buffered_records"] == 0 && telemetry["in_flight"] == 0
    })
    .await;
}

async fn wait_for_mqtt(agent: &TestAgent, connected: bool) {
    wait_until(&format!("mqtt_connected = {connected}"), || async {
        agent.get("/healthz").await.1["mqtt_connected"] == connected
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn windows_count_what_was_served_and_leave_the_buffer_once_acknowledged() {
    init_tracing();
    let port = start_broker().await;
    let hub = FakeHub::start(port, "tel1/shoal/v1").await;
    let dir = tempfile::tempdir().unwrap();
    let mut file = config_file(port, &hub.prefix, &hub.public_key_hex(), dir.path());
    file.agent.telemetry_window_ms = Some(200);
    let agent = TestAgent::start(file).await;

    // Before any model: 503s are shown locally, no window carries them.
    assert_eq!(infer_rows(&agent, 1).await, 503);
    let bytes = linear_model(0.1);
    let digest = hub.add_blob(&bytes);
    deploy(&hub, 1, with_baseline(&hub, "iris", 1, &bytes), &bytes).await;
    let (_, model) = agent.get("/v1/model").await;
    assert_eq!(model["health"], "ok", "{model}");
    assert_eq!(model["telemetry"]["enabled"], true, "{model}");
    assert_eq!(model["telemetry"]["errors_without_model"], 1, "{model}");

    for rows in [3, 3, 3, 3, 3] {
        assert_eq!(infer_rows(&agent, rows).await, 200);
    }
    assert_eq!(agent.post("/v1/infer", "{\"inputs\":").await.0, 400);
    let wrong = json!({"inputs": {"x": {"shape": [1, 5], "data": [1, 2, 3, 4, 5]}}});
    assert_eq!(agent.post("/v1/infer", wrong.to_string()).await.0, 400);

    let windows = hub
        .wait_for_windows("with 15 inferences and 2 bad inputs", |w| {
            inferences(w) == 15 && errors(w, "bad_input") == 2
        })
        .await;
    let mut latency_samples = 0;
    for window in windows.values() {
        assert_eq!(window.device_id, DEVICE);
        assert_eq!(window.boot_epoch, agent.boot_epoch);
        assert!(window.start_ms <= window.end_ms, "{window:?}");
        let model = window.model.as_ref().unwrap();
        assert_eq!((model.model.as_str(), model.version), ("iris", 1));
        assert_eq!(model.digest, digest);
        assert_eq!(window.features.len(), FEATURES, "{window:?}");
        for feature in &window.features {
            let Some(shoal_proto::device::feature_window::Kind::Numeric(counts)) = &feature.kind
            else {
                panic!("{feature:?}")
            };
            assert_eq!(counts.bins.len(), 10);
            assert_eq!(counts.bins.iter().sum::<u64>(), window.inferences);
            assert_eq!(counts.moments.as_ref().unwrap().count, window.inferences);
        }
        let Some(output_window::Kind::Classes(classes)) = &window.outputs[0].kind else {
            panic!("{window:?}")
        };
        assert_eq!(classes.counts.len(), 3);
        assert_eq!(classes.counts.iter().sum::<u64>(), window.inferences);
        latency_samples += window.latency.as_ref().unwrap().counts.iter().sum::<u64>();
        assert_eq!(window.latency.as_ref().unwrap().counts.len(), 32);
        assert_eq!(window.dropped, Some(Default::default()));
        let health = window.health.as_ref().unwrap();
        if cfg!(target_os = "linux") {
            assert!(
                health.rss_bytes > 0 && health.disk_free_bytes > 0,
                "{health:?}"
            );
        }
    }
    assert_eq!(
        latency_samples, 5,
        "one latency sample per answered request"
    );
    assert_eq!(errors(&windows, "no_model"), 0);
    wait_for_empty_buffer(&agent).await;
    let telemetry = agent.telemetry().await;
    let last_seq = windows.keys().map(|(_, seq)| *seq).max().unwrap();
    assert!(
        telemetry["last_closed_seq"].as_u64().unwrap() >= last_seq,
        "{telemetry}"
    );
    assert_eq!(telemetry["dropped"]["cap_records"], 0);

    // A switch closes the window; the next model's windows are its own.
    let plain = linear_model(0.9);
    deploy(&hub, 2, hub.sign(&hub.key, "iris", 2, &plain), &plain).await;
    assert_eq!(infer_rows(&agent, 4).await, 200);
    let windows = hub
        .wait_for_windows("of version 2 with 4 inferences", |w| {
            w.values()
                .filter(|w| w.model.as_ref().unwrap().version == 2)
                .map(|w| w.inferences)
                .sum::<u64>()
                == 4
        })
        .await;
    for window in windows.values() {
        if window.model.as_ref().unwrap().version == 2 {
            assert!(window.features.is_empty() && window.outputs.is_empty());
        }
    }
    let first_model: u64 = windows
        .values()
        .filter(|w| w.model.as_ref().unwrap().version == 1)
        .map(|w| w.inferences)
        .sum();
    assert_eq!(first_model, 15);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unacknowledged_windows_stay_buffered_and_are_sent_again() {
    init_tracing();
    let port = start_broker().await;
    let hub = FakeHub::start(port, "tel2/shoal/v1").await;
    hub.set_acking(false);
    let dir = tempfile::tempdir().unwrap();
    let mut file = config_file(port, &hub.prefix, &hub.public_key_hex(), dir.path());
    file.agent.telemetry_window_ms = Some(200);
    file.agent.telemetry_ack_timeout_ms = Some(300);
    let agent = TestAgent::start(file).await;
    let bytes = linear_model(0.2);
    deploy(&hub, 1, hub.sign(&hub.key, "iris", 1, &bytes), &bytes).await;

    assert_eq!(infer_rows(&agent, 2).await, 200);
    let mut received = hub.windows_received.clone();
    tokio::time::timeout(
        WAIT,
        received.wait_for(|_| hub.receipts().values().any(|n| *n >= 3)),
    )
    .await
    .expect("an unacknowledged window sent again, and again")
    .unwrap();
    let telemetry = agent.telemetry().await;
    assert!(
        telemetry["buffered_records"].as_u64().unwrap() >= 1,
        "{telemetry}"
    );

    // Garbage and acks for unknown windows change nothing.
    hub.publish_ack(vec![0xFF, 0xFF, 0xFF]).await;
    hub.publish_ack(prost::Message::encode_to_vec(
        &shoal_proto::device::TelemetryAck { seqs: vec![999] },
    ))
    .await;
    assert_eq!(infer_rows(&agent, 1).await, 200);
    hub.wait_for_windows("with 3 inferences", |w| inferences(w) == 3)
        .await;
    assert!(
        agent.telemetry().await["buffered_records"]
            .as_u64()
            .unwrap()
            >= 1
    );

    hub.set_acking(true);
    wait_for_empty_buffer(&agent).await;
    assert_eq!(
        inferences(&hub.unique_windows()),
        3,
        "duplicates are only copies"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ack_for_windows_never_sent_deletes_nothing() {
    init_tracing();
    let port = start_broker().await;
    let hub = FakeHub::start(port, "tel-forged/shoal/v1").await;
    hub.set_acking(false);
    let dir = tempfile::tempdir().unwrap();
    let mut file = config_file(port, &hub.prefix, &hub.public_key_hex(), dir.path());
    file.agent.telemetry_window_ms = Some(100);
    file.agent.telemetry_ack_timeout_ms = Some(60_000);
    let agent = TestAgent::start(file).await;
    let bytes = linear_model(0.4);
    deploy(&hub, 1, hub.sign(&hub.key, "iris", 1, &bytes), &bytes).await;

    // More windows than may be in flight: the hub acknowledges nothing, so the newest ones
    // stay in the buffer, never sent.
    let mut served = 0u64;
    let mut buffered = 0;
    while buffered < shoal_agent::forward::MAX_IN_FLIGHT as u64 + 4 {
        assert_eq!(infer_rows(&agent, 1).await, 200);
        served += 1;
        let before = buffered;
        wait_until("the window to close into the buffer", || async {
            agent.telemetry().await["buffered_records"]
                .as_u64()
                .unwrap()
                > before
        })
        .await;
        buffered = agent.telemetry().await["buffered_records"]
            .as_u64()
            .unwrap();
    }

    // Someone else's ack naming every seq: only windows in flight may go; the unsent stay.
    hub.publish_ack(prost::Message::encode_to_vec(
        &shoal_proto::device::TelemetryAck {
            seqs: (0..1000).collect(),
        },
    ))
    .await;
    hub.set_acking(true);
    wait_for_empty_buffer(&agent).await;
    let windows = hub.unique_windows();
    assert_eq!(
        inferences(&windows),
        served,
        "every served inference reached the hub"
    );
    let dropped = agent.telemetry().await["dropped"].clone();
    assert_eq!(dropped["cap_records"], 0, "{dropped}");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn windows_closed_while_the_broker_is_unreachable_all_arrive() {
    init_tracing();
    let port = start_broker().await;
    let hub = FakeHub::start(port, "tel3/shoal/v1").await;
    let proxy = Proxy::start(port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut file = config_file(proxy.port, &hub.prefix, &hub.public_key_hex(), dir.path());
    file.agent.telemetry_window_ms = Some(200);
    file.agent.telemetry_ack_timeout_ms = Some(1000);
    let agent = TestAgent::start(file).await;
    let bytes = linear_model(0.3);
    deploy(&hub, 1, with_baseline(&hub, "iris", 1, &bytes), &bytes).await;

    let mut made = 0u64;
    for rows in [1, 2] {
        assert_eq!(infer_rows(&agent, rows).await, 200);
        made += rows as u64;
    }
    hub.wait_for_windows("before the cut", |w| inferences(w) == made)
        .await;

    proxy.hold();
    wait_for_mqtt(&agent, false).await;
    let before = agent.telemetry().await["last_closed_seq"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = 1 + (made % 3) as usize;
        assert_eq!(infer_rows(&agent, rows).await, 200);
        made += rows as u64;
        let telemetry = agent.telemetry().await;
        if telemetry["last_closed_seq"].as_u64().unwrap() >= before + 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{telemetry}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        agent.telemetry().await["buffered_records"]
            .as_u64()
            .unwrap()
            >= 3
    );
    proxy.release();

    let windows = hub
        .wait_for_windows(&format!("with all {made} inferences"), |w| {
            inferences(w) == made
        })
        .await;
    let seqs: Vec<u64> = windows.keys().map(|(_, seq)| *seq).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "no window lost"
    );
    wait_for_empty_buffer(&agent).await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_buffer_drops_the_oldest_windows_and_says_exactly_how_many() {
    init_tracing();
    let port = start_broker().await;
    let hub = FakeHub::start(port, "tel4/shoal/v1").await;
    let proxy = Proxy::start(port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut file = config_file(proxy.port, &hub.prefix, &hub.public_key_hex(), dir.path());
    file.agent.telemetry_window_ms = Some(150);
    file.agent.telemetry_buffer_max_bytes = Some(4096);
    let agent = TestAgent::start(file).await;
    let bytes = linear_model(0.4);
    deploy(&hub, 1, with_baseline(&hub, "iris", 1, &bytes), &bytes).await;

    // Nothing in flight when the link goes: every window closed from now on either waits in
    // the buffer or is dropped from it, never both sent and dropped.
    proxy.hold();
    wait_for_mqtt(&agent, false).await;
    let mut made = 0u64;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert_eq!(infer_rows(&agent, 2).await, 200);
        made += 2;
        let telemetry = agent.telemetry().await;
        if telemetry["dropped"]["cap_records"].as_u64().unwrap() >= 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{telemetry}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The last window with inferences is closed (into the buffer) before the link returns, so
    // no push can drop a window that is already on its way.
    wait_until("the last busy window closed", || async {
        agent.telemetry().await["open_window"]["inferences"] == 0
    })
    .await;
    proxy.release();
    wait_for_empty_buffer(&agent).await;

    // One more window, closed with nothing left to drop: its counters are the final ones.
    assert_eq!(infer_rows(&agent, 1).await, 200);
    made += 1;
    let windows = hub
        .wait_for_windows("accounting for every inference", |w| {
            let (_, last) = w.last_key_value().unwrap();
            inferences(w) + last.dropped.unwrap().items == made
        })
        .await;
    let (_, last) = windows.last_key_value().unwrap();
    let dropped = last.dropped.unwrap();
    let missing = (0..=last.seq)
        .filter(|seq| !windows.contains_key(&(agent.boot_epoch, *seq)))
        .count() as u64;
    assert!(missing >= 3, "{dropped:?}");
    assert_eq!(
        dropped.cap_records, missing,
        "every dropped window is counted"
    );
    assert_eq!(
        inferences(&windows) + dropped.items,
        made,
        "what arrived plus what was dropped is what was served"
    );
    assert!(dropped.bytes > 0);
    assert_eq!(
        (
            dropped.age_records,
            dropped.corrupt_records,
            dropped.store_resets
        ),
        (0, 0, 0)
    );
    let telemetry = agent.telemetry().await;
    assert_eq!(telemetry["dropped"]["cap_records"], missing, "{telemetry}");
    assert_eq!(telemetry["dropped"]["items"], dropped.items, "{telemetry}");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_telemetry_store_is_set_aside_and_reported() {
    init_tracing();
    let port = start_broker().await;
    let hub = FakeHub::start(port, "tel5/shoal/v1").await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("telemetry");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("conf"), b"\xff\xfe not a sled config").unwrap();
    std::fs::write(store.join("db"), vec![0xAB; 4096]).unwrap();
    let mut file = config_file(port, &hub.prefix, &hub.public_key_hex(), dir.path());
    file.agent.telemetry_window_ms = Some(200);
    let agent = TestAgent::start(file).await;

    let loss = "telemetry buffer was unreadable and was started afresh (moved to ";
    let (_, health) = agent.get("/healthz").await;
    assert!(
        health["health"].as_str().unwrap().starts_with(loss),
        "{health}"
    );
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("telemetry.corrupt-"))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the broken store is kept for a person to look at"
    );

    let bytes = linear_model(0.5);
    deploy(&hub, 1, hub.sign(&hub.key, "iris", 1, &bytes), &bytes).await;
    let state = hub
        .wait_for_state("reporting the loss", |s| s.health.starts_with(loss))
        .await;
    assert!(
        state.active.is_some(),
        "a successful update does not hide the loss"
    );
    assert_eq!(infer_rows(&agent, 3).await, 200);
    let windows = hub
        .wait_for_windows("with 3 inferences", |w| inferences(w) == 3)
        .await;
    for window in windows.values() {
        assert_eq!(window.dropped.unwrap().store_resets, 1, "{window:?}");
    }
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_keeps_the_open_window_for_the_next_start() {
    init_tracing();
    let port = start_broker().await;
    let hub = FakeHub::start(port, "tel6/shoal/v1").await;
    let dir = tempfile::tempdir().unwrap();
    // A window far longer than the test: only shutdown can close it.
    let file = config_file(port, &hub.prefix, &hub.public_key_hex(), dir.path());
    let agent = TestAgent::start(file.clone()).await;
    let bytes = linear_model(0.6);
    deploy(&hub, 1, hub.sign(&hub.key, "iris", 1, &bytes), &bytes).await;
    assert_eq!(infer_rows(&agent, 2).await, 200);
    let first_epoch = agent.boot_epoch;
    agent.shutdown().await;
    assert!(hub.unique_windows().is_empty());

    let agent = TestAgent::start(file).await;
    let windows = hub
        .wait_for_windows("from the previous run", |w| !w.is_empty())
        .await;
    let (_, window) = windows.first_key_value().unwrap();
    assert_eq!((window.boot_epoch, window.inferences), (first_epoch, 2));
    assert_eq!(windows.len(), 1);
    wait_for_empty_buffer(&agent).await;
    agent.shutdown().await;
}
