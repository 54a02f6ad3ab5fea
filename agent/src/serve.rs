//! The local HTTP API: inference, the model being served, and health.
//!
//! | route            | answer |
//! |------------------|--------|
//! | `POST /v1/infer` | `{"model","version","outputs":{name:{"shape","dtype","data"}}}` |
//! | `GET /v1/model`  | `{"model","version","digest","size_bytes","signature","previous","update","health","boot_epoch","telemetry"}` |
//! | `GET /healthz`   | `{"status":"ok","model":{"model","version","digest"},"mqtt_connected","health"}`, 200 even without a model |
//!
//! Every error is JSON, `{"error": "..."}`, with a message that names the problem: 400 for a
//! request the model cannot take (malformed JSON, unknown field or input, wrong shape, dtype or
//! length), 413 for a body over [`MAX_BODY_BYTES`], 503 before any model is active, 500 when
//! tract fails. Inference runs on the blocking pool, and a panic there is a 500, not a crash.
//!
//! Every request is counted in the current telemetry window once it is answered: the inference
//! with its latency (from before the model runs to after), or the error by kind (4xx
//! `bad_input`, 500 `inference`, 503 `no_model`). `telemetry` in `/v1/model` shows the buffer:
//! `{"enabled","window_ms","buffered_records","buffered_bytes","in_flight","last_closed_seq",
//! "dropped":{…},"open_window":{"start_ms","inferences","errors"},"errors_without_model"}`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use shoal_model::{InferRequest, IoSignature, ModelError};
use shoal_proto::device::ActiveModel;
use tokio::sync::watch;
use tracing::{debug, error, warn};

use crate::forward::TelemetryStatus;
use crate::inference::{infer, InferError, ModelSlot};
use crate::report::{phase_name, Reporter};
use crate::telemetry::{ErrorKind, OpenWindowView, Recorder};

/// The largest inference request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct ServeState {
    pub slot: ModelSlot,
    pub reporter: Reporter,
    /// Whether the MQTT connection is up, for `/healthz`.
    pub mqtt_connected: watch::Receiver<bool>,
    /// Counts every request into the current telemetry window.
    pub recorder: Recorder,
    /// The telemetry buffer, for `/v1/model`.
    pub telemetry: watch::Receiver<TelemetryStatus>,
}

/// The API's routes.
pub fn router(state: ServeState) -> Router {
    Router::new()
        .route("/v1/infer", post(infer_handler))
        .route("/v1/model", get(model_handler))
        .route("/healthz", get(health_handler))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn infer_handler(
    State(state): State<ServeState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let response = answer_inference(&state, body).await;
    let error_kind = match response.status() {
        status if status.is_success() => None,
        StatusCode::SERVICE_UNAVAILABLE => Some(ErrorKind::NoModel),
        status if status.is_client_error() => Some(ErrorKind::BadInput),
        _ => Some(ErrorKind::Inference),
    };
    if let Some(kind) = error_kind {
        state.recorder.record_error(kind);
    }
    response
}

/// Answers one inference request and, when the model ran, records it in the telemetry window.
/// (Outputs that JSON cannot carry, non-finite floats, are then a 500 as well: the request is
/// both an inference and an `inference` error, as it was for the model and for the client.)
async fn answer_inference(state: &ServeState, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body is larger than {} MiB",
                    MAX_BODY_BYTES / (1024 * 1024)
                ),
            )
        }
        Err(rejection) => {
            return error_response(
                rejection.status(),
                format!("cannot read the request body: {}", rejection.body_text()),
            )
        }
    };
    let request: InferRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            let message = match error.classify() {
                serde_json::error::Category::Data => format!("invalid request: {error}"),
                _ => format!("malformed JSON: {error}"),
            };
            return error_response(StatusCode::BAD_REQUEST, message);
        }
    };
    let Some(served) = state.slot.current() else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "no model is active yet");
    };
    let inputs = Arc::new(request.inputs);
    let started = Instant::now();
    match infer(served.clone(), inputs.clone()).await {
        Ok(response) => {
            state.recorder.record_inference(
                served.digest(),
                &inputs,
                &response.outputs,
                started.elapsed(),
            );
            json_response(StatusCode::OK, &response)
        }
        Err(InferError::Model(ModelError::BadInput(message))) => {
            debug!(%message, "refused an inference request");
            error_response(StatusCode::BAD_REQUEST, message)
        }
        Err(InferError::Model(model_error)) => {
            warn!(error = %model_error, "inference failed");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, model_error.to_string())
        }
        Err(task_error @ InferError::Task(_)) => {
            error!(error = %task_error, "an inference task failed");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, task_error.to_string())
        }
    }
}

