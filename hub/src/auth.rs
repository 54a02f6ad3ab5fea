//! Who is calling: the hub's bootstrap admin token (created on first start as `admin.token`,
//! mode 0600, in the data folder, compared by hash in constant time) and the tokens
//! `shoal-access` keeps, read from an `Authorization` header in one place for gRPC and the
//! MLflow API alike ([`Authenticator`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shoal_access::{Access, Identity, Refusal, Scope, ADMIN_IDENTITY};
use shoal_store::secrets::{constant_time_eq, random_hex, sha256, write_private_file};
use shoal_store::IoError;
use shoal_tracking::Tracking;

use crate::error::{HubError, HubResult};

pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The admin token, as the hub keeps it: its hash, and the file it lives in.
pub struct AdminToken {
    /// sha256 of the bearer token; the token itself stays in `admin.token`.
    hash: [u8; 32],
    path: PathBuf,
}

impl AdminToken {
    /// Reads the token from `data_dir`, creating it on first start.
    ///
    /// # Errors
    /// I/O errors naming the file, or an empty token file.
    pub fn load_or_create(data_dir: &Path) -> HubResult<AdminToken> {
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        let token = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = format!("shoal_{}", random_hex(24)?);
                write_private_file(&path, &token)?;
                tracing::info!(path = %path.display(), "wrote a new admin token");
                token
            }
            Err(e) => return Err(IoError::with(format!("read {}", path.display()))(e).into()),
        };
        if token.is_empty() {
            return Err(HubError::Config(format!("{} is empty", path.display())));
        }
        Ok(AdminToken {
            hash: sha256(token.as_bytes()),
            path,
        })
    }

    /// Whether `token` is the admin token.
    pub fn matches(&self, token: &str) -> bool {
        constant_time_eq(&sha256(token.as_bytes()), &self.hash)
    }

    /// The file the token is in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Turns the credentials of a request into an [`Identity`]: the bootstrap admin token, or a
/// token `shoal-access` knows that is neither revoked nor expired. A run's token also dies
/// with its run: one presented after the run ended is revoked there and then.
#[derive(Clone)]
pub struct Authenticator {
    admin: Arc<AdminToken>,
    access: Access,
    tracking: Tracking,
}

impl Authenticator {
    pub fn new(admin: Arc<AdminToken>, access: Access, tracking: Tracking) -> Authenticator {
        Authenticator {
            admin,
            access,
            tracking,
        }
    }

    /// The token store and audit log.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Appends a writing call to the audit log (gRPC and MLflow alike); a failure is logged
    /// and never fails the call.
    pub fn audit(
        &self,
        identity: &Identity,
        workspace: &str,
        method: &str,
        target: &str,
        result: &str,
    ) {
        let record = shoal_access::AuditRecord {
            time_ms: shoal_store::now_ms(),
            actor: identity.name.clone(),
            role: identity.scope.role_label(),
            workspace: workspace.to_string(),
            method: method.to_string(),
            target: target.to_string(),
            result: result.to_string(),
        };
        if let Err(error) = self.access.audit().append(&record) {
            tracing::warn!(%error, method, "cannot append to the audit log");
        }
    }

    /// Authenticates a bearer token.
    ///
    /// # Errors
    /// [`Refusal::Unauthenticated`] for an unknown, revoked or expired token or a run token
    /// whose run has ended.
    pub fn authenticate(&self, token: &str) -> Result<Identity, Refusal> {
        let token = token.trim();
        if self.admin.matches(token) {
            return Ok(Identity {
                name: ADMIN_IDENTITY.into(),
                scope: Scope::Admin,
            });
        }
        let identity = self.access.authenticate(token)?;
        if let Scope::Run { run_id, .. } = &identity.scope {
            let live = self
                .tracking
                .run(run_id)
                .is_ok_and(|run| !run.status.is_terminal());
            if !live {
                if let Err(error) = self.access.revoke_run_token(run_id) {
                    tracing::warn!(run = %run_id, %error, "cannot revoke an ended run's token");
                }
                return Err(Refusal::Unauthenticated(format!(
                    "run {run_id} has ended; its token is revoked"
                )));
            }
        }
        Ok(identity)
    }

    /// Authenticates the value of an `Authorization` header (`Bearer <token>`); `None` when
    /// the request has none.
    ///
    /// # Errors
    /// [`Refusal::Unauthenticated`] naming what is wrong and the way out.
    pub fn authenticate_header(&self, header: Option<&str>) -> Result<Identity, Refusal> {
        let header = header.ok_or_else(|| {
            Refusal::Unauthenticated(
                "missing bearer token (run `shoal login`, or set SHOAL_TOKEN or --token)".into(),
            )
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                Refusal::Unauthenticated("authorization must be 'Bearer <token>'".into())
            })?;
        self.authenticate(token)
    }
}

/// Run tokens from the access domain, for the jobs layer: minted when a script run starts
/// (locally or when a worker leases it), revoked when it ends.
pub struct RunTokens(pub Access);

impl shoal_tracking::jobs::RunCredentials for RunTokens {
    fn issue(&self, run: &shoal_tracking::tracking::Run) -> shoal_tracking::TrackingResult<String> {
        self.0
            .issue_run_token(
                &run.workspace,
                &run.id,
                &run.experiment_id,
                run.inputs.clone(),
            )
            .map_err(|e| shoal_tracking::TrackingError::Internal(format!("run token: {e}")))
    }

    fn revoke(&self, run_id: &str) {
        if let Err(error) = self.0.revoke_run_token(run_id) {
            tracing::warn!(run = %run_id, %error, "cannot revoke a run's token");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_persists_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let admin = AdminToken::load_or_create(dir.path()).unwrap();
        let token = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        assert!(admin.matches(token.trim()));
        assert!(!admin.matches("shoal_wrong"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(admin.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = AdminToken::load_or_create(dir.path()).unwrap();
        assert!(again.matches(token.trim()));
    }
}
