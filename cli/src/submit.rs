//! What `shoal run submit` and `shoal sweep submit` share: their flags, the built-in job they
//! describe, and the source snapshot of a script.

use std::path::{Path, PathBuf};

use clap::Args;
use shoal_proto::training as pb;

use crate::args::{parse_key_value, parse_secret_ref};
use crate::error::CliResult;

/// Largest source snapshot the CLI packs.
const MAX_SNAPSHOT_BYTES: u64 = 1024 * 1024 * 1024;

/// The flags of `run submit` and `sweep submit`, in the order `--help` lists them, with each
/// noun's own flags (`own`) in the middle. Their help is worded for a run; `sweep submit`
/// rewords the flags that mean something else for a sweep (`mut_arg` on its variant).
#[derive(Args)]
pub struct SubmitArgs<T: Args> {
    #[arg(long, default_value = "Default")]
    pub experiment: String,
    #[arg(long, default_value = "")]
    pub name: String,
    #[command(flatten)]
    pub builtin: BuiltinArgs,
    /// KEY=VALUE, repeatable: trainer params (hidden=16, epochs=40, lr=0.01).
    #[arg(long = "param", value_parser = parse_key_value)]
    pub params: Vec<(String, String)>,
    #[command(flatten)]
    pub own: T,
    /// The folder to snapshot and run the command in (.gitignore and .shoalignore apply).
    #[arg(long, conflicts_with = "builtin")]
    pub dir: Option<PathBuf>,
    /// KEY=VALUE environment variables for a script run, repeatable.
    #[arg(long = "env", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// A workspace secret as an environment variable of a script run: NAME (as NAME in upper
    /// case) or NAME=ENV_VAR; repeatable. The run records the name, never the value.
    #[arg(long = "secret", value_parser = parse_secret_ref)]
    pub secrets: Vec<(String, String)>,
    /// Where it runs: local (the hub's host) or worker (any remote worker).
    #[arg(long, default_value = "local")]
    pub compute: String,
    /// Labels a remote worker must have.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Follow the run's log until it ends, and exit non-zero unless it completed.
    #[arg(long)]
    pub wait: bool,
    /// The command of a script run, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct BuiltinArgs {
    /// A built-in trainer: mlp or logreg.
    #[arg(long)]
    pub builtin: Option<String>,
    /// The dataset version to train on: NAME@VERSION or NAME (latest).
    #[arg(long, requires = "builtin")]
    pub dataset: Option<String>,
    /// The column to predict.
    #[arg(long, requires = "builtin")]
    pub target: Option<String>,
    /// Feature columns in model input order (default: every column but the target).
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
}

pub fn builtin_job(args: BuiltinArgs, register: Option<String>) -> CliResult<pb::BuiltinJob> {
    let trainer = args.builtin.ok_or("--builtin mlp|logreg is required")?;
    Ok(pb::BuiltinJob {
        trainer,
        dataset: args
            .dataset
            .ok_or("--dataset NAME@VERSION is required with --builtin")?,
        target: args
            .target
            .ok_or("--target COLUMN is required with --builtin")?,
        features: args.features,
        register_as: register.unwrap_or_default(),
    })
}

/// Packs a source folder (honouring `.gitignore` and `.shoalignore`), noting what it leaves out.
pub async fn pack(dir: &Path) -> CliResult<shoal_compute::Snapshot> {
    let folder = dir.to_path_buf();
    let snapshot =
        tokio::task::spawn_blocking(move || shoal_compute::pack_dir(&folder, MAX_SNAPSHOT_BYTES))
            .await
            .map_err(|e| format!("snapshot task: {e}"))?
            .map_err(|e| format!("cannot snapshot {}: {e}", dir.display()))?;
    for skipped in &snapshot.skipped {
        eprintln!(
            "note: {} is a link or special file and is not uploaded",
            skipped.display()
        );
    }
    Ok(snapshot)
}
