//! `registered-models/*` and `model-versions/*`, backed by Shoal's registry.
//!
//! Shoal's registry holds ONNX models that tract has validated. `model-versions/create`
//! resolves its `source` (`runs:/<run>/model`, `mlflow-artifacts:/...`, or an artifact path)
//! to a file among the run's artifacts: an `.onnx` file itself, or the single `.onnx` file in
//! a folder (MLflow's onnx flavor writes `model.onnx` next to `MLmodel`). Versions are READY
//! as soon as they are created, and the run records the version among its outputs.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::experiments::page_size;
use super::filter::{parse_filter, Subject};
use super::runs::run_in_workspace;
use super::{key_value_list, page_offset, paginate, Call, MlflowError, MlflowResult};
use crate::registry::{Model, ModelVersion, NewVersion, Registry};
use crate::tracking::Run;

/// Version tags that carry MLflow's `source` and `run_id`; not shown as user tags.
const SOURCE_TAG: &str = "mlflow.source";
const RUN_ID_TAG: &str = "mlflow.run_id";

/// Models returned by one search page unless the client asks for fewer.
const DEFAULT_SEARCH_PAGE: usize = 100;

fn version_json(model: &Model, version: &ModelVersion) -> Value {
    let tags = version
        .tags
        .iter()
        .filter(|(k, _)| k.as_str() != SOURCE_TAG && k.as_str() != RUN_ID_TAG);
    json!({
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
    })
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

/// `logged-models/search`: MLflow 3 clients look for logged models whenever they list a
/// run's artifacts below a folder. Shoal has no logged models (a run's files are its
/// artifacts), so the answer is always empty.
pub(crate) fn search_logged_models(call: Call) -> MlflowResult<Value> {
    for id in call.fields.str_list("experiment_ids")? {
        call.state.tracking.experiment_in(&call.workspace, &id)?;
    }
    Ok(json!({ "models": [] }))
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
    let page = page_size(&call, DEFAULT_SEARCH_PAGE)?;
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
    let page = page_size(&call, DEFAULT_SEARCH_PAGE)?;
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
    Ok(json!({ "artifact_uri": source }))
}

/// `model-versions/create`: finds the ONNX file the source names, lets the registry validate
/// and register it, and records the version among the run's outputs.
pub(crate) async fn create_version(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("name")?;
    let source = call.fields.str("source")?;
    let run_id = call.fields.opt_str("run_id")?;
    let description = call.fields.opt_str("description")?.unwrap_or_default();
    let mut tags: BTreeMap<String, String> = call.fields.key_values("tags")?.into_iter().collect();

    let (run, artifact_path) = resolve_source(&call, &source, run_id.as_deref())?;
    let onnx_path = onnx_file(&call, &source, &artifact_path)?;
    let entry = call.state.tracking.artifact(&onnx_path)?;

    tags.insert(SOURCE_TAG.into(), source.clone());
    tags.insert(RUN_ID_TAG.into(), run.id.clone());
    let new = NewVersion {
        workspace: call.workspace.clone(),
        name: name.clone(),
        description,
        tags,
    };
    let registry = &call.state.registry;
    let version = registry
        .register(new, entry.digest, entry.size_bytes)
        .await?;
    let reference = format!("{}@{}", version.model, version.version);
    call.state.tracking.update_run(&run.id, |run| {
        if !run.outputs.contains(&reference) {
            run.outputs.push(reference.clone());
        }
        Ok(())
    })?;
    let model = registry.model(&call.workspace, &name)?;
    Ok(json!({ "model_version": version_json(&model, &version) }))
}

/// The run a source belongs to and the source's full artifact path
/// (`{experiment}/{run}/artifacts/...`).
fn resolve_source(call: &Call, source: &str, run_id: Option<&str>) -> MlflowResult<(Run, String)> {
    let unsupported = || {
        MlflowError::InvalidParameter(format!(
            "source '{source}' is not one Shoal can register from: use runs:/<run>/<path>, \
             mlflow-artifacts:/<experiment>/<run>/artifacts/<path>, or an artifact path of the run"
        ))
    };
    if let Some(rest) = source.strip_prefix("runs:/") {
        let rest = rest.trim_start_matches('/');
        let (id, path) = rest.split_once('/').unwrap_or((rest, ""));
        let run = run_in_workspace(call, id)?;
        let full = join(&run.artifact_root(), path);
        return Ok((run, full));
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
    } else if let Some(id) = run_id {
        // A path relative to the run's artifact root, or already a full artifact path.
        let run = run_in_workspace(call, id)?;
        let path = source.trim_matches('/');
        if path.starts_with(&run.artifact_root()) {
            path.to_string()
        } else {
            join(&run.artifact_root(), path)
        }
    } else {
        source.trim_matches('/').to_string()
    };
    let mut parts = full.splitn(4, '/');
    let (Some(_experiment), Some(id), Some("artifacts")) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(unsupported());
    };
    let run = run_in_workspace(call, id)?;
    if let Some(named) = run_id {
        if named != run.id {
            return Err(MlflowError::field(
                "run_id",
                format!("'{named}' is not the run of source '{source}'"),
            ));
        }
    }
    Ok((run, full.trim_end_matches('/').to_string()))
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
