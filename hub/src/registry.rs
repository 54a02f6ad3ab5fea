//! The model registry: models, their immutable numbered versions, and movable aliases.
//!
//! A version is registered only after its bytes are in the artifact store and tract has
//! loaded, typed and optimized them, so every version is one a device can run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_model::{Dim, IoSignature, LoadedModel};
use shoal_proto::device as wire;

use crate::artifacts::ArtifactStore;
use crate::error::{check_name, HubError, HubResult};
use crate::storage::Records;
use crate::workspace::Workspaces;

pub const MODELS_TREE: &str = "models";
pub const VERSIONS_TREE: &str = "model_versions";

/// The reference that always means the newest version.
pub const LATEST: &str = "latest";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    pub workspace: String,
    pub name: String,
    pub description: String,
    /// The highest version number handed out; versions are never reused.
    pub latest_version: u32,
    pub aliases: BTreeMap<String, u32>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelVersion {
    pub workspace: String,
    pub model: String,
    pub version: u32,
    pub digest: String,
    pub size_bytes: u64,
    pub signature: IoSignature,
    pub tags: BTreeMap<String, String>,
    pub description: String,
    pub created_at_ms: i64,
}

impl ModelVersion {
    /// What devices are told about this version, before signing.
    pub fn manifest(&self) -> wire::Manifest {
        wire::Manifest {
            workspace: self.workspace.clone(),
            model: self.model.clone(),
            version: self.version,
            digest: self.digest.clone(),
            size_bytes: self.size_bytes,
            signature: Some(signature_to_wire(&self.signature)),
            created_at_ms: self.created_at_ms,
            // Baselines arrive with drift monitoring; until then devices summarise nothing.
            ..Default::default()
        }
    }
}

/// What a new version is registered with, besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    pub workspace: String,
    pub name: String,
    pub description: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct Registry {
    records: Records,
    artifacts: ArtifactStore,
    workspaces: Workspaces,
}

fn model_key(workspace: &str, name: &str) -> String {
    format!("{workspace}/{name}")
}

fn version_key(workspace: &str, name: &str, version: u32) -> String {
    // Zero-padded so a prefix scan returns versions in numeric order.
    format!("{workspace}/{name}/{version:010}")
}

