//! `HubError`: why the hub could not start or stopped, with what failed and, where there is
//! one, the way out.
//!
//! Domain errors keep their own types (`RegistryError`, `TrackingError`, `FleetError`, …) and
//! reach callers through the hub's `api::status` (gRPC) and `mlflow::MlflowError`
//! (HTTP); this type is only for starting and running the hub itself.

use std::net::SocketAddr;

use shoal_store::{ErrorCode, IoError, ServiceError, StoreError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HubError {
    /// The configuration is unusable; the message names the setting.
    #[error("{0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot bind the {what} listener to {addr}: {source}{hint}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
        /// What to do about it, with a leading separator (empty when there is nothing to say).
        hint: String,
    },
    #[error("cannot open the metadata store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{0}")]
    Domain(Box<dyn ServiceError>),
    #[error("{0}")]
    Internal(String),
}

pub type HubResult<T> = Result<T, HubError>;

impl HubError {
    /// Wraps a domain crate's error met while starting (the default workspace, keys).
    pub fn domain(error: impl ServiceError) -> HubError {
        HubError::Domain(Box::new(error))
    }

    /// A bind failure, with advice when the address is taken.
    pub fn bind(what: &'static str, addr: SocketAddr, source: std::io::Error) -> HubError {
        let hint = match (source.kind(), what) {
            (std::io::ErrorKind::AddrInUse, "MQTT") => format!(
                "; another broker (Mosquitto?) may hold port {}: pass --mqtt-listen with another \
                 address (127.0.0.1:0 picks a free port), or --mqtt-url to use that broker",
                addr.port()
            ),
            (std::io::ErrorKind::AddrInUse, "gRPC") => {
                "; another hub may be running: pass --grpc-listen with another address".into()
            }
            (std::io::ErrorKind::AddrInUse, "HTTP") => {
                "; another hub may be running: pass --http-listen with another address".into()
            }
            _ => String::new(),
        };
        HubError::Bind {
            what,
            addr,
            source,
            hint,
        }
    }
}

impl ServiceError for HubError {
    fn error_code(&self) -> ErrorCode {
        match self {
            HubError::Config(_) => ErrorCode::InvalidArgument,
            HubError::Domain(e) => e.error_code(),
            HubError::Bind { .. }
            | HubError::Store(_)
            | HubError::Io(_)
            | HubError::Internal(_) => ErrorCode::Internal,
        }
    }
}

macro_rules! from_domain {
    ($($error:ty),*) => {$(
        impl From<$error> for HubError {
            fn from(error: $error) -> HubError {
                HubError::domain(error)
            }
        }
    )*};
}

from_domain!(
    shoal_store::WorkspaceError,
    shoal_registry::RegistryError,
    shoal_tracking::TrackingError,
    shoal_fleet::FleetError,
    shoal_store::RandomSourceError,
    shoal_store::VaultError
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_mqtt_port_names_the_address_and_the_way_out() {
        let addr: SocketAddr = "0.0.0.0:1883".parse().unwrap();
        let error = HubError::bind(
            "MQTT",
            addr,
            std::io::Error::from(std::io::ErrorKind::AddrInUse),
        );
        let text = error.to_string();
        assert!(text.contains("0.0.0.0:1883"), "{text}");
        assert!(text.contains("--mqtt-listen"), "{text}");
        assert!(text.contains("--mqtt-url"), "{text}");
        assert!(!text.contains("artifact"), "{text}");
    }
}
