//! The agent's two phases: [`Agent::bind`] (data directory, last good model, HTTP socket) and
//! [`BoundAgent::run`] (MQTT session, updater, HTTP API, until shutdown).
//!
//! Binding needs no broker, so the API is up and serving the last good model before, and
//! regardless of, any MQTT connection. Shutdown goes: stop accepting HTTP and finish in-flight
//! requests, stop the updater and the session, write `state.json`, publish `offline` and
//! DISCONNECT, and poll the event loop until the DISCONNECT is out; each step is bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

use crate::boot::boot;
use crate::config::AgentConfig;
use crate::error::{AgentError, AgentResult};
use crate::inference::ModelSlot;
use crate::manifest::VerifiedManifest;
use crate::report::Reporter;
use crate::serve::{router, ServeState};
use crate::store::{Store, StoredState};
use crate::update::Updater;

/// How long shutdown waits for in-flight HTTP requests and for the background tasks.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown polls the MQTT event loop for the DISCONNECT to go out.
pub const MQTT_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// The device agent.
#[derive(Debug)]
pub struct Agent;

impl Agent {
    /// Opens the data directory, boots into the last good model, records the new boot epoch and
    /// binds the HTTP listener. Needs no broker.
    ///
    /// # Errors
    /// `Store` when the data directory cannot be created or opened, `BindHttp` when the listen
    /// address cannot be bound. A missing, corrupt or unverifiable model is not an error: the
    /// agent starts without it and says so in its health.
    pub async fn bind(config: AgentConfig) -> AgentResult<BoundAgent> {
        let root = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&root))
            .await
            .map_err(|e| AgentError::Store(crate::store::StoreError::Task(e.to_string())))??;
        let booted = boot(&store, &config.hub_public_key, &config.workspace).await?;
        let boot_epoch = booted.state.boot_epoch;
        let mut health = booted.health;
        let state = booted.state.clone();
        if let Err(error) = store.blocking(move |store| store.write_state(&state)).await {
            warn!(%error, "cannot record the boot in state.json");
            health = format!("{health}; cannot write state.json: {error}");
        }

        let listener = TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| AgentError::BindHttp {
                addr: config.http_listen,
                source,
            })?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| AgentError::BindHttp {
                addr: config.http_listen,
                source,
            })?;

        let reporter = Reporter::new(&config.device_id, boot_epoch, health);
        reporter.set_models(
            booted.served.as_ref().map(|s| s.verified.active_model()),
            booted.previous.as_ref().map(VerifiedManifest::active_model),
        );
        match &booted.served {
            Some(served) => info!(
                %http_addr,
                boot_epoch,
                model = %served.name(),
                version = served.version(),
                digest = %served.digest(),
                "agent bound; serving the last good model"
            ),
            None => info!(%http_addr, boot_epoch, "agent bound; no model yet"),
        }
        Ok(BoundAgent {
            config,
            store,
            listener,
            http_addr,
            slot: ModelSlot::new(booted.served),
            previous: booted.previous,
            persisted: Arc::new(Mutex::new(booted.state)),
            reporter,
        })
    }
}

/// An agent with its model loaded and its HTTP socket bound, ready to run.
#[derive(Debug)]
pub struct BoundAgent {
    config: AgentConfig,
    store: Store,
    listener: TcpListener,
    /// The bound address (the configured port may be 0).
    http_addr: SocketAddr,
    slot: ModelSlot,
    previous: Option<VerifiedManifest>,
    /// `state.json` as last written; the updater changes it, shutdown writes it.
    persisted: Arc<Mutex<StoredState>>,
    reporter: Reporter,
}

impl BoundAgent {
    /// The address the local HTTP API listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// This run's boot epoch (one more than the last run's).
    pub fn boot_epoch(&self) -> u64 {
        self.reporter.boot_epoch()
    }

    /// Serves HTTP, keeps the MQTT session and applies desired states until `shutdown`
    /// completes, then shuts down in order.
    ///
    /// # Errors
    /// `Http` when the HTTP server stops on its own; the agent then shuts down as if asked.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> AgentResult<()> {
        let BoundAgent {
            config,
            store,
            listener,
            http_addr,
            slot,
            previous,
            persisted,
            reporter,
        } = self;
        let boot_epoch = reporter.boot_epoch();
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();

        let mqtt = crate::mqtt::connect(&config, boot_epoch);
        let link = mqtt.link.clone();
        let mqtt_stop = CancellationToken::new();
        let span = info_span!("mqtt", device = %config.device_id, broker = %format!("{}:{}", config.mqtt.host, config.mqtt.port));
        let mut driver = tokio::spawn(mqtt.driver.run(mqtt_stop.clone()).instrument(span.clone()));
        tracker.spawn(
            mqtt.announcer
                .run(reporter.clone(), cancel.clone())
                .instrument(span),
        );

        let updater = Updater::new(
            &config,
            store.clone(),
            slot.clone(),
            reporter.clone(),
            mqtt.link,
            previous,
            persisted.clone(),
        );
        tracker.spawn(
            updater
                .run(mqtt.inbox, cancel.clone())
                .instrument(info_span!("update")),
        );

        let app = router(ServeState {
            slot,
            reporter: reporter.clone(),
            mqtt_connected: link.connected.clone(),
        });
        let http_shutdown = cancel.clone().cancelled_owned();
        let mut http = tokio::spawn(
            async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(http_shutdown)
                    .await
            }
            .instrument(info_span!("http", %http_addr)),
        );
        tracker.close();
        info!(%http_addr, "agent running");

        let mut result = Ok(());
        let mut http_done = false;
        tokio::select! {
            _ = shutdown => info!("shutting down"),
            ended = &mut http => {
                http_done = true;
                let message = match ended {
                    Ok(Ok(())) => "it ended on its own".to_string(),
                    Ok(Err(error)) => error.to_string(),
                    Err(error) => error.to_string(),
                };
                warn!(error = %message, "the http server stopped; shutting down");
                result = Err(AgentError::Http(message));
            }
        }
        cancel.cancel();

        // 1. No new HTTP requests; in-flight ones finish.
        if !http_done
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut http)
                .await
                .is_err()
        {
            warn!(
                grace_ms = SHUTDOWN_GRACE.as_millis() as u64,
                "in-flight http requests did not finish in time"
            );
            http.abort();
        }
        // 2. The updater and the session stop.
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                grace_ms = SHUTDOWN_GRACE.as_millis() as u64,
                "background tasks did not stop in time"
            );
        }
        // 3. What is served is on disk.
        let state = persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Err(error) = store.blocking(move |store| store.write_state(&state)).await {
            warn!(%error, "cannot write state.json at shutdown");
        }
        // 4. Goodbye to the broker, then let the event loop send it.
        link.say_goodbye(boot_epoch).await;
        mqtt_stop.cancel();
        if tokio::time::timeout(MQTT_DRAIN_TIMEOUT, &mut driver)
            .await
            .is_err()
        {
            warn!("the mqtt event loop did not end in time");
            driver.abort();
        }
        info!("agent stopped");
        result
    }
}
