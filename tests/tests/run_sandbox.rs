//! Malicious training code: a script run looks for the hub's admin token and manifest signing
//! key, by the relative path from its folder, by absolute path, through a symbolic link, by
//! searching the disk, and through its parent's `/proc` entries, and reads its environment for
//! the hub's own variables. It finds nothing it can read, and its own folder still works.

use std::collections::HashMap;

use shoal_integration_tests::{TestHub, TestWorker};
use shoal_proto::training as pb;

/// Prints `READ <what>` for everything it manages to read, `DENIED <what>` otherwise.
const PROBE_SH: &str = r#"
probe() {
  if cat "$2" >/dev/null 2>&1; then echo "READ $1"; else echo "DENIED $1"; fi
}
probe relative-key ../../signing.key
probe relative-key-2 ../hub/signing.key
probe absolute-key "$HUB_DATA/signing.key"
probe absolute-token "$HUB_DATA/admin.token"
probe linked-key "$LINK_TO_DATA/signing.key"
probe parent-environ /proc/$PPID/environ
for f in $(find "$SEARCH_ROOT" -name signing.key -o -name admin.token 2>/dev/null); do
  probe "found:$f" "$f"
done
if env | grep -q SHOAL_SANDBOX_SENTINEL; then echo "LEAKED sentinel"; fi
if ls "$HUB_DATA" >/dev/null 2>&1; then echo "READ listing"; fi
mkdir -p outputs && echo fine > outputs/own.txt && cat outputs/own.txt
"#;

fn probe_header(compute: &str, env: HashMap<String, String>) -> pb::SubmitRunHeader {
    pb::SubmitRunHeader {
        experiment: "sandbox".into(),
        compute: compute.into(),
        job: Some(pb::submit_run_header::Job::Script(pb::ScriptJob {
            command: vec!["sh".into(), "probe.sh".into()],
            env,
            secrets: HashMap::new(),
        })),
        ..Default::default()
    }
}

async fn run_probe(hub: &TestHub, compute: &str, env: HashMap<String, String>) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("probe.sh"), PROBE_SH).expect("write the probe");
    let packed = shoal_compute::pack_dir(dir.path(), 1 << 20).expect("pack");
    let run = hub
        .submit_run(probe_header(compute, env), Some(packed.bytes))
        .await;
    let logs = hub.run_logs(&run.id, true).await;
    let done = hub.wait_for_run_end(&run.id).await;
    assert_eq!(
        done.status, "completed",
        "{}: {:?}",
        done.error, done.log_tail
    );
    logs
}

fn assert_nothing_read(logs: &[String]) {
    let leaks: Vec<&String> = logs
        .iter()
        .filter(|l| l.starts_with("READ") || l.starts_with("LEAKED"))
        .collect();
    assert!(
        leaks.is_empty(),
        "the run reached {leaks:?}; full log: {logs:?}"
    );
    assert!(
        logs.iter().any(|l| l == "DENIED absolute-key"),
        "the probe ran: {logs:?}"
    );
    assert!(
        logs.iter().any(|l| l == "fine"),
        "own folder works: {logs:?}"
    );
}

#[tokio::test]
async fn a_local_run_cannot_read_the_hubs_keys_or_environment() {
    std::env::set_var("SHOAL_SANDBOX_SENTINEL", "hub-only");
    let hub = TestHub::start().await;
    let root = hub.data_dir.parent().expect("the data folder has a parent");
    let link = root.join("link-to-data");
    std::os::unix::fs::symlink(&hub.data_dir, &link).expect("symlink");
    let env = HashMap::from([
        ("HUB_DATA".to_string(), hub.data_dir.display().to_string()),
        ("LINK_TO_DATA".to_string(), link.display().to_string()),
        ("SEARCH_ROOT".to_string(), root.display().to_string()),
    ]);
    assert!(
        !hub.runs_dir.starts_with(&hub.data_dir),
        "run folders live outside the data folder"
    );
    let logs = run_probe(&hub, "local", env).await;
    assert_nothing_read(&logs);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_worker_run_cannot_read_other_runs_or_the_workers_environment() {
    std::env::set_var("SHOAL_SANDBOX_SENTINEL", "worker-only");
    let hub = TestHub::start().await;
    let work = tempfile::tempdir().expect("temp dir");
    // Another run's folder on the same worker, holding a key of its own.
    let other = work.path().join("other-run");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("signing.key"), "another run's secret").expect("write");
    let _worker = TestWorker::start(&hub, "sandboxed", work.path());
    let env = HashMap::from([
        ("HUB_DATA".to_string(), other.display().to_string()),
        ("LINK_TO_DATA".to_string(), other.display().to_string()),
        ("SEARCH_ROOT".to_string(), work.path().display().to_string()),
    ]);
    let logs = run_probe(&hub, "worker", env).await;
    assert_nothing_read(&logs);
    hub.shutdown().await;
}
