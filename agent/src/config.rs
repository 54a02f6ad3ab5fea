//! The agent's configuration: the TOML file `shoal device add` writes, and its checked form.
//!
//! The file deserializes into [`AgentConfigFile`] (raw, `deny_unknown_fields`), command-line
//! flags arrive as [`Overrides`], and [`AgentConfigFile::build_and_validate`] turns both into an
//! [`AgentConfig`] whose every field has been parsed and checked. Nothing downstream re-validates.
//!
//! # Command-line flags and environment variables
//!
//! | flag            | environment variable       | overrides            |
//! |-----------------|----------------------------|----------------------|
//! | `--config`      | `SHOAL_AGENT_CONFIG`       | (the file itself)    |
//! | `--data-dir`    | `SHOAL_AGENT_DATA_DIR`     | `agent.data_dir`     |
//! | `--http-listen` | `SHOAL_AGENT_HTTP_LISTEN`  | `agent.http_listen`  |
//! | `--mqtt-url`    | `SHOAL_AGENT_MQTT_URL`     | `hub.mqtt_url`       |

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use shoal_proto::mqtt_url::MqttUrl;
use thiserror::Error;

use crate::buffer::BufferConfig;

/// The commented example configuration, printed by `shoal-agent print-default-config`.
pub const EXAMPLE_CONFIG: &str = include_str!("../agent.example.toml");

/// The only version of the file format so far.
pub const CONFIG_FORMAT_VERSION: u32 = 1;
/// Where models and downloads live unless configured otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/shoal-agent";
/// The local inference API listens on loopback only unless configured otherwise.
pub const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8081));
/// How many bytes one blob request asks for.
pub const DEFAULT_DOWNLOAD_WINDOW_BYTES: u64 = 256 * 1024;
/// Bounds on the window: below a chunk it makes no sense, above this it floods small brokers.
pub const MIN_DOWNLOAD_WINDOW_BYTES: u64 = 1024;
pub const MAX_DOWNLOAD_WINDOW_BYTES: u64 = 64 * 1024 * 1024;
/// How long the agent waits for the next chunk before asking again.
pub const DEFAULT_CHUNK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one telemetry window lasts.
pub const DEFAULT_TELEMETRY_WINDOW: Duration = Duration::from_secs(60);
/// Shorter windows are for tests; below this the per-window overhead dominates.
pub const MIN_TELEMETRY_WINDOW: Duration = Duration::from_millis(100);
/// Longer windows would keep a closed window's counts off the hub for more than a day.
pub const MAX_TELEMETRY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// What the telemetry buffer may hold before it drops the oldest windows.
pub const DEFAULT_TELEMETRY_BUFFER_MAX_BYTES: u64 = crate::buffer::DEFAULT_MAX_BYTES;
/// A few windows at least must fit.
pub const MIN_TELEMETRY_BUFFER_MAX_BYTES: u64 = 4 * 1024;
/// How long a window may wait for the hub before it is dropped (and counted).
pub const DEFAULT_TELEMETRY_BUFFER_MAX_AGE: Duration = crate::buffer::DEFAULT_MAX_AGE;
/// How long a published window waits for the hub's acknowledgement before it is sent again.
pub const DEFAULT_TELEMETRY_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The port of `mqtt://host` without one.
pub const DEFAULT_MQTT_PORT: u16 = shoal_proto::mqtt_url::DEFAULT_PORT;

/// Why a configuration cannot be used. Every message names the field and the problem.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{location}: {message}")]
    Parse { location: String, message: String },
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

pub type ConfigResult<T> = Result<T, ConfigError>;

fn invalid(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// The configuration file as written (by `shoal device add` or by hand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfigFile {
    /// The file format version; lets the format evolve. Must be 1.
    pub version: u32,
    pub device: DeviceSection,
    pub hub: HubSection,
    /// Local tuning; every field has a default.
    #[serde(default, skip_serializing_if = "AgentSection::is_empty")]
    pub agent: AgentSection,
}

