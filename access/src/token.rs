//! API tokens: random secrets shown once, kept as their sha256, with a scope, an optional
//! expiry and a revocation time. Every call reads the record, so revoking or expiring a
//! token takes effect on the next call.

use serde::{Deserialize, Serialize};
use shoal_store::secrets::{constant_time_eq, random_hex, sha256};
use shoal_store::{check_name, Records};

use crate::audit::AuditLog;
use crate::error::{AccessError, AccessResult, Refusal};
use crate::role::{Identity, Scope};

/// Token records by name.
const TOKENS: &str = "access_tokens";
/// Token names by the hex sha256 of the secret.
const BY_HASH: &str = "access_token_hashes";
/// Random bytes in a token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Tokens Shoal issues start with this, so a leaked one is recognisable in logs.
const TOKEN_PREFIX: &str = "shoal_";

/// The name of the bootstrap identity, the admin token the hub writes on first start.
pub const ADMIN_IDENTITY: &str = "admin";

/// A token as the hub keeps it (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    /// Hex sha256 of the secret.
    pub hash: String,
    pub scope: Scope,
    pub created_ms: i64,
    /// Who created it (a token name).
    pub created_by: String,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// Whether a token still works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        }
    }
}

impl TokenRecord {
    /// The token's state at `now_ms`.
    pub fn state(&self, now_ms: i64) -> TokenState {
        if self.revoked_ms.is_some() {
            TokenState::Revoked
        } else if self.expires_ms.is_some_and(|at| at <= now_ms) {
            TokenState::Expired
        } else {
            TokenState::Active
        }
    }

    /// Whether the run token of `run_id` is this one.
    fn is_run_token_of(&self, run_id: &str) -> bool {
        matches!(&self.scope, Scope::Run { run_id: id, .. } if id == run_id)
    }
}

/// What a new token is made of.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub scope: Scope,
    pub expires_ms: Option<i64>,
    pub created_by: String,
}

/// The hub's tokens and audit log, over the metadata store.
#[derive(Clone)]
pub struct Access {
    records: Records,
    audit: AuditLog,
}

