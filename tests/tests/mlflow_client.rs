//! The official MLflow client (`mlflow-skinny` from PyPI) runs ordinary tracking scripts
//! against a real hub, unchanged: experiments, runs, params, metrics, tags, artifacts, search,
//! MLflow 3 logged models (`mlflow.onnx.log_model`), and model registration into Shoal's ONNX
//! registry. Errors come back in MLflow's format.
//!
//! The client (with `onnx` and what `mlflow.onnx` needs) is installed once into a virtualenv
//! under the cargo target folder; set `SHOAL_TEST_PYTHON` to choose the interpreter that
//! creates it (default `python3`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};
use shoal_integration_tests::{unique, TestHub};
use shoal_model::build::Mlp;
use shoal_proto::registry as rpb;
use shoal_proto::training::training_service_client::TrainingServiceClient;
use shoal_proto::training::{GetRunRequest, MetricHistoryRequest};
use shoal_proto::workspace as wpb;

/// The client version the API is tested against.
const MLFLOW_SKINNY: &str = "3.17.2";

/// What `mlflow.onnx.log_model` needs next to the client: `onnx` (which builds the test
/// model), `onnxruntime` (which the flavor imports when saving), and `numpy` and `pandas`
/// (which `mlflow.onnx` imports). Each has wheels for CPython 3.11 on x86_64 and aarch64.
const ONNX: &str = "1.17.0";
const ONNX_EXTRAS: [&str; 3] = ["onnxruntime==1.20.1", "numpy==2.1.3", "pandas==2.2.3"];

/// How long the Python script may take, installing nothing (the venv exists by then).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);

/// A Python with `mlflow-skinny` and `onnx` installed, creating the virtualenv on first use;
/// tests of this file share one set-up.
fn mlflow_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(install_mlflow).clone()
}

fn install_mlflow() -> PathBuf {
    // The folder names every pinned version, so a venv made for other pins is never reused.
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("python-mlflow-{MLFLOW_SKINNY}-onnx-{ONNX}"));
    let python = venv.join("bin").join("python");
    let installed = || {
        Command::new(&python)
            .args([
                "-c",
                &format!(
                    "import mlflow, onnx, onnxruntime, pandas; \
                     assert mlflow.__version__ == '{MLFLOW_SKINNY}'; \
                     assert onnx.__version__ == '{ONNX}'"
                ),
            ])
            .env("GIT_PYTHON_REFRESH", "quiet")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !installed() {
        let base = std::env::var("SHOAL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let created = Command::new(&base)
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {base} to create a virtualenv: {e}; install Python 3 with venv")
            });
        assert!(
            created.status.success(),
            "'{base} -m venv {}' failed (install python3-venv): {}",
            venv.display(),
            String::from_utf8_lossy(&created.stderr)
        );
        let mut packages = vec![
            format!("mlflow-skinny=={MLFLOW_SKINNY}"),
            format!("onnx=={ONNX}"),
        ];
        packages.extend(ONNX_EXTRAS.iter().map(|p| p.to_string()));
        let pip = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(&packages)
            .output()
            .expect("run pip");
        assert!(
            pip.status.success() && installed(),
            "installing {} into {} failed; install them there by hand \
             ('{} -m pip install {}'): {}",
            packages.join(" "),
            venv.display(),
            python.display(),
            packages.join(" "),
            String::from_utf8_lossy(&pip.stderr)
        );
    }
    python
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// Runs a Python script of `tests/python` with the MLflow client pointed at `tracking_uri`;
/// returns the JSON of its `SUMMARY` line.
async fn run_mlflow_script(name: &str, tracking_uri: &str, token: &str, args: &[&str]) -> Value {
    run_mlflow_script_with_env(name, tracking_uri, token, args, &[]).await
}

