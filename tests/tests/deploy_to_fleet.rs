//! Register a model, deploy it to two of three devices over MQTT, and infer on them.
//!
//! Runs against the embedded broker, and against an external one when `SHOAL_TEST_MQTT_URL`
//! is set (CI runs it again against the machine's Mosquitto).

use shoal_integration_tests::{infer_body, output_values, wait_for, TestAgent, TestHub};
use shoal_model::build::Mlp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployed_model_serves_on_targets_and_leaves_others_alone() {
    let hub = TestHub::start().await;
    let dirs = tempfile::tempdir().unwrap();
    let mlp = Mlp::seeded(&[4, 16, 3], 11).with_softmax();
    let version = hub
        .register("occupancy", &mlp.to_onnx())
        .await
        .expect("register");
    assert_eq!(version.version, 1);

    let mut agents = Vec::new();
    for id in ["cam-01", "cam-02", "cam-03"] {
        let config = hub.add_device(id).await;
        agents.push(TestAgent::start(config, &dirs.path().join(id)).await);
    }
    for id in ["cam-01", "cam-02", "cam-03"] {
        wait_for(&format!("{id} online"), || async {
            hub.device(id).await.online.then_some(())
        })
        .await;
    }

    hub.deploy("lobby", "occupancy", "1", &["cam-01", "cam-02"])
        .await;
    for id in ["cam-01", "cam-02"] {
        let device = hub.wait_for_active(id, &version.digest).await;
        let active = device.reported.unwrap().active.unwrap();
        assert_eq!((active.model.as_str(), active.version), ("occupancy", 1));
    }

    let rows = [[1.0f32, 2.0, 3.0, 4.0], [-3.5, 0.25, 10.0, 7.0]];
    for agent in &agents[..2] {
        let (status, answer) = agent.infer(&infer_body(&rows)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["model"], "occupancy");
        assert_eq!(answer["version"], 1);
        assert_eq!(answer["outputs"]["y"]["shape"], serde_json::json!([2, 3]));
        let got = output_values(&answer, "y");
        assert_eq!(got.len(), rows.len() * 3, "{answer}");
        for (r, row) in rows.iter().enumerate() {
            let expected = mlp.forward(row);
            assert_eq!(expected.len(), 3);
            for (o, e) in expected.iter().enumerate() {
                assert!(
                    (got[r * 3 + o] - e).abs() < 1e-5,
                    "row {r} output {o}: {} vs {e}",
                    got[r * 3 + o]
                );
            }
        }
    }

    // The third device was not a target: no model, and the hub wants none on it.
    let (status, answer) = agents[2].infer(&infer_body(&rows[..1])).await;
    assert_eq!(status, 503, "{answer}");
    let third = hub.device("cam-03").await;
    assert!(third.online);
    assert_eq!(third.desired_model, "");
    assert!(third.reported.and_then(|r| r.active).is_none());

    // The deployment shows both targets active.
    let deployment = hub
        .client()
        .await
        .deployments
        .get_deployment(shoal_proto::deployment::GetDeploymentRequest {
            workspace: "default".into(),
            name: "lobby".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let states: Vec<&str> = deployment.status.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, vec!["active", "active"]);

    for agent in agents {
        agent.stop().await;
    }
    hub.shutdown().await;
}
