//! Workspaces: the unit of isolation. Every model, device, deployment, dataset and run
//! belongs to one.
//!
//! This crate knows no domain: what a workspace holds is reported by each domain through
//! [`WorkspaceContents`], which the hub hands to [`Workspaces::delete`].

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{check_name, ErrorCode, InvalidName, ServiceError};
use crate::storage::{Records, StoreError};

pub const TREE: &str = "workspaces";

/// What a workspace holds in one domain (models, devices, runs, …): each domain says what
/// it holds, and deletes it when a workspace is deleted with force.
pub trait WorkspaceContents: Send + Sync {
    /// What the workspace holds here, for the "not empty" refusal (`"3 runs"`).
    ///
    /// # Errors
    /// A [`WorkspaceError::Busy`] when even a forced delete must wait (a run still
    /// executing), or the domain's own error.
    fn held(&self, workspace: &str) -> WorkspaceResult<Vec<String>>;
    /// Deletes everything the workspace holds here.
    ///
    /// # Errors
    /// The domain's own error.
    fn delete_all(&self, workspace: &str) -> WorkspaceResult<()>;
}

/// `"1 model"`, `"3 models"`: how [`WorkspaceContents::held`] counts things (`noun` is
/// singular; the plural adds an `s`). `None` for zero, which a workspace does not hold.
pub fn held_count(count: usize, noun: &str) -> Option<String> {
    match count {
        0 => None,
        1 => Some(format!("1 {noun}")),
        n => Some(format!("{n} {noun}s")),
    }
}

/// What can go wrong with a workspace.
#[derive(Debug, Error)]
pub enum WorkspaceError {
    #[error("workspace '{0}' not found")]
    NotFound(String),
    #[error("workspace '{0}' already exists")]
    AlreadyExists(String),
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error("workspace '{name}' is not empty ({held}); delete with force to remove it and everything in it")]
    NotEmpty { name: String, held: String },
    /// Something in the workspace must finish before it can be deleted.
    #[error("{0}")]
    Busy(String),
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// A domain's own error while it counted or deleted what it holds.
    #[error("{0}")]
    Contents(Box<dyn ServiceError>),
}

pub type WorkspaceResult<T> = Result<T, WorkspaceError>;

impl WorkspaceError {
    /// Wraps a domain's error from [`WorkspaceContents`].
    pub fn contents(error: impl ServiceError) -> WorkspaceError {
        WorkspaceError::Contents(Box::new(error))
    }
}

impl ServiceError for WorkspaceError {
    fn error_code(&self) -> ErrorCode {
        match self {
            WorkspaceError::NotFound(_) => ErrorCode::NotFound,
            WorkspaceError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            WorkspaceError::InvalidName(_) => ErrorCode::InvalidArgument,
            WorkspaceError::NotEmpty { .. } | WorkspaceError::Busy(_) => {
                ErrorCode::FailedPrecondition
            }
            WorkspaceError::Storage(e) => e.error_code(),
            WorkspaceError::Contents(e) => e.error_code(),
        }
    }
}
/// The workspace every hub has, so a first user needs none of their own.
pub const DEFAULT_WORKSPACE: &str = "default";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Workspace {
    pub name: String,
    pub description: String,
    pub created_at_ms: i64,
}

#[derive(Clone)]
pub struct Workspaces {
    records: Records,
}

impl Workspaces {
    pub fn new(records: Records) -> Workspaces {
        Workspaces { records }
    }

    /// Creates the `default` workspace if it does not exist yet.
    ///
    /// # Errors
    /// Storage errors.
    pub fn ensure_default(&self) -> WorkspaceResult<()> {
        let default = Workspace {
            name: DEFAULT_WORKSPACE.into(),
            description: "created by the hub on first start".into(),
            created_at_ms: crate::now_ms(),
        };
        self.records.insert_new(TREE, DEFAULT_WORKSPACE, &default)?;
        Ok(())
    }

    /// # Errors
    /// `InvalidArgument` for a bad name, `AlreadyExists`.
    pub fn create(&self, name: &str, description: &str) -> WorkspaceResult<Workspace> {
        check_name("workspace name", name)?;
        let workspace = Workspace {
            name: name.into(),
            description: description.into(),
            created_at_ms: crate::now_ms(),
        };
        if !self.records.insert_new(TREE, name, &workspace)? {
            return Err(WorkspaceError::AlreadyExists(name.into()));
        }
        Ok(workspace)
    }

    /// # Errors
    /// `NotFound`.
    pub fn get(&self, name: &str) -> WorkspaceResult<Workspace> {
        self.records
            .get(TREE, name)?
            .ok_or_else(|| WorkspaceError::NotFound(name.into()))
    }

    /// Fails unless the workspace exists; every workspace-scoped call starts here.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn require(&self, name: &str) -> WorkspaceResult<()> {
        self.get(name).map(|_| ())
    }

    /// # Errors
    /// Storage errors.
    pub fn list(&self) -> WorkspaceResult<Vec<Workspace>> {
        Ok(self.records.scan(TREE, "")?)
    }

    /// Deletes a workspace. One that still holds models, devices, deployments, datasets,
    /// experiments or runs (what `contents` report) is refused unless `force`, which deletes
    /// them too (artifact blobs stay: they may be shared).
    ///
    /// # Errors
    /// `NotFound`, or `FailedPrecondition` naming what the workspace still holds.
    pub fn delete(
        &self,
        name: &str,
        force: bool,
        contents: &[&dyn WorkspaceContents],
    ) -> WorkspaceResult<()> {
        self.require(name)?;
        let mut held = Vec::new();
        for domain in contents {
            held.extend(domain.held(name)?);
        }
        if !held.is_empty() && !force {
            return Err(WorkspaceError::NotEmpty {
                name: name.into(),
                held: held.join(", "),
            });
        }
        for domain in contents {
            domain.delete_all(name)?;
        }
        self.records.delete(TREE, name)?;
        Ok(())
    }

    /// Makes every metadata write durable.
    ///
    /// # Errors
    /// Storage errors.
    pub fn flush(&self) -> WorkspaceResult<()> {
        Ok(self.records.flush()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_people_write_them() {
        assert_eq!(held_count(0, "model"), None);
        assert_eq!(held_count(1, "model").as_deref(), Some("1 model"));
        assert_eq!(
            held_count(3, "dataset version").as_deref(),
            Some("3 dataset versions")
        );
    }

    #[test]
    fn a_workspace_holding_something_is_deleted_only_with_force() {
        struct Holds(Vec<String>);
        impl WorkspaceContents for Holds {
            fn held(&self, _: &str) -> WorkspaceResult<Vec<String>> {
                Ok(self.0.clone())
            }
            fn delete_all(&self, _: &str) -> WorkspaceResult<()> {
                Ok(())
            }
        }
        let workspaces = Workspaces::new(Records::in_memory());
        workspaces.create("lab", "").unwrap();
        let holds = Holds(vec!["1 model".into(), "2 runs".into()]);
        let refused = workspaces.delete("lab", false, &[&holds]).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "workspace 'lab' is not empty (1 model, 2 runs); delete with force to remove it and everything in it"
        );
        workspaces.delete("lab", true, &[&holds]).unwrap();
        assert!(matches!(
            workspaces.get("lab"),
            Err(WorkspaceError::NotFound(_))
        ));
        assert!(matches!(
            workspaces.create("bad/name", ""),
            Err(WorkspaceError::InvalidName(_))
        ));
    }
}
