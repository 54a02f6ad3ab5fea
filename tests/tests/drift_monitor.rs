//! A drift monitor over windows from a device (the test plays the device over the real
//! broker): rows like the baseline raise no alert; shifted rows raise one within two
//! evaluation periods, published on the workspace's events topic and POSTed to a webhook
//! whose HMAC-SHA256 signature checks out.

use prost::Message;
use rumqttc::{Event, Packet, QoS};
use shoal_integration_tests::fixtures::{
    device_baseline, sensor_csv, sensor_rows, window_payload, WebhookReceiver, WindowMeta, FEATURES,
};
use shoal_integration_tests::{mqtt_client_as, unique, wait_for, TestHub, DEADLINE};
use shoal_model::build::Mlp;
use shoal_proto::device::TelemetryAck;
use shoal_proto::telemetry::{
    hub_event, CreateMonitorRequest, HubEvent, ListAlertsRequest, MetricThreshold, Monitor,
};
use shoal_proto::topics::{self, DeviceTopics};

const PERIOD_MS: i64 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shifted_inputs_raise_a_signed_alert_within_two_periods() {
    let hub = TestHub::start().await;
    let mlp = Mlp::seeded(&[4, 8, 2], 4).with_softmax();
    let version = hub.register("occupancy", &mlp.to_onnx()).await.unwrap();
    let training = sensor_rows(1, 2000, 0.0);
    hub.set_baseline("occupancy", "1", &sensor_csv(&training), &FEATURES)
        .await
        .unwrap();
    let baseline = device_baseline(&training, &mlp);
    let mut grpc = hub.client().await;
    grpc.registry
        .set_alias(shoal_proto::registry::SetAliasRequest {
            workspace: "default".into(),
            name: "occupancy".into(),
            alias: "production".into(),
            version: 1,
        })
        .await
        .unwrap();

    let mut webhook = WebhookReceiver::start().await;
    let monitor = grpc
        .telemetry
        .create_monitor(CreateMonitorRequest {
            monitor: Some(Monitor {
                name: "occ-drift".into(),
                model: "occupancy".into(),
                reference: "production".into(),
                thresholds: vec![
                    MetricThreshold {
                        metric: "js".into(),
                        threshold: 0.1,
                    },
                    MetricThreshold {
                        metric: "psi".into(),
                        threshold: 0.25,
                    },
                ],
                every_ms: PERIOD_MS,
                min_rows: 1000,
                webhook_url: webhook.url.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        monitor.webhook_secret.len(),
        48,
        "the secret is shown at creation"
    );

    let device = hub.add_device("cam-01").await;
    // The hub takes windows only for the version a device is assigned.
    hub.deploy("to-cam-01", "occupancy", "1", &["cam-01"]).await;
    let (client, mut eventloop) = mqtt_client_as(&device, &unique("cam-01-"));
    let topics = DeviceTopics::new(&hub.topic_prefix, "default", "cam-01");
    client
        .subscribe(topics.telemetry_ack(), QoS::AtLeastOnce)
        .await
        .unwrap();
    // Workspace events are the hub's to read: a device may subscribe only to its own topics.
    let (watcher, mut watcher_loop) = hub.mqtt_client_as_hub(&unique("events-"));
    watcher
        .subscribe(
            topics::events(&hub.topic_prefix, "default"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = acks_tx.send(TelemetryAck::decode(p.payload.as_ref()).unwrap().seqs);
            }
        }
    });
    tokio::spawn(async move {
        while let Ok(event) = watcher_loop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = events_tx.send(HubEvent::decode(p.payload.as_ref()).unwrap());
            }
        }
    });

    // Sends one window that ends now, waits until the hub has stored it, and returns when.
    let mut seq = 0;
    let mut send = |shift: f32| {
        seq += 1;
        let meta = WindowMeta {
            device: "cam-01",
            boot_epoch: 1,
            seq,
            end_ms: shoal_store::now_ms(),
            model: "occupancy",
            version: 1,
            digest: &version.digest,
            dropped_records: 0,
        };
        let payload = window_payload(&baseline, &mlp, &meta, &sensor_rows(100 + seq, 2000, shift));
        (seq, meta.end_ms, payload)
    };

    // Phase 1: like the baseline. The evaluations that see the calm windows do not breach.
    for _ in 0..2 {
        let (seq, _, payload) = send(0.0);
        let published_at = shoal_store::now_ms();
        client
            .publish(topics.telemetry(), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        tokio::time::timeout(DEADLINE, async {
            while !acks.recv().await.unwrap().contains(&seq) {}
        })
        .await
        .expect("stored");
        let evaluation = wait_for("an evaluation that saw the calm window", || async {
            hub.evaluations_after("occ-drift", published_at)
                .await
                .into_iter()
                .find(|e| e.windows > 0)
        })
        .await;
        assert_eq!(evaluation.windows, 1, "{evaluation:?}");
        assert_eq!(evaluation.status, "none", "{evaluation:?}");
        assert!(evaluation.breaches.is_empty());
    }
    let alerts = grpc
        .telemetry
        .list_alerts(ListAlertsRequest {
            workspace: "default".into(),
            monitor: String::new(),
        })
        .await
        .unwrap();
    assert!(
        alerts.into_inner().alerts.is_empty(),
        "no alert for data like the baseline"
    );

    // Phase 2: shifted rows. One of the first two evaluations after they are sent alerts.
    let (seq, _, payload) = send(4.0);
    let published_at = shoal_store::now_ms();
    client
        .publish(topics.telemetry(), QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, async {
        while !acks.recv().await.unwrap().contains(&seq) {}
    })
    .await
    .expect("stored");
    let alert = hub.wait_for_alert("occ-drift").await;
    let evaluations = hub.evaluations_after("occ-drift", published_at).await;
    let position = evaluations
        .iter()
        .position(|e| e.at_ms == alert.at_ms)
        .expect("the alert's evaluation");
    assert!(
        position < 2,
        "alerted at evaluation {} after the shift: {evaluations:?}",
        position + 1
    );
    assert_eq!(alert.version, 1, "the alias was resolved");
    assert!(alert.breaches.iter().all(|b| b.value >= b.threshold));
    for metric in ["js", "psi"] {
        assert!(
            alert.breaches.iter().any(|b| b.metric == metric),
            "{metric} breached: {:?}",
            alert.breaches
        );
    }
    assert!(alert.breaches.iter().any(|b| b.feature == "temp"));

    // The same alert on the events topic...
    let event = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("an event")
        .unwrap();
    let Some(hub_event::Event::Alert(published)) = event.event else {
        panic!("an alert event")
    };
    assert_eq!(published.id, alert.id);

    // ...and at the webhook, with a signature made with the monitor's secret.
    let (headers, body) = tokio::time::timeout(DEADLINE, webhook.requests.recv())
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
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["type"], "drift_alert");
    assert_eq!(json["alert"]["id"], alert.id.as_str());
    assert_eq!(json["alert"]["monitor"], "occ-drift");
    hub.shutdown().await;
}
