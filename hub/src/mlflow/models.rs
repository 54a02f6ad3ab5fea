//! `registered-models/*` and `model-versions/*`, backed by Shoal's registry.
//!
//! Shoal's registry holds ONNX models that tract has validated. `model-versions/create`
//! resolves its `source` to a file among a run's or an MLflow 3 logged model's artifacts:
//! - `models:/<model id>` (what MLflow 3's `log_model` and `register_model` send): the logged
//!   model's files;
//! - `runs:/<run>/<path>`: the run's files at `path`, or, when the run has none there, the
//!   files of the run's logged model named like the first part of `path` (MLflow 3's
//!   `log_model(name=...)`), the newest if there are several;
//! - `mlflow-artifacts:/...` or an artifact path, of a run or a logged model.
//!
//! The file is an `.onnx` file itself, or the single `.onnx` file in a folder (MLflow's onnx
//! flavor writes `model.onnx` next to `MLmodel`). Versions are READY as soon as they are
//! created, and the run (the request's, or the logged model's source run) records the version
//! among its outputs.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::filter::{parse_filter, Subject};
use super::{key_value_list, page_offset, paginate, Call, MlflowError, MlflowResult};
use shoal_registry::registry::{Model, ModelVersion, Registry};
use shoal_tracking::tracking::{Lifecycle, LoggedModel, Run};
use shoal_tracking::ArtifactVersion;

/// Version tags that carry MLflow's `source` and `run_id`; not shown as user tags.
const SOURCE_TAG: &str = "mlflow.source";
const RUN_ID_TAG: &str = "mlflow.run_id";
/// Version tag naming the logged model a version was taken from.
const MODEL_ID_TAG: &str = "mlflow.model_id";

fn is_hidden_tag(key: &str) -> bool {
    [SOURCE_TAG, RUN_ID_TAG, MODEL_ID_TAG].contains(&key)
}

/// Models returned by one search page unless the client asks for fewer.
const DEFAULT_SEARCH_PAGE: usize = 100;

fn version_json(model: &Model, version: &ModelVersion) -> Value {
    let tags = version.tags.iter().filter(|(k, _)| !is_hidden_tag(k));
    let mut body = json!({
        "name": version.model,
        "version": version.version.to_string(),
        "creation_timestamp": version.created_at_ms,
        "last_updated_timestamp": version.created_at_ms,
        "user_id": "",
        "current_stage": "None",
        "description": version.description,
        "source": version.tags.get(SOURCE_TAG).cloned().unwrap_or_default(),
        "run_id": version.tags.get(RUN_ID_TAG).cloned().unwrap_or_default(),
        "status": "READY",
        "status_message": "",
        "tags": key_value_list(tags),
        "aliases": Registry::aliases_of(model, version.version),
    });
    if let Some(model_id) = version.tags.get(MODEL_ID_TAG) {
        body["model_id"] = json!(model_id);
    }
    body
}

fn model_json(registry: &Registry, model: &Model) -> MlflowResult<Value> {
    let latest = if model.latest_version > 0 {
        let version = registry.resolve(&model.workspace, &model.name, "latest")?;
        vec![version_json(model, &version)]
    } else {
        Vec::new()
    };
    let aliases: Vec<Value> = model
        .aliases
        .iter()
        .map(|(alias, version)| json!({ "alias": alias, "version": version.to_string() }))
        .collect();
    let updated = latest
        .first()
        .and_then(|v| v["creation_timestamp"].as_i64())
        .unwrap_or(model.created_at_ms);
    Ok(json!({
        "name": model.name,
        "creation_timestamp": model.created_at_ms,
        "last_updated_timestamp": updated,
        "user_id": "",
        "description": model.description,
        "latest_versions": latest,
        "tags": [],
        "aliases": aliases,
    }))
}

fn version_number(call: &Call, field: &str) -> MlflowResult<u32> {
    let text = call.fields.str(field)?;
    text.parse()
        .map_err(|_| MlflowError::field(field, format!("'{text}' is not a version number")))
}

