//! Shoal's hub: the model registry, devices and deployments, an embedded MQTT broker, and
//! the gRPC API that the `shoal` CLI speaks.
//!
//! Start-up has two phases, so callers learn every bound address before serving starts:
//! [`Hub::bind`] opens storage, loads keys and binds every socket; [`BoundHub::run`] serves
//! until its shutdown future completes, then drains within a grace period.
//!
//! # Layout
//! - [`config`]: `HubConfig`, the broker mode and URL parsing.
//! - [`error`]: `HubError` and its error codes.
//! - [`storage`]: the metadata store seam (sled, memory) and typed JSON records.
//! - [`artifacts`]: content-addressed blobs (sha256) on disk.
//! - [`auth`]: admin token, manifest signing key, device passwords.
//! - [`workspace`], [`registry`], [`fleet`], [`deployment`]: the domain.
//! - [`telemetry`]: windows from devices, stored once, rolled up hourly, merged into drift reports.
//! - [`monitor`]: drift monitors, their evaluations, alerts and signed webhooks.
//! - [`broker`]: embedded rumqttd behind a listener the hub owns.
//! - [`mqtt`]: the hub's MQTT client: device status and state in, desired state and chunks out.
//! - [`api`]: tonic services (wire ↔ domain only); [`http`]: health over HTTP.
//! - [`cli`]: the `shoal` command line, including `shoal demo`.

pub mod api;
pub mod artifacts;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod deployment;
pub mod error;
pub mod fleet;
pub mod http;
pub mod jobs;
pub mod mlflow;
pub mod monitor;
pub mod mqtt;
pub mod registry;
pub mod search;
pub mod shutdown;
pub mod storage;
pub mod sweep;
pub mod telemetry;
pub mod tracking;
pub mod worker;
pub mod workspace;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{HubConfig, MqttMode, MqttUrl};
pub use error::{HubError, HubResult};

use crate::artifacts::ArtifactStore;
use crate::auth::HubKeys;
use crate::broker::EmbeddedBroker;
use crate::deployment::Deployments;
use crate::fleet::Fleet;
use crate::registry::Registry;
use crate::storage::{Records, SledStore};
use crate::workspace::Workspaces;

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How often raw telemetry past its retention is deleted.
const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

pub struct Hub;

/// A hub whose storage is open and whose sockets are bound, ready to [`run`](BoundHub::run).
pub struct BoundHub {
    config: HubConfig,
    grpc: TcpListener,
    http: TcpListener,
    broker: Option<EmbeddedBroker>,
    mqtt_addr: Option<SocketAddr>,
    advertised_mqtt_url: String,
    keys: Arc<HubKeys>,
    workspaces: Workspaces,
    registry: Registry,
    tracking: tracking::Tracking,
    datasets: dataset::Datasets,
    jobs: jobs::Jobs,
    sweeps: sweep::Sweeps,
    fleet: Fleet,
    deployments: Deployments,
    telemetry: telemetry::Telemetry,
    monitors: monitor::Monitors,
    publisher: mqtt::MqttPublisher,
    mqtt_client: rumqttc::AsyncClient,
    mqtt_eventloop: rumqttc::EventLoop,
    artifacts: ArtifactStore,
}

