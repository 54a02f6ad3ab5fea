//! `logged-models/*`: MLflow 3's logged models, which `mlflow.<flavor>.log_model(...)` creates.
//!
//! The client creates a logged model (`POST logged-models`, answered with an id `m-…` and
//! the artifact location `mlflow-artifacts:/{experiment}/models/{id}/artifacts`), uploads the
//! model folder there through the `mlflow-artifacts` proxy, finalizes it (`PATCH
//! logged-models/{id}`, status READY), and links it to its run with `runs/outputs`. Params and
//! tags can be added later; `logged-models/search` finds an experiment's models, which is how
//! the client resolves `runs:/<run>/<name>` to a logged model. Registering one
//! (`models:/m-…` as a version's source) goes through `models.rs`.
//!
//! Shoal keeps no metrics on logged models: a filter or an order on `metrics.*` matches
//! nothing, and the `data.metrics` of a model is always empty.

use std::cmp::Ordering;

use serde_json::{json, Value};

use super::filter::{parse_filter, Subject};
use super::{
    key_value_list, page_offset, paginate, unsupported, Call, Fields, MlflowError, MlflowResult,
};
use shoal_tracking::tracking::{Lifecycle, LoggedModel, LoggedModelStatus, NewLoggedModel};

/// Logged models returned by one search page unless the client asks for fewer.
const DEFAULT_SEARCH_PAGE: usize = 100;

/// A logged model as MLflow's `LoggedModel` message.
pub(crate) fn logged_model_json(model: &LoggedModel) -> Value {
    let mut info = json!({
        "model_id": model.id,
        "experiment_id": model.experiment_id,
        "name": model.name,
        "creation_timestamp_ms": model.created_ms,
        "last_updated_timestamp_ms": model.updated_ms,
        "artifact_uri": model.artifact_uri(),
        "status": model.status.mlflow_name(),
        "status_message": "",
        "tags": key_value_list(&model.tags),
    });
    if !model.model_type.is_empty() {
        info["model_type"] = json!(model.model_type);
    }
    if let Some(run_id) = &model.source_run_id {
        info["source_run_id"] = json!(run_id);
    }
    json!({
        "info": info,
        "data": { "params": key_value_list(&model.params), "metrics": [] },
    })
}

/// Routes `logged-models/{id}[/...]` (`rest` is the part after `logged-models/`).
pub(crate) fn route(call: Call, method: &str, rest: &str) -> MlflowResult<Value> {
    let (id, below) = rest.split_once('/').unwrap_or((rest, ""));
    match (method, below) {
        ("GET", "") => get(call, id),
        ("PATCH", "") => finalize(call, id),
        ("DELETE", "") => delete(call, id),
        ("POST", "params") => log_params(call, id),
        ("PATCH", "tags") => set_tags(call, id),
        ("GET", "artifacts/directories") => list_artifacts(call, id),
        ("DELETE", tag) if tag.starts_with("tags/") && tag.len() > "tags/".len() => {
            delete_tag(call, id, &tag["tags/".len()..])
        }
        (method, _) => Err(unsupported(
            method,
            &format!("/api/2.0/mlflow/logged-models/{rest}"),
        )),
    }
}

/// `POST logged-models`: a new logged model, PENDING until the client finalizes it.
pub(crate) fn create(call: Call) -> MlflowResult<Value> {
    let experiment_id = call.fields.str("experiment_id")?;
    let source_run_id = call.fields.opt_str("source_run_id")?;
    if let Some(run_id) = &source_run_id {
        call.run(run_id)?;
    }
    let new = NewLoggedModel {
        workspace: call.workspace.clone(),
        experiment_id,
        name: call.fields.opt_str("name")?,
        model_type: call.fields.opt_str("model_type")?.unwrap_or_default(),
        source_run_id,
        params: call.fields.key_values("params")?.into_iter().collect(),
        tags: call.fields.key_values("tags")?.into_iter().collect(),
    };
    let model = call.state.tracking.create_logged_model(new)?;
    Ok(json!({ "model": logged_model_json(&model) }))
}

fn get(call: Call, id: &str) -> MlflowResult<Value> {
    let allow_deleted = call
        .fields
        .opt_str("allow_deleted")?
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let model = call.logged_model(id, allow_deleted)?;
    Ok(json!({ "model": logged_model_json(&model) }))
}

