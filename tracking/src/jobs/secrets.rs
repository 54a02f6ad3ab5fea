//! The secrets a script run asks for (`--secret NAME[=VAR]`): checked at submission, read
//! from the vault when the run starts (locally or on a worker's lease), never stored on the
//! run.

use std::collections::BTreeMap;

use super::Jobs;
use crate::error::{TrackingError, TrackingResult};
use crate::tracking::{Run, ScriptJob};

impl Jobs {
    /// A script's secrets: each variable a valid name outside Shoal's own (`SHOAL_*`,
    /// `MLFLOW_*`), each secret present in the workspace.
    pub(crate) fn check_secrets(&self, workspace: &str, job: &ScriptJob) -> TrackingResult<()> {
        for (var, secret) in &job.secrets {
            let valid = var
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(TrackingError::invalid(format!(
                    "--secret {secret}={var}: '{var}' is not an environment variable name \
                     (letters, digits and '_', not starting with a digit)"
                )));
            }
            if var.starts_with("SHOAL_") || var.starts_with("MLFLOW_") {
                return Err(TrackingError::invalid(format!(
                    "--secret {secret}={var}: SHOAL_* and MLFLOW_* variables are set by Shoal; \
                     choose another name"
                )));
            }
            if !self.inner.vault.exists(workspace, secret)? {
                return Err(TrackingError::NotFound {
                    kind: "secret",
                    name: format!(
                        "{secret}' in workspace '{workspace}' (create it with `shoal secret set \
                         {secret}`)"
                    ),
                });
            }
        }
        Ok(())
    }

    /// A script run's variables: its own, plus its secrets' values read from the vault now.
    /// The values are never stored on the run.
    ///
    /// # Errors
    /// A secret deleted since submission (`NotFound`), or one that is not UTF-8 text.
    pub(crate) fn script_env(
        &self,
        run: &Run,
        job: &ScriptJob,
    ) -> TrackingResult<BTreeMap<String, String>> {
        let mut env = job.env.clone();
        for (var, secret) in &job.secrets {
            let value = self.inner.vault.reveal(&run.workspace, secret)?;
            let value = String::from_utf8(value).map_err(|_| {
                TrackingError::invalid(format!(
                    "secret '{secret}' is not UTF-8 text and cannot be the variable {var}"
                ))
            })?;
            env.insert(var.clone(), value);
        }
        Ok(env)
    }
}
