//! The model registry: models, their immutable numbered versions, and movable aliases.
//!
//! A version is registered only after its bytes are in the artifact store and tract has
//! loaded, typed and optimized them, so every version is one a device can run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_drift::wire::FeatureBinding;
use shoal_drift::{
    Baseline, ClassBaseline, FeatureKind, NumericBaseline, OutputBaseline, OutputKind,
};
use shoal_model::{Dim, IoSignature, LoadedModel, Tensor, TensorData};
use shoal_proto::device as wire;

use crate::error::{RegistryError, RegistryResult};
use shoal_store::artifacts::ArtifactStore;
use shoal_store::check_name;
use shoal_store::storage::Records;
use shoal_store::workspace::Workspaces;

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
    /// The drift baseline, once one is set (`shoal model baseline set`).
    #[serde(default)]
    pub baseline: Option<VersionBaseline>,
}

/// A version's drift baseline: the profile of its training data over the features that feed
/// one model input, column by column, and the model's own outputs on that data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionBaseline {
    /// The model input the features feed; feature `i` is column `i` of its last axis.
    pub input: String,
    pub baseline: Baseline,
    /// sha256 of the encoded `DriftBaseline` in the artifact store: devices fetch it as a blob,
    /// since a baseline over many features outgrows any MQTT payload limit.
    pub digest: String,
    /// Size of that blob in bytes.
    pub size_bytes: u64,
}

impl VersionBaseline {
    pub fn bindings(&self) -> Vec<FeatureBinding> {
        (0..self.baseline.features.len())
            .map(|column| FeatureBinding {
                input: self.input.clone(),
                column: column as u32,
            })
            .collect()
    }
}