/// Who this device is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    /// The device id, one MQTT topic level.
    pub id: String,
    /// The workspace the device belongs to, one MQTT topic level.
    pub workspace: String,
}

/// How to reach and trust the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    /// `mqtt://host:port` (plain TCP; the port defaults to 1883) or `mqtts://host:port` (TLS;
    /// 8883).
    pub mqtt_url: String,
    /// The device's own broker credentials; an empty username connects without credentials.
    pub mqtt_username: String,
    pub mqtt_password: String,
    /// The topic prefix the hub uses, such as `shoal/v1`.
    pub topic_prefix: String,
    /// The hub's ed25519 verifying key, 64 hex characters: every manifest must verify against it.
    pub public_key: String,
    /// The CA certificate (PEM) the broker's TLS certificate must chain to: with it, no other
    /// CA is trusted; without it, an `mqtts://` broker is checked against the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// Local settings with defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_window_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_rate_limit_bytes_per_sec: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_window_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_buffer_max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_buffer_max_age_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_ack_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_rate_limit_bytes_per_sec: Option<u64>,
}

impl AgentSection {
    fn is_empty(&self) -> bool {
        *self == AgentSection::default()
    }
}

/// Values given on the command line; each wins over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub http_listen: Option<SocketAddr>,
    pub mqtt_url: Option<String>,
}

/// Where the broker is and who the agent is to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    /// `None`: connect without credentials.
    pub credentials: Option<(String, String)>,
    pub topic_prefix: String,
    /// `Some` for `mqtts://`: the TLS settings (the pinned CA, or the system's roots).
    pub tls: Option<TlsSettings>,
}

/// The rustls client settings of an `mqtts://` connection, built and checked once.
#[derive(Debug, Clone)]
pub struct TlsSettings(pub std::sync::Arc<rustls::ClientConfig>);

impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TlsSettings {}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub device_id: String,
    pub workspace: String,
    pub mqtt: MqttConfig,
    /// Every manifest must carry a signature this key verifies.
    pub hub_public_key: VerifyingKey,
    pub data_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub download_window_bytes: u64,
    pub chunk_timeout: Duration,
    /// 0: unlimited.
    pub download_rate_limit_bytes_per_sec: u64,
    pub telemetry: TelemetryConfig,
}

/// How telemetry windows are cut, kept and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// How long one window lasts.
    pub window: Duration,
    /// The store-and-forward buffer's byte cap and age limit.
    pub buffer: BufferConfig,
    /// How long a published window waits for the hub's acknowledgement before it is re-sent.
    pub ack_timeout: Duration,
    /// Caps the average upload speed of windows. 0: unlimited.
    pub rate_limit_bytes_per_sec: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            window: DEFAULT_TELEMETRY_WINDOW,
            buffer: BufferConfig::default(),
            ack_timeout: DEFAULT_TELEMETRY_ACK_TIMEOUT,
            rate_limit_bytes_per_sec: 0,
        }
    }
}

// === impl AgentConfigFile ===

impl AgentConfigFile {
    /// Parses the TOML text of a configuration file.
    ///
    /// # Errors
    /// `Parse` with `origin:line:column` and the TOML error on one line.
    pub fn parse(text: &str, origin: &str) -> ConfigResult<AgentConfigFile> {
        toml::from_str(text).map_err(|error: toml::de::Error| {
            let location = match error.span() {
                Some(span) => {
                    let (line, column) = line_and_column(text, span.start);
                    format!("{origin}:{line}:{column}")
                }
                None => origin.to_string(),
            };
            ConfigError::Parse {
                location,
                message: error.message().trim().replace('\n', " "),
            }
        })
    }

