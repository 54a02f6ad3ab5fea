//! The harness for Shoal's end-to-end scenarios: a real hub and real agents on ephemeral ports,
//! with the embedded broker or, when `SHOAL_TEST_MQTT_URL` is set, an external one such as the
//! machine's Mosquitto (each hub then gets a unique topic prefix, so runs never collide).
//!
//! Every wait is a `wait_for_*` with a deadline; nothing sleeps a fixed time to hope a
//! condition holds.
//!
//! # Layout
//! - this file: [`TestHub`], [`TestAgent`], `wait_for` and the other waits.
//! - [`fixtures`]: sensor-like data, device-side windows, a webhook receiver.
//! - [`process`]: real agent and worker processes ([`process::AgentProcess`]) and the
//!   `LinkProxy` that cuts an agent's link to its broker.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod fixtures;
pub mod process;
use shoal_agent::config::{AgentConfigFile, Overrides};
use shoal_client::HubClient;
use shoal_hub::{Hub, HubConfig, MqttMode, MqttUrl};
use shoal_proto::{deployment as dpb, fleet as fpb, registry as rpb};
use tokio_util::sync::CancellationToken;

/// How long any scenario waits for a condition before it fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Installs a test log subscriber once (RUST_LOG controls it).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,rumqttd=off".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The external broker to test against, if the environment names one.
pub fn external_broker() -> Option<String> {
    std::env::var("SHOAL_TEST_MQTT_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A random hex string, for unique names and prefixes.
pub fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    getrandom::getrandom(&mut bytes).expect("system random source");
    format!("{prefix}{}", hex::encode(bytes))
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A hub running in this process.
pub struct TestHub {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// What agents are told to connect to.
    pub mqtt_url: String,
    pub token: String,
    pub topic_prefix: String,
    pub data_dir: PathBuf,
    /// The hub's CA (PEM file) when it serves TLS ([`TestHubBuilder::tls`]).
    pub ca_path: Option<PathBuf>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<shoal_hub::HubResult<()>>>,
    _temp: Option<tempfile::TempDir>,
}

pub struct TestHubBuilder {
    external: Option<String>,
    data_dir: Option<PathBuf>,
    max_model_bytes: Option<u64>,
    worker_heartbeat_timeout: Option<Duration>,
    max_upload_bytes: Option<u64>,
    tls: bool,
}

impl TestHub {
    /// A hub on the embedded broker, or on `SHOAL_TEST_MQTT_URL` when set.
    pub fn builder() -> TestHubBuilder {
        TestHubBuilder {
            external: external_broker(),
            data_dir: None,
            max_model_bytes: None,
            worker_heartbeat_timeout: None,
            max_upload_bytes: None,
            tls: false,
        }
    }

    pub async fn start() -> TestHub {
        TestHub::builder().start().await
    }

    pub async fn client(&self) -> HubClient {
        self.client_with_token(Some(&self.token)).await
    }

    /// A client that sends `token` (or none); over TLS it trusts the hub's CA only.
    pub async fn client_with_token(&self, token: Option<&str>) -> HubClient {
        HubClient::connect_with(&self.grpc_url(), token, self.ca_path.as_deref())
            .await
            .expect("connect to the test hub")
    }

    /// `http://` or, over TLS, `https://`.
    pub fn scheme(&self) -> &'static str {
        if self.ca_path.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The gRPC API's URL.
    pub fn grpc_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.grpc_addr)
    }

    /// The HTTP listener's URL (health, MLflow).
    pub fn http_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.http_addr)
    }

    /// Registers ONNX bytes as the next version of `name` in the default workspace.
    pub async fn register(&self, name: &str, onnx: &[u8]) -> Result<rpb::ModelVersion, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("model.onnx");
        std::fs::write(&path, onnx).expect("write model");
        let mut client = self.client().await;
        shoal_client::register_model(
            &mut client,
            "default",
            &path,
            name,
            "",
            Default::default(),
            false,
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Uploads CSV bytes as the next version of a dataset in `workspace` (empty: default).
    pub async fn upload_dataset(
        &self,
        workspace: &str,
        name: &str,
        csv: &[u8],
    ) -> Result<shoal_proto::training::DatasetVersion, tonic::Status> {
        use shoal_proto::training as pb;
        let mut messages = vec![pb::UploadDatasetRequest {
            part: Some(pb::upload_dataset_request::Part::Header(
                pb::UploadDatasetHeader {
                    workspace: workspace.into(),
                    name: name.into(),
                    description: String::new(),
                    size_bytes: csv.len() as u64,
                },
            )),
        }];
        messages.extend(csv.chunks(1000).map(|c| pb::UploadDatasetRequest {
            part: Some(pb::upload_dataset_request::Part::Chunk(c.to_vec())),
        }));
        self.client()
            .await
            .training
            .upload_dataset(futures::stream::iter(messages))
            .await
            .map(|r| r.into_inner())
    }

    /// Waits until a run is completed, failed or canceled, and returns it.
    pub async fn wait_for_run_end(&self, id: &str) -> shoal_proto::training::Run {
        wait_for(&format!("run {id} to end"), || async {
            let run = self
                .client()
                .await
                .training
                .get_run(shoal_proto::training::GetRunRequest { run_id: id.into() })
                .await
                .expect("get run")
                .into_inner();
            ["completed", "failed", "canceled"]
                .contains(&run.status.as_str())
                .then_some(run)
        })
        .await
    }

    /// Enrolls a device and returns its agent config.
    pub async fn add_device(&self, id: &str) -> AgentConfigFile {
        let creds = self
            .client()
            .await
            .fleet
            .add_device(fpb::AddDeviceRequest {
                workspace: "default".into(),
                id: id.into(),
                tags: Default::default(),
            })
            .await
            .expect("add device")
            .into_inner();
        // What `shoal device add` writes, read back by the agent's own parser: the config
        // file is a contract between two binaries that share no code for it.
        let text = shoal_cli::agent_config_toml(&creds).expect("agent config");
        shoal_agent::config::AgentConfigFile::parse(&text, id).expect("the agent reads it")
    }

    /// A monitor's stored evaluations that ran after `after_ms`, oldest first.
    pub async fn evaluations_after(
        &self,
        monitor: &str,
        after_ms: i64,
    ) -> Vec<shoal_proto::telemetry::Evaluation> {
        let details = self
            .client()
            .await
            .telemetry
            .get_monitor(shoal_proto::telemetry::GetMonitorRequest {
                workspace: "default".into(),
                name: monitor.into(),
            })
            .await
            .expect("get monitor")
            .into_inner();
        let mut later: Vec<_> = details
            .evaluations
            .into_iter()
            .filter(|e| e.at_ms > after_ms)
            .collect();
        later.sort_by_key(|e| e.at_ms);
        later
    }

    /// Waits for the first alert of `monitor`.
    pub async fn wait_for_alert(&self, monitor: &str) -> shoal_proto::telemetry::Alert {
        wait_for(&format!("an alert from {monitor}"), || async {
            let alerts = self
                .client()
                .await
                .telemetry
                .list_alerts(shoal_proto::telemetry::ListAlertsRequest {
                    workspace: "default".into(),
                    monitor: monitor.into(),
                })
                .await
                .expect("list alerts")
                .into_inner()
                .alerts;
            alerts.into_iter().next()
        })
        .await
    }

    /// Profiles CSV text as the drift baseline of `name@reference`.
    pub async fn set_baseline(
        &self,
        name: &str,
        reference: &str,
        csv: &str,
        features: &[&str],
    ) -> Result<rpb::ModelVersion, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("baseline.csv");
        std::fs::write(&path, csv).expect("write csv");
        let mut client = self.client().await;
        let features = features.iter().map(|f| f.to_string()).collect();
        shoal_client::upload_baseline(&mut client, "default", name, reference, &path, features, "")
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn deploy(
        &self,
        name: &str,
        model: &str,
        reference: &str,
        devices: &[&str],
    ) -> dpb::Deployment {
        self.client()
            .await
            .deployments
            .create_deployment(dpb::CreateDeploymentRequest {
                workspace: "default".into(),
                name: name.into(),
                model: model.into(),
                model_reference: reference.into(),
                devices: devices.iter().map(|d| d.to_string()).collect(),
                strategy: dpb::Strategy::AllAtOnce as i32,
            })
            .await
            .expect("create deployment")
            .into_inner()
    }

    pub async fn device(&self, id: &str) -> fpb::Device {
        self.client()
            .await
            .fleet
            .get_device(fpb::GetDeviceRequest {
                workspace: "default".into(),
                id: id.into(),
            })
            .await
            .expect("get device")
            .into_inner()
    }

    /// Waits until the hub reports `digest` active on device `id`.
    pub async fn wait_for_active(&self, id: &str, digest: &str) -> fpb::Device {
        wait_for(&format!("{id} to report {digest} active"), || async {
            let device = self.device(id).await;
            let active = device
                .reported
                .as_ref()
                .and_then(|r| r.active.as_ref())
                .is_some_and(|a| a.digest == digest);
            active.then_some(device)
        })
        .await
    }

    /// Stops the hub (and its embedded broker's listener) and waits for it, up to [`DEADLINE`].
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .unwrap_or_else(|_| {
                    panic!("the hub did not shut down within {DEADLINE:?} (a call still open?)")
                })
                .expect("hub task")
                .expect("hub run");
        }
    }
}

