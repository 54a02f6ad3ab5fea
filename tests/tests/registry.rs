//! Registration refuses what tract cannot run, with the cause; versions and aliases behave.

use shoal_integration_tests::TestHub;
use shoal_model::build::{single_operator_model, Mlp};
use shoal_proto::registry as rpb;
use shoal_proto::workspace as wpb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_models_are_refused_with_their_cause() {
    let hub = TestHub::builder()
        .embedded()
        .max_model_bytes(1024 * 1024)
        .start()
        .await;
    let garbage = hub
        .register("m", b"GIF89a this is certainly not an onnx model")
        .await
        .unwrap_err();
    assert!(
        garbage.starts_with("invalid:") && garbage.contains("not an ONNX model"),
        "{garbage}"
    );

    let good = Mlp::seeded(&[4, 8, 2], 1).to_onnx();
    let truncated = hub
        .register("m", &good[..good.len() - 100])
        .await
        .unwrap_err();
    assert!(
        truncated.contains("not an ONNX model") && truncated.contains("truncated"),
        "{truncated}"
    );

    let unsupported = hub
        .register("m", &single_operator_model("ShoalFancyOp"))
        .await
        .unwrap_err();
    assert!(
        unsupported.contains("unsupported operator ShoalFancyOp"),
        "{unsupported}"
    );

    let too_big = hub
        .register("m", &vec![0u8; 2 * 1024 * 1024])
        .await
        .unwrap_err();
    assert!(too_big.starts_with("too large:"), "{too_big}");

    // Nothing was registered by the failures.
    let models = hub
        .client()
        .await
        .registry
        .list_models(rpb::ListModelsRequest {
            workspace: "default".into(),
        })
        .await
        .unwrap();
    assert!(models.into_inner().models.is_empty());
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_increment_aliases_move_and_signatures_are_read() {
    let hub = TestHub::builder().embedded().start().await;
    let v1 = hub
        .register("occupancy", &Mlp::seeded(&[4, 8, 2], 1).to_onnx())
        .await
        .unwrap();
    let v2 = hub
        .register("occupancy", &Mlp::seeded(&[4, 8, 3], 2).to_onnx())
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    let signature = v2.signature.clone().unwrap();
    assert_eq!(signature.inputs[0].name, "x");
    assert_eq!(signature.outputs[0].shape.len(), 2);

    let mut client = hub.client().await;
    let set = |alias: &str, version| rpb::SetAliasRequest {
        workspace: "default".into(),
        name: "occupancy".into(),
        alias: alias.into(),
        version,
    };
    client
        .registry
        .set_alias(set("production", 1))
        .await
        .unwrap();
    let get = |reference: &str| rpb::GetModelVersionRequest {
        workspace: "default".into(),
        name: "occupancy".into(),
        reference: reference.into(),
    };
    assert_eq!(
        client
            .registry
            .get_model_version(get("production"))
            .await
            .unwrap()
            .into_inner()
            .version,
        1
    );
    client
        .registry
        .set_alias(set("production", 2))
        .await
        .unwrap();
    let moved = client
        .registry
        .get_model_version(get("production"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (moved.version, moved.aliases.clone()),
        (2, vec!["production".to_string()])
    );
    assert_eq!(
        client
            .registry
            .get_model_version(get("latest"))
            .await
            .unwrap()
            .into_inner()
            .digest,
        v2.digest
    );
    let missing = client
        .registry
        .set_alias(set("production", 7))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let numeric = client.registry.set_alias(set("3", 1)).await.unwrap_err();
    assert_eq!(numeric.code(), tonic::Code::InvalidArgument);

    // A workspace holding models is not deleted unless forced.
    let refused = client
        .workspaces
        .delete_workspace(wpb::DeleteWorkspaceRequest {
            name: "default".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("not empty"),
        "{}",
        refused.message()
    );
    client
        .workspaces
        .create_workspace(wpb::CreateWorkspaceRequest {
            name: "scratch".into(),
            description: String::new(),
        })
        .await
        .unwrap();
    client
        .workspaces
        .delete_workspace(wpb::DeleteWorkspaceRequest {
            name: "scratch".into(),
            force: false,
        })
        .await
        .unwrap();
    hub.shutdown().await;
}