/// A model as the API names it (the fields of the protobuf `ActiveModel`).
#[derive(Debug, Serialize)]
struct ModelRef {
    model: String,
    version: u32,
    digest: String,
}

impl From<ActiveModel> for ModelRef {
    fn from(model: ActiveModel) -> ModelRef {
        ModelRef {
            model: model.model,
            version: model.version,
            digest: model.digest,
        }
    }
}

#[derive(Debug, Serialize)]
struct UpdateView {
    revision: u64,
    deployment: String,
    model: String,
    version: u32,
    digest: String,
    phase: &'static str,
    error: String,
    received_bytes: u64,
    total_bytes: u64,
    resumed_from: u64,
}

/// `GET /v1/model`: the active model's fields at the top level (all `null` without one), then
/// the rollback candidate and the update in progress.
#[derive(Debug, Serialize)]
struct ModelView {
    model: Option<String>,
    version: Option<u32>,
    digest: Option<String>,
    size_bytes: Option<u64>,
    signature: Option<IoSignature>,
    previous: Option<ModelRef>,
    update: Option<UpdateView>,
    health: String,
    boot_epoch: u64,
    telemetry: TelemetryView,
}

/// The telemetry buffer as `/v1/model` shows it.
#[derive(Debug, Serialize)]
struct TelemetryView {
    #[serde(flatten)]
    status: TelemetryStatus,
    /// What the window being counted holds so far (`null` before any model).
    open_window: Option<OpenWindowView>,
    /// 503s answered before any model was active: no window (they belong to a model) counts
    /// them.
    errors_without_model: u64,
}

async fn model_handler(State(state): State<ServeState>) -> Response {
    let active = state.slot.current();
    let (_, previous) = state.reporter.models();
    let update = state.reporter.update_status().map(|u| UpdateView {
        revision: u.revision,
        deployment: u.deployment,
        model: u.model,
        version: u.version,
        digest: u.digest,
        phase: phase_name(u.phase),
        error: u.error,
        received_bytes: u.received_bytes,
        total_bytes: u.total_bytes,
        resumed_from: u.resumed_from,
    });
    let view = ModelView {
        model: active.as_ref().map(|served| served.name().to_string()),
        version: active.as_ref().map(|served| served.version()),
        digest: active.as_ref().map(|served| served.digest().to_string()),
        size_bytes: active
            .as_ref()
            .map(|served| served.verified.manifest.size_bytes),
        signature: active
            .as_ref()
            .map(|served| served.model.signature().clone()),
        previous: previous.map(ModelRef::from),
        update,
        health: state.reporter.health(),
        boot_epoch: state.reporter.boot_epoch(),
        telemetry: TelemetryView {
            status: state.telemetry.borrow().clone(),
            open_window: state.recorder.open_window(),
            errors_without_model: state.recorder.errors_without_model(),
        },
    };
    json_response(StatusCode::OK, &view)
}

#[derive(Debug, Serialize)]
struct HealthView {
    status: &'static str,
    model: Option<ModelRef>,
    mqtt_connected: bool,
    health: String,
}

async fn health_handler(State(state): State<ServeState>) -> Response {
    let model = state.slot.current().map(|served| ModelRef {
        model: served.name().to_string(),
        version: served.version(),
        digest: served.digest().to_string(),
    });
    let view = HealthView {
        status: "ok",
        model,
        mqtt_connected: *state.mqtt_connected.borrow(),
        health: state.reporter.health(),
    };
    json_response(StatusCode::OK, &view)
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(
        status,
        &ErrorBody {
            error: message.into(),
        },
    )
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(error) => {
            // Only non-finite floats in model outputs can get here.
            error!(%error, "cannot serialize a response");
            let fallback = format!(
                "{{\"error\":\"cannot serialize the response: {}\"}}",
                json_escape(&error.to_string())
            );
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "application/json")],
                fallback,
            )
                .into_response()
        }
    }
}

fn json_escape(text: &str) -> String {
    serde_json::to_string(text)
        .map(|quoted| quoted[1..quoted.len() - 1].to_string())
        .unwrap_or_default()
}
