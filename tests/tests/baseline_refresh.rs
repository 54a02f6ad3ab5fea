//! A drift baseline set after a version is deployed reaches the devices running it: the hub
//! re-publishes their desired state, the agents re-bind their telemetry to the new baseline
//! without downloading the model again, and their windows start carrying feature summaries.

use serde_json::json;
use shoal_integration_tests::fixtures::{sensor_csv, sensor_rows, FEATURES};
use shoal_integration_tests::{wait_for, TestAgent, TestHub};
use shoal_model::build::Mlp;
use shoal_proto::telemetry::GetDriftReportRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_set_after_deployment_reaches_the_running_agents() {
    let hub = TestHub::start().await;
    let mlp = Mlp::seeded(&[4, 8, 2], 4).with_softmax();
    let version = hub.register("occupancy", &mlp.to_onnx()).await.unwrap();
    let mut config = hub.add_device("cam-01").await;
    config.agent.telemetry_window_ms = Some(200);
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(config, dir.path()).await;
    hub.deploy("lobby", "occupancy", "1", &["cam-01"]).await;
    hub.wait_for_active("cam-01", &version.digest).await;

    let rows = sensor_rows(3, 20, 0.0);
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    let body = json!({"inputs": {"x": {"shape": [rows.len(), 4], "data": data}}});
    let (code, _) = agent.infer(&body).await;
    assert_eq!(code, 200);

    let since_ms = shoal_store::now_ms();
    hub.set_baseline(
        "occupancy",
        "1",
        &sensor_csv(&sensor_rows(1, 2000, 0.0)),
        &FEATURES,
    )
    .await
    .unwrap();

    let report = wait_for("windows summarised over the new baseline", || async {
        let (code, _) = agent.infer(&body).await;
        assert_eq!(code, 200, "the agent keeps serving while it re-binds");
        let report = hub
            .client()
            .await
            .telemetry
            .get_drift_report(GetDriftReportRequest {
                workspace: "default".into(),
                model: "occupancy".into(),
                reference: "1".into(),
                since_ms,
                until_ms: 0,
                devices: vec![],
                min_rows: 1,
            })
            .await
            .unwrap()
            .into_inner();
        report
            .features
            .iter()
            .all(|f| f.rows > 0)
            .then_some(report)
            .filter(|r| r.features.len() == FEATURES.len())
    })
    .await;
    let names: Vec<&str> = report.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, FEATURES);
    // Same model: nothing was downloaded again.
    let device = hub.device("cam-01").await;
    let active = device.reported.unwrap().active.unwrap();
    assert_eq!(active.digest, version.digest);
    agent.stop().await;
    hub.shutdown().await;
}
