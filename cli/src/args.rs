//! Flag values that several nouns parse: `KEY=VALUE` pairs and `NAME@VERSION` references.

use crate::error::{CliError, CliResult};

pub fn parse_key_value(s: &str) -> CliResult<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| CliError::Message(format!("'{s}' is not KEY=VALUE")))
}

/// Splits `name@reference`; no `@` means the latest version.
pub fn split_reference(reference: &str) -> (&str, &str) {
    match reference.split_once('@') {
        Some((name, version)) => (name, version),
        None => (reference, ""),
    }
}
