//! A large drift baseline travels as a blob, as models do: a model with 200 numeric features,
//! trained and registered (with its baseline) by the built-in trainer, reaches a real agent
//! through the embedded broker, which activates it and reports drift summaries over all 200
//! features, while the hub's own MQTT link stays up (a baseline inline in the desired state
//! was larger than the broker's payload limit, and the broker dropped the hub for it).

use serde_json::json;
use shoal_integration_tests::{wait_for, TestAgent, TestHub};
use shoal_model::build::SplitMix64;
use shoal_proto::registry as rpb;
use shoal_proto::telemetry::GetDriftReportRequest;
use shoal_proto::training as pb;

const FEATURES: usize = 200;

/// `rows` rows of 200 numeric features and a yes/no label that follows the first few.
fn wide_csv(rows: usize, seed: u64) -> String {
    let mut rng = SplitMix64(seed);
    let names: Vec<String> = (0..FEATURES).map(|i| format!("f{i:03}")).collect();
    let mut csv = names.join(",") + ",label\n";
    for _ in 0..rows {
        let values: Vec<f64> = (0..FEATURES).map(|_| (rng.unit() + 1.0) * 5.0).collect();
        let label = values[0] + values[1] > values[2] + values[3];
        let cells: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
        csv += &cells.join(",");
        csv += if label { ",yes\n" } else { ",no\n" };
    }
    csv
}

async fn mqtt_connected(hub: &TestHub) -> bool {
    let health: serde_json::Value = reqwest::get(format!("http://{}/healthz", hub.http_addr))
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    health["mqtt_connected"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_feature_baseline_reaches_the_agent_and_the_hub_stays_connected() {
    let hub = TestHub::builder().embedded().start().await;
    let mut grpc = hub.client().await;
    hub.upload_dataset("", "wide", wide_csv(300, 1).as_bytes())
        .await
        .expect("dataset");
    let run = grpc
        .training
        .submit_run(futures::stream::iter(vec![pb::SubmitRunRequest {
            part: Some(pb::submit_run_request::Part::Header(pb::SubmitRunHeader {
                experiment: "wide".into(),
                params: [("epochs", "2"), ("hidden", "4")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                job: Some(pb::submit_run_header::Job::Builtin(pb::BuiltinJob {
                    trainer: "mlp".into(),
                    dataset: "wide@1".into(),
                    target: "label".into(),
                    features: Vec::new(),
                    register_as: "wide".into(),
                })),
                ..Default::default()
            })),
        }]))
        .await
        .expect("submit")
        .into_inner();
    let run = hub.wait_for_run_end(&run.id).await;
    assert_eq!(run.status, "completed", "{}: {:?}", run.error, run.log_tail);
    assert_eq!(run.outputs, vec!["wide@1".to_string()]);
    let version = grpc
        .registry
        .get_model_version(rpb::GetModelVersionRequest {
            workspace: "default".into(),
            name: "wide".into(),
            reference: "1".into(),
        })
        .await
        .expect("version")
        .into_inner();
    let baseline = version
        .baseline
        .as_ref()
        .expect("registered with its baseline");
    assert_eq!(baseline.features.len(), FEATURES);

    let mut config = hub.add_device("cam-01").await;
    config.agent.telemetry_window_ms = Some(200);
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(config, dir.path()).await;
    hub.deploy("wide", "wide", "1", &["cam-01"]).await;
    agent.wait_for_model(&version.digest).await;
    assert!(mqtt_connected(&hub).await);
    // What the agent fetched as a blob would not fit one MQTT message of the embedded broker.
    let baselines: Vec<_> = std::fs::read_dir(dir.path().join("baselines"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert_eq!(baselines.len(), 1);
    assert!(
        baselines[0] > shoal_hub::broker::MAX_PAYLOAD_BYTES as u64,
        "{} bytes",
        baselines[0]
    );

    let since_ms = shoal_store::now_ms();
    let row: Vec<f64> = (0..FEATURES).map(|i| 5.0 + (i % 7) as f64).collect();
    let data: Vec<f64> = row.iter().chain(&row).copied().collect();
    let body = json!({"inputs": {"x": {"shape": [2, FEATURES], "data": data}}});
    let report = wait_for("drift summaries over the 200 features", || async {
        let (code, answer) = agent.infer(&body).await;
        assert_eq!(code, 200, "{answer}");
        assert!(mqtt_connected(&hub).await, "the hub's MQTT link dropped");
        let report = hub
            .client()
            .await
            .telemetry
            .get_drift_report(GetDriftReportRequest {
                workspace: "default".into(),
                model: "wide".into(),
                reference: "1".into(),
                since_ms,
                until_ms: 0,
                devices: vec![],
                min_rows: 1,
            })
            .await
            .expect("drift report")
            .into_inner();
        (report.features.len() == FEATURES && report.features.iter().all(|f| f.rows > 0))
            .then_some(report)
    })
    .await;
    assert_eq!(report.features[199].name, "f199");
    // Status and reported state still flow: the device is online and reports the model.
    let device = hub.device("cam-01").await;
    assert!(device.online);
    assert_eq!(
        device.reported.unwrap().active.unwrap().digest,
        version.digest
    );
    agent.stop().await;
    hub.shutdown().await;
}
