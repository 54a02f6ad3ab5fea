//! Shoal's hub: the composition root. It opens storage, builds the domain services from the
//! crates that hold them (`shoal-registry`, `shoal-tracking`, `shoal-fleet`), runs the embedded
//! MQTT broker and the hub's MQTT adapter, and serves the gRPC API, HTTP and the MLflow API.
//!
//! Start-up has two phases, so callers learn every bound address before serving starts:
//! [`Hub::bind`] opens storage, loads keys and binds every socket; [`BoundHub::run`] serves
//! until its shutdown future completes, then drains within a grace period.
//!
//! # Layout
//! - [`config`]: `HubConfig`, the broker mode and URL parsing.
//! - [`error`]: `HubError`, why the hub could not start or stopped.
//! - [`auth`]: the bootstrap admin token, and the authenticator gRPC and MLflow share.
//! - [`files`]: the data folder at mode 0700, secret files nobody else can read.
//! - [`broker`]: embedded rumqttd behind a listener the hub owns.
//! - [`broker_front`]: per-device topic rules, revocations and the CONNECT deadline on it.
//! - [`mqtt`]: the hub's MQTT client: device status, state, blob requests and telemetry in;
//!   desired state, chunks, acknowledgements and events out (it implements the fleet's
//!   `DevicePublisher`).
//! - [`api`]: tonic services (wire ↔ domain only, errors → status in one function).
//! - [`http`]: health over HTTP; [`mlflow`]: the MLflow-compatible REST API.
//! - [`retrain`]: the Monitor → Retrain loop, in one place.
//! - [`background`]: telemetry retention and monitor evaluation loops.
//! - [`shutdown`]: SIGTERM/SIGINT as a future.
//! - [`tls`]: the certificate of every listener (the hub's own CA, or the operator's files).
//! - [`listener`]: the gRPC and HTTP listeners' front: connection cap, TLS, deadlines.

pub mod api;
pub mod auth;
pub mod background;
pub mod broker;
pub mod broker_front;
pub mod config;
pub mod error;
pub mod files;
pub mod http;
pub mod listener;
pub mod mlflow;
pub mod mqtt;
pub mod retrain;
pub mod shutdown;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shoal_fleet::{Deployments, DevicePublisher, Fleet, Monitors, Telemetry};
use shoal_registry::{ManifestSigner, Registry};
use shoal_store::{ArtifactStore, IoError, Records, SledStore, Vault, Workspaces};
use shoal_tracking::{Datasets, Jobs, JobsConfig, Sweeps, Tracking};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{HubConfig, MqttMode, MqttUrl};
pub use error::{HubError, HubResult};

use crate::auth::AdminToken;
use crate::broker::{BrokerTls, EmbeddedBroker};
use crate::listener::{Front, Preface};
use crate::retrain::Retrainer;
use crate::tls::HubTls;

pub struct Hub;

/// A hub whose storage is open and whose sockets are bound, ready to [`run`](BoundHub::run).
pub struct BoundHub {
    config: HubConfig,
    grpc: TcpListener,
    http: TcpListener,
    broker: Option<EmbeddedBroker>,
    mqtt_addr: Option<SocketAddr>,
    advertised_mqtt_url: String,
    tls: Option<Arc<HubTls>>,
    /// The CA devices are told to pin (empty: plaintext, or the system's roots).
    device_ca_pem: String,
    admin: Arc<AdminToken>,
    /// Checks tokens for gRPC and MLflow, and holds the token store and audit log.
    authenticator: auth::Authenticator,
    signer: Arc<ManifestSigner>,
    workspaces: Workspaces,
    registry: Registry,
    tracking: Tracking,
    datasets: Datasets,
    jobs: Jobs,
    sweeps: Sweeps,
    fleet: Fleet,
    deployments: Deployments,
    telemetry: Telemetry,
    monitors: Monitors,
    publisher: Arc<dyn DevicePublisher>,
    mqtt_client: rumqttc::AsyncClient,
    mqtt_eventloop: rumqttc::EventLoop,
    artifacts: ArtifactStore,
    vault: Vault,
}