pub(crate) fn create_model(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("name")?;
    let description = call.fields.opt_str("description")?.unwrap_or_default();
    let registry = &call.state.registry;
    let model = registry.create_model(&call.workspace, &name, &description)?;
    Ok(json!({ "registered_model": model_json(registry, &model)? }))
}

pub(crate) fn get_model(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("name")?;
    let registry = &call.state.registry;
    let model = registry.model(&call.workspace, &name)?;
    Ok(json!({ "registered_model": model_json(registry, &model)? }))
}

pub(crate) fn update_model(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("name")?;
    let registry = &call.state.registry;
    let model = match call.fields.opt_str("description")? {
        Some(description) => {
            registry.set_model_description(&call.workspace, &name, &description)?
        }
        None => registry.model(&call.workspace, &name)?,
    };
    Ok(json!({ "registered_model": model_json(registry, &model)? }))
}

pub(crate) fn search_models(call: Call) -> MlflowResult<Value> {
    let clauses = match call.fields.opt_str("filter")? {
        Some(filter) => parse_filter(&filter)?,
        None => Vec::new(),
    };
    let page = call.page_size(DEFAULT_SEARCH_PAGE)?;
    let offset = page_offset(&call.fields)?;
    let registry = &call.state.registry;
    let mut models = registry.models(&call.workspace)?;
    for clause in &clauses {
        match &clause.subject {
            Subject::Attribute(field) if field == "name" => {
                models.retain(|m| clause.matches_str(Some(&m.name)))
            }
            other => {
                return Err(MlflowError::field(
                    "filter",
                    format!("registered models can be filtered by name only, not {other:?}"),
                ))
            }
        }
    }
    let (models, token) = paginate(models, offset, page);
    let models = models
        .iter()
        .map(|m| model_json(registry, m))
        .collect::<MlflowResult<Vec<_>>>()?;
    let mut body = json!({ "registered_models": models });
    if let Some(token) = token {
        body["next_page_token"] = json!(token);
    }
    Ok(body)
}

pub(crate) fn latest_versions(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("name")?;
    let registry = &call.state.registry;
    let model = registry.model(&call.workspace, &name)?;
    let versions = if model.latest_version > 0 {
        let version = registry.resolve(&call.workspace, &name, "latest")?;
        vec![version_json(&model, &version)]
    } else {
        Vec::new()
    };
    Ok(json!({ "model_versions": versions }))
}

pub(crate) fn set_alias(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("name")?;
    let alias = call.fields.str("alias")?;
    let version = version_number(&call, "version")?;
    call.state
        .registry
        .set_alias(&call.workspace, &name, &alias, version)?;
    Ok(json!({}))
}

pub(crate) fn delete_alias(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("name")?;
    let alias = call.fields.str("alias")?;
    call.state
        .registry
        .delete_alias(&call.workspace, &name, &alias)?;
    Ok(json!({}))
}

pub(crate) fn get_by_alias(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("name")?;
    let alias = call.fields.str("alias")?;
    let registry = &call.state.registry;
    let model = registry.model(&call.workspace, &name)?;
    let number = model
        .aliases
        .get(&alias)
        .ok_or_else(|| MlflowError::NotFound(format!("model '{name}' has no alias '{alias}'")))?;
    let version = registry.resolve(&call.workspace, &name, &number.to_string())?;
    Ok(json!({ "model_version": version_json(&model, &version) }))
}

pub(crate) fn get_version(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("name")?;
    let number = version_number(&call, "version")?;
    let registry = &call.state.registry;
    let model = registry.model(&call.workspace, &name)?;
    let version = registry.resolve(&call.workspace, &name, &number.to_string())?;
    Ok(json!({ "model_version": version_json(&model, &version) }))
}

