//! Training in the hub: datasets with profiles, built-in trainer runs that register their
//! model, script runs on the local compute target (logs, SHOAL_METRICS, outputs, failure,
//! cancel), run search, sweeps with early termination, and remote workers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_integration_tests::{wait_for, TestHub, TestWorker, DEADLINE};
use shoal_proto::registry as rpb;
use shoal_proto::training as pb;

/// Three well-separated clusters over four features: label 0, 1 or 2 by the first two.
fn clusters_csv(rows: usize, seed: u64) -> String {
    let mut rng = shoal_model::build::SplitMix64(seed);
    let mut csv = String::from("temp,light,co2,humidity,label\n");
    for i in 0..rows {
        let class = i % 3;
        let (cx, cy) = [(0.0, 0.0), (6.0, 0.0), (0.0, 6.0)][class];
        let jitter = |rng: &mut shoal_model::build::SplitMix64| rng.unit() - 0.5;
        csv.push_str(&format!(
            "{:.4},{:.4},{:.4},{:.4},c{class}\n",
            cx + jitter(&mut rng),
            cy + jitter(&mut rng),
            400.0 + 50.0 * jitter(&mut rng),
            40.0 + 10.0 * jitter(&mut rng)
        ));
    }
    csv
}

async fn upload_dataset(
    hub: &TestHub,
    name: &str,
    csv: &str,
) -> Result<pb::DatasetVersion, tonic::Status> {
    hub.upload_dataset("", name, csv.as_bytes()).await
}

async fn submit(hub: &TestHub, header: pb::SubmitRunHeader, snapshot: Option<Vec<u8>>) -> pb::Run {
    hub.submit_run(header, snapshot).await
}

fn builtin_header(
    experiment: &str,
    dataset: &str,
    params: &[(&str, &str)],
    register: &str,
) -> pb::SubmitRunHeader {
    pb::SubmitRunHeader {
        experiment: experiment.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        job: Some(pb::submit_run_header::Job::Builtin(pb::BuiltinJob {
            trainer: "mlp".into(),
            dataset: dataset.into(),
            target: "label".into(),
            features: Vec::new(),
            register_as: register.into(),
        })),
        ..Default::default()
    }
}

/// Packs a folder of (name, contents, executable) files.
fn snapshot(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, contents) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, contents).expect("write");
    }
    let packed = shoal_compute::pack_dir(dir.path(), 1 << 20).expect("pack");
    (dir, packed.bytes)
}

fn script_header(experiment: &str, script: &str, compute: &str) -> pb::SubmitRunHeader {
    pb::SubmitRunHeader {
        experiment: experiment.into(),
        compute: compute.into(),
        params: HashMap::from([("lr".to_string(), "0.1".to_string())]),
        job: Some(pb::submit_run_header::Job::Script(pb::ScriptJob {
            command: vec!["sh".into(), script.into(), "${{params.lr}}".into()],
            env: HashMap::new(),
            secrets: HashMap::new(),
        })),
        ..Default::default()
    }
}

async fn get_run(hub: &TestHub, id: &str) -> pb::Run {
    hub.client()
        .await
        .training
        .get_run(pb::GetRunRequest { run_id: id.into() })
        .await
        .expect("get run")
        .into_inner()
}

async fn wait_for_end(hub: &TestHub, id: &str) -> pb::Run {
    hub.wait_for_run_end(id).await
}

async fn history(hub: &TestHub, id: &str, key: &str) -> Vec<pb::MetricValue> {
    hub.client()
        .await
        .training
        .get_metric_history(pb::MetricHistoryRequest {
            run_id: id.into(),
            key: key.into(),
        })
        .await
        .expect("history")
        .into_inner()
        .points
}

async fn all_logs(hub: &TestHub, id: &str, follow: bool) -> Vec<String> {
    hub.run_logs(id, follow).await
}

