//! Workspaces: the unit of isolation. Every model, device and deployment belongs to one.

use serde::{Deserialize, Serialize};

use crate::error::{check_name, HubError, HubResult};
use crate::storage::Records;

pub const TREE: &str = "workspaces";

/// What other domains keep per workspace under keys that do not start with the workspace
/// (experiments and runs have hub-wide ids): they say what they hold, and delete it when a
/// workspace is deleted with force.
pub trait WorkspaceContents: Send + Sync {
    /// What the workspace holds here, for the "not empty" refusal (`"3 runs"`).
    ///
    /// # Errors
    /// `FailedPrecondition` when even a forced delete must wait (a run still executing).
    fn held(&self, workspace: &str) -> HubResult<Vec<String>>;
    /// Deletes everything the workspace holds here.
    ///
    /// # Errors
    /// Storage errors.
    fn delete_all(&self, workspace: &str) -> HubResult<()>;
}
/// The workspace every hub has, so a first user needs none of their own.
pub const DEFAULT_WORKSPACE: &str = "default";

/// Trees whose keys start with `{workspace}/`: what makes a workspace non-empty.
pub const OWNED_TREES: &[&str] = &[
    crate::registry::MODELS_TREE,
    crate::registry::VERSIONS_TREE,
    crate::fleet::TREE,
    crate::deployment::TREE,
];

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
    pub fn ensure_default(&self) -> HubResult<()> {
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
    pub fn create(&self, name: &str, description: &str) -> HubResult<Workspace> {
        check_name("workspace name", name)?;
        let workspace = Workspace {
            name: name.into(),
            description: description.into(),
            created_at_ms: crate::now_ms(),
        };
        if !self.records.insert_new(TREE, name, &workspace)? {
            return Err(HubError::already_exists("workspace", name));
        }
        Ok(workspace)
    }

    /// # Errors
    /// `NotFound`.
    pub fn get(&self, name: &str) -> HubResult<Workspace> {
        self.records
            .get(TREE, name)?
            .ok_or_else(|| HubError::not_found("workspace", name))
    }

    /// Fails unless the workspace exists; every workspace-scoped call starts here.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn require(&self, name: &str) -> HubResult<()> {
        self.get(name).map(|_| ())
    }

    /// # Errors
    /// Storage errors.
    pub fn list(&self) -> HubResult<Vec<Workspace>> {
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
    ) -> HubResult<()> {
        self.require(name)?;
        let prefix = format!("{name}/");
        let mut held = Vec::new();
        for tree in OWNED_TREES {
            let count = self.records.count(tree, &prefix)?;
            if count > 0 {
                held.push(format!("{count} {tree}"));
            }
        }
        for domain in contents {
            held.extend(domain.held(name)?);
        }
        if !held.is_empty() && !force {
            return Err(HubError::FailedPrecondition(format!(
                "workspace '{name}' is not empty ({}); delete with force to remove it and everything in it",
                held.join(", ")
            )));
        }
        for domain in contents {
            domain.delete_all(name)?;
        }
        self.delete_owned(&prefix)?;
        self.records.delete(TREE, name)?;
        Ok(())
    }

    /// Makes every metadata write durable.
    ///
    /// # Errors
    /// Storage errors.
    pub fn flush(&self) -> HubResult<()> {
        Ok(self.records.flush()?)
    }

    fn delete_owned(&self, prefix: &str) -> HubResult<()> {
        for tree in OWNED_TREES {
            for key in self.records.keys(tree, prefix)? {
                self.records.delete(tree, &key)?;
            }
        }
        Ok(())
    }
}
