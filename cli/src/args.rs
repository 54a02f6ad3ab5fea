//! Flag values that several nouns parse: `KEY=VALUE` pairs and `NAME@VERSION` references.

use crate::error::{CliError, CliResult};

pub fn parse_key_value(s: &str) -> CliResult<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| CliError::Message(format!("'{s}' is not KEY=VALUE")))
}

/// `NAME[=VAR]` of `--secret`: the secret `NAME` as the variable `VAR`, by default `NAME` in
/// upper case with `-` and `.` as `_` (`db-password` → `DB_PASSWORD`). Returns (VAR, NAME).
pub fn parse_secret_ref(s: &str) -> CliResult<(String, String)> {
    let (name, var) = match s.split_once('=') {
        Some((name, var)) => (name.to_string(), var.to_string()),
        None => (
            s.to_string(),
            s.to_ascii_uppercase().replace(['-', '.'], "_"),
        ),
    };
    if name.is_empty() || var.is_empty() {
        return Err(CliError::Message(format!(
            "'{s}' is not NAME or NAME=ENV_VAR"
        )));
    }
    Ok((var, name))
}

/// Splits `name@reference`; no `@` means the latest version.
pub fn split_reference(reference: &str) -> (&str, &str) {
    match reference.split_once('@') {
        Some((name, version)) => (name, version),
        None => (reference, ""),
    }
}
