//! Shoal's device agent: pulls signed models over MQTT, serves them with tract on a local HTTP
//! API, and reports its state to the hub.
//!
//! `Agent::bind(config)` opens the data directory, boots into the last known good model and
//! binds the HTTP socket, with no broker needed; `BoundAgent::run(shutdown)` then keeps the MQTT
//! session, applies desired states, serves, and ships telemetry windows until `shutdown`
//! completes.
//!
//! # Layout
//! - [`cli`]: the `shoal-agent` command line (the binary is a one-line `main`).
//! - [`config`]: the TOML file (`AgentConfigFile`), command-line overrides, the checked `AgentConfig`.
//! - [`agent`]: `Agent::bind` → `BoundAgent::run(shutdown)`, the task layout and shutdown order.
//! - [`boot`]: booting into the last good model from `state.json`.
//! - [`buffer`]: the sled store-and-forward buffer of telemetry windows, with drop accounting.
//! - [`telemetry`]: the window accumulator: counts, latency, inputs and outputs binned over the
//!   active model's baseline.
//! - [`forward`]: closes windows into the buffer, publishes them, removes what the hub acked.
//! - [`host`]: device health for the windows (process CPU, RSS, free disk).
//! - [`store`]: the data directory: models, partial downloads, atomic `state.json`.
//! - [`manifest`]: verifying signed manifests with the hub key.
//! - [`download`]: window and offset bookkeeping of one blob download (no I/O).
//! - [`update`]: desired state → download → verify → load → switch.
//! - [`inference`]: the served model, its atomic slot, inference on the blocking pool.
//! - [`mqtt`]: the rumqttc client, its event loop task and the session announcer.
//! - [`report`]: the reported state shared by MQTT and HTTP.
//! - [`serve`]: the local HTTP API (axum).
//! - [`shutdown`]: SIGTERM / SIGINT.
//! - [`error`]: why the agent could not start or run (`AgentError`).

pub mod agent;
pub mod boot;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod download;
pub mod error;
pub mod forward;
pub mod host;
pub mod inference;
pub mod manifest;
pub mod mqtt;
pub mod report;
pub mod serve;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod update;

pub use agent::{Agent, BoundAgent};
pub use config::{
    AgentConfig, AgentConfigFile, AgentSection, ConfigError, DeviceSection, HubSection, Overrides,
    TelemetryConfig,
};
pub use error::{AgentError, AgentResult};
