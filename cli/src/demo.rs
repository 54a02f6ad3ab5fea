//! `shoal demo`: a hub in a temporary folder, a bundled dataset, a model trained on it by a
//! built-in trainer and registered with its drift baseline, three agents, a deployment, a few
//! inferences, and a readable summary. Nothing is downloaded; every
//! part is the real one (embedded broker, MQTT model transfer, tract inference over HTTP).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shoal_proto::{deployment as dpb, fleet as fpb};
use tokio_util::sync::CancellationToken;

use shoal_hub::{Hub, HubConfig};

use super::device::{agent_config_toml, device_json};
use super::error::{CliError, CliResult};
use super::output;
use super::sample::sensors_csv;
use super::HubClient;

const DEVICES: [&str; 3] = ["cam-01", "cam-02", "cam-03"];
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(120);
/// The model's inputs, in order: the sensor columns of the bundled dataset.
const FEATURES: [&str; 4] = ["temperature", "humidity", "light", "co2"];
const DEMO_ROWS: usize = 2000;
/// Sensor readings to ask the devices about: an empty room at night, a meeting, a sunny
/// empty room.
const SAMPLES: [[f32; 4]; 3] = [
    [19.5, 35.0, 5.0, 420.0],
    [23.5, 48.0, 450.0, 1150.0],
    [24.0, 40.0, 700.0, 450.0],
];

