//! The hub's configuration, checked once at start.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::{HubError, HubResult};
pub use crate::listener::ListenerLimits;
pub use crate::tls::TlsSource;

pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7080";
/// Loopback, like the other listeners: a broker open to the network needs `--tls` (or
/// `--insecure`) and an explicit `--mqtt-listen`.
pub const DEFAULT_MQTT_LISTEN: &str = "127.0.0.1:1883";
/// The largest model an upload may carry unless configured otherwise.
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 512 * 1024 * 1024;
/// Runs the hub executes at once on its own host unless configured otherwise.
pub const DEFAULT_LOCAL_RUN_CONCURRENCY: usize = 2;
pub const DEFAULT_WORKER_HEARTBEAT_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(30);
/// Largest dataset, source snapshot or run output unless configured otherwise.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Client connections the embedded broker holds at once unless configured otherwise.
pub const DEFAULT_MQTT_MAX_CONNECTIONS: usize = 4096;
/// How long a new MQTT connection has to send its CONNECT unless configured otherwise.
pub const DEFAULT_MQTT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Limits on the embedded broker's listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttLimits {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A connection whose CONNECT has not fully arrived by then is closed.
    pub connect_timeout: std::time::Duration,
}

impl Default for MqttLimits {
    fn default() -> Self {
        MqttLimits {
            max_connections: DEFAULT_MQTT_MAX_CONNECTIONS,
            connect_timeout: DEFAULT_MQTT_CONNECT_TIMEOUT,
        }
    }
}

/// Which broker the hub and its devices use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttMode {
    /// rumqttd inside the hub, listening here.
    Embedded { listen: SocketAddr },
    /// A broker run elsewhere (Mosquitto, EMQX, …).
    External { url: MqttUrl },
}

pub use shoal_proto::mqtt_url::MqttUrl;

/// Parses a broker URL for the hub.
///
/// # Errors
/// `InvalidArgument` naming the URL and the problem.
pub fn parse_mqtt_url(url: &str) -> HubResult<MqttUrl> {
    MqttUrl::parse(url).map_err(|e| HubError::Config(format!("mqtt url '{url}': {e}")))
}

/// Everything `shoal-hub serve` needs.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Metadata (sled), artifacts, the admin token and the signing key live here.
    pub data_dir: PathBuf,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub mqtt: MqttMode,
    /// Topic prefix, so several hubs (or test runs) can share one external broker.
    pub topic_prefix: String,
    /// The broker URL written into agent configs; derived from `mqtt` when unset.
    pub advertised_mqtt_url: Option<String>,
    pub max_model_bytes: u64,
    pub shutdown_grace: std::time::Duration,
    /// How long raw telemetry windows are kept; hourly roll-ups stay longer.
    pub telemetry_retention: std::time::Duration,
    /// Runs the `local` compute target executes at once.
    pub local_run_concurrency: usize,
    /// A remote worker that has not reported for this long has lost its run.
    pub worker_heartbeat_timeout: std::time::Duration,
    /// Largest source snapshot, dataset or run output accepted.
    pub max_upload_bytes: u64,
    /// Working folders of local script runs; `None`: `{data_dir}-runs`, beside the data
    /// folder and never inside it.
    pub runs_dir: Option<PathBuf>,
    /// Refuse to start script runs where the kernel cannot hide the data folder from them
    /// (no Landlock); otherwise they run with a warning in the log.
    pub require_run_sandbox: bool,
    /// Limits on the embedded broker's listener.
    pub mqtt_limits: MqttLimits,
    /// The CA of an external `mqtts://` broker (PEM file), pinned by the hub and handed to
    /// devices; without it the system's roots are trusted.
    pub external_mqtt_ca: Option<PathBuf>,
    /// TLS on the gRPC, HTTP and embedded MQTT listeners; `None`: plaintext.
    pub tls: Option<TlsSource>,
    /// Serve plaintext on addresses other than loopback (refused without it).
    pub insecure: bool,
    /// Connection cap and deadlines of the gRPC and HTTP listeners (each has its own cap).
    pub limits: ListenerLimits,
}

impl HubConfig {
    /// The defaults: embedded broker on :1883, gRPC on :7070, HTTP on :7080.
    pub fn new(data_dir: PathBuf) -> HubConfig {
        HubConfig {
            data_dir,
            grpc_listen: parse_default(DEFAULT_GRPC_LISTEN),
            http_listen: parse_default(DEFAULT_HTTP_LISTEN),
            mqtt: MqttMode::Embedded {
                listen: parse_default(DEFAULT_MQTT_LISTEN),
            },
            topic_prefix: shoal_proto::topics::DEFAULT_PREFIX.into(),
            advertised_mqtt_url: None,
            max_model_bytes: DEFAULT_MAX_MODEL_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            telemetry_retention: shoal_fleet::telemetry::DEFAULT_RAW_RETENTION,
            local_run_concurrency: DEFAULT_LOCAL_RUN_CONCURRENCY,
            worker_heartbeat_timeout: DEFAULT_WORKER_HEARTBEAT_TIMEOUT,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            runs_dir: None,
            require_run_sandbox: false,
            mqtt_limits: MqttLimits::default(),
            external_mqtt_ca: None,
            tls: None,
            insecure: false,
            limits: ListenerLimits::default(),
        }
    }