#[tokio::test]
async fn dataset_profile_matches_the_csv_and_ragged_rows_are_refused() {
    let hub = TestHub::start().await;
    let csv = "a,b,kind\n1,10,x\n2,,y\n3,30,x\n4,40,x\n";
    let version = upload_dataset(&hub, "tiny", csv).await.expect("registered");
    assert_eq!(
        (version.name.as_str(), version.version, version.rows),
        ("tiny", 1, 4)
    );
    let a = &version.columns[0];
    assert_eq!((a.kind.as_str(), a.count, a.nulls), ("numeric", 4, 0));
    assert_eq!((a.min, a.max, a.mean), (Some(1.0), Some(4.0), Some(2.5)));
    // Population std of 1..4: sqrt(((1.5² + 0.5²) · 2) / 4) = sqrt(1.25).
    assert!((a.std.expect("std") - 1.25f64.sqrt()).abs() < 1e-12);
    let b = &version.columns[1];
    assert_eq!((b.count, b.nulls, b.mean), (3, 1, Some(80.0 / 3.0)));
    let kind = &version.columns[2];
    assert_eq!(kind.kind, "categorical");
    assert_eq!(kind.top_values, vec!["x".to_string(), "y".to_string()]);
    assert_eq!(kind.top_counts, vec![3, 1]);
    assert_eq!(version.columns[0].bin_counts.iter().sum::<u64>(), 4);

    let again = upload_dataset(&hub, "tiny", csv)
        .await
        .expect("second version");
    assert_eq!(again.version, 2);

    // A built-in trainer is refused at submission for a categorical feature.
    let mut client = hub.client().await;
    let mut header = builtin_header("exp", "tiny@2", &[], "");
    if let Some(pb::submit_run_header::Job::Builtin(job)) = header.job.as_mut() {
        job.target = "a".into();
    }
    let refused = client
        .training
        .submit_run(futures::stream::iter(vec![pb::SubmitRunRequest {
            part: Some(pb::submit_run_request::Part::Header(header)),
        }]))
        .await
        .expect_err("categorical feature");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("[\"kind\"]"),
        "{}",
        refused.message()
    );
    assert!(
        refused.message().contains("--features b"),
        "{}",
        refused.message()
    );

    let mut not_utf8 = b"a,b\n1,2\n3,".to_vec();
    not_utf8.extend_from_slice(&[0xff, 0xfe, b'\n']);
    let refused = hub
        .upload_dataset("", "latin", &not_utf8)
        .await
        .expect_err("bad encoding refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("line 3") && refused.message().contains("utf-8"),
        "{}",
        refused.message()
    );

    let ragged = upload_dataset(&hub, "broken", "a,b\n1,2\n3\n").await;
    let error = ragged.expect_err("ragged csv refused");
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().contains("line 3"), "{}", error.message());
    hub.shutdown().await;
}

