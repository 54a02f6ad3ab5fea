//! The `shoal-agent` command line: loads the configuration, runs the agent until SIGTERM or
//! SIGINT. The binary's `main` is [`main_entry`]; so is that of any test binary that needs a
//! real agent process to kill.
//!
//! Exit codes: 0 after a clean shutdown, 64 (EX_USAGE) for an unusable configuration, 1 when
//! the agent cannot start or fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::EXAMPLE_CONFIG;
use crate::{Agent, AgentConfig, Overrides};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// EX_USAGE from sysexits.h.
const EXIT_USAGE: u8 = 64;
/// How long blocking work (an inference in flight) may delay the exit.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Parser)]
#[command(name = "shoal-agent", version, about = "Shoal's device agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the agent until SIGTERM or SIGINT.
    Run {
        /// The configuration file (`shoal device add ID --output agent.toml` writes one).
        #[arg(long, env = "SHOAL_AGENT_CONFIG")]
        config: PathBuf,
        /// Overrides `agent.data_dir`.
        #[arg(long, env = "SHOAL_AGENT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Overrides `agent.http_listen`; port 0 picks a free port.
        #[arg(long, env = "SHOAL_AGENT_HTTP_LISTEN")]
        http_listen: Option<SocketAddr>,
        /// Overrides `hub.mqtt_url` (mqtt://host:port).
        #[arg(long, env = "SHOAL_AGENT_MQTT_URL")]
        mqtt_url: Option<String>,
    },
    /// Prints a commented example configuration.
    PrintDefaultConfig,
}

/// Parses the command line and runs it; returns the process exit code.
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::PrintDefaultConfig => {
            print!("{EXAMPLE_CONFIG}");
            ExitCode::SUCCESS
        }
        Command::Run {
            config,
            data_dir,
            http_listen,
            mqtt_url,
        } => {
            init_tracing();
            let overrides = Overrides {
                data_dir,
                http_listen,
                mqtt_url,
            };
            let config = match AgentConfig::load(&config, &overrides) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("shoal-agent: invalid configuration: {error}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            match run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "shoal-agent failed");
                    eprintln!("shoal-agent: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(config: AgentConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("shoal-agent")
        .build()?;
    let result = runtime.block_on(async {
        let agent = Agent::bind(config).await?;
        agent.run(crate::shutdown::signal()).await
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    Ok(result?)
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
