//! `shoal dataset`, `shoal experiment`, `shoal run` and `shoal sweep`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use shoal_proto::training as pb;

use super::output::{age, print_list, print_one, Format};
use super::CliError;
use super::{describe_status, parse_key_value, CliResult, HubClient};
use shoal_client::upload_dataset;

/// Largest source snapshot the CLI packs.
const MAX_SNAPSHOT_BYTES: u64 = 1024 * 1024 * 1024;

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// Uploads a CSV as the next version of a dataset and prints its profile.
    Register {
        /// The CSV; with --from-run, the path of a run's artifact (outputs/features.csv).
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Register a CSV a run wrote, with the run as the version's source.
        #[arg(long)]
        from_run: Option<String>,
    },
    List,
    /// A version's profile: NAME@VERSION, NAME (latest).
    Show {
        reference: String,
    },
}

#[derive(Subcommand)]
pub enum ExperimentCommand {
    Create { name: String },
    List,
}

#[derive(Args)]
pub struct BuiltinArgs {
    /// A built-in trainer: mlp or logreg.
    #[arg(long)]
    builtin: Option<String>,
    /// The dataset version to train on: NAME@VERSION or NAME (latest).
    #[arg(long, requires = "builtin")]
    dataset: Option<String>,
    /// The column to predict.
    #[arg(long, requires = "builtin")]
    target: Option<String>,
    /// Feature columns in model input order (default: every column but the target).
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
}

// Parsed once per command line; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum RunCommand {
    /// Queues a run: a built-in trainer on a dataset, or a command in a source folder
    /// (`--dir ./src -- python train.py`).
    Submit {
        #[arg(long, default_value = "Default")]
        experiment: String,
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        builtin: BuiltinArgs,
        /// KEY=VALUE, repeatable: trainer params (hidden=16, epochs=40, lr=0.01).
        #[arg(long = "param", value_parser = parse_key_value)]
        params: Vec<(String, String)>,
        /// KEY=VALUE, repeatable.
        #[arg(long = "tag", value_parser = parse_key_value)]
        tags: Vec<(String, String)>,
        /// Register the trained model under this name when the run completes.
        #[arg(long)]
        register: Option<String>,
        /// The folder to snapshot and run the command in (.gitignore and .shoalignore apply).
        #[arg(long, conflicts_with = "builtin")]
        dir: Option<PathBuf>,
        /// KEY=VALUE environment variables for a script run, repeatable.
        #[arg(long = "env", value_parser = parse_key_value)]
        env: Vec<(String, String)>,
        /// Where it runs: local (the hub's host) or worker (any remote worker).
        #[arg(long, default_value = "local")]
        compute: String,
        /// Labels a remote worker must have.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// Follow the run's log until it ends, and exit non-zero unless it completed.
        #[arg(long)]
        wait: bool,
        /// The command of a script run, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Runs, newest first, or in --order-by order.
    List {
        /// Experiment names, repeatable (default: every experiment).
        #[arg(long = "experiment")]
        experiments: Vec<String>,
        /// metrics.accuracy > 0.9 and params.hidden = '16'
        #[arg(long, default_value = "")]
        filter: String,
        /// metrics.accuracy desc (comma-separated clauses)
        #[arg(long = "order-by", num_args = 1..)]
        order_by: Vec<String>,
        /// Only runs in this state: queued, running, completed, failed or canceled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    Show {
        run: String,
    },
    /// A run's log; -f follows it until the run ends.
    Logs {
        run: String,
        #[arg(long, short = 'f')]
        follow: bool,
    },
    Cancel {
        run: String,
    },
    /// Every point of one metric.
    Metrics {
        run: String,
        key: String,
    },
    /// Files the run stored.
    Artifacts {
        run: String,
    },
    /// Downloads a file the run stored, or every file under a folder (`outputs`), keeping
    /// their paths under --output (default: the current folder).
    Download {
        run: String,
        path: String,
        #[arg(long, default_value = ".")]
        output: PathBuf,
    },
}

