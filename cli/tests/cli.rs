//! The `shoal` binary against a real hub: output formats, the agent config it writes, and
//! errors as one line on stderr with a non-zero exit.

use std::path::Path;
use std::process::Output;

use shoal_hub::{Hub, HubConfig};
use shoal_model::build::Mlp;
use tokio_util::sync::CancellationToken;

struct Shoal {
    hub: String,
    token: String,
}

impl Shoal {
    async fn run(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
        command
            .args(args)
            .env("SHOAL_HUB", &self.hub)
            .env_remove("SHOAL_TOKEN")
            .env_remove("SHOAL_WORKSPACE");
        if let Some(token) = token {
            command.env("SHOAL_TOKEN", token);
        }
        command.output().await.expect("run shoal")
    }

    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(Some(&self.token), args).await;
        assert!(
            output.status.success(),
            "shoal {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }

    async fn fails(&self, token: Option<&str>, args: &[&str]) -> String {
        let output = self.run(token, args).await;
        assert!(!output.status.success(), "shoal {args:?} should fail");
        let stderr = String::from_utf8(output.stderr).expect("utf-8");
        assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
        stderr
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_registers_enrolls_deploys_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::bind(HubConfig::for_test(dir.path().join("hub")))
        .await
        .unwrap();
    let shoal = Shoal {
        hub: format!("http://{}", hub.grpc_addr()),
        token: std::fs::read_to_string(hub.admin_token_path())
            .unwrap()
            .trim()
            .to_string(),
    };
    let public_key = hub.public_key_hex();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(hub.run(cancel.clone().cancelled_owned()));

    let model = dir.path().join("mlp.onnx");
    std::fs::write(&model, Mlp::seeded(&[4, 8, 2], 1).to_onnx()).unwrap();
    let registered = shoal
        .ok(&[
            "model",
            "register",
            model.to_str().unwrap(),
            "--name",
            "occupancy",
        ])
        .await;
    assert_eq!(registered.trim(), "occupancy@1");

    let shown: serde_json::Value = serde_json::from_str(
        &shoal
            .ok(&["model", "show", "occupancy@1", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["inputs"], serde_json::json!(["x:f32[N,4]"]));
    assert_eq!(
        shoal
            .ok(&["model", "alias", "set", "occupancy", "production", "1"])
            .await
            .trim(),
        "occupancy@production -> 1"
    );
    let table = shoal.ok(&["model", "list"]).await;
    assert!(
        table.starts_with("NAME") && table.contains("production=1"),
        "{table}"
    );

    let config_path = dir.path().join("cam-01.toml");
    shoal
        .ok(&[
            "device",
            "add",
            "cam-01",
            "--output",
            config_path.to_str().unwrap(),
        ])
        .await;
    check_agent_config(&config_path, &public_key);

    let devices: serde_json::Value =
        serde_json::from_str(&shoal.ok(&["device", "list", "-o", "json"]).await).unwrap();
    assert_eq!(devices[0]["id"], "cam-01");
    assert_eq!(devices[0]["online"], false);

    let deployment: serde_json::Value = serde_json::from_str(
        &shoal
            .ok(&[
                "deployment",
                "create",
                "lobby",
                "--model",
                "occupancy@production",
                "--devices",
                "cam-01",
                "-o",
                "json",
            ])
            .await,
    )
    .unwrap();
    assert_eq!(deployment["version"], 1);
    assert_eq!(deployment["status"][0]["state"], "pending");

    let missing = shoal
        .fails(Some(&shoal.token), &["model", "show", "nope@1"])
        .await;
    assert_eq!(missing.trim(), "shoal: not found: model 'nope' not found");
    let unauthenticated = shoal.fails(None, &["model", "list"]).await;
    assert!(
        unauthenticated.starts_with("shoal: unauthenticated:"),
        "{unauthenticated}"
    );
    let bad_file = shoal
        .fails(
            Some(&shoal.token),
            &["model", "register", "/nonexistent.onnx", "--name", "x"],
        )
        .await;
    assert!(
        bad_file.contains("cannot read /nonexistent.onnx"),
        "{bad_file}"
    );

    cancel.cancel();
    task.await.unwrap().unwrap();
}

fn check_agent_config(path: &Path, public_key: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let text = std::fs::read_to_string(path).unwrap();
    let config = shoal_agent::config::AgentConfigFile::parse(&text, "test").unwrap();
    assert_eq!(config.device.id, "cam-01");
    assert_eq!(config.hub.public_key, public_key);
    assert_eq!(config.hub.mqtt_username, "cam-01@default");
    assert!(config.hub.mqtt_url.starts_with("mqtt://127.0.0.1:"));
}

/// The README's first command: the demo runs end to end and says so. (The workspace's test
/// build turns the `demo` feature on through the integration tests crate.)
#[cfg(feature = "demo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_end_to_end() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("demo")
        .output()
        .await
        .expect("run shoal demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("dataset  registered sensors@1 (2000 rows"),
        "{stdout}"
    );
    assert!(
        stdout.contains("registered occupancy@1"),
        "trained and registered: {stdout}"
    );
    assert!(stdout.contains("all 3 devices run occupancy@1"), "{stdout}");
    for id in ["cam-01", "cam-02", "cam-03"] {
        assert!(
            stdout.contains(&format!("{id}  input")),
            "{id} answered an inference: {stdout}"
        );
    }
}

/// The training commands as the README shows them: a dataset, a built-in run that registers
/// its model, a script run from a folder, search with a filter and order, logs, a sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_trains_searches_and_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::bind(HubConfig::for_test(dir.path().join("hub")))
        .await
        .unwrap();
    let shoal = Shoal {
        hub: format!("http://{}", hub.grpc_addr()),
        token: std::fs::read_to_string(hub.admin_token_path())
            .unwrap()
            .trim()
            .to_string(),
    };
    let cancel = CancellationToken::new();
    let task = tokio::spawn(hub.run(cancel.clone().cancelled_owned()));

    let csv = dir.path().join("sensors.csv");
    std::fs::write(&csv, shoal_cli::sensors_csv(600, 5)).unwrap();
    let profile: serde_json::Value = serde_json::from_str(
        &shoal
            .ok(&[
                "dataset",
                "register",
                csv.to_str().unwrap(),
                "--name",
                "sensors",
                "-o",
                "json",
            ])
            .await,
    )
    .unwrap();
    assert_eq!(profile["reference"], "sensors@1");
    assert_eq!(profile["rows"], 600);
    assert_eq!(profile["columns"][4]["name"], "occupied");
    assert_eq!(profile["columns"][4]["kind"], "categorical");

    let ragged = dir.path().join("ragged.csv");
    std::fs::write(&ragged, "a,b\n1,2\n3\n").unwrap();
    let refused = shoal
        .fails(
            Some(&shoal.token),
            &[
                "dataset",
                "register",
                ragged.to_str().unwrap(),
                "--name",
                "bad",
            ],
        )
        .await;
    assert!(refused.contains("line 3"), "{refused}");

    let run: serde_json::Value = serde_json::from_str(
        &shoal
            .ok(&[
                "run",
                "submit",
                "--experiment",
                "occ",
                "--builtin",
                "mlp",
                "--dataset",
                "sensors@1",
                "--target",
                "occupied",
                "--param",
                "hidden=16",
                "--param",
                "epochs=20",
                "--register",
                "occupancy",
                "--wait",
                "-o",
                "json",
            ])
            .await,
    )
    .unwrap();
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["outputs"][0], "occupancy@1");
    assert!(run["metrics"]["accuracy"].as_f64().unwrap() > 0.9, "{run}");

    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("train.sh"),
        "echo \"{\\\"step\\\": 1, \\\"accuracy\\\": 0.5}\" >> \"$SHOAL_METRICS\"\necho hello from $SHOAL_RUN_ID\nmkdir -p outputs/deep && echo 42 > outputs/deep/result.txt\nprintf 'a,b\\n1,2\\n3,4\\n' > outputs/features.csv\n",
    )
    .unwrap();
    let script: serde_json::Value = serde_json::from_str(
        &shoal
            .ok(&[
                "run",
                "submit",
                "--experiment",
                "occ",
                "--dir",
                src.to_str().unwrap(),
                "--param",
                "hidden=8",
                "--wait",
                "-o",
                "json",
                "--",
                "sh",
                "train.sh",
            ])
            .await,
    )
    .unwrap();
    assert_eq!(script["status"], "completed", "{script}");
    let script_id = script["id"].as_str().unwrap();
    let logs = shoal.ok(&["run", "logs", script_id]).await;
    assert_eq!(logs.trim(), format!("hello from {script_id}"));
    let fetched = dir.path().join("fetched");
    let downloaded = shoal
        .ok(&[
            "run",
            "download",
            script_id,
            "outputs/deep",
            "--output",
            fetched.to_str().unwrap(),
        ])
        .await;
    let file = fetched.join("outputs/deep/result.txt");
    assert_eq!(downloaded.trim(), file.display().to_string());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "42\n");
    let missing = shoal
        .fails(
            Some(&shoal.token),
            &["run", "download", script_id, "nothing"],
        )
        .await;
    assert!(missing.contains("outputs/deep/result.txt"), "{missing}");
    let derived: serde_json::Value = serde_json::from_str(
        &shoal
            .ok(&[
                "dataset",
                "register",
                "outputs/features.csv",
                "--from-run",
                script_id,
                "--name",
                "derived",
                "-o",
                "json",
            ])
            .await,
    )
    .unwrap();
    assert_eq!(derived["reference"], "derived@1");
    assert_eq!(derived["rows"], 2);
    assert_eq!(derived["source_run"], script_id);

