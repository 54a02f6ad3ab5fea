//! The `shoal` command line: `az ml`-style nouns and verbs over the hub's gRPC API.
//!
//! Every listing takes `-o table|json`; `SHOAL_HUB`, `SHOAL_TOKEN`, `SHOAL_WORKSPACE` and
//! `SHOAL_CA` (or the matching flags, or the config file `shoal login` writes) say which hub,
//! who is calling, in which workspace, and which CA signs the hub's certificate ([`Settings`]).
//! Errors are one line on stderr and a non-zero exit.
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
//! - `secret`: `shoal secret`, workspace secrets (values in, names out).
//! - `token`: `shoal token`, API tokens and their roles; `audit`: `shoal audit`, the audit log.
//! - `login`: `shoal login` and the config file it writes.
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
mod broker;
pub use broker::mosquitto_config;
mod audit;
mod dataset;
#[cfg(feature = "demo")]
mod demo;
mod deployment;
mod device;
mod drift;
mod error;
mod experiment;
pub mod login;
mod model;
mod output;
mod run;
mod sample;
mod secret;
mod submit;
mod sweep;
mod telemetry;
mod token;
mod workspace;

pub use device::agent_config_toml;
pub use drift::parse_duration_ms;
pub use error::{CliError, CliResult};
pub use output::Format;
pub use sample::sensors_csv;
pub use shoal_client::{describe_status, HubClient};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Shoal: train, ship and watch ML models on fleets of edge devices"
)]
pub struct Cli {
    /// The hub's gRPC address [default: the config file's, else http://127.0.0.1:7070].
    #[arg(long, global = true, env = "SHOAL_HUB")]
    hub: Option<String>,
    /// API token (the hub writes its admin token to DATA_DIR/admin.token; `shoal token
    /// create` makes others) [default: the config file's].
    #[arg(long, global = true, env = "SHOAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The workspace to act in [default: the config file's, else default].
    #[arg(long, short = 'w', global = true, env = "SHOAL_WORKSPACE")]
    workspace: Option<String>,
    /// CA bundle that signs the hub's certificate [default: the config file's].
    #[arg(long, global = true, env = "SHOAL_CA")]
    ca: Option<PathBuf>,
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
    /// Workspace secrets, for runs (`--secret`); values are never shown.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Configuration for an external MQTT broker (Mosquitto).
    #[command(subcommand)]
    Broker(broker::BrokerCommand),
    /// API tokens for people and machines, with a role per workspace.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// The audit log: who changed what, when, and with which result.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Checks a hub and token (`--hub URL --token T [--ca FILE]`) and saves them, with the
    /// workspace (`-w`), in the config file that later commands read.
    Login,
}

/// Default hub address when neither flags, environment nor the config file name one.
pub const DEFAULT_HUB: &str = "http://127.0.0.1:7070";

/// What the CLI calls with, resolved from flags and environment (clap merges those two) over
/// the config file, over the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub hub: String,
    pub token: Option<String>,
    pub workspace: String,
    /// The CA bundle that signs the hub's certificate, for TLS connections.
    pub ca: Option<PathBuf>,
    /// The config file these came from (where `shoal login` writes).
    pub config_path: Option<PathBuf>,
}

