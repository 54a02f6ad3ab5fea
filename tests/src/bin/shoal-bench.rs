//! Shoal's first-slice benchmark: model delivery over MQTT, the agent's inference overhead,
//! and the agent's footprint. See docs/BENCHMARKS.md for how to run it and what it printed.
//!
//! ```text
//! cargo build --release -p shoal-agent
//! cargo run --release -p shoal-integration-tests --bin shoal-bench
//! cargo build --release -p shoal-hub && ulimit -n 8192 &&
//!     cargo run --release -p shoal-integration-tests --bin shoal-bench -- tls
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use shoal_integration_tests::process::AgentProcess;
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
        let only = std::env::args().nth(1).unwrap_or_default();
        if only.is_empty() || only == "slice1" {
            delivery().await;
            inference_overhead().await;
            footprint().await;
        }
        if only.is_empty() || only == "telemetry" {
            window_size_and_summary_cost();
            ingestion().await;
        }
        // Not in the default run: it needs `cargo build --release -p shoal-hub` first.
        if only == "tls" {
            tls_costs().await;
        }
    });
}

/// A 10 MB model to 20 agents, through the embedded broker and through an external one.
async fn delivery() {
    println!("\n## Delivery of a 10 MB model to {AGENTS} agents");
    let model = big_model();
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
        deliver(label, builder, &model).await;
    }
}

/// The 10 MB model of the delivery benchmarks.
fn big_model() -> Vec<u8> {
    let model = Mlp::seeded(&[256, 2048, 1024, 2], 1).to_onnx();
    println!("model: {} bytes", model.len());
    model
}

/// Starts a hub from `builder` and [`AGENTS`] agents, deploys `model` to all of them and
/// prints how long until every one has it active.
async fn deliver(label: &str, builder: shoal_integration_tests::TestHubBuilder, model: &[u8]) {
    let hub = builder.start().await;
    let version = hub.register("big", model).await.expect("register");
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

/// What TLS costs: the delivery above on the embedded broker without and with TLS, and a
/// storm of [`STORM_CLIENTS`] MQTT clients connecting at once over TLS to a `shoal-hub
/// serve --tls` process (built next to this binary), with that process's CPU time.
async fn tls_costs() {
    println!(
        "\n## Delivery of a 10 MB model to {AGENTS} agents, plaintext and TLS (embedded broker)"
    );
    let model = big_model();
    deliver("plaintext", TestHub::builder().embedded(), &model).await;
    deliver("TLS", TestHub::builder().tls(), &model).await;
    reconnect_storm().await;
}

const STORM_CLIENTS: usize = 1000;

async fn reconnect_storm() {
    use rumqttc::{Event, Packet};
    use tokio::io::AsyncBufReadExt;
    println!("\n## {STORM_CLIENTS} MQTT clients connecting at once over TLS");
    let dir = tempfile::tempdir().expect("temp");
    let hub_binary = std::env::current_exe()
        .expect("current exe")
        .parent()
        .expect("target dir")
        .join("shoal-hub");
    let mut child = tokio::process::Command::new(&hub_binary)
        .args(["serve", "--tls", "--data-dir"])
        .arg(dir.path())
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--mqtt-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "start {} (cargo build --release -p shoal-hub): {e}",
                hub_binary.display()
            )
        });
    let pid = child.id().expect("hub pid");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let banner = loop {
        let line = lines
            .next_line()
            .await
            .expect("read")
            .expect("the hub starts");
        if line.starts_with("shoal-hub: gRPC ") {
            break line;
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // "shoal-hub: gRPC 127.0.0.1:P · HTTP … · MQTT mqtts://127.0.0.1:R · admin token in …"
    let grpc = banner
        .split(" · ")
        .next()
        .expect("grpc")
        .trim_start_matches("shoal-hub: gRPC ");
    let ca = dir.path().join("tls").join("ca.pem");
    let token = std::fs::read_to_string(dir.path().join("admin.token")).expect("token");
    let mut client = shoal_client::HubClient::connect_with(
        &format!("https://{grpc}"),
        Some(token.trim()),
        Some(&ca),
    )
    .await
    .expect("connect over https");
    let creds = client
        .fleet
        .add_device(shoal_proto::fleet::AddDeviceRequest {
            workspace: "default".into(),
            id: "storm".into(),
            tags: Default::default(),
        })
        .await
        .expect("add device")
        .into_inner();
    let text = shoal_cli::agent_config_toml(&creds).expect("agent config");
    let config = shoal_agent::config::AgentConfigFile::parse(&text, "storm").expect("config");

    let cpu_before = cpu_ticks(pid);
    let start = Instant::now();
    let mut sessions = Vec::new();
    for i in 0..STORM_CLIENTS {
        let (client, mut eventloop) =
            shoal_integration_tests::mqtt_client_as(&config, &format!("storm-{i}"));
        sessions.push(tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return (client, eventloop, true),
                    Ok(_) => {}
                    Err(_) => return (client, eventloop, false),
                }
            }
        }));
    }
    let mut connected = 0;
    let mut open = Vec::new();
    for session in sessions {
        let (client, eventloop, ok) = session.await.expect("session task");
        connected += usize::from(ok);
        open.push((client, eventloop));
    }
    let elapsed = start.elapsed();
    let cpu = cpu_ticks(pid).saturating_sub(cpu_before) as f64 / clock_ticks_per_second();
    println!(
        "{connected} of {STORM_CLIENTS} connected in {:.2} s: {:.0} TLS handshakes + MQTT logins per second; hub CPU {cpu:.2} s ({:.0} % of one core over the storm)",
        elapsed.as_secs_f64(),
        connected as f64 / elapsed.as_secs_f64(),
        100.0 * cpu / elapsed.as_secs_f64()
    );
    drop(open);
    child.kill().await.expect("stop the hub");
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): state is field 3, utime 14.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn clock_ticks_per_second() -> f64 {
    // Linux reports CPU times in USER_HZ, 100 on every architecture Shoal targets.
    100.0
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
    // The agent binds an ephemeral port itself and says which: no port picked here that
    // another process could take before the agent binds it.
    let agent = AgentProcess::start(
        binary.to_str().expect("utf-8 path"),
        &config,
        &dirs.path().join("rss-data"),
        None,
    )
    .await;
    let pid = agent.pid().expect("pid");
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
            .post(format!("http://{}/v1/infer", agent.http_addr))
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
    agent.kill().await;
    hub.shutdown().await;
}

fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().expect("target dir").join("shoal-agent")
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

/// 20 numeric features: rows drawn around column-specific centres, as CSV with a header.
fn wide_rows(seed: u64, n: usize, shift: f64) -> (Vec<String>, Vec<Vec<f32>>) {
    let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    let mut rng = shoal_model::build::SplitMix64(seed);
    let rows = (0..n)
        .map(|_| {
            (0..20)
                .map(|i| (i as f64 + 10.0 * rng.unit() + shift) as f32)
                .collect()
        })
        .collect();
    (names, rows)
}

fn wide_baseline(names: &[String], rows: &[Vec<f32>]) -> shoal_drift::Baseline {
    let mut csv = names.join(",") + "\n";
    for row in rows {
        csv += &row
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",");
        csv += "\n";
    }
    let mut baseline = shoal_drift::profile_csv(csv.as_bytes(), &Default::default())
        .expect("profile")
        .baseline();
    baseline.outputs = vec![shoal_drift::OutputBaseline {
        name: "y".into(),
        kind: shoal_drift::OutputKind::Classes(shoal_drift::ClassBaseline::from_predictions(
            2,
            [0usize, 1, 1, 0],
        )),
    }];
    baseline
}

/// A full telemetry window over `rows`, as an agent encodes it.
fn wide_window(
    baseline: &shoal_drift::Baseline,
    rows: &[Vec<f32>],
    seq: u64,
    device: &str,
) -> Vec<u8> {
    use prost::Message;
    let mut summary = shoal_drift::WindowSummary::new(baseline);
    for row in rows {
        for (i, feature) in baseline.features.iter().enumerate() {
            if let (shoal_drift::FeatureKind::Numeric(b), shoal_drift::FeatureSummary::Numeric(s)) =
                (&feature.kind, &mut summary.features[i])
            {
                s.observe(b, Some(row[i] as f64));
            }
        }
        if let Some(shoal_drift::OutputSummary::Classes(c)) = summary.outputs.first_mut() {
            c.observe_class((row[0] > 5.0) as usize);
        }
    }
    let (features, outputs) = shoal_drift::wire::summary_to_wire(&summary, baseline);
    shoal_proto::device::TelemetryWindow {
        device_id: device.into(),
        boot_epoch: 1,
        seq,
        start_ms: 1_795_000_000_000,
        end_ms: 1_795_000_060_000,
        model: Some(shoal_proto::device::ActiveModel {
            model: "wide".into(),
            version: 1,
            digest: "ab".repeat(32),
        }),
        inferences: rows.len() as u64,
        errors: [("bad_input".to_string(), 3u64)].into_iter().collect(),
        latency: Some(shoal_proto::device::LatencyHistogram {
            counts: (0..32)
                .map(|i| if (4..12).contains(&i) { 100 + i } else { 0 })
                .collect(),
        }),
        features,
        outputs,
        health: Some(shoal_proto::device::DeviceHealth {
            cpu_percent: 12.5,
            rss_bytes: 19_000_000,
            disk_free_bytes: 40_000_000_000,
            buffer_records: 0,
            buffer_bytes: 0,
        }),
        dropped: Some(Default::default()),
    }
    .encode_to_vec()
}