    /// Checks every field, applies the command-line overrides and the defaults.
    ///
    /// # Errors
    /// `Invalid` naming the first field that is wrong and why.
    pub fn build_and_validate(self, overrides: &Overrides) -> ConfigResult<AgentConfig> {
        if self.version != CONFIG_FORMAT_VERSION {
            return Err(invalid(
                "version",
                format!("expected {CONFIG_FORMAT_VERSION}, got {}", self.version),
            ));
        }
        check_segment("device.id", &self.device.id)?;
        check_segment("device.workspace", &self.device.workspace)?;

        let mqtt_url = overrides.mqtt_url.as_deref().unwrap_or(&self.hub.mqtt_url);
        let url = parse_mqtt_url(mqtt_url)?;
        let tls = tls_settings(url.tls, self.hub.ca_pem.as_deref())?;
        check_topic_prefix(&self.hub.topic_prefix)?;
        let credentials = if self.hub.mqtt_username.is_empty() {
            None
        } else {
            Some((self.hub.mqtt_username, self.hub.mqtt_password))
        };
        let hub_public_key = parse_public_key(&self.hub.public_key)?;

        let agent = self.agent;
        let download_window_bytes = agent
            .download_window_bytes
            .unwrap_or(DEFAULT_DOWNLOAD_WINDOW_BYTES);
        if !(MIN_DOWNLOAD_WINDOW_BYTES..=MAX_DOWNLOAD_WINDOW_BYTES).contains(&download_window_bytes)
        {
            return Err(invalid(
                "agent.download_window_bytes",
                format!(
                    "expected between {MIN_DOWNLOAD_WINDOW_BYTES} and {MAX_DOWNLOAD_WINDOW_BYTES}, got {download_window_bytes}"
                ),
            ));
        }
        let telemetry = telemetry_config(&agent)?;
        let chunk_timeout = match agent.chunk_timeout_ms {
            None => DEFAULT_CHUNK_TIMEOUT,
            Some(0) => return Err(invalid("agent.chunk_timeout_ms", "must be greater than 0")),
            Some(ms) => Duration::from_millis(ms),
        };
        let data_dir = overrides
            .data_dir
            .clone()
            .or(agent.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("agent.data_dir", "must not be empty"));
        }
        let http_listen = overrides
            .http_listen
            .or(agent.http_listen)
            .unwrap_or(DEFAULT_HTTP_LISTEN);
        Ok(AgentConfig {
            device_id: self.device.id,
            workspace: self.device.workspace,
            mqtt: MqttConfig {
                host: url.host,
                port: url.port,
                credentials,
                topic_prefix: self.hub.topic_prefix,
                tls,
            },
            hub_public_key,
            data_dir,
            http_listen,
            download_window_bytes,
            chunk_timeout,
            download_rate_limit_bytes_per_sec: agent.download_rate_limit_bytes_per_sec.unwrap_or(0),
            telemetry,
        })
    }
}

/// The checked telemetry settings of the `[agent]` section.
fn telemetry_config(agent: &AgentSection) -> ConfigResult<TelemetryConfig> {
    let window = match agent.telemetry_window_ms {
        None => DEFAULT_TELEMETRY_WINDOW,
        Some(ms) => {
            let window = Duration::from_millis(ms);
            if !(MIN_TELEMETRY_WINDOW..=MAX_TELEMETRY_WINDOW).contains(&window) {
                return Err(invalid(
                    "agent.telemetry_window_ms",
                    format!(
                        "expected between {} and {}, got {ms}",
                        MIN_TELEMETRY_WINDOW.as_millis(),
                        MAX_TELEMETRY_WINDOW.as_millis()
                    ),
                ));
            }
            window
        }
    };
    let max_bytes = agent
        .telemetry_buffer_max_bytes
        .unwrap_or(DEFAULT_TELEMETRY_BUFFER_MAX_BYTES);
    if max_bytes < MIN_TELEMETRY_BUFFER_MAX_BYTES {
        return Err(invalid(
            "agent.telemetry_buffer_max_bytes",
            format!("expected at least {MIN_TELEMETRY_BUFFER_MAX_BYTES}, got {max_bytes}"),
        ));
    }
    let max_age = match agent.telemetry_buffer_max_age_secs {
        None => DEFAULT_TELEMETRY_BUFFER_MAX_AGE,
        Some(0) => {
            return Err(invalid(
                "agent.telemetry_buffer_max_age_secs",
                "must be greater than 0",
            ))
        }
        Some(secs) => Duration::from_secs(secs),
    };
    let ack_timeout = match agent.telemetry_ack_timeout_ms {
        None => DEFAULT_TELEMETRY_ACK_TIMEOUT,
        Some(0) => {
            return Err(invalid(
                "agent.telemetry_ack_timeout_ms",
                "must be greater than 0",
            ))
        }
        Some(ms) => Duration::from_millis(ms),
    };
    Ok(TelemetryConfig {
        window,
        buffer: BufferConfig {
            max_bytes,
            max_age,
            ..BufferConfig::default()
        },
        ack_timeout,
        rate_limit_bytes_per_sec: agent.telemetry_rate_limit_bytes_per_sec.unwrap_or(0),
    })
}