    let listed: serde_json::Value = serde_json::from_str(
        &shoal
            .ok(&[
                "run",
                "list",
                "--experiment",
                "occ",
                "--filter",
                "metrics.accuracy > 0.4 and params.hidden = '8' or params.hidden = '16'",
                "--order-by",
                "metrics.accuracy",
                "desc",
                "-o",
                "json",
            ])
            .await,
    )
    .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![run["id"].as_str().unwrap(), script_id]);
    let completed: serde_json::Value = serde_json::from_str(
        &shoal
            .ok(&[
                "run",
                "list",
                "--experiment",
                "occ",
                "--status",
                "completed",
                "--filter",
                "params.hidden = '8'",
                "-o",
                "json",
            ])
            .await,
    )
    .unwrap();
    assert_eq!(completed.as_array().unwrap().len(), 1, "{completed}");
    let none: serde_json::Value = serde_json::from_str(
        &shoal
            .ok(&["run", "list", "--status", "failed", "-o", "json"])
            .await,
    )
    .unwrap();
    assert!(none.as_array().unwrap().is_empty(), "{none}");
    let bad = shoal
        .fails(
            Some(&shoal.token),
            &["run", "list", "--filter", "metrics.accuracy >> 1"],
        )
        .await;
    assert!(bad.contains("column"), "{bad}");

    let sweep: serde_json::Value = serde_json::from_str(
        &shoal
            .ok(&[
                "sweep",
                "submit",
                "--experiment",
                "occ",
                "--builtin",
                "mlp",
                "--dataset",
                "sensors",
                "--target",
                "occupied",
                "--param",
                "hidden=choice(4,8)",
                "--param",
                "lr=loguniform(1e-3,1e-1)",
                "--param",
                "epochs=5",
                "--max-runs",
                "3",
                "--concurrency",
                "2",
                "--metric",
                "accuracy",
                "--goal",
                "max",
                "--register-best",
                "occupancy",
                "--wait",
                "-o",
                "json",
            ])
            .await,
    )
    .unwrap();
    assert_eq!(sweep["status"], "completed", "{sweep}");
    assert_eq!(sweep["runs"], 3);
    assert_eq!(sweep["registered"], "occupancy@2");

    cancel.cancel();
    task.await.unwrap().unwrap();
}
