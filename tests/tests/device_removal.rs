//! Removing a device clears its retained topics, so a device enrolled again under the same id
//! starts clean.

use shoal_integration_tests::{wait_for, TestAgent, TestHub};
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
        let retained = hub.retained_on(&desired).await;
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