// Parsed once per command line; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum SweepCommand {
    /// Tunes a built-in trainer's params: --param hidden=choice(8,16,32) --param
    /// lr=loguniform(1e-3,1e-1).
    Submit {
        #[arg(long, default_value = "Default")]
        experiment: String,
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        builtin: BuiltinArgs,
        /// NAME=SPEC, repeatable: choice(..), uniform(lo,hi), loguniform(lo,hi),
        /// quniform(lo,hi,q), randint(lo,hi) or a constant.
        #[arg(long = "param", value_parser = parse_key_value)]
        params: Vec<(String, String)>,
        /// random or grid.
        #[arg(long, default_value = "random")]
        sampling: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 10)]
        max_runs: u32,
        #[arg(long, default_value_t = 2)]
        concurrency: u32,
        /// The metric to optimize (accuracy, macro_f1, val_loss, rmse, mae).
        #[arg(long)]
        metric: String,
        /// max or min.
        #[arg(long, default_value = "max")]
        goal: String,
        /// none, median, bandit:0.1 (slack factor) or bandit:amount=0.05.
        #[arg(long, default_value = "none")]
        early_stop: String,
        /// Register the best run's outputs/model.onnx under this name.
        #[arg(long)]
        register_best: Option<String>,
        /// Sweep a script instead of a built-in trainer: the folder to snapshot; the command
        /// after `--` takes each run's params as `${{params.NAME}}`.
        #[arg(long, conflicts_with = "builtin")]
        dir: Option<PathBuf>,
        /// KEY=VALUE environment variables for a script sweep's runs, repeatable.
        #[arg(long = "env", value_parser = parse_key_value)]
        env: Vec<(String, String)>,
        /// Where the runs execute: local or worker.
        #[arg(long, default_value = "local")]
        compute: String,
        /// Labels a remote worker must have.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// Wait until the sweep ends.
        #[arg(long)]
        wait: bool,
        /// A script sweep's command, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    Show {
        sweep: String,
    },
    List,
}

fn status(s: tonic::Status) -> String {
    describe_status(&s)
}

fn builtin_job(args: BuiltinArgs, register: Option<String>) -> CliResult<pb::BuiltinJob> {
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

fn metric_number(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1e6).round() / 1e6)
    } else {
        json!(v.to_string())
    }
}

fn dataset_json(d: &pb::DatasetVersion) -> Value {
    let columns: Vec<Value> = d
        .columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "kind": c.kind, "count": c.count, "nulls": c.nulls,
                "distinct": c.distinct, "min": c.min, "max": c.max, "mean": c.mean, "std": c.std,
                "edges": c.edges, "bin_counts": c.bin_counts,
                "top_values": c.top_values, "top_counts": c.top_counts,
            })
        })
        .collect();
    json!({
        "name": d.name, "version": d.version, "reference": format!("{}@{}", d.name, d.version),
        "rows": d.rows, "size_bytes": d.size_bytes, "digest": d.digest,
        "description": d.description, "age": age(d.created_at_ms), "source_run": d.source_run,
        "columns": columns,
    })
}

fn print_dataset(format: Format, d: &pb::DatasetVersion) {
    match format {
        Format::Json => print_one(format, &dataset_json(d)),
        Format::Table => {
            println!(
                "{}@{}: {} rows, {} columns, {} bytes",
                d.name,
                d.version,
                d.rows,
                d.columns.len(),
                d.size_bytes
            );
            let fmt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
            let rows: Vec<Value> = d
                .columns
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name, "kind": c.kind, "count": c.count, "nulls": c.nulls,
                        "min": fmt(c.min), "max": fmt(c.max), "mean": fmt(c.mean), "std": fmt(c.std),
                        "top": c.top_values.iter().take(3).cloned().collect::<Vec<_>>().join(","),
                    })
                })
                .collect();
            print_list(
                Format::Table,
                &[
                    ("COLUMN", "name"),
                    ("KIND", "kind"),
                    ("COUNT", "count"),
                    ("NULLS", "nulls"),
                    ("MIN", "min"),
                    ("MAX", "max"),
                    ("MEAN", "mean"),
                    ("STD", "std"),
                    ("TOP", "top"),
                ],
                &rows,
            );
        }
    }
}

