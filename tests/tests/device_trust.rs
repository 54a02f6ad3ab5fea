//! The hub trusts nothing a device says about another device, nor about a model it was not
//! given: identity comes from the topic, windows are taken only for the version the device is
//! assigned (others are counted as rejected and shown), and blobs are served only when the
//! device's current desired state references them (its model, its baseline).
//!
//! The test plays an enrolled device over the embedded broker, on its own topics only.

use prost::Message;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use shoal_integration_tests::fixtures::{sensor_csv, sensor_rows, FEATURES};
use shoal_integration_tests::{mqtt_client_as, unique, wait_for, TestHub};
use shoal_model::build::Mlp;
use shoal_proto::device::{
    ActiveModel, BlobChunk, BlobRequest, DesiredBody, DesiredState, ReportedState, TelemetryAck,
    TelemetryWindow,
};
use shoal_proto::telemetry::{DeviceTelemetry, GetDeviceTelemetryRequest};
use shoal_proto::topics::DeviceTopics;
use tokio::sync::mpsc;

/// The test acting as device `id`: what arrives on its `blob/res` and `telemetry/ack`.
struct PlayedDevice {
    client: AsyncClient,
    topics: DeviceTopics,
    chunks: mpsc::UnboundedReceiver<BlobChunk>,
    acks: mpsc::UnboundedReceiver<Vec<u64>>,
    desired: tokio::sync::watch::Receiver<Option<DesiredState>>,
}

impl PlayedDevice {
    async fn connect(hub: &TestHub, id: &str) -> PlayedDevice {
        let config = hub.add_device(id).await;
        let (client, mut eventloop) = mqtt_client_as(&config, &unique(&format!("{id}-")));
        let topics = DeviceTopics::new(&hub.topic_prefix, "default", id);
        let (chunks_tx, chunks) = mpsc::unbounded_channel();
        let (acks_tx, acks) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let (desired_tx, desired) = tokio::sync::watch::channel(None);
        let (blob_topic, ack_topic, desired_topic) = (
            topics.blob_response(),
            topics.telemetry_ack(),
            topics.desired(),
        );
        tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            let mut subacks = 0;
            while let Ok(event) = eventloop.poll().await {
                match event {
                    Event::Incoming(Packet::SubAck(_)) => {
                        subacks += 1;
                        if subacks == 3 {
                            if let Some(tx) = subscribed_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                    }
                    Event::Incoming(Packet::Publish(p)) if p.topic == blob_topic => {
                        let _ = chunks_tx.send(BlobChunk::decode(p.payload).expect("a chunk"));
                    }
                    Event::Incoming(Packet::Publish(p)) if p.topic == desired_topic => {
                        desired_tx.send_replace(DesiredState::decode(p.payload).ok());
                    }
                    Event::Incoming(Packet::Publish(p)) if p.topic == ack_topic => {
                        let _ = acks_tx.send(TelemetryAck::decode(p.payload).expect("an ack").seqs);
                    }
                    _ => {}
                }
            }
        });
        for topic in [
            topics.blob_response(),
            topics.telemetry_ack(),
            topics.desired(),
        ] {
            client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        }
        tokio::time::timeout(shoal_integration_tests::DEADLINE, subscribed)
            .await
            .expect("subscribed")
            .unwrap();
        PlayedDevice {
            client,
            topics,
            chunks,
            acks,
            desired,
        }
    }

    async fn publish(&self, topic: String, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    /// Asks for the first bytes of `digest` and returns the first chunk answered.
    async fn fetch(&mut self, digest: &str) -> BlobChunk {
        let request = BlobRequest {
            digest: digest.into(),
            offset: 0,
            length: 1024,
        };
        self.publish(self.topics.blob_request(), request.encode_to_vec())
            .await;
        tokio::time::timeout(shoal_integration_tests::DEADLINE, self.chunks.recv())
            .await
            .expect("an answer")
            .expect("chunks")
    }
}

fn window(device: &str, seq: u64, model: &str, version: u32, digest: &str) -> Vec<u8> {
    TelemetryWindow {
        device_id: device.into(),
        boot_epoch: 1,
        seq,
        start_ms: shoal_store::now_ms() - 1000,
        end_ms: shoal_store::now_ms(),
        model: Some(ActiveModel {
            model: model.into(),
            version,
            digest: digest.into(),
        }),
        inferences: 4,
        ..Default::default()
    }
    .encode_to_vec()
}

