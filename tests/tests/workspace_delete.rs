//! Deleting a workspace (with force) deletes everything it owned: its monitors, their
//! evaluations and alerts, and its devices' telemetry go with its models, devices and
//! deployments, so a workspace created again under the same name starts empty.

use prost::Message;
use rumqttc::QoS;
use shoal_integration_tests::fixtures::{
    device_baseline, sensor_csv, sensor_rows, window_payload, WindowMeta, FEATURES,
};
use shoal_integration_tests::{mqtt_client_as, unique, wait_for, TestHub};
use shoal_model::build::Mlp;
use shoal_proto::fleet as fpb;
use shoal_proto::telemetry as tpb;
use shoal_proto::topics::DeviceTopics;
use shoal_proto::workspace as wpb;

const WS: &str = "lab";

/// Fills `lab`: a model with a baseline, a device assigned to it, a monitor that alerts on
/// the device's windows. Returns the device's agent config.
async fn fill(hub: &TestHub) -> (shoal_agent::AgentConfigFile, String) {
    let mut grpc = hub.client().await;
    let mlp = Mlp::seeded(&[4, 8, 2], 4).with_softmax();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::write(&model, mlp.to_onnx()).unwrap();
    let version = shoal_client::register_model(
        &mut grpc,
        WS,
        &model,
        "occupancy",
        "",
        Default::default(),
        false,
    )
    .await
    .unwrap();
    let training = sensor_rows(1, 1000, 0.0);
    let csv = dir.path().join("baseline.csv");
    std::fs::write(&csv, sensor_csv(&training)).unwrap();
    shoal_client::upload_baseline(
        &mut grpc,
        WS,
        "occupancy",
        "1",
        &csv,
        FEATURES.iter().map(|f| f.to_string()).collect(),
        "",
    )
    .await
    .unwrap();
    let credentials = grpc
        .fleet
        .add_device(fpb::AddDeviceRequest {
            workspace: WS.into(),
            id: "cam-01".into(),
            tags: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    let text = shoal_cli::agent_config_toml(&credentials).unwrap();
    let config = shoal_agent::AgentConfigFile::parse(&text, "cam-01").unwrap();
    grpc.deployments
        .create_deployment(shoal_proto::deployment::CreateDeploymentRequest {
            workspace: WS.into(),
            name: "lobby".into(),
            model: "occupancy".into(),
            model_reference: "1".into(),
            devices: vec!["cam-01".into()],
            strategy: shoal_proto::deployment::Strategy::AllAtOnce as i32,
        })
        .await
        .unwrap();
    grpc.telemetry
        .create_monitor(tpb::CreateMonitorRequest {
            monitor: Some(tpb::Monitor {
                workspace: WS.into(),
                name: "drift".into(),
                model: "occupancy".into(),
                reference: "1".into(),
                thresholds: vec![tpb::MetricThreshold {
                    metric: "psi".into(),
                    threshold: 0.1,
                }],
                every_ms: 300,
                min_rows: 100,
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    // Shifted windows from the device until the monitor alerts.
    let (client, mut eventloop) = mqtt_client_as(&config, &unique("cam-01-"));
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = DeviceTopics::new(&hub.topic_prefix, WS, "cam-01").telemetry();
    let meta = WindowMeta {
        device: "cam-01",
        boot_epoch: 1,
        seq: 1,
        end_ms: shoal_store::now_ms(),
        model: "occupancy",
        version: 1,
        digest: &version.digest,
        dropped_records: 0,
    };
    let baseline = device_baseline(&training, &mlp);
    let payload = window_payload(&baseline, &mlp, &meta, &sensor_rows(7, 500, 4.0));
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    wait_for("an alert in lab", || async {
        let alerts = hub
            .client()
            .await
            .telemetry
            .list_alerts(tpb::ListAlertsRequest {
                workspace: WS.into(),
                monitor: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .alerts;
        (!alerts.is_empty()).then_some(())
    })
    .await;
    (config, version.digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_deleted_workspace_leaves_no_monitors_alerts_or_telemetry() {
    let hub = TestHub::builder().embedded().start().await;
    let mut grpc = hub.client().await;
    grpc.workspaces
        .create_workspace(wpb::CreateWorkspaceRequest {
            name: WS.into(),
            description: String::new(),
        })
        .await
        .unwrap();
    fill(&hub).await;
    grpc.workspaces
        .delete_workspace(wpb::DeleteWorkspaceRequest {
            name: WS.into(),
            force: true,
        })
        .await
        .unwrap();

    // The same name again, with the same device id: nothing of the old one is there.
    grpc.workspaces
        .create_workspace(wpb::CreateWorkspaceRequest {
            name: WS.into(),
            description: String::new(),
        })
        .await
        .unwrap();
    let monitors = grpc
        .telemetry
        .list_monitors(tpb::ListMonitorsRequest {
            workspace: WS.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(monitors.monitors.is_empty(), "{monitors:?}");
    let alerts = grpc
        .telemetry
        .list_alerts(tpb::ListAlertsRequest {
            workspace: WS.into(),
            monitor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(alerts.alerts.is_empty(), "{alerts:?}");
    grpc.fleet
        .add_device(fpb::AddDeviceRequest {
            workspace: WS.into(),
            id: "cam-01".into(),
            tags: Default::default(),
        })
        .await
        .unwrap();
    let stats = grpc
        .telemetry
        .get_device_telemetry(tpb::GetDeviceTelemetryRequest {
            workspace: WS.into(),
            device: "cam-01".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (stats.windows, stats.inferences, stats.last_window_ms),
        (0, 0, 0),
        "{stats:?}"
    );
    let model = tempfile::tempdir().unwrap();
    let path = model.path().join("model.onnx");
    std::fs::write(&path, Mlp::seeded(&[4, 8, 2], 4).with_softmax().to_onnx()).unwrap();
    shoal_client::register_model(
        &mut grpc,
        WS,
        &path,
        "occupancy",
        "",
        Default::default(),
        false,
    )
    .await
    .unwrap();
    let report = grpc
        .telemetry
        .get_drift_report(tpb::GetDriftReportRequest {
            workspace: WS.into(),
            model: "occupancy".into(),
            reference: "1".into(),
            since_ms: 0,
            until_ms: 0,
            devices: vec![],
            min_rows: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.windows, 0, "{report:?}");
    let _ = Message::encoded_len(&report);
    hub.shutdown().await;
}