fn run_json(r: &pb::Run) -> Value {
    let mut metrics: Vec<(&String, &pb::MetricValue)> = r.metrics.iter().collect();
    metrics.sort_by(|a, b| a.0.cmp(b.0));
    let metrics: serde_json::Map<String, Value> = metrics
        .into_iter()
        .map(|(k, m)| (k.clone(), metric_number(m.value)))
        .collect();
    let mut params: Vec<(&String, &String)> = r.params.iter().collect();
    params.sort();
    let params: serde_json::Map<String, Value> = params
        .into_iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut tags: Vec<(&String, &String)> = r.tags.iter().collect();
    tags.sort();
    let tags: serde_json::Map<String, Value> = tags
        .into_iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let summary = |map: &serde_json::Map<String, Value>, limit: usize| {
        map.iter()
            .take(limit)
            .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    json!({
        "id": r.id, "name": r.name, "experiment": r.experiment, "status": r.status,
        "compute": r.compute, "executor": r.executor,
        "age": age(r.created_at_ms),
        "duration_s": if r.started_at_ms > 0 && r.ended_at_ms > 0 {
            json!((r.ended_at_ms - r.started_at_ms) as f64 / 1000.0)
        } else { Value::Null },
        "metrics_summary": summary(&metrics, 4), "params_summary": summary(&params, 4),
        "metrics": metrics, "params": params, "tags": tags,
        "command": r.command.join(" "), "inputs": r.inputs, "outputs": r.outputs,
        "exit_code": r.exit_code, "error": r.error, "log_tail": r.log_tail,
        "parent_run_id": r.parent_run_id, "sweep_id": r.sweep_id,
        "source_digest": r.source_digest, "artifact_uri": r.artifact_uri,
    })
}

/// A run as `run show` prints it: everything, without the listing's summaries.
fn run_detail_json(r: &pb::Run) -> Value {
    let mut value = run_json(r);
    if let Value::Object(map) = &mut value {
        map.remove("metrics_summary");
        map.remove("params_summary");
    }
    value
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

/// `shoal dataset …`.
///
/// # Errors
/// One line for the user.
pub async fn dataset(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: DatasetCommand,
) -> CliResult<()> {
    match command {
        DatasetCommand::Register {
            file,
            name,
            description,
            from_run,
        } => {
            let version = match from_run {
                Some(run_id) => hub
                    .training
                    .register_dataset_from_run(pb::RegisterDatasetFromRunRequest {
                        run_id,
                        path: file.display().to_string(),
                        name,
                        description,
                    })
                    .await
                    .map_err(status)?
                    .into_inner(),
                None => upload_dataset(hub, ws, &file, &name, &description).await?,
            };
            print_dataset(out, &version);
        }
        DatasetCommand::List => {
            let list = hub
                .training
                .list_datasets(pb::ListDatasetsRequest {
                    workspace: ws.into(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let rows: Vec<Value> = list.versions.iter().map(dataset_json).collect();
            print_list(
                out,
                &[
                    ("DATASET", "reference"),
                    ("ROWS", "rows"),
                    ("BYTES", "size_bytes"),
                    ("AGE", "age"),
                    ("DESCRIPTION", "description"),
                ],
                &rows,
            );
        }
        DatasetCommand::Show { reference } => {
            let version = hub
                .training
                .get_dataset(pb::GetDatasetRequest {
                    workspace: ws.into(),
                    reference,
                })
                .await
                .map_err(status)?
                .into_inner();
            print_dataset(out, &version);
        }
    }
    Ok(())
}

/// `shoal experiment …`.
///
/// # Errors
/// One line for the user.
pub async fn experiment(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: ExperimentCommand,
) -> CliResult<()> {
    match command {
        ExperimentCommand::Create { name } => {
            let e = hub
                .training
                .create_experiment(pb::CreateExperimentRequest {
                    workspace: ws.into(),
                    name,
                })
                .await
                .map_err(status)?
                .into_inner();
            print_one(out, &json!({"id": e.id, "name": e.name}));
        }
        ExperimentCommand::List => {
            let list = hub
                .training
                .list_experiments(pb::ListExperimentsRequest {
                    workspace: ws.into(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let rows: Vec<Value> = list
                .experiments
                .iter()
                .map(|e| json!({"id": e.id, "name": e.name, "runs": e.runs, "age": age(e.created_at_ms)}))
                .collect();
            print_list(
                out,
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("RUNS", "runs"),
                    ("AGE", "age"),
                ],
                &rows,
            );
        }
    }
    Ok(())
}

/// Packs a source folder (honouring `.gitignore` and `.shoalignore`), noting what it leaves out.
async fn pack(dir: &Path) -> CliResult<shoal_compute::Snapshot> {
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

/// Packs a folder and submits a script run with it.
async fn submit_script(
    hub: &mut HubClient,
    header: pb::SubmitRunHeader,
    dir: &Path,
) -> CliResult<pb::Run> {
    let snapshot = pack(dir).await?;
    let mut header = header;
    header.snapshot_bytes = snapshot.bytes.len() as u64;
    let mut messages = vec![pb::SubmitRunRequest {
        part: Some(pb::submit_run_request::Part::Header(header)),
    }];
    messages.extend(
        snapshot
            .bytes
            .chunks(256 * 1024)
            .map(|c| pb::SubmitRunRequest {
                part: Some(pb::submit_run_request::Part::Chunk(c.to_vec())),
            }),
    );
    Ok(hub
        .training
        .submit_run(futures::stream::iter(messages))
        .await
        .map_err(status)?
        .into_inner())
}

/// Prints a run's log (to stderr with `to_stderr`, so stdout keeps only the result); with
/// `follow`, until the run ends. Returns the last line number printed.
async fn print_logs(
    hub: &mut HubClient,
    run: &str,
    follow: bool,
    to_stderr: bool,
) -> CliResult<u64> {
    use futures::StreamExt;
    let mut stream = hub
        .training
        .stream_run_logs(pb::RunLogsRequest {
            run_id: run.into(),
            follow,
            from_line: 0,
        })
        .await
        .map_err(status)?
        .into_inner();
    let mut last = 0;
    while let Some(message) = stream.next().await {
        let message = message.map_err(status)?;
        for line in message.lines {
            if to_stderr {
                eprintln!("{}", line.text);
            } else {
                println!("{}", line.text);
            }
            last = line.number;
        }
    }
    Ok(last)
}

/// `shoal run …`.
///
/// # Errors
/// One line for the user.
pub async fn run(hub: &mut HubClient, ws: &str, out: Format, command: RunCommand) -> CliResult<()> {
    match command {
        RunCommand::Submit {
            experiment,
            name,
            builtin,
            params,
            tags,
            register,
            dir,
            env,
            compute,
            labels,
            wait,
            command,
        } => {
            let mut header = pb::SubmitRunHeader {
                workspace: ws.into(),
                experiment,
                name,
                params: params.into_iter().collect::<HashMap<_, _>>(),
                tags: tags.into_iter().collect::<HashMap<_, _>>(),
                compute,
                labels,
                job: None,
                snapshot_bytes: 0,
            };
            let run = match dir {
                Some(dir) => {
                    if command.is_empty() {
                        return Err(
                            "a script run needs a command after --: shoal run submit --dir ./src -- python train.py"
                                .into(),
                        );
                    }
                    header.job = Some(pb::submit_run_header::Job::Script(pb::ScriptJob {
                        command,
                        env: env.into_iter().collect(),
                    }));
                    submit_script(hub, header, &dir).await?
                }
                None => {
                    if builtin.builtin.is_none() {
                        return Err(
                            "say what to run: --builtin mlp|logreg --dataset D --target T, or --dir ./src -- COMMAND"
                                .into(),
                        );
                    }
                    header.job = Some(pb::submit_run_header::Job::Builtin(builtin_job(
                        builtin, register,
                    )?));
                    let messages = vec![pb::SubmitRunRequest {
                        part: Some(pb::submit_run_request::Part::Header(header)),
                    }];
                    hub.training
                        .submit_run(futures::stream::iter(messages))
                        .await
                        .map_err(status)?
                        .into_inner()
                }
            };
            if !wait {
                match out {
                    Format::Json => print_one(out, &run_json(&run)),
                    Format::Table => println!("{}", run.id),
                }
                return Ok(());
            }
            eprintln!("run {} queued; following its log", run.id);
            print_logs(hub, &run.id, true, true).await?;
            let done = hub
                .training
                .get_run(pb::GetRunRequest { run_id: run.id })
                .await
                .map_err(status)?
                .into_inner();
            print_one(out, &run_detail_json(&done));
            if done.status != "completed" {
                return Err(CliError::Message(format!(
                    "run {} {}: {}",
                    done.id, done.status, done.error
                )));
            }
        }
        RunCommand::List {
            experiments,
            filter,
            order_by,
            status: wanted_status,
            limit,
        } => {
            // Filters compare MLflow's status names; `--status` takes Shoal's.
            let filter = match wanted_status.as_deref() {
                None => filter,
                Some(state) => {
                    let mlflow = match state {
                        "queued" => "SCHEDULED",
                        "running" => "RUNNING",
                        "completed" => "FINISHED",
                        "failed" => "FAILED",
                        "canceled" => "KILLED",
                        other => {
                            return Err(CliError::Message(format!(
                                "unknown status '{other}': queued, running, completed, failed or canceled"
                            )))
                        }
                    };
                    let clause = format!("attributes.status = '{mlflow}'");
                    if filter.trim().is_empty() {
                        clause
                    } else {
                        format!("({filter}) and {clause}")
                    }
                }
            };
            let order_by = order_by
                .join(" ")
                .split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
            let list = hub
                .training
                .list_runs(pb::ListRunsRequest {
                    workspace: ws.into(),
                    experiments,
                    filter,
                    order_by,
                    limit,
                })
                .await
                .map_err(status)?
                .into_inner();
            let rows: Vec<Value> = list.runs.iter().map(run_json).collect();
            print_list(
                out,
                &[
                    ("RUN", "id"),
                    ("NAME", "name"),
                    ("EXPERIMENT", "experiment"),
                    ("STATUS", "status"),
                    ("METRICS", "metrics_summary"),
                    ("PARAMS", "params_summary"),
                    ("AGE", "age"),
                ],
                &rows,
            );
        }
        RunCommand::Show { run } => {
            let run = hub
                .training
                .get_run(pb::GetRunRequest { run_id: run })
                .await
                .map_err(status)?
                .into_inner();
            print_one(out, &run_detail_json(&run));
        }
        RunCommand::Logs { run, follow } => {
            print_logs(hub, &run, follow, false).await?;
        }
        RunCommand::Cancel { run } => {
            let run = hub
                .training
                .cancel_run(pb::CancelRunRequest { run_id: run })
                .await
                .map_err(status)?
                .into_inner();
            print_one(out, &json!({"id": run.id, "status": run.status}));
        }
        RunCommand::Metrics { run, key } => {
            let history = hub
                .training
                .get_metric_history(pb::MetricHistoryRequest { run_id: run, key })
                .await
                .map_err(status)?
                .into_inner();
            let rows: Vec<Value> = history
                .points
                .iter()
                .map(|p| json!({"step": p.step, "value": metric_number(p.value), "timestamp_ms": p.timestamp_ms}))
                .collect();
            print_list(
                out,
                &[
                    ("STEP", "step"),
                    ("VALUE", "value"),
                    ("TIMESTAMP", "timestamp_ms"),
                ],
                &rows,
            );
        }
        RunCommand::Download { run, path, output } => {
            let listed = hub
                .training
                .list_run_artifacts(pb::ListRunArtifactsRequest {
                    run_id: run.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let folder = format!("{}/", path.trim_end_matches('/'));
            let wanted: Vec<&pb::RunArtifact> = listed
                .artifacts
                .iter()
                .filter(|a| a.path == path || a.path.starts_with(&folder))
                .collect();
            if wanted.is_empty() {
                let available: Vec<&str> =
                    listed.artifacts.iter().map(|a| a.path.as_str()).collect();
                return Err(CliError::Message(format!(
                    "run {run} has no artifact '{path}'; it has {available:?}"
                )));
            }
            for artifact in wanted {
                let destination = output.join(&artifact.path);
                download_artifact(hub, &run, &artifact.path, &destination).await?;
                match out {
                    Format::Json => print_one(
                        out,
                        &json!({"path": artifact.path, "file": destination.display().to_string(), "size_bytes": artifact.size_bytes}),
                    ),
                    Format::Table => println!("{}", destination.display()),
                }
            }
        }
        RunCommand::Artifacts { run } => {
            let list = hub
                .training
                .list_run_artifacts(pb::ListRunArtifactsRequest { run_id: run })
                .await
                .map_err(status)?
                .into_inner();
            let rows: Vec<Value> = list
                .artifacts
                .iter()
                .map(|a| json!({"path": a.path, "size_bytes": a.size_bytes, "digest": a.digest}))
                .collect();
            print_list(
                out,
                &[
                    ("PATH", "path"),
                    ("BYTES", "size_bytes"),
                    ("DIGEST", "digest"),
                ],
                &rows,
            );
        }
    }
    Ok(())
}

/// Streams one artifact of a run into `destination` (through a temporary file, so a broken
/// download leaves nothing half-written), checking its sha256.
async fn download_artifact(
    hub: &mut HubClient,
    run: &str,
    path: &str,
    destination: &Path,
) -> CliResult<()> {
    use futures::StreamExt;
    use sha2::Digest;
    use tokio::io::AsyncWriteExt;
    if let Some(parent) = destination.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let partial = destination.with_extension("partial");
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    let mut stream = hub
        .training
        .download_run_artifact(pb::DownloadRunArtifactRequest {
            run_id: run.into(),
            path: path.into(),
        })
        .await
        .map_err(status)?
        .into_inner();
    let (mut expected, mut hasher) = (String::new(), sha2::Sha256::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(status)?;
        if !chunk.digest.is_empty() {
            expected = chunk.digest;
        }
        hasher.update(&chunk.data);
        file.write_all(&chunk.data)
            .await
            .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    }
    file.flush()
        .await
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    if hex::encode(hasher.finalize()) != expected {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(CliError::Message(format!(
            "{path} arrived damaged (sha256 mismatch); try again"
        )));
    }
    tokio::fs::rename(&partial, destination)
        .await
        .map_err(|source| CliError::Write {
            path: destination.display().to_string(),
            source,
        })
}

/// `shoal sweep …`.
///
/// # Errors
/// One line for the user.
pub async fn sweep(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: SweepCommand,
) -> CliResult<()> {
    match command {
        SweepCommand::Submit {
            experiment,
            name,
            builtin,
            params,
            sampling,
            seed,
            max_runs,
            concurrency,
            metric,
            goal,
            early_stop,
            register_best,
            dir,
            env,
            compute,
            labels,
            wait,
            command,
        } => {
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
                        .await
                        .map_err(status)?
                        .into_inner();
                    let script = pb::ScriptJob {
                        command,
                        env: env.into_iter().collect(),
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
                .await
                .map_err(status)?
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
                .await
                .map_err(status)?
                .into_inner();
            print_one(out, &sweep_json(&sweep));
        }
        SweepCommand::List => {
            let list = hub
                .training
                .list_sweeps(pb::ListSweepsRequest {
                    workspace: ws.into(),
                })
                .await
                .map_err(status)?
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

/// Polls a sweep until it ends, printing each child run as it finishes.
async fn wait_for_sweep(hub: &mut HubClient, id: &str) -> CliResult<pb::Sweep> {
    let mut reported = std::collections::HashSet::new();
    loop {
        let sweep = hub
            .training
            .get_sweep(pb::GetSweepRequest {
                sweep_id: id.into(),
            })
            .await
            .map_err(status)?
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
                .await
                .map_err(status)?
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
