//! The hub's side of telemetry, with the test acting as a device over the real broker:
//! baselines from CSV, windows stored exactly once and acknowledged, duplicates recognised,
//! drift reports over a time range, and the device's drop accounting as it reported it.

use std::collections::BTreeSet;

use prost::Message;
use rumqttc::{Event, Packet, QoS};
use shoal_client::HubClient;
use shoal_integration_tests::fixtures::{
    device_baseline, sensor_csv, sensor_rows, window_payload, WindowMeta, FEATURES,
};
use shoal_integration_tests::{mqtt_client_as, unique, TestHub, DEADLINE};
use shoal_model::build::Mlp;
use shoal_proto::device::TelemetryAck;
use shoal_proto::telemetry::{
    GetDeviceTelemetryRequest, GetDriftReportRequest, TailTelemetryRequest, WindowEvent,
};
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
    // The hub takes windows only for the version a device is assigned.
    hub.deploy("to-cam-01", "occupancy", "1", &["cam-01"]).await;
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
    assert_eq!(before.features.len(), FEATURES.len(), "{before:?}");
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
    assert_eq!(after.features.len(), FEATURES.len(), "{after:?}");
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
    assert_eq!(too_few.features.len(), FEATURES.len(), "{too_few:?}");
    assert!(too_few
        .features
        .iter()
        .all(|f| f.status == "not_enough_data" && f.psi.is_none()));
    hub.shutdown().await;
}

