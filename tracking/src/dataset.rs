//! Datasets: versioned CSV files in the artifact store, each with the profile computed when it
//! was registered. The profile (schema, per-column statistics, decile histograms, top
//! categories) is also the drift baseline of any model trained on the version.
//!
//! # Records
//! - `datasets/{ws}/{name}`: [`Dataset`], the latest version number.
//! - `dataset_versions/{ws}/{name}/{version:010}`: [`DatasetVersion`], immutable.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use shoal_drift::{Profile, ProfileOptions};

use crate::error::{TrackingError, TrackingResult};
use shoal_store::artifacts::ArtifactStore;
use shoal_store::check_name;
use shoal_store::storage::Records;
use shoal_store::workspace::Workspaces;

const DATASETS_TREE: &str = "datasets";
const DATASET_VERSIONS_TREE: &str = "dataset_versions";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub workspace: String,
    pub name: String,
    pub latest_version: u32,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetVersion {
    pub workspace: String,
    pub name: String,
    pub version: u32,
    /// sha256 of the CSV in the artifact store.
    pub digest: String,
    pub size_bytes: u64,
    pub description: String,
    pub profile: Profile,
    pub created_ms: i64,
    /// The run that wrote this version, if one did.
    pub source_run: Option<String>,
}

impl DatasetVersion {
    /// `sensors@2`: how runs and lineage name the version.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// `sensors@2` → (`sensors`, `2`); `sensors` → (`sensors`, `latest`).
pub fn split_reference(reference: &str) -> (&str, &str) {
    match reference.split_once('@') {
        Some((name, version)) => (name, version),
        None => (reference, "latest"),
    }
}

#[derive(Clone)]
pub struct Datasets {
    records: Records,
    artifacts: ArtifactStore,
    workspaces: Workspaces,
}

impl Datasets {
    pub fn new(records: Records, artifacts: ArtifactStore, workspaces: Workspaces) -> Datasets {
        Datasets {
            records,
            artifacts,
            workspaces,
        }
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// Checks the workspace and name before any byte is accepted.
    ///
    /// # Errors
    /// `NotFound` for the workspace; `InvalidArgument` for the name.
    pub fn check_new(&self, workspace: &str, name: &str) -> TrackingResult<()> {
        self.workspaces.require(workspace)?;
        Ok(check_name("dataset name", name)?)
    }

    /// Profiles a stored CSV and registers it as the next version of `name`.
    ///
    /// # Errors
    /// `InvalidArgument` naming the line of a ragged row or a bad encoding, or an empty file.
    pub async fn register(
        &self,
        workspace: &str,
        name: &str,
        description: &str,
        digest: String,
        size_bytes: u64,
        source_run: Option<String>,
    ) -> TrackingResult<DatasetVersion> {
        self.check_new(workspace, name)?;
        let path = self.artifacts.local_path(&digest).await?;
        let profile = tokio::task::spawn_blocking(move || profile_file(path))
            .await
            .map_err(|e| TrackingError::Internal(format!("dataset profiling task: {e}")))??;
        let now = shoal_store::now_ms();
        let key = format!("{workspace}/{name}");
        let dataset =
            self.records
                .update::<Dataset, TrackingError>(DATASETS_TREE, &key, |current| {
                    let mut d = current.unwrap_or_else(|| Dataset {
                        workspace: workspace.into(),
                        name: name.into(),
                        latest_version: 0,
                        created_ms: now,
                    });
                    d.latest_version += 1;
                    Ok(d)
                })?;
        let version = DatasetVersion {
            workspace: workspace.into(),
            name: name.into(),
            version: dataset.latest_version,
            digest,
            size_bytes,
            description: description.into(),
            profile,
            created_ms: now,
            source_run,
        };
        let vkey = format!("{key}/{:010}", version.version);
        if !self
            .records
            .insert_new(DATASET_VERSIONS_TREE, &vkey, &version)?
        {
            return Err(TrackingError::Internal(format!(
                "dataset version key {vkey} was already taken"
            )));
        }
        self.records.flush()?;
        tracing::info!(%workspace, dataset = %name, version = version.version, rows = version.profile.rows, columns = version.profile.columns.len(), "dataset registered");
        Ok(version)
    }

    /// A version by reference: `sensors@2`, `sensors@latest` or `sensors`.
    ///
    /// # Errors
    /// `NotFound` naming the reference; `InvalidArgument` for a malformed version.
    pub fn resolve(&self, workspace: &str, reference: &str) -> TrackingResult<DatasetVersion> {
        self.workspaces.require(workspace)?;
        let (name, version) = split_reference(reference);
        let dataset: Dataset = self
            .records
            .get(DATASETS_TREE, &format!("{workspace}/{name}"))?
            .ok_or_else(|| TrackingError::not_found("dataset", name))?;
        let number = if version.is_empty() || version == "latest" {
            dataset.latest_version
        } else {
            version.parse::<u32>().map_err(|_| {
                TrackingError::invalid(format!(
                    "dataset reference '{reference}': the version must be a number or 'latest'"
                ))
            })?
        };
        self.records
            .get(
                DATASET_VERSIONS_TREE,
                &format!("{workspace}/{name}/{number:010}"),
            )?
            .ok_or_else(|| TrackingError::not_found("dataset version", format!("{name}@{number}")))
    }

    /// Every version of every dataset of a workspace, by name then version.
    ///
    /// # Errors
    /// `NotFound` for the workspace.
    pub fn list(&self, workspace: &str) -> TrackingResult<Vec<DatasetVersion>> {
        self.workspaces.require(workspace)?;
        Ok(self
            .records
            .scan(DATASET_VERSIONS_TREE, &format!("{workspace}/"))?)
    }

    /// A local file with the CSV of a version.
    ///
    /// # Errors
    /// When the artifact store no longer has it.
    pub async fn local_path(&self, version: &DatasetVersion) -> TrackingResult<PathBuf> {
        Ok(self.artifacts.local_path(&version.digest).await?)
    }
}

fn profile_file(path: PathBuf) -> TrackingResult<Profile> {
    let file = std::fs::File::open(&path).map_err(shoal_store::IoError::with(format!(
        "open dataset {}",
        path.display()
    )))?;
    shoal_drift::profile_csv(std::io::BufReader::new(file), &ProfileOptions::default())
        .map_err(|e| TrackingError::invalid(format!("dataset refused: {e}")))
}

impl shoal_store::workspace::WorkspaceContents for Datasets {
    fn held(&self, workspace: &str) -> shoal_store::WorkspaceResult<Vec<String>> {
        let versions = self
            .records
            .count(DATASET_VERSIONS_TREE, &format!("{workspace}/"))?;
        Ok(shoal_store::held_count(versions, "dataset version")
            .into_iter()
            .collect())
    }

    fn delete_all(&self, workspace: &str) -> shoal_store::WorkspaceResult<()> {
        for tree in [DATASETS_TREE, DATASET_VERSIONS_TREE] {
            for key in self.records.keys(tree, &format!("{workspace}/"))? {
                self.records.delete(tree, &key)?;
            }
        }
        Ok(())
    }
}