impl Hub {
    /// Opens the data folder (creating keys and the `default` workspace on first start),
    /// starts the embedded broker if configured, and binds the gRPC and HTTP listeners.
    ///
    /// # Errors
    /// An invalid config, an unusable data folder, or an address already in use (naming
    /// the address and the flag that changes it).
    pub async fn bind(mut config: HubConfig) -> HubResult<BoundHub> {
        config.validate()?;
        // Runs execute in folders under the data folder; paths handed to them must not depend
        // on the hub's working directory.
        config.data_dir = std::path::absolute(&config.data_dir).map_err(IoError::with(format!(
            "resolve the data folder {}",
            config.data_dir.display()
        )))?;
        files::secure_data_dir(&config.data_dir)?;
        files::check_secret_files(&config.data_dir, files::SECRET_FILES)?;
        let admin = Arc::new(AdminToken::load_or_create(&config.data_dir)?);
        let signer = Arc::new(ManifestSigner::load_or_create(&config.data_dir)?);
        let store = SledStore::open(&config.data_dir.join("meta"))?;
        let records = Records::new(Arc::new(store));
        let artifacts = ArtifactStore::open(&config.data_dir.join("artifacts"))?;
        let vault = Vault::open(
            records.clone(),
            &config.data_dir.join(shoal_store::vault::KEY_FILE),
        )?;
        let workspaces = Workspaces::new(records.clone());
        workspaces.ensure_default()?;
        let registry = Registry::new(records.clone(), artifacts.clone(), workspaces.clone());
        let tracking = Tracking::new(records.clone(), workspaces.clone());
        let datasets = Datasets::new(records.clone(), artifacts.clone(), workspaces.clone());
        let jobs = Jobs::new(
            tracking.clone(),
            datasets.clone(),
            registry.clone(),
            artifacts.clone(),
            vault.clone(),
            JobsConfig {
                runs_dir: std::path::absolute(config.runs_dir()).map_err(IoError::with(
                    format!("resolve the runs folder {}", config.runs_dir().display()),
                ))?,
                hidden: vec![config.data_dir.clone()],
                sandbox_required: config.require_run_sandbox,
                local_concurrency: config.local_run_concurrency,
                heartbeat_timeout: config.worker_heartbeat_timeout,
                max_upload_bytes: config.max_upload_bytes,
            },
        );
        let fleet = Fleet::new(records.clone(), workspaces.clone())?;
        let tls = match &config.tls {
            Some(source) => Some(Arc::new(HubTls::load(&config.data_dir, source)?)),
            None => None,
        };
        let mut device_ca_pem = String::new();

        let (broker, mqtt_addr, target, advertised) = match &config.mqtt {
            MqttMode::Embedded { listen } => {
                let hub_password = shoal_store::random_hex(24)?;
                fleet.auth().set_hub_login("shoal-hub", &hub_password);
                let broker_tls = match &tls {
                    Some(tls) => Some(BrokerTls {
                        acceptor: tls.acceptor(&[])?,
                        handshake_timeout: config.limits.handshake_timeout,
                    }),
                    None => None,
                };
                let broker = EmbeddedBroker::start(
                    *listen,
                    fleet.auth(),
                    &config.topic_prefix,
                    config.mqtt_limits,
                    broker_tls,
                )
                .await?;
                let addr = broker.local_addr();
                // The hub's own client skips the public front (and its TLS): loopback only.
                let internal = broker.internal_addr();
                let target = mqtt::MqttTarget {
                    host: internal.ip().to_string(),
                    port: internal.port(),
                    credentials: Some(("shoal-hub".into(), hub_password)),
                    topic_prefix: config.topic_prefix.clone(),
                    tls: None,
                };
                let scheme = match &tls {
                    Some(tls) => {
                        device_ca_pem = tls.ca_pem().to_string();
                        "mqtts"
                    }
                    None => "mqtt",
                };
                (
                    Some(broker),
                    Some(addr),
                    target,
                    format!("{scheme}://{}", reachable(addr)),
                )
            }
            MqttMode::External { url } => {
                let credentials = url
                    .username
                    .clone()
                    .map(|u| (u, url.password.clone().unwrap_or_default()));
                let client_tls = if url.tls {
                    let ca = match &config.external_mqtt_ca {
                        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                            HubError::Config(format!("--mqtt-ca {}: {e}", path.display()))
                        })?),
                        None => None,
                    };
                    let client = shoal_proto::tls::client_config(ca.as_deref()).map_err(|e| {
                        HubError::Config(format!("--mqtt-url {}: {e}", url.without_credentials()))
                    })?;
                    device_ca_pem = ca.unwrap_or_default();
                    Some(client)
                } else {
                    None
                };
                let target = mqtt::MqttTarget {
                    host: url.host.clone(),
                    port: url.port,
                    credentials,
                    topic_prefix: config.topic_prefix.clone(),
                    tls: client_tls,
                };
                (None, None, target, url.without_credentials())
            }
        };
        let advertised_mqtt_url = config.advertised_mqtt_url.clone().unwrap_or(advertised);
        let (publisher, mqtt_client, mqtt_eventloop) = mqtt::connect(&target);
        let publisher: Arc<dyn DevicePublisher> = Arc::new(publisher);
        let deployments = Deployments::new(
            records.clone(),
            workspaces.clone(),
            registry.clone(),
            fleet.clone(),
            signer.clone(),
            publisher.clone(),
        );
        let telemetry = Telemetry::new(records.clone(), registry.clone(), fleet.clone());
        let monitors = Monitors::new(records.clone(), workspaces.clone(), telemetry.clone());
        let grpc = TcpListener::bind(config.grpc_listen)
            .await
            .map_err(|e| HubError::bind("gRPC", config.grpc_listen, e))?;
        let http = TcpListener::bind(config.http_listen)
            .await
            .map_err(|e| HubError::bind("HTTP", config.http_listen, e))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        jobs.set_endpoints(shoal_tracking::jobs::HubEndpoints {
            grpc_url: format!("{scheme}://{}", reachable(local_addr(&grpc))),
            http_url: format!("{scheme}://{}", reachable(local_addr(&http))),
        });
        let access = shoal_access::Access::new(records.clone());
        // Script runs act with tokens of their own, minted when they start.
        jobs.set_run_credentials(Arc::new(auth::RunTokens(access.clone())));
        let authenticator = auth::Authenticator::new(admin.clone(), access, tracking.clone());
        Ok(BoundHub {
            config,
            grpc,
            http,
            broker,
            mqtt_addr,
            advertised_mqtt_url,
            tls,
            device_ca_pem,
            admin,
            authenticator,
            signer,
            workspaces,
            registry,
            tracking,
            datasets,
            sweeps: Sweeps::new(records.clone(), jobs.clone()),
            jobs,
            fleet,
            deployments,
            telemetry,
            monitors,
            publisher,
            mqtt_client,
            mqtt_eventloop,
            artifacts,
            vault,
        })
    }
}