pub(crate) fn search_versions(call: Call) -> MlflowResult<Value> {
    let clauses = match call.fields.opt_str("filter")? {
        Some(filter) => parse_filter(&filter)?,
        None => Vec::new(),
    };
    let page = call.page_size(DEFAULT_SEARCH_PAGE)?;
    let offset = page_offset(&call.fields)?;
    let registry = &call.state.registry;
    let mut found: Vec<(Model, ModelVersion)> = Vec::new();
    for model in registry.models(&call.workspace)? {
        for version in registry.versions(&call.workspace, &model.name)? {
            found.push((model.clone(), version));
        }
    }
    for clause in &clauses {
        let field = match &clause.subject {
            Subject::Attribute(field) => field.as_str(),
            Subject::Tag(_) | Subject::Metric(_) | Subject::Param(_) => "",
        };
        match field {
            "name" => found.retain(|(_, v)| clause.matches_str(Some(&v.model))),
            "run_id" => found
                .retain(|(_, v)| clause.matches_str(v.tags.get(RUN_ID_TAG).map(String::as_str))),
            "source_path" | "source" => found
                .retain(|(_, v)| clause.matches_str(v.tags.get(SOURCE_TAG).map(String::as_str))),
            "version_number" => {
                found.retain(|(_, v)| clause.matches_number(Some(f64::from(v.version))))
            }
            _ => {
                return Err(MlflowError::field(
                    "filter",
                    format!(
                        "model versions can be filtered by name, run_id, source_path or \
                         version_number, not {:?}",
                        clause.subject
                    ),
                ))
            }
        }
    }
    // Newest first, as MLflow lists them.
    found.sort_by(|(_, a), (_, b)| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| b.version.cmp(&a.version))
    });
    let (found, token) = paginate(found, offset, page);
    let mut body = json!({
        "model_versions": found.iter().map(|(m, v)| version_json(m, v)).collect::<Vec<_>>(),
    });
    if let Some(token) = token {
        body["next_page_token"] = json!(token);
    }
    Ok(body)
}

pub(crate) fn download_uri(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("name")?;
    let number = version_number(&call, "version")?;
    let version = call
        .state
        .registry
        .resolve(&call.workspace, &name, &number.to_string())?;
    let source = version.tags.get(SOURCE_TAG).cloned().ok_or_else(|| {
        MlflowError::NotFound(format!(
            "{name} version {number} was not registered from MLflow artifacts; \
             fetch it with 'shoal model download'"
        ))
    })?;
    // A logged model's version downloads from the model's own files.
    if let Some(rest) = source.strip_prefix("models:/") {
        let rest = rest.trim_matches('/');
        let (id, below) = rest.split_once('/').unwrap_or((rest, ""));
        if let Ok(model) = call.logged_model(id, true) {
            return Ok(json!({ "artifact_uri": join(&model.artifact_uri(), below) }));
        }
    }
    Ok(json!({ "artifact_uri": source }))
}

/// `model-versions/create`: finds the ONNX file the source names, lets the registry validate
/// and register it, and records the version among the outputs of the run it came from.
pub(crate) async fn create_version(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("name")?;
    let source = call.fields.str("source")?;
    let run_id = call.fields.opt_str("run_id")?;
    let description = call.fields.opt_str("description")?.unwrap_or_default();
    let mut tags: BTreeMap<String, String> = call.fields.key_values("tags")?.into_iter().collect();

    let resolved = resolve_source(&call, &source, run_id.as_deref())?;
    let onnx_path = onnx_file(&call, &source, &resolved.folder)?;

    tags.insert(SOURCE_TAG.into(), source.clone());
    if let Some(run) = &resolved.run {
        tags.insert(RUN_ID_TAG.into(), run.id.clone());
    }
    if let Some(model_id) = &resolved.model_id {
        tags.insert(MODEL_ID_TAG.into(), model_id.clone());
    }
    let version = call
        .state
        .jobs
        .register_artifact(ArtifactVersion {
            workspace: call.workspace.clone(),
            name: name.clone(),
            description,
            tags,
            artifact_path: onnx_path,
            run: resolved.run,
        })
        .await?;
    let model = call.state.registry.model(&call.workspace, &name)?;
    Ok(json!({ "model_version": version_json(&model, &version) }))
}