/// Rows of the baseline data the hub runs through the model to learn its output
/// distribution (prediction drift baseline).
pub const OUTPUT_BASELINE_MAX_ROWS: usize = 100_000;
/// Classes an argmax output baseline counts before its overflow bin.
const MAX_CLASSES: usize = 1024;

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
            baseline: self.baseline.as_ref().map(|b| wire::BlobRef {
                digest: b.digest.clone(),
                size_bytes: b.size_bytes,
            }),
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
    pub fn check_new_version(&self, new: &NewVersion) -> RegistryResult<()> {
        self.workspaces.require(&new.workspace)?;
        check_name("model name", &new.name)?;
        for key in new.tags.keys() {
            if key.is_empty() || key.len() > 128 {
                return Err(RegistryError::invalid(format!(
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
    ) -> RegistryResult<ModelVersion> {
        self.check_new_version(&new)?;
        let bytes = self.artifacts.read(&digest).await?;
        let loaded = tokio::task::spawn_blocking(move || LoadedModel::from_bytes(&bytes))
            .await
            .map_err(|e| RegistryError::Internal(format!("model validation task: {e}")))?
            .map_err(|e| RegistryError::invalid(format!("model refused: {e}")))?;
        let signature = loaded.signature().clone();

        let key = model_key(&new.workspace, &new.name);
        let now = shoal_store::now_ms();
        let model = self
            .records
            .update::<Model, RegistryError>(MODELS_TREE, &key, |current| {
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
            baseline: None,
        };
        let vkey = version_key(&version.workspace, &version.model, version.version);
        if !self.records.insert_new(VERSIONS_TREE, &vkey, &version)? {
            return Err(RegistryError::Internal(format!(
                "version key {vkey} was already taken"
            )));
        }
        self.records.flush()?;
        tracing::info!(workspace = %version.workspace, model = %version.model, version = version.version, digest = %version.digest, "registered model version");
        Ok(version)
    }

    /// # Errors
    /// `NotFound`.
    pub fn model(&self, workspace: &str, name: &str) -> RegistryResult<Model> {
        self.workspaces.require(workspace)?;
        self.records
            .get(MODELS_TREE, &model_key(workspace, name))?
            .ok_or_else(|| RegistryError::not_found("model", name))
    }

    /// # Errors
    /// `NotFound` for the workspace.
    pub fn models(&self, workspace: &str) -> RegistryResult<Vec<Model>> {
        self.workspaces.require(workspace)?;
        Ok(self.records.scan(MODELS_TREE, &format!("{workspace}/"))?)
    }

    /// # Errors
    /// `NotFound` for the model.
    pub fn versions(&self, workspace: &str, name: &str) -> RegistryResult<Vec<ModelVersion>> {
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
    pub fn resolve(
        &self,
        workspace: &str,
        name: &str,
        reference: &str,
    ) -> RegistryResult<ModelVersion> {
        let model = self.model(workspace, name)?;
        let number = if reference.is_empty() || reference == LATEST {
            model.latest_version
        } else if let Ok(n) = reference.parse::<u32>() {
            n
        } else {
            *model.aliases.get(reference).ok_or_else(|| {
                RegistryError::not_found("model version", format!("{name}@{reference}"))
            })?
        };
        self.records
            .get(VERSIONS_TREE, &version_key(workspace, name, number))?
            .ok_or_else(|| RegistryError::not_found("model version", format!("{name}@{reference}")))
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
    ) -> RegistryResult<Model> {
        check_name("alias", alias)?;
        if alias.parse::<u32>().is_ok() || alias == LATEST {
            return Err(RegistryError::invalid(format!(
                "alias '{alias}' would be read as a version reference; pick a word such as 'production'"
            )));
        }
        self.resolve(workspace, name, &version.to_string())?;
        let model = self.records.update::<Model, RegistryError>(
            MODELS_TREE,
            &model_key(workspace, name),
            |current| {
                let mut model = current.ok_or_else(|| RegistryError::not_found("model", name))?;
                model.aliases.insert(alias.to_string(), version);
                Ok(model)
            },
        )?;
        tracing::info!(%workspace, model = %name, %alias, version, "alias set");
        Ok(model)
    }

    /// # Errors
    /// `NotFound` for the model or the alias.
    pub fn delete_alias(&self, workspace: &str, name: &str, alias: &str) -> RegistryResult<Model> {
        self.model(workspace, name)?;
        self.records.update::<Model, RegistryError>(
            MODELS_TREE,
            &model_key(workspace, name),
            |current| {
                let mut model = current.ok_or_else(|| RegistryError::not_found("model", name))?;
                if model.aliases.remove(alias).is_none() {
                    return Err(RegistryError::not_found("alias", format!("{name}@{alias}")));
                }
                Ok(model)
            },
        )
    }

    /// Profiles a CSV file as the drift baseline of a version: `features` name CSV columns in
    /// the order of `input`'s last axis. When every feature is numeric, the model also runs
    /// on (up to [`OUTPUT_BASELINE_MAX_ROWS`] of) the rows, and its outputs' distribution
    /// becomes the prediction drift baseline.
    ///
    /// # Errors
    /// `InvalidArgument` naming the problem: an unknown input, a feature count that does not
    /// match the input's width, a CSV the profiler refuses (with its line), an unknown column.
    pub async fn set_baseline(
        &self,
        workspace: &str,
        name: &str,
        reference: &str,
        input: &str,
        features: Vec<String>,
        csv: std::path::PathBuf,
    ) -> RegistryResult<ModelVersion> {
        let version = self.resolve(workspace, name, reference)?;
        if features.is_empty() {
            return Err(RegistryError::invalid(
                "a baseline needs at least one feature (--features a,b,…)",
            ));
        }
        let spec = if input.is_empty() {
            version.signature.inputs.first()
        } else {
            version.signature.input(input)
        }
        .ok_or_else(|| {
            RegistryError::invalid(format!(
                "model {name}@{} has no input '{input}'",
                version.version
            ))
        })?
        .clone();
        match spec.shape.last() {
            Some(Dim::Fixed(width)) if *width as usize != features.len() => {
                return Err(RegistryError::invalid(format!(
                    "input '{}' is {} wide ({}), but {} features were named",
                    spec.name,
                    width,
                    spec.shape_string(),
                    features.len()
                )))
            }
            None => {
                return Err(RegistryError::invalid(format!(
                    "input '{}' is a scalar; features need a [N, F] input",
                    spec.name
                )))
            }
            _ => {}
        }
        let bytes = self.artifacts.read(&version.digest).await?;
        let input_name = spec.name.clone();
        let baseline =
            tokio::task::spawn_blocking(move || build_baseline(&csv, &features, &bytes, &spec))
                .await
                .map_err(|e| RegistryError::Internal(format!("baseline task: {e}")))??;
        let encoded = {
            use prost::Message;
            let bindings: Vec<FeatureBinding> = (0..baseline.features.len())
                .map(|column| FeatureBinding {
                    input: input_name.clone(),
                    column: column as u32,
                })
                .collect();
            shoal_drift::wire::baseline_to_wire(&baseline, &bindings).encode_to_vec()
        };
        let (blob_digest, blob_size) = self.store_blob(&encoded).await?;
        let key = version_key(workspace, name, version.version);
        let updated =
            self.records
                .update::<ModelVersion, RegistryError>(VERSIONS_TREE, &key, |current| {
                    let mut version = current.ok_or_else(|| {
                        RegistryError::not_found("model version", format!("{name}@{reference}"))
                    })?;
                    version.baseline = Some(VersionBaseline {
                        input: input_name.clone(),
                        baseline: baseline.clone(),
                        digest: blob_digest.clone(),
                        size_bytes: blob_size,
                    });
                    Ok(version)
                })?;
        self.records.flush()?;
        tracing::info!(%workspace, model = %name, version = updated.version, rows = baseline.rows, features = baseline.features.len(), outputs = baseline.outputs.len(), blob = %blob_digest, blob_bytes = blob_size, "baseline set");
        Ok(updated)
    }

    /// Writes bytes to the artifact store; returns their digest and size.
    async fn store_blob(&self, bytes: &[u8]) -> RegistryResult<(String, u64)> {
        let mut writer = self.artifacts.writer().await?;
        if let Err(error) = writer.write(bytes).await {
            writer.abort().await;
            return Err(error.into());
        }
        Ok(writer.finish().await?)
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

/// Profiles the CSV and, when every feature is numeric, learns the model's output
/// distribution on the same rows.
fn build_baseline(
    csv: &std::path::Path,
    features: &[String],
    model: &[u8],
    input: &shoal_model::TensorSpec,
) -> RegistryResult<Baseline> {
    let open = || {
        std::fs::File::open(csv).map_err(shoal_store::IoError::with(format!(
            "open baseline CSV {}",
            csv.display()
        )))
    };
    let options = shoal_drift::ProfileOptions {
        features: Some(features.to_vec()),
        ..Default::default()
    };
    let profile = shoal_drift::profile_csv(open()?, &options)
        .map_err(|e| RegistryError::invalid(format!("baseline CSV: {e}")))?;
    let mut baseline = profile.baseline();
    let all_numeric = baseline
        .features
        .iter()
        .all(|f| matches!(f.kind, FeatureKind::Numeric(_)));
    if all_numeric && input.dtype == shoal_model::DType::F32 && input.shape.len() == 2 {
        let rows = numeric_rows(open()?, features)?;
        if !rows.is_empty() {
            baseline.outputs = output_baselines(model, &rows, features.len())?;
        }
    }
    Ok(baseline)
}

/// The feature columns of every row without a null, as f32, up to the output-baseline cap.
fn numeric_rows(file: std::fs::File, features: &[String]) -> RegistryResult<Vec<f32>> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let headers = reader
        .headers()
        .map_err(|e| RegistryError::invalid(format!("baseline CSV: {e}")))?
        .clone();
    let mut columns = Vec::with_capacity(features.len());
    for feature in features {
        let index = headers
            .iter()
            .position(|h| h.trim() == feature)
            .ok_or_else(|| {
                RegistryError::invalid(format!("baseline CSV has no column '{feature}'"))
            })?;
        columns.push(index);
    }
    let mut values = Vec::new();
    let mut rows = 0;
    for record in reader.records() {
        let Ok(record) = record else { continue };
        let parsed: Option<Vec<f32>> = columns
            .iter()
            .map(|&c| record.get(c)?.trim().parse::<f32>().ok())
            .collect();
        if let Some(row) = parsed.filter(|r| r.iter().all(|v| v.is_finite())) {
            values.extend(row);
            rows += 1;
            if rows >= OUTPUT_BASELINE_MAX_ROWS {
                break;
            }
        }
    }
    Ok(values)
}

/// Runs the model over the rows in batches and bins its outputs: argmax classes for an
/// `[N, C]` output with C ≥ 2, a numeric histogram for one value per row.
fn output_baselines(
    model: &[u8],
    rows: &[f32],
    width: usize,
) -> RegistryResult<Vec<OutputBaseline>> {
    const BATCH: usize = 1024;
    let loaded = LoadedModel::from_bytes(model)
        .map_err(|e| RegistryError::invalid(format!("model: {e}")))?;
    if loaded.signature().inputs.len() != 1 {
        return Ok(Vec::new());
    }
    let outputs = loaded.signature().outputs.clone();
    let mut classes: Vec<Vec<usize>> = vec![Vec::new(); outputs.len()];
    let mut numbers: Vec<Vec<f64>> = vec![Vec::new(); outputs.len()];
    let mut widths = vec![0usize; outputs.len()];
    for batch in rows.chunks(BATCH * width) {
        let n = batch.len() / width;
        let result = loaded
            .run(vec![Tensor::f32(vec![n, width], batch.to_vec())])
            .map_err(|e| {
                RegistryError::invalid(format!("running the model on the baseline rows: {e}"))
            })?;
        for (i, tensor) in result.iter().enumerate() {
            let TensorData::F32(values) = &tensor.data else {
                continue;
            };
            let per_row = if tensor.shape.first() == Some(&n) && n > 0 {
                values.len() / n
            } else {
                0
            };
            widths[i] = per_row;
            if per_row >= 2 {
                for row in values.chunks(per_row) {
                    let argmax = row
                        .iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |best, (j, v)| {
                            if *v > best.1 {
                                (j, *v)
                            } else {
                                best
                            }
                        })
                        .0;
                    classes[i].push(argmax);
                }
            } else if per_row == 1 {
                numbers[i].extend(values.iter().map(|v| *v as f64));
            }
        }
    }
    let mut baselines = Vec::new();
    for (i, spec) in outputs.iter().enumerate() {
        let kind = if widths[i] >= 2 {
            OutputKind::Classes(ClassBaseline::from_predictions(
                widths[i].min(MAX_CLASSES),
                classes[i].iter().copied(),
            ))
        } else if widths[i] == 1 {
            OutputKind::Numeric(NumericBaseline::from_values(
                std::mem::take(&mut numbers[i]),
                0,
            ))
        } else {
            continue;
        };
        baselines.push(OutputBaseline {
            name: spec.name.clone(),
            kind,
        });
    }
    Ok(baselines)
}

// Used by the MLflow API, whose clients create a registered model before its first version.
impl Registry {
    /// Creates a model with no versions yet (MLflow's `registered-models/create`).
    ///
    /// # Errors
    /// `AlreadyExists` for a taken name; `InvalidArgument` for a bad one; `NotFound` for the
    /// workspace.
    pub fn create_model(
        &self,
        workspace: &str,
        name: &str,
        description: &str,
    ) -> RegistryResult<Model> {
        self.workspaces.require(workspace)?;
        check_name("model name", name)?;
        let model = Model {
            workspace: workspace.to_string(),
            name: name.to_string(),
            description: description.to_string(),
            latest_version: 0,
            aliases: BTreeMap::new(),
            created_at_ms: shoal_store::now_ms(),
        };
        if !self
            .records
            .insert_new(MODELS_TREE, &model_key(workspace, name), &model)?
        {
            return Err(RegistryError::already_exists("model", name));
        }
        tracing::info!(%workspace, model = %name, "model created");
        Ok(model)
    }

    /// Replaces a model's description.
    ///
    /// # Errors
    /// `NotFound` for the model.
    pub fn set_model_description(
        &self,
        workspace: &str,
        name: &str,
        description: &str,
    ) -> RegistryResult<Model> {
        self.model(workspace, name)?;
        self.records.update::<Model, RegistryError>(
            MODELS_TREE,
            &model_key(workspace, name),
            |current| {
                let mut model = current.ok_or_else(|| RegistryError::not_found("model", name))?;
                model.description = description.to_string();
                Ok(model)
            },
        )
    }
}

/// Models and their versions are keyed `{workspace}/…`.
impl shoal_store::WorkspaceContents for Registry {
    fn held(&self, workspace: &str) -> shoal_store::WorkspaceResult<Vec<String>> {
        let prefix = format!("{workspace}/");
        let models = self.records.count(MODELS_TREE, &prefix)?;
        Ok(shoal_store::held_count(models, "model")
            .into_iter()
            .collect())
    }

    fn delete_all(&self, workspace: &str) -> shoal_store::WorkspaceResult<()> {
        let prefix = format!("{workspace}/");
        self.records.delete_prefix(MODELS_TREE, &prefix)?;
        self.records.delete_prefix(VERSIONS_TREE, &prefix)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
