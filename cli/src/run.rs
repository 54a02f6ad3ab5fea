//! `shoal run`: training runs, of a built-in trainer or your own script.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use shoal_client::HubClient;
use shoal_proto::training as pb;

use crate::args::parse_key_value;
use crate::error::{CliError, CliResult};
use crate::output::{age, print_list, print_one, Format};
use crate::submit::{builtin_job, pack, SubmitArgs};

// Parsed once per command line; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum RunCommand {
    /// Queues a run: a built-in trainer on a dataset, or a command in a source folder
    /// (`--dir ./src -- python train.py`).
    Submit(SubmitArgs<RunArgs>),
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

/// The flags only `run submit` has.
#[derive(Args)]
pub struct RunArgs {
    /// KEY=VALUE, repeatable.
    #[arg(long = "tag", value_parser = parse_key_value)]
    pub tags: Vec<(String, String)>,
    /// Register the trained model under this name when the run completes.
    #[arg(long)]
    pub register: Option<String>,
}

/// `shoal run …`.
///
/// # Errors
/// One line for the user.
pub async fn run(hub: &mut HubClient, ws: &str, out: Format, command: RunCommand) -> CliResult<()> {
    match command {
        RunCommand::Submit(SubmitArgs {
            experiment,
            name,
            builtin,
            params,
            own: RunArgs { tags, register },
            dir,
            env,
            secrets,
            compute,
            labels,
            wait,
            command,
        }) => {
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
                        secrets: secrets.into_iter().collect(),
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
                        .await?
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
                .await?
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
                .await?
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
                .await?
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
                .await?
                .into_inner();
            print_one(out, &json!({"id": run.id, "status": run.status}));
        }
        RunCommand::Metrics { run, key } => {
            let history = hub
                .training
                .get_metric_history(pb::MetricHistoryRequest { run_id: run, key })
                .await?
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
                .await?
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
                .await?
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

pub fn metric_number(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1e6).round() / 1e6)
    } else {
        json!(v.to_string())
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
        .await?
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
        .await?
        .into_inner();
    let mut last = 0;
    while let Some(message) = stream.next().await {
        let message = message?;
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
        .await?
        .into_inner();
    let (mut expected, mut hasher) = (String::new(), sha2::Sha256::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
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