impl Hub {
    /// Opens the data folder (creating keys and the `default` workspace on first start),
    /// starts the embedded broker if configured, and binds the gRPC and HTTP listeners.
    ///
    /// # Errors
    /// An invalid config, an unusable data folder, or an address already in use.
    pub async fn bind(mut config: HubConfig) -> HubResult<BoundHub> {
        config.validate()?;
        // Runs execute in folders under the data folder; paths handed to them must not depend
        // on the hub's working directory.
        config.data_dir = std::path::absolute(&config.data_dir)?;
        std::fs::create_dir_all(&config.data_dir)?;
        let keys = Arc::new(HubKeys::load_or_create(&config.data_dir)?);
        let store = SledStore::open(&config.data_dir.join("meta"))?;
        let records = Records::new(Arc::new(store));
        let artifacts = ArtifactStore::open(&config.data_dir.join("artifacts"))?;
        let workspaces = Workspaces::new(records.clone());
        workspaces.ensure_default()?;
        let registry = Registry::new(records.clone(), artifacts.clone(), workspaces.clone());
        let tracking = tracking::Tracking::new(records.clone(), workspaces.clone());
        let datasets =
            dataset::Datasets::new(records.clone(), artifacts.clone(), workspaces.clone());
        let jobs = jobs::Jobs::new(
            tracking.clone(),
            datasets.clone(),
            registry.clone(),
            artifacts.clone(),
            jobs::JobsConfig {
                runs_dir: config.data_dir.join("runs"),
                local_concurrency: config.local_run_concurrency,
                heartbeat_timeout: config.worker_heartbeat_timeout,
                max_upload_bytes: config.max_upload_bytes,
            },
        );
        let fleet = Fleet::new(records.clone(), workspaces.clone())?;

        let (broker, mqtt_addr, target, advertised) = match &config.mqtt {
            MqttMode::Embedded { listen } => {
                let hub_password = auth::random_hex(24)?;
                fleet.auth().set_hub_login("shoal-hub", &hub_password);
                let broker = EmbeddedBroker::start(*listen, fleet.auth()).await?;
                let addr = broker.local_addr()?;
                let reachable = if addr.ip().is_unspecified() {
                    SocketAddr::from(([127, 0, 0, 1], addr.port()))
                } else {
                    addr
                };
                let target = mqtt::MqttTarget {
                    host: reachable.ip().to_string(),
                    port: reachable.port(),
                    credentials: Some(("shoal-hub".into(), hub_password)),
                    topic_prefix: config.topic_prefix.clone(),
                };
                (
                    Some(broker),
                    Some(addr),
                    target,
                    format!("mqtt://{reachable}"),
                )
            }
            MqttMode::External { url } => {
                let credentials = url
                    .username
                    .clone()
                    .map(|u| (u, url.password.clone().unwrap_or_default()));
                let target = mqtt::MqttTarget {
                    host: url.host.clone(),
                    port: url.port,
                    credentials,
                    topic_prefix: config.topic_prefix.clone(),
                };
                (None, None, target, url.without_credentials())
            }
        };
        let advertised_mqtt_url = config.advertised_mqtt_url.clone().unwrap_or(advertised);
        let (publisher, mqtt_client, mqtt_eventloop) = mqtt::connect(&target);
        let deployments = Deployments::new(
            records.clone(),
            workspaces.clone(),
            registry.clone(),
            fleet.clone(),
            keys.clone(),
            publisher.clone(),
        );
        let telemetry = telemetry::Telemetry::new(records.clone(), registry.clone(), fleet.clone());
        let monitors =
            monitor::Monitors::new(records.clone(), workspaces.clone(), telemetry.clone());
        let grpc = TcpListener::bind(config.grpc_listen).await?;
        let http = TcpListener::bind(config.http_listen).await?;
        jobs.set_endpoints(jobs::HubEndpoints {
            grpc_url: format!("http://{}", reachable(grpc.local_addr()?)),
            http_url: format!("http://{}", reachable(http.local_addr()?)),
            // Runs act with the admin token for now (scoped per-run tokens come with roles).
            token: std::fs::read_to_string(config.data_dir.join(auth::ADMIN_TOKEN_FILE))
                .map(|t| t.trim().to_string())
                .unwrap_or_default(),
        });
        Ok(BoundHub {
            config,
            grpc,
            http,
            broker,
            mqtt_addr,
            advertised_mqtt_url,
            keys,
            workspaces,
            registry,
            tracking,
            datasets,
            sweeps: sweep::Sweeps::new(records.clone(), jobs.clone()),
            jobs,
            fleet,
            deployments,
            telemetry,
            monitors,
            publisher,
            mqtt_client,
            mqtt_eventloop,
            artifacts,
        })
    }
}

