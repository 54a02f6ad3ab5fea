//! One line for a failed call, as the CLI and the worker print it.

use tonic::{Code, Status};

/// One line for a failed call: the class of failure in words, then the hub's message.
pub fn describe_status(status: &Status) -> String {
    let message = status.message();
    match status.code() {
        Code::Unauthenticated => {
            format!("unauthenticated: {message} (set SHOAL_TOKEN or pass --token)")
        }
        Code::Unavailable => format!("hub unavailable: {message}"),
        Code::NotFound => format!("not found: {message}"),
        Code::AlreadyExists => format!("already exists: {message}"),
        Code::InvalidArgument => format!("invalid: {message}"),
        Code::FailedPrecondition => format!("refused: {message}"),
        Code::ResourceExhausted => format!("too large: {message}"),
        code => format!("{code:?}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_class_and_keeps_the_message() {
        let line = describe_status(&Status::unauthenticated("missing bearer token"));
        assert_eq!(
            line,
            "unauthenticated: missing bearer token (set SHOAL_TOKEN or pass --token)"
        );
        assert_eq!(
            describe_status(&Status::not_found("model 'm' not found")),
            "not found: model 'm' not found"
        );
    }
}
