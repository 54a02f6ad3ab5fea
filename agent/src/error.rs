//! Why the agent could not start or run.

use std::net::SocketAddr;

use thiserror::Error;

use crate::store::StoreError;

/// A failure of the agent as a whole (bind or run); everything else is reported, not returned.
#[derive(Debug, Error)]
pub enum AgentError {
    #[error("cannot open the data directory: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    BindHttp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the http server stopped: {0}")]
    Http(String),
}

pub type AgentResult<T> = Result<T, AgentError>;
