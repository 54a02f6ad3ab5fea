//! Shoal's identities and roles: who may call what, in which workspace.
//!
//! A caller is an [`Identity`]: the name of the token it presented and that token's
//! [`Scope`]: the hub admin, a [`Role`] (reader, contributor, owner) in each of some
//! workspaces, a remote worker, or one running run. Tokens are random secrets shown once and
//! kept as their sha256 ([`Access`]); revocation and expiry are read at every call. What a
//! method needs is a [`Rule`] (its least role, whether it writes, whether a run's own token
//! may call it); the hub keeps one table of rules and checks each call against it twice: once
//! when the token is authenticated ([`Identity::may_call`]) and once the handler knows the
//! call's [`Target`] ([`Identity::check`]). Calls that change something are written to the
//! append-only [`AuditLog`].
//!
//! This crate holds decisions only; the hub's adapters (gRPC, MLflow) apply them.
//!
//! # Layout
//! - [`role`]: roles, scopes, the least role of a method, targets and the checks.
//! - [`token`]: token records and [`Access`], which creates, authenticates, lists and revokes
//!   them (and mints run tokens).
//! - [`audit`]: [`AuditRecord`] and the append-only [`AuditLog`].
//! - [`error`]: [`AccessError`] (storage and argument errors) and [`Refusal`] (why a call is
//!   refused: unauthenticated or not allowed).

pub mod audit;
pub mod error;
pub mod role;
pub mod token;

pub use audit::{AuditLog, AuditQuery, AuditRecord};
pub use error::{AccessError, AccessResult, Refusal};
pub use role::{Identity, Least, Role, Rule, Scope, Target};
pub use token::{Access, NewToken, TokenRecord, TokenState, ADMIN_IDENTITY};