fn finalize(call: Call, id: &str) -> MlflowResult<Value> {
    check_body_id(&call.fields, id)?;
    let name = call.fields.str("status")?;
    let status = match LoggedModelStatus::parse(&name) {
        Some(LoggedModelStatus::Pending) | None => {
            return Err(MlflowError::field(
                "status",
                format!("'{name}' is not LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED"),
            ))
        }
        Some(status) => status,
    };
    let model = call.logged_model(id, false)?;
    let model = call
        .state
        .tracking
        .finalize_logged_model(&model.id, status)?;
    Ok(json!({ "model": logged_model_json(&model) }))
}

/// `DELETE logged-models/{id}`: hides the model from get and search; its files stay, so a
/// registered version taken from it keeps its source.
fn delete(call: Call, id: &str) -> MlflowResult<Value> {
    let model = call.logged_model(id, false)?;
    call.state
        .tracking
        .update_logged_model(&model.id, |model| {
            model.lifecycle = Lifecycle::Deleted;
            Ok(())
        })?;
    Ok(json!({}))
}

fn log_params(call: Call, id: &str) -> MlflowResult<Value> {
    check_body_id(&call.fields, id)?;
    let params = call.fields.key_values("params")?;
    let model = call.logged_model(id, false)?;
    call.state
        .tracking
        .log_logged_model_params(&model.id, &params)?;
    Ok(json!({}))
}

fn set_tags(call: Call, id: &str) -> MlflowResult<Value> {
    check_body_id(&call.fields, id)?;
    let tags = call.fields.key_values("tags")?;
    let model = call.logged_model(id, false)?;
    call.state
        .tracking
        .set_logged_model_tags(&model.id, &tags)?;
    Ok(json!({}))
}

fn delete_tag(call: Call, id: &str, key: &str) -> MlflowResult<Value> {
    let model = call.logged_model(id, false)?;
    call.state
        .tracking
        .delete_logged_model_tag(&model.id, key)?;
    Ok(json!({}))
}

/// `GET logged-models/{id}/artifacts/directories?artifact_directory_path=`: a folder of the
/// model's files, paths relative to the model's artifact root.
fn list_artifacts(call: Call, id: &str) -> MlflowResult<Value> {
    let model = call.logged_model(id, false)?;
    let folder = call
        .fields
        .opt_str("artifact_directory_path")?
        .unwrap_or_default();
    let folder = folder.trim_matches('/');
    if !folder.is_empty() {
        shoal_tracking::tracking::check_artifact_path(folder)?;
    }
    let files = call
        .state
        .tracking
        .list_artifact_folder(&model.artifact_root(), folder)?
        .into_iter()
        .map(|entry| super::file_json(&entry.path, entry.is_dir, entry.size_bytes))
        .collect::<Vec<_>>();
    Ok(json!({ "root_uri": model.artifact_uri(), "files": files }))
}

/// A `model_id` in the body, if sent, must be the one in the path.
fn check_body_id(fields: &Fields, id: &str) -> MlflowResult<()> {
    match fields.opt_str("model_id")? {
        Some(sent) if sent != id => Err(MlflowError::field(
            "model_id",
            format!("'{sent}' is not the model of the path, '{id}'"),
        )),
        _ => Ok(()),
    }
}

