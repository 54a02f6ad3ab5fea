//! The local HTTP API: inference, the model being served, and health.
//!
//! | route            | answer |
//! |------------------|--------|
//! | `POST /v1/infer` | `{"model","version","outputs":{name:{"shape","dtype","data"}}}` |
//! | `GET /v1/model`  | `{"model","version","digest","size_bytes","signature","previous","update","health","boot_epoch"}` |
//! | `GET /healthz`   | `{"status":"ok","model":{"model","version","digest"},"mqtt_connected","health"}`, 200 even without a model |
//!
//! Every error is JSON, `{"error": "..."}`, with a message that names the problem: 400 for a
//! request the model cannot take (malformed JSON, unknown field or input, wrong shape, dtype or
//! length), 413 for a body over [`MAX_BODY_BYTES`], 503 before any model is active, 500 when
//! tract fails. Inference runs on the blocking pool, and a panic there is a 500, not a crash.

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

use crate::inference::{infer, InferError, ModelSlot};
use crate::report::{phase_name, Reporter};

/// The largest inference request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct ServeState {
    pub slot: ModelSlot,
    pub reporter: Reporter,
    /// Whether the MQTT connection is up, for `/healthz`.
    pub mqtt_connected: watch::Receiver<bool>,
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
    match infer(served, request.inputs).await {
        Ok(response) => json_response(StatusCode::OK, &response),
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
