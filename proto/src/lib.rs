//! Shoal's wire contracts: protobuf messages for MQTT payloads and the hub's gRPC services.
//!
//! The Rust code is generated from `shoal/**/v1/*.proto` and committed under `src/generated/`
//! (see `tests/bootstrap.rs`). gRPC client and server stubs sit behind the `grpc` feature so the
//! device agent compiles messages only.
//!
//! # Layout
//! - [`device`]: what travels over MQTT between the hub and devices (manifests, state, blobs).
//! - [`workspace`], [`registry`], [`fleet`], [`deployment`], [`telemetry`], [`training`],
//!   [`access`], [`secret`]: the hub's gRPC services.
//! - [`topics`]: the MQTT topic layout; [`mqtt_url`]: broker URLs; `tls` (feature `tls`):
//!   the rustls client settings of `mqtts://` connections.

pub mod mqtt_url;
#[cfg(feature = "tls")]
pub mod tls;
pub mod topics;

/// MQTT payloads between the hub and devices.
pub mod device {
    pub mod v1 {
        include!("generated/shoal.device.v1.rs");
    }
    pub use v1::*;

    /// What the signed bytes of a desired state start with: the hub's ed25519 signature covers
    /// this prefix and then the encoded `DesiredBody`, so a signature made for anything else
    /// can never pass for a desired state.
    pub const DESIRED_STATE_DOMAIN: &[u8] = b"shoal.desired.v1\0";

    /// The bytes the signature of a desired state covers: [`DESIRED_STATE_DOMAIN`] + `body`.
    pub fn desired_state_signed_bytes(body: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(DESIRED_STATE_DOMAIN.len() + body.len());
        bytes.extend_from_slice(DESIRED_STATE_DOMAIN);
        bytes.extend_from_slice(body);
        bytes
    }
}

/// Workspaces, the unit of isolation.
pub mod workspace {
    pub mod v1 {
        include!("generated/shoal.workspace.v1.rs");
    }
    pub use v1::*;
}

/// The model registry.
pub mod registry {
    pub mod v1 {
        include!("generated/shoal.registry.v1.rs");
    }
    pub use v1::*;
}

/// Devices and their enrollment.
pub mod fleet {
    pub mod v1 {
        include!("generated/shoal.fleet.v1.rs");
    }
    pub use v1::*;
}

/// Deployments of model versions to devices.
pub mod deployment {
    pub mod v1 {
        include!("generated/shoal.deployment.v1.rs");
    }
    pub use v1::*;
}

/// Fleet telemetry and drift reports.
pub mod telemetry {
    pub mod v1 {
        include!("generated/shoal.telemetry.v1.rs");
    }
    pub use v1::*;
}

/// Datasets, experiments, runs, sweeps, and the remote worker protocol.
pub mod training {
    pub mod v1 {
        include!("generated/shoal.training.v1.rs");
    }
    pub use v1::*;
}

pub mod secret {
    pub mod v1 {
        include!("generated/shoal.secret.v1.rs");
    }
    pub use v1::*;
}

/// API tokens, roles and the audit log.
pub mod access {
    pub mod v1 {
        include!("generated/shoal.access.v1.rs");
    }
    pub use v1::*;
}

/// The encoded `FileDescriptorSet` of every package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/descriptor.bin");