impl TestHubBuilder {
    /// Forces the embedded broker even when `SHOAL_TEST_MQTT_URL` is set.
    pub fn embedded(mut self) -> Self {
        self.external = None;
        self
    }

    /// Uses this external broker (`mqtt://host:port`).
    pub fn external(mut self, url: &str) -> Self {
        self.external = Some(url.to_string());
        self
    }

    /// Reuses a data folder (to restart a hub on the same state).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    pub fn max_model_bytes(mut self, bytes: u64) -> Self {
        self.max_model_bytes = Some(bytes);
        self
    }

    /// The largest dataset, snapshot or output the hub accepts.
    pub fn max_upload_bytes(mut self, bytes: u64) -> Self {
        self.max_upload_bytes = Some(bytes);
        self
    }

    /// TLS on every listener with the hub's own CA (`--tls`); the embedded broker, since the
    /// hub terminates TLS there.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self.external = None;
        self
    }

    /// How long a remote worker may stay silent before its run is failed.
    pub fn worker_heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.worker_heartbeat_timeout = Some(timeout);
        self
    }

    pub async fn start(self) -> TestHub {
        init_logging();
        let (temp, data_dir) = match self.data_dir {
            Some(dir) => (None, dir),
            None => {
                let temp = tempfile::tempdir().expect("temp dir");
                let dir = temp.path().join("hub");
                (Some(temp), dir)
            }
        };
        let mut config = HubConfig::for_test(data_dir.clone());
        config.topic_prefix = format!("{}/shoal/v1", unique("shoal-test-"));
        if let Some(url) = &self.external {
            config.mqtt = MqttMode::External {
                url: MqttUrl::parse(url).expect("SHOAL_TEST_MQTT_URL is an mqtt:// url"),
            };
        }
        if let Some(max) = self.max_model_bytes {
            config.max_model_bytes = max;
        }
        if let Some(timeout) = self.worker_heartbeat_timeout {
            config.worker_heartbeat_timeout = timeout;
        }
        if let Some(bytes) = self.max_upload_bytes {
            config.max_upload_bytes = bytes;
        }
        if self.tls {
            config.tls = Some(shoal_hub::config::TlsSource::Generated { extra_sans: vec![] });
        }
        let topic_prefix = config.topic_prefix.clone();
        let hub = Hub::bind(config).await.expect("bind the test hub");
        let token = std::fs::read_to_string(hub.admin_token_path())
            .expect("admin token")
            .trim()
            .to_string();
        let ca_path = hub.ca_path().map(Path::to_path_buf);
        let (grpc_addr, http_addr, mqtt_url) = (
            hub.grpc_addr(),
            hub.http_addr(),
            hub.advertised_mqtt_url().to_string(),
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn(hub.run(cancel.clone().cancelled_owned()));
        TestHub {
            grpc_addr,
            http_addr,
            mqtt_url,
            token,
            topic_prefix,
            data_dir,
            ca_path,
            cancel,
            task: Some(task),
            _temp: temp,
        }
    }
}

