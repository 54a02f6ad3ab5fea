//! Bad requests to the local inference API get a clear 400 and the agent keeps serving.

use serde_json::json;
use shoal_integration_tests::{infer_body, TestAgent, TestHub};
use shoal_model::build::Mlp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_the_agent_keeps_serving() {
    let hub = TestHub::start().await;
    let dirs = tempfile::tempdir().unwrap();
    let version = hub
        .register("occupancy", &Mlp::seeded(&[4, 8, 2], 3).to_onnx())
        .await
        .unwrap();
    let agent = TestAgent::start(hub.add_device("cam-01").await, &dirs.path().join("cam-01")).await;
    hub.deploy("lobby", "occupancy", "latest", &["cam-01"])
        .await;
    agent.wait_for_model(&version.digest).await;

    let cases: Vec<(String, &str)> = vec![
        ("{\"inputs\": {".into(), "malformed JSON"),
        (
            json!({"inputs": {"z": {"shape": [1, 4], "data": [1, 2, 3, 4]}}}).to_string(),
            "unknown input 'z'",
        ),
        (
            json!({"inputs": {"x": {"shape": [1, 5], "data": [1, 2, 3, 4, 5]}}}).to_string(),
            "the model takes shape [N,4], got [1, 5]",
        ),
        (
            json!({"inputs": {"x": {"shape": [1, 4], "data": [1, 2, 3]}}}).to_string(),
            "holds 4 values, got 3",
        ),
        (
            json!({"inputs": {"x": {"shape": [1, 4], "dtype": "i64", "data": [1, 2, 3, 4]}}})
                .to_string(),
            "the model takes f32, got dtype i64",
        ),
        (
            json!({"inputs": {"x": {"shape": [1, 4], "data": [1, "two", 3, 4]}}}).to_string(),
            "element 1",
        ),
        (json!({"inputs": {}}).to_string(), "missing input 'x'"),
    ];
    for (body, expected) in cases {
        let (status, answer) = agent.post_raw(body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(expected),
            "{body}: '{message}' should mention '{expected}'"
        );
        // Still serving after every bad request.
        let (ok, _) = agent.infer(&infer_body(&[[1.0, 2.0, 3.0, 4.0]])).await;
        assert_eq!(ok, 200);
    }
    agent.stop().await;
    hub.shutdown().await;
}
