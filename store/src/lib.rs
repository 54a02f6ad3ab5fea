//! Shoal's storage seams, shared by every domain crate: the metadata store, the artifact
//! store, workspaces, ids, secrets files and the clock. Nothing here knows a domain.
//!
//! # Layout
//! - [`storage`]: the ordered key-value [`Store`] seam (sled and memory back ends, one
//!   exported `store_test_suite!` every back end must pass) and typed JSON [`Records`].
//! - [`artifacts`]: content-addressed blobs (sha256): the [`ArtifactStore`] handle over an
//!   [`ArtifactBackend`] (local disk, memory; object storage next), one exported
//!   `artifact_test_suite!` every back end must pass.
//! - [`workspace`]: workspaces, and [`WorkspaceContents`], the one way a domain says what a
//!   workspace holds and deletes it.
//! - [`error`] — [`ErrorCode`] and [`ServiceError`], which every domain error implements; the
//!   name check; [`IoError`], an I/O error that says what failed.
//! - [`domain_error`]: `domain_error!`, the error enum every domain crate defines with it.
//! - [`secrets`]: random ids and secrets, constant-time comparison, owner-only files.
//! - [`vault`]: workspace secrets, sealed with ChaCha20-Poly1305 under a key kept outside
//!   the store.
//! - [`clock`] — [`now_ms`].

pub mod artifacts;
pub mod clock;
pub mod domain_error;
pub mod error;
pub mod secrets;
pub mod storage;
pub mod vault;
pub mod workspace;

pub use artifacts::{
    is_valid_digest, ArtifactBackend, ArtifactResult, ArtifactStore, BlobWriter, LocalDisk,
    MemoryArtifacts,
};
pub use clock::now_ms;
pub use error::{check_name, ErrorCode, InvalidName, IoError, ServiceError};
pub use secrets::{random_hex, RandomSourceError};
pub use storage::{MemoryStore, Records, SledStore, Store, StoreError, StoreResult};
pub use vault::{SecretInfo, Vault, VaultError, VaultResult};
pub use workspace::{
    held_count, Workspace, WorkspaceContents, WorkspaceError, WorkspaceResult, Workspaces,
    DEFAULT_WORKSPACE,
};