/// An agent running on a runtime of its own, so that [`TestAgent::kill`] stops every one of
/// its tasks at once, as killing the process would.
pub struct TestAgent {
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub config: AgentConfigFile,
    runtime: Option<tokio::runtime::Runtime>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), shoal_agent::AgentError>>>,
}

impl TestAgent {
    /// Starts an agent with this config and data folder on an ephemeral HTTP port.
    pub async fn start(config: AgentConfigFile, data_dir: &Path) -> TestAgent {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-agent")
            .enable_all()
            .build()
            .expect("agent runtime");
        let overrides = Overrides {
            data_dir: Some(data_dir.to_path_buf()),
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            mqtt_url: None,
        };
        let checked = config
            .clone()
            .build_and_validate(&overrides)
            .expect("valid agent config");
        let bound = runtime
            .spawn(shoal_agent::Agent::bind(checked))
            .await
            .expect("agent bind task")
            .expect("agent binds");
        let http_addr = bound.http_addr();
        let cancel = CancellationToken::new();
        let task = runtime.spawn(bound.run(cancel.clone().cancelled_owned()));
        TestAgent {
            http_addr,
            data_dir: data_dir.to_path_buf(),
            config,
            runtime: Some(runtime),
            cancel,
            task: Some(task),
        }
    }

