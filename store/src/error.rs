//! What every domain crate's error has in common: a gRPC-independent [`ErrorCode`], the
//! [`ServiceError`] trait the hub's adapters map from, and the name check every domain uses.
//!
//! Each domain crate has its own error enum (`RegistryError`, `TrackingError`, `FleetError`,
//! …). The hub maps any [`ServiceError`] to a gRPC status in one function and to an MLflow
//! error code in one other; nothing below the hub knows about tonic or HTTP.

use thiserror::Error;

/// The transport-independent class of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    FailedPrecondition,
    ResourceExhausted,
    Internal,
}

/// An error a service returns to its callers: it knows its [`ErrorCode`].
pub trait ServiceError: std::error::Error + Send + Sync + 'static {
    fn error_code(&self) -> ErrorCode;
}

/// A name that cannot become an MQTT topic level or a storage key part.
#[derive(Debug, Clone, Error)]
#[error("{field} '{name}' is not valid: use 1 to 64 letters, digits, '-', '_' or '.'")]
pub struct InvalidName {
    pub field: String,
    pub name: String,
}

impl ServiceError for InvalidName {
    fn error_code(&self) -> ErrorCode {
        ErrorCode::InvalidArgument
    }
}

/// Checks a name that becomes an MQTT topic level or a storage key part.
///
/// # Errors
/// [`InvalidName`] naming the field and the allowed characters.
pub fn check_name(field: &str, name: &str) -> Result<(), InvalidName> {
    if shoal_proto::topics::is_valid_segment(name) {
        Ok(())
    } else {
        Err(InvalidName {
            field: field.into(),
            name: name.into(),
        })
    }
}

/// An I/O failure with what was being done when it happened (`"write artifact"`, `"open
/// dataset /data/…"`), so the message says what failed and not only the OS's reason.
#[derive(Debug, Error)]
#[error("{what}: {source}")]
pub struct IoError {
    pub what: String,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// A closure for `map_err` that names the operation.
    pub fn with(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IoError {
        let what = what.into();
        move |source| IoError { what, source }
    }

    /// Whether the OS reported the file or blob as missing.
    pub fn is_not_found(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::NotFound
    }
}

impl ServiceError for IoError {
    fn error_code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}
