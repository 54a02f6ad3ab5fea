//! The hub's error type and its single mapping to gRPC status codes.

use thiserror::Error;

/// What went wrong in a hub operation. The `api` layer maps each variant to one gRPC code in
/// [`HubError::code`]; nothing else in the hub knows about tonic.
#[derive(Debug, Error)]
pub enum HubError {
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} '{name}' already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StoreError),
    #[error("artifact store: {0}")]
    Artifacts(#[from] std::io::Error),
    #[error("{0}")]
    Internal(String),
}

pub type HubResult<T> = Result<T, HubError>;

/// The gRPC-independent class of an error; `api::status` turns it into a `tonic::Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    FailedPrecondition,
    ResourceExhausted,
    Internal,
}

impl HubError {
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> HubError {
        HubError::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub fn already_exists(kind: &'static str, name: impl Into<String>) -> HubError {
        HubError::AlreadyExists {
            kind,
            name: name.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> HubError {
        HubError::InvalidArgument(message.into())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::NotFound { .. } => ErrorCode::NotFound,
            HubError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            HubError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            HubError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            HubError::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            HubError::Storage(_) | HubError::Artifacts(_) | HubError::Internal(_) => {
                ErrorCode::Internal
            }
        }
    }
}

/// Checks a name that becomes an MQTT topic level or a storage key part.
///
/// # Errors
/// `InvalidArgument` naming the field and the allowed characters.
pub fn check_name(field: &str, name: &str) -> HubResult<()> {
    if shoal_proto::topics::is_valid_segment(name) {
        Ok(())
    } else {
        Err(HubError::invalid(format!(
            "{field} '{name}' is not valid: use 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}
