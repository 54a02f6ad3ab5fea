//! The jobs layer against the in-memory store, a real artifact folder and real training: no
//! broker, no socket.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shoal_store::{ArtifactStore, Records, Workspaces};

use super::lease::LeasedWork;
use super::*;
use crate::dataset::DatasetVersion;
use crate::sweep::{SweepSpec, SweepStatus, Sweeps};
use crate::tracking::BuiltinJob;

struct Kit {
    jobs: Jobs,
    records: Records,
    _dir: tempfile::TempDir,
}

fn kit(heartbeat_timeout: Duration) -> Kit {
    let dir = tempfile::tempdir().expect("temp dir");
    let records = Records::in_memory();
    let artifacts = ArtifactStore::open(&dir.path().join("artifacts")).expect("artifacts");
    let workspaces = Workspaces::new(records.clone());
    workspaces.ensure_default().expect("default workspace");
    let tracking = Tracking::new(records.clone(), workspaces.clone());
    let datasets = Datasets::new(records.clone(), artifacts.clone(), workspaces.clone());
    let registry = Registry::new(records.clone(), artifacts.clone(), workspaces);
    let jobs = Jobs::new(
        tracking,
        datasets,
        registry,
        artifacts,
        shoal_store::Vault::with_key(records.clone(), [9; 32]),
        JobsConfig {
            runs_dir: dir.path().join("runs"),
            hidden: Vec::new(),
            sandbox_required: false,
            local_concurrency: 2,
            heartbeat_timeout,
            max_upload_bytes: 1 << 20,
        },
    );
    Kit {
        jobs,
        records,
        _dir: dir,
    }
}

/// Two numeric features and a label that depends on their sum.
fn csv(rows: usize) -> String {
    let mut text = String::from("a,b,label\n");
    for i in 0..rows {
        let a = (i % 17) as f32 / 4.0;
        let b = (i % 5) as f32;
        let label = if a + b > 4.0 { "high" } else { "low" };
        text.push_str(&format!("{a},{b},{label}\n"));
    }
    text
}

async fn dataset(kit: &Kit, name: &str, text: &str) -> DatasetVersion {
    let mut writer = kit.jobs.artifacts().writer().await.expect("writer");
    writer.write(text.as_bytes()).await.expect("write");
    let (digest, size) = writer.finish().await.expect("finish");
    kit.jobs
        .datasets()
        .register("default", name, "", digest, size, None)
        .await
        .expect("dataset registered")
}

fn builtin(dataset: &str, register_as: Option<&str>) -> Job {
    Job::Builtin(BuiltinJob {
        trainer: "logreg".into(),
        dataset: dataset.into(),
        target: "label".into(),
        features: Vec::new(),
        register_as: register_as.map(str::to_string),
    })
}

fn submission(job: Job, compute: Compute, labels: &[&str]) -> Submission {
    Submission {
        workspace: "default".into(),
        experiment: "unit".into(),
        name: None,
        params: BTreeMap::from([("epochs".to_string(), "3".to_string())]),
        tags: BTreeMap::new(),
        compute,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        job,
        parent_run_id: None,
        sweep_id: None,
    }
}

async fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_built_in_run_naming_a_missing_column_is_refused_before_it_is_queued() {
    let kit = kit(Duration::from_secs(30));
    dataset(&kit, "toy", &csv(50)).await;
    let mut job = builtin("toy@1", None);
    if let Job::Builtin(b) = &mut job {
        b.target = "colour".into();
    }
    let refused = kit
        .jobs
        .submit(submission(job, Compute::Local, &[]))
        .unwrap_err();
    assert!(matches!(refused, TrackingError::InvalidArgument(_)));
    assert!(
        refused.to_string().contains("no column 'colour'"),
        "{refused}"
    );
    assert!(kit
        .jobs
        .tracking()
        .queued_runs(Compute::Local)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn canceling_a_queued_run_ends_it_at_once() {
    let kit = kit(Duration::from_secs(30));
    dataset(&kit, "toy", &csv(50)).await;
    let run = kit
        .jobs
        .submit(submission(builtin("toy@1", None), Compute::Worker, &[]))
        .unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    let canceled = kit.jobs.cancel(&run.id, "not needed").unwrap();
    assert_eq!(canceled.status, RunStatus::Canceled);
    assert!(
        kit.jobs.lease("w1", &[]).unwrap().is_none(),
        "a canceled run is never leased"
    );
}

#[tokio::test]
async fn a_worker_leases_only_runs_whose_labels_it_has() {
    let kit = kit(Duration::from_secs(30));
    let toy = dataset(&kit, "toy", &csv(50)).await;
    let run = kit
        .jobs
        .submit(submission(
            builtin("toy@1", None),
            Compute::Worker,
            &["gpu"],
        ))
        .unwrap();
    assert!(kit.jobs.lease_work("w-cpu", &[]).unwrap().is_none());
    let work = kit
        .jobs
        .lease_work("w-gpu", &["gpu".into(), "arm".into()])
        .unwrap()
        .expect("a lease");
    let LeasedWork::Builtin {
        run: leased,
        dataset_digest,
        dataset_bytes,
        ..
    } = work
    else {
        panic!("a built-in lease");
    };
    assert_eq!(leased.id, run.id);
    assert_eq!(leased.status, RunStatus::Running);
    assert_eq!(leased.executor.as_deref(), Some("w-gpu"));
    assert_eq!(
        (dataset_digest, dataset_bytes),
        (toy.digest, toy.size_bytes)
    );
    assert!(kit
        .jobs
        .lease_work("w-gpu", &["gpu".into()])
        .unwrap()
        .is_none());
    // Another worker cannot report into it.
    assert!(kit.jobs.leased_run(&run.id, "w-other").is_err());
}

#[tokio::test]
async fn a_silent_worker_s_run_is_failed_after_the_heartbeat_timeout() {
    let kit = kit(Duration::from_secs(30));
    dataset(&kit, "toy", &csv(50)).await;
    let run = kit
        .jobs
        .submit(submission(builtin("toy@1", None), Compute::Worker, &[]))
        .unwrap();
    kit.jobs.lease("w1", &[]).unwrap().expect("leased");
    let now = shoal_store::now_ms();
    assert!(
        kit.jobs.reap_lost_runs(now).unwrap().is_empty(),
        "still fresh"
    );
    // A report is a heartbeat; then nothing for longer than the timeout.
    assert!(!kit
        .jobs
        .worker_report(&run.id, "w1", &[(now, "epoch 1".into())], &[])
        .unwrap());
    let reaped = kit.jobs.reap_lost_runs(now + 31_000).unwrap();
    assert_eq!(reaped, vec![run.id.clone()]);
    let failed = kit.jobs.tracking().run(&run.id).unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    let reason = failed.error.unwrap_or_default();
    assert!(reason.contains("worker w1 stopped reporting"), "{reason}");
    // The worker learns it from its next report.
    assert!(kit.jobs.worker_report(&run.id, "w1", &[], &[]).unwrap());
}

#[tokio::test]
async fn a_worker_run_that_completes_registers_its_model_with_the_dataset_baseline() {
    let kit = kit(Duration::from_secs(30));
    let toy = dataset(&kit, "toy", &csv(200)).await;
    let run = kit
        .jobs
        .submit(submission(
            builtin("toy@1", Some("toy-model")),
            Compute::Worker,
            &[],
        ))
        .unwrap();
    let Some(LeasedWork::Builtin {
        run: leased, job, ..
    }) = kit.jobs.lease_work("w1", &[]).unwrap()
    else {
        panic!("a built-in lease");
    };
    // What a worker does: train on the dataset's file, upload outputs/model.onnx.
    let spec = builtin::job_spec(&job);
    let model = spec
        .train_csv(
            &kit.jobs.datasets().local_path(&toy).await.unwrap(),
            &leased.params,
            "toy@1",
            |_| true,
        )
        .expect("trained");
    let mut writer = kit.jobs.artifacts().writer().await.unwrap();
    writer.write(&model.to_onnx()).await.unwrap();
    let (digest, size) = writer.finish().await.unwrap();
    kit.jobs
        .record_output(&leased, "outputs/model.onnx", digest.clone(), size)
        .unwrap();

    let done = kit
        .jobs
        .worker_complete(&run.id, "w1", Outcome::Exited(0), Vec::new())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.outputs, vec!["toy-model@1".to_string()]);
    let version = kit
        .jobs
        .registry()
        .resolve("default", "toy-model", "1")
        .unwrap();
    assert_eq!(version.digest, digest);
    assert_eq!(version.tags.get("shoal.run"), Some(&run.id));
    assert_eq!(
        version.tags.get("shoal.dataset").map(String::as_str),
        Some("toy@1")
    );
    let baseline = version.baseline.expect("the dataset's baseline");
    let names: Vec<&str> = baseline
        .baseline
        .features
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, vec!["a", "b"]);
}

#[tokio::test]
async fn a_sweep_trains_every_planned_child_and_registers_the_best() {
    let kit = kit(Duration::from_secs(30));
    dataset(&kit, "toy", &csv(200)).await;
    let sweeps = Sweeps::new(kit.records.clone(), kit.jobs.clone());
    let cancel = tokio_util::sync::CancellationToken::new();
    let scheduler = tokio::spawn(kit.jobs.clone().run_scheduler(cancel.clone()));
    let controller = tokio::spawn(sweeps.clone().run_controller(cancel.clone()));
    let sweep = sweeps
        .submit(SweepSpec {
            workspace: "default".into(),
            experiment: "sweeps".into(),
            name: "lr".into(),
            job: builtin("toy@1", None),
            compute: Compute::Local,
            labels: Vec::new(),
            register_best: Some("best".into()),
            space: BTreeMap::from([
                ("lr".to_string(), "choice(0.05,0.2)".to_string()),
                ("epochs".to_string(), "choice(3)".to_string()),
            ]),
            sampling: "grid".into(),
            seed: 7,
            max_runs: 10,
            concurrency: 2,
            metric: "accuracy".into(),
            goal: "max".into(),
            early_stop: "none".into(),
        })
        .unwrap();
    assert_eq!(sweep.planned.len(), 2, "a grid of 2 x 1");
    let done = wait_until("the sweep to end", || {
        let current = sweeps.get(&sweep.id).ok()?;
        (current.status != SweepStatus::Running).then_some(current)
    })
    .await;
    cancel.cancel();
    scheduler.await.unwrap();
    controller.await.unwrap();
    assert_eq!(done.status, SweepStatus::Completed, "{:?}", done.error);
    assert_eq!(done.child_runs.len(), 2);
    for child in &done.child_runs {
        let run = kit.jobs.tracking().run(child).unwrap();
        assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
        assert_eq!(run.sweep_id.as_deref(), Some(sweep.id.as_str()));
    }
    let best = done.best_run_id.expect("a best run");
    assert!(done.child_runs.contains(&best));
    assert_eq!(done.registered.as_deref(), Some("best@1"));
    let version = kit.jobs.registry().resolve("default", "best", "1").unwrap();
    assert_eq!(version.tags.get("shoal.run"), Some(&best));
}
