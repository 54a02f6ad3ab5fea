use std::pin::Pin;

use futures::Stream;
use shoal_drift::FeatureDrift;
use shoal_proto::telemetry::{self as pb, telemetry_service_server::TelemetryService};
use tonic::{Request, Response, Status};

use super::{authorize_in, status, workspace_or_default};
use shoal_fleet::monitor::{Monitor, Monitors, NewMonitor};
use shoal_fleet::telemetry::{status_name, DriftQuery, Telemetry};

pub struct TelemetryApi {
    pub telemetry: Telemetry,
    pub monitors: Monitors,
    /// Cancelled when the hub begins to shut down: open tails end then, so they do not hold
    /// the server's wait for calls in flight.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Checks `retrain:<run>` hooks of new monitors.
    pub retrainer: crate::retrain::Retrainer,
}

fn breach_to_wire(b: &shoal_fleet::monitor::Breach) -> pb::Breach {
    pb::Breach {
        feature: b.feature.clone(),
        metric: b.metric.name().into(),
        value: b.value,
        threshold: b.threshold,
    }
}

fn monitor_to_wire(m: &Monitor, with_secret: bool) -> pb::Monitor {
    pb::Monitor {
        workspace: m.workspace.clone(),
        name: m.name.clone(),
        model: m.model.clone(),
        reference: m.reference.clone(),
        devices: m.devices.clone(),
        thresholds: m
            .thresholds
            .iter()
            .map(|t| pb::MetricThreshold {
                metric: t.metric.name().into(),
                threshold: t.value,
            })
            .collect(),
        every_ms: m.every_ms,
        min_rows: m.min_rows,
        webhook_url: m.webhook_url.clone().unwrap_or_default(),
        created_at_ms: m.created_at_ms,
        webhook_secret: if with_secret {
            m.webhook_secret.clone()
        } else {
            String::new()
        },
        on_alert: m.on_alert.clone().unwrap_or_default(),
    }
}

pub fn alert_to_wire(a: &shoal_fleet::monitor::Alert) -> pb::Alert {
    pb::Alert {
        workspace: a.workspace.clone(),
        id: a.id.clone(),
        monitor: a.monitor.clone(),
        model: a.model.clone(),
        version: a.version,
        at_ms: a.at_ms,
        breaches: a.breaches.iter().map(breach_to_wire).collect(),
        webhook: a.webhook.clone(),
        on_alert: a.on_alert.clone().unwrap_or_default(),
        retrain: a.retrain.clone().unwrap_or_default(),
    }
}

fn feature_to_wire(f: &FeatureDrift, kind: &str) -> pb::FeatureDrift {
    pb::FeatureDrift {
        name: f.name.clone(),
        kind: kind.into(),
        rows: f.rows,
        nulls: f.nulls,
        nans: f.nans,
        below_min: f.below_min,
        above_max: f.above_max,
        psi: f.psi,
        js: f.js,
        ks: f.ks,
        wasserstein: f.wasserstein,
        chi_square: f.chi_square.as_ref().map(|c| c.statistic),
        status: status_name(f.status).into(),
    }
}

type WindowStream = Pin<Box<dyn Stream<Item = Result<pb::WindowEvent, Status>> + Send>>;