/// Where a version's source points.
struct ResolvedSource {
    /// The run the version comes from: the request's `run_id`, the run of a run artifact, or
    /// a logged model's source run.
    run: Option<Run>,
    /// The source's full artifact path (`{experiment}/{run}/artifacts/...` or
    /// `{experiment}/models/{model id}/artifacts/...`).
    folder: String,
    /// The logged model the source names, if any.
    model_id: Option<String>,
}

/// Resolves a version's source (see the module doc for the accepted forms).
fn resolve_source(call: &Call, source: &str, run_id: Option<&str>) -> MlflowResult<ResolvedSource> {
    let unsupported = || {
        MlflowError::InvalidParameter(format!(
            "source '{source}' is not one Shoal can register from: use models:/<logged model id>, \
             runs:/<run>/<path>, mlflow-artifacts:/<experiment>/<run>/artifacts/<path>, or an \
             artifact path of the run"
        ))
    };
    let named_run = match run_id {
        Some(id) => Some(call.run(id)?),
        None => None,
    };
    if let Some(rest) = source.strip_prefix("models:/") {
        let rest = rest.trim_matches('/');
        let (id, below) = rest.split_once('/').unwrap_or((rest, ""));
        let model = call.logged_model(id, false).map_err(|e| match e {
            MlflowError::NotFound(_) => MlflowError::InvalidParameter(format!(
                "source '{source}' does not name a logged model of this workspace: register \
                 MLflow 3 logged models as models:/<model id> (m-...), a run's files as \
                 runs:/<run>/<path>"
            )),
            other => other,
        })?;
        return from_logged_model(call, model, below, named_run);
    }
    if let Some(rest) = source.strip_prefix("runs:/") {
        let rest = rest.trim_start_matches('/');
        let (id, path) = rest.split_once('/').unwrap_or((rest, ""));
        let run = call.run(id)?;
        let full = join(&run.artifact_root(), path);
        if !path.trim_matches('/').is_empty() && !has_artifacts(call, &full)? {
            if let Some(model) = logged_model_of_run(call, &run, path)? {
                let (_, below) = path.trim_matches('/').split_once('/').unwrap_or(("", ""));
                return from_logged_model(call, model, below, Some(run));
            }
        }
        return Ok(ResolvedSource {
            run: Some(run),
            folder: full,
            model_id: None,
        });
    }
    let full = if let Some(rest) = source.strip_prefix("mlflow-artifacts:") {
        // `mlflow-artifacts:/0/<run>/artifacts/model` or `mlflow-artifacts://host/0/...`.
        let rest = match rest.strip_prefix("//") {
            Some(with_host) => with_host.split_once('/').map_or("", |(_, p)| p),
            None => rest,
        };
        rest.trim_start_matches('/').to_string()
    } else if let Some((_, rest)) = source.split_once("/mlflow-artifacts/artifacts/") {
        rest.to_string()
    } else if source.contains(":/") {
        return Err(unsupported());
    } else if let Some(run) = &named_run {
        // A path relative to the run's artifact root, or already a full artifact path.
        let path = source.trim_matches('/');
        if path.starts_with(&run.artifact_root()) || is_logged_model_path(path) {
            path.to_string()
        } else {
            join(&run.artifact_root(), path)
        }
    } else {
        source.trim_matches('/').to_string()
    };
    let full = full.trim_end_matches('/').to_string();
    let parts: Vec<&str> = full.splitn(5, '/').collect();
    if let [_experiment, "models", model_id, "artifacts", rest @ ..] = parts.as_slice() {
        let model = call.logged_model(model_id, false)?;
        let below = rest.first().copied().unwrap_or("");
        return from_logged_model(call, model, below, named_run);
    }
    let [_experiment, id, "artifacts", ..] = parts.as_slice() else {
        return Err(unsupported());
    };
    let run = call.run(id)?;
    if let Some(named) = run_id {
        if named != run.id {
            return Err(MlflowError::field(
                "run_id",
                format!("'{named}' is not the run of source '{source}'"),
            ));
        }
    }
    Ok(ResolvedSource {
        run: Some(run),
        folder: full,
        model_id: None,
    })
}

