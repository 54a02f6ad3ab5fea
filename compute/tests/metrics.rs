//! Metrics written by real jobs to `SHOAL_METRICS`, read while they run.

mod support;

use std::path::PathBuf;

use shoal_compute::{JobEvent, JobStatus, MetricPoint};
use support::{sh_spec, start_job, wait_for_line_in_file};

fn metrics(events: &[JobEvent]) -> Vec<MetricPoint> {
    events
        .iter()
        .filter_map(|event| match event {
            JobEvent::Metric(point) => Some(point.clone()),
            _ => None,
        })
        .collect()
}

fn warnings(events: &[JobEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            JobEvent::Warning(message) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn both_line_formats_are_recorded_and_bad_lines_warn() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Line 2 is malformed; the last line has no trailing newline and must still count.
    let script = r#"
        printf '%s\n' '{"key": "loss", "value": 0.5, "step": 1, "timestamp": 1732700000000}' >> "$SHOAL_METRICS"
        printf '%s\n' '{"loss": oops}' >> "$SHOAL_METRICS"
        printf '%s\n' '{"step": 2, "loss": 0.25, "accuracy": 0.75}' >> "$SHOAL_METRICS"
        printf '%s' '{"key": "loss", "value": 0.125, "step": 3}' >> "$SHOAL_METRICS"
    "#;
    let mut spec = sh_spec(dir.path(), script);
    spec.metrics_file = Some(PathBuf::from("shoal/metrics.jsonl"));
    let (outcome, events) = start_job(spec).finish().await;
    assert_eq!(outcome.expect("job runs").status, JobStatus::Exited(0));

    let points = metrics(&events);
    let summary: Vec<(&str, f64, i64)> = points
        .iter()
        .map(|p| (p.key.as_str(), p.value, p.step))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("loss", 0.5, 1),
            ("accuracy", 0.75, 2),
            ("loss", 0.25, 2),
            ("loss", 0.125, 3),
        ]
    );
    assert_eq!(points[0].timestamp_ms, 1_732_700_000_000);
    assert!(
        points[1].timestamp_ms > 1_732_700_000_000,
        "defaults to now"
    );

    let warnings = warnings(&events);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("line 2"), "{warnings:?}");
    assert!(dir.path().join("shoal/metrics.jsonl").is_file());
}

#[tokio::test]
async fn metrics_arrive_while_running_and_partial_lines_wait_for_their_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One write holding a complete line and the start of the next; the rest of the second
    // line is written only after the test has seen the first metric, i.e. after the runner has
    // already read the partial line once.
    let script = r#"
        printf '%s\n%s' '{"step": 1, "loss": 1.0}' '{"step": 2, "lo' >> "$SHOAL_METRICS"
        while [ ! -f go ]; do sleep 0.02; done
        printf '%s\n' 'ss": 0.5}' >> "$SHOAL_METRICS"
        echo written > done.flag
        while [ ! -f stop ]; do sleep 0.02; done
    "#;
    let mut spec = sh_spec(dir.path(), script);
    let metrics_path = dir.path().join("metrics.jsonl");
    spec.metrics_file = Some(metrics_path.clone());
    let mut job = start_job(spec);

    job.wait_for_event(
        "first metric",
        |event| matches!(event, JobEvent::Metric(p) if p.key == "loss" && p.step == 1),
    )
    .await;
    std::fs::write(dir.path().join("go"), b"").expect("create go file");
    wait_for_line_in_file(&dir.path().join("done.flag")).await;
    job.wait_for_event("second metric, while the job still runs", |event| {
        matches!(event, JobEvent::Metric(p) if p.key == "loss" && p.step == 2 && p.value == 0.5)
    })
    .await;
    assert!(!job.handle.is_finished());

    std::fs::write(dir.path().join("stop"), b"").expect("create stop file");
    let (outcome, events) = job.finish().await;
    assert_eq!(outcome.expect("job runs").status, JobStatus::Exited(0));
    assert!(warnings(&events).is_empty(), "{:?}", warnings(&events));
    assert_eq!(metrics(&events).len(), 2);
}

#[tokio::test]
async fn metrics_env_var_points_at_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh_spec(dir.path(), r#"echo "$SHOAL_METRICS""#);
    let metrics_path = dir.path().join("m.jsonl");
    std::fs::write(&metrics_path, "{\"stale\": 1}\n").expect("write stale metrics");
    spec.metrics_file = Some(metrics_path.clone());
    let (outcome, events) = start_job(spec).finish().await;
    assert_eq!(outcome.expect("job runs").status, JobStatus::Exited(0));
    assert_eq!(
        support::log_lines(&events),
        vec![metrics_path.display().to_string()]
    );
    // The file was truncated at start, so the stale line from a previous attempt is gone.
    assert!(metrics(&events).is_empty());
}

/// A runner started with a relative work folder (`--data-dir ./hub`): the job runs inside
/// that folder, so `SHOAL_METRICS` must not be relative to the runner's.
#[tokio::test]
async fn a_relative_work_folder_still_gives_the_job_a_usable_metrics_path() {
    let dir = tempfile::tempdir_in(".").expect("a folder under the current one");
    let relative = PathBuf::from(dir.path().file_name().expect("a name"));
    assert!(relative.is_relative());
    let mut spec = sh_spec(
        &relative,
        r#"printf '%s\n' '{"step": 1, "loss": 0.5}' >> "$SHOAL_METRICS""#,
    );
    spec.metrics_file = Some(PathBuf::from(".shoal/metrics.jsonl"));
    let (outcome, events) = start_job(spec).finish().await;
    assert_eq!(
        outcome.expect("ran").status,
        JobStatus::Exited(0),
        "{events:?}"
    );
    let points = metrics(&events);
    assert_eq!(points.len(), 1, "{events:?}");
    assert_eq!((points[0].key.as_str(), points[0].value), ("loss", 0.5));
}