async fn telemetry(hub: &TestHub, id: &str) -> DeviceTelemetry {
    hub.client()
        .await
        .telemetry
        .get_device_telemetry(GetDeviceTelemetryRequest {
            workspace: "default".into(),
            device: id.into(),
        })
        .await
        .expect("device telemetry")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_device_says_about_others_or_unassigned_models_is_refused_and_counted() {
    let hub = TestHub::builder().embedded().start().await;
    let mlp = Mlp::seeded(&[4, 8, 2], 4).with_softmax();
    let v1 = hub.register("occupancy", &mlp.to_onnx()).await.unwrap();
    let v1 = hub
        .set_baseline(
            "occupancy",
            "1",
            &sensor_csv(&sensor_rows(1, 300, 0.0)),
            &FEATURES,
        )
        .await
        .map(|_| v1)
        .unwrap();
    let v2 = hub
        .register("occupancy", &Mlp::seeded(&[4, 6, 2], 5).to_onnx())
        .await
        .unwrap();
    let mut cam = PlayedDevice::connect(&hub, "cam-01").await;
    let _victim = PlayedDevice::connect(&hub, "cam-02").await;
    hub.deploy("v1", "occupancy", "1", &["cam-01"]).await;

    // A window for the assigned version is stored and acknowledged.
    cam.publish(
        cam.topics.telemetry(),
        window("cam-01", 1, "occupancy", 1, &v1.digest),
    )
    .await;
    assert_eq!(cam.acks.recv().await, Some(vec![1]));

    // One for a version it was not given is refused, counted, and acknowledged (sending it
    // again cannot change the answer).
    cam.publish(
        cam.topics.telemetry(),
        window("cam-01", 2, "occupancy", 2, &v2.digest),
    )
    .await;
    assert_eq!(cam.acks.recv().await, Some(vec![2]));

    // A window claiming to be cam-02's, on cam-01's topic, is refused and counted against
    // cam-01; cam-02 holds nothing.
    cam.publish(
        cam.topics.telemetry(),
        window("cam-02", 1, "occupancy", 1, &v1.digest),
    )
    .await;
    // A reported state naming cam-02, on cam-01's topic, is refused too.
    let lie = ReportedState {
        device_id: "cam-02".into(),
        health: "forged".into(),
        ..Default::default()
    };
    cam.publish(cam.topics.state(), lie.encode_to_vec()).await;

    let stats = wait_for("the refusals to be counted", || async {
        let stats = telemetry(&hub, "cam-01").await;
        (stats.rejected.get("wrong_device") == Some(&2)).then_some(stats)
    })
    .await;
    assert_eq!(stats.windows, 1);
    assert_eq!(stats.rejected.get("unassigned_model"), Some(&1));
    let victim = telemetry(&hub, "cam-02").await;
    assert_eq!(victim.windows, 0);
    assert!(victim.rejected.is_empty());
    assert!(hub.device("cam-02").await.reported.is_none());
    assert!(hub
        .device("cam-01")
        .await
        .reported
        .is_none_or(|r| r.health != "forged"));

    // Blobs: the assigned model and its baseline are served; any other digest gets an error
    // chunk naming why.
    let model = cam.fetch(&v1.digest).await;
    assert!(model.error.is_empty(), "{}", model.error);
    assert!(!model.data.is_empty());
    // The device learns its baseline's digest from its desired state, as an agent does.
    let mut desired = cam.desired.clone();
    let state = tokio::time::timeout(
        shoal_integration_tests::DEADLINE,
        desired.wait_for(|d| d.is_some()),
    )
    .await
    .expect("a desired state")
    .unwrap()
    .clone()
    .unwrap();
    let body = DesiredBody::decode(state.body.as_slice()).unwrap();
    assert_eq!(body.device, "cam-01");
    let baseline_digest = body
        .model
        .unwrap()
        .baseline
        .expect("a baseline blob")
        .digest;
    let baseline = cam.fetch(&baseline_digest).await;
    assert!(baseline.error.is_empty(), "{}", baseline.error);
    assert!(!baseline.data.is_empty());
    let other = cam.fetch(&v2.digest).await;
    assert!(other.data.is_empty());
    assert!(
        other
            .error
            .contains("not referenced by the desired state of device 'cam-01'"),
        "{}",
        other.error
    );
    hub.shutdown().await;
}