/// A source inside a logged model's files; the run is the named one, else the model's
/// source run (if it still exists in the workspace).
fn from_logged_model(
    call: &Call,
    model: LoggedModel,
    below: &str,
    run: Option<Run>,
) -> MlflowResult<ResolvedSource> {
    let run = match (run, &model.source_run_id) {
        (Some(run), _) => Some(run),
        (None, Some(id)) => call.run(id).ok(),
        (None, None) => None,
    };
    Ok(ResolvedSource {
        run,
        folder: join(&model.artifact_root(), below),
        model_id: Some(model.id),
    })
}

fn is_logged_model_path(path: &str) -> bool {
    matches!(
        path.splitn(5, '/').collect::<Vec<_>>().as_slice(),
        [_, "models", _, "artifacts", ..]
    )
}

/// Whether anything is stored at or below a full artifact path.
fn has_artifacts(call: &Call, full: &str) -> MlflowResult<bool> {
    let tracking = &call.state.tracking;
    Ok(tracking.artifact(full).is_ok() || !tracking.artifacts_under(full)?.is_empty())
}

/// The run's logged model named like the first part of `path` (MLflow 3's
/// `runs:/<run>/<name>`), the newest one if the run logged several under that name.
fn logged_model_of_run(call: &Call, run: &Run, path: &str) -> MlflowResult<Option<LoggedModel>> {
    let name = path.trim_matches('/').split('/').next().unwrap_or("");
    let newest = call
        .state
        .tracking
        .experiment_logged_models(&run.experiment_id)?
        .into_iter()
        .filter(|m| {
            m.workspace == call.workspace
                && m.lifecycle == Lifecycle::Active
                && m.name == name
                && m.source_run_id.as_deref() == Some(run.id.as_str())
        })
        .max_by(|a, b| {
            a.created_ms
                .cmp(&b.created_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
    Ok(newest)
}

fn join(root: &str, path: &str) -> String {
    let path = path.trim_matches('/');
    if path.is_empty() {
        root.to_string()
    } else {
        format!("{root}/{path}")
    }
}

/// The ONNX file at `path`: the path itself if it is one, else the single `.onnx` file
/// directly in that folder (or, failing that, anywhere below it).
fn onnx_file(call: &Call, source: &str, path: &str) -> MlflowResult<String> {
    let tracking = &call.state.tracking;
    if path.ends_with(".onnx") && tracking.artifact(path).is_ok() {
        return Ok(path.to_string());
    }
    let below: Vec<String> = tracking
        .artifacts_under(path)?
        .into_iter()
        .map(|(rel, _)| rel)
        .filter(|rel| rel.ends_with(".onnx"))
        .collect();
    let direct: Vec<&String> = below.iter().filter(|rel| !rel.contains('/')).collect();
    let chosen = match (direct.as_slice(), below.as_slice()) {
        ([one], _) => (*one).clone(),
        ([], [one]) => one.clone(),
        ([], []) => {
            return Err(MlflowError::InvalidParameter(format!(
                "Shoal registers ONNX models; {source} holds no .onnx file"
            )))
        }
        _ => {
            return Err(MlflowError::InvalidParameter(format!(
                "{source} holds several .onnx files ({}); name one of them as the source",
                below.join(", ")
            )))
        }
    };
    Ok(format!("{path}/{chosen}"))
}
