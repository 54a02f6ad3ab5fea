//! `RegistryError`, what registry operations return, and its [`ErrorCode`] for the hub's adapters.

use shoal_store::{
    ErrorCode, InvalidName, IoError, RandomSourceError, ServiceError, StoreError, WorkspaceError,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RegistryError {
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
    #[error("{0}")]
    Internal(String),
}

pub type RegistryResult<T> = Result<T, RegistryError>;

impl RegistryError {
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> RegistryError {
        RegistryError::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub fn already_exists(kind: &'static str, name: impl Into<String>) -> RegistryError {
        RegistryError::AlreadyExists {
            kind,
            name: name.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> RegistryError {
        RegistryError::InvalidArgument(message.into())
    }
}

impl ServiceError for RegistryError {
    fn error_code(&self) -> ErrorCode {
        match self {
            RegistryError::NotFound { .. } => ErrorCode::NotFound,
            RegistryError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            RegistryError::InvalidArgument(_) | RegistryError::InvalidName(_) => {
                ErrorCode::InvalidArgument
            }
            RegistryError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            RegistryError::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            RegistryError::Workspace(e) => e.error_code(),
            RegistryError::Storage(_)
            | RegistryError::Io(_)
            | RegistryError::Random(_)
            | RegistryError::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// Lets a domain's error travel out of [`shoal_store::WorkspaceContents`].
impl From<RegistryError> for WorkspaceError {
    fn from(error: RegistryError) -> WorkspaceError {
        match error {
            RegistryError::Workspace(e) => e,
            other => WorkspaceError::contents(other),
        }
    }
}
