//! `CliError`: every way a `shoal` command fails, printed as one line on stderr.

use thiserror::Error;

use shoal_client::ClientError;

#[derive(Debug, Error)]
pub enum CliError {
    /// A call to the hub failed (unreachable, refused, a broken stream, a file to upload
    /// that cannot be read).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A local file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Anything else, worded for the user: a bad flag value, a run that failed, a deadline.
    #[error("{0}")]
    Message(String),
}

pub type CliResult<T> = Result<T, CliError>;

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> CliError {
        CliError::Client(ClientError::Status(status))
    }
}

impl From<String> for CliError {
    fn from(message: String) -> CliError {
        CliError::Message(message)
    }
}

impl From<&str> for CliError {
    fn from(message: &str) -> CliError {
        CliError::Message(message.to_string())
    }
}
