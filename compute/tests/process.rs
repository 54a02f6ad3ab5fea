//! Running real jobs through `/bin/sh`: log streaming, exit codes, cancellation and cleanup of
//! the process group, spawn errors.

mod support;

use shoal_compute::{
    run_job, ComputeError, JobEvent, JobSpec, JobStatus, LogStream, LOG_TAIL_LINES,
    MAX_LOG_LINE_BYTES,
};
use support::{log_lines, process_is_gone, sh_spec, start_job, wait_for_line_in_file, wait_until};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn logs_stream_while_the_job_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = r#"
        echo "out one"
        echo "err one" >&2
        while [ ! -f go ]; do sleep 0.02; done
        echo "out two"
    "#;
    let mut job = start_job(sh_spec(dir.path(), script));

    job.wait_for_event("first stdout line", |event| {
        matches!(event, JobEvent::Log(l) if l.stream == LogStream::Stdout && l.line == "out one")
    })
    .await;
    job.wait_for_event("first stderr line", |event| {
        matches!(event, JobEvent::Log(l) if l.stream == LogStream::Stderr && l.line == "err one")
    })
    .await;
    // The script is blocked on the `go` file, so these lines arrived while it was running.
    assert!(!job.handle.is_finished());

    std::fs::write(dir.path().join("go"), b"").expect("create go file");
    let (outcome, events) = job.finish().await;
    let outcome = outcome.expect("job runs");
    assert_eq!(outcome.status, JobStatus::Exited(0));
    assert!(outcome.status.success());
    let lines = log_lines(&events);
    assert!(lines.contains(&"out two".to_string()), "{lines:?}");
    let first_ts = events.iter().find_map(|event| match event {
        JobEvent::Log(l) => Some(l.ts_ms),
        _ => None,
    });
    assert!(first_ts.is_some_and(|ts| ts > 0));
}

#[tokio::test]
async fn exit_code_and_log_tail_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = r#"
        i=0
        while [ $i -lt 100 ]; do echo "line $i"; i=$((i + 1)); done
        echo "almost done" >&2
        echo "last words"
        exit 3
    "#;
    let job = start_job(sh_spec(dir.path(), script));
    let (outcome, _events) = job.finish().await;
    let outcome = outcome.expect("job runs");

    assert_eq!(outcome.status, JobStatus::Exited(3));
    assert!(!outcome.status.success());
    assert_eq!(outcome.log_tail.len(), LOG_TAIL_LINES);
    // Stdout and stderr are read concurrently, so the stderr line may land anywhere near the
    // end; the stdout lines keep their order.
    assert!(outcome.log_tail.contains(&"almost done".to_string()));
    let stdout_tail: Vec<&String> = outcome
        .log_tail
        .iter()
        .filter(|line| *line != "almost done")
        .collect();
    assert_eq!(stdout_tail.last().map(|s| s.as_str()), Some("last words"));
    assert!(outcome.log_tail.contains(&"line 99".to_string()));
    assert!(!outcome.log_tail.contains(&"line 0".to_string()));
}

#[tokio::test]
async fn signal_death_is_reported_as_signaled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = start_job(sh_spec(dir.path(), "kill -KILL $$"));
    let (outcome, _events) = job.finish().await;
    assert_eq!(
        outcome.expect("job runs").status,
        JobStatus::Signaled(libc::SIGKILL)
    );
}

#[tokio::test]
async fn environment_and_workdir_are_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh_spec(dir.path(), r#"echo "run=$SHOAL_RUN_ID"; pwd"#);
    spec.env
        .push(("SHOAL_RUN_ID".to_string(), "run-42".to_string()));
    let (outcome, events) = start_job(spec).finish().await;
    assert_eq!(outcome.expect("job runs").status, JobStatus::Exited(0));
    let lines = log_lines(&events);
    assert_eq!(lines[0], "run=run-42");
    let reported = std::fs::canonicalize(&lines[1]).expect("pwd prints a real path");
    let expected = std::fs::canonicalize(dir.path()).expect("tempdir exists");
    assert_eq!(reported, expected);
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The inner shell ignores SIGTERM (and so does the `sleep` it starts), so only the SIGKILL
    // that follows the grace period can end it.
    let script = r#"
        sh -c 'trap "" TERM; echo $$ > stubborn.pid; sleep 1000' &
        echo started
        wait
    "#;
    let mut job = start_job(sh_spec(dir.path(), script));
    let stubborn_pid: i32 = wait_for_line_in_file(&dir.path().join("stubborn.pid"))
        .await
        .parse()
        .expect("pid file holds a pid");
    job.wait_for_event(
        "started line",
        |event| matches!(event, JobEvent::Log(l) if l.line == "started"),
    )
    .await;
    assert!(!process_is_gone(stubborn_pid));

    job.cancel.cancel();
    let (outcome, _events) = job.finish().await;
    assert_eq!(outcome.expect("job runs").status, JobStatus::Canceled);
    wait_until("the SIGTERM-ignoring child to be killed", || {
        process_is_gone(stubborn_pid)
    })
    .await;
}

#[tokio::test]
async fn cancel_before_start_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, _rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let outcome = run_job(sh_spec(dir.path(), "touch ran"), tx, cancel)
        .await
        .expect("canceled job is an outcome");
    assert_eq!(outcome.status, JobStatus::Canceled);
    assert!(!dir.path().join("ran").exists());
}

