//! `shoal sweep`: hyperparameter sweeps over a built-in trainer or a script.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use shoal_client::HubClient;
use shoal_proto::training as pb;

use crate::error::{CliError, CliResult};
use crate::output::{age, print_list, print_one, Format};
use crate::run::metric_number;
use crate::submit::{builtin_job, pack, SubmitArgs};

// Parsed once per command line; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum SweepCommand {
    /// Tunes a built-in trainer's params: --param hidden=choice(8,16,32) --param
    /// lr=loguniform(1e-3,1e-1).
    // The shared flags' help speaks of a run; these say what they mean for a sweep.
    #[command(
        mut_arg("params", |a| a.help("NAME=SPEC, repeatable: choice(..), uniform(lo,hi), loguniform(lo,hi), quniform(lo,hi,q), randint(lo,hi) or a constant")),
        mut_arg("dir", |a| a.help("Sweep a script instead of a built-in trainer: the folder to snapshot; the command after `--` takes each run's params as `${{params.NAME}}`")),
        mut_arg("env", |a| a.help("KEY=VALUE environment variables for a script sweep's runs, repeatable")),
        mut_arg("compute", |a| a.help("Where the runs execute: local or worker")),
        mut_arg("wait", |a| a.help("Wait until the sweep ends")),
        mut_arg("command", |a| a.help("A script sweep's command, after `--`")),
    )]
    Submit(SubmitArgs<SweepArgs>),
    Show {
        sweep: String,
    },
    List,
}

/// The flags only `sweep submit` has.
#[derive(Args)]
pub struct SweepArgs {
    /// random or grid.
    #[arg(long, default_value = "random")]
    pub sampling: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 10)]
    pub max_runs: u32,
    #[arg(long, default_value_t = 2)]
    pub concurrency: u32,
    /// The metric to optimize (accuracy, macro_f1, val_loss, rmse, mae).
    #[arg(long)]
    pub metric: String,
    /// max or min.
    #[arg(long, default_value = "max")]
    pub goal: String,
    /// none, median, bandit:0.1 (slack factor) or bandit:amount=0.05.
    #[arg(long, default_value = "none")]
    pub early_stop: String,
    /// Register the best run's outputs/model.onnx under this name.
    #[arg(long)]
    pub register_best: Option<String>,
}

/// `shoal sweep …`.
///
/// # Errors
/// One line for the user.
pub async fn run(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: SweepCommand,
) -> CliResult<()> {
    match command {
        SweepCommand::Submit(SubmitArgs {
            experiment,
            name,
            builtin,
            params,
            own:
                SweepArgs {
                    sampling,
                    seed,
                    max_runs,
                    concurrency,
                    metric,
                    goal,
                    early_stop,
                    register_best,
                },
            dir,
            env,
            secrets,
            compute,
            labels,
            wait,
            command,
        }) => {
            let (builtin, script, source_digest) = match dir {
                Some(dir) => {
                    if command.is_empty() {
                        return Err(CliError::Message("a script sweep needs a command after --: shoal sweep submit --dir ./src … -- python train.py --lr '${{params.lr}}'".into()));
                    }
                    let snapshot = pack(&dir).await?;
                    let uploaded = hub
                        .training
                        .upload_source(futures::stream::iter(
                            snapshot
                                .bytes
                                .chunks(256 * 1024)
                                .map(|c| pb::UploadSourceRequest { chunk: c.to_vec() })
                                .collect::<Vec<_>>(),
                        ))
                        .await?
                        .into_inner();
                    let script = pb::ScriptJob {
                        command,
                        env: env.into_iter().collect(),
                        secrets: secrets.into_iter().collect(),
                    };
                    (None, Some(script), uploaded.digest)
                }
                None => (Some(builtin_job(builtin, None)?), None, String::new()),
            };
            let sweep = hub
                .training
                .submit_sweep(pb::SubmitSweepRequest {
                    workspace: ws.into(),
                    experiment,
                    builtin,
                    script,
                    source_digest,
                    compute,
                    labels,
                    register_best: register_best.unwrap_or_default(),
                    space: params.into_iter().collect(),
                    sampling,
                    seed,
                    max_runs,
                    concurrency,
                    metric,
                    goal,
                    early_stop,
                    name,
                })
                .await?
                .into_inner();
            let sweep = if wait {
                eprintln!(
                    "sweep {} started: {} runs, {} at a time",
                    sweep.id, sweep.max_runs, sweep.concurrency
                );
                wait_for_sweep(hub, &sweep.id).await?
            } else {
                sweep
            };
            print_one(out, &sweep_json(&sweep));
            if wait && sweep.status != "completed" {
                return Err(CliError::Message(format!(
                    "sweep {} {}: {}",
                    sweep.id, sweep.status, sweep.error
                )));
            }
        }
        SweepCommand::Show { sweep } => {
            let sweep = hub
                .training
                .get_sweep(pb::GetSweepRequest { sweep_id: sweep })
                .await?
                .into_inner();
            print_one(out, &sweep_json(&sweep));
        }
        SweepCommand::List => {
            let list = hub
                .training
                .list_sweeps(pb::ListSweepsRequest {
                    workspace: ws.into(),
                })
                .await?
                .into_inner();
            let rows: Vec<Value> = list.sweeps.iter().map(sweep_json).collect();
            print_list(
                out,
                &[
                    ("SWEEP", "id"),
                    ("NAME", "name"),
                    ("STATUS", "status"),
                    ("RUNS", "runs"),
                    ("METRIC", "metric"),
                    ("BEST", "best_value"),
                    ("BEST RUN", "best_run_id"),
                    ("AGE", "age"),
                ],
                &rows,
            );
        }
    }
    Ok(())
}

fn sweep_json(s: &pb::Sweep) -> Value {
    let mut space: Vec<(&String, &String)> = s.space.iter().collect();
    space.sort();
    json!({
        "id": s.id, "name": s.name, "experiment": s.experiment, "status": s.status,
        "parent_run_id": s.parent_run_id,
        "space": space.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
        "sampling": s.sampling, "max_runs": s.max_runs, "concurrency": s.concurrency,
        "metric": s.metric, "goal": s.goal, "early_stop": s.early_stop,
        "runs": s.child_runs.len(), "child_runs": s.child_runs,
        "best_run_id": s.best_run_id, "best_value": s.best_value.map(metric_number),
        "registered": s.registered, "error": s.error, "age": age(s.created_at_ms),
    })
}

/// Polls a sweep until it ends, printing each child run as it finishes.
async fn wait_for_sweep(hub: &mut HubClient, id: &str) -> CliResult<pb::Sweep> {
    let mut reported = std::collections::HashSet::new();
    loop {
        let sweep = hub
            .training
            .get_sweep(pb::GetSweepRequest {
                sweep_id: id.into(),
            })
            .await?
            .into_inner();
        for child in &sweep.child_runs {
            if reported.contains(child) {
                continue;
            }
            let run = hub
                .training
                .get_run(pb::GetRunRequest {
                    run_id: child.clone(),
                })
                .await?
                .into_inner();
            if ["completed", "failed", "canceled"].contains(&run.status.as_str()) {
                let value = run.metrics.get(&sweep.metric).map(|m| m.value);
                eprintln!(
                    "  {} {} {}={} {}",
                    run.name,
                    run.status,
                    sweep.metric,
                    value.map_or("-".into(), |v| format!("{v:.4}")),
                    run.error
                );
                reported.insert(child.clone());
            }
        }
        if sweep.status != "running" {
            return Ok(sweep);
        }
        // Polling a local hub twice a second costs nothing worth a streaming API yet.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
