//! Telemetry end to end, with a real hub and real agent processes: windows survive a broker
//! outage and a SIGKILL and reach the hub exactly once; a full buffer's losses are counted
//! exactly at the hub; an unreadable buffer is reported and replaced; and a drift monitor
//! stays quiet on data like the baseline and alerts, with a signed webhook, on shifted data.

use serde_json::json;
use shoal_agent::config::AgentConfigFile;
use shoal_integration_tests::fixtures::{sensor_csv, sensor_rows, WebhookReceiver, FEATURES};
use shoal_integration_tests::process::{AgentProcess, LinkProxy};
use shoal_integration_tests::{wait_for, TestHub};
use shoal_model::build::Mlp;
use shoal_proto::telemetry::{
    CreateMonitorRequest, DeviceTelemetry, GetDeviceTelemetryRequest, ListAlertsRequest,
    MetricThreshold, Monitor,
};

const AGENT: &str = env!("CARGO_BIN_EXE_test-agent");

/// A hub with a 4-feature classifier, its baseline, and `device` enrolled with short windows.
async fn hub_with_model(device: &str) -> (TestHub, Mlp, String, AgentConfigFile) {
    let hub = TestHub::start().await;
    let mlp = Mlp::seeded(&[4, 8, 2], 4).with_softmax();
    let version = hub.register("occupancy", &mlp.to_onnx()).await.unwrap();
    hub.set_baseline(
        "occupancy",
        "1",
        &sensor_csv(&sensor_rows(1, 2000, 0.0)),
        &FEATURES,
    )
    .await
    .unwrap();
    let mut config = hub.add_device(device).await;
    config.agent.telemetry_window_ms = Some(200);
    config.agent.telemetry_ack_timeout_ms = Some(500);
    (hub, mlp, version.digest, config)
}

fn batch(seed: u64, rows: usize, shift: f32) -> serde_json::Value {
    let rows = sensor_rows(seed, rows, shift);
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    json!({"inputs": {"x": {"shape": [rows.len(), 4], "data": data}}})
}

