//! Shoal's first-slice benchmark: model delivery over MQTT, the agent's inference overhead,
//! and the agent's footprint. See docs/BENCHMARKS.md for how to run it and what it printed.
//!
//! ```text
//! cargo build --release -p shoal-agent
//! cargo run --release -p shoal-integration-tests --bin shoal-bench
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use shoal_integration_tests::{external_broker, infer_body, wait_for, TestAgent, TestHub};
use shoal_model::build::Mlp;
use shoal_model::{LoadedModel, Tensor};

const AGENTS: usize = 20;
const INFER_ROUNDS: usize = 3000;
/// Untimed calls before each timed series: connections, pools and caches warm.
const WARMUP_ROUNDS: usize = 300;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!(
            "# Shoal benchmark ({} cores, {})",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            std::env::consts::ARCH
        );
        delivery().await;
        inference_overhead().await;
        footprint().await;
    });
}

/// A 10 MB model to 20 agents, through the embedded broker and through an external one.
async fn delivery() {
    println!("\n## Delivery of a 10 MB model to {AGENTS} agents");
    let model = Mlp::seeded(&[256, 2048, 1024, 2], 1).to_onnx();
    println!("model: {} bytes", model.len());
    let mosquitto = external_broker().unwrap_or_else(|| "mqtt://127.0.0.1:1883".into());
    for (label, external) in [("embedded rumqttd", None), ("mosquitto", Some(mosquitto))] {
        let mut builder = TestHub::builder().embedded();
        if let Some(url) = &external {
            if !reachable(url) {
                println!("{label}: skipped ({url} not reachable)");
                continue;
            }
            builder = builder.external(url);
        }
        let hub = builder.start().await;
        let version = hub.register("big", &model).await.expect("register");
        let dirs = tempfile::tempdir().expect("temp");
        let mut agents = Vec::new();
        let mut ids = Vec::new();
        for i in 0..AGENTS {
            let id = format!("dev-{i:02}");
            agents.push(TestAgent::start(hub.add_device(&id).await, &dirs.path().join(&id)).await);
            ids.push(id);
        }
        for id in &ids {
            wait_for("online", || async {
                hub.device(id).await.online.then_some(())
            })
            .await;
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let start = Instant::now();
        hub.deploy("big", "big", "1", &refs).await;
        for id in &ids {
            hub.wait_for_active(id, &version.digest).await;
        }
        let elapsed = start.elapsed();
        let total_mb = (model.len() * AGENTS) as f64 / 1e6;
        println!(
            "{label}: all {AGENTS} active in {:.2} s ({total_mb:.0} MB moved, {:.1} MB/s aggregate; includes sha256, tract load and smoke test on each agent)",
            elapsed.as_secs_f64(),
            total_mb / elapsed.as_secs_f64()
        );
        for agent in agents {
            agent.stop().await;
        }
        hub.shutdown().await;
    }
}

fn reachable(url: &str) -> bool {
    let address = url.trim_start_matches("mqtt://");
    std::net::TcpStream::connect_timeout(
        &address.parse().expect("host:port"),
        Duration::from_secs(1),
    )
    .is_ok()
}

struct Stats {
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Stats {
    fn show(&self) -> String {
        format!(
            "{:.1} / {:.1} / {:.1}",
            self.mean_us, self.p50_us, self.p99_us
        )
    }
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Stats {
        mean_us: samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64,
        p50_us: us(samples[samples.len() / 2]),
        p99_us: us(samples[samples.len() * 99 / 100]),
    }
}

/// `/v1/infer` against calling tract directly on the same model and input, with two
/// baselines that split the difference: the agent's JSON checks and conversion in-process
/// (`run_json`), and a bare HTTP round trip to the same agent (`GET /healthz`).
async fn inference_overhead() {
    println!("\n## Inference: agent /v1/infer against tract called directly ({INFER_ROUNDS} sequential calls, batch 1, times in µs as mean / p50 / p99)");
    let hub = TestHub::builder().embedded().start().await;
    let dirs = tempfile::tempdir().expect("temp");
    let agent = TestAgent::start(hub.add_device("bench").await, &dirs.path().join("bench")).await;
    let client = reqwest::Client::new();
    let health_url = format!("http://{}/healthz", agent.http_addr);
    let mut samples = Vec::with_capacity(INFER_ROUNDS);
    for round in 0..WARMUP_ROUNDS + INFER_ROUNDS {
        let start = Instant::now();
        let bytes = client
            .get(&health_url)
            .send()
            .await
            .expect("healthz")
            .bytes()
            .await
            .expect("body");
        if round >= WARMUP_ROUNDS {
            samples.push(start.elapsed());
        }
        std::hint::black_box(bytes);
    }
    let http_floor = stats(samples);
    println!(
        "bare HTTP round trip (GET /healthz, same client): {}",
        http_floor.show()
    );
    println!();
    println!("| model | tract direct | + JSON checks (run_json) | agent POST /v1/infer | agent overhead |");
    println!("|---|---|---|---|---|");
    for (i, sizes) in [vec![4, 16, 2], vec![4, 256, 256, 2], vec![4, 1024, 1024, 2]]
        .into_iter()
        .enumerate()
    {
        let mlp = Mlp::seeded(&sizes, 3);
        let bytes = mlp.to_onnx();
        let name = format!("m{i}");
        let version = hub.register(&name, &bytes).await.expect("register");
        hub.deploy(&name, &name, "1", &["bench"]).await;
        agent.wait_for_model(&version.digest).await;

        let direct = LoadedModel::from_bytes(&bytes).expect("load");
        let row = [0.5f32, -1.0, 2.0, 4.0];
        let direct_stats = time(|| {
            std::hint::black_box(
                direct
                    .run(vec![Tensor::f32(vec![1, 4], row.to_vec())])
                    .expect("run"),
            );
        });
        let request: shoal_model::InferRequest =
            serde_json::from_value(infer_body(&[row])).expect("request");
        let json_stats = time(|| {
            std::hint::black_box(direct.run_json(&request.inputs).expect("run_json"));
        });

        let url = format!("http://{}/v1/infer", agent.http_addr);
        let body = infer_body(&[row]).to_string();
        let mut samples = Vec::with_capacity(INFER_ROUNDS);
        for round in 0..WARMUP_ROUNDS + INFER_ROUNDS {
            let start = Instant::now();
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("infer");
            let bytes = response.bytes().await.expect("body");
            if round >= WARMUP_ROUNDS {
                samples.push(start.elapsed());
            }
            std::hint::black_box(bytes);
        }
        let http_stats = stats(samples);
        let overhead = http_stats.mean_us - direct_stats.mean_us;
        println!(
            "| MLP {:?} ({} KB) | {} | {} | {} | +{:.1} µs ({:+.0}%), of which {:.1} µs is the bare HTTP round trip |",
            sizes,
            bytes.len() / 1000,
            direct_stats.show(),
            json_stats.show(),
            http_stats.show(),
            overhead,
            overhead / direct_stats.mean_us * 100.0,
            http_floor.mean_us,
        );
    }
    agent.stop().await;
    hub.shutdown().await;
}

fn time(mut f: impl FnMut()) -> Stats {
    let mut samples = Vec::with_capacity(INFER_ROUNDS);
    for round in 0..WARMUP_ROUNDS + INFER_ROUNDS {
        let start = Instant::now();
        f();
        if round >= WARMUP_ROUNDS {
            samples.push(start.elapsed());
        }
    }
    stats(samples)
}

/// The release `shoal-agent` binary: its size, and its resident memory serving a small model.
async fn footprint() {
    println!("\n## Agent footprint");
    let binary = agent_binary();
    let Ok(meta) = std::fs::metadata(&binary) else {
        println!(
            "{} not found: run `cargo build --release -p shoal-agent` first",
            binary.display()
        );
        return;
    };
    println!(
        "shoal-agent binary (release, stripped): {:.2} MiB ({} bytes)",
        meta.len() as f64 / 1048576.0,
        meta.len()
    );

    let hub = TestHub::builder().embedded().start().await;
    let dirs = tempfile::tempdir().expect("temp");
    let config = hub.add_device("rss").await;
    let config_path = dirs.path().join("rss.toml");
    std::fs::write(&config_path, toml_string(&config)).expect("write config");
    let port = free_port();
    let mut child = tokio::process::Command::new(&binary)
        .args([
            "run",
            "--config",
            config_path.to_str().expect("utf-8 path"),
            "--data-dir",
        ])
        .arg(dirs.path().join("rss-data"))
        .args(["--http-listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn shoal-agent");
    let pid = child.id().expect("pid");
    wait_for("agent online", || async {
        hub.device("rss").await.online.then_some(())
    })
    .await;
    let idle = rss_kib(pid);
    let mlp = Mlp::seeded(&[4, 16, 2], 1);
    let version = hub
        .register("small", &mlp.to_onnx())
        .await
        .expect("register");
    hub.deploy("small", "small", "1", &["rss"]).await;
    hub.wait_for_active("rss", &version.digest).await;
    let client = reqwest::Client::new();
    for _ in 0..200 {
        client
            .post(format!("http://127.0.0.1:{port}/v1/infer"))
            .body(infer_body(&[[1.0, 2.0, 3.0, 4.0]]).to_string())
            .send()
            .await
            .expect("infer");
    }
    let loaded = rss_kib(pid);
    println!(
        "shoal-agent RSS: {:.1} MiB connected with no model, {:.1} MiB serving a {}-byte MLP after 200 inferences (peak {:.1} MiB)",
        idle.0 as f64 / 1024.0,
        loaded.0 as f64 / 1024.0,
        version.size_bytes,
        loaded.1 as f64 / 1024.0
    );
    let _ = child.kill().await;
    hub.shutdown().await;
}

fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().expect("target dir").join("shoal-agent")
}

fn toml_string(config: &shoal_agent::config::AgentConfigFile) -> String {
    toml::to_string(config).expect("serialize config")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// (VmRSS, VmHWM) in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
