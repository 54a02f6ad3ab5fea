//! `shoal-hub`: serves the registry, fleet and deployments; see `shoal-hub serve --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shoal_hub::{Hub, HubConfig, MqttMode};

/// EX_USAGE: the configuration was wrong.
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "shoal-hub",
    version,
    about = "Shoal hub: model registry, fleet, deployments, embedded MQTT broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves gRPC, HTTP and MQTT until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Runs queued `--compute worker` runs of a hub on this machine.
    Worker(WorkerArgs),
}

#[derive(clap::Args)]
struct WorkerArgs {
    /// The hub's gRPC address.
    #[arg(long, env = "SHOAL_HUB", default_value = "http://127.0.0.1:7070")]
    hub: String,
    /// A worker token (`shoal token create w1 --role worker`): it leases and reports runs and
    /// nothing else; each run gets a token of its own from the hub.
    #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// This worker's id (default: the host name and process id).
    #[arg(long)]
    id: Option<String>,
    /// Labels runs can ask for (`--labels gpu,arm`).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Where runs are unpacked and executed.
    #[arg(long, default_value = "./shoal-worker")]
    work_dir: PathBuf,
    /// The CA (PEM) an https:// hub's certificate must chain to (a hub started with --tls
    /// writes it to DATA_DIR/tls/ca.pem); without it, the system's roots.
    #[arg(long, env = "SHOAL_CA")]
    ca: Option<PathBuf>,
}

async fn worker(args: WorkerArgs, shutdown: impl std::future::Future<Output = ()>) -> ExitCode {
    let id = args.id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let config = shoal_worker::WorkerConfig {
        hub_url: args.hub,
        token: args.token,
        ca: args.ca,
        worker_id: id.clone(),
        labels: args.labels,
        work_dir: args.work_dir,
    };
    eprintln!(
        "shoal-hub worker {id}: serving runs from {}",
        config.hub_url
    );
    match shoal_worker::run_worker(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shoal-hub worker: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Where metadata, artifacts, the admin token and the signing key live.
    #[arg(long, env = "SHOAL_DATA_DIR", default_value = "./shoal-hub-data")]
    data_dir: PathBuf,
    #[arg(long, default_value = shoal_hub::config::DEFAULT_GRPC_LISTEN)]
    grpc_listen: SocketAddr,
    #[arg(long, default_value = shoal_hub::config::DEFAULT_HTTP_LISTEN)]
    http_listen: SocketAddr,
    /// Listen address of the embedded MQTT broker.
    #[arg(long, default_value = shoal_hub::config::DEFAULT_MQTT_LISTEN, conflicts_with = "mqtt_url")]
    mqtt_listen: SocketAddr,
    /// Use this external broker (mqtt://[user:pass@]host:port) instead of the embedded one.
    #[arg(long)]
    mqtt_url: Option<String>,
    /// The broker URL written into agent configs (default: derived from the listen address).
    #[arg(long)]
    advertise_mqtt_url: Option<String>,
    /// Topic prefix, to share a broker between hubs.
    #[arg(long, default_value = shoal_proto::topics::DEFAULT_PREFIX)]
    topic_prefix: String,
    /// The largest model an upload may carry.
    #[arg(long, default_value_t = shoal_hub::config::DEFAULT_MAX_MODEL_BYTES)]
    max_model_bytes: u64,
    /// Hours raw telemetry windows are kept (hourly roll-ups stay).
    #[arg(long, default_value_t = 7 * 24)]
    telemetry_retention_hours: u64,
    /// Runs executed at once on this host (`--compute local`).
    #[arg(long, default_value_t = shoal_hub::config::DEFAULT_LOCAL_RUN_CONCURRENCY)]
    local_run_concurrency: usize,
    /// Seconds without a report after which a remote worker's run is failed.
    #[arg(long, default_value_t = 30)]
    worker_heartbeat_timeout_secs: u64,
    /// The largest dataset, source snapshot or run output an upload may carry.
    #[arg(long, default_value_t = shoal_hub::config::DEFAULT_MAX_UPLOAD_BYTES)]
    max_upload_bytes: u64,
    /// Working folders of local script runs (default: the data folder's path plus `-runs`).
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// Refuse script runs where the kernel cannot hide the data folder from them (Landlock).
    #[arg(long)]
    require_run_sandbox: bool,
    /// MQTT connections the embedded broker holds at once; more are closed at once.
    #[arg(long, default_value_t = shoal_hub::config::DEFAULT_MQTT_MAX_CONNECTIONS)]
    mqtt_max_connections: usize,
    /// Seconds a new MQTT connection has to send its CONNECT before it is closed.
    #[arg(long, default_value_t = shoal_hub::config::DEFAULT_MQTT_CONNECT_TIMEOUT.as_secs())]
    mqtt_connect_timeout_secs: u64,
    /// TLS on gRPC, HTTP and MQTT. Without --tls-cert, the hub creates its own CA in
    /// DATA_DIR/tls on first start and issues its server certificate from it.
    #[arg(long)]
    tls: bool,
    /// Another name or address for the generated server certificate (repeatable); localhost,
    /// 127.0.0.1, ::1 and the host name are always in it.
    #[arg(
        long = "tls-san",
        value_name = "NAME",
        requires = "tls",
        conflicts_with = "tls_cert"
    )]
    tls_sans: Vec<String>,
    /// Your own server certificate chain (PEM) instead of the generated one; implies --tls.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) devices and clients are given to trust, when it is not the
    /// last certificate of --tls-cert's chain.
    #[arg(long, requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Serve plaintext on addresses other than loopback (refused otherwise).
    #[arg(long, conflicts_with_all = ["tls", "tls_cert"])]
    insecure: bool,
    /// The CA (PEM) of the external broker of an mqtts:// --mqtt-url (default: system roots).
    #[arg(long, requires = "mqtt_url")]
    mqtt_ca: Option<PathBuf>,
    /// Connections the gRPC listener, and the HTTP listener, each serve at once; more are
    /// closed as they arrive.
    #[arg(long, default_value_t = shoal_hub::listener::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Milliseconds a client has to finish its TLS handshake.
    #[arg(long, default_value_t = shoal_hub::listener::DEFAULT_HANDSHAKE_TIMEOUT.as_millis() as u64)]
    tls_handshake_timeout_ms: u64,
    /// Milliseconds a client has to send a request's headers (HTTP) or its HTTP/2 preface
    /// (gRPC).
    #[arg(long, default_value_t = shoal_hub::listener::DEFAULT_HEADER_TIMEOUT.as_millis() as u64)]
    header_timeout_ms: u64,
}