// === impl AgentConfig ===

impl AgentConfig {
    /// Reads, parses and checks a configuration file.
    ///
    /// # Errors
    /// `Read` when the file cannot be read, `Parse` for bad TOML or unknown fields, `Invalid`
    /// for a value that is wrong.
    pub fn load(path: &Path, overrides: &Overrides) -> ConfigResult<AgentConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        AgentConfigFile::parse(&text, &path.display().to_string())?.build_and_validate(overrides)
    }
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn check_segment(field: &'static str, value: &str) -> ConfigResult<()> {
    if shoal_proto::topics::is_valid_segment(value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("'{value}' must be 1 to 64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

fn check_topic_prefix(prefix: &str) -> ConfigResult<()> {
    const FIELD: &str = "hub.topic_prefix";
    if prefix.is_empty() {
        return Err(invalid(FIELD, "must not be empty"));
    }
    if prefix.starts_with('/') || prefix.ends_with('/') {
        return Err(invalid(
            FIELD,
            format!("'{prefix}' must not start or end with '/'"),
        ));
    }
    if prefix.contains(['+', '#']) || prefix.chars().any(char::is_control) {
        return Err(invalid(
            FIELD,
            format!("'{prefix}' must not contain MQTT wildcards or control characters"),
        ));
    }
    Ok(())
}

/// Splits `mqtt://host[:port]` (or `tcp://`) into host and port. Credentials belong in
/// `hub.mqtt_username` and `hub.mqtt_password`, not in the URL.
fn parse_mqtt_url(url: &str) -> ConfigResult<MqttUrl> {
    const FIELD: &str = "hub.mqtt_url";
    let parsed = MqttUrl::parse(url).map_err(|e| invalid(FIELD, e.0))?;
    if parsed.username.is_some() {
        return Err(invalid(
            FIELD,
            "put credentials in hub.mqtt_username and hub.mqtt_password, not in the url",
        ));
    }
    Ok(parsed)
}

/// The TLS settings of a broker URL: a pinned CA only with `mqtts://`.
fn tls_settings(tls: bool, ca_pem: Option<&str>) -> ConfigResult<Option<TlsSettings>> {
    match (tls, ca_pem) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(invalid(
            "hub.ca_pem",
            "a CA is pinned but hub.mqtt_url is plaintext mqtt://; use mqtts://",
        )),
        (true, ca) => shoal_proto::tls::client_config(ca)
            .map(|config| Some(TlsSettings(config)))
            .map_err(|e| {
                invalid(
                    if ca.is_some() {
                        "hub.ca_pem"
                    } else {
                        "hub.mqtt_url"
                    },
                    e,
                )
            }),
    }
}

fn parse_public_key(text: &str) -> ConfigResult<VerifyingKey> {
    const FIELD: &str = "hub.public_key";
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            FIELD,
            format!("expected 64 hex characters, got {} characters", text.len()),
        ));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|e| invalid(FIELD, format!("expected 64 hex characters: {e}")))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| invalid(FIELD, "not a valid ed25519 public key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn file() -> AgentConfigFile {
        AgentConfigFile {
            version: 1,
            device: DeviceSection {
                id: "cam-01".into(),
                workspace: "default".into(),
            },
            hub: HubSection {
                mqtt_url: "mqtt://127.0.0.1:1884".into(),
                mqtt_username: "cam-01".into(),
                mqtt_password: "secret".into(),
                topic_prefix: "shoal/v1".into(),
                public_key: KEY.into(),
                ca_pem: None,
            },
            agent: AgentSection::default(),
        }
    }

    fn error_of(file: AgentConfigFile) -> String {
        file.build_and_validate(&Overrides::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_fill_the_agent_section() {
        let config = file().build_and_validate(&Overrides::default()).unwrap();
        assert_eq!(config.mqtt.host, "127.0.0.1");
        assert_eq!(config.mqtt.port, 1884);
        assert_eq!(
            config.mqtt.credentials,
            Some(("cam-01".into(), "secret".into()))
        );
        assert_eq!(config.http_listen, DEFAULT_HTTP_LISTEN);
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(config.download_window_bytes, 256 * 1024);
        assert_eq!(config.chunk_timeout, Duration::from_secs(5));
        assert_eq!(config.download_rate_limit_bytes_per_sec, 0);
        assert_eq!(hex::encode(config.hub_public_key.as_bytes()), KEY);
        assert_eq!(config.telemetry, TelemetryConfig::default());
        assert_eq!(config.telemetry.window, Duration::from_secs(60));
        assert_eq!(config.telemetry.buffer.max_bytes, 64 * 1024 * 1024);
        assert_eq!(
            config.telemetry.buffer.max_age,
            Duration::from_secs(7 * 24 * 3600)
        );
        assert_eq!(config.telemetry.ack_timeout, Duration::from_secs(10));
        assert_eq!(config.telemetry.rate_limit_bytes_per_sec, 0);
    }

    #[test]
    fn telemetry_settings_are_read_and_checked() {
        let mut f = file();
        f.agent.telemetry_window_ms = Some(250);
        f.agent.telemetry_buffer_max_bytes = Some(4096);
        f.agent.telemetry_buffer_max_age_secs = Some(3600);
        f.agent.telemetry_ack_timeout_ms = Some(500);
        f.agent.telemetry_rate_limit_bytes_per_sec = Some(1000);
        let telemetry = f
            .build_and_validate(&Overrides::default())
            .unwrap()
            .telemetry;
        assert_eq!(telemetry.window, Duration::from_millis(250));
        assert_eq!(telemetry.buffer.max_bytes, 4096);
        assert_eq!(telemetry.buffer.max_age, Duration::from_secs(3600));
        assert_eq!(telemetry.ack_timeout, Duration::from_millis(500));
        assert_eq!(telemetry.rate_limit_bytes_per_sec, 1000);

        let mut f = file();
        f.agent.telemetry_window_ms = Some(99);
        assert_eq!(
            error_of(f),
            "agent.telemetry_window_ms: expected between 100 and 86400000, got 99"
        );
        let mut f = file();
        f.agent.telemetry_buffer_max_bytes = Some(4095);
        assert_eq!(
            error_of(f),
            "agent.telemetry_buffer_max_bytes: expected at least 4096, got 4095"
        );
        let mut f = file();
        f.agent.telemetry_buffer_max_age_secs = Some(0);
        assert_eq!(
            error_of(f),
            "agent.telemetry_buffer_max_age_secs: must be greater than 0"
        );
        let mut f = file();
        f.agent.telemetry_ack_timeout_ms = Some(0);
        assert_eq!(
            error_of(f),
            "agent.telemetry_ack_timeout_ms: must be greater than 0"
        );
    }

    #[test]
    fn overrides_win_over_the_file() {
        let mut file = file();
        file.agent.data_dir = Some("/from/file".into());
        let overrides = Overrides {
            data_dir: Some("/from/flag".into()),
            http_listen: Some("0.0.0.0:0".parse().unwrap()),
            mqtt_url: Some("mqtt://[::1]".into()),
        };
        let config = file.build_and_validate(&overrides).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(config.http_listen.port(), 0);
        assert_eq!((config.mqtt.host.as_str(), config.mqtt.port), ("::1", 1883));
    }

    #[test]
    fn round_trips_through_toml_as_the_hub_writes_it() {
        let mut original = file();
        original.agent.http_listen = Some("127.0.0.1:0".parse().unwrap());
        let text = toml::to_string(&original).unwrap();
        assert_eq!(
            AgentConfigFile::parse(&text, "agent.toml").unwrap(),
            original
        );
        let bare = toml::to_string(&file()).unwrap();
        assert!(!bare.contains("[agent]"), "{bare}");
        assert_eq!(AgentConfigFile::parse(&bare, "agent.toml").unwrap(), file());
    }

    #[test]
    fn the_example_config_is_valid() {
        let parsed = AgentConfigFile::parse(EXAMPLE_CONFIG, "agent.example.toml").unwrap();
        parsed.build_and_validate(&Overrides::default()).unwrap();
    }

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let mut f = file();
        f.version = 2;
        assert_eq!(error_of(f), "version: expected 1, got 2");

        let mut f = file();
        f.hub.public_key = "abc".into();
        assert_eq!(
            error_of(f),
            "hub.public_key: expected 64 hex characters, got 3 characters"
        );

        let mut f = file();
        f.hub.public_key = "zz".repeat(32);
        assert!(error_of(f).starts_with("hub.public_key: expected 64 hex characters"));

        let mut f = file();
        f.hub.mqtt_url = "http://x:1".into();
        assert_eq!(
            error_of(f),
            "hub.mqtt_url: unknown scheme 'http'; expected mqtt://host:port or mqtts://host:port"
        );

        let mut f = file();
        f.hub.mqtt_url = "mqtt://host:99999".into();
        assert_eq!(error_of(f), "hub.mqtt_url: '99999' is not a port (1-65535)");

        let mut f = file();
        f.hub.mqtt_url = "localhost:1883".into();
        assert!(error_of(f).starts_with("hub.mqtt_url: expected mqtt://host:port"));

        let mut f = file();
        f.device.id = "a/b".into();
        assert!(error_of(f).starts_with("device.id: 'a/b' must be"));

        let mut f = file();
        f.hub.topic_prefix = "shoal/#".into();
        assert!(error_of(f).starts_with("hub.topic_prefix:"));

        let mut f = file();
        f.agent.chunk_timeout_ms = Some(0);
        assert_eq!(
            error_of(f),
            "agent.chunk_timeout_ms: must be greater than 0"
        );

        let mut f = file();
        f.agent.download_window_bytes = Some(10);
        assert!(error_of(f).starts_with("agent.download_window_bytes: expected between"));
    }

    #[test]
    fn a_pinned_ca_needs_mqtts_and_a_certificate() {
        let mut f = file();
        f.hub.ca_pem = Some("not a certificate".into());
        assert_eq!(
            error_of(f.clone()),
            "hub.ca_pem: a CA is pinned but hub.mqtt_url is plaintext mqtt://; use mqtts://"
        );
        f.hub.mqtt_url = "mqtts://hub.example".into();
        assert!(error_of(f).starts_with("hub.ca_pem: no certificate"));
    }

    #[test]
    fn parse_errors_give_a_location_on_one_line() {
        let text = toml::to_string(&file()).unwrap() + "\n[agent]\ncolour = \"blue\"\n";
        let error = AgentConfigFile::parse(&text, "agent.toml")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("agent.toml:"), "{error}");
        assert!(error.contains("unknown field `colour`"), "{error}");
        assert!(!error.contains('\n'), "{error}");

        let error = AgentConfigFile::parse("version = 1\n", "agent.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing field `device`"), "{error}");
    }
}
