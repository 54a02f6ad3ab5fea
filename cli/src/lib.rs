//! The `shoal` command line: `az ml`-style nouns and verbs over the hub's gRPC API.
//!
//! Every listing takes `-o table|json`; `SHOAL_HUB`, `SHOAL_TOKEN` and `SHOAL_WORKSPACE` (or
//! the matching flags) say which hub, who is calling, and in which workspace. Errors are one
//! line on stderr and a non-zero exit.

#[cfg(feature = "demo")]
mod demo;
mod error;
mod output;
mod sample;
mod telemetry;
mod training;

pub use error::{CliError, CliResult};
pub use output::Format;
pub use sample::sensors_csv;
pub use shoal_client::{describe_status, HubClient};
use shoal_client::{download_model, register_model, upload_baseline};
pub use telemetry::parse_duration_ms;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use shoal_proto::device::{ReportedState, UpdatePhase};
use shoal_proto::{deployment as dpb, fleet as fpb, registry as rpb, workspace as wpb};

use output::{age, print_list, print_one};

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Shoal: train, ship and watch ML models on fleets of edge devices"
)]
pub struct Cli {
    /// The hub's gRPC address.
    #[arg(
        long,
        global = true,
        env = "SHOAL_HUB",
        default_value = "http://127.0.0.1:7070"
    )]
    hub: String,
    /// API token (the hub writes its admin token to DATA_DIR/admin.token).
    #[arg(long, global = true, env = "SHOAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(
        long,
        short = 'w',
        global = true,
        env = "SHOAL_WORKSPACE",
        default_value = "default"
    )]
    workspace: String,
    /// Output format of listings and details (`-o json`); `--output` names files instead.
    #[arg(
        long = "format",
        short = 'o',
        global = true,
        value_enum,
        default_value = "table"
    )]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a hub, three agents and a model end to end on this machine.
    Demo {
        /// Leave the hub and agents running until Ctrl-C.
        #[arg(long)]
        keep: bool,
    },
    /// Workspaces: the unit of isolation.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// The model registry.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Devices and their enrollment.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Deployments of model versions to devices.
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Drift of a model version's inputs and outputs on the devices.
    #[command(subcommand)]
    Drift(DriftCommand),
    /// Telemetry windows from devices.
    #[command(subcommand)]
    Telemetry(TelemetryCommand),
    /// Alerts raised by drift monitors.
    #[command(subcommand)]
    Alert(AlertCommand),
    /// Versioned CSV datasets with their profiles.
    #[command(subcommand)]
    Dataset(training::DatasetCommand),
    /// Experiments, which group runs.
    #[command(subcommand)]
    Experiment(training::ExperimentCommand),
    /// Training runs: built-in trainers or your own scripts.
    #[command(subcommand)]
    Run(training::RunCommand),
    /// Hyperparameter sweeps over a built-in trainer.
    #[command(subcommand)]
    Sweep(training::SweepCommand),
}

#[derive(Subcommand)]
enum AlertCommand {
    List {
        #[arg(long, default_value = "")]
        monitor: String,
    },
}

