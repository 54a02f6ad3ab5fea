//! Removing a device clears its retained topics, so a device enrolled again under the same id
//! starts clean.

use rumqttc::{Event, Packet, QoS};
use shoal_integration_tests::{unique, wait_for, TestAgent, TestHub, DEADLINE};
use shoal_model::build::Mlp;
use shoal_proto::fleet::RemoveDeviceRequest;
use shoal_proto::topics::DeviceTopics;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_device_leaves_no_retained_desired_state() {
    let hub = TestHub::start().await;
    let dirs = tempfile::tempdir().unwrap();
    let version = hub
        .register("occupancy", &Mlp::seeded(&[4, 8, 2], 1).to_onnx())
        .await
        .unwrap();
    let agent = TestAgent::start(hub.add_device("cam-01").await, &dirs.path().join("cam-01")).await;
    hub.deploy("lobby", "occupancy", "1", &["cam-01"]).await;
    agent.wait_for_model(&version.digest).await;
    agent.stop().await;

    hub.client()
        .await
        .fleet
        .remove_device(RemoveDeviceRequest {
            workspace: "default".into(),
            id: "cam-01".into(),
        })
        .await
        .expect("remove");

    // Look at the broker as a newcomer would: subscribe to the desired topic and to a marker
    // topic, then publish the marker. A retained message is delivered on subscription, so by
    // the time the marker comes back, any retained desired state would have arrived. The hub
    // clears the topic asynchronously (its publish is queued when the call returns), so look
    // again, with a fresh session, until the broker shows it cleared.
    let desired = DeviceTopics::new(&hub.topic_prefix, "default", "cam-01").desired();
    wait_for("the broker to hold no desired state for cam-01", || async {
        let retained = retained_on(&hub, &desired).await;
        retained
            .iter()
            .all(|payload| payload.is_empty())
            .then_some(())
    })
    .await;

    // The same id can be enrolled again, and nothing is wanted of it.
    hub.add_device("cam-01").await;
    assert_eq!(hub.device("cam-01").await.desired_model, "");
    hub.shutdown().await;
}

/// What a new subscriber to `topic` receives as retained, before a marker it sends itself.
/// It watches with the hub's login: a device may not read another device's topics.
async fn retained_on(hub: &TestHub, topic: &str) -> Vec<Vec<u8>> {
    let (client, mut eventloop) = hub.mqtt_client_as_hub(&unique("watcher-"));
    let marker = format!("{}/marker/{}", hub.topic_prefix, unique(""));
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    client.subscribe(&marker, QoS::AtLeastOnce).await.unwrap();
    let mut retained = Vec::new();
    let mut subacks = 0;
    tokio::time::timeout(DEADLINE, async {
        loop {
            match eventloop.poll().await.expect("broker reachable") {
                Event::Incoming(Packet::SubAck(_)) => {
                    subacks += 1;
                    if subacks == 2 {
                        client
                            .publish(&marker, QoS::AtLeastOnce, false, b"done".to_vec())
                            .await
                            .unwrap();
                    }
                }
                Event::Incoming(Packet::Publish(p)) if p.topic == marker => break,
                Event::Incoming(Packet::Publish(p)) if p.topic == topic => {
                    retained.push(p.payload.to_vec())
                }
                _ => {}
            }
        }
    })
    .await
    .expect("marker returns");
    let _ = client.disconnect().await;
    retained
}
