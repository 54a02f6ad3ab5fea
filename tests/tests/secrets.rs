//! Workspace secrets: set from stdin with the CLI, listed by name only, injected into script
//! runs on local compute and on a worker with `--secret`, never stored in clear on disk nor in
//! the run's record, and refused by name when missing.

use std::collections::HashMap;
use std::process::Stdio;

use shoal_integration_tests::{TestHub, TestWorker};
use shoal_proto::training as pb;

const VALUE: &str = "hunter2-d41d8cd98f00";

/// Runs the `shoal` CLI against `hub` with `stdin`; returns (success, stdout, stderr).
async fn shoal(hub: &TestHub, args: &[&str], stdin: &str) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_test-shoal"))
        .args(args)
        .env("SHOAL_HUB", format!("http://{}", hub.grpc_addr))
        .env("SHOAL_TOKEN", &hub.token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the CLI");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let output = tokio::time::timeout(shoal_integration_tests::DEADLINE, child.wait_with_output())
        .await
        .expect("the CLI ends within the deadline")
        .expect("the CLI ran");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn script_with_secret(compute: &str, secrets: &[(&str, &str)]) -> pb::SubmitRunHeader {
    pb::SubmitRunHeader {
        experiment: "secrets".into(),
        compute: compute.into(),
        job: Some(pb::submit_run_header::Job::Script(pb::ScriptJob {
            command: vec![
                "sh".into(),
                "-c".into(),
                "printf %s \"$DB_PASSWORD\" | sha256sum | cut -c1-64".into(),
            ],
            env: HashMap::new(),
            secrets: secrets
                .iter()
                .map(|(var, name)| (var.to_string(), name.to_string()))
                .collect(),
        })),
        ..Default::default()
    }
}

fn snapshot() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("README"), "secrets").expect("write");
    shoal_compute::pack_dir(dir.path(), 1 << 20)
        .expect("pack")
        .bytes
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir").flatten() {
                stack.push(entry.path());
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_secret_set_from_stdin_reaches_runs_and_nothing_else() {
    let hub = TestHub::start().await;
    let (ok, stdout, stderr) = shoal(
        &hub,
        &["secret", "set", "db-password"],
        &format!("{VALUE}\n"),
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(!stdout.contains(VALUE) && !stderr.contains(VALUE));
    let (ok, listed, stderr) = shoal(&hub, &["secret", "list", "-o", "json"], "").await;
    assert!(ok, "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(listed[0]["name"], "db-password");
    assert!(!listed.to_string().contains(VALUE));

    // A script run on the hub and one on a worker both get it as DB_PASSWORD.
    let work = tempfile::tempdir().expect("temp dir");
    let _worker = TestWorker::start(&hub, "vaulted", work.path());
    for compute in ["local", "worker"] {
        let run = hub
            .submit_run(
                script_with_secret(compute, &[("DB_PASSWORD", "db-password")]),
                Some(snapshot()),
            )
            .await;
        let logs = hub.run_logs(&run.id, true).await;
        let done = hub.wait_for_run_end(&run.id).await;
        assert_eq!(done.status, "completed", "{compute}: {:?}", done.log_tail);
        let digest = hex::encode(shoal_store::secrets::sha256(VALUE.as_bytes()));
        assert!(
            logs.contains(&digest),
            "{compute}: the run saw another value: {logs:?}"
        );
        assert!(
            !format!("{done:?}").contains(VALUE),
            "the run record holds no value"
        );
    }

    // A secret that does not exist is refused by name, at submission.
    let mut client = hub.client().await;
    let header = script_with_secret("local", &[("DB_PASSWORD", "nope")]);
    let refused = client
        .training
        .submit_run(futures::stream::iter(vec![
            pb::SubmitRunRequest {
                part: Some(pb::submit_run_request::Part::Header(header)),
            },
            pb::SubmitRunRequest {
                part: Some(pb::submit_run_request::Part::Chunk(snapshot())),
            },
        ]))
        .await
        .expect_err("a missing secret is refused");
    assert_eq!(refused.code(), tonic::Code::NotFound);
    assert!(refused.message().contains("nope"), "{}", refused.message());
    assert!(
        refused.message().contains("shoal secret set"),
        "{}",
        refused.message()
    );

    let (ok, _, stderr) = shoal(&hub, &["secret", "delete", "db-password"], "").await;
    assert!(ok, "{stderr}");
    let (_, listed, _) = shoal(&hub, &["secret", "list", "-o", "json"], "").await;
    assert_eq!(listed.trim(), "[]");

    // Nothing on disk holds the value in clear: not the store, not the logs.
    let data_dir = hub.data_dir.clone();
    hub.shutdown().await;
    let leaks = files_containing(&data_dir, VALUE.as_bytes());
    assert!(leaks.is_empty(), "the value is in clear in {leaks:?}");
}
