//! Every gRPC call needs the hub's token.

use shoal_integration_tests::TestHub;
use shoal_proto::workspace::ListWorkspacesRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_or_with_a_wrong_token_are_unauthenticated() {
    let hub = TestHub::builder().embedded().start().await;
    for token in [None, Some("shoal_not_the_token")] {
        let mut client = hub.client_with_token(token).await;
        let error = client
            .workspaces
            .list_workspaces(ListWorkspacesRequest {})
            .await
            .unwrap_err();
        assert_eq!(
            error.code(),
            tonic::Code::Unauthenticated,
            "token {token:?}: {error}"
        );
    }
    let mut client = hub.client().await;
    assert!(client
        .workspaces
        .list_workspaces(ListWorkspacesRequest {})
        .await
        .is_ok());
    hub.shutdown().await;
}
