//! The agent's two phases: [`Agent::bind`] (data directory, last good model, HTTP socket) and
//! [`BoundAgent::run`] (MQTT session, updater, HTTP API, until shutdown).
//!
//! Binding needs no broker, so the API is up and serving the last good model before, and
//! regardless of, any MQTT connection. Binding also opens the telemetry buffer
//! (`{data_dir}/telemetry`); one that will not open is moved aside and started afresh, and the
//! loss is reported in the health string, never a failure to start.
//!
//! Shutdown goes: stop accepting HTTP and finish in-flight requests (each is counted in the
//! telemetry window), stop sampling and close the current window into the buffer (durably),
//! stop the updater and the session, write `state.json`, publish `offline` and DISCONNECT, and
//! poll the event loop until the DISCONNECT is out; each step is bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

use crate::boot::boot;
use crate::buffer::TelemetryBuffer;
use crate::config::AgentConfig;
use crate::error::{AgentError, AgentResult};
use crate::forward::{initial_status, Forwarder, TelemetryStatus, TELEMETRY_DIR};
use crate::inference::ModelSlot;
use crate::manifest::VerifiedManifest;
use crate::report::{unix_millis, Condition, Reporter};
use crate::serve::{router, ServeState};
use crate::store::{Store, StoredState};
use crate::telemetry::Recorder;
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
        let booted = boot(
            &store,
            &config.hub_public_key,
            &config.workspace,
            &config.device_id,
        )
        .await?;
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
        let (buffer, telemetry_status) = open_telemetry_buffer(&config, &reporter).await;
        let recorder = Recorder::new();
        if buffer.is_none() {
            // Nothing could store a window: record nothing rather than pile windows up.
            recorder.stop(unix_millis());
        }
        if let Some(served) = &booted.served {
            let problem = recorder.activate(
                &served.verified.manifest,
                served.baseline.as_ref(),
                served.model.signature(),
                unix_millis(),
            );
            if let Some(problem) = &problem {
                warn!(%problem, "the served model's drift baseline cannot be fully used");
            }
            reporter.set_condition(Condition::Baseline, problem);
        }
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
            recorder,
            telemetry_buffer: buffer,
            telemetry_status,
        })
    }
}

/// Opens `{data_dir}/telemetry`. An unreadable store is moved aside and started afresh (the
/// loss goes into the health string); one that cannot be created at all turns telemetry off
/// (also reported), and the agent still serves.
async fn open_telemetry_buffer(
    config: &AgentConfig,
    reporter: &Reporter,
) -> (Option<TelemetryBuffer>, watch::Sender<TelemetryStatus>) {
    let dir = config.data_dir.join(TELEMETRY_DIR);
    let buffer_config = config.telemetry.buffer;
    let opened = tokio::task::spawn_blocking(move || TelemetryBuffer::open(&dir, buffer_config))
        .await
        .map_err(|e| e.to_string())
        .and_then(|opened| opened.map_err(|e| e.to_string()));
    match opened {
        Ok((buffer, report)) => {
            if let Some((aside, reason)) = &report.moved_aside {
                warn!(moved_to = %aside.display(), %reason, "the telemetry buffer was unreadable and was started afresh");
                reporter.set_condition(
                    Condition::TelemetryStore,
                    Some(format!(
                        "telemetry buffer was unreadable and was started afresh (moved to {}): {reason}",
                        aside.display()
                    )),
                );
            }
            let status = initial_status(
                &config.telemetry,
                Some((&buffer, report.records, report.bytes)),
            );
            (Some(buffer), watch::Sender::new(status))
        }
        Err(error) => {
            warn!(%error, "cannot open the telemetry buffer; telemetry is off");
            reporter.set_condition(
                Condition::TelemetryStore,
                Some(format!("telemetry is off: {error}")),
            );
            (
                None,
                watch::Sender::new(initial_status(&config.telemetry, None)),
            )
        }
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
    /// The telemetry window accumulator, shared by the HTTP API, the updater and the forwarder.
    recorder: Recorder,
    /// `None` when the buffer could not be opened: telemetry is off.
    telemetry_buffer: Option<TelemetryBuffer>,
    telemetry_status: watch::Sender<TelemetryStatus>,
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
            recorder,
            telemetry_buffer,
            telemetry_status,
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

        // Stopped after the HTTP API, so the last answered request is in the last window.
        let telemetry_stop = CancellationToken::new();
        let status_rx = telemetry_status.subscribe();
        if let Some(buffer) = telemetry_buffer {
            let forwarder = Forwarder::new(
                &config.telemetry,
                config.data_dir.clone(),
                &config.device_id,
                boot_epoch,
                recorder.clone(),
                buffer,
                link.clone(),
                mqtt.telemetry_acks,
                reporter.clone(),
                telemetry_status,
            );
            tracker.spawn(
                forwarder
                    .run(telemetry_stop.clone())
                    .instrument(info_span!("telemetry")),
            );
        }

        let updater = Updater::new(
            &config,
            store.clone(),
            slot.clone(),
            reporter.clone(),
            recorder.clone(),
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
            recorder,
            telemetry: status_rx,
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
        // 2. Sampling stops; the telemetry forwarder closes the current window into the
        //    buffer (durably) and stops. 3. The updater and the session stop.
        telemetry_stop.cancel();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                grace_ms = SHUTDOWN_GRACE.as_millis() as u64,
                "background tasks did not stop in time"
            );
        }
        // 4. What is served is on disk.
        let state = persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Err(error) = store.blocking(move |store| store.write_state(&state)).await {
            warn!(%error, "cannot write state.json at shutdown");
        }
        // 5. Goodbye to the broker, then let the event loop send it.
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
