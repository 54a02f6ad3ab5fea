//! A runner that dies without stopping its job: the group record finds the job again.

mod support;

use std::os::unix::process::CommandExt;

use shoal_compute::{kill_leftover_group, write_group_record, GroupRecord};
use support::{process_is_gone, wait_for_line_in_file, wait_until};

#[tokio::test]
async fn a_restarted_runner_kills_the_group_its_predecessor_left() {
    let dir = tempfile::tempdir().expect("temp dir");
    // An orphaned job: a leader and a background child that ignores SIGTERM, in a group of
    // their own, as run_job starts them.
    let mut leader = std::process::Command::new("sh")
        .arg("-c")
        .arg("sh -c 'trap \"\" TERM; echo $$ > child.pid; while true; do sleep 1; done' & while true; do sleep 1; done")
        .current_dir(dir.path())
        .process_group(0)
        .spawn()
        .expect("spawn");
    let child: i32 = wait_for_line_in_file(&dir.path().join("child.pid"))
        .await
        .parse()
        .expect("a pid");
    let record = GroupRecord::for_leader(leader.id()).expect("a record");
    let path = dir.path().join(".shoal/group.json");
    write_group_record(&path, &record).expect("write");

    assert!(kill_leftover_group(&path).expect("checked"));
    assert!(!path.exists());
    let _ = leader.wait();
    wait_until("the orphaned child to be killed", || process_is_gone(child)).await;
}

#[tokio::test]
async fn a_running_job_keeps_a_record_until_its_group_is_gone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("run/.shoal/group.json");
    let mut spec = support::sh_spec(
        dir.path(),
        "echo started; while [ ! -f go ]; do sleep 0.05; done",
    );
    spec.group_file = Some(record.clone());
    let mut job = support::start_job(spec);
    job.wait_for_event(
        "the first line",
        |e| matches!(e, shoal_compute::JobEvent::Log(l) if l.line == "started"),
    )
    .await;
    let written: GroupRecord =
        serde_json::from_slice(&std::fs::read(&record).expect("record written")).expect("json");
    assert!(written.pgid > 1);
    std::fs::write(dir.path().join("go"), "").expect("release the job");
    let (outcome, _) = job.finish().await;
    assert!(outcome.expect("ran").status.success());
    assert!(!record.exists(), "removed once the group is gone");
}