impl Access {
    pub fn new(records: Records) -> Access {
        Access {
            audit: AuditLog::new(records.clone()),
            records,
        }
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Creates a token and returns its record and its secret, which is never shown again. A
    /// name that is taken by a revoked or expired token is reused; a live one is refused.
    ///
    /// # Errors
    /// `InvalidName`, `AlreadyExists` for a live token of that name, `InvalidArgument` for an
    /// expiry in the past or a workspace scope without workspaces, storage errors.
    pub fn create_token(&self, new: NewToken) -> AccessResult<(TokenRecord, String)> {
        check_name("token name", &new.name)?;
        let now = shoal_store::now_ms();
        if new.expires_ms.is_some_and(|at| at <= now) {
            return Err(AccessError::invalid("the token's expiry is in the past"));
        }
        if let Scope::Workspaces { grants } = &new.scope {
            if grants.is_empty() {
                return Err(AccessError::invalid(
                    "a token with a workspace role needs a workspace (--workspace)",
                ));
            }
            for workspace in grants.keys() {
                check_name("workspace", workspace)?;
            }
        }
        let secret = format!("{TOKEN_PREFIX}{}", random_hex(TOKEN_BYTES)?);
        let hash = hex::encode(sha256(secret.as_bytes()));
        let record = TokenRecord {
            name: new.name.clone(),
            hash: hash.clone(),
            scope: new.scope,
            created_ms: now,
            created_by: new.created_by,
            expires_ms: new.expires_ms,
            revoked_ms: None,
        };
        let mut replaced = None;
        self.records
            .update(TOKENS, &new.name, |current: Option<TokenRecord>| {
                replaced = None;
                match current {
                    Some(old) if old.state(now) == TokenState::Active => {
                        Err(AccessError::already_exists("token", &new.name))
                    }
                    old => {
                        replaced = old.map(|o| o.hash);
                        Ok::<_, AccessError>(record.clone())
                    }
                }
            })?;
        if let Some(old_hash) = replaced {
            self.records.delete(BY_HASH, &old_hash)?;
        }
        self.records.put(BY_HASH, &hash, &new.name)?;
        self.records.flush()?;
        Ok((record, secret))
    }

    /// The identity a secret belongs to, if the token is known, live and unexpired.
    ///
    /// # Errors
    /// [`Refusal::Unauthenticated`] naming why (unknown, revoked, expired);
    /// [`Refusal::Internal`] when the store cannot be read.
    pub fn authenticate(&self, secret: &str) -> Result<Identity, Refusal> {
        let hash = sha256(secret.trim().as_bytes());
        let hex_hash = hex::encode(hash);
        let unknown = || Refusal::Unauthenticated("invalid token".into());
        let name: String = self
            .records
            .get(BY_HASH, &hex_hash)
            .map_err(AccessError::from)?
            .ok_or_else(unknown)?;
        let record: TokenRecord = self
            .records
            .get(TOKENS, &name)
            .map_err(AccessError::from)?
            .ok_or_else(unknown)?;
        let stored = hex::decode(&record.hash).unwrap_or_default();
        if !constant_time_eq(&stored, &hash) {
            return Err(unknown());
        }
        match record.state(shoal_store::now_ms()) {
            TokenState::Active => Ok(Identity {
                name: record.name,
                scope: record.scope,
            }),
            TokenState::Revoked => Err(Refusal::Unauthenticated(format!(
                "token '{name}' was revoked; ask an owner for a new one"
            ))),
            TokenState::Expired => Err(Refusal::Unauthenticated(format!(
                "token '{name}' has expired; ask an owner for a new one"
            ))),
        }
    }

    /// Every token record, by name.
    ///
    /// # Errors
    /// Storage errors.
    pub fn list(&self) -> AccessResult<Vec<TokenRecord>> {
        Ok(self.records.scan(TOKENS, "")?)
    }

    /// One token's record.
    ///
    /// # Errors
    /// `NotFound`, storage errors.
    pub fn get(&self, name: &str) -> AccessResult<TokenRecord> {
        self.records
            .get(TOKENS, name)?
            .ok_or_else(|| AccessError::not_found("token", name))
    }

    /// Revokes a token: its next call is refused. Revoking a revoked token is a no-op.
    ///
    /// # Errors
    /// `NotFound`, storage errors.
    pub fn revoke(&self, name: &str) -> AccessResult<TokenRecord> {
        let now = shoal_store::now_ms();
        let record = self
            .records
            .update(TOKENS, name, |current: Option<TokenRecord>| {
                let mut record = current.ok_or_else(|| AccessError::not_found("token", name))?;
                record.revoked_ms.get_or_insert(now);
                Ok::<_, AccessError>(record)
            })?;
        self.records.flush()?;
        Ok(record)
    }

    /// Mints the token a run acts with while it runs (`run-{id}`), replacing an earlier one
    /// of the same run (a run leased again after its worker was lost).
    ///
    /// # Errors
    /// Storage errors, the random source.
    pub fn issue_run_token(
        &self,
        workspace: &str,
        run_id: &str,
        experiment_id: &str,
        inputs: Vec<String>,
    ) -> AccessResult<String> {
        let name = run_token_name(run_id);
        if self.get(&name).is_ok() {
            self.revoke(&name)?;
        }
        let (_, secret) = self.create_token(NewToken {
            name,
            scope: Scope::Run {
                workspace: workspace.to_string(),
                run_id: run_id.to_string(),
                experiment_id: experiment_id.to_string(),
                inputs,
            },
            expires_ms: None,
            created_by: "hub".into(),
        })?;
        Ok(secret)
    }

    /// Revokes the token of `run_id`, if it has one. Returns whether one was live.
    ///
    /// # Errors
    /// Storage errors.
    pub fn revoke_run_token(&self, run_id: &str) -> AccessResult<bool> {
        let name = run_token_name(run_id);
        match self.records.get::<TokenRecord>(TOKENS, &name)? {
            Some(record)
                if record.is_run_token_of(run_id)
                    && record.state(shoal_store::now_ms()) == TokenState::Active =>
            {
                self.revoke(&name)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// The name a run's token has.
pub fn run_token_name(run_id: &str) -> String {
    format!("run-{run_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Role;

    fn access() -> Access {
        Access::new(Records::in_memory())
    }

    fn reader(name: &str) -> NewToken {
        NewToken {
            name: name.into(),
            scope: Scope::workspace("occ", Role::Reader),
            expires_ms: None,
            created_by: "admin".into(),
        }
    }

    #[test]
    fn tokens_are_stored_hashed_and_authenticate_until_revoked() {
        let access = access();
        let (record, secret) = access.create_token(reader("ci")).unwrap();
        assert!(secret.starts_with("shoal_") && secret.len() == 6 + 64);
        assert_ne!(record.hash, secret);
        assert!(!serde_json::to_string(&access.list().unwrap())
            .unwrap()
            .contains(&secret));
        let who = access.authenticate(&secret).unwrap();
        assert_eq!(who.name, "ci");
        assert!(matches!(
            access.authenticate("shoal_nope"),
            Err(Refusal::Unauthenticated(_))
        ));
        let taken = access.create_token(reader("ci")).unwrap_err();
        assert!(taken.to_string().contains("already exists"), "{taken}");
        access.revoke("ci").unwrap();
        let refused = access.authenticate(&secret).unwrap_err();
        assert!(
            matches!(&refused, Refusal::Unauthenticated(m) if m.contains("revoked")),
            "{refused:?}"
        );
        // A revoked name may be reused; the old secret stays dead.
        let (_, again) = access.create_token(reader("ci")).unwrap();
        assert!(access.authenticate(&again).is_ok());
        assert!(access.authenticate(&secret).is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let access = access();
        let past = NewToken {
            expires_ms: Some(1),
            ..reader("old")
        };
        assert!(access.create_token(past).is_err());
        let (_, secret) = access
            .create_token(NewToken {
                expires_ms: Some(shoal_store::now_ms() + 60_000),
                ..reader("soon")
            })
            .unwrap();
        assert!(access.authenticate(&secret).is_ok());
        access
            .records
            .update(TOKENS, "soon", |r: Option<TokenRecord>| {
                let mut r = r.unwrap();
                r.expires_ms = Some(shoal_store::now_ms() - 1);
                Ok::<_, AccessError>(r)
            })
            .unwrap();
        let refused = access.authenticate(&secret).unwrap_err();
        assert!(matches!(&refused, Refusal::Unauthenticated(m) if m.contains("expired")));
    }

    #[test]
    fn run_tokens_are_replaced_and_revoked_with_their_run() {
        let access = access();
        let first = access.issue_run_token("occ", "r1", "0", vec![]).unwrap();
        let second = access.issue_run_token("occ", "r1", "0", vec![]).unwrap();
        assert!(access.authenticate(&first).is_err());
        let who = access.authenticate(&second).unwrap();
        assert!(matches!(who.scope, Scope::Run { ref run_id, .. } if run_id == "r1"));
        assert!(access.revoke_run_token("r1").unwrap());
        assert!(!access.revoke_run_token("r1").unwrap());
        assert!(access.authenticate(&second).is_err());
    }
}