#[tokio::test]
async fn builtin_mlp_trains_logs_epochs_and_registers_with_a_baseline() {
    let hub = TestHub::start().await;
    upload_dataset(&hub, "sensors", &clusters_csv(600, 7))
        .await
        .expect("dataset");
    let run = submit(
        &hub,
        builtin_header(
            "occ",
            "sensors@1",
            &[("hidden", "16"), ("epochs", "15"), ("lr", "0.01")],
            "occupancy",
        ),
        None,
    )
    .await;
    assert_eq!(run.status, "queued");
    assert_eq!(run.inputs, vec!["sensors@1".to_string()]);
    let done = wait_for_end(&hub, &run.id).await;
    assert_eq!(
        done.status, "completed",
        "{}: {:?}",
        done.error, done.log_tail
    );
    let accuracy = done.metrics["accuracy"].value;
    assert!(accuracy >= 0.95, "accuracy {accuracy}");
    let points = history(&hub, &run.id, "accuracy").await;
    let steps: Vec<i64> = points.iter().map(|p| p.step).collect();
    assert_eq!(steps, (1..=15).collect::<Vec<_>>());
    assert_eq!(done.outputs, vec!["occupancy@1".to_string()]);
    let logs = all_logs(&hub, &run.id, false).await;
    assert!(
        logs.iter().any(|l| l.starts_with("epoch 15/15")),
        "{logs:?}"
    );

    let version = hub
        .client()
        .await
        .registry
        .get_model_version(rpb::GetModelVersionRequest {
            workspace: String::new(),
            name: "occupancy".into(),
            reference: "1".into(),
        })
        .await
        .expect("registered version")
        .into_inner();
    assert_eq!(version.tags.get("shoal.run"), Some(&run.id));
    assert_eq!(
        version.tags.get("shoal.dataset").map(String::as_str),
        Some("sensors@1")
    );
    let baseline = version.baseline.expect("a baseline from the dataset");
    let names: Vec<&str> = baseline.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["temp", "light", "co2", "humidity"]);
    assert_eq!(baseline.rows, 600);
    assert_eq!(
        baseline.outputs.len(),
        1,
        "prediction baseline from the model's outputs"
    );

    // Search over the runs: the filter grammar through the API.
    let mut client = hub.client().await;
    let found = client
        .training
        .list_runs(pb::ListRunsRequest {
            experiments: vec!["occ".into()],
            filter: "metrics.accuracy > 0.9 and params.hidden = '16'".into(),
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner();
    assert_eq!(found.runs.len(), 1);
    let none = client
        .training
        .list_runs(pb::ListRunsRequest {
            filter: "metrics.accuracy > 0.9 and (params.hidden = '8' or params.lr = '1')".into(),
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner();
    assert!(none.runs.is_empty());
    let bad = client
        .training
        .list_runs(pb::ListRunsRequest {
            filter: "metrics.accuracy >> 0.9".into(),
            ..Default::default()
        })
        .await
        .expect_err("syntax error");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("column"), "{}", bad.message());
    hub.shutdown().await;
}

const TRAIN_SH: &str = r#"
echo "run $SHOAL_RUN_ID starting with lr $1"
echo "to stderr" >&2
mkdir -p outputs/nested
for step in 1 2 3; do
  echo "{\"step\": $step, \"loss\": 0.$((9 - step)), \"accuracy\": 0.$((6 + step))}" >> "$SHOAL_METRICS"
  echo "step $step"
done
echo 'not json' >> "$SHOAL_METRICS"
echo "weights" > outputs/model.txt
echo "deep" > outputs/nested/notes.md
echo "tracking $MLFLOW_TRACKING_URI run $MLFLOW_RUN_ID"
"#;

#[tokio::test]
async fn script_run_streams_logs_records_metrics_and_collects_outputs() {
    let hub = TestHub::start().await;
    let (_dir, bytes) = snapshot(&[
        ("train.sh", TRAIN_SH),
        (".shoalignore", "data/\n"),
        ("data/big.bin", "x"),
    ]);
    let run = submit(
        &hub,
        script_header("scripts", "train.sh", "local"),
        Some(bytes),
    )
    .await;
    let logs = all_logs(&hub, &run.id, true).await;
    let done = get_run(&hub, &run.id).await;
    assert_eq!(
        done.status, "completed",
        "{}: {:?}",
        done.error, done.log_tail
    );
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(
        done.command,
        vec!["sh", "train.sh", "0.1"],
        "params substituted"
    );
    assert!(
        logs.contains(&format!("run {} starting with lr 0.1", run.id)),
        "{logs:?}"
    );
    assert!(logs.contains(&"to stderr".to_string()));
    assert!(logs.contains(&"step 3".to_string()));
    assert!(
        logs.iter().any(|l| l.contains("line 4")),
        "a warning names the bad metrics line: {logs:?}"
    );
    assert!(
        logs.contains(&format!("tracking http://{} run {}", hub.http_addr, run.id)),
        "{logs:?}"
    );
    let loss = history(&hub, &run.id, "loss").await;
    let points: Vec<(i64, f64)> = loss.iter().map(|p| (p.step, p.value)).collect();
    assert_eq!(points, vec![(1, 0.8), (2, 0.7), (3, 0.6)]);
    assert_eq!(done.metrics["accuracy"].value, 0.9);
    let artifacts = hub
        .client()
        .await
        .training
        .list_run_artifacts(pb::ListRunArtifactsRequest {
            run_id: run.id.clone(),
        })
        .await
        .expect("artifacts")
        .into_inner();
    let paths: Vec<&str> = artifacts
        .artifacts
        .iter()
        .map(|a| a.path.as_str())
        .collect();
    assert_eq!(paths, vec!["outputs/model.txt", "outputs/nested/notes.md"]);
    assert!(
        !hub.runs_dir.join(&run.id).join("data").exists(),
        ".shoalignore honoured"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn failing_script_is_failed_with_its_log_tail() {
    let hub = TestHub::start().await;
    let (_dir, bytes) = snapshot(&[(
        "fail.sh",
        "for i in $(seq 1 80); do echo \"line $i\"; done\necho 'out of memory, giving up' >&2\nexit 3\n",
    )]);
    let run = submit(
        &hub,
        script_header("scripts", "fail.sh", "local"),
        Some(bytes),
    )
    .await;
    let done = wait_for_end(&hub, &run.id).await;
    assert_eq!(done.status, "failed");
    assert_eq!(done.exit_code, Some(3));
    assert!(done.error.contains("code 3"), "{}", done.error);
    assert!(done.log_tail.len() <= 50);
    assert!(
        done.log_tail
            .contains(&"out of memory, giving up".to_string()),
        "{:?}",
        done.log_tail
    );
    assert!(done.log_tail.contains(&"line 80".to_string()));
    assert!(!done.log_tail.contains(&"line 1".to_string()));
    hub.shutdown().await;
}

/// Whether a process is gone (or a zombie waiting for a parent that never reaps it).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

async fn read_pid(path: &Path) -> u32 {
    wait_for(&format!("{} to be written", path.display()), || async {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .await
}

const STUBBORN_SH: &str = r#"
sh -c 'trap "" TERM; echo $$ > child.pid; while true; do sleep 1; done' &
echo $$ > main.pid
echo "waiting"
while true; do sleep 1; done
"#;

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let hub = TestHub::start().await;
    let (_dir, bytes) = snapshot(&[("stubborn.sh", STUBBORN_SH)]);
    let run = submit(
        &hub,
        script_header("scripts", "stubborn.sh", "local"),
        Some(bytes),
    )
    .await;
    let folder: PathBuf = hub.runs_dir.join(&run.id);
    let child = read_pid(&folder.join("child.pid")).await;
    let main = read_pid(&folder.join("main.pid")).await;
    let canceled = hub
        .client()
        .await
        .training
        .cancel_run(pb::CancelRunRequest {
            run_id: run.id.clone(),
        })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(canceled.status, "running", "still stopping");
    let done = wait_for_end(&hub, &run.id).await;
    assert_eq!(done.status, "canceled");
    wait_for("the SIGTERM-ignoring child to be killed", || async {
        (process_gone(child) && process_gone(main)).then_some(())
    })
    .await;
    hub.shutdown().await;
}

#[tokio::test]
async fn sweep_picks_the_best_run_and_median_stopping_stops_a_worse_one() {
    let hub = TestHub::start().await;
    upload_dataset(&hub, "sensors", &clusters_csv(450, 11))
        .await
        .expect("dataset");
    let mut client = hub.client().await;
    let sweep = client
        .training
        .submit_sweep(pb::SubmitSweepRequest {
            experiment: "tune".into(),
            builtin: Some(pb::BuiltinJob {
                trainer: "mlp".into(),
                dataset: "sensors".into(),
                target: "label".into(),
                features: Vec::new(),
                register_as: "tuned".into(),
            }),
            // A learning rate too small to learn anything in 8 epochs: clearly worse runs.
            space: HashMap::from([
                ("lr".to_string(), "choice(0.03, 0.0000001)".to_string()),
                ("hidden".to_string(), "choice(4, 8, 16, 32)".to_string()),
                ("epochs".to_string(), "8".to_string()),
            ]),
            sampling: "grid".into(),
            max_runs: 8,
            concurrency: 2,
            metric: "accuracy".into(),
            goal: "max".into(),
            early_stop: "median".into(),
            ..Default::default()
        })
        .await
        .expect("sweep submitted")
        .into_inner();
    let done = wait_for(&format!("sweep {} to end", sweep.id), || {
        let mut client = client.clone();
        let id = sweep.id.clone();
        async move {
            let s = client
                .training
                .get_sweep(pb::GetSweepRequest { sweep_id: id })
                .await
                .expect("get sweep")
                .into_inner();
            (s.status != "running").then_some(s)
        }
    })
    .await;
    assert_eq!(done.status, "completed", "{}", done.error);
    assert_eq!(done.child_runs.len(), 8);
    let mut children = Vec::new();
    for id in &done.child_runs {
        children.push(get_run(&hub, id).await);
    }
    for child in &children {
        assert_eq!(child.parent_run_id, done.parent_run_id);
    }
    let top = children
        .iter()
        .filter(|c| c.status == "completed")
        .map(|c| c.metrics["accuracy"].value)
        .fold(f64::NEG_INFINITY, f64::max);
    // Ties go to the earliest run.
    let best = children
        .iter()
        .find(|c| c.status == "completed" && c.metrics["accuracy"].value == top)
        .expect("a completed child");
    assert_eq!(done.best_run_id, best.id);
    assert_eq!(done.best_value, Some(top));
    assert_eq!(best.params["lr"], "0.03");
    assert_eq!(done.registered, "tuned@1");
    let stopped: Vec<&pb::Run> = children
        .iter()
        .filter(|c| c.tags.get("shoal.early_stopped").map(String::as_str) == Some("true"))
        .collect();
    assert!(
        stopped
            .iter()
            .any(|c| c.params["lr"].parse::<f64>().ok() == Some(1e-7)),
        "a clearly worse run was stopped early: {:?}",
        children
            .iter()
            .map(|c| (&c.params, &c.status, &c.error))
            .collect::<Vec<_>>()
    );
    for run in &stopped {
        assert_eq!(run.status, "canceled");
        assert!(run.error.contains("median"), "{}", run.error);
        assert!(history(&hub, &run.id, "accuracy").await.len() < 8);
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn remote_worker_runs_a_job_and_a_vanished_worker_fails_its_run() {
    let hub = TestHub::builder()
        .worker_heartbeat_timeout(Duration::from_secs(2))
        .start()
        .await;
    let work = tempfile::tempdir().expect("temp dir");
    let worker = TestWorker::start(&hub, "edge-box-1", work.path());

    let (_dir, bytes) = snapshot(&[("train.sh", TRAIN_SH)]);
    let mut header = script_header("remote", "train.sh", "worker");
    header.labels = vec!["arm".into()];
    let run = submit(&hub, header, Some(bytes)).await;
    let logs = all_logs(&hub, &run.id, true).await;
    let done = get_run(&hub, &run.id).await;
    assert_eq!(
        done.status, "completed",
        "{}: {:?}",
        done.error, done.log_tail
    );
    assert_eq!(done.executor, "edge-box-1");
    assert!(
        logs.contains(&format!("run {} starting with lr 0.1", run.id)),
        "{logs:?}"
    );
    assert_eq!(history(&hub, &run.id, "loss").await.len(), 3);
    let artifacts = hub
        .client()
        .await
        .training
        .list_run_artifacts(pb::ListRunArtifactsRequest {
            run_id: run.id.clone(),
        })
        .await
        .expect("artifacts")
        .into_inner();
    assert_eq!(artifacts.artifacts.len(), 2);

    // A run no worker has the labels for stays queued.
    let mut gpu = script_header("remote", "train.sh", "worker");
    gpu.labels = vec!["gpu".into()];
    let (_dir2, bytes2) = snapshot(&[("train.sh", TRAIN_SH)]);
    let waiting = submit(&hub, gpu, Some(bytes2)).await;

    // A run whose worker vanishes mid-run is failed after the heartbeat timeout.
    let (_dir3, bytes3) = snapshot(&[("stubborn.sh", STUBBORN_SH)]);
    let long = submit(
        &hub,
        script_header("remote", "stubborn.sh", "worker"),
        Some(bytes3),
    )
    .await;
    let folder = work.path().join(&long.id);
    let child = read_pid(&folder.join("child.pid")).await;
    worker.kill();
    let failed = wait_for_end(&hub, &long.id).await;
    assert_eq!(failed.status, "failed");
    assert!(failed.error.contains("edge-box-1"), "{}", failed.error);
    assert!(failed.error.contains("heartbeat"), "{}", failed.error);
    wait_for("the vanished worker's processes to be gone", || async {
        process_gone(child).then_some(())
    })
    .await;
    assert_eq!(get_run(&hub, &waiting.id).await.status, "queued");
    hub.shutdown().await;
}

/// Cancel reaches a remote run through the answer to the worker's next report, and the
/// worker stops the whole process group.
#[tokio::test]
async fn canceling_a_remote_run_stops_its_process_group_on_the_worker() {
    let hub = TestHub::builder()
        .worker_heartbeat_timeout(Duration::from_secs(3))
        .start()
        .await;
    let work = tempfile::tempdir().expect("temp dir");
    let _worker = TestWorker::start(&hub, "edge-box-2", work.path());
    let (_dir, bytes) = snapshot(&[("stubborn.sh", STUBBORN_SH)]);
    let run = submit(
        &hub,
        script_header("remote", "stubborn.sh", "worker"),
        Some(bytes),
    )
    .await;
    let folder = work.path().join(&run.id);
    let child = read_pid(&folder.join("child.pid")).await;
    let main = read_pid(&folder.join("main.pid")).await;
    hub.client()
        .await
        .training
        .cancel_run(pb::CancelRunRequest {
            run_id: run.id.clone(),
        })
        .await
        .expect("cancel");
    let done = wait_for_end(&hub, &run.id).await;
    assert_eq!(done.status, "canceled", "{}", done.error);
    assert_eq!(done.error, "canceled by a user");
    wait_for("the remote job's processes to be gone", || async {
        (process_gone(child) && process_gone(main)).then_some(())
    })
    .await;
    hub.shutdown().await;
}

/// A worker process killed with SIGKILL mid-run: the hub fails the run after the heartbeat
/// timeout, and the next worker started on the same folder kills the job's leftover processes.
#[tokio::test]
async fn a_sigkilled_worker_process_leaves_nothing_running_after_a_restart() {
    let hub = TestHub::builder()
        .worker_heartbeat_timeout(Duration::from_secs(2))
        .start()
        .await;
    let work = tempfile::tempdir().expect("temp dir");
    let start_worker = |id: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_test-worker"))
            .args([
                format!("http://{}", hub.grpc_addr),
                hub.token.clone(),
                id.to_string(),
                work.path().display().to_string(),
            ])
            .kill_on_drop(true)
            .spawn()
            .expect("start test-worker")
    };
    let mut worker = start_worker("box-a");
    let (_dir, bytes) = snapshot(&[("stubborn.sh", STUBBORN_SH)]);
    let run = submit(
        &hub,
        script_header("remote", "stubborn.sh", "worker"),
        Some(bytes),
    )
    .await;
    let folder = work.path().join(&run.id);
    let child = read_pid(&folder.join("child.pid")).await;
    let main = read_pid(&folder.join("main.pid")).await;
    worker.start_kill().expect("SIGKILL the worker");
    tokio::time::timeout(DEADLINE, worker.wait())
        .await
        .expect("the SIGKILLed worker is reaped")
        .expect("reaped");

    let failed = wait_for_end(&hub, &run.id).await;
    assert_eq!(failed.status, "failed");
    assert!(failed.error.contains("box-a"), "{}", failed.error);
    // The job's leader dies with the worker; its SIGTERM-ignoring child lives on as an
    // orphan in the job's process group until a worker comes back to this folder.
    wait_for("the job's leader to die with its worker", || async {
        process_gone(main).then_some(())
    })
    .await;
    let mut restarted = start_worker("box-a2");
    wait_for(
        "the restarted worker to kill the leftover child",
        || async { process_gone(child).then_some(()) },
    )
    .await;
    restarted.start_kill().expect("stop the worker");
    tokio::time::timeout(DEADLINE, restarted.wait())
        .await
        .expect("the stopped worker is reaped")
        .ok();
    hub.shutdown().await;
}

#[tokio::test]
async fn an_onnx_file_a_script_wrote_is_registered_from_its_run() {
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("export.sh"),
        "mkdir -p outputs && cp model.onnx outputs/model.onnx\n",
    )
    .expect("write");
    let onnx = shoal_model::build::Mlp::seeded(&[4, 8, 2], 3)
        .with_softmax()
        .to_onnx();
    std::fs::write(dir.path().join("model.onnx"), &onnx).expect("write");
    let bytes = shoal_compute::pack_dir(dir.path(), 1 << 20)
        .expect("pack")
        .bytes;
    let run = submit(
        &hub,
        script_header("export", "export.sh", "local"),
        Some(bytes),
    )
    .await;
    let done = wait_for_end(&hub, &run.id).await;
    assert_eq!(done.status, "completed", "{:?}", done.log_tail);

    let mut client = hub.client().await;
    let missing = client
        .training
        .register_from_run(pb::RegisterFromRunRequest {
            run_id: run.id.clone(),
            path: "outputs/nothing.onnx".into(),
            model: "exported".into(),
            description: String::new(),
        })
        .await
        .expect_err("no such artifact");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let registered = client
        .training
        .register_from_run(pb::RegisterFromRunRequest {
            run_id: run.id.clone(),
            path: "outputs/model.onnx".into(),
            model: "exported".into(),
            description: String::new(),
        })
        .await
        .expect("registered")
        .into_inner();
    assert_eq!(
        (registered.model.as_str(), registered.version),
        ("exported", 1)
    );
    let version = client
        .registry
        .get_model_version(rpb::GetModelVersionRequest {
            workspace: String::new(),
            name: "exported".into(),
            reference: "1".into(),
        })
        .await
        .expect("version")
        .into_inner();
    assert_eq!(version.tags.get("shoal.run"), Some(&run.id));
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&onnx))
    };
    assert_eq!(version.digest, digest);
    assert_eq!(
        get_run(&hub, &run.id).await.outputs,
        vec!["exported@1".to_string()]
    );
    hub.shutdown().await;
}

/// A hub that shuts down stops its local runs and records why; a queued run survives the
/// restart and runs once a worker comes.
#[tokio::test]
async fn runs_across_a_hub_restart() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("hub");
    let hub = TestHub::builder().data_dir(&data).start().await;
    let (_dir, bytes) = snapshot(&[(
        "loop.sh",
        "echo $$ > main.pid\nwhile true; do sleep 0.1; done\n",
    )]);
    let running = submit(
        &hub,
        script_header("restart", "loop.sh", "local"),
        Some(bytes),
    )
    .await;
    let main = read_pid(&hub.runs_dir.join(&running.id).join("main.pid")).await;
    let (_dir2, bytes2) = snapshot(&[("train.sh", TRAIN_SH)]);
    let queued = submit(
        &hub,
        script_header("restart", "train.sh", "worker"),
        Some(bytes2),
    )
    .await;
    hub.shutdown().await;
    assert!(process_gone(main), "the hub stopped its run before exiting");

    let hub = TestHub::builder().data_dir(&data).start().await;
    let stopped = get_run(&hub, &running.id).await;
    assert_eq!(stopped.status, "canceled");
    assert_eq!(stopped.error, "the hub shut down while the run was running");
    assert_eq!(get_run(&hub, &queued.id).await.status, "queued");
    let work = tempfile::tempdir().expect("temp dir");
    let _worker = TestWorker::start(&hub, "late-worker", work.path());
    let done = wait_for_end(&hub, &queued.id).await;
    assert_eq!(done.status, "completed", "{:?}", done.log_tail);
    hub.shutdown().await;
}

/// Deleting a workspace takes its datasets, experiments and runs with it, and a workspace of
/// the same name starts empty.
#[tokio::test]
async fn deleting_a_workspace_deletes_its_training_records() {
    use shoal_proto::workspace as wpb;
    let hub = TestHub::start().await;
    let mut client = hub.client().await;
    let create = || wpb::CreateWorkspaceRequest {
        name: "lab".into(),
        description: String::new(),
    };
    client
        .workspaces
        .create_workspace(create())
        .await
        .expect("created");
    hub.upload_dataset("lab", "sensors", clusters_csv(90, 3).as_bytes())
        .await
        .expect("dataset");
    let mut header = builtin_header("exp", "sensors@1", &[("epochs", "2")], "");
    header.workspace = "lab".into();
    let run = submit(&hub, header, None).await;
    assert_eq!(wait_for_end(&hub, &run.id).await.status, "completed");

    let refused = client
        .workspaces
        .delete_workspace(wpb::DeleteWorkspaceRequest {
            name: "lab".into(),
            force: false,
        })
        .await
        .expect_err("not empty");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    for held in ["1 dataset version,", "1 experiment,", "1 run)"] {
        assert!(refused.message().contains(held), "{}", refused.message());
    }
    client
        .workspaces
        .delete_workspace(wpb::DeleteWorkspaceRequest {
            name: "lab".into(),
            force: true,
        })
        .await
        .expect("forced");
    let gone = client
        .training
        .get_run(pb::GetRunRequest {
            run_id: run.id.clone(),
        })
        .await
        .expect_err("the run went with its workspace");
    assert_eq!(gone.code(), tonic::Code::NotFound);

    client
        .workspaces
        .create_workspace(create())
        .await
        .expect("created again");
    let experiments = client
        .training
        .list_experiments(pb::ListExperimentsRequest {
            workspace: "lab".into(),
        })
        .await
        .expect("experiments")
        .into_inner()
        .experiments;
    let names: Vec<&str> = experiments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["Default"]);
    assert_eq!(experiments[0].runs, 0);
    let datasets = client
        .training
        .list_datasets(pb::ListDatasetsRequest {
            workspace: "lab".into(),
        })
        .await
        .expect("datasets")
        .into_inner()
        .versions;
    assert!(datasets.is_empty());
    hub.shutdown().await;
}

