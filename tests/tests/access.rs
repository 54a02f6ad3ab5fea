//! Identities and roles end to end: every gRPC method, taken from the generated service
//! descriptors so that a new method cannot be forgotten, is called over a real socket with no
//! token, a wrong one, a revoked one, a reader's on writing methods, another workspace's and a
//! worker's, and each is refused with the right code. Reflection needs a token and answers in
//! v1 and v1alpha; health needs none. The audit log records writing calls, refused or not.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut};
use prost::Message;
use shoal_integration_tests::TestHub;
use shoal_proto::access as apb;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Sends and receives raw protobuf bytes, so one client calls any method.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// Every method of every service in Shoal's descriptors, as full gRPC paths.
fn every_method() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(shoal_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut paths = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                paths.push(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    assert!(
        paths.len() > 50,
        "descriptors hold every service: {paths:?}"
    );
    paths
}

/// Calls `path` with one empty message and `token`; the code of the answer's status (`Ok`
/// when the call was let through and answered).
async fn call(channel: &Channel, path: &str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("the channel is ready");
    let mut request = tonic::Request::new(futures::stream::iter(vec![Vec::<u8>::new()]));
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii token"),
        );
    }
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path).expect("a path");
    match grpc.streaming(request, path, RawCodec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// Creates a token with the admin's client and returns its secret.
async fn create_token(hub: &TestHub, name: &str, role: &str, workspace: &str) -> String {
    hub.client()
        .await
        .access
        .create_token(apb::CreateTokenRequest {
            name: name.into(),
            role: role.into(),
            workspace: workspace.into(),
            expires_in_ms: 0,
        })
        .await
        .expect("the admin creates tokens")
        .into_inner()
        .secret
}

/// A method whose name says it changes something.
fn sounds_like_a_write(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    [
        "Create", "Upload", "Set", "Delete", "Remove", "Add", "Submit", "Cancel", "Register",
        "Revoke", "Lease", "Report", "Complete",
    ]
    .iter()
    .any(|verb| method.starts_with(verb))
}

/// Methods that address what they act on by id, or read an upload's header first: with an
/// empty message they fail on the missing id or header before the workspace is known, which
/// refuses them just as well (they act on nothing). `run_tokens.rs`
/// (`a_run_of_one_workspace_is_out_of_reach_of_another`) checks the run methods with real ids.
const REFUSED_BEFORE_THE_WORKSPACE_IS_KNOWN: &[(&str, Code)] = &[
    (
        "/shoal.registry.v1.RegistryService/UploadModel",
        Code::InvalidArgument,
    ),
    (
        "/shoal.registry.v1.RegistryService/SetBaseline",
        Code::InvalidArgument,
    ),
    (
        "/shoal.training.v1.TrainingService/UploadDataset",
        Code::InvalidArgument,
    ),
    (
        "/shoal.training.v1.TrainingService/SubmitRun",
        Code::InvalidArgument,
    ),
    (
        "/shoal.training.v1.TrainingService/GetDataset",
        Code::NotFound,
    ),
    (
        "/shoal.training.v1.TrainingService/RegisterDatasetFromRun",
        Code::NotFound,
    ),
    ("/shoal.training.v1.TrainingService/GetRun", Code::NotFound),
    (
        "/shoal.training.v1.TrainingService/CancelRun",
        Code::NotFound,
    ),
    (
        "/shoal.training.v1.TrainingService/GetMetricHistory",
        Code::NotFound,
    ),
    (
        "/shoal.training.v1.TrainingService/StreamRunLogs",
        Code::NotFound,
    ),
    (
        "/shoal.training.v1.TrainingService/ListRunArtifacts",
        Code::NotFound,
    ),
    (
        "/shoal.training.v1.TrainingService/DownloadRunArtifact",
        Code::NotFound,
    ),
    (
        "/shoal.training.v1.TrainingService/RegisterFromRun",
        Code::NotFound,
    ),
    (
        "/shoal.training.v1.TrainingService/GetSweep",
        Code::NotFound,
    ),
    (
        "/shoal.access.v1.AccessService/CreateToken",
        Code::InvalidArgument,
    ),
    ("/shoal.access.v1.AccessService/RevokeToken", Code::NotFound),
];

/// Methods any token of any workspace may call: they act on no workspace (a content-addressed
/// upload) or list only what the caller may see.
const HUB_WIDE: &[&str] = &[
    "/shoal.training.v1.TrainingService/UploadSource",
    "/shoal.access.v1.AccessService/ListTokens",
    "/shoal.access.v1.AccessService/ListAudit",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_refuses_callers_without_the_right_token_and_role() {
    let hub = TestHub::builder().embedded().start().await;
    let channel = Channel::from_shared(format!("http://{}", hub.grpc_addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    hub.client()
        .await
        .workspaces
        .create_workspace(shoal_proto::workspace::CreateWorkspaceRequest {
            name: "elsewhere".into(),
            description: String::new(),
        })
        .await
        .expect("create a second workspace");
    let reader = create_token(&hub, "reader", "reader", "default").await;
    let other = create_token(&hub, "other-owner", "owner", "elsewhere").await;
    let worker = create_token(&hub, "w1", "worker", "").await;
    let revoked = create_token(&hub, "gone", "owner", "default").await;
    hub.client()
        .await
        .access
        .revoke_token(apb::RevokeTokenRequest {
            name: "gone".into(),
        })
        .await
        .expect("revoke");

    let mut wrong: BTreeMap<String, String> = BTreeMap::new();
    let mut expect = |path: &str, who: &str, got: Code, want: &[Code]| {
        if !want.contains(&got) {
            wrong.insert(
                format!("{path} with {who}"),
                format!("{got:?}, want {want:?}"),
            );
        }
    };
    for path in every_method() {
        let Some(rule) = shoal_hub::api::rules::rule_for(&path) else {
            expect(&path, "the access table", Code::NotFound, &[Code::Ok]);
            continue;
        };
        if sounds_like_a_write(&path) && !rule.writes {
            expect(&path, "a writing name", Code::Ok, &[Code::Aborted]);
        }
        for (who, token) in [
            ("no token", None),
            ("a wrong token", Some("shoal_0000")),
            ("a revoked token", Some(revoked.as_str())),
        ] {
            let got = call(&channel, &path, token).await;
            expect(&path, who, got, &[Code::Unauthenticated]);
        }
        // The admin reaches every handler (which may then refuse the empty message).
        let got = call(&channel, &path, Some(&hub.token)).await;
        if matches!(
            got,
            Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented
        ) {
            expect(&path, "the admin", got, &[Code::Ok]);
        }
        use shoal_access::Least;
        if rule.least == Least::Authenticated {
            continue;
        }
        if rule.writes {
            let got = call(&channel, &path, Some(&reader)).await;
            expect(&path, "a reader", got, &[Code::PermissionDenied]);
        }
        if rule.least != Least::Worker {
            let got = call(&channel, &path, Some(&worker)).await;
            expect(&path, "a worker token", got, &[Code::PermissionDenied]);
        }
        let got = call(&channel, &path, Some(&other)).await;
        let want = match REFUSED_BEFORE_THE_WORKSPACE_IS_KNOWN
            .iter()
            .find(|(p, _)| *p == path)
        {
            Some((_, code)) => vec![Code::PermissionDenied, *code],
            None if HUB_WIDE.contains(&path.as_str()) => vec![Code::Ok],
            None => vec![Code::PermissionDenied],
        };
        expect(&path, "another workspace's owner", got, &want);
    }
    assert!(wrong.is_empty(), "wrong answers: {wrong:#?}");
    hub.shutdown().await;
}

/// Reflection answers only with a token, in v1 and in v1alpha (what grpcio-reflection and
/// older grpcurl ask); health answers without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_needs_a_token_in_both_versions_and_health_needs_none() {
    use tonic_reflection::pb::{v1, v1alpha};
    let hub = TestHub::builder().embedded().start().await;
    let channel = Channel::from_shared(format!("http://{}", hub.grpc_addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let with = |token: Option<String>| {
        move |mut request: tonic::Request<()>| {
            if let Some(token) = &token {
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {token}").parse().expect("ascii"),
                );
            }
            Ok(request)
        }
    };
    for token in [None, Some(hub.token.clone())] {
        let mut client = v1::server_reflection_client::ServerReflectionClient::with_interceptor(
            channel.clone(),
            with(token.clone()),
        );
        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let answer = client
            .server_reflection_info(futures::stream::iter(vec![request]))
            .await;
        match (&token, answer) {
            (None, Err(status)) => assert_eq!(status.code(), Code::Unauthenticated),
            (Some(_), Ok(response)) => {
                let first = response
                    .into_inner()
                    .message()
                    .await
                    .expect("a reflection answer")
                    .expect("one message");
                let text = format!("{first:?}");
                assert!(text.contains("shoal.access.v1.AccessService"), "{text}");
            }
            (token, other) => panic!("v1 with {token:?}: {other:?}"),
        }

        let mut client =
            v1alpha::server_reflection_client::ServerReflectionClient::with_interceptor(
                channel.clone(),
                with(token.clone()),
            );
        let request = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let answer = client
            .server_reflection_info(futures::stream::iter(vec![request]))
            .await;
        match (&token, answer) {
            (None, Err(status)) => assert_eq!(status.code(), Code::Unauthenticated),
            (Some(_), Ok(response)) => {
                let first = response
                    .into_inner()
                    .message()
                    .await
                    .expect("a v1alpha reflection answer")
                    .expect("one message");
                let text = format!("{first:?}");
                assert!(text.contains("shoal.training.v1.TrainingService"), "{text}");
            }
            (token, other) => panic!("v1alpha with {token:?}: {other:?}"),
        }
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "shoal.training.v1.TrainingService".into(),
        })
        .await
        .expect("health needs no token")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    hub.shutdown().await;
}

/// Writing calls are audited with who, role, workspace, method, target and result, refused
/// ones included; reads are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_calls_are_audited_with_who_what_and_the_result() {
    use shoal_proto::training as pb;
    let hub = TestHub::builder().embedded().start().await;
    let reader = create_token(&hub, "ana", "reader", "default").await;
    let mut as_reader = hub.client_with_token(Some(&reader)).await;
    let refused = as_reader
        .training
        .create_experiment(pb::CreateExperimentRequest {
            workspace: String::new(),
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");
    assert!(refused.message().contains("reader"), "{refused}");
    as_reader
        .training
        .list_experiments(pb::ListExperimentsRequest::default())
        .await
        .expect("a reader reads");
    let mut admin = hub.client().await;
    admin
        .training
        .create_experiment(pb::CreateExperimentRequest {
            workspace: String::new(),
            name: "audited".into(),
        })
        .await
        .expect("the admin creates");

    let log = admin
        .access
        .list_audit(apb::ListAuditRequest::default())
        .await
        .expect("the admin reads the audit log")
        .into_inner()
        .records;
    let create = "/shoal.training.v1.TrainingService/CreateExperiment";
    let by_ana: Vec<_> = log.iter().filter(|r| r.actor == "ana").collect();
    assert_eq!(by_ana.len(), 1, "reads are not audited: {log:?}");
    assert_eq!(by_ana[0].method, create);
    assert_eq!(by_ana[0].role, "reader");
    assert_eq!(by_ana[0].result, "PERMISSION_DENIED");
    let by_admin = log
        .iter()
        .find(|r| r.actor == "admin" && r.method == create)
        .expect("the admin's create is audited");
    assert_eq!(by_admin.result, "ok");
    assert_eq!(by_admin.workspace, "default");
    assert_eq!(by_admin.target, "default");
    assert!(by_admin.time_ms > 0);
    let filtered = admin
        .access
        .list_audit(apb::ListAuditRequest {
            since_ms: by_admin.time_ms,
            actor: "admin".into(),
            limit: 0,
        })
        .await
        .expect("filtered")
        .into_inner()
        .records;
    assert!(filtered
        .iter()
        .all(|r| r.actor == "admin" && r.time_ms >= by_admin.time_ms));
    // The MLflow API applies the same roles: a reader reads, and is refused a create.
    let http = reqwest::Client::new();
    let base = format!("http://{}/api/2.0/mlflow", hub.http_addr);
    let read = http
        .post(format!("{base}/experiments/search"))
        .bearer_auth(&reader)
        .json(&serde_json::json!({ "max_results": 10 }))
        .send()
        .await
        .expect("search");
    assert_eq!(read.status().as_u16(), 200);
    let created = http
        .post(format!("{base}/experiments/create"))
        .bearer_auth(&reader)
        .json(&serde_json::json!({ "name": "nope" }))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status().as_u16(), 403);
    let body: serde_json::Value = created.json().await.expect("json");
    assert_eq!(body["error_code"], "PERMISSION_DENIED", "{body}");
    let log = admin
        .access
        .list_audit(apb::ListAuditRequest {
            actor: "ana".into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .records;
    assert!(
        log.iter()
            .any(|r| r.method == "POST /api/2.0/mlflow/experiments/create"
                && r.result == "PERMISSION_DENIED"),
        "{log:?}"
    );
    // A reader may not read the audit log.
    let denied = as_reader
        .access
        .list_audit(apb::ListAuditRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    hub.shutdown().await;
}
