//! The artifact index: which content-addressed blob each run (or logged model) file is,
//! keyed by the path MLflow's artifact proxy uses.

use super::*;

/// A file stored for a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    pub digest: String,
    pub size_bytes: u64,
}

/// An entry of an artifact folder listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactListing {
    /// Path relative to the listing root's parent, as MLflow reports it.
    pub path: String,
    pub is_dir: bool,
    pub size_bytes: u64,
}

/// Checks an artifact path: relative, no `..`, no empty parts.
///
/// # Errors
/// `InvalidArgument` naming the path.
pub fn check_artifact_path(path: &str) -> TrackingResult<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || path.split('/').any(|part| part == ".." || part == ".");
    if bad {
        return Err(TrackingError::invalid(format!(
            "artifact path '{path}' must be relative, without '.', '..' or backslashes"
        )));
    }
    Ok(())
}

impl Tracking {
    /// Records that `path` under an artifact root holds a stored blob.
    ///
    /// # Errors
    /// `InvalidArgument` for a path with `..` or an absolute path.
    pub fn put_artifact(&self, full_path: &str, entry: &ArtifactEntry) -> TrackingResult<()> {
        check_artifact_path(full_path)?;
        self.records.put(ARTIFACT_INDEX_TREE, full_path, entry)?;
        Ok(())
    }

    /// # Errors
    /// `NotFound`.
    pub fn artifact(&self, full_path: &str) -> TrackingResult<ArtifactEntry> {
        check_artifact_path(full_path)?;
        self.records
            .get(ARTIFACT_INDEX_TREE, full_path)?
            .ok_or_else(|| TrackingError::not_found("artifact", full_path))
    }

    /// Every file below a folder, with paths relative to it.
    ///
    /// # Errors
    /// Storage errors.
    pub fn artifacts_under(&self, folder: &str) -> TrackingResult<Vec<(String, ArtifactEntry)>> {
        let prefix = format!("{}/", folder.trim_end_matches('/'));
        Ok(self
            .records
            .scan_with_keys::<ArtifactEntry>(ARTIFACT_INDEX_TREE, &prefix)?
            .into_iter()
            .map(|(key, entry)| (key[prefix.len()..].to_string(), entry))
            .collect())
    }

    /// The direct children of an artifact folder (MLflow's `list_artifacts`): files with
    /// their sizes, sub-folders once each. Paths are relative to `root`.
    ///
    /// # Errors
    /// Storage errors.
    pub fn list_artifact_folder(
        &self,
        root: &str,
        folder: &str,
    ) -> TrackingResult<Vec<ArtifactListing>> {
        let folder = folder.trim_matches('/');
        let base = if folder.is_empty() {
            root.trim_end_matches('/').to_string()
        } else {
            format!("{}/{folder}", root.trim_end_matches('/'))
        };
        let mut listing: Vec<ArtifactListing> = Vec::new();
        for (rel, entry) in self.artifacts_under(&base)? {
            let (name, is_dir) = match rel.split_once('/') {
                Some((dir, _)) => (dir.to_string(), true),
                None => (rel.clone(), false),
            };
            let path = if folder.is_empty() {
                name
            } else {
                format!("{folder}/{name}")
            };
            if is_dir {
                if listing.last().is_some_and(|l| l.path == path) {
                    continue;
                }
                listing.push(ArtifactListing {
                    path,
                    is_dir: true,
                    size_bytes: 0,
                });
            } else {
                listing.push(ArtifactListing {
                    path,
                    is_dir: false,
                    size_bytes: entry.size_bytes,
                });
            }
        }
        Ok(listing)
    }
}