const SWEEP_SH: &str = r#"
q=$1
case "$q" in
  0.[5-9]*)
    for s in 1 2 3 4 5; do echo "{\"step\": $s, \"accuracy\": $q}" >> "$SHOAL_METRICS"; done
    mkdir -p outputs && cp model.onnx outputs/model.onnx
    ;;
  *)
    # A poor run keeps reporting step 1 until the sweep's policy stops it.
    while true; do echo "{\"step\": 1, \"accuracy\": $q}" >> "$SHOAL_METRICS"; sleep 0.2; done
    ;;
esac
"#;

/// A sweep over a script: each run's params reach its command, its SHOAL_METRICS feed the
/// median stopping policy (which stops the poor runs, which never end by themselves), and
/// the best run's ONNX output is registered.
#[tokio::test]
async fn a_script_sweep_substitutes_params_stops_poor_runs_and_registers_the_best() {
    script_sweep_with("median").await;
}

/// The same with the bandit policy: a run more than 20 % below the best is stopped.
#[tokio::test]
async fn a_script_sweep_with_the_bandit_policy_stops_poor_runs() {
    script_sweep_with("bandit:0.2").await;
}

async fn script_sweep_with(early_stop: &str) {
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("sweep.sh"), SWEEP_SH).expect("write");
    let onnx = shoal_model::build::Mlp::seeded(&[4, 8, 2], 5).to_onnx();
    std::fs::write(dir.path().join("model.onnx"), &onnx).expect("write");
    let snapshot = shoal_compute::pack_dir(dir.path(), 1 << 20).expect("pack");
    let mut client = hub.client().await;
    let source = client
        .training
        .upload_source(futures::stream::iter(vec![pb::UploadSourceRequest {
            chunk: snapshot.bytes,
        }]))
        .await
        .expect("uploaded")
        .into_inner();
    let sweep = client
        .training
        .submit_sweep(pb::SubmitSweepRequest {
            experiment: "script-tune".into(),
            script: Some(pb::ScriptJob {
                command: vec!["sh".into(), "sweep.sh".into(), "${{params.quality}}".into()],
                env: HashMap::new(),
                secrets: HashMap::new(),
            }),
            source_digest: source.digest,
            space: HashMap::from([(
                "quality".to_string(),
                "choice(0.9, 0.2, 0.8, 0.3)".to_string(),
            )]),
            sampling: "grid".into(),
            max_runs: 4,
            concurrency: 2,
            metric: "accuracy".into(),
            goal: "max".into(),
            early_stop: early_stop.into(),
            register_best: "script-best".into(),
            ..Default::default()
        })
        .await
        .expect("sweep submitted")
        .into_inner();
    let done = wait_for(&format!("sweep {} to end", sweep.id), || {
        let mut client = client.clone();
        let id = sweep.id.clone();
        async move {
            let s = client
                .training
                .get_sweep(pb::GetSweepRequest { sweep_id: id })
                .await
                .expect("get sweep")
                .into_inner();
            (s.status != "running").then_some(s)
        }
    })
    .await;
    assert_eq!(done.status, "completed", "{}", done.error);
    assert_eq!(done.best_value, Some(0.9));
    assert_eq!(done.registered, "script-best@1");
    for id in &done.child_runs {
        let run = get_run(&hub, id).await;
        let quality = run.params["quality"].clone();
        assert_eq!(run.command.last(), Some(&quality), "params substituted");
        if quality.parse::<f64>().expect("a number") < 0.5 {
            assert_eq!(run.status, "canceled", "{quality}: {}", run.error);
            assert!(run.error.starts_with("early termination"), "{}", run.error);
            assert_eq!(
                run.tags.get("shoal.early_stopped").map(String::as_str),
                Some("true")
            );
        } else {
            assert_eq!(run.status, "completed", "{quality}: {:?}", run.log_tail);
        }
    }
    hub.shutdown().await;
}

