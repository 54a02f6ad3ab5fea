//! An agent killed in the middle of a download resumes from what it had on disk.

use shoal_agent::config::AgentSection;
use shoal_integration_tests::{wait_for, TestAgent, TestHub};
use shoal_model::build::Mlp;

fn part_file_len(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir.join("downloads")) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_download_resumes_where_it_stopped() {
    let hub = TestHub::start().await;
    let dirs = tempfile::tempdir().unwrap();
    let data_dir = dirs.path().join("cam-01");
    // About 1.1 MB of weights.
    let model = Mlp::seeded(&[32, 512, 512, 2], 5).to_onnx();
    let version = hub.register("big", &model).await.unwrap();

    // A slow link: 64 KiB windows at 256 KiB/s, so the download takes seconds.
    let mut config = hub.add_device("cam-01").await;
    let fast = config.clone();
    config.agent = AgentSection {
        download_window_bytes: Some(64 * 1024),
        download_rate_limit_bytes_per_sec: Some(256 * 1024),
        ..Default::default()
    };
    let agent = TestAgent::start(config, &data_dir).await;
    hub.deploy("big", "big", "1", &["cam-01"]).await;
    let partial = wait_for("a partial download on disk", || async {
        let len = part_file_len(&data_dir);
        (len >= 128 * 1024).then_some(len)
    })
    .await;
    assert!(partial < version.size_bytes, "killed before the end");
    agent.kill();

    let on_disk = part_file_len(&data_dir);
    assert!(on_disk >= partial);
    let agent = TestAgent::start(fast, &data_dir).await;
    let device = hub.wait_for_active("cam-01", &version.digest).await;
    let update = device.reported.unwrap().update.unwrap();
    assert_eq!(
        update.resumed_from, on_disk,
        "resumed from the bytes on disk, not from zero"
    );
    let (_, model) = agent.get("/v1/model").await;
    assert_eq!(model["digest"], version.digest.as_str());
    agent.stop().await;
    hub.shutdown().await;
}
