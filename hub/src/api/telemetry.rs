use std::pin::Pin;

use futures::Stream;
use shoal_drift::{DriftStatus, FeatureDrift};
use shoal_proto::telemetry::{self as pb, telemetry_service_server::TelemetryService};
use tonic::{Request, Response, Status};

use super::{status, workspace_or_default};
use crate::telemetry::Telemetry;

pub struct TelemetryApi {
    pub telemetry: Telemetry,
}

pub(crate) fn status_name(status: DriftStatus) -> &'static str {
    match status {
        DriftStatus::None => "none",
        DriftStatus::Moderate => "moderate",
        DriftStatus::Significant => "significant",
        DriftStatus::NotEnoughData => "not_enough_data",
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
        let r = request.into_inner();
        let workspace = workspace_or_default(&r.workspace).to_string();
        let telemetry = self.telemetry.clone();
        let result = tokio::task::spawn_blocking(move || {
            telemetry.drift_report(
                &workspace,
                &r.model,
                &r.reference,
                r.since_ms,
                r.until_ms,
                &r.devices,
                r.min_rows,
            )
        })
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

    type TailTelemetryStream = WindowStream;

    async fn tail_telemetry(
        &self,
        request: Request<pb::TailTelemetryRequest>,
    ) -> Result<Response<WindowStream>, Status> {
        let r = request.into_inner();
        let workspace = workspace_or_default(&r.workspace).to_string();
        let mut events = self.telemetry.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
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
        }))
    }
}