impl Registry {
    pub fn new(records: Records, artifacts: ArtifactStore, workspaces: Workspaces) -> Registry {
        Registry {
            records,
            artifacts,
            workspaces,
        }
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// Checks what an upload will be registered as before any byte is accepted.
    ///
    /// # Errors
    /// `NotFound` for the workspace, `InvalidArgument` for the name or tags.
    pub fn check_new_version(&self, new: &NewVersion) -> HubResult<()> {
        self.workspaces.require(&new.workspace)?;
        check_name("model name", &new.name)?;
        for key in new.tags.keys() {
            if key.is_empty() || key.len() > 128 {
                return Err(HubError::invalid(format!(
                    "tag key '{key}' must be 1 to 128 characters"
                )));
            }
        }
        Ok(())
    }

    /// Validates a stored blob with tract and registers it as the next version.
    ///
    /// # Errors
    /// `InvalidArgument` naming why tract refused the model; storage errors.
    pub async fn register(
        &self,
        new: NewVersion,
        digest: String,
        size_bytes: u64,
    ) -> HubResult<ModelVersion> {
        self.check_new_version(&new)?;
        let bytes = self.artifacts.read(&digest).await?;
        let loaded = tokio::task::spawn_blocking(move || LoadedModel::from_bytes(&bytes))
            .await
            .map_err(|e| HubError::Internal(format!("model validation task: {e}")))?
            .map_err(|e| HubError::invalid(format!("model refused: {e}")))?;
        let signature = loaded.signature().clone();

        let key = model_key(&new.workspace, &new.name);
        let now = crate::now_ms();
        let model = self
            .records
            .update::<Model, HubError>(MODELS_TREE, &key, |current| {
                let mut model = current.unwrap_or_else(|| Model {
                    workspace: new.workspace.clone(),
                    name: new.name.clone(),
                    description: new.description.clone(),
                    latest_version: 0,
                    aliases: BTreeMap::new(),
                    created_at_ms: now,
                });
                model.latest_version += 1;
                Ok(model)
            })?;
        let version = ModelVersion {
            workspace: new.workspace,
            model: new.name,
            version: model.latest_version,
            digest,
            size_bytes,
            signature,
            tags: new.tags,
            description: new.description,
            created_at_ms: now,
        };
        let vkey = version_key(&version.workspace, &version.model, version.version);
        if !self.records.insert_new(VERSIONS_TREE, &vkey, &version)? {
            return Err(HubError::Internal(format!(
                "version key {vkey} was already taken"
            )));
        }
        self.records.flush()?;
        tracing::info!(workspace = %version.workspace, model = %version.model, version = version.version, digest = %version.digest, "registered model version");
        Ok(version)
    }

    /// # Errors
    /// `NotFound`.
    pub fn model(&self, workspace: &str, name: &str) -> HubResult<Model> {
        self.workspaces.require(workspace)?;
        self.records
            .get(MODELS_TREE, &model_key(workspace, name))?
            .ok_or_else(|| HubError::not_found("model", name))
    }

    /// # Errors
    /// `NotFound` for the workspace.
    pub fn models(&self, workspace: &str) -> HubResult<Vec<Model>> {
        self.workspaces.require(workspace)?;
        Ok(self.records.scan(MODELS_TREE, &format!("{workspace}/"))?)
    }

    /// # Errors
    /// `NotFound` for the model.
    pub fn versions(&self, workspace: &str, name: &str) -> HubResult<Vec<ModelVersion>> {
        self.model(workspace, name)?;
        Ok(self
            .records
            .scan(VERSIONS_TREE, &format!("{workspace}/{name}/"))?)
    }

    /// Finds a version by number ("3"), alias ("production") or "latest" (also the empty
    /// reference).
    ///
    /// # Errors
    /// `NotFound` naming the model and the reference.
    pub fn resolve(&self, workspace: &str, name: &str, reference: &str) -> HubResult<ModelVersion> {
        let model = self.model(workspace, name)?;
        let number = if reference.is_empty() || reference == LATEST {
            model.latest_version
        } else if let Ok(n) = reference.parse::<u32>() {
            n
        } else {
            *model.aliases.get(reference).ok_or_else(|| {
                HubError::not_found("model version", format!("{name}@{reference}"))
            })?
        };
        self.records
            .get(VERSIONS_TREE, &version_key(workspace, name, number))?
            .ok_or_else(|| HubError::not_found("model version", format!("{name}@{reference}")))
    }

    /// Points `alias` at `version`, moving it if it pointed elsewhere.
    ///
    /// # Errors
    /// `InvalidArgument` for an alias that looks like a version number or "latest";
    /// `NotFound` for the model or version.
    pub fn set_alias(
        &self,
        workspace: &str,
        name: &str,
        alias: &str,
        version: u32,
    ) -> HubResult<Model> {
        check_name("alias", alias)?;
        if alias.parse::<u32>().is_ok() || alias == LATEST {
            return Err(HubError::invalid(format!(
                "alias '{alias}' would be read as a version reference; pick a word such as 'production'"
            )));
        }
        self.resolve(workspace, name, &version.to_string())?;
        let model = self.records.update::<Model, HubError>(
            MODELS_TREE,
            &model_key(workspace, name),
            |current| {
                let mut model = current.ok_or_else(|| HubError::not_found("model", name))?;
                model.aliases.insert(alias.to_string(), version);
                Ok(model)
            },
        )?;
        tracing::info!(%workspace, model = %name, %alias, version, "alias set");
        Ok(model)
    }

    /// # Errors
    /// `NotFound` for the model or the alias.
    pub fn delete_alias(&self, workspace: &str, name: &str, alias: &str) -> HubResult<Model> {
        self.model(workspace, name)?;
        self.records.update::<Model, HubError>(
            MODELS_TREE,
            &model_key(workspace, name),
            |current| {
                let mut model = current.ok_or_else(|| HubError::not_found("model", name))?;
                if model.aliases.remove(alias).is_none() {
                    return Err(HubError::not_found("alias", format!("{name}@{alias}")));
                }
                Ok(model)
            },
        )
    }

    /// Aliases that point at `version` now.
    pub fn aliases_of(model: &Model, version: u32) -> Vec<String> {
        model
            .aliases
            .iter()
            .filter(|(_, v)| **v == version)
            .map(|(a, _)| a.clone())
            .collect()
    }
}

/// The wire form of an IO signature, as it goes into manifests and API answers.
pub fn signature_to_wire(signature: &IoSignature) -> wire::IoSignature {
    let spec = |s: &shoal_model::TensorSpec| wire::TensorSpec {
        name: s.name.clone(),
        dtype: dtype_to_wire(s.dtype) as i32,
        shape: s
            .shape
            .iter()
            .map(|d| wire::Dim {
                value: Some(match d {
                    Dim::Fixed(n) => wire::dim::Value::Fixed(*n),
                    Dim::Symbol(s) => wire::dim::Value::Symbol(s.clone()),
                }),
            })
            .collect(),
    };
    wire::IoSignature {
        inputs: signature.inputs.iter().map(spec).collect(),
        outputs: signature.outputs.iter().map(spec).collect(),
    }
}

fn dtype_to_wire(dtype: shoal_model::DType) -> wire::DataType {
    use shoal_model::DType;
    match dtype {
        DType::F32 => wire::DataType::F32,
        DType::F64 => wire::DataType::F64,
        DType::I32 => wire::DataType::I32,
        DType::I64 => wire::DataType::I64,
        DType::U8 => wire::DataType::U8,
        DType::Bool => wire::DataType::Bool,
    }
}