impl BoundHub {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The embedded broker's address; `None` with an external broker.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt_addr
    }

    /// The broker URL devices are told to use.
    pub fn advertised_mqtt_url(&self) -> &str {
        &self.advertised_mqtt_url
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The admin token file's path.
    pub fn admin_token_path(&self) -> PathBuf {
        self.config.data_dir.join(auth::ADMIN_TOKEN_FILE)
    }

    pub fn public_key_hex(&self) -> String {
        self.keys.public_key_hex()
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

        let retention_cancel = cancel.clone();
        let (retained, retention) = (self.telemetry.clone(), self.config.telemetry_retention);
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(RETENTION_INTERVAL);
            loop {
                tokio::select! {
                    _ = retention_cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let telemetry = retained.clone();
                match tokio::task::spawn_blocking(move || {
                    telemetry.enforce_retention(now_ms(), retention)
                })
                .await
                {
                    Ok(Ok(0)) => {}
                    Ok(Ok(deleted)) => {
                        tracing::info!(deleted, "raw telemetry windows past retention deleted")
                    }
                    Ok(Err(error)) => tracing::warn!(%error, "telemetry retention failed"),
                    Err(error) => tracing::warn!(%error, "telemetry retention task failed"),
                }
            }
        });

        tasks.spawn(self.jobs.clone().run_scheduler(cancel.clone()));
        tasks.spawn(self.sweeps.clone().run_controller(cancel.clone()));

        tasks.spawn(run_monitors(
            self.monitors.clone(),
            self.publisher.clone(),
            self.jobs.clone(),
            cancel.clone(),
        ));

        let http_cancel = cancel.clone();
        let http_state = http::HttpState {
            mqtt_connected: connected_rx,
            keys: self.keys.clone(),
            tracking: self.tracking.clone(),
            registry: self.registry.clone(),
            datasets: self.datasets.clone(),
            artifacts: self.artifacts.clone(),
            max_artifact_bytes: self.config.max_model_bytes,
        };
        let http = self.http;
        tasks.spawn(async move {
            let server = axum::serve(http, http::router(http_state))
                .with_graceful_shutdown(async move { http_cancel.cancelled().await });
            if let Err(error) = server.await {
                tracing::error!(%error, "http server failed");
            }
        });

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(shoal_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| HubError::Internal(format!("reflection: {e}")))?;
        let auth = api::BearerAuth::new(self.keys.clone());
        use shoal_proto::{
            deployment::deployment_service_server::DeploymentServiceServer,
            fleet::fleet_service_server::FleetServiceServer,
            registry::registry_service_server::RegistryServiceServer,
            telemetry::telemetry_service_server::TelemetryServiceServer,
            training::{
                training_service_server::TrainingServiceServer,
                worker_service_server::WorkerServiceServer,
            },
            workspace::workspace_service_server::WorkspaceServiceServer,
        };
        let max_message = 4 * 1024 * 1024;
        let workspace_api = WorkspaceServiceServer::with_interceptor(
            api::WorkspaceApi {
                workspaces: self.workspaces.clone(),
                contents: vec![
                    Arc::new(self.datasets.clone()),
                    Arc::new(self.tracking.clone()),
                    Arc::new(self.sweeps.clone()),
                ],
            },
            auth.clone(),
        );
        let registry_api = tonic::service::interceptor::InterceptedService::new(
            RegistryServiceServer::new(api::RegistryApi {
                registry: self.registry.clone(),
                max_model_bytes: self.config.max_model_bytes,
                deployments: self.deployments.clone(),
            })
            .max_decoding_message_size(max_message),
            auth.clone(),
        );
        let fleet_api = FleetServiceServer::with_interceptor(
            api::FleetApi {
                fleet: self.fleet.clone(),
                advertised_mqtt_url: self.advertised_mqtt_url.clone(),
                topic_prefix: self.config.topic_prefix.clone(),
                hub_public_key: self.keys.public_key_hex(),
                publisher: self.publisher.clone(),
            },
            auth.clone(),
        );
        let deployment_api = DeploymentServiceServer::with_interceptor(
            api::DeploymentApi {
                deployments: self.deployments.clone(),
            },
            auth.clone(),
        );
        let telemetry_api = TelemetryServiceServer::with_interceptor(
            api::TelemetryApi {
                telemetry: self.telemetry.clone(),
                monitors: self.monitors.clone(),
                jobs: self.jobs.clone(),
            },
            auth.clone(),
        );
        let training_api = tonic::service::interceptor::InterceptedService::new(
            TrainingServiceServer::new(api::TrainingApi {
                jobs: self.jobs.clone(),
                sweeps: self.sweeps.clone(),
            })
            .max_decoding_message_size(max_message),
            auth.clone(),
        );
        let worker_api = tonic::service::interceptor::InterceptedService::new(
            WorkerServiceServer::new(api::WorkerApi {
                jobs: self.jobs.clone(),
            })
            .max_decoding_message_size(max_message),
            auth.clone(),
        );
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

        tracing::info!(grpc = %self.grpc.local_addr()?, mqtt = %self.advertised_mqtt_url, data_dir = %self.config.data_dir.display(), "hub serving");
        let grpc_cancel = cancel.clone();
        let jobs_shutdown = self.jobs.shutting_down();
        let incoming = tonic::transport::server::TcpIncoming::from(self.grpc);
        let served = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(workspace_api)
            .add_service(registry_api)
            .add_service(fleet_api)
            .add_service(deployment_api)
            .add_service(telemetry_api)
            .add_service(training_api)
            .add_service(worker_api)
            .serve_with_incoming_shutdown(incoming, async move {
                tokio::select! {
                    _ = shutdown => {}
                    _ = grpc_cancel.cancelled() => {}
                }
                // The server waits for calls in flight: end the long polls now.
                jobs_shutdown.cancel();
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
        flushed
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

/// How often the hub looks for monitors whose period has come.
const MONITOR_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Evaluates due monitors until `cancel`; each alert is published on the workspace's events
/// topic and POSTed to the monitor's webhook.
async fn run_monitors(
    monitors: monitor::Monitors,
    publisher: mqtt::MqttPublisher,
    jobs: jobs::Jobs,
    cancel: CancellationToken,
) {
    use monitor::AlertSink;
    use prost::Message;
    let webhook = Arc::new(monitor::WebhookSink::new());
    let mut tick = tokio::time::interval(MONITOR_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        let scan = monitors.clone();
        let due = match tokio::task::spawn_blocking(move || scan.take_due(now)).await {
            Ok(Ok(due)) => due,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot list due monitors");
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "monitor scan task failed");
                continue;
            }
        };
        for monitor in due {
            let evaluator = monitors.clone();
            let subject = monitor.clone();
            let evaluated = tokio::task::spawn_blocking(move || evaluator.evaluate(&subject)).await;
            let alert = match evaluated {
                Ok(Ok((_, alert))) => alert,
                Ok(Err(error)) => {
                    tracing::warn!(monitor = %monitor.name, %error, "monitor evaluation failed");
                    None
                }
                Err(error) => {
                    tracing::warn!(%error, "monitor evaluation task failed");
                    None
                }
            };
            let Some(alert) = alert else { continue };
            let event = shoal_proto::telemetry::HubEvent {
                event: Some(shoal_proto::telemetry::hub_event::Event::Alert(
                    api::alert_to_wire(&alert),
                )),
            };
            if let Err(error) = publisher
                .publish_event(&alert.workspace, event.encode_to_vec())
                .await
            {
                tracing::warn!(%error, "cannot publish an alert event");
            }
            if let Some(template) = monitor.on_alert.as_deref().and_then(jobs::retrain_template) {
                let (jobs, monitors, alert, template) = (
                    jobs.clone(),
                    monitors.clone(),
                    alert.clone(),
                    template.to_string(),
                );
                tokio::task::spawn_blocking(move || {
                    let outcome = match jobs.retrain(&template, &alert) {
                        Ok(run) => {
                            tracing::info!(alert = %alert.id, run = %run.id, "drift alert started a retraining run");
                            run.id
                        }
                        Err(error) => {
                            tracing::warn!(alert = %alert.id, %error, "drift alert could not start a retraining run");
                            format!("not started: {error}")
                        }
                    };
                    if let Err(error) = monitors.record_retrain(&alert, &outcome) {
                        tracing::warn!(%error, "cannot record an alert's retraining");
                    }
                });
            }
            if monitor.webhook_url.is_some() {
                let (monitors, webhook) = (monitors.clone(), webhook.clone());
                tokio::spawn(async move {
                    let outcome = match webhook.deliver(&monitor, &alert).await {
                        Ok(()) => "delivered".to_string(),
                        Err(error) => {
                            tracing::warn!(monitor = %monitor.name, %error, "webhook delivery failed");
                            error
                        }
                    };
                    if let Err(error) = monitors.record_delivery(&alert, &outcome) {
                        tracing::warn!(%error, "cannot record a webhook delivery");
                    }
                });
            }
        }
    }
}
