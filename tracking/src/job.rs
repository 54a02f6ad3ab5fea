//! What a run executes: a built-in trainer on a registered dataset, or a user's command in
//! an uploaded source snapshot. Runs record it; the jobs layer executes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a queued run executes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    Builtin(BuiltinJob),
    Script(ScriptJob),
}

/// A built-in trainer on a registered dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuiltinJob {
    /// `mlp` or `logreg`.
    pub trainer: String,
    /// `sensors@1`, resolved at submission so the run always names one version.
    pub dataset: String,
    pub target: String,
    /// Feature columns; empty: every column but the target.
    pub features: Vec<String>,
    /// Register the trained model under this name when the run completes.
    pub register_as: Option<String>,
}

/// A user's command in an uploaded source snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptJob {
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Workspace secrets given to the run as environment variables: variable -> secret name.
    /// Only names are recorded; values are read from the vault when the run starts.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// sha256 of the snapshot (tar.gz) in the artifact store.
    pub source_digest: String,
    pub source_bytes: u64,
}
