//! An acknowledgement means durable: a `shoal-hub serve` process killed with SIGKILL right
//! after it acknowledged telemetry windows still has every one of them when it starts again on
//! the same data folder (the device has deleted what the hub acknowledged: nothing else holds
//! those windows any more).

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use prost::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use shoal_proto::deployment as dpb;
use shoal_proto::device::{ActiveModel, TelemetryAck, TelemetryWindow};
use shoal_proto::fleet as fpb;
use shoal_proto::telemetry as tpb;
use shoal_proto::topics::DeviceTopics;
use tokio::io::{AsyncBufReadExt, BufReader};

const DEADLINE: Duration = Duration::from_secs(60);
/// Windows the device sends before the hub is killed.
const WINDOWS: u64 = 400;

/// A running `shoal-hub serve` and where it listens.
struct HubProcess {
    child: tokio::process::Child,
    grpc: String,
    mqtt: String,
}

/// Starts `shoal-hub serve` on `dir` with ephemeral ports, and reads its addresses from the
/// banner. `SHOAL_HUB_BIN` runs the test against another build of the binary.
async fn start_hub(dir: &std::path::Path) -> HubProcess {
    let binary = std::env::var("SHOAL_HUB_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_shoal-hub").to_string());
    let mut child = tokio::process::Command::new(binary)
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start shoal-hub");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let banner = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("hub output") {
            if line.starts_with("shoal-hub: gRPC ") {
                return line;
            }
        }
        panic!("shoal-hub exited before printing its addresses");
    })
    .await
    .expect("hub starts");
    // Keep reading what it says, so a full pipe never stalls it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // "shoal-hub: gRPC 127.0.0.1:P · HTTP 127.0.0.1:Q · MQTT mqtt://127.0.0.1:R · admin token in …"
    let parts: Vec<&str> = banner.split(" · ").collect();
    let grpc = parts[0].trim_start_matches("shoal-hub: gRPC ").to_string();
    let mqtt = parts[2].trim_start_matches("MQTT mqtt://").to_string();
    HubProcess { child, grpc, mqtt }
}

async fn client(hub: &HubProcess, dir: &std::path::Path) -> shoal_client::HubClient {
    let token = std::fs::read_to_string(dir.join("admin.token")).expect("admin token");
    shoal_client::HubClient::connect(&format!("http://{}", hub.grpc), Some(token.trim()))
        .await
        .expect("connect to the hub")
}

fn window(version: &shoal_proto::registry::ModelVersion, seq: u64) -> Vec<u8> {
    TelemetryWindow {
        device_id: "cam-01".into(),
        boot_epoch: 1,
        seq,
        start_ms: 1_000 * seq as i64,
        end_ms: 1_000 * seq as i64 + 999,
        model: Some(ActiveModel {
            model: "occupancy".into(),
            version: version.version,
            digest: version.digest.clone(),
        }),
        inferences: 3,
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_window_the_hub_acknowledged_survives_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let mut hub = start_hub(&data).await;
    let mut grpc = client(&hub, &data).await;

    // A device assigned a model, so the hub takes its windows.
    let model = dir.path().join("model.onnx");
    std::fs::write(
        &model,
        shoal_model::build::Mlp::seeded(&[4, 8, 2], 1).to_onnx(),
    )
    .unwrap();
    let version = shoal_client::register_model(
        &mut grpc,
        "default",
        &model,
        "occupancy",
        "",
        Default::default(),
        false,
    )
    .await
    .expect("register");
    let credentials = grpc
        .fleet
        .add_device(fpb::AddDeviceRequest {
            workspace: "default".into(),
            id: "cam-01".into(),
            tags: Default::default(),
        })
        .await
        .expect("add device")
        .into_inner();
    grpc.deployments
        .create_deployment(dpb::CreateDeploymentRequest {
            workspace: "default".into(),
            name: "lobby".into(),
            model: "occupancy".into(),
            model_reference: "1".into(),
            devices: vec!["cam-01".into()],
            strategy: dpb::Strategy::AllAtOnce as i32,
        })
        .await
        .expect("deploy");

    // The test is the device: it sends windows and listens for the hub's acknowledgements.
    let (host, port) = hub.mqtt.rsplit_once(':').unwrap();
    let mut options = MqttOptions::new("durable-ack-device", host, port.parse().unwrap());
    options.set_credentials(&credentials.mqtt_username, &credentials.mqtt_password);
    options.set_max_packet_size(1 << 20, 1 << 20);
    options.set_inflight(500);
    let (device, mut eventloop) = AsyncClient::new(options, 1024);
    let topics = DeviceTopics::new(&credentials.topic_prefix, "default", "cam-01");
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    let ack_topic = topics.telemetry_ack();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) if p.topic == ack_topic => {
                    let _ = acks_tx.send(TelemetryAck::decode(p.payload).expect("an ack"));
                }
                _ => {}
            }
        }
    });
    device
        .subscribe(topics.telemetry_ack(), QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, subscribed)
        .await
        .expect("subscribed")
        .unwrap();
    for seq in 1..=WINDOWS {
        device
            .publish(
                topics.telemetry(),
                QoS::AtLeastOnce,
                false,
                window(&version, seq),
            )
            .await
            .unwrap();
    }

    // Kill the hub the moment acknowledgements have come back, while it is still storing.
    let mut acked = BTreeSet::new();
    let first = tokio::time::timeout(DEADLINE, acks.recv())
        .await
        .expect("an acknowledgement")
        .expect("ack channel");
    acked.extend(first.seqs);
    let pid = hub.child.id().expect("hub pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    hub.child.wait().await.unwrap();
    // Acknowledgements that were on their way when it died count too.
    while let Ok(ack) = acks.try_recv() {
        acked.extend(ack.seqs);
    }
    assert!(!acked.is_empty());

    // Started again on the same folder, it holds every acknowledged window.
    let hub = start_hub(&data).await;
    let mut grpc = client(&hub, &data).await;
    let stored = grpc
        .telemetry
        .get_device_telemetry(tpb::GetDeviceTelemetryRequest {
            workspace: "default".into(),
            device: "cam-01".into(),
        })
        .await
        .expect("device telemetry")
        .into_inner();
    assert!(
        stored.windows >= acked.len() as u64,
        "{} windows acknowledged, {} stored after the restart",
        acked.len(),
        stored.windows
    );
    let report = grpc
        .telemetry
        .get_drift_report(tpb::GetDriftReportRequest {
            workspace: "default".into(),
            model: "occupancy".into(),
            reference: "1".into(),
            since_ms: 0,
            until_ms: 0,
            devices: vec![],
            min_rows: 1,
        })
        .await
        .expect("report")
        .into_inner();
    assert!(report.windows >= acked.len() as u64);
    drop(hub);
}