fn build_config(args: ServeArgs) -> Result<HubConfig, shoal_hub::HubError> {
    let mut config = HubConfig::new(args.data_dir);
    config.grpc_listen = args.grpc_listen;
    config.http_listen = args.http_listen;
    config.mqtt = match args.mqtt_url {
        Some(url) => MqttMode::External {
            url: shoal_hub::config::parse_mqtt_url(&url)?,
        },
        None => MqttMode::Embedded {
            listen: args.mqtt_listen,
        },
    };
    config.advertised_mqtt_url = args.advertise_mqtt_url;
    config.topic_prefix = args.topic_prefix;
    config.max_model_bytes = args.max_model_bytes;
    config.telemetry_retention =
        std::time::Duration::from_secs(args.telemetry_retention_hours * 3600);
    config.local_run_concurrency = args.local_run_concurrency;
    config.worker_heartbeat_timeout =
        std::time::Duration::from_secs(args.worker_heartbeat_timeout_secs);
    config.max_upload_bytes = args.max_upload_bytes;
    config.runs_dir = args.runs_dir;
    config.require_run_sandbox = args.require_run_sandbox;
    config.mqtt_limits = shoal_hub::config::MqttLimits {
        max_connections: args.mqtt_max_connections,
        connect_timeout: std::time::Duration::from_secs(args.mqtt_connect_timeout_secs),
    };
    config.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(shoal_hub::config::TlsSource::Files {
            cert,
            key,
            ca: args.tls_ca,
        }),
        _ if args.tls => Some(shoal_hub::config::TlsSource::Generated {
            extra_sans: args.tls_sans,
        }),
        _ => None,
    };
    config.insecure = args.insecure;
    config.external_mqtt_ca = args.mqtt_ca;
    config.limits = shoal_hub::config::ListenerLimits {
        max_connections: args.max_connections,
        handshake_timeout: std::time::Duration::from_millis(args.tls_handshake_timeout_ms),
        header_timeout: std::time::Duration::from_millis(args.header_timeout_ms),
    };
    config.validate()?;
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rumqttd=off".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let command = Cli::parse().command;
    // Listen for SIGTERM/SIGINT before anything else, so a signal during start-up begins a
    // graceful shutdown instead of killing the process.
    let shutdown = shoal_hub::shutdown::signal();
    let args = match command {
        Command::Serve(args) => *args,
        Command::Worker(args) => return worker(args, shutdown).await,
    };
    let config = match build_config(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("shoal-hub: invalid configuration: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let hub = match Hub::bind(config).await {
        Ok(hub) => hub,
        Err(error) => {
            eprintln!("shoal-hub: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "shoal-hub: gRPC {} · HTTP {} · MQTT {} · admin token in {}",
        hub.grpc_addr(),
        hub.http_addr(),
        hub.advertised_mqtt_url(),
        hub.admin_token_path().display()
    );
    if hub.scheme() == "https" {
        match hub.ca_path() {
            Some(ca) => eprintln!(
                "shoal-hub: TLS on every listener; clients trust {} (export SHOAL_CA={}; SHOAL_HUB=https://…)",
                ca.display(),
                ca.display()
            ),
            None => eprintln!("shoal-hub: TLS on every listener with the given certificate"),
        }
    }
    match hub.run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shoal-hub: {error}");
            ExitCode::FAILURE
        }
    }
}
