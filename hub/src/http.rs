//! The hub's HTTP side: health for load balancers and people, and the MLflow-compatible
//! tracking API (see [`crate::mlflow`]). (The dashboard and `/metrics` join it later.)

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::auth::AdminToken;
use shoal_registry::registry::Registry;
use shoal_store::artifacts::ArtifactStore;
use shoal_tracking::dataset::Datasets;
use shoal_tracking::tracking::Tracking;
use shoal_tracking::Jobs;

/// What the HTTP handlers reach.
#[derive(Clone)]
pub struct HttpState {
    pub mqtt_connected: watch::Receiver<bool>,
    /// Checks bearer tokens on the tracking API.
    pub admin: Arc<AdminToken>,
    pub tracking: Tracking,
    pub registry: Registry,
    pub datasets: Datasets,
    /// Registers model versions from run artifacts (the one path shared with gRPC).
    pub jobs: Jobs,
    pub artifacts: ArtifactStore,
    /// Largest artifact accepted in one upload.
    pub max_artifact_bytes: u64,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(crate::mlflow::router(state.clone()))
        .with_state(state)
}

async fn healthz(State(state): State<HttpState>) -> impl IntoResponse {
    let connected = *state.mqtt_connected.borrow();
    let body = serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "mqtt_connected": connected,
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
}
