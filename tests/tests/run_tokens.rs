//! Scoped machine tokens: a script run acts with a token of its own that reaches only that
//! run (logging, over gRPC and the MLflow API) and its inputs, and dies with the run; a
//! worker's token leases and reports runs and nothing else, and hands each run the run's
//! token, never its own.

use std::path::Path;

use shoal_integration_tests::{wait_for, TestHub};
use shoal_proto::access as apb;
use shoal_proto::training as pb;
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// A script that publishes its `SHOAL_TOKEN` into `$OUT/token`, then runs until `$OUT/done`
/// exists, so the test can act with the token while the run runs.
const SCRIPT: &str = r#"
printf '%s' "$SHOAL_TOKEN" > "$OUT/token.tmp" && mv "$OUT/token.tmp" "$OUT/token"
[ "$SHOAL_TOKEN" = "$MLFLOW_TRACKING_TOKEN" ] || exit 7
while [ ! -f "$OUT/done" ]; do sleep 0.05; done
"#;

async fn submit_script(hub: &TestHub, out: &Path, compute: &str) -> pb::Run {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("run.sh"), SCRIPT).expect("write");
    let snapshot = shoal_compute::pack_dir(dir.path(), 1 << 20).expect("pack");
    let header = pb::SubmitRunHeader {
        experiment: "tokens".into(),
        compute: compute.into(),
        job: Some(pb::submit_run_header::Job::Script(pb::ScriptJob {
            command: vec!["sh".into(), "run.sh".into()],
            env: [("OUT".to_string(), out.display().to_string())]
                .into_iter()
                .collect(),
            secrets: Default::default(),
        })),
        ..Default::default()
    };
    let messages = vec![
        pb::SubmitRunRequest {
            part: Some(pb::submit_run_request::Part::Header(header)),
        },
        pb::SubmitRunRequest {
            part: Some(pb::submit_run_request::Part::Chunk(snapshot.bytes)),
        },
    ];
    hub.client()
        .await
        .training
        .submit_run(futures::stream::iter(messages))
        .await
        .expect("submitted")
        .into_inner()
}

async fn token_of_the_run(out: &Path) -> String {
    let path = out.join("token");
    wait_for("the run to publish its token", || async {
        std::fs::read_to_string(&path).ok()
    })
    .await
}

