//! The MLflow-compatible tracking REST API (work in progress).

use axum::Router;

use crate::http::HttpState;

/// Routes of the MLflow REST API, under `/api/2.0/mlflow/` and `/api/2.0/mlflow-artifacts/`.
pub fn router(_state: HttpState) -> Router<HttpState> {
    Router::new()
}
