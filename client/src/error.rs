//! `ClientError`: why a call to the hub failed, worded for the person who made it.

use thiserror::Error;

use crate::status::describe_status;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("hub url '{url}' is not valid: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach the hub at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the token holds characters a header cannot carry")]
    InvalidToken,
    /// The hub answered with an error.
    #[error("{}", describe_status(.0))]
    Status(#[from] tonic::Status),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The hub's answer broke the protocol (a stream without its header).
    #[error("{0}")]
    Protocol(String),
    #[error("{what} did not happen within {waited:?}")]
    Timeout {
        what: String,
        waited: std::time::Duration,
    },
}

pub type ClientResult<T> = Result<T, ClientError>;

impl ClientError {
    /// The gRPC status, when the hub answered with one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            ClientError::Status(status) => Some(status),
            _ => None,
        }
    }
}