/// An MLflow call with `token`; returns the HTTP status.
async fn mlflow(
    hub: &TestHub,
    token: &str,
    method: &str,
    endpoint: &str,
    body: serde_json::Value,
) -> u16 {
    let url = format!("http://{}/api/2.0/mlflow/{endpoint}", hub.http_addr);
    let client = reqwest::Client::new();
    let request = if method == "GET" {
        client.get(&url).query(
            &body
                .as_object()
                .expect("fields")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect::<Vec<_>>(),
        )
    } else {
        client.post(&url).json(&body)
    };
    request
        .bearer_auth(token)
        .send()
        .await
        .expect("mlflow call")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_token_reaches_only_its_own_run_and_dies_with_it() {
    let hub = TestHub::builder().embedded().start().await;
    // Another run, queued for a worker that never comes.
    let other_out = tempfile::tempdir().expect("temp dir");
    let other = submit_script(&hub, other_out.path(), "worker").await;
    let out = tempfile::tempdir().expect("temp dir");
    let run = submit_script(&hub, out.path(), "local").await;
    let token = token_of_the_run(out.path()).await;
    assert_ne!(token, hub.token, "runs no longer get the admin token");
    assert!(token.starts_with("shoal_"), "{token}");

    let mut client = hub.client_with_token(Some(&token)).await;
    let own = client
        .training
        .get_run(pb::GetRunRequest {
            run_id: run.id.clone(),
        })
        .await
        .expect("a run reads itself");
    assert_eq!(own.into_inner().id, run.id);
    let who = client
        .access
        .who_am_i(apb::WhoAmIRequest {})
        .await
        .expect("who am i")
        .into_inner()
        .token
        .expect("a token");
    assert_eq!(who.role, "run");

    // Everything else is refused.
    let listed = client
        .training
        .list_runs(pb::ListRunsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(listed.code(), Code::PermissionDenied, "{listed}");
    let another = client
        .training
        .get_run(pb::GetRunRequest {
            run_id: other.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(another.code(), Code::PermissionDenied, "{another}");
    let canceled = client
        .training
        .cancel_run(pb::CancelRunRequest {
            run_id: other.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(canceled.code(), Code::PermissionDenied, "{canceled}");
    let model = client
        .registry
        .set_alias(shoal_proto::registry::SetAliasRequest {
            name: "occupancy".into(),
            alias: "prod".into(),
            version: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(model.code(), Code::PermissionDenied, "{model}");

    // The MLflow API accepts it for its run only.
    let metric = serde_json::json!({
        "run_id": run.id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0
    });
    assert_eq!(
        mlflow(&hub, &token, "POST", "runs/log-metric", metric).await,
        200
    );
    let elsewhere = serde_json::json!({
        "run_id": other.id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0
    });
    assert_eq!(
        mlflow(&hub, &token, "POST", "runs/log-metric", elsewhere).await,
        403
    );
    let get_other = serde_json::json!({ "run_id": other.id });
    assert_eq!(
        mlflow(&hub, &token, "GET", "runs/get", get_other).await,
        403
    );
    let search = serde_json::json!({ "experiment_ids": ["0"] });
    assert_eq!(
        mlflow(&hub, &token, "POST", "runs/search", search).await,
        403
    );
    let create = serde_json::json!({ "name": "stolen" });
    assert_eq!(
        mlflow(&hub, &token, "POST", "registered-models/create", create).await,
        403
    );

    std::fs::write(out.path().join("done"), "").expect("let the run end");
    let ended = hub.wait_for_run_end(&run.id).await;
    assert_eq!(ended.status, "completed", "{:?}", ended.log_tail);
    let after = client
        .training
        .get_run(pb::GetRunRequest {
            run_id: run.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated, "{after}");
    let listed = hub
        .client()
        .await
        .access
        .list_tokens(apb::ListTokensRequest {})
        .await
        .expect("tokens")
        .into_inner()
        .tokens;
    let run_token = listed
        .iter()
        .find(|t| t.name == format!("run-{}", run.id))
        .expect("the run's token is listed");
    assert_eq!(run_token.state, "revoked");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_token_leases_runs_and_hands_each_its_own_token() {
    let hub = TestHub::builder().embedded().start().await;
    let worker_token = hub
        .client()
        .await
        .access
        .create_token(apb::CreateTokenRequest {
            name: "w1".into(),
            role: "worker".into(),
            workspace: String::new(),
            expires_in_ms: 0,
        })
        .await
        .expect("a worker token")
        .into_inner()
        .secret;
    let mut as_worker = hub.client_with_token(Some(&worker_token)).await;
    let refused = as_worker
        .training
        .list_runs(pb::ListRunsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");

    let work = tempfile::tempdir().expect("work dir");
    let stop = CancellationToken::new();
    let config = shoal_worker::WorkerConfig {
        hub_url: format!("http://{}", hub.grpc_addr),
        token: Some(worker_token.clone()),
        ca: None,
        worker_id: "w1".into(),
        labels: Vec::new(),
        work_dir: work.path().to_path_buf(),
    };
    let worker = tokio::spawn(shoal_worker::run_worker(
        config,
        stop.clone().cancelled_owned(),
    ));
    let out = tempfile::tempdir().expect("temp dir");
    let run = submit_script(&hub, out.path(), "worker").await;
    let token = token_of_the_run(out.path()).await;
    assert_ne!(
        token, worker_token,
        "the worker hands the run its own token"
    );
    let who = hub
        .client_with_token(Some(&token))
        .await
        .access
        .who_am_i(apb::WhoAmIRequest {})
        .await
        .expect("who am i")
        .into_inner()
        .token
        .expect("a token");
    assert_eq!(who.name, format!("run-{}", run.id));
    std::fs::write(out.path().join("done"), "").expect("let the run end");
    let ended = hub.wait_for_run_end(&run.id).await;
    assert_eq!(ended.status, "completed", "{:?}", ended.log_tail);
    stop.cancel();
    let _ = worker.await;
    hub.shutdown().await;
}

/// The methods that name a run by id check the run's workspace: another workspace's owner
/// is refused on a real run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_one_workspace_is_out_of_reach_of_another() {
    let hub = TestHub::builder().embedded().start().await;
    let mut admin = hub.client().await;
    admin
        .workspaces
        .create_workspace(shoal_proto::workspace::CreateWorkspaceRequest {
            name: "elsewhere".into(),
            description: String::new(),
        })
        .await
        .expect("workspace");
    let secret = admin
        .access
        .create_token(apb::CreateTokenRequest {
            name: "other-owner".into(),
            role: "owner".into(),
            workspace: "elsewhere".into(),
            expires_in_ms: 0,
        })
        .await
        .expect("token")
        .into_inner()
        .secret;
    let out = tempfile::tempdir().expect("temp dir");
    let run = submit_script(&hub, out.path(), "worker").await;
    let mut other = hub.client_with_token(Some(&secret)).await;
    let id = || run.id.clone();
    let codes = [
        other
            .training
            .get_run(pb::GetRunRequest { run_id: id() })
            .await
            .map(drop),
        other
            .training
            .cancel_run(pb::CancelRunRequest { run_id: id() })
            .await
            .map(drop),
        other
            .training
            .get_metric_history(pb::MetricHistoryRequest {
                run_id: id(),
                key: "loss".into(),
            })
            .await
            .map(drop),
        other
            .training
            .list_run_artifacts(pb::ListRunArtifactsRequest { run_id: id() })
            .await
            .map(drop),
        other
            .training
            .register_from_run(pb::RegisterFromRunRequest {
                run_id: id(),
                ..Default::default()
            })
            .await
            .map(drop),
    ];
    for (i, answer) in codes.into_iter().enumerate() {
        let status = answer.expect_err("refused");
        assert_eq!(status.code(), Code::PermissionDenied, "call {i}: {status}");
    }
    hub.shutdown().await;
}