/// Bytes per window on the wire for a 20-feature model, and what updating the summaries costs
/// per inference next to the inference itself.
fn window_size_and_summary_cost() {
    println!("\n## Telemetry windows");
    let (names, rows) = wide_rows(1, 5000, 0.0);
    let baseline = wide_baseline(&names, &rows);
    let window = wide_window(&baseline, &rows[..1000], 7, "dev-00");
    println!("bytes per window, 20 numeric features (10 bins each), 2-class output, latency histogram, health: {} bytes", window.len());

    // The agent's per-request cost of telemetry, against the inference of a small MLP.
    let mlp = Mlp::seeded(&[20, 16, 2], 3).with_softmax();
    let model = LoadedModel::from_bytes(&mlp.to_onnx()).expect("load");
    let bindings: Vec<shoal_drift::wire::FeatureBinding> = (0..20)
        .map(|c| shoal_drift::wire::FeatureBinding {
            input: "x".into(),
            column: c,
        })
        .collect();
    let manifest = shoal_proto::device::Manifest {
        model: "wide".into(),
        version: 1,
        digest: "ab".repeat(32),
        ..Default::default()
    };
    let drift = shoal_drift::wire::baseline_to_wire(&baseline, &bindings);
    let recorder = shoal_agent::telemetry::Recorder::new();
    if let Some(problem) = recorder.activate(&manifest, Some(&drift), model.signature(), 0) {
        println!("baseline problem: {problem}");
    }
    let request: shoal_model::InferRequest = serde_json::from_value(serde_json::json!({
        "inputs": {"x": {"shape": [1, 20], "data": rows[0]}}
    }))
    .expect("request");
    let outputs = model.run_json(&request.inputs).expect("run");
    let rounds = 200_000;
    let digest = "ab".repeat(32);
    let start = Instant::now();
    for _ in 0..rounds {
        recorder.record_inference(
            &digest,
            &request.inputs,
            &outputs,
            Duration::from_micros(40),
        );
    }
    let record_ns = start.elapsed().as_nanos() as f64 / rounds as f64;
    let start = Instant::now();
    for _ in 0..rounds / 10 {
        std::hint::black_box(
            model
                .run(vec![Tensor::f32(vec![1, 20], rows[0].clone())])
                .expect("run"),
        );
    }
    let infer_ns = start.elapsed().as_nanos() as f64 / (rounds / 10) as f64;
    println!(
        "summary update per single-row request (20 features + class output, lock included): {record_ns:.0} ns; MLP [20, 16, 2] inference (tract, batch 1): {infer_ns:.0} ns; update = {:.1}% of the inference",
        record_ns / infer_ns * 100.0
    );
}

