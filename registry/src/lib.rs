//! Shoal's model registry: models, their immutable numbered versions, movable aliases,
//! drift baselines (stored as blobs devices fetch), and the signing of the desired states
//! devices receive.
//!
//! # Layout
//! - [`registry`] — [`Registry`] — register (tract-validated), resolve `name@version|alias`,
//!   aliases, baselines profiled from CSV with the model's own output distribution.
//! - [`signing`] — [`ManifestSigner`], the hub's ed25519 key over desired states.
//! - [`error`] — [`RegistryError`].

pub mod error;
pub mod registry;
pub mod signing;

pub use error::{RegistryError, RegistryResult};
pub use registry::{
    signature_to_wire, Model, ModelVersion, NewVersion, Registry, VersionBaseline, LATEST,
};
pub use signing::ManifestSigner;