/// `shoal telemetry tail`: windows reach a tail as the hub stores them, filtered by device.
///
/// The tail asks for cam-b only, and cam-a publishes first, and more. The hub stores windows,
/// and hands them to its tails, in the order it acknowledges them; every window of cam-a is
/// acknowledged before cam-b sends anything. So a tail that let cam-a's windows through
/// would show them before cam-b's: that the first windows it shows are exactly cam-b's says
/// the filter dropped cam-a's. A second tail with no filter, open alongside, shows cam-a's
/// windows did reach the tails: the filter, not silence, explains their absence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_tail_streams_windows_as_they_arrive() {
    const A_WINDOWS: u64 = 5;
    const B_WINDOWS: u64 = 2;
    let hub = TestHub::start().await;
    let mlp = Mlp::seeded(&[4, 8, 2], 4).with_softmax();
    let version = hub.register("occupancy", &mlp.to_onnx()).await.unwrap();
    let training = sensor_rows(1, 500, 0.0);
    hub.set_baseline("occupancy", "1", &sensor_csv(&training), &FEATURES)
        .await
        .unwrap();
    let baseline = device_baseline(&training, &mlp);
    let mut cam_a = PlayedDevice::connect(&hub, "cam-a").await;
    let mut cam_b = PlayedDevice::connect(&hub, "cam-b").await;

    // The hub subscribes a tail to its stored windows before it answers the call: once the
    // call returns, every window stored from then on is offered to the tail.
    let mut tail_client = hub.client().await;
    let mut only_b = open_tail(&mut tail_client, "cam-b").await;
    let mut everything = open_tail(&mut tail_client, "").await;

    let window = |device: &str, seq: u64| {
        let meta = WindowMeta {
            device,
            boot_epoch: 1,
            seq,
            end_ms: shoal_store::now_ms(),
            model: "occupancy",
            version: 1,
            digest: &version.digest,
            dropped_records: 0,
        };
        window_payload(&baseline, &mlp, &meta, &sensor_rows(100 + seq, 20, 0.0))
    };
    let a_seqs: Vec<u64> = (0..A_WINDOWS).collect();
    let b_seqs: Vec<u64> = (0..B_WINDOWS).collect();
    cam_a
        .publish_stored(&a_seqs, |seq| window("cam-a", seq))
        .await;
    cam_b
        .publish_stored(&b_seqs, |seq| window("cam-b", seq))
        .await;

    let expected = |device: &str, seqs: &[u64]| -> Vec<(String, u64)> {
        seqs.iter().map(|seq| (device.to_string(), *seq)).collect()
    };

    // cam-a's windows were published, stored, and offered to the tails before cam-b's.
    let all = next_events(&mut everything, A_WINDOWS + B_WINDOWS, "unfiltered tail").await;
    let mut in_order = expected("cam-a", &a_seqs);
    in_order.extend(expected("cam-b", &b_seqs));
    assert_eq!(
        seen(&all),
        in_order,
        "the unfiltered tail sees both devices"
    );
    let stats = hub
        .client()
        .await
        .telemetry
        .get_device_telemetry(GetDeviceTelemetryRequest {
            workspace: "default".into(),
            device: "cam-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.windows, A_WINDOWS, "cam-a's windows were stored");

    // The filtered tail: cam-b's windows and nothing of cam-a's before them.
    let events = next_events(&mut only_b, B_WINDOWS, "tail of cam-b").await;
    assert_eq!(
        seen(&events),
        expected("cam-b", &b_seqs),
        "only the device asked for"
    );
    for event in &events {
        assert_eq!(event.workspace, "default");
        assert!(event.received_at_ms > 0);
    }
    // An open tail holds the hub's shutdown (it waits for calls in flight): end them first.
    drop((only_b, everything, tail_client));
    hub.shutdown().await;
}

/// Opens a tail of `device`'s windows (all devices' when empty) in the default workspace.
async fn open_tail(client: &mut HubClient, device: &str) -> tonic::Streaming<WindowEvent> {
    let request = TailTelemetryRequest {
        workspace: "default".into(),
        device: device.into(),
    };
    tokio::time::timeout(DEADLINE, client.telemetry.tail_telemetry(request))
        .await
        .expect("the hub answers the tail call")
        .expect("tail")
        .into_inner()
}

/// The next `n` events of a tail, each within the deadline.
async fn next_events(
    stream: &mut tonic::Streaming<WindowEvent>,
    n: u64,
    what: &str,
) -> Vec<WindowEvent> {
    let mut events = Vec::new();
    for _ in 0..n {
        let event = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .unwrap_or_else(|_| panic!("{what}: only {} windows arrived", events.len()))
            .expect("not an error")
            .expect("the tail is still open");
        events.push(event);
    }
    events
}

/// (device, seq) of each event's window, in order.
fn seen(events: &[WindowEvent]) -> Vec<(String, u64)> {
    events
        .iter()
        .map(|e| {
            let window = e.window.as_ref().expect("a window");
            (window.device_id.clone(), window.seq)
        })
        .collect()
}

/// The test acting as an enrolled device over the broker: it publishes telemetry windows and
/// reads the hub's acknowledgements.
struct PlayedDevice {
    client: rumqttc::AsyncClient,
    topics: DeviceTopics,
    acks: tokio::sync::mpsc::UnboundedReceiver<Vec<u64>>,
}

impl PlayedDevice {
    /// Enrolls `id`, connects as it, and returns once its ack topic is subscribed.
    async fn connect(hub: &TestHub, id: &str) -> PlayedDevice {
        let device = hub.add_device(id).await;
        // The hub takes windows only for the version a device is assigned.
        hub.deploy(&format!("to-{id}"), "occupancy", "1", &[id])
            .await;
        let (client, mut eventloop) = mqtt_client_as(&device, &unique(&format!("{id}-")));
        let topics = DeviceTopics::new(&hub.topic_prefix, "default", id);
        client
            .subscribe(topics.telemetry_ack(), QoS::AtLeastOnce)
            .await
            .unwrap();
        let (acks_tx, acks) = tokio::sync::mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            while let Ok(event) = eventloop.poll().await {
                match event {
                    Event::Incoming(Packet::SubAck(_)) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        let ack = TelemetryAck::decode(p.payload.as_ref()).expect("an ack");
                        let _ = acks_tx.send(ack.seqs);
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(DEADLINE, subscribed)
            .await
            .expect("the broker acknowledges the subscription")
            .expect("the device's event loop runs");
        PlayedDevice {
            client,
            topics,
            acks,
        }
    }

    /// Publishes a window for each of `seqs` and waits until the hub acknowledged them all,
    /// that is, stored them.
    async fn publish_stored(&mut self, seqs: &[u64], payload: impl Fn(u64) -> Vec<u8>) {
        for seq in seqs {
            self.client
                .publish(
                    self.topics.telemetry(),
                    QoS::AtLeastOnce,
                    false,
                    payload(*seq),
                )
                .await
                .unwrap();
        }
        let mut acked = BTreeSet::new();
        tokio::time::timeout(DEADLINE, async {
            while !seqs.iter().all(|seq| acked.contains(seq)) {
                acked.extend(
                    self.acks
                        .recv()
                        .await
                        .expect("the device's event loop runs"),
                );
            }
        })
        .await
        .unwrap_or_else(|_| panic!("windows {seqs:?} acknowledged; got {acked:?}"));
    }
}

/// An open `shoal telemetry tail` must not hold the hub's shutdown: the server waits for
/// calls in flight, and a tail used to end only when the hub had stopped (found by the tail
/// test above, which hung on shutdown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_tail_ends_when_the_hub_shuts_down() {
    let hub = TestHub::start().await;
    let mut client = hub.client().await;
    let mut tail = open_tail(&mut client, "").await;
    tokio::time::timeout(DEADLINE, hub.shutdown())
        .await
        .expect("the hub shuts down with a tail open");
    let end = tokio::time::timeout(DEADLINE, tail.message())
        .await
        .expect("the tail ends");
    assert!(
        matches!(end, Ok(None) | Err(_)),
        "no window after shutdown: {end:?}"
    );
}
