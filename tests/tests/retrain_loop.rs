//! The loop closes: a drift alert on a deployed model starts a retraining run, which repeats
//! a template run on the latest version of its dataset and registers the next model version.

use rumqttc::QoS;
use shoal_integration_tests::fixtures::{
    device_baseline, sensor_csv, sensor_rows, window_payload, WindowMeta, FEATURES,
};
use shoal_integration_tests::{mqtt_client_as, unique, wait_for, TestHub};
use shoal_model::build::Mlp;
use shoal_proto::telemetry::{CreateMonitorRequest, MetricThreshold, Monitor};
use shoal_proto::topics::DeviceTopics;
use shoal_proto::training as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_alert_retrains_on_the_latest_data_and_registers_the_next_version() {
    let hub = TestHub::start().await;
    let mut grpc = hub.client().await;

    // The model on the devices, with its baseline (the test plays the device).
    let mlp = Mlp::seeded(&[4, 8, 2], 4).with_softmax();
    let deployed = hub.register("occupancy", &mlp.to_onnx()).await.unwrap();
    let training = sensor_rows(1, 2000, 0.0);
    hub.set_baseline("occupancy", "1", &sensor_csv(&training), &FEATURES)
        .await
        .unwrap();
    let baseline = device_baseline(&training, &mlp);

    // The run that made the next version: a built-in trainer on the office dataset.
    hub.upload_dataset("", "office", shoal_cli::sensors_csv(400, 1).as_bytes())
        .await
        .expect("dataset");
    let template = grpc
        .training
        .submit_run(futures::stream::iter(vec![pb::SubmitRunRequest {
            part: Some(pb::submit_run_request::Part::Header(pb::SubmitRunHeader {
                experiment: "occ".into(),
                params: [("epochs", "5"), ("hidden", "8")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                job: Some(pb::submit_run_header::Job::Builtin(pb::BuiltinJob {
                    trainer: "mlp".into(),
                    dataset: "office@1".into(),
                    target: "occupied".into(),
                    features: Vec::new(),
                    register_as: "occupancy".into(),
                })),
                ..Default::default()
            })),
        }]))
        .await
        .expect("template run")
        .into_inner();
    let template = hub.wait_for_run_end(&template.id).await;
    assert_eq!(template.outputs, vec!["occupancy@2".to_string()]);
    // New data arrives after the template ran: retraining must use it.
    hub.upload_dataset("", "office", shoal_cli::sensors_csv(500, 2).as_bytes())
        .await
        .expect("dataset");

    let refused = grpc
        .telemetry
        .create_monitor(CreateMonitorRequest {
            monitor: Some(Monitor {
                name: "bad-hook".into(),
                model: "occupancy".into(),
                reference: "1".into(),
                every_ms: 1000,
                on_alert: "retrain:0123456789abcdef0123456789abcdef".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("an unknown template run");
    assert_eq!(refused.code(), tonic::Code::NotFound);
    grpc.telemetry
        .create_monitor(CreateMonitorRequest {
            monitor: Some(Monitor {
                name: "occ-drift".into(),
                model: "occupancy".into(),
                reference: "1".into(),
                thresholds: vec![MetricThreshold {
                    metric: "psi".into(),
                    threshold: 0.25,
                }],
                every_ms: 400,
                min_rows: 1000,
                on_alert: format!("retrain:{}", template.id),
                ..Default::default()
            }),
        })
        .await
        .expect("monitor");

    // Shifted inputs from the device until the monitor alerts.
    let device = hub.add_device("cam-01").await;
    // The hub takes windows only for the version a device is assigned.
    hub.deploy("to-cam-01", "occupancy", "1", &["cam-01"]).await;
    let (client, mut eventloop) = mqtt_client_as(&device, &unique("cam-01-"));
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topics = DeviceTopics::new(&hub.topic_prefix, "default", "cam-01");
    let meta = WindowMeta {
        device: "cam-01",
        boot_epoch: 1,
        seq: 1,
        end_ms: shoal_store::now_ms(),
        model: "occupancy",
        version: 1,
        digest: &deployed.digest,
        dropped_records: 0,
    };
    let payload = window_payload(&baseline, &mlp, &meta, &sensor_rows(7, 2000, 4.0));
    client
        .publish(topics.telemetry(), QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    let alert = hub.wait_for_alert("occ-drift").await;

    let retrain_run = wait_for("the alert to start a retraining run", || async {
        let alerts = hub
            .client()
            .await
            .telemetry
            .list_alerts(shoal_proto::telemetry::ListAlertsRequest {
                workspace: "default".into(),
                monitor: "occ-drift".into(),
            })
            .await
            .expect("alerts")
            .into_inner()
            .alerts;
        alerts
            .into_iter()
            .find(|a| a.id == alert.id)
            .map(|a| a.retrain)
            .filter(|r| !r.is_empty())
    })
    .await;
    assert!(!retrain_run.starts_with("not started"), "{retrain_run}");
    let run = hub.wait_for_run_end(&retrain_run).await;
    assert_eq!(run.status, "completed", "{}: {:?}", run.error, run.log_tail);
    assert_eq!(run.inputs, vec!["office@2".to_string()], "the latest data");
    assert_eq!(run.params, template.params);
    assert_eq!(run.experiment, "occ");
    assert_eq!(run.tags.get("shoal.retrain.of"), Some(&template.id));
    assert_eq!(run.tags.get("shoal.retrain.alert"), Some(&alert.id));
    assert_eq!(
        run.tags.get("shoal.retrain.model").map(String::as_str),
        Some("occupancy@1")
    );
    assert_eq!(run.outputs, vec!["occupancy@3".to_string()]);
    hub.shutdown().await;
}
