//! The fleet end to end over TLS: a hub started with `--tls` (its own CA), devices enrolled
//! with what `shoal device add` writes (an `mqtts://` URL and the hub's CA pinned inline),
//! a model deployed and served, telemetry acknowledged; and every listener refusing a
//! plaintext client, and a client that does not trust the hub's CA.
//!
//! Always on the embedded broker: the hub terminates MQTT's TLS in front of it.

use std::time::Duration;

use shoal_client::HubClient;
use shoal_integration_tests::{infer_body, wait_for, TestAgent, TestHub, TestWorker};
use shoal_model::build::Mlp;
use shoal_proto::telemetry::GetDeviceTelemetryRequest;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_enrolled_over_tls_pin_the_ca_get_models_and_send_telemetry() {
    let hub = TestHub::builder().tls().start().await;
    assert!(hub.mqtt_url.starts_with("mqtts://"), "{}", hub.mqtt_url);
    let dirs = tempfile::tempdir().unwrap();
    let mlp = Mlp::seeded(&[4, 8, 2], 3).with_softmax();
    let version = hub
        .register("occupancy", &mlp.to_onnx())
        .await
        .expect("register over https");

    let mut agents = Vec::new();
    for id in ["tls-a", "tls-b"] {
        let mut config = hub.add_device(id).await;
        assert!(config.hub.mqtt_url.starts_with("mqtts://"));
        let pinned = config.hub.ca_pem.clone().expect("the hub's CA is pinned");
        let ca = std::fs::read_to_string(hub.ca_path.as_ref().unwrap()).unwrap();
        assert_eq!(pinned, ca, "the CA pinned is the hub's");
        config.agent.telemetry_window_ms = Some(200);
        agents.push(TestAgent::start(config, &dirs.path().join(id)).await);
    }
    hub.deploy("lobby", "occupancy", "1", &["tls-a", "tls-b"])
        .await;
    for id in ["tls-a", "tls-b"] {
        hub.wait_for_active(id, &version.digest).await;
    }
    for agent in &agents {
        let (status, answer) = agent.infer(&infer_body(&[[1.0, 2.0, 3.0, 4.0]])).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["model"], "occupancy");
    }
    for id in ["tls-a", "tls-b"] {
        wait_for(&format!("telemetry from {id} over mqtts"), || async {
            let telemetry = hub
                .client()
                .await
                .telemetry
                .get_device_telemetry(GetDeviceTelemetryRequest {
                    workspace: "default".into(),
                    device: id.into(),
                })
                .await
                .expect("device telemetry")
                .into_inner();
            (telemetry.inferences >= 1).then_some(())
        })
        .await;
    }

    // gRPC: a plaintext client, and a TLS client that trusts only the system's roots.
    let plaintext = format!("http://{}", hub.grpc_addr);
    assert!(
        refused(HubClient::connect(&plaintext, Some(&hub.token))).await,
        "the gRPC listener served plaintext"
    );
    assert!(
        refused(HubClient::connect(&hub.grpc_url(), Some(&hub.token))).await,
        "a client without the hub's CA was served"
    );
    // A CA given for a plaintext URL is a mistake, said as much.
    let error = HubClient::connect_with(&plaintext, None, hub.ca_path.as_deref())
        .await
        .err()
        .expect("a CA with http:// is refused")
        .to_string();
    assert!(error.contains("use https://"), "{error}");

    // HTTP: plaintext, then https with the CA.
    let http = reqwest::Client::new();
    assert!(
        http.get(format!("http://{}/healthz", hub.http_addr))
            .send()
            .await
            .is_err(),
        "the HTTP listener served plaintext"
    );
    let ca = std::fs::read(hub.ca_path.as_ref().unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let health = https
        .get(format!("{}/healthz", hub.http_url()))
        .send()
        .await
        .expect("https with the hub's CA");
    assert_eq!(health.status(), 200);

    // MQTT: a device's own login over plaintext gets no session.
    let mut config = hub.add_device("tls-plain").await;
    config.hub.mqtt_url = config.hub.mqtt_url.replace("mqtts://", "mqtt://");
    let (_client, mut eventloop) =
        shoal_integration_tests::mqtt_client_as(&config, "tls-plain-intruder");
    let first = tokio::time::timeout(DEADLINE, eventloop.poll())
        .await
        .expect("the broker answers or closes");
    assert!(
        first.is_err(),
        "a plaintext MQTT client got a session: {first:?}"
    );

    for agent in agents {
        agent.stop().await;
    }
    hub.shutdown().await;
}

/// Whether connecting and making one call fails.
async fn refused(
    connect: impl std::future::Future<Output = shoal_client::ClientResult<HubClient>>,
) -> bool {
    let Ok(mut client) = tokio::time::timeout(DEADLINE, connect)
        .await
        .expect("connect ends")
    else {
        return true;
    };
    tokio::time::timeout(
        DEADLINE,
        client
            .workspaces
            .list_workspaces(shoal_proto::workspace::ListWorkspacesRequest {}),
    )
    .await
    .expect("the call ends")
    .is_err()
}

/// A remote worker reaches a TLS hub with the hub's CA (`shoal-hub worker --ca`): it leases a
/// script run, runs it and reports it done, every call over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_trusting_the_hubs_ca_runs_jobs_over_tls() {
    let hub = TestHub::builder().tls().start().await;
    assert!(hub.grpc_url().starts_with("https://"));
    let work = tempfile::tempdir().expect("temp dir");
    let _worker = TestWorker::start(&hub, "tls-worker", work.path());
    let source = tempfile::tempdir().expect("temp dir");
    std::fs::write(source.path().join("run.sh"), "echo over-tls\n").expect("write");
    let snapshot = shoal_compute::pack_dir(source.path(), 1 << 20).expect("pack");
    let header = shoal_proto::training::SubmitRunHeader {
        experiment: "tls".into(),
        compute: "worker".into(),
        job: Some(shoal_proto::training::submit_run_header::Job::Script(
            shoal_proto::training::ScriptJob {
                command: vec!["sh".into(), "run.sh".into()],
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let run = hub.submit_run(header, Some(snapshot.bytes)).await;
    let logs = hub.run_logs(&run.id, true).await;
    let done = hub.wait_for_run_end(&run.id).await;
    assert_eq!(
        done.status, "completed",
        "{}: {:?}",
        done.error, done.log_tail
    );
    assert_eq!(done.executor, "tls-worker");
    assert!(logs.contains(&"over-tls".to_string()), "{logs:?}");
    hub.shutdown().await;
}
