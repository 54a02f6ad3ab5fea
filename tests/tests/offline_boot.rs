//! An agent restarted while the hub (and its broker) is down boots into its last good model.

use shoal_integration_tests::{infer_body, output_values, TestAgent, TestHub};
use shoal_model::build::Mlp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restarted_without_hub_serves_last_model() {
    let hub = TestHub::builder().embedded().start().await;
    let dirs = tempfile::tempdir().unwrap();
    let data_dir = dirs.path().join("cam-01");
    let mlp = Mlp::seeded(&[4, 8, 2], 9);
    let version = hub.register("occupancy", &mlp.to_onnx()).await.unwrap();
    let config = hub.add_device("cam-01").await;
    let agent = TestAgent::start(config.clone(), &data_dir).await;
    hub.deploy("lobby", "occupancy", "1", &["cam-01"]).await;
    agent.wait_for_model(&version.digest).await;
    agent.stop().await;
    hub.shutdown().await;

    // The hub and its broker are gone; the agent starts anyway and serves from disk.
    let agent = TestAgent::start(config, &data_dir).await;
    let (status, model) = agent.get("/v1/model").await;
    assert_eq!(status, 200);
    assert_eq!(model["digest"], version.digest.as_str());
    let (status, answer) = agent.infer(&infer_body(&[[0.5, -1.0, 2.0, 4.0]])).await;
    assert_eq!(status, 200, "{answer}");
    let expected = mlp.forward(&[0.5, -1.0, 2.0, 4.0]);
    let got = output_values(&answer, "y");
    assert_eq!(got.len(), expected.len(), "{answer}");
    for (got, want) in got.iter().zip(expected) {
        assert!((got - want).abs() < 1e-5);
    }
    agent.stop().await;
}