    /// Stops every task of the agent at once, with no goodbye: no flush, no MQTT disconnect.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Shuts the agent down gracefully.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(DEADLINE, task).await;
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// `POST /v1/infer` with a JSON body; returns the status and the JSON answer.
    pub async fn infer(&self, body: &Value) -> (u16, Value) {
        self.post_raw(body.to_string()).await
    }

    /// `POST /v1/infer` with any bytes.
    pub async fn post_raw(&self, body: String) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("http://{}/v1/infer", self.http_addr))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("agent answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .get(format!("http://{}{path}", self.http_addr))
            .send()
            .await
            .expect("agent answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits until `GET /v1/model` says `digest` is active.
    pub async fn wait_for_model(&self, digest: &str) -> Value {
        wait_for(&format!("agent to serve {digest}"), || async {
            let (status, body) = self.get("/v1/model").await;
            (status == 200 && body["digest"] == digest).then_some(body)
        })
        .await
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A row-major `[rows, 4]` input as the inference API takes it.
pub fn infer_body(rows: &[[f32; 4]]) -> Value {
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    serde_json::json!({"inputs": {"x": {"shape": [rows.len(), 4], "data": data}}})
}

/// The f32 data of output `name` in an inference answer.
pub fn output_values(answer: &Value, name: &str) -> Vec<f32> {
    answer["outputs"][name]["data"]
        .as_array()
        .unwrap_or_else(|| panic!("answer has output {name}: {answer}"))
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

/// An MQTT client logged in with a device's credentials, for tests that act as a device (or
/// as an intruder with a device's login), over TLS with the config's CA for `mqtts://`. The
/// event loop is the caller's to poll.
pub fn mqtt_client_as(
    config: &AgentConfigFile,
    client_id: &str,
) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let url = shoal_proto::mqtt_url::MqttUrl::parse(&config.hub.mqtt_url)
        .expect("agent config has an mqtt url");
    let mut options = rumqttc::MqttOptions::new(client_id, url.host, url.port);
    options.set_credentials(&config.hub.mqtt_username, &config.hub.mqtt_password);
    options.set_max_packet_size(1 << 20, 1 << 20);
    if url.tls {
        let tls = shoal_proto::tls::client_config(config.hub.ca_pem.as_deref())
            .expect("the config's CA is usable");
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    }
    rumqttc::AsyncClient::new(options, 64)
}