/// A built-in trainer run on a remote worker: the worker gets the dataset, reports every
/// epoch, uploads the model, and the hub registers it with the dataset's baseline.
#[tokio::test]
async fn a_builtin_run_trains_on_a_remote_worker_and_registers_its_model() {
    let hub = TestHub::start().await;
    upload_dataset(&hub, "sensors", &clusters_csv(300, 5))
        .await
        .expect("dataset");
    let work = tempfile::tempdir().expect("temp dir");
    let _worker = TestWorker::start(&hub, "gpu-box", work.path());
    let mut header = builtin_header(
        "remote",
        "sensors@1",
        &[("hidden", "8"), ("epochs", "6"), ("lr", "0.05")],
        "remote-occ",
    );
    header.compute = "worker".into();
    header.labels = vec!["cpu".into()];
    let run = submit(&hub, header, None).await;
    let done = wait_for_end(&hub, &run.id).await;
    assert_eq!(
        done.status, "completed",
        "{}: {:?}",
        done.error, done.log_tail
    );
    assert_eq!(done.executor, "gpu-box");
    assert_eq!(done.outputs, vec!["remote-occ@1".to_string()]);
    assert!(done.metrics["accuracy"].value > 0.9, "{:?}", done.metrics);
    let steps: Vec<i64> = history(&hub, &run.id, "accuracy")
        .await
        .iter()
        .map(|p| p.step)
        .collect();
    assert_eq!(steps, (1..=6).collect::<Vec<_>>());
    let logs = all_logs(&hub, &run.id, false).await;
    assert!(logs.iter().any(|l| l.starts_with("epoch 6/6")), "{logs:?}");
    let version = hub
        .client()
        .await
        .registry
        .get_model_version(rpb::GetModelVersionRequest {
            workspace: String::new(),
            name: "remote-occ".into(),
            reference: "1".into(),
        })
        .await
        .expect("registered")
        .into_inner();
    let baseline = version.baseline.expect("the dataset's baseline");
    let names: Vec<&str> = baseline.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["temp", "light", "co2", "humidity"]);
    hub.shutdown().await;
}

/// An upload over the hub's limit is refused while it streams, naming the limit.
#[tokio::test]
async fn uploads_over_the_limit_are_refused() {
    let hub = TestHub::builder().max_upload_bytes(1000).start().await;
    let refused = upload_dataset(&hub, "big", &clusters_csv(200, 1))
        .await
        .expect_err("over the limit");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(
        refused.message().contains("1000 bytes"),
        "{}",
        refused.message()
    );
    assert!(
        refused.message().contains("--max-upload-bytes"),
        "{}",
        refused.message()
    );
    let fits = upload_dataset(&hub, "small", "a,b\n1,2\n").await;
    assert!(fits.is_ok(), "{fits:?}");
    hub.shutdown().await;
}
