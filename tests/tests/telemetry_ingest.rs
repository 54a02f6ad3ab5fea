//! The hub's side of telemetry, with the test acting as a device over the real broker:
//! baselines from CSV, windows stored exactly once and acknowledged, duplicates recognised,
//! drift reports over a time range, and the device's drop accounting as it reported it.

use std::collections::BTreeSet;

use prost::Message;
use rumqttc::{Event, Packet, QoS};
use shoal_integration_tests::fixtures::{
    device_baseline, sensor_csv, sensor_rows, window_payload, WindowMeta, FEATURES,
};
use shoal_integration_tests::{mqtt_client_as, unique, TestHub, DEADLINE};
use shoal_model::build::Mlp;
use shoal_proto::device::TelemetryAck;
use shoal_proto::telemetry::{GetDeviceTelemetryRequest, GetDriftReportRequest};
use shoal_proto::topics::DeviceTopics;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_are_stored_once_and_merged_into_drift_reports() {
    let hub = TestHub::start().await;
    let mlp = Mlp::seeded(&[4, 8, 2], 4).with_softmax();
    let version = hub.register("occupancy", &mlp.to_onnx()).await.unwrap();
    let training = sensor_rows(1, 2000, 0.0);
    let with_baseline = hub
        .set_baseline("occupancy", "1", &sensor_csv(&training), &FEATURES)
        .await
        .unwrap();
    let summary = with_baseline.baseline.expect("a baseline");
    assert_eq!(summary.rows, 2000);
    assert_eq!(
        summary
            .features
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        FEATURES
    );
    assert!(summary
        .features
        .iter()
        .all(|f| f.kind == "numeric" && f.edges.len() == 9));
    assert_eq!(
        summary.outputs,
        vec!["y".to_string()],
        "the model's output distribution is the prediction baseline"
    );

    // The device's view of the baseline.
    let baseline = device_baseline(&training, &mlp);

    let device = hub.add_device("cam-01").await;
    let (client, mut eventloop) = mqtt_client_as(&device, &unique("cam-01-"));
    let topics = DeviceTopics::new(&hub.topic_prefix, "default", "cam-01");
    client
        .subscribe(topics.telemetry_ack(), QoS::AtLeastOnce)
        .await
        .unwrap();

    let window = |seq: u64, end_ms: i64, sample: &[[f32; 4]], dropped_records: u64| {
        let meta = WindowMeta {
            device: "cam-01",
            boot_epoch: 1,
            seq,
            end_ms,
            model: "occupancy",
            version: 1,
            digest: &version.digest,
            dropped_records,
        };
        window_payload(&baseline, &mlp, &meta, sample)
    };

    // Three windows like the training data an hour ago, one re-sent; three shifted ones now.
    let now = shoal_store::now_ms();
    let earlier = now - 3_600_000;
    let mut published = vec![
        window(0, earlier, &sensor_rows(10, 400, 0.0), 0),
        window(1, earlier + 60_000, &sensor_rows(11, 400, 0.0), 0),
        window(2, earlier + 120_000, &sensor_rows(12, 400, 0.0), 2),
    ];
    published.push(published[1].clone());
    published.push(window(3, now - 120_000, &sensor_rows(13, 400, 4.0), 2));
    published.push(window(4, now - 60_000, &sensor_rows(14, 400, 4.0), 3));
    for payload in &published {
        client
            .publish(topics.telemetry(), QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
    }
    let mut acked = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while acked.len() < published.len() {
            if let Event::Incoming(Packet::Publish(p)) = eventloop.poll().await.expect("broker") {
                acked.extend(
                    TelemetryAck::decode(p.payload.as_ref())
                        .expect("an ack")
                        .seqs,
                );
            }
        }
    })
    .await
    .expect("every window acknowledged, the duplicate too");
    assert_eq!(
        acked.iter().copied().collect::<BTreeSet<_>>(),
        (0..5).collect()
    );

    let mut grpc = hub.client().await;
    let stats = grpc
        .telemetry
        .get_device_telemetry(GetDeviceTelemetryRequest {
            workspace: "default".into(),
            device: "cam-01".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (stats.windows, stats.duplicates, stats.inferences),
        (5, 1, 2000)
    );
    let dropped = stats.dropped.unwrap();
    assert_eq!(
        (dropped.cap_records, dropped.items),
        (3, 30),
        "the latest window's accounting"
    );

    let report = |since_ms: i64, until_ms: i64| GetDriftReportRequest {
        workspace: "default".into(),
        model: "occupancy".into(),
        reference: "1".into(),
        since_ms,
        until_ms,
        devices: vec![],
        min_rows: 500,
    };
    let before = grpc
        .telemetry
        .get_drift_report(report(earlier - 60_000, earlier + 180_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (before.windows, before.inferences, before.devices),
        (3, 1200, 1)
    );
    assert_eq!(before.status, "none", "{before:?}");
    for f in &before.features {
        assert!(f.psi.unwrap() < 0.1 && f.js.unwrap() < 0.1, "{f:?}");
    }
    let after = grpc
        .telemetry
        .get_drift_report(report(now - 600_000, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((after.windows, after.inferences), (2, 800));
    assert_eq!(after.status, "significant", "{after:?}");
    assert!(
        after
            .features
            .iter()
            .all(|f| f.status == "significant" && f.psi.unwrap() >= 0.25),
        "{:?}",
        after.features
    );
    let everything = grpc
        .telemetry
        .get_drift_report(report(0, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (everything.windows, everything.inferences),
        (5, 2000),
        "hourly roll-ups and raw windows add up to the same"
    );
    let too_few = grpc
        .telemetry
        .get_drift_report(GetDriftReportRequest {
            min_rows: 100_000,
            ..report(0, 0)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(too_few
        .features
        .iter()
        .all(|f| f.status == "not_enough_data" && f.psi.is_none()));
    hub.shutdown().await;
}

/// `shoal telemetry tail`: windows reach a tail as the hub stores them, filtered by device.
/// A server-streaming call resolves only once the hub sends something, so the tail runs in a
/// task while devices keep reporting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_tail_streams_windows_as_they_arrive() {
    use futures::StreamExt;
    let hub = TestHub::start().await;
    let mlp = Mlp::seeded(&[4, 8, 2], 4).with_softmax();
    let version = hub.register("occupancy", &mlp.to_onnx()).await.unwrap();
    let training = sensor_rows(1, 500, 0.0);
    hub.set_baseline("occupancy", "1", &sensor_csv(&training), &FEATURES)
        .await
        .unwrap();
    let baseline = device_baseline(&training, &mlp);

    let mut tail_client = hub.client().await;
    let tail = tokio::spawn(async move {
        let mut stream = tail_client
            .telemetry
            .tail_telemetry(shoal_proto::telemetry::TailTelemetryRequest {
                workspace: "default".into(),
                device: "cam-02".into(),
            })
            .await
            .expect("tail")
            .into_inner();
        stream
            .next()
            .await
            .expect("a window")
            .expect("not an error")
    });

    let mut publishers = Vec::new();
    for id in ["cam-02", "cam-03"] {
        let device = hub.add_device(id).await;
        let (client, mut eventloop) = mqtt_client_as(&device, &unique(&format!("{id}-")));
        tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        publishers.push((
            id,
            client,
            DeviceTopics::new(&hub.topic_prefix, "default", id),
        ));
    }
    let mut seq = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !tail.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tail saw no window"
        );
        for (id, client, topics) in &publishers {
            let meta = WindowMeta {
                device: id,
                boot_epoch: 1,
                seq,
                end_ms: shoal_store::now_ms(),
                model: "occupancy",
                version: 1,
                digest: &version.digest,
                dropped_records: 0,
            };
            let payload = window_payload(&baseline, &mlp, &meta, &sensor_rows(seq, 20, 0.0));
            client
                .publish(topics.telemetry(), QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        seq += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let event = tail.await.expect("the tail task");
    let window = event.window.expect("a window");
    assert_eq!(event.workspace, "default");
    assert_eq!(window.device_id, "cam-02", "only the device asked for");
    assert!(event.received_at_ms > 0);
    hub.shutdown().await;
}