impl Settings {
    /// Flags and environment win over the config file, which wins over the defaults.
    pub fn resolve(
        hub: Option<String>,
        token: Option<String>,
        workspace: Option<String>,
        ca: Option<PathBuf>,
        file: login::ConfigFile,
        config_path: Option<PathBuf>,
    ) -> Settings {
        Settings {
            hub: hub.or(file.hub).unwrap_or_else(|| DEFAULT_HUB.to_string()),
            token: token.or(file.token),
            workspace: workspace
                .or(file.workspace)
                .unwrap_or_else(|| "default".to_string()),
            ca: ca.or(file.ca),
            config_path,
        }
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
    let config_path = login::config_path(&|name| std::env::var(name).ok());
    let file = match &config_path {
        Some(path) => login::load(path)?,
        None => login::ConfigFile::default(),
    };
    let logging_in = matches!(cli.command, Command::Login);
    let settings = Settings::resolve(
        cli.hub.clone(),
        cli.token.clone(),
        cli.workspace.clone(),
        cli.ca.clone(),
        // `shoal login` checks what it is given, not what the file said before.
        if logging_in {
            login::ConfigFile::default()
        } else {
            file
        },
        config_path,
    );
    let mut hub = HubClient::connect_with(
        &settings.hub,
        settings.token.as_deref(),
        settings.ca.as_deref(),
    )
    .await?;
    let ws = settings.workspace.clone();
    let out = cli.format;
    match cli.command {
        Command::Demo { .. } => unreachable!("handled above"),
        Command::Login => login_and_save(&mut hub, &settings, cli.workspace.is_some()).await,
        Command::Token(command) => token::run(&mut hub, &ws, out, command).await,
        Command::Audit(command) => audit::run(&mut hub, out, command).await,
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
        Command::Secret(command) => secret::run(&mut hub, &ws, out, command).await,
        Command::Broker(command) => broker::run(&mut hub, command).await,
    }
}

/// `shoal login`: asks the hub who the token is, then saves hub, token, CA and workspace.
async fn login_and_save(
    hub: &mut HubClient,
    settings: &Settings,
    workspace_given: bool,
) -> CliResult<()> {
    let Some(token) = settings.token.clone() else {
        return Err(CliError::Message(
            "shoal login needs a token: shoal login --hub URL --token T [--ca FILE]".into(),
        ));
    };
    let Some(path) = settings.config_path.clone() else {
        return Err(CliError::Message(
            "no place for the config file: set SHOAL_CONFIG, XDG_CONFIG_HOME or HOME".into(),
        ));
    };
    let who = hub
        .access
        .who_am_i(shoal_proto::access::WhoAmIRequest {})
        .await?
        .into_inner()
        .token
        .unwrap_or_default();
    let config = login::ConfigFile {
        hub: Some(settings.hub.clone()),
        token: Some(token),
        ca: settings.ca.clone(),
        workspace: workspace_given.then(|| settings.workspace.clone()),
    };
    login::save(&path, &config)?;
    eprintln!(
        "logged in to {} as {} ({}); saved in {}",
        settings.hub,
        who.name,
        who.role,
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_and_environment_win_over_the_config_file() {
        let file = login::ConfigFile {
            hub: Some("http://file:7070".into()),
            token: Some("file-token".into()),
            ca: Some("/file/ca.pem".into()),
            workspace: Some("occ".into()),
        };
        let from_file = Settings::resolve(None, None, None, None, file.clone(), None);
        assert_eq!(from_file.hub, "http://file:7070");
        assert_eq!(from_file.token.as_deref(), Some("file-token"));
        assert_eq!(from_file.workspace, "occ");
        assert_eq!(from_file.ca, Some(PathBuf::from("/file/ca.pem")));
        let flags = Settings::resolve(
            Some("http://flag:7070".into()),
            Some("flag-token".into()),
            Some("lab".into()),
            Some("/flag/ca.pem".into()),
            file,
            None,
        );
        assert_eq!(flags.hub, "http://flag:7070");
        assert_eq!(flags.token.as_deref(), Some("flag-token"));
        assert_eq!(flags.workspace, "lab");
        assert_eq!(flags.ca, Some(PathBuf::from("/flag/ca.pem")));
        let defaults = Settings::resolve(None, None, None, None, Default::default(), None);
        assert_eq!(defaults.hub, DEFAULT_HUB);
        assert_eq!(defaults.workspace, "default");
        assert_eq!(defaults.token, None);
    }

    /// Every flag, overridden help text and subcommand is well formed (a mistyped id in a
    /// `mut_arg` would otherwise panic on every invocation).
    #[test]
    fn the_command_tree_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