#[tonic::async_trait]
impl TelemetryService for TelemetryApi {
    async fn get_drift_report(
        &self,
        request: Request<pb::GetDriftReportRequest>,
    ) -> Result<Response<pb::DriftReport>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let query = DriftQuery {
            workspace: workspace_or_default(&r.workspace).to_string(),
            model: r.model.clone(),
            reference: r.reference.clone(),
            from_ms: r.since_ms,
            to_ms: r.until_ms,
            devices: r.devices.clone(),
            min_rows: r.min_rows,
        };
        let telemetry = self.telemetry.clone();
        let result = tokio::task::spawn_blocking(move || telemetry.drift_report(&query))
            .await
            .map_err(|e| Status::internal(format!("drift task: {e}")))?
            .map_err(status)?;
        let kinds = |report: &shoal_drift::DriftReport| {
            // The baseline's kinds are not in the report; numeric features have a KS value
            // whenever they have data, categorical ones a chi-square.
            report
                .features
                .iter()
                .map(|f| {
                    feature_to_wire(
                        f,
                        if f.chi_square.is_some() {
                            "categorical"
                        } else {
                            "numeric"
                        },
                    )
                })
                .collect::<Vec<_>>()
        };
        let (features, outputs, overall) = match &result.report {
            Some(report) => (
                kinds(report),
                report
                    .outputs
                    .iter()
                    .map(|f| feature_to_wire(f, "output"))
                    .collect(),
                status_name(report.status),
            ),
            None => (Vec::new(), Vec::new(), "not_enough_data"),
        };
        Ok(Response::new(pb::DriftReport {
            workspace: workspace_or_default(&r.workspace).to_string(),
            model: result.model,
            version: result.version,
            since_ms: result.since_ms,
            until_ms: result.until_ms,
            windows: result.windows,
            devices: result.devices,
            inferences: result.inferences,
            errors: result.errors.into_iter().collect(),
            features,
            outputs,
            status: overall.into(),
            min_rows: result.min_rows,
            note: result.note,
        }))
    }

    async fn create_monitor(
        &self,
        request: Request<pb::CreateMonitorRequest>,
    ) -> Result<Response<pb::Monitor>, Status> {
        authorize_in(
            request.extensions(),
            request
                .get_ref()
                .monitor
                .as_ref()
                .map_or("", |m| m.workspace.as_str()),
        )?;
        let m = request
            .into_inner()
            .monitor
            .ok_or_else(|| Status::invalid_argument("no monitor given"))?;
        self.retrainer
            .check_hook(workspace_or_default(&m.workspace), &m.on_alert)
            .map_err(status)?;
        let created = self
            .monitors
            .create(NewMonitor {
                workspace: workspace_or_default(&m.workspace).to_string(),
                name: m.name,
                model: m.model,
                reference: m.reference,
                devices: m.devices,
                thresholds: m
                    .thresholds
                    .into_iter()
                    .map(|t| (t.metric, t.threshold))
                    .collect(),
                every_ms: m.every_ms,
                min_rows: m.min_rows,
                webhook_url: m.webhook_url,
                on_alert: m.on_alert,
            })
            .map_err(status)?;
        Ok(Response::new(monitor_to_wire(&created, true)))
    }

    async fn get_monitor(
        &self,
        request: Request<pb::GetMonitorRequest>,
    ) -> Result<Response<pb::MonitorDetails>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let workspace = workspace_or_default(&r.workspace);
        let monitor = self.monitors.get(workspace, &r.name).map_err(status)?;
        let evaluations = self
            .monitors
            .evaluations(workspace, &r.name, 20)
            .map_err(status)?
            .iter()
            .map(|e| pb::Evaluation {
                monitor: e.monitor.clone(),
                at_ms: e.at_ms,
                since_ms: e.since_ms,
                until_ms: e.until_ms,
                version: e.version,
                windows: e.windows,
                inferences: e.inferences,
                status: e.status.clone(),
                breaches: e.breaches.iter().map(breach_to_wire).collect(),
                note: e.note.clone(),
            })
            .collect();
        Ok(Response::new(pb::MonitorDetails {
            monitor: Some(monitor_to_wire(&monitor, false)),
            evaluations,
        }))
    }

    async fn list_monitors(
        &self,
        request: Request<pb::ListMonitorsRequest>,
    ) -> Result<Response<pb::ListMonitorsResponse>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let monitors = self
            .monitors
            .list(workspace_or_default(&r.workspace))
            .map_err(status)?;
        Ok(Response::new(pb::ListMonitorsResponse {
            monitors: monitors.iter().map(|m| monitor_to_wire(m, false)).collect(),
        }))
    }

    async fn delete_monitor(
        &self,
        request: Request<pb::DeleteMonitorRequest>,
    ) -> Result<Response<pb::DeleteMonitorResponse>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        self.monitors
            .delete(workspace_or_default(&r.workspace), &r.name)
            .map_err(status)?;
        Ok(Response::new(pb::DeleteMonitorResponse {}))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let alerts = self
            .monitors
            .alerts(workspace_or_default(&r.workspace), &r.monitor)
            .map_err(status)?;
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: alerts.iter().map(alert_to_wire).collect(),
        }))
    }

    type TailTelemetryStream = WindowStream;

    async fn tail_telemetry(
        &self,
        request: Request<pb::TailTelemetryRequest>,
    ) -> Result<Response<WindowStream>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let workspace = workspace_or_default(&r.workspace).to_string();
        let mut events = self.telemetry.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    received = events.recv() => received,
                };
                let event = match received {
                    Ok(event) => event,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a telemetry tail fell behind");
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                if event.workspace != workspace
                    || (!r.device.is_empty() && event.window.device_id != r.device)
                {
                    continue;
                }
                let message = pb::WindowEvent {
                    workspace: event.workspace,
                    window: Some(event.window),
                    received_at_ms: event.received_at_ms,
                };
                if tx.send(Ok(message)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_device_telemetry(
        &self,
        request: Request<pb::GetDeviceTelemetryRequest>,
    ) -> Result<Response<pb::DeviceTelemetry>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let workspace = workspace_or_default(&r.workspace);
        let stats = self
            .telemetry
            .device(workspace, &r.device)
            .map_err(status)?;
        Ok(Response::new(pb::DeviceTelemetry {
            workspace: workspace.into(),
            device: r.device,
            windows: stats.windows,
            duplicates: stats.duplicates,
            inferences: stats.inferences,
            last_window_ms: stats.last_window_ms,
            dropped: Some(stats.dropped()),
            health: Some(stats.health()),
            rejected: stats.rejected.clone().into_iter().collect(),
        }))
    }
}
