//! Desired state cannot be replayed: an older signed desired state re-published (retained) on a
//! device's `desired` topic, or one signed for another device, is refused by the agent itself,
//! which keeps the model it was told to run, says why in its reported state, and still refuses
//! after a restart. A rollback is a new, higher revision signed by the hub.
//!
//! The attacker is anyone who can publish on the victim's `desired` topic: here, a connection
//! to a Mosquitto broker that lets it (the agent under test is pointed at Mosquitto on
//! 127.0.0.1:1883 with a unique topic prefix), so the test relies on no broker ACL at all.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use shoal_integration_tests::{unique, wait_for, TestAgent, TestHub};
use shoal_model::build::Mlp;
use shoal_proto::topics::DeviceTopics;

const MOSQUITTO: &str = "mqtt://127.0.0.1:1883";

/// The last message a connection received: (topic, payload).
type LastMessage = std::sync::Arc<std::sync::Mutex<Option<(String, Vec<u8>)>>>;

/// A connection to the broker with no device's credentials, and what it received.
struct Attacker {
    client: AsyncClient,
    /// The last message received: (topic, payload).
    retained: LastMessage,
}

impl Attacker {
    fn connect() -> Attacker {
        let mut options = MqttOptions::new(unique("attacker-"), "127.0.0.1", 1883);
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let retained: LastMessage = Default::default();
        let tx = retained.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        *tx.lock().unwrap() = Some((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Attacker { client, retained }
    }

    /// The retained message on `topic` now (subscribes, takes it, unsubscribes).
    async fn capture(&mut self, topic: &str) -> Vec<u8> {
        *self.retained.lock().unwrap() = None;
        self.client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .unwrap();
        let payload = wait_for(&format!("the retained message on {topic}"), || async {
            self.retained
                .lock()
                .unwrap()
                .clone()
                .filter(|(t, p)| t == topic && !p.is_empty())
                .map(|(_, p)| p)
        })
        .await;
        self.client.unsubscribe(topic).await.unwrap();
        payload
    }

    async fn publish_retained(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .unwrap();
    }
}

async fn refusal(hub: &TestHub, id: &str, containing: &str) -> String {
    wait_for(
        &format!("{id} to refuse a desired state ({containing})"),
        || async {
            let refused = hub.device(id).await.reported?.refused?;
            refused
                .reason
                .contains(containing)
                .then_some(refused.reason)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_or_foreign_desired_state_replayed_on_the_topic_is_refused() {
    let hub = TestHub::builder().external(MOSQUITTO).start().await;
    let dirs = tempfile::tempdir().unwrap();
    let v1 = hub
        .register("m", &Mlp::seeded(&[4, 8, 2], 1).to_onnx())
        .await
        .unwrap();
    let v2 = hub
        .register("m", &Mlp::seeded(&[4, 16, 2], 2).to_onnx())
        .await
        .unwrap();
    let config = hub.add_device("cam-01").await;
    hub.add_device("cam-02").await;
    let data = dirs.path().join("cam-01");
    let agent = TestAgent::start(config.clone(), &data).await;
    let mut attacker = Attacker::connect();
    let victim = DeviceTopics::new(&hub.topic_prefix, "default", "cam-01").desired();
    let other = DeviceTopics::new(&hub.topic_prefix, "default", "cam-02").desired();

    // m@1, then m@2: the attacker keeps a copy of the desired state that said m@1.
    hub.deploy("first", "m", "1", &["cam-01"]).await;
    agent.wait_for_model(&v1.digest).await;
    let old = attacker.capture(&victim).await;
    hub.deploy("second", "m", "2", &["cam-01", "cam-02"]).await;
    agent.wait_for_model(&v2.digest).await;
    let for_cam_02 = attacker.capture(&other).await;

    // Replayed, retained: the agent refuses it, says why, and keeps serving m@2.
    attacker.publish_retained(&victim, old.clone()).await;
    let reason = refusal(&hub, "cam-01", "older than revision").await;
    assert!(reason.contains("already accepted"), "{reason}");
    let (_, model) = agent.get("/v1/model").await;
    assert_eq!(model["digest"], v2.digest.as_str(), "still m@2");

    // cam-02's own, current desired state (signed by the hub, a higher revision) is not
    // cam-01's to apply.
    attacker.publish_retained(&victim, for_cam_02).await;
    refusal(&hub, "cam-01", "addressed to device 'cam-02'").await;
    let (_, model) = agent.get("/v1/model").await;
    assert_eq!(model["digest"], v2.digest.as_str());

    // After a restart, with the replay still retained on the topic, it refuses it again: the
    // highest accepted revision is on disk.
    attacker.publish_retained(&victim, old.clone()).await;
    agent.stop().await;
    let restarted_at = shoal_store::now_ms();
    let agent = TestAgent::start(config, &data).await;
    agent.wait_for_model(&v2.digest).await;
    wait_for("the restarted agent to refuse the replay", || async {
        let refused = hub.device("cam-01").await.reported?.refused?;
        (refused.reason.contains("older than revision") && refused.at_ms >= restarted_at)
            .then_some(())
    })
    .await;
    let (_, model) = agent.get("/v1/model").await;
    assert_eq!(model["digest"], v2.digest.as_str());

    // The deployment status names the refusal when it concerns its revision: the current one
    // is accepted, so "second" reads active.
    let status = hub
        .client()
        .await
        .deployments
        .get_deployment(shoal_proto::deployment::GetDeploymentRequest {
            workspace: "default".into(),
            name: "second".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let cam_01 = status
        .status
        .iter()
        .find(|d| d.device_id == "cam-01")
        .expect("cam-01's progress");
    assert_eq!(cam_01.state, "active", "{cam_01:?}");

    // A rollback is a new deployment: a new, higher revision the hub signs.
    hub.deploy("rollback", "m", "1", &["cam-01"]).await;
    agent.wait_for_model(&v1.digest).await;
    agent.stop().await;
    hub.shutdown().await;
}