/// `POST logged-models/search`: an experiment's logged models, filtered by attributes
/// (`name`, `model_id`, `source_run_id`, `status`, `model_type`, `creation_timestamp`,
/// `last_updated_timestamp`), `tags.*` and `params.*`, newest first unless ordered otherwise.
pub(crate) fn search(call: Call) -> MlflowResult<Value> {
    let experiment_ids = call.fields.str_list("experiment_ids")?;
    if experiment_ids.is_empty() {
        return Err(MlflowError::field(
            "experiment_ids",
            "missing; name at least one experiment",
        ));
    }
    let clauses = match call.fields.opt_str("filter")? {
        Some(filter) => parse_filter(&filter)?,
        None => Vec::new(),
    };
    let order = call
        .fields
        .objects("order_by")?
        .iter()
        .map(|item| {
            let field = item.str("field_name")?;
            let ascending = !matches!(item.value("ascending"), Some(Value::Bool(false)));
            Ok((field, ascending))
        })
        .collect::<MlflowResult<Vec<_>>>()?;
    let page = call.page_size(DEFAULT_SEARCH_PAGE)?;
    let offset = page_offset(&call.fields)?;

    let tracking = &call.state.tracking;
    let mut models = Vec::new();
    for id in &experiment_ids {
        let experiment = tracking.experiment_in(&call.workspace, id)?;
        models.extend(
            tracking
                .experiment_logged_models(&experiment.id)?
                .into_iter()
                .filter(|m| m.workspace == call.workspace && m.lifecycle == Lifecycle::Active),
        );
    }
    for clause in &clauses {
        match &clause.subject {
            Subject::Attribute(field) => {
                let field = field.to_ascii_lowercase();
                match field.as_str() {
                    "creation_timestamp" | "creation_time" | "last_updated_timestamp" => models
                        .retain(|m| clause.matches_number(timestamp(m, &field).map(|t| t as f64))),
                    _ => {
                        if !TEXT_ATTRIBUTES.contains(&field.as_str()) {
                            return Err(MlflowError::field(
                                "filter",
                                format!(
                                    "logged models cannot be filtered by attribute '{field}'; \
                                     use name, model_id, source_run_id, status, model_type, \
                                     creation_timestamp or last_updated_timestamp"
                                ),
                            ));
                        }
                        models.retain(|m| clause.matches_str(text_attribute(m, &field).as_deref()))
                    }
                }
            }
            Subject::Tag(key) => {
                models.retain(|m| clause.matches_str(m.tags.get(key).map(String::as_str)))
            }
            Subject::Param(key) => {
                models.retain(|m| clause.matches_str(m.params.get(key).map(String::as_str)))
            }
            // Shoal records no metrics on logged models.
            Subject::Metric(_) => models.clear(),
        }
    }
    let mut keys = Vec::new();
    for (field, ascending) in &order {
        keys.push((order_key(field)?, *ascending));
    }
    models.sort_by(|a, b| {
        keys.iter()
            .map(|(key, ascending)| {
                let ordering = key(a, b);
                if *ascending {
                    ordering
                } else {
                    ordering.reverse()
                }
            })
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
            .then_with(|| b.created_ms.cmp(&a.created_ms))
            .then_with(|| a.id.cmp(&b.id))
    });
    let (models, token) = paginate(models, offset, page);
    let mut body = json!({ "models": models.iter().map(logged_model_json).collect::<Vec<_>>() });
    if let Some(token) = token {
        body["next_page_token"] = json!(token);
    }
    Ok(body)
}

/// The text attributes a filter or an order may name.
const TEXT_ATTRIBUTES: [&str; 8] = [
    "name",
    "model_id",
    "id",
    "source_run_id",
    "run_id",
    "status",
    "model_type",
    "experiment_id",
];

fn text_attribute(model: &LoggedModel, field: &str) -> Option<String> {
    match field {
        "name" => Some(model.name.clone()),
        "model_id" | "id" => Some(model.id.clone()),
        "source_run_id" | "run_id" => model.source_run_id.clone(),
        // As the client names statuses (`status = 'READY'`).
        "status" => Some(
            model
                .status
                .mlflow_name()
                .trim_start_matches("LOGGED_MODEL_")
                .to_string(),
        ),
        "model_type" => Some(model.model_type.clone()),
        "experiment_id" => Some(model.experiment_id.clone()),
        _ => None,
    }
}

fn timestamp(model: &LoggedModel, field: &str) -> Option<i64> {
    match field {
        "creation_timestamp" | "creation_time" => Some(model.created_ms),
        "last_updated_timestamp" => Some(model.updated_ms),
        _ => None,
    }
}

type ModelOrder = Box<dyn Fn(&LoggedModel, &LoggedModel) -> Ordering>;

fn order_key(field: &str) -> MlflowResult<ModelOrder> {
    let field = field
        .strip_prefix("attributes.")
        .unwrap_or(field)
        .to_ascii_lowercase();
    Ok(match field.as_str() {
        "creation_timestamp" | "creation_time" => Box::new(|a, b| a.created_ms.cmp(&b.created_ms)),
        "last_updated_timestamp" => Box::new(|a, b| a.updated_ms.cmp(&b.updated_ms)),
        text if TEXT_ATTRIBUTES.contains(&text) => {
            let key = text.to_string();
            Box::new(move |a, b| text_attribute(a, &key).cmp(&text_attribute(b, &key)))
        }
        other => {
            return Err(MlflowError::field(
                "order_by",
                format!(
                    "logged models cannot be ordered by '{other}'; use name, \
                     creation_timestamp or last_updated_timestamp"
                ),
            ))
        }
    })
}
