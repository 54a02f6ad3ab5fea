//! What access operations return, and why a call is refused.

shoal_store::domain_error! {
    /// What token and audit operations return (storage, names, arguments).
    pub enum AccessError, AccessResult {}
}

/// Why a call is refused. The hub maps these to `UNAUTHENTICATED` and `PERMISSION_DENIED`
/// (and MLflow's `UNAUTHENTICATED` and `PERMISSION_DENIED`) in one place each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No token, a token the hub does not know, or one that is revoked or expired.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token whose role does not reach the method or its workspace.
    #[error("{0}")]
    PermissionDenied(String),
    /// The token store could not be read; the caller is not refused for its own fault.
    #[error("{0}")]
    Internal(String),
}

impl From<AccessError> for Refusal {
    fn from(error: AccessError) -> Refusal {
        Refusal::Internal(error.to_string())
    }
}
