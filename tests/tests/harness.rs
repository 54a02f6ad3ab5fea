//! The harness itself: a hub starts on ephemeral ports, answers health, and shuts down.

use shoal_integration_tests::TestHub;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_hub_happy_path() {
    let hub = TestHub::start().await;
    let health: serde_json::Value = reqwest::get(format!("http://{}/healthz", hub.http_addr))
        .await
        .expect("http answers")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    let workspaces = hub
        .client()
        .await
        .workspaces
        .list_workspaces(shoal_proto::workspace::ListWorkspacesRequest {})
        .await
        .expect("list workspaces")
        .into_inner()
        .workspaces;
    assert!(
        workspaces.iter().any(|w| w.name == "default"),
        "a default workspace exists"
    );
    hub.shutdown().await;
}