/// Hub ingestion (decode, deduplicate, store, roll up, acknowledge) against the rate at which
/// the same broker delivers the same messages to a plain subscriber, in one run.
async fn ingestion() {
    use rumqttc::{Event, Packet, QoS};
    const DEVICES: usize = 10;
    const PER_DEVICE: u64 = 500;
    /// How long either reader may take; what has not arrived by then was dropped by the broker.
    const INGEST_DEADLINE: Duration = Duration::from_secs(30);
    println!("\n## Hub ingestion of telemetry windows ({DEVICES} devices × {PER_DEVICE} windows, 20 features)");
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
        let (names, rows) = wide_rows(1, 2000, 0.0);
        let mlp = Mlp::seeded(&[20, 8, 2], 1);
        hub.register("wide", &mlp.to_onnx())
            .await
            .expect("register");
        let mut logins = Vec::new();
        for d in 0..DEVICES {
            logins.push(hub.add_device(&format!("dev-{d:02}")).await);
        }
        let baseline = wide_baseline(&names, &rows);
        let mut payloads = Vec::new();
        for d in 0..DEVICES {
            for seq in 0..PER_DEVICE {
                payloads.push((
                    d,
                    wide_window(&baseline, &rows[..200], seq, &format!("dev-{d:02}")),
                ));
            }
        }
        let total = payloads.len();

        // A plain subscriber to every device's telemetry topic: the broker's delivery rate.
        // (With the hub's login: a device may read only its own topics.)
        let (watcher, mut watch_loop) =
            hub.mqtt_client_as_hub(&shoal_integration_tests::unique("plain-"));
        let filter = format!("{}/default/dev/+/telemetry", hub.topic_prefix);
        watcher
            .subscribe(&filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let plain = tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            let mut received = 0usize;
            let mut last = Instant::now();
            let deadline = tokio::time::Instant::now() + INGEST_DEADLINE;
            loop {
                let polled = tokio::select! {
                    polled = watch_loop.poll() => polled,
                    _ = tokio::time::sleep_until(deadline) => return (received, last),
                };
                match polled {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(_))) => {
                        received += 1;
                        last = Instant::now();
                        if received == total {
                            return (received, last);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => panic!("plain subscriber: {e}"),
                }
            }
        });
        let _ = subscribed.await;

        // One publisher per device, each publishing its windows as fast as its client allows.
        let start = Instant::now();
        let mut publishers = Vec::new();
        for (d, login) in logins.iter().enumerate() {
            let (client, mut eventloop) = shoal_integration_tests::mqtt_client_as(
                login,
                &shoal_integration_tests::unique("pub-"),
            );
            let topic = shoal_proto::topics::DeviceTopics::new(
                &hub.topic_prefix,
                "default",
                &format!("dev-{d:02}"),
            )
            .telemetry();
            let mine: Vec<Vec<u8>> = payloads
                .iter()
                .filter(|(i, _)| *i == d)
                .map(|(_, p)| p.clone())
                .collect();
            tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
            publishers.push(tokio::spawn(async move {
                for payload in mine {
                    client
                        .publish(&topic, QoS::AtLeastOnce, false, payload)
                        .await
                        .expect("publish");
                }
                client
            }));
        }
        for p in publishers {
            let _ = p.await;
        }
        // The hub is polled while the plain subscriber may still be waiting for messages the
        // broker dropped: waiting for it first would count its timeout as the hub's time.
        let mut grpc = hub.client().await;
        let deadline = Instant::now() + INGEST_DEADLINE;
        let mut last_change = Instant::now();
        let mut stored = 0u64;
        loop {
            let mut now_stored = 0;
            for d in 0..DEVICES {
                let t = grpc
                    .telemetry
                    .get_device_telemetry(shoal_proto::telemetry::GetDeviceTelemetryRequest {
                        workspace: "default".into(),
                        device: format!("dev-{d:02}"),
                    })
                    .await
                    .expect("telemetry")
                    .into_inner();
                now_stored += t.windows;
            }
            if now_stored != stored {
                stored = now_stored;
                last_change = Instant::now();
            }
            // Done when all are in, or nothing moved for two seconds (the rest was dropped).
            if stored as usize >= total
                || last_change.elapsed() > Duration::from_secs(2)
                || Instant::now() > deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (plain_received, plain_done) = plain.await.expect("plain subscriber");
        let plain_s = (plain_done - start).as_secs_f64();
        let hub_s = (last_change - start).as_secs_f64();
        println!(
            "{label}: plain subscriber received {plain_received} of {total} in {plain_s:.2} s ({:.0} windows/s); hub stored {stored} of {total} in {hub_s:.2} s ({:.0} windows/s)",
            plain_received as f64 / plain_s,
            stored as f64 / hub_s
        );
        hub.shutdown().await;
    }
}