/// [`run_mlflow_script`] with more environment variables.
async fn run_mlflow_script_with_env(
    name: &str,
    tracking_uri: &str,
    token: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Value {
    let python = tokio::task::spawn_blocking(mlflow_python)
        .await
        .expect("venv set-up");
    let mut command = tokio::process::Command::new(python);
    command
        .envs(env.iter().copied())
        .arg(script(name))
        .args(args)
        .env("MLFLOW_TRACKING_URI", tracking_uri)
        .env("MLFLOW_TRACKING_TOKEN", token)
        // A refused call should fail the script at once, not after minutes of back-off.
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .env("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
        .env("GIT_PYTHON_REFRESH", "quiet")
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCRIPT_DEADLINE, command.output())
        .await
        .expect("the MLflow script finished in time")
        .expect("run the MLflow script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "MLflow script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SUMMARY "))
        .unwrap_or_else(|| panic!("no SUMMARY line in:\n{stdout}\n{stderr}"));
    serde_json::from_str(line).expect("summary is JSON")
}

async fn training_client(
    hub: &TestHub,
) -> TrainingServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl tonic::service::Interceptor,
    >,
> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", hub.grpc_addr))
        .expect("grpc url")
        .connect()
        .await
        .expect("connect to the hub");
    let header: tonic::metadata::MetadataValue<_> = format!("Bearer {}", hub.token)
        .parse()
        .expect("token header");
    TrainingServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", header.clone());
        Ok(request)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_tracks_runs_and_registers_models() {
    let hub = TestHub::builder().embedded().start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let onnx = Mlp::seeded(&[4, 8, 2], 1).to_onnx();
    let onnx_path = dir.path().join("occupancy.onnx");
    std::fs::write(&onnx_path, &onnx).expect("write the model");
    let experiment = unique("occ-");

    let summary = run_mlflow_script(
        "mlflow_roundtrip.py",
        &format!("http://{}", hub.http_addr),
        &hub.token,
        &[
            &experiment,
            "occ-mlflow",
            onnx_path.to_str().expect("utf-8 path"),
        ],
    )
    .await;

    // What the client read back.
    let run_id = summary["run_id"].as_str().expect("run id").to_string();
    assert_eq!(summary["status"], "FINISHED", "{summary}");
    assert_eq!(summary["run_name"], "mlp-baseline");
    assert_eq!(
        summary["params"],
        json!({"lr": "0.01", "hidden": "8", "optimizer": "adam", "batch_size": "32"})
    );
    assert_eq!(summary["metrics"]["loss"], json!(0.2));
    assert!((summary["metrics"]["accuracy"].as_f64().expect("accuracy") - 0.8).abs() < 1e-9);
    assert_eq!(
        summary["metrics"]["weird"],
        Value::Null,
        "NaN survives: {summary}"
    );
    assert_eq!(
        summary["tags"],
        json!({"stage": "baseline", "team": "occupancy", "device_class": "pi4"})
    );
    assert_eq!(
        summary["loss_history"],
        json!([[0, 1.0], [1, 0.5], [2, 1.0 / 3.0], [3, 0.25], [4, 0.2]])
    );
    assert_eq!(
        summary["accuracy_history"].as_array().map(Vec::len),
        Some(4)
    );
    assert_eq!(
        summary["artifacts"],
        json!([["model", true], ["notes.txt", false]])
    );
    assert_eq!(
        summary["model_artifacts"],
        json!(["model/MLmodel", "model/model.onnx"])
    );
    assert_eq!(summary["notes_roundtrip"], true);
    assert_eq!(summary["onnx_roundtrip"], true);
    assert_eq!(summary["search_hits"], json!([run_id]));
    assert_eq!(summary["search_misses"], 0);
    assert_eq!(summary["search_by_name"], 1);
    assert_eq!(summary["model_version"], "1");
    assert_eq!(summary["alias_version"], "1");
    assert_eq!(summary["alias_run_id"], run_id);
    assert_eq!(summary["registered_latest"], json!(["1"]));
    assert_eq!(summary["non_onnx_error"], "INVALID_PARAMETER_VALUE");
    assert!(
        summary["non_onnx_message"]
            .as_str()
            .is_some_and(|m| m.contains("Shoal registers ONNX models")),
        "{summary}"
    );

    assert_eq!(summary["experiments_found"], json!([experiment]));
    assert_eq!(summary["deleted_runs"], json!(["scratch"]));
    assert_eq!(summary["first_by_name"], json!(["mlp-baseline"]));
    assert_eq!(summary["scratch_status"], "KILLED");

    // The same run, seen through Shoal's own API.
    let mut training = training_client(&hub).await;
    let run = training
        .get_run(GetRunRequest {
            run_id: run_id.clone(),
        })
        .await
        .expect("get the run over gRPC")
        .into_inner();
    assert_eq!(run.name, "mlp-baseline");
    assert_eq!(run.status, "completed");
    assert_eq!(
        run.params.get("optimizer").map(String::as_str),
        Some("adam")
    );
    assert_eq!(
        run.metrics.get("loss").map(|m| (m.step, m.value)),
        Some((4, 0.2))
    );
    assert_eq!(run.outputs, vec!["occ-mlflow@1".to_string()]);
    let history = training
        .get_metric_history(MetricHistoryRequest {
            run_id: run_id.clone(),
            key: "loss".into(),
        })
        .await
        .expect("metric history over gRPC")
        .into_inner();
    assert_eq!(history.points.len(), 5);

    // The registered version is the very ONNX file, validated into Shoal's registry.
    let version = hub
        .client()
        .await
        .registry
        .get_model_version(rpb::GetModelVersionRequest {
            workspace: "default".into(),
            name: "occ-mlflow".into(),
            reference: "champion".into(),
        })
        .await
        .expect("the version over gRPC")
        .into_inner();
    assert_eq!(version.version, 1);
    assert_eq!(version.size_bytes, onnx.len() as u64);
    assert_eq!(version.aliases, vec!["champion".to_string()]);

    // A tracking URI with a workspace path puts everything, artifacts included, there.
    hub.client()
        .await
        .workspaces
        .create_workspace(wpb::CreateWorkspaceRequest {
            name: "occ".into(),
            description: String::new(),
        })
        .await
        .expect("create workspace");
    let summary = run_mlflow_script(
        "mlflow_roundtrip.py",
        &format!("http://{}/workspaces/occ", hub.http_addr),
        &hub.token,
        &[
            &experiment,
            "occ-mlflow",
            onnx_path.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    assert_eq!(summary["onnx_roundtrip"], true, "{summary}");
    assert_eq!(
        summary["model_version"], "1",
        "a fresh registry in occ: {summary}"
    );
    let occ_run = training
        .get_run(GetRunRequest {
            run_id: summary["run_id"].as_str().expect("run id").to_string(),
        })
        .await
        .expect("get the occ run over gRPC")
        .into_inner();
    assert_eq!(occ_run.workspace, "occ");
    let occ_version = hub
        .client()
        .await
        .registry
        .get_model_version(rpb::GetModelVersionRequest {
            workspace: "occ".into(),
            name: "occ-mlflow".into(),
            reference: "champion".into(),
        })
        .await
        .expect("the occ version over gRPC")
        .into_inner();
    assert_eq!(occ_version.digest, version.digest);
    hub.shutdown().await;
}

/// One raw MLflow REST call; returns the status and the JSON body.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, Value) {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.expect("http call");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{url} answered {status} with non-JSON {text:?}: {e}"));
    (status, json)
}

/// The same client over https, trusting the hub's own CA the way MLflow documents it
/// (`MLFLOW_TRACKING_SERVER_CERT_PATH`): runs, metrics, artifacts through the proxy, and a
/// registered model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_works_over_https_with_the_hubs_ca() {
    let hub = TestHub::builder().tls().start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let onnx_path = dir.path().join("occupancy.onnx");
    std::fs::write(&onnx_path, Mlp::seeded(&[4, 8, 2], 1).to_onnx()).expect("write the model");
    let ca = hub.ca_path.clone().expect("the hub's CA");
    let summary = run_mlflow_script_with_env(
        "mlflow_roundtrip.py",
        &hub.http_url(),
        &hub.token,
        &[
            &unique("occ-tls-"),
            "occ-mlflow-tls",
            onnx_path.to_str().expect("utf-8 path"),
        ],
        &[(
            "MLFLOW_TRACKING_SERVER_CERT_PATH",
            ca.to_str().expect("utf-8 path"),
        )],
    )
    .await;
    assert_eq!(summary["status"], "FINISHED", "{summary}");
    assert_eq!(summary["metrics"]["loss"], json!(0.2));
    assert_eq!(summary["model_version"], "1", "{summary}");
    let registered = hub
        .client()
        .await
        .registry
        .get_model(rpb::GetModelRequest {
            workspace: "default".into(),
            name: "occ-mlflow-tls".into(),
        })
        .await
        .expect("the model registered over https is in the registry")
        .into_inner();
    assert_eq!(registered.latest_version, 1);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_back_in_mlflow_format() {
    let hub = TestHub::builder().embedded().start().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/api/2.0/mlflow", hub.http_addr);
    let token = Some(hub.token.as_str());
    use reqwest::Method;

    let (status, body) = call(
        &http,
        Method::GET,
        &format!("{base}/experiments/get?experiment_id=0"),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{body}"
    );
    let (status, body) = call(
        &http,
        Method::GET,
        &format!("{base}/experiments/get?experiment_id=0"),
        Some("nope"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{body}"
    );

    let (status, body) = call(
        &http,
        Method::GET,
        &format!("{base}/runs/get?run_id=0123456789abcdef0123456789abcdef"),
        token,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST")),
        "{body}"
    );

    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{base}/traces/search"),
        token,
        Some("{}".into()),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("ENDPOINT_NOT_FOUND")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("/api/2.0/mlflow/traces/search") && message.contains("Shoal"),
        "{message}"
    );

    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{base}/runs/create"),
        token,
        Some("{not json".into()),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{body}"
    );

    // A run in the Default experiment (id 0), then a batch over MLflow's limit.
    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{base}/runs/create"),
        token,
        Some(json!({"experiment_id": "0", "run_name": "raw"}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let run_id = body["run"]["info"]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    let metrics: Vec<Value> = (0..1001)
        .map(|i| json!({"key": "m", "value": i, "timestamp": 1, "step": i}))
        .collect();
    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{base}/runs/log-batch"),
        token,
        Some(json!({"run_id": run_id, "metrics": metrics}).to_string()),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1000"),
        "{body}"
    );
    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{base}/runs/log-metric"),
        token,
        Some(json!({"run_id": run_id, "key": "m", "value": "oops"}).to_string()),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("'value'"),
        "{body}"
    );
    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{base}/runs/log-parameter"),
        token,
        Some(json!({"run_id": run_id, "key": "lr", "value": "0.1"}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{base}/runs/log-parameter"),
        token,
        Some(json!({"run_id": run_id, "key": "lr", "value": "0.2"}).to_string()),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{body}"
    );

    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{base}/runs/search"),
        token,
        Some(json!({"experiment_ids": ["0"], "filter": "metrics.loss >>> 1"}).to_string()),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("filter"),
        "{body}"
    );

    // Workspaces: the path prefix selects one, and their experiments stay apart.
    hub.client()
        .await
        .workspaces
        .create_workspace(wpb::CreateWorkspaceRequest {
            name: "occ".into(),
            description: String::new(),
        })
        .await
        .expect("create workspace");
    let occ = format!("http://{}/workspaces/occ/api/2.0/mlflow", hub.http_addr);
    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{occ}/experiments/create"),
        token,
        Some(json!({"name": "only-in-occ"}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(
        &http,
        Method::GET,
        &format!("{occ}/experiments/get-by-name?experiment_name=only-in-occ"),
        token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &http,
        Method::GET,
        &format!("{base}/experiments/get-by-name?experiment_name=only-in-occ"),
        token,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST")),
        "{body}"
    );
    // The default workspace's run is not reachable from `occ`.
    let (status, _) = call(
        &http,
        Method::GET,
        &format!("{occ}/runs/get?run_id={run_id}"),
        token,
        None,
    )
    .await;
    assert_eq!(status, 404);
    // ... nor are its artifacts, through the artifact proxy.
    let (status, body) = call(
        &http,
        Method::GET,
        &format!(
            "http://{}/workspaces/occ/api/2.0/mlflow-artifacts/artifacts?path=0/{run_id}/artifacts",
            hub.http_addr
        ),
        token,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST")),
        "{body}"
    );
    // The web UI's `ajax-api` prefix serves the same API.
    let (status, body) = call(
        &http,
        Method::GET,
        &format!(
            "http://{}/ajax-api/2.0/mlflow/experiments/get?experiment_id=0",
            hub.http_addr
        ),
        token,
        None,
    )
    .await;
    assert_eq!(
        (status, body["experiment"]["name"].as_str()),
        (200, Some("Default")),
        "{body}"
    );
    hub.shutdown().await;
}

const SCRIPT_WITH_MLFLOW: &str = r#"
import os, sys
import mlflow

# MLFLOW_RUN_ID, set by the hub, makes start_run() continue the Shoal run.
with mlflow.start_run() as run:
    assert run.info.run_id == os.environ["SHOAL_RUN_ID"], run.info.run_id
    mlflow.log_param("optimizer", "adam")
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
print("logged through mlflow", flush=True)
sys.exit(3)
"#;

/// A script run that logs through the official client: its params and metrics land in the
/// run, and the command's exit code, not the client's `end_run()`, decides the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_run_logs_through_the_mlflow_client_and_its_exit_code_decides() {
    use shoal_proto::training as pb;
    let python = tokio::task::spawn_blocking(mlflow_python)
        .await
        .expect("venv set-up");
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("train.py"), SCRIPT_WITH_MLFLOW).expect("write");
    let snapshot = shoal_compute::pack_dir(dir.path(), 1 << 20).expect("pack");
    let header = pb::SubmitRunHeader {
        experiment: "scripts".into(),
        job: Some(pb::submit_run_header::Job::Script(pb::ScriptJob {
            command: vec![python.display().to_string(), "train.py".into()],
            env: [
                ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
                ("GIT_PYTHON_REFRESH", "quiet"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            secrets: Default::default(),
        })),
        ..Default::default()
    };
    let mut messages = vec![pb::SubmitRunRequest {
        part: Some(pb::submit_run_request::Part::Header(header)),
    }];
    messages.push(pb::SubmitRunRequest {
        part: Some(pb::submit_run_request::Part::Chunk(snapshot.bytes)),
    });
    let mut client = hub.client().await;
    let run = client
        .training
        .submit_run(futures::stream::iter(messages))
        .await
        .expect("submitted")
        .into_inner();
    let done = hub.wait_for_run_end(&run.id).await;
    assert_eq!(done.status, "failed", "{:?}", done.log_tail);
    assert_eq!(done.exit_code, Some(3));
    assert!(
        done.log_tail.contains(&"logged through mlflow".to_string()),
        "{:?}",
        done.log_tail
    );
    assert_eq!(
        done.params.get("optimizer").map(String::as_str),
        Some("adam")
    );
    let loss = client
        .training
        .get_metric_history(pb::MetricHistoryRequest {
            run_id: run.id.clone(),
            key: "loss".into(),
        })
        .await
        .expect("history")
        .into_inner()
        .points;
    let steps: Vec<i64> = loss.iter().map(|p| p.step).collect();
    assert_eq!(steps, vec![0, 1, 2]);
    hub.shutdown().await;
}

/// MLflow 3's `mlflow.onnx.log_model(...)`: the client creates a logged model, uploads its
/// folder through the artifact proxy, finalizes it and links it to the run; registering it
/// (by `models:/m-...` or by `runs:/<run>/<name>`) puts its ONNX file into Shoal's registry,
/// and the run shows both the logged model and the versions taken from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_3_log_model_creates_a_logged_model_that_registers_into_shoal() {
    let hub = TestHub::builder().embedded().start().await;
    let experiment = unique("logged-");
    let summary = run_mlflow_script(
        "mlflow_logged_model.py",
        &format!("http://{}", hub.http_addr),
        &hub.token,
        &[&experiment, "occ-logged"],
    )
    .await;

    let run_id = summary["run_id"].as_str().expect("run id").to_string();
    let model_id = summary["model_id"].as_str().expect("model id").to_string();
    assert!(
        model_id.len() == 34
            && model_id.starts_with("m-")
            && model_id[2..].chars().all(|c| c.is_ascii_hexdigit()),
        "{model_id}"
    );
    assert_eq!(summary["model_uri"], format!("models:/{model_id}"));
    assert_eq!(summary["logged_status"], "READY", "{summary}");
    assert_eq!(summary["logged_name"], "onnx-model");
    assert_eq!(summary["logged_source_run"], run_id.as_str());
    assert_eq!(
        summary["logged_params"]["opset"], "13",
        "params given to log_model: {summary}"
    );
    assert_eq!(
        summary["logged_params"]["hidden"], "0",
        "log_model copies the run's params: {summary}"
    );
    let location = summary["logged_artifact_location"]
        .as_str()
        .expect("artifact location");
    assert!(
        location.starts_with("mlflow-artifacts:/")
            && location.ends_with(&format!("/models/{model_id}/artifacts")),
        "{location}"
    );
    let files: Vec<&str> = summary["logged_files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        files.contains(&"MLmodel") && files.contains(&"model.onnx"),
        "{files:?}"
    );
    assert_eq!(summary["search_ids"], json!([model_id]));
    assert_eq!(summary["search_none"], 0);
    assert_eq!(summary["run_model_outputs"], json!([model_id]));
    assert_eq!(
        summary["loss_history"],
        json!([[0, 0.5]]),
        "log_model's re-logged metrics are not doubled: {summary}"
    );

    assert_eq!(summary["version"], "1");
    assert_eq!(summary["version_source"], format!("models:/{model_id}"));
    assert_eq!(summary["version_run_id"], run_id.as_str());
    assert_eq!(summary["by_run_version"], "2");
    assert_eq!(
        summary["logged_model_versions"],
        json!([
            {"name": "occ-logged", "version": "1"},
            {"name": "occ-logged", "version": "2"}
        ])
    );
    assert_eq!(summary["download_roundtrip"], true, "{summary}");
    assert_eq!(summary["load_registered_roundtrip"], true, "{summary}");
    assert_eq!(summary["run_uri_roundtrip"], true, "{summary}");

    // Shoal's own API: the run names its logged model and the versions registered from it.
    let mut training = training_client(&hub).await;
    let run = training
        .get_run(GetRunRequest {
            run_id: run_id.clone(),
        })
        .await
        .expect("get the run over gRPC")
        .into_inner();
    assert_eq!(run.status, "completed");
    assert_eq!(
        run.outputs,
        vec!["occ-logged@1".to_string(), "occ-logged@2".to_string()]
    );
    let linked: Value = serde_json::from_str(
        run.tags
            .get("mlflow.loggedModels")
            .map(String::as_str)
            .unwrap_or("null"),
    )
    .expect("the tag is JSON");
    assert_eq!(linked, json!([{"model_id": model_id, "step": 0}]));

    // Both versions are the very ONNX file the script built, validated into the registry.
    let mut registry = hub.client().await.registry;
    let first = registry
        .get_model_version(rpb::GetModelVersionRequest {
            workspace: "default".into(),
            name: "occ-logged".into(),
            reference: "1".into(),
        })
        .await
        .expect("occ-logged@1 over gRPC")
        .into_inner();
    let second = registry
        .get_model_version(rpb::GetModelVersionRequest {
            workspace: "default".into(),
            name: "occ-logged".into(),
            reference: "2".into(),
        })
        .await
        .expect("occ-logged@2 over gRPC")
        .into_inner();
    assert_eq!(first.version, 1);
    assert_eq!(first.digest, second.digest);
    hub.shutdown().await;
}

/// The logged-model endpoints, called raw: unknown ids, bad statuses and another
/// workspace's models come back in MLflow's format, and a logged model without an ONNX file
/// is refused by the registry with the ONNX-only message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_model_endpoints_answer_in_mlflow_format() {
    use reqwest::Method;
    let hub = TestHub::builder().embedded().start().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/api/2.0/mlflow", hub.http_addr);
    let token = Some(hub.token.as_str());

    let (status, body) = call(
        &http,
        Method::GET,
        &format!("{base}/logged-models/m-0123456789abcdef0123456789abcdef"),
        token,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST")),
        "{body}"
    );

    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{base}/logged-models"),
        token,
        Some(json!({"experiment_id": "0", "name": "pickled"}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let model_id = body["model"]["info"]["model_id"]
        .as_str()
        .expect("model id")
        .to_string();
    assert_eq!(body["model"]["info"]["status"], "LOGGED_MODEL_PENDING");
    let location = body["model"]["info"]["artifact_uri"]
        .as_str()
        .expect("artifact uri")
        .to_string();
    assert_eq!(
        location,
        format!("mlflow-artifacts:/0/models/{model_id}/artifacts")
    );

    // A flavor Shoal cannot serve: a pickle next to its MLmodel.
    let upload = http
        .put(format!(
            "http://{}/api/2.0/mlflow-artifacts/artifacts/0/models/{model_id}/artifacts/model.pkl",
            hub.http_addr
        ))
        .bearer_auth(&hub.token)
        .body("not onnx")
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status().as_u16(), 200);

    let (status, body) = call(
        &http,
        Method::PATCH,
        &format!("{base}/logged-models/{model_id}"),
        token,
        Some(json!({"model_id": model_id, "status": "LOGGED_MODEL_PENDING"}).to_string()),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{body}"
    );
    let (status, body) = call(
        &http,
        Method::PATCH,
        &format!("{base}/logged-models/{model_id}"),
        token,
        Some(json!({"model_id": model_id, "status": "LOGGED_MODEL_READY"}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"]["info"]["status"], "LOGGED_MODEL_READY");

    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{base}/registered-models/create"),
        token,
        Some(json!({"name": "pickled"}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{base}/model-versions/create"),
        token,
        Some(
            json!({"name": "pickled", "source": format!("models:/{model_id}"), "model_id": model_id})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Shoal registers ONNX models")),
        "{body}"
    );

    // Another workspace sees neither the model nor its files.
    hub.client()
        .await
        .workspaces
        .create_workspace(wpb::CreateWorkspaceRequest {
            name: "occ".into(),
            description: String::new(),
        })
        .await
        .expect("create workspace");
    let (status, _) = call(
        &http,
        Method::GET,
        &format!(
            "http://{}/workspaces/occ/api/2.0/mlflow/logged-models/{model_id}",
            hub.http_addr
        ),
        token,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = call(
        &http,
        Method::GET,
        &format!(
            "http://{}/workspaces/occ/api/2.0/mlflow-artifacts/artifacts?path=0/models/{model_id}/artifacts",
            hub.http_addr
        ),
        token,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST")),
        "{body}"
    );

    // Deleted, it leaves searches.
    let (status, _) = call(
        &http,
        Method::DELETE,
        &format!("{base}/logged-models/{model_id}"),
        token,
        Some(json!({"model_id": model_id}).to_string()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &http,
        Method::POST,
        &format!("{base}/logged-models/search"),
        token,
        Some(json!({"experiment_ids": ["0"]}).to_string()),
    )
    .await;
    assert_eq!(
        (status, body["models"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{body}"
    );
    hub.shutdown().await;
}