impl BoundHub {
    pub fn grpc_addr(&self) -> SocketAddr {
        local_addr(&self.grpc)
    }

    pub fn http_addr(&self) -> SocketAddr {
        local_addr(&self.http)
    }

    /// The embedded broker's address; `None` with an external broker.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt_addr
    }

    /// The hub's own login on the embedded broker (regenerated at every start); `None` with
    /// an external broker.
    pub fn embedded_mqtt_login(&self) -> Option<(String, String)> {
        self.broker.as_ref().and(self.fleet.auth().hub_login())
    }

    /// The broker URL devices are told to use.
    pub fn advertised_mqtt_url(&self) -> &str {
        &self.advertised_mqtt_url
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// `https` when the gRPC and HTTP listeners speak TLS, `http` otherwise.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The PEM of the CA clients and devices pin when the hub serves TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_deref().map(HubTls::ca_pem)
    }

    /// The CA file clients can be pointed at (`SHOAL_CA`), when TLS is on.
    pub fn ca_path(&self) -> Option<&Path> {
        self.tls.as_deref().and_then(HubTls::ca_path)
    }

    /// The admin token file's path.
    pub fn admin_token_path(&self) -> PathBuf {
        self.admin.path().to_path_buf()
    }

    pub fn public_key_hex(&self) -> String {
        self.signer.public_key_hex()
    }

    /// Serves gRPC, HTTP and MQTT until `shutdown` completes, then stops accepting, lets
    /// in-flight work finish within the grace period, and flushes storage.
    ///
    /// # Errors
    /// When the gRPC server fails.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> HubResult<()> {
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (connected_tx, connected_rx) = tokio::sync::watch::channel(false);

        if let Some(broker) = self.broker {
            tasks.spawn(broker.serve(cancel.clone()));
        }
        let mqtt_context = mqtt::MqttContext {
            prefix: self.config.topic_prefix.clone(),
            fleet: self.fleet.clone(),
            deployments: self.deployments.clone(),
            artifacts: self.artifacts.clone(),
            telemetry: self.telemetry.clone(),
            client: self.mqtt_client.clone(),
            connected: Arc::new(connected_tx),
        };
        tasks.spawn(mqtt::run(mqtt_context, self.mqtt_eventloop, cancel.clone()));

        tasks.spawn(background::run_retention(
            self.telemetry.clone(),
            self.config.telemetry_retention,
            cancel.clone(),
        ));
        tasks.spawn(self.jobs.clone().run_scheduler(cancel.clone()));
        tasks.spawn(self.sweeps.clone().run_controller(cancel.clone()));
        let retrainer = Retrainer::new(self.jobs.clone(), self.monitors.clone());
        tasks.spawn(background::run_monitors(
            self.monitors.clone(),
            self.publisher.clone(),
            retrainer.clone(),
            cancel.clone(),
        ));

        let http_cancel = cancel.clone();
        let mlflow_state = mlflow::MlflowState {
            auth: self.authenticator.clone(),
            tracking: self.tracking.clone(),
            registry: self.registry.clone(),
            datasets: self.datasets.clone(),
            jobs: self.jobs.clone(),
            artifacts: self.artifacts.clone(),
            max_artifact_bytes: self.config.max_model_bytes,
        };
        let (grpc_tls, http_tls) = match &self.tls {
            Some(tls) => (
                Some(tls.acceptor(&[tls::ALPN_GRPC])?),
                Some(tls.acceptor(&[tls::ALPN_HTTP1])?),
            ),
            None => (None, None),
        };
        let limits = self.config.limits;
        let http_front = Front::new(self.http, http_tls, limits, Preface::None, "HTTP");
        tasks.spawn(listener::serve_http(
            http_front,
            http::router(connected_rx, mlflow_state),
            http_cancel,
        ));

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        // Reflection in both versions: grpcio-reflection and older grpcurl ask v1alpha.
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(shoal_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| HubError::Internal(format!("reflection: {e}")))?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(shoal_proto::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| HubError::Internal(format!("reflection: {e}")))?;
        use shoal_proto::{
            access::access_service_server::AccessServiceServer,
            deployment::deployment_service_server::DeploymentServiceServer,
            fleet::fleet_service_server::FleetServiceServer,
            registry::registry_service_server::RegistryServiceServer,
            secret::secret_service_server::SecretServiceServer,
            telemetry::telemetry_service_server::TelemetryServiceServer,
            training::{
                training_service_server::TrainingServiceServer,
                worker_service_server::WorkerServiceServer,
            },
            workspace::workspace_service_server::WorkspaceServiceServer,
        };
        let max_message = 4 * 1024 * 1024;
        let workspace_api = WorkspaceServiceServer::new(api::WorkspaceApi {
            workspaces: self.workspaces.clone(),
            contents: vec![
                Arc::new(self.registry.clone()),
                Arc::new(self.fleet.clone()),
                Arc::new(self.deployments.clone()),
                Arc::new(self.monitors.clone()),
                Arc::new(self.telemetry.clone()),
                Arc::new(self.datasets.clone()),
                Arc::new(self.tracking.clone()),
                Arc::new(self.sweeps.clone()),
                Arc::new(self.vault.clone()),
            ],
        });
        let registry_api = RegistryServiceServer::new(api::RegistryApi {
            registry: self.registry.clone(),
            max_model_bytes: self.config.max_model_bytes,
            deployments: self.deployments.clone(),
        })
        .max_decoding_message_size(max_message);
        let fleet_api = FleetServiceServer::new(api::FleetApi {
            fleet: self.fleet.clone(),
            advertised_mqtt_url: self.advertised_mqtt_url.clone(),
            topic_prefix: self.config.topic_prefix.clone(),
            hub_public_key: self.signer.public_key_hex(),
            hub_ca_pem: self.device_ca_pem.clone(),
            deployments: self.deployments.clone(),
            external_mqtt_login: match &self.config.mqtt {
                MqttMode::External { url } => url
                    .username
                    .clone()
                    .map(|user| (user, url.password.clone())),
                MqttMode::Embedded { .. } => None,
            },
        });
        let deployment_api = DeploymentServiceServer::new(api::DeploymentApi {
            deployments: self.deployments.clone(),
        });
        // Server-streaming calls (telemetry tails) end when shutdown begins.
        let streams_end = CancellationToken::new();
        let telemetry_api = TelemetryServiceServer::new(api::TelemetryApi {
            telemetry: self.telemetry.clone(),
            monitors: self.monitors.clone(),
            shutdown: streams_end.clone(),
            retrainer,
        });
        let training_api = TrainingServiceServer::new(api::TrainingApi {
            jobs: self.jobs.clone(),
            sweeps: self.sweeps.clone(),
        })
        .max_decoding_message_size(max_message);
        let worker_api = WorkerServiceServer::new(api::WorkerApi {
            jobs: self.jobs.clone(),
        })
        .max_decoding_message_size(max_message);
        let secret_api = SecretServiceServer::new(api::SecretApi {
            vault: self.vault.clone(),
            workspaces: self.workspaces.clone(),
        });
        let access_api = AccessServiceServer::new(api::AccessApi {
            access: self.authenticator.access().clone(),
        });
        // Storage is open and the broker is up: tell probes the services are ready.
        health_reporter
            .set_serving::<WorkspaceServiceServer<api::WorkspaceApi>>()
            .await;
        health_reporter
            .set_serving::<RegistryServiceServer<api::RegistryApi>>()
            .await;
        health_reporter
            .set_serving::<FleetServiceServer<api::FleetApi>>()
            .await;
        health_reporter
            .set_serving::<DeploymentServiceServer<api::DeploymentApi>>()
            .await;
        health_reporter
            .set_serving::<TelemetryServiceServer<api::TelemetryApi>>()
            .await;
        health_reporter
            .set_serving::<TrainingServiceServer<api::TrainingApi>>()
            .await;
        health_reporter
            .set_serving::<SecretServiceServer<api::SecretApi>>()
            .await;
        health_reporter
            .set_serving::<AccessServiceServer<api::AccessApi>>()
            .await;

        tracing::info!(grpc = %local_addr(&self.grpc), mqtt = %self.advertised_mqtt_url, data_dir = %self.config.data_dir.display(), "hub serving");
        let grpc_cancel = cancel.clone();
        let jobs_shutdown = self.jobs.shutting_down();
        let tails_end = streams_end.clone();
        // Every call passes the access layer: token, access table, audit (see `api::guard`).
        let incoming = Front::new(self.grpc, grpc_tls, limits, Preface::Http2, "gRPC")
            .incoming(cancel.clone());
        let served = tonic::transport::Server::builder()
            .layer(api::AccessLayer::new(self.authenticator.clone()))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(access_api)
            .add_service(workspace_api)
            .add_service(registry_api)
            .add_service(fleet_api)
            .add_service(deployment_api)
            .add_service(telemetry_api)
            .add_service(training_api)
            .add_service(worker_api)
            .add_service(secret_api)
            .serve_with_incoming_shutdown(incoming, async move {
                tokio::select! {
                    _ = shutdown => {}
                    _ = grpc_cancel.cancelled() => {}
                }
                // The server waits for calls in flight: end the long polls now.
                jobs_shutdown.cancel();
                tails_end.cancel();
            })
            .await;

        cancel.cancel();
        tasks.close();
        if tokio::time::timeout(self.config.shutdown_grace, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?self.config.shutdown_grace, "background tasks did not stop within the grace period");
        }
        // Every domain shares one store; flushing through any of them flushes it.
        let flushed = self.workspaces.flush();
        served.map_err(|e| HubError::Internal(format!("grpc server: {e}")))?;
        Ok(flushed?)
    }
}

/// The address a process on this host reaches a listener at (loopback for a wildcard).
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// A bound listener's address.
fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound TCP listener has an address")
}
