//! `FleetError`, what fleet (devices, deployments, telemetry, monitors) operations return, and its [`ErrorCode`] for the hub's adapters.

use shoal_store::{
    ErrorCode, InvalidName, IoError, RandomSourceError, ServiceError, StoreError, WorkspaceError,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FleetError {
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
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Random(#[from] RandomSourceError),
    #[error(transparent)]
    Registry(#[from] shoal_registry::RegistryError),
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    #[error("{0}")]
    Internal(String),
}

pub type FleetResult<T> = Result<T, FleetError>;

impl FleetError {
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> FleetError {
        FleetError::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub fn already_exists(kind: &'static str, name: impl Into<String>) -> FleetError {
        FleetError::AlreadyExists {
            kind,
            name: name.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> FleetError {
        FleetError::InvalidArgument(message.into())
    }
}

impl ServiceError for FleetError {
    fn error_code(&self) -> ErrorCode {
        match self {
            FleetError::NotFound { .. } => ErrorCode::NotFound,
            FleetError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            FleetError::InvalidArgument(_) | FleetError::InvalidName(_) => {
                ErrorCode::InvalidArgument
            }
            FleetError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            FleetError::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            FleetError::Workspace(e) => e.error_code(),
            FleetError::Registry(e) => e.error_code(),
            FleetError::Storage(_)
            | FleetError::Io(_)
            | FleetError::Random(_)
            | FleetError::Publish(_)
            | FleetError::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// Lets a domain's error travel out of [`shoal_store::WorkspaceContents`].
impl From<FleetError> for WorkspaceError {
    fn from(error: FleetError) -> WorkspaceError {
        match error {
            FleetError::Workspace(e) => e,
            other => WorkspaceError::contents(other),
        }
    }
}