pub async fn run(keep: bool) -> CliResult<()> {
    let started = Instant::now();
    let folder = tempfile::Builder::new()
        .prefix("shoal-demo-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary folder: {e}"))?;
    let root = folder.path().to_path_buf();
    println!(
        "Shoal demo — a hub, three agents and a model, all in {}",
        root.display()
    );

    // 1. The hub, on ephemeral ports, with its embedded broker.
    let hub = Hub::bind(HubConfig::for_test(root.join("hub")))
        .await
        .map_err(|e| format!("hub: {e}"))?;
    let grpc = hub.grpc_addr();
    let mqtt = hub.advertised_mqtt_url().to_string();
    let token_path = hub.admin_token_path();
    let token = std::fs::read_to_string(&token_path)
        .map_err(|e| format!("cannot read {}: {e}", token_path.display()))?;
    let stop_hub = CancellationToken::new();
    let stop_agents = CancellationToken::new();
    let hub_task = tokio::spawn(hub.run(stop_hub.clone().cancelled_owned()));
    let hub_url = format!("http://{grpc}");
    let mut client = HubClient::connect(&hub_url, Some(token.trim())).await?;
    println!("  hub      gRPC {grpc}, MQTT {mqtt}");

    // 2. Train: a bundled sensor dataset, a built-in MLP run on the hub, the model
    //    registered with the dataset's profile as its drift baseline.
    let dataset_path = root.join("sensors.csv");
    std::fs::write(&dataset_path, sensors_csv(DEMO_ROWS, 2026))
        .map_err(|e| format!("cannot write the dataset: {e}"))?;
    let dataset = shoal_client::upload_dataset(
        &mut client,
        "default",
        &dataset_path,
        "sensors",
        "demo: office sensors",
    )
    .await?;
    println!(
        "  dataset  registered sensors@{} ({} rows, {} columns)",
        dataset.version,
        dataset.rows,
        dataset.columns.len()
    );
    let run = shoal_client::runs::submit_builtin(
        &mut client,
        "default",
        "occupancy",
        shoal_proto::training::BuiltinJob {
            trainer: "mlp".into(),
            dataset: format!("sensors@{}", dataset.version),
            target: "occupied".into(),
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
            register_as: "occupancy".into(),
        },
        &[("hidden", "16"), ("epochs", "30"), ("lr", "0.01")],
    )
    .await?;
    let run = shoal_client::runs::wait_for_run(&mut client, &run.id, ROLLOUT_DEADLINE).await?;
    if run.status != "completed" {
        return Err(CliError::Message(format!(
            "training run {} {}: {}",
            run.id, run.status, run.error
        )));
    }
    let metric = |k: &str| run.metrics.get(k).map_or(f64::NAN, |m| m.value);
    println!(
        "  train    run {} (mlp, hidden 16, 30 epochs): accuracy {:.3}, macro F1 {:.3}, registered {}",
        &run.id[..8],
        metric("accuracy"),
        metric("macro_f1"),
        run.outputs.join(", ")
    );
    let version = client
        .registry
        .get_model_version(shoal_proto::registry::GetModelVersionRequest {
            workspace: "default".into(),
            name: "occupancy".into(),
            reference: "latest".into(),
        })
        .await?
        .into_inner();
    println!(
        "  model    occupancy@{} ({} bytes, sha256 {}…), baseline over {}",
        version.version,
        version.size_bytes,
        &version.digest[..12],
        FEATURES.join(", ")
    );

    // 3. Three devices, each with its own credentials and agent.
    let mut agents = Vec::new();
    for id in DEVICES {
        let creds = client
            .fleet
            .add_device(fpb::AddDeviceRequest {
                workspace: "default".into(),
                id: id.into(),
                tags: Default::default(),
            })
            .await?
            .into_inner();
        let overrides = shoal_agent::config::Overrides {
            data_dir: Some(root.join(id)),
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            mqtt_url: None,
        };
        let config = shoal_agent::config::AgentConfigFile::parse(
            &agent_config_toml(&creds)?,
            &format!("{id}'s agent config"),
        )
        .and_then(|file| file.build_and_validate(&overrides))
        .map_err(|e| format!("agent config: {e}"))?;
        let agent = shoal_agent::Agent::bind(config)
            .await
            .map_err(|e| format!("agent {id}: {e}"))?;
        let http = agent.http_addr();
        let task = tokio::spawn(agent.run(stop_agents.clone().cancelled_owned()));
        println!("  agent    {id} serving http://{http}");
        agents.push((id, http, task));
    }

    // 4. Deploy to all three and wait until each reports the version active.
    client
        .deployments
        .create_deployment(dpb::CreateDeploymentRequest {
            workspace: "default".into(),
            name: "lobby".into(),
            model: "occupancy".into(),
            model_reference: version.version.to_string(),
            devices: DEVICES.iter().map(|d| d.to_string()).collect(),
            strategy: dpb::Strategy::AllAtOnce as i32,
        })
        .await?;
    println!(
        "  deploy   lobby: occupancy@{} -> {}",
        version.version,
        DEVICES.join(", ")
    );
    let deadline = Instant::now() + ROLLOUT_DEADLINE;
    let devices = loop {
        let list = client
            .fleet
            .list_devices(fpb::ListDevicesRequest {
                workspace: "default".into(),
            })
            .await?
            .into_inner()
            .devices;
        let active = list
            .iter()
            .filter(|d| {
                d.reported
                    .as_ref()
                    .and_then(|r| r.active.as_ref())
                    .is_some_and(|a| a.digest == version.digest)
            })
            .count();
        if active == DEVICES.len() {
            break list;
        }
        if Instant::now() > deadline {
            return Err(CliError::Message(format!(
                "only {active} of {} devices activated the model within {ROLLOUT_DEADLINE:?}",
                DEVICES.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "  rollout  all {} devices run occupancy@{} ({:.1}s since start)",
        DEVICES.len(),
        version.version,
        started.elapsed().as_secs_f64()
    );

    // 5. Inference through each agent's local API.
    let http = reqwest::Client::new();
    println!("\nInference on the devices (POST /v1/infer):");
    for ((id, addr, _), row) in agents.iter().zip(SAMPLES) {
        let body = serde_json::json!({"inputs": {"x": {"shape": [1, 4], "data": row}}});
        let begin = Instant::now();
        let response = http
            .post(format!("http://{addr}/v1/infer"))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        let elapsed = begin.elapsed();
        let answer: serde_json::Value = response.json().await.map_err(|e| format!("{id}: {e}"))?;
        let p = answer["outputs"]["y"]["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let occupied = p.get(1).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        println!(
            "  {id}  input {row:?} -> p(occupied) = {occupied:.4}  ({:.2} ms round trip)",
            elapsed.as_secs_f64() * 1000.0
        );
    }

    // 6. The fleet as `shoal device list` shows it.
    println!("\nFleet (shoal device list):");
    let rows: Vec<serde_json::Value> = devices.iter().map(device_json).collect();
    print!(
        "{}",
        output::table(
            &[
                ("ID", "id"),
                ("ONLINE", "online"),
                ("ACTIVE", "active_model"),
                ("UPDATE", "update.phase"),
                ("ARCH", "arch")
            ],
            &rows
        )
    );

    if keep {
        println!("\nStill running. In another terminal:");
        println!("  export SHOAL_HUB={hub_url} SHOAL_TOKEN={}", token.trim());
        println!("  shoal device list");
        for (id, addr, _) in &agents {
            println!("  curl -s {addr}/v1/infer -d '{{\"inputs\":{{\"x\":{{\"shape\":[1,4],\"data\":[1,2,3,4]}}}}}}'   # {id}");
        }
        println!("Ctrl-C stops everything and removes {}.", root.display());
        shoal_hub::shutdown::signal().await;
    }
    // Agents first, so they say goodbye to a broker that is still there.
    stop_agents.cancel();
    for (_, _, task) in agents {
        let _ = task.await;
    }
    stop_hub.cancel();
    let _ = hub_task.await;
    println!("\nDone in {:.1}s.", started.elapsed().as_secs_f64());
    Ok(())
}