#[derive(Subcommand)]
enum MonitorCommand {
    /// Evaluates a model's drift every period and alerts on a breach.
    Create {
        name: String,
        /// NAME@VERSION or NAME@ALIAS (an alias is followed as it moves).
        #[arg(long)]
        model: String,
        /// js, psi, wasserstein or ks; repeat `--metric M --threshold T` to watch several.
        #[arg(long, default_values_t = vec!["js".to_string()])]
        metric: Vec<String>,
        /// The value at which each metric (in the same order) breaches.
        #[arg(long, default_values_t = vec![0.1])]
        threshold: Vec<f64>,
        /// The period: 90s, 5m, 1h.
        #[arg(long, default_value = "5m")]
        every: String,
        #[arg(long, default_value_t = 500)]
        min_rows: u64,
        #[arg(long, value_delimiter = ',')]
        devices: Vec<String>,
        /// POSTs each alert here, signed with HMAC-SHA256 (X-Shoal-Signature).
        #[arg(long, default_value = "")]
        webhook: String,
        /// What to start on an alert: `retrain:<run>` repeats that run (a built-in trainer on its
        /// dataset's latest version, or the same script); anything else is kept on the alert
        /// for an outside pipeline.
        #[arg(long, default_value = "")]
        on_alert: String,
    },
    List,
    /// A monitor and its recent evaluations.
    Show {
        name: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
enum DriftCommand {
    /// Per feature: rows, PSI, JS, Wasserstein, KS, chi-square and status.
    Report {
        /// NAME@VERSION or NAME@ALIAS.
        reference: String,
        /// How far back: 90s, 30m, 1h, 2d (default: all stored windows).
        #[arg(long)]
        since: Option<String>,
        /// Comma-separated device ids (default: every device).
        #[arg(long, value_delimiter = ',')]
        devices: Vec<String>,
        /// Below this many values a feature reads "not enough data".
        #[arg(long, default_value_t = 0)]
        min_rows: u64,
    },
    /// Monitors that evaluate drift every period and raise alerts.
    #[command(subcommand)]
    Monitor(MonitorCommand),
}

#[derive(Subcommand)]
enum TelemetryCommand {
    /// Prints windows as they arrive.
    Tail {
        #[arg(long)]
        device: Option<String>,
    },
    /// What the hub holds of a device's telemetry, including what its buffer dropped.
    Show { device: String },
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    List,
    Show {
        name: String,
    },
    /// Deletes a workspace; one that still holds anything needs --force.
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Uploads an ONNX file as the next version of a model.
    Register(RegisterArgs),
    List,
    /// Shows a model (NAME) or one version (NAME@VERSION or NAME@ALIAS).
    Show {
        reference: String,
    },
    /// Lists the versions of a model.
    Versions {
        name: String,
    },
    #[command(subcommand)]
    Alias(AliasCommand),
    /// The drift baseline of a version.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Downloads a version's ONNX file.
    Download {
        reference: String,
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RegisterArgs {
    /// The ONNX file; with --from-run, the path of a run's artifact (outputs/model.onnx).
    file: PathBuf,
    /// Register an ONNX file a run wrote, keeping the run as the version's lineage.
    #[arg(long, conflicts_with = "baseline")]
    from_run: Option<String>,
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "")]
    description: String,
    /// KEY=VALUE, repeatable.
    #[arg(long = "tag", value_parser = parse_key_value)]
    tags: Vec<(String, String)>,
    /// Training data (CSV with a header) to profile as the drift baseline.
    #[arg(long, requires = "features")]
    baseline: Option<PathBuf>,
    /// CSV columns in the order of the model input's last axis.
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// The model input the features feed (default: the first).
    #[arg(long, default_value = "")]
    input: String,
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Profiles a CSV as the drift baseline of NAME[@VERSION].
    Set {
        reference: String,
        csv: PathBuf,
        /// CSV columns in the order of the model input's last axis.
        #[arg(long, value_delimiter = ',', required = true)]
        features: Vec<String>,
        #[arg(long, default_value = "")]
        input: String,
    },
}

#[derive(Subcommand)]
enum AliasCommand {
    /// Points ALIAS at VERSION (moving it if it pointed elsewhere).
    Set {
        name: String,
        alias: String,
        version: u32,
    },
    Delete {
        name: String,
        alias: String,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Enrolls a device and writes its complete agent config (with its MQTT password).
    Add {
        id: String,
        /// Where to write the agent config (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
        #[arg(long = "tag", value_parser = parse_key_value)]
        tags: Vec<(String, String)>,
    },
    List,
    Show {
        id: String,
    },
    Remove {
        id: String,
    },
}

#[derive(Subcommand)]
enum DeploymentCommand {
    /// Sends a model version to devices (all at once).
    Create {
        name: String,
        /// NAME@VERSION or NAME@ALIAS.
        #[arg(long)]
        model: String,
        /// Comma-separated device ids.
        #[arg(long, value_delimiter = ',', required = true)]
        devices: Vec<String>,
    },
    List,
    Show {
        name: String,
    },
}

fn parse_key_value(s: &str) -> CliResult<(String, String)> {
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

/// Runs the CLI and returns the process exit code.
pub async fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("shoal: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> CliResult<()> {
    if let Command::Demo { keep } = cli.command {
        #[cfg(feature = "demo")]
        return demo::run(keep).await;
        #[cfg(not(feature = "demo"))]
        return Err(CliError::Message(format!(
            "this shoal was built without the demo (it runs a hub and agents in-process); \
             build it with: cargo run --release --bin shoal --features demo -- demo{}",
            if keep { " --keep" } else { "" }
        )));
    }
    let mut hub = HubClient::connect(&cli.hub, cli.token.as_deref()).await?;
    let ws = cli.workspace.clone();
    let out = cli.format;
    let status = |s: tonic::Status| describe_status(&s);
    match cli.command {
        Command::Demo { .. } => unreachable!("handled above"),
        Command::Workspace(command) => match command {
            WorkspaceCommand::Create { name, description } => {
                let w = hub
                    .workspaces
                    .create_workspace(wpb::CreateWorkspaceRequest { name, description })
                    .await
                    .map_err(status)?;
                print_one(out, &workspace_json(&w.into_inner()));
            }
            WorkspaceCommand::List => {
                let list = hub
                    .workspaces
                    .list_workspaces(wpb::ListWorkspacesRequest {})
                    .await
                    .map_err(status)?;
                let rows: Vec<Value> = list
                    .into_inner()
                    .workspaces
                    .iter()
                    .map(workspace_json)
                    .collect();
                print_list(
                    out,
                    &[("NAME", "name"), ("DESCRIPTION", "description")],
                    &rows,
                );
            }
            WorkspaceCommand::Show { name } => {
                let w = hub
                    .workspaces
                    .get_workspace(wpb::GetWorkspaceRequest { name })
                    .await
                    .map_err(status)?;
                print_one(out, &workspace_json(&w.into_inner()));
            }
            WorkspaceCommand::Delete { name, force } => {
                hub.workspaces
                    .delete_workspace(wpb::DeleteWorkspaceRequest {
                        name: name.clone(),
                        force,
                    })
                    .await
                    .map_err(status)?;
                eprintln!("deleted workspace {name}");
            }
        },
        Command::Model(command) => match command {
            ModelCommand::Register(args) if args.from_run.is_some() => {
                let registered = hub
                    .training
                    .register_from_run(shoal_proto::training::RegisterFromRunRequest {
                        run_id: args.from_run.unwrap_or_default(),
                        path: args.file.display().to_string(),
                        model: args.name,
                        description: args.description,
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                println!("{}@{}", registered.model, registered.version);
            }
            ModelCommand::Register(args) => {
                let mut version = register_model(
                    &mut hub,
                    &ws,
                    &args.file,
                    &args.name,
                    &args.description,
                    args.tags.into_iter().collect(),
                    std::io::stderr().is_terminal(),
                )
                .await?;
                if let Some(csv) = &args.baseline {
                    let reference = version.version.to_string();
                    version = upload_baseline(
                        &mut hub,
                        &ws,
                        &args.name,
                        &reference,
                        csv,
                        args.features,
                        &args.input,
                    )
                    .await
                    .map_err(|e| {
                        format!(
                            "{}@{} is registered, but its baseline was refused: {e}",
                            args.name, reference
                        )
                    })?;
                }
                match out {
                    Format::Json => print_one(out, &version_json(&version)),
                    Format::Table => println!("{}@{}", version.model, version.version),
                }
            }
            ModelCommand::List => {
                let list = hub
                    .registry
                    .list_models(rpb::ListModelsRequest { workspace: ws })
                    .await
                    .map_err(status)?;
                let rows: Vec<Value> = list.into_inner().models.iter().map(model_json).collect();
                print_list(
                    out,
                    &[
                        ("NAME", "name"),
                        ("LATEST", "latest_version"),
                        ("ALIASES", "aliases"),
                        ("DESCRIPTION", "description"),
                    ],
                    &rows,
                );
            }
            ModelCommand::Show { reference } => {
                let (name, version) = split_reference(&reference);
                if reference.contains('@') {
                    let v = hub
                        .registry
                        .get_model_version(rpb::GetModelVersionRequest {
                            workspace: ws,
                            name: name.into(),
                            reference: version.into(),
                        })
                        .await
                        .map_err(status)?;
                    print_one(out, &version_json(&v.into_inner()));
                } else {
                    let m = hub
                        .registry
                        .get_model(rpb::GetModelRequest {
                            workspace: ws,
                            name: name.into(),
                        })
                        .await
                        .map_err(status)?;
                    print_one(out, &model_json(&m.into_inner()));
                }
            }
            ModelCommand::Versions { name } => {
                let list = hub
                    .registry
                    .list_model_versions(rpb::ListModelVersionsRequest {
                        workspace: ws,
                        name,
                    })
                    .await
                    .map_err(status)?;
                let rows: Vec<Value> = list
                    .into_inner()
                    .versions
                    .iter()
                    .map(version_json)
                    .collect();
                print_list(
                    out,
                    &[
                        ("VERSION", "version"),
                        ("ALIASES", "aliases"),
                        ("SIZE", "size_bytes"),
                        ("INPUTS", "inputs"),
                        ("OUTPUTS", "outputs"),
                        ("DIGEST", "digest"),
                    ],
                    &rows,
                );
            }
            ModelCommand::Alias(AliasCommand::Set {
                name,
                alias,
                version,
            }) => {
                let m = hub
                    .registry
                    .set_alias(rpb::SetAliasRequest {
                        workspace: ws,
                        name: name.clone(),
                        alias: alias.clone(),
                        version,
                    })
                    .await
                    .map_err(status)?;
                match out {
                    Format::Json => print_one(out, &model_json(&m.into_inner())),
                    Format::Table => println!("{name}@{alias} -> {version}"),
                }
            }
            ModelCommand::Alias(AliasCommand::Delete { name, alias }) => {
                hub.registry
                    .delete_alias(rpb::DeleteAliasRequest {
                        workspace: ws,
                        name: name.clone(),
                        alias: alias.clone(),
                    })
                    .await
                    .map_err(status)?;
                eprintln!("deleted alias {name}@{alias}");
            }
            ModelCommand::Baseline(BaselineCommand::Set {
                reference,
                csv,
                features,
                input,
            }) => {
                let (name, version) = split_reference(&reference);
                let v =
                    upload_baseline(&mut hub, &ws, name, version, &csv, features, &input).await?;
                match out {
                    Format::Json => print_one(out, &version_json(&v)),
                    Format::Table => {
                        let rows = v.baseline.as_ref().map_or(0, |b| b.rows);
                        println!("{}@{}: baseline of {rows} rows set", v.model, v.version);
                    }
                }
            }
            ModelCommand::Download { reference, output } => {
                let (name, version) = split_reference(&reference);
                let (info, bytes) = download_model(&mut hub, &ws, name, version).await?;
                let path = output.unwrap_or_else(|| {
                    PathBuf::from(format!("{}-{}.onnx", info.model, info.version))
                });
                std::fs::write(&path, &bytes)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                eprintln!(
                    "wrote {} ({} bytes, sha256 {})",
                    path.display(),
                    bytes.len(),
                    info.digest
                );
            }
        },
        Command::Device(command) => match command {
            DeviceCommand::Add { id, output, tags } => {
                let creds = hub
                    .fleet
                    .add_device(fpb::AddDeviceRequest {
                        workspace: ws,
                        id: id.clone(),
                        tags: tags.into_iter().collect(),
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                let text = agent_config_toml(&creds)?;
                match output {
                    Some(path) => {
                        write_private(&path, &text)?;
                        eprintln!("enrolled {id}; wrote its agent config to {} (it holds the device's password: keep it private)", path.display());
                    }
                    None => print!("{text}"),
                }
            }
            DeviceCommand::List => {
                let list = hub
                    .fleet
                    .list_devices(fpb::ListDevicesRequest { workspace: ws })
                    .await
                    .map_err(status)?;
                let rows: Vec<Value> = list.into_inner().devices.iter().map(device_json).collect();
                print_list(
                    out,
                    &[
                        ("ID", "id"),
                        ("ONLINE", "online"),
                        ("ACTIVE", "active_model"),
                        ("DESIRED", "desired_model"),
                        ("UPDATE", "update.phase"),
                        ("LAST SEEN", "last_seen"),
                        ("ERROR", "update.error"),
                    ],
                    &rows,
                );
            }
            DeviceCommand::Show { id } => {
                let d = hub
                    .fleet
                    .get_device(fpb::GetDeviceRequest { workspace: ws, id })
                    .await
                    .map_err(status)?;
                print_one(out, &device_json(&d.into_inner()));
            }
            DeviceCommand::Remove { id } => {
                hub.fleet
                    .remove_device(fpb::RemoveDeviceRequest {
                        workspace: ws,
                        id: id.clone(),
                    })
                    .await
                    .map_err(status)?;
                eprintln!("removed device {id}");
            }
        },
        Command::Deployment(command) => match command {
            DeploymentCommand::Create {
                name,
                model,
                devices,
            } => {
                let (model, reference) = split_reference(&model);
                let d = hub
                    .deployments
                    .create_deployment(dpb::CreateDeploymentRequest {
                        workspace: ws,
                        name,
                        model: model.into(),
                        model_reference: reference.into(),
                        devices,
                        strategy: dpb::Strategy::AllAtOnce as i32,
                    })
                    .await
                    .map_err(status)?;
                print_one(out, &deployment_json(&d.into_inner()));
            }
            DeploymentCommand::List => {
                let list = hub
                    .deployments
                    .list_deployments(dpb::ListDeploymentsRequest { workspace: ws })
                    .await
                    .map_err(status)?;
                let rows: Vec<Value> = list
                    .into_inner()
                    .deployments
                    .iter()
                    .map(deployment_json)
                    .collect();
                print_list(
                    out,
                    &[
                        ("NAME", "name"),
                        ("MODEL", "model_version"),
                        ("DEVICES", "devices"),
                        ("PROGRESS", "progress"),
                    ],
                    &rows,
                );
            }
            DeploymentCommand::Show { name } => {
                let d = hub
                    .deployments
                    .get_deployment(dpb::GetDeploymentRequest {
                        workspace: ws,
                        name,
                    })
                    .await
                    .map_err(status)?;
                print_one(out, &deployment_json(&d.into_inner()));
            }
        },
        Command::Drift(DriftCommand::Report {
            reference,
            since,
            devices,
            min_rows,
        }) => {
            let (name, version) = split_reference(&reference);
            let since_ms = match since {
                Some(text) => output::now_ms() - parse_duration_ms(&text)?,
                None => 0,
            };
            let report = hub
                .telemetry
                .get_drift_report(shoal_proto::telemetry::GetDriftReportRequest {
                    workspace: ws,
                    model: name.into(),
                    reference: version.into(),
                    since_ms,
                    until_ms: 0,
                    devices,
                    min_rows,
                })
                .await
                .map_err(status)?
                .into_inner();
            telemetry::print_drift(out, &report);
        }
        Command::Drift(DriftCommand::Monitor(command)) => {
            telemetry::monitor_command(&mut hub, &ws, out, command).await?
        }
        Command::Alert(AlertCommand::List { monitor }) => {
            let alerts = hub
                .telemetry
                .list_alerts(shoal_proto::telemetry::ListAlertsRequest {
                    workspace: ws,
                    monitor,
                })
                .await
                .map_err(status)?
                .into_inner()
                .alerts;
            let rows: Vec<Value> = alerts.iter().map(telemetry::alert_json).collect();
            print_list(
                out,
                &[
                    ("ID", "id"),
                    ("MONITOR", "monitor"),
                    ("MODEL", "model_version"),
                    ("AT", "at"),
                    ("BREACHES", "breaches"),
                    ("WEBHOOK", "webhook"),
                    ("RETRAIN", "retrain"),
                ],
                &rows,
            );
        }
        Command::Dataset(command) => training::dataset(&mut hub, &ws, out, command).await?,
        Command::Experiment(command) => training::experiment(&mut hub, &ws, out, command).await?,
        Command::Run(command) => training::run(&mut hub, &ws, out, command).await?,
        Command::Sweep(command) => training::sweep(&mut hub, &ws, out, command).await?,
        Command::Telemetry(TelemetryCommand::Tail { device }) => {
            telemetry::tail(&mut hub, &ws, device.as_deref().unwrap_or(""), out).await?;
        }
        Command::Telemetry(TelemetryCommand::Show { device }) => {
            let t = hub
                .telemetry
                .get_device_telemetry(shoal_proto::telemetry::GetDeviceTelemetryRequest {
                    workspace: ws,
                    device,
                })
                .await
                .map_err(status)?
                .into_inner();
            print_one(out, &telemetry::device_telemetry_json(&t));
        }
    }
    Ok(())
}

/// The agent config (TOML) for freshly issued credentials: the file `shoal-agent run
/// --config` reads. Its format is the agent's (`shoal_agent::config::AgentConfigFile`,
/// version 1); the CLI writes it without linking the agent, and the integration tests parse
/// what it writes with the agent's own reader.
pub fn agent_config_toml(creds: &fpb::DeviceCredentials) -> CliResult<String> {
    #[derive(serde::Serialize)]
    struct File<'a> {
        version: u32,
        device: Device<'a>,
        hub: Hub<'a>,
    }
    #[derive(serde::Serialize)]
    struct Device<'a> {
        id: &'a str,
        workspace: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Hub<'a> {
        mqtt_url: &'a str,
        mqtt_username: &'a str,
        mqtt_password: &'a str,
        topic_prefix: &'a str,
        public_key: &'a str,
    }
    let device = creds.device.clone().unwrap_or_default();
    let file = File {
        version: 1,
        device: Device {
            id: &device.id,
            workspace: &device.workspace,
        },
        hub: Hub {
            mqtt_url: &creds.mqtt_url,
            mqtt_username: &creds.mqtt_username,
            mqtt_password: &creds.mqtt_password,
            topic_prefix: &creds.topic_prefix,
            public_key: &creds.hub_public_key,
        },
    };
    let body = toml::to_string(&file)
        .map_err(|e| CliError::Message(format!("cannot write the agent config: {e}")))?;
    Ok(format!("# Shoal agent config, written by `shoal device add`. Run: shoal-agent run --config THIS_FILE\n{body}"))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> CliResult<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| CliError::Write {
        path: path.display().to_string(),
        source,
    })?;
    file.write_all(text.as_bytes())
        .map_err(|source| CliError::Write {
            path: path.display().to_string(),
            source,
        })
}

fn workspace_json(w: &wpb::Workspace) -> Value {
    json!({"name": w.name, "description": w.description, "created_at_ms": w.created_at_ms})
}

fn model_json(m: &rpb::Model) -> Value {
    let aliases: std::collections::BTreeMap<_, _> = m.aliases.iter().collect();
    json!({"workspace": m.workspace, "name": m.name, "description": m.description, "latest_version": m.latest_version, "aliases": aliases, "created_at_ms": m.created_at_ms})
}

fn specs_text(specs: &[shoal_proto::device::TensorSpec]) -> Vec<String> {
    use shoal_proto::device::{dim::Value as D, DataType};
    specs
        .iter()
        .map(|s| {
            let dims: Vec<String> = s
                .shape
                .iter()
                .map(|d| match &d.value {
                    Some(D::Fixed(n)) => n.to_string(),
                    Some(D::Symbol(s)) => s.clone(),
                    None => "?".into(),
                })
                .collect();
            let dtype = DataType::try_from(s.dtype)
                .map(|d| {
                    d.as_str_name()
                        .trim_start_matches("DATA_TYPE_")
                        .to_lowercase()
                })
                .unwrap_or_default();
            format!("{}:{}[{}]", s.name, dtype, dims.join(","))
        })
        .collect()
}

fn version_json(v: &rpb::ModelVersion) -> Value {
    let signature = v.signature.clone().unwrap_or_default();
    let tags: std::collections::BTreeMap<_, _> = v.tags.iter().collect();
    json!({
        "workspace": v.workspace, "model": v.model, "version": v.version, "reference": format!("{}@{}", v.model, v.version),
        "digest": v.digest, "size_bytes": v.size_bytes, "aliases": v.aliases, "tags": tags, "description": v.description,
        "inputs": specs_text(&signature.inputs), "outputs": specs_text(&signature.outputs), "created_at_ms": v.created_at_ms,
        "baseline": v.baseline.as_ref().map(|b| json!({
            "rows": b.rows,
            "features": b.features.iter().map(|f| format!("{}:{}", f.name, f.kind)).collect::<Vec<_>>(),
            "outputs": b.outputs,
        })),
    })
}

fn phase_name(phase: i32) -> &'static str {
    match UpdatePhase::try_from(phase).unwrap_or(UpdatePhase::Unspecified) {
        UpdatePhase::Downloading => "downloading",
        UpdatePhase::Verifying => "verifying",
        UpdatePhase::Active => "active",
        UpdatePhase::Failed => "failed",
        UpdatePhase::Unspecified => "",
    }
}

/// A device as the CLI shows it.
pub fn device_json(d: &fpb::Device) -> Value {
    let reported: ReportedState = d.reported.clone().unwrap_or_default();
    let model_ref = |m: &Option<shoal_proto::device::ActiveModel>| {
        m.as_ref().map(|m| format!("{}@{}", m.model, m.version))
    };
    let update = reported.update.as_ref().map(|u| {
        json!({"revision": u.revision, "deployment": u.deployment, "model": format!("{}@{}", u.model, u.version), "phase": phase_name(u.phase),
               "error": u.error, "received_bytes": u.received_bytes, "total_bytes": u.total_bytes, "resumed_from": u.resumed_from})
    });
    let tags: std::collections::BTreeMap<_, _> = d.tags.iter().collect();
    json!({
        "workspace": d.workspace, "id": d.id, "online": d.online, "last_seen": age(d.last_seen_ms), "last_seen_ms": d.last_seen_ms,
        "active_model": model_ref(&reported.active), "active_digest": reported.active.as_ref().map(|a| a.digest.clone()),
        "previous_model": model_ref(&reported.previous), "desired_model": d.desired_model, "desired_revision": d.desired_revision,
        "update": update, "health": reported.health, "agent_version": reported.agent_version, "arch": reported.arch, "tags": tags,
    })
}

fn deployment_json(d: &dpb::Deployment) -> Value {
    let active = d.status.iter().filter(|s| s.state == "active").count();
    let failed = d.status.iter().filter(|s| s.state == "failed").count();
    let status: Vec<Value> = d
        .status
        .iter()
        .map(|s| json!({"device": s.device_id, "state": s.state, "error": s.error}))
        .collect();
    json!({
        "workspace": d.workspace, "name": d.name, "model": d.model, "version": d.version, "model_version": format!("{}@{}", d.model, d.version),
        "model_reference": d.model_reference, "digest": d.digest, "devices": d.devices, "strategy": "all_at_once",
        "progress": format!("{active}/{} active, {failed} failed", d.devices.len()), "status": status, "created_at_ms": d.created_at_ms,
    })
}