#[tokio::test]
async fn leftover_background_children_are_killed_after_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The background sleep also holds the job's stdout open: the run must still finish.
    let script = r#"
        sleep 1000 &
        echo $! > leftover.pid
        echo "main done"
    "#;
    let job = start_job(sh_spec(dir.path(), script));
    let (outcome, events) = job.finish().await;
    assert_eq!(outcome.expect("job runs").status, JobStatus::Exited(0));
    assert!(log_lines(&events).contains(&"main done".to_string()));

    let leftover_pid: i32 = wait_for_line_in_file(&dir.path().join("leftover.pid"))
        .await
        .parse()
        .expect("pid file holds a pid");
    wait_until("the leftover background child to be killed", || {
        process_is_gone(leftover_pid)
    })
    .await;
}

#[tokio::test]
async fn missing_command_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, _rx) = mpsc::channel(8);
    let spec = JobSpec::new(vec!["shoal-no-such-trainer".to_string()], dir.path());
    let error = run_job(spec, tx, CancellationToken::new())
        .await
        .expect_err("the command does not exist");
    assert!(
        matches!(&error, ComputeError::CommandNotFound { command } if command == "shoal-no-such-trainer"),
        "{error:?}"
    );
    assert!(error.to_string().contains("shoal-no-such-trainer"));
}

#[tokio::test]
async fn missing_workdir_and_empty_command_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, _rx) = mpsc::channel(8);
    let missing = dir.path().join("nope");
    let error = run_job(
        sh_spec(&missing, "true"),
        tx.clone(),
        CancellationToken::new(),
    )
    .await
    .expect_err("workdir does not exist");
    assert!(
        matches!(error, ComputeError::WorkdirMissing { .. }),
        "{error:?}"
    );

    let error = run_job(
        JobSpec::new(Vec::new(), dir.path()),
        tx,
        CancellationToken::new(),
    )
    .await
    .expect_err("no command");
    assert!(matches!(error, ComputeError::EmptyCommand), "{error:?}");
}

#[tokio::test]
async fn long_lines_are_split() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 3 * 64 KiB + 10 bytes, then a newline: exactly three full pieces and a short one.
    let total = 3 * MAX_LOG_LINE_BYTES + 10;
    let script = format!("head -c {total} /dev/zero | tr '\\0' 'a'; echo; echo after");
    let (outcome, events) = start_job(sh_spec(dir.path(), &script)).finish().await;
    assert_eq!(outcome.expect("job runs").status, JobStatus::Exited(0));
    let lengths: Vec<usize> = log_lines(&events).iter().map(String::len).collect();
    assert_eq!(
        lengths,
        vec![
            MAX_LOG_LINE_BYTES,
            MAX_LOG_LINE_BYTES,
            MAX_LOG_LINE_BYTES,
            10,
            5
        ]
    );
}

#[tokio::test]
async fn closed_event_channel_does_not_stall_the_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    // Far more output than a pipe buffer holds, on both streams.
    let script = "i=0; while [ $i -lt 20000 ]; do echo \"line $i\"; echo \"err $i\" >&2; \
                  i=$((i + 1)); done; echo end";
    let outcome = tokio::time::timeout(
        support::DEADLINE,
        run_job(sh_spec(dir.path(), script), tx, CancellationToken::new()),
    )
    .await
    .expect("job finishes")
    .expect("job runs");
    assert_eq!(outcome.status, JobStatus::Exited(0));
    // Both streams are read concurrently: whichever finished last wrote the final tail line.
    let last = outcome.log_tail.last().map(String::as_str);
    assert!(matches!(last, Some("end" | "err 19999")), "{last:?}");
}

#[tokio::test]
async fn dropping_the_run_kills_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = start_job(sh_spec(dir.path(), "echo $$ > main.pid; sleep 1000"));
    let main_pid: i32 = wait_for_line_in_file(&dir.path().join("main.pid"))
        .await
        .parse()
        .expect("pid file holds a pid");
    job.handle.abort();
    let _ = job.handle.await;
    wait_until("the aborted job's process to be killed", || {
        process_is_gone(main_pid)
    })
    .await;
}

/// A sandboxed job cannot read, list or write a hidden folder, nor another run's folder, but
/// uses its own folder; it inherits only the allow-listed part of the runner's environment.
#[tokio::test]
async fn a_sandboxed_job_sees_neither_hidden_folders_nor_the_runners_secrets() {
    std::env::set_var("SHOAL_COMPUTE_TEST_SECRET", "runner-only");
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    let runs = root.path().join("runs");
    let own = runs.join("r1");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::create_dir_all(runs.join("r2")).expect("mkdir");
    std::fs::create_dir_all(&own).expect("mkdir");
    std::fs::write(data.join("signing.key"), "hub secret").expect("write");
    std::fs::write(runs.join("r2/notes"), "other run").expect("write");
    let script = format!(
        r#"
        cat {data}/signing.key && echo LEAK-read
        ls {data} && echo LEAK-list
        touch {data}/planted && echo LEAK-write
        cat {runs}/r2/notes && echo LEAK-other-run
        env | grep SHOAL_COMPUTE_TEST_SECRET && echo LEAK-env
        echo mine > own.txt && cat own.txt
        "#,
        data = data.display(),
        runs = runs.display()
    );
    let mut spec = sh_spec(&own, &script);
    spec.inherit_env = shoal_compute::InheritEnv::AllowList;
    spec.sandbox = shoal_compute::Sandbox::for_run(std::slice::from_ref(&data), &runs, &own, true);
    let (tx, mut rx) = mpsc::channel(64);
    let outcome = run_job(spec, tx, CancellationToken::new())
        .await
        .expect("the job ran");
    assert!(outcome.status.success(), "{:?}", outcome.log_tail);
    let mut events = Vec::new();
    while let Some(event) = rx.recv().await {
        events.push(event);
    }
    let lines = log_lines(&events);
    assert!(
        !lines.iter().any(|l| l.contains("LEAK")),
        "the job reached what it must not: {lines:?}"
    );
    assert!(lines.contains(&"mine".to_string()), "{lines:?}");
    assert!(!data.join("planted").exists());
}
