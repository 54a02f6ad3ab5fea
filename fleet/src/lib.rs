//! Shoal's fleet: devices and their credentials, deployments that publish signed desired
//! state, telemetry windows stored once and rolled up hourly, drift reports, and drift
//! monitors with their alerts.
//!
//! # Layout
//! - [`fleet`] — [`Fleet`] — device enrollment, [`fleet::DeviceAuth`] for the broker,
//!   reported status and state.
//! - [`credentials`]: device passwords, kept as salted hashes (and Mosquitto's format).
//! - [`access`]: who may publish and subscribe where on the broker.
//! - [`mosquitto`]: the fleet's Mosquitto password and ACL files.
//! - [`deployment`] — [`Deployments`] — desired state per device, signed manifests,
//!   per-device progress.
//! - [`publish`] — [`DevicePublisher`], the way out to devices (the hub's MQTT client
//!   implements it; [`MemoryPublisher`] keeps publishes for tests).
//! - [`telemetry`] — [`Telemetry`] — window ingest (once per device, boot epoch and seq),
//!   hourly roll-ups, retention, drift reports.
//! - [`monitor`] — [`Monitors`] — drift monitors, evaluations, alerts, signed webhooks, and
//!   the [`monitor::AlertSink`] seam.
//! - [`error`] — [`FleetError`].
//! - `testkit` (tests only): the domains over one in-memory store, real models, and windows
//!   summarised the way an agent does.

pub mod access;
pub mod credentials;
pub mod deployment;
pub mod error;
pub mod fleet;
pub mod monitor;
pub mod mosquitto;
pub mod publish;
pub mod telemetry;

pub use deployment::Deployments;
pub use error::{FleetError, FleetResult};
pub use fleet::Fleet;
pub use monitor::Monitors;
pub use publish::{DevicePublisher, MemoryPublisher, PublishError};
pub use telemetry::Telemetry;

#[cfg(test)]
mod testkit;