async fn device_telemetry(hub: &TestHub, device: &str) -> DeviceTelemetry {
    hub.client()
        .await
        .telemetry
        .get_device_telemetry(GetDeviceTelemetryRequest {
            workspace: "default".into(),
            device: device.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn wait_for_hub_inferences(hub: &TestHub, device: &str, expected: u64) -> DeviceTelemetry {
    wait_for(
        &format!("the hub to count {expected} inferences"),
        || async {
            let t = device_telemetry(hub, device).await;
            (t.inferences >= expected).then_some(t)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_survive_an_outage_and_sigkill_exactly_once() {
    let (hub, _, digest, config) = hub_with_model("cam-01").await;
    let link = LinkProxy::start(&hub.mqtt_url).await;
    let dirs = tempfile::tempdir().unwrap();
    let data_dir = dirs.path().join("cam-01");
    let agent = AgentProcess::start(AGENT, &config, &data_dir, Some(&link.url)).await;
    hub.deploy("lobby", "occupancy", "1", &["cam-01"]).await;
    hub.wait_for_active("cam-01", &digest).await;

    let mut inferred = 0;
    for seed in 0..3 {
        assert_eq!(agent.infer(&batch(seed, 10, 0.0)).await, 200);
        inferred += 10;
    }
    wait_for_hub_inferences(&hub, "cam-01", inferred).await;

    // The broker goes away; the agent keeps serving for several windows.
    link.cut();
    let mut last = None;
    for seed in 10..14 {
        assert_eq!(agent.infer(&batch(seed, 5, 0.0)).await, 200);
        inferred += 5;
        last = Some(agent.wait_for_closed_windows(last).await);
    }
    let model = agent.get("/v1/model").await;
    assert!(
        model["telemetry"]["buffered_records"].as_u64().unwrap() >= 4,
        "{model}"
    );
    // Killed with everything closed but nothing acknowledged.
    agent.kill().await;
    assert!(device_telemetry(&hub, "cam-01").await.inferences < inferred);

    link.restore();
    let agent = AgentProcess::start(AGENT, &config, &data_dir, Some(&link.url)).await;
    let stats = wait_for_hub_inferences(&hub, "cam-01", inferred).await;
    wait_for("the agent's buffer to empty", || async {
        (agent.get("/v1/model").await["telemetry"]["buffered_records"] == 0).then_some(())
    })
    .await;
    let settled = device_telemetry(&hub, "cam-01").await;
    assert_eq!(
        settled.inferences, inferred,
        "every window exactly once (duplicates seen: {})",
        settled.duplicates
    );
    assert_eq!(settled.windows, stats.windows);
    agent.kill().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_drops_the_oldest_and_the_hub_shows_exactly_what() {
    let (hub, _, digest, mut config) = hub_with_model("cam-02").await;
    // Room for about two windows of this model.
    config.agent.telemetry_buffer_max_bytes = Some(4096);
    let link = LinkProxy::start(&hub.mqtt_url).await;
    let dirs = tempfile::tempdir().unwrap();
    let agent =
        AgentProcess::start(AGENT, &config, &dirs.path().join("cam-02"), Some(&link.url)).await;
    hub.deploy("lobby", "occupancy", "1", &["cam-02"]).await;
    hub.wait_for_active("cam-02", &digest).await;

    link.cut();
    let mut inferred = 0;
    let mut last = None;
    // Windows until the buffer has had to drop at least two of them.
    for seed in 0..60 {
        assert_eq!(agent.infer(&batch(seed, 7, 0.0)).await, 200);
        inferred += 7;
        last = Some(agent.wait_for_closed_windows(last).await);
        let dropped = &agent.get("/v1/model").await["telemetry"]["dropped"];
        if dropped["cap_records"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
    }
    let dropped_locally = agent.get("/v1/model").await["telemetry"]["dropped"].clone();
    let cap_records = dropped_locally["cap_records"].as_u64().unwrap();
    assert!(
        cap_records > 0,
        "the cap was small enough to overflow: {dropped_locally}"
    );
    link.restore();
    // One more window after the outage carries the final accounting.
    assert_eq!(agent.infer(&batch(99, 1, 0.0)).await, 200);
    inferred += 1;
    agent.wait_for_closed_windows(last).await;

    let stats = wait_for("the hub to account for every inference", || async {
        let t = device_telemetry(&hub, "cam-02").await;
        let dropped = t.dropped.unwrap_or_default();
        (t.inferences + dropped.items == inferred).then_some(t)
    })
    .await;
    // What the hub shows is what the agent counted: the agent's own tally now (the window
    // sent after the outage may itself have had to make room).
    let dropped = stats.dropped.unwrap();
    let on_device = agent.get("/v1/model").await["telemetry"]["dropped"].clone();
    assert!(dropped.cap_records >= cap_records);
    assert_eq!(
        dropped.cap_records,
        on_device["cap_records"].as_u64().unwrap(),
        "{on_device}"
    );
    assert_eq!(
        dropped.items,
        on_device["items"].as_u64().unwrap(),
        "{on_device}"
    );
    agent.kill().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_buffer_is_reported_and_telemetry_goes_on() {
    let (hub, _, digest, config) = hub_with_model("cam-03").await;
    let dirs = tempfile::tempdir().unwrap();
    let data_dir = dirs.path().join("cam-03");
    let store = data_dir.join("telemetry");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("conf"), b"\xff\xfe not a sled config").unwrap();
    std::fs::write(store.join("db"), vec![0xAB; 4096]).unwrap();

    let agent = AgentProcess::start(AGENT, &config, &data_dir, None).await;
    hub.deploy("lobby", "occupancy", "1", &["cam-03"]).await;
    let device = hub.wait_for_active("cam-03", &digest).await;
    let health = device.reported.unwrap().health;
    assert!(
        health.contains("telemetry buffer was unreadable"),
        "{health}"
    );
    assert_eq!(agent.infer(&batch(1, 12, 0.0)).await, 200);
    let stats = wait_for_hub_inferences(&hub, "cam-03", 12).await;
    assert_eq!(
        stats.dropped.unwrap().store_resets,
        1,
        "the loss reaches the hub"
    );
    agent.kill().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_is_quiet_on_baseline_data_and_alerts_on_shifted_data() {
    let (hub, _, digest, config) = hub_with_model("cam-04").await;
    let mut webhook = WebhookReceiver::start().await;
    let mut grpc = hub.client().await;
    let monitor = grpc
        .telemetry
        .create_monitor(CreateMonitorRequest {
            monitor: Some(Monitor {
                name: "occ-drift".into(),
                model: "occupancy".into(),
                reference: "1".into(),
                thresholds: vec![MetricThreshold {
                    metric: "js".into(),
                    threshold: 0.1,
                }],
                every_ms: 400,
                min_rows: 1000,
                webhook_url: webhook.url.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let dirs = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(AGENT, &config, &dirs.path().join("cam-04"), None).await;
    hub.deploy("lobby", "occupancy", "1", &["cam-04"]).await;
    hub.wait_for_active("cam-04", &digest).await;

    // Rows drawn like the baseline: two evaluations see them, neither breaches. (JS distance
    // between two samples of one distribution shrinks like 1/sqrt(rows): with 10 bins it is
    // about 0.1 at 300 rows, about 0.04 at 2000, hence the sample size and min_rows.)
    for seed in [20, 21] {
        let sent_at = shoal_store::now_ms();
        assert_eq!(agent.infer(&batch(seed, 2000, 0.0)).await, 200);
        let seen = wait_for("an evaluation of baseline-like rows", || async {
            hub.evaluations_after("occ-drift", sent_at)
                .await
                .into_iter()
                .find(|e| e.windows > 0)
        })
        .await;
        assert!(seen.breaches.is_empty(), "{seen:?}");
    }
    let quiet = grpc
        .telemetry
        .list_alerts(ListAlertsRequest {
            workspace: "default".into(),
            monitor: String::new(),
        })
        .await
        .unwrap();
    assert!(quiet.into_inner().alerts.is_empty());

    // Shifted rows: the first evaluation that sees them alerts.
    let sent_at = shoal_store::now_ms();
    assert_eq!(agent.infer(&batch(30, 2000, 4.0)).await, 200);
    let first = wait_for("an evaluation of shifted rows", || async {
        hub.evaluations_after("occ-drift", sent_at)
            .await
            .into_iter()
            .find(|e| e.windows > 0)
    })
    .await;
    assert!(!first.breaches.is_empty(), "{first:?}");
    let alert = hub.wait_for_alert("occ-drift").await;
    assert_eq!(alert.at_ms, first.at_ms);
    let (headers, body) =
        tokio::time::timeout(shoal_integration_tests::DEADLINE, webhook.requests.recv())
            .await
            .expect("a webhook call")
            .unwrap();
    let signature = headers
        .iter()
        .find(|(k, _)| k == "x-shoal-signature")
        .map(|(_, v)| v.clone())
        .expect("signed");
    let expected = hex::encode(shoal_fleet::monitor::hmac_sha256(
        monitor.webhook_secret.as_bytes(),
        &body,
    ));
    assert_eq!(signature, format!("sha256={expected}"));
    agent.kill().await;
    hub.shutdown().await;
}
