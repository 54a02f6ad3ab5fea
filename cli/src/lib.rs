//! The `shoal` command line: `az ml`-style nouns and verbs over the hub's gRPC API.
//!
//! Every listing takes `-o table|json`; `SHOAL_HUB`, `SHOAL_TOKEN` and `SHOAL_WORKSPACE` (or
//! the matching flags) say which hub, who is calling, and in which workspace. Errors are one
//! line on stderr and a non-zero exit.
//!
//! # Layout
//!
//! One module per noun, each with its clap subcommands, its `run` and its JSON and table
//! helpers:
//!
//! - `workspace`: `shoal workspace`, workspaces.
//! - `model`: `shoal model`, the registry, with `alias` and `baseline`.
//! - `device`: `shoal device`, enrollment and the agent config `device add` writes.
//! - `deployment`: `shoal deployment`, model versions sent to devices.
//! - `drift`: `shoal drift`, drift reports and the monitors that raise alerts.
//! - `alert`: `shoal alert`, alerts raised by monitors.
//! - `telemetry`: `shoal telemetry`, windows from devices (`tail`, `show`).
//! - `dataset`: `shoal dataset`, versioned CSV datasets and their profiles.
//! - `experiment`: `shoal experiment`, which groups runs.
//! - `run`: `shoal run`, training runs.
//! - `sweep`: `shoal sweep`, hyperparameter sweeps.
//! - `demo`: `shoal demo`, a hub and three agents in-process (feature `demo`).
//!
//! And what several nouns share:
//!
//! - `submit`: the flags, built-in job and source snapshot of `run submit` and `sweep submit`.
//! - `args`: flag values: `KEY=VALUE` pairs and `NAME@VERSION` references.
//! - `error`: `CliError`, the one error type (a hub's refusal converts with `?`).
//! - `output`: tables and JSON (`-o table|json`), ages.
//! - `sample`: the office sensor dataset the demo and the tests train on.

mod alert;
mod args;
mod dataset;
#[cfg(feature = "demo")]
mod demo;
mod deployment;
mod device;
mod drift;
mod error;
mod experiment;
mod model;
mod output;
mod run;
mod sample;
mod submit;
mod sweep;
mod telemetry;
mod workspace;

pub use device::agent_config_toml;
pub use drift::parse_duration_ms;
pub use error::{CliError, CliResult};
pub use output::Format;
pub use sample::sensors_csv;
pub use shoal_client::{describe_status, HubClient};

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// The CA (PEM) an https:// hub's certificate must chain to (a hub started with --tls
    /// writes it to DATA_DIR/tls/ca.pem); without it, the system's roots.
    #[arg(long, global = true, env = "SHOAL_CA")]
    ca: Option<std::path::PathBuf>,
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
    Workspace(workspace::WorkspaceCommand),
    /// The model registry.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Devices and their enrollment.
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Deployments of model versions to devices.
    #[command(subcommand)]
    Deployment(deployment::DeploymentCommand),
    /// Drift of a model version's inputs and outputs on the devices.
    #[command(subcommand)]
    Drift(drift::DriftCommand),
    /// Telemetry windows from devices.
    #[command(subcommand)]
    Telemetry(telemetry::TelemetryCommand),
    /// Alerts raised by drift monitors.
    #[command(subcommand)]
    Alert(alert::AlertCommand),
    /// Versioned CSV datasets with their profiles.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Experiments, which group runs.
    #[command(subcommand)]
    Experiment(experiment::ExperimentCommand),
    /// Training runs: built-in trainers or your own scripts.
    #[command(subcommand)]
    Run(run::RunCommand),
    /// Hyperparameter sweeps over a built-in trainer.
    #[command(subcommand)]
    Sweep(sweep::SweepCommand),
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
    let mut hub =
        HubClient::connect_with(&cli.hub, cli.token.as_deref(), cli.ca.as_deref()).await?;
    let ws = cli.workspace.clone();
    let out = cli.format;
    match cli.command {
        Command::Demo { .. } => unreachable!("handled above"),
        Command::Workspace(command) => workspace::run(&mut hub, out, command).await,
        Command::Model(command) => model::run(&mut hub, &ws, out, command).await,
        Command::Device(command) => device::run(&mut hub, &ws, out, command).await,
        Command::Deployment(command) => deployment::run(&mut hub, &ws, out, command).await,
        Command::Drift(command) => drift::run(&mut hub, &ws, out, command).await,
        Command::Telemetry(command) => telemetry::run(&mut hub, &ws, out, command).await,
        Command::Alert(command) => alert::run(&mut hub, &ws, out, command).await,
        Command::Dataset(command) => dataset::run(&mut hub, &ws, out, command).await,
        Command::Experiment(command) => experiment::run(&mut hub, &ws, out, command).await,
        Command::Run(command) => run::run(&mut hub, &ws, out, command).await,
        Command::Sweep(command) => sweep::run(&mut hub, &ws, out, command).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag, overridden help text and subcommand is well formed (a mistyped id in a
    /// `mut_arg` would otherwise panic on every invocation).
    #[test]
    fn the_command_tree_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