    /// Where local script runs get their folders: `runs_dir`, or `{data_dir}-runs`.
    pub fn runs_dir(&self) -> PathBuf {
        self.runs_dir.clone().unwrap_or_else(|| {
            let mut name = self
                .data_dir
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| "shoal-hub".into());
            name.push("-runs");
            self.data_dir.with_file_name(name)
        })
    }

    /// Every listener on an ephemeral loopback port.
    pub fn for_test(data_dir: PathBuf) -> HubConfig {
        let any = parse_default("127.0.0.1:0");
        HubConfig {
            grpc_listen: any,
            http_listen: any,
            mqtt: MqttMode::Embedded { listen: any },
            shutdown_grace: std::time::Duration::from_secs(2),
            ..HubConfig::new(data_dir)
        }
    }

    /// The listeners this configuration binds, named as in messages, with their addresses.
    pub fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut listeners = vec![("gRPC", self.grpc_listen), ("HTTP", self.http_listen)];
        if let MqttMode::Embedded { listen } = &self.mqtt {
            listeners.push(("MQTT", *listen));
        }
        listeners
    }

    /// # Errors
    /// `InvalidArgument` naming the setting.
    pub fn validate(&self) -> HubResult<()> {
        if self.tls.is_none() && !self.insecure {
            if let Some((what, addr)) = self
                .listeners()
                .into_iter()
                .find(|(_, addr)| !addr.ip().is_loopback())
            {
                let flag = format!("--{}-listen", what.to_lowercase());
                return Err(HubError::Config(format!(
                    "the {what} listener {addr} ({flag}) is reachable from other machines and TLS \
                     is off: tokens, device passwords and models would cross the network in \
                     plaintext. Pass --tls (the hub creates its own CA) or --tls-cert and \
                     --tls-key, bind to loopback, or pass --insecure to serve plaintext anyway"
                )));
            }
        }
        if let Some(ca) = &self.external_mqtt_ca {
            if !matches!(&self.mqtt, MqttMode::External { url } if url.tls) {
                return Err(HubError::Config(format!(
                    "--mqtt-ca {} is for an external broker over TLS: pass --mqtt-url mqtts://…",
                    ca.display()
                )));
            }
        }
        if self.limits.max_connections == 0 {
            return Err(HubError::Config(
                "--max-connections must be at least 1".into(),
            ));
        }
        if self.limits.handshake_timeout.is_zero() || self.limits.header_timeout.is_zero() {
            return Err(HubError::Config(
                "--tls-handshake-timeout-ms and --header-timeout-ms must be above 0".into(),
            ));
        }
        if self.topic_prefix.is_empty()
            || self.topic_prefix.starts_with('/')
            || self.topic_prefix.ends_with('/')
            || self.topic_prefix.contains(['+', '#'])
        {
            return Err(HubError::Config(format!(
                "topic prefix '{}' must be non-empty, without wildcards or leading/trailing '/'",
                self.topic_prefix
            )));
        }
        if self.max_model_bytes == 0 {
            return Err(HubError::Config("max model bytes must be above 0".into()));
        }
        if self.max_upload_bytes == 0 {
            return Err(HubError::Config("max upload bytes must be above 0".into()));
        }
        if self.local_run_concurrency == 0 {
            return Err(HubError::Config(
                "local run concurrency must be at least 1".into(),
            ));
        }
        if let Some(runs) = &self.runs_dir {
            if runs.starts_with(&self.data_dir) {
                return Err(HubError::Config(format!(
                    "the runs folder {} is inside the data folder {}: runs must not see the \
                     hub's keys (choose another --runs-dir)",
                    runs.display(),
                    self.data_dir.display()
                )));
            }
        }
        if self.mqtt_limits.max_connections == 0 || self.mqtt_limits.connect_timeout.is_zero() {
            return Err(HubError::Config(
                "the MQTT connection cap and CONNECT timeout must be above 0".into(),
            ));
        }
        if self.worker_heartbeat_timeout.is_zero() {
            return Err(HubError::Config(
                "the worker heartbeat timeout must be above 0".into(),
            ));
        }
        Ok(())
    }
}

fn parse_default(addr: &str) -> SocketAddr {
    addr.parse()
        .expect("default listen addresses are valid socket addresses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_wildcard_prefixes() {
        let mut config = HubConfig::for_test("/tmp/x".into());
        config.topic_prefix = "a/+/b".into();
        assert!(config.validate().is_err());
        config.topic_prefix = "t-1/shoal/v1".into();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn plaintext_off_loopback_needs_tls_or_insecure() {
        for (grpc, http, mqtt, what) in [
            (
                "0.0.0.0:0",
                "127.0.0.1:0",
                "127.0.0.1:0",
                "gRPC listener 0.0.0.0:0 (--grpc-listen)",
            ),
            (
                "127.0.0.1:0",
                "[::]:0",
                "127.0.0.1:0",
                "HTTP listener [::]:0 (--http-listen)",
            ),
            (
                "127.0.0.1:0",
                "127.0.0.1:0",
                "10.1.2.3:1883",
                "MQTT listener 10.1.2.3:1883 (--mqtt-listen)",
            ),
        ] {
            let mut config = HubConfig::for_test("/tmp/x".into());
            config.grpc_listen = grpc.parse().unwrap();
            config.http_listen = http.parse().unwrap();
            config.mqtt = MqttMode::Embedded {
                listen: mqtt.parse().unwrap(),
            };
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(what), "{error}");
            assert!(
                error.contains("--tls") && error.contains("--insecure"),
                "{error}"
            );
            config.insecure = true;
            assert!(config.validate().is_ok());
            config.insecure = false;
            config.tls = Some(TlsSource::Generated { extra_sans: vec![] });
            assert!(config.validate().is_ok());
        }
        let mut loopback = HubConfig::for_test("/tmp/x".into());
        loopback.http_listen = "[::1]:0".parse().unwrap();
        assert!(loopback.validate().is_ok(), "loopback needs no flag");
        assert!(
            HubConfig::new("/tmp/x".into()).validate().is_ok(),
            "nor do the defaults"
        );
    }
}
