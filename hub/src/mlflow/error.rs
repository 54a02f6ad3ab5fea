//! MLflow's error codes, and the one place domain errors become them.
//!
//! MLflow clients read `{"error_code": "...", "message": "..."}` and decide from the HTTP
//! status whether to retry (429 and 5xx are retried), so client mistakes must never be 5xx.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

use shoal_store::{ErrorCode, ServiceError};

/// An error as the MLflow REST API reports it: one variant per MLflow error code Shoal sends.
#[derive(Debug, Error)]
pub enum MlflowError {
    /// `RESOURCE_DOES_NOT_EXIST` (404): an unknown experiment, run, model, artifact or alias.
    #[error("{0}")]
    NotFound(String),
    /// `INVALID_PARAMETER_VALUE` (400): a missing or malformed field, or a refused value.
    #[error("{0}")]
    InvalidParameter(String),
    /// `RESOURCE_ALREADY_EXISTS` (400): a taken experiment or model name.
    #[error("{0}")]
    AlreadyExists(String),
    /// `RESOURCE_EXHAUSTED` (429): a hub limit was hit.
    #[error("{0}")]
    Exhausted(String),
    /// `ENDPOINT_NOT_FOUND` (404): an MLflow endpoint Shoal does not serve.
    #[error("{0}")]
    EndpointNotFound(String),
    /// `UNAUTHENTICATED` (401): no bearer token, or not the hub's.
    #[error("{0}")]
    Unauthenticated(String),
    /// `PERMISSION_DENIED` (403): a valid token whose role does not reach the call.
    #[error("{0}")]
    PermissionDenied(String),
    /// `INTERNAL_ERROR` (500): the message is logged, the client gets a generic one.
    #[error("{0}")]
    Internal(String),
}

/// What MLflow handlers return.
pub type MlflowResult<T> = Result<T, MlflowError>;

impl MlflowError {
    /// MLflow's name for the error code.
    pub fn code(&self) -> &'static str {
        match self {
            MlflowError::NotFound(_) => "RESOURCE_DOES_NOT_EXIST",
            MlflowError::InvalidParameter(_) => "INVALID_PARAMETER_VALUE",
            MlflowError::AlreadyExists(_) => "RESOURCE_ALREADY_EXISTS",
            MlflowError::Exhausted(_) => "RESOURCE_EXHAUSTED",
            MlflowError::EndpointNotFound(_) => "ENDPOINT_NOT_FOUND",
            MlflowError::Unauthenticated(_) => "UNAUTHENTICATED",
            MlflowError::PermissionDenied(_) => "PERMISSION_DENIED",
            MlflowError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status MLflow pairs with the code (its `ERROR_CODE_TO_HTTP_STATUS`).
    pub fn status(&self) -> StatusCode {
        match self {
            MlflowError::NotFound(_) | MlflowError::EndpointNotFound(_) => StatusCode::NOT_FOUND,
            MlflowError::InvalidParameter(_) | MlflowError::AlreadyExists(_) => {
                StatusCode::BAD_REQUEST
            }
            MlflowError::Exhausted(_) => StatusCode::TOO_MANY_REQUESTS,
            MlflowError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            MlflowError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            MlflowError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The one place an access refusal becomes an MLflow error.
    pub fn refused(refusal: shoal_access::Refusal) -> MlflowError {
        match refusal {
            shoal_access::Refusal::Unauthenticated(m) => MlflowError::Unauthenticated(m),
            shoal_access::Refusal::PermissionDenied(m) => MlflowError::PermissionDenied(m),
            shoal_access::Refusal::Internal(m) => MlflowError::Internal(m),
        }
    }

    /// A missing or malformed request field.
    pub fn field(name: &str, problem: impl std::fmt::Display) -> MlflowError {
        MlflowError::InvalidParameter(format!("field '{name}': {problem}"))
    }
}

/// The one place a domain error becomes an MLflow error.
impl<E: ServiceError> From<E> for MlflowError {
    fn from(error: E) -> MlflowError {
        let message = error.to_string();
        match error.error_code() {
            ErrorCode::NotFound => MlflowError::NotFound(message),
            ErrorCode::AlreadyExists => MlflowError::AlreadyExists(message),
            // A deleted run or a similar state conflict is the client's to fix: MLflow's
            // INVALID_STATE would be a 500, which its client retries for minutes.
            ErrorCode::InvalidArgument | ErrorCode::FailedPrecondition => {
                MlflowError::InvalidParameter(message)
            }
            ErrorCode::ResourceExhausted => MlflowError::Exhausted(message),
            ErrorCode::Internal => MlflowError::Internal(message),
        }
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let message = match &self {
            MlflowError::Internal(detail) => {
                tracing::error!(error = %detail, "mlflow api internal error");
                "internal error in the Shoal hub; see its log".to_string()
            }
            other => other.to_string(),
        };
        let body = serde_json::json!({ "error_code": self.code(), "message": message });
        (
            self.status(),
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}
