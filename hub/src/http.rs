//! The hub's HTTP side: health for load balancers and people. (The dashboard, the
//! MLflow-compatible REST API and `/metrics` join it later.)

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

#[derive(Clone)]
struct HttpState {
    mqtt_connected: watch::Receiver<bool>,
}

pub fn router(mqtt_connected: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(HttpState { mqtt_connected })
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
