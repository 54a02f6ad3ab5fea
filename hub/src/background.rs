//! The hub's background loops: telemetry retention and drift monitor evaluation. Each runs
//! until its cancellation token fires; the hub spawns them in [`crate::BoundHub::run`].

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use shoal_fleet::monitor::{AlertSink, Monitors, WebhookSink};
use shoal_fleet::{DevicePublisher, Telemetry};
use shoal_store::now_ms;
use tokio_util::sync::CancellationToken;

use crate::retrain::Retrainer;

/// How often raw telemetry past its retention is deleted.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// How often the hub looks for monitors whose period has come.
const MONITOR_TICK: Duration = Duration::from_millis(100);

/// Deletes raw telemetry windows older than `retention`, every [`RETENTION_INTERVAL`], until
/// `cancel`. Hourly roll-ups stay, so drift reports over old ranges stay exact.
pub async fn run_retention(telemetry: Telemetry, retention: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let telemetry = telemetry.clone();
        match tokio::task::spawn_blocking(move || telemetry.enforce_retention(now_ms(), retention))
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
}

/// Evaluates due monitors until `cancel`. Each alert is published on the workspace's events
/// topic, handed to the [`Retrainer`], and POSTed to the monitor's webhook.
pub async fn run_monitors(
    monitors: Monitors,
    publisher: Arc<dyn DevicePublisher>,
    retrainer: Retrainer,
    cancel: CancellationToken,
) {
    let webhook = Arc::new(WebhookSink::new());
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
                    crate::api::alert_to_wire(&alert),
                )),
            };
            if let Err(error) = publisher
                .publish_event(&alert.workspace, event.encode_to_vec())
                .await
            {
                tracing::warn!(%error, "cannot publish an alert event");
            }
            retrainer.on_alert(&monitor, &alert);
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
