//! The hub's HTTP side: health for load balancers and people, and the MLflow-compatible
//! tracking API (see [`crate::mlflow`]). (The dashboard and `/metrics` join it later.)

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::mlflow::MlflowState;

pub fn router(mqtt_connected: watch::Receiver<bool>, mlflow: MlflowState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(mqtt_connected)
        .merge(crate::mlflow::router().with_state(mlflow))
}

async fn healthz(State(mqtt_connected): State<watch::Receiver<bool>>) -> impl IntoResponse {
    let connected = *mqtt_connected.borrow();
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
