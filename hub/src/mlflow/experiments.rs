//! `experiments/*`: create, get, search, rename, delete, restore and tag experiments.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::filter::{parse_filter, Clause, Subject};
use super::{key_value_list, page_offset, paginate, Call, MlflowError, MlflowResult};
use shoal_tracking::tracking::{Experiment, Lifecycle, DEFAULT_EXPERIMENT};

/// Experiments returned by one search page unless the client asks for fewer.
const DEFAULT_SEARCH_PAGE: usize = 1000;

fn lifecycle_stage(lifecycle: Lifecycle) -> &'static str {
    match lifecycle {
        Lifecycle::Active => "active",
        Lifecycle::Deleted => "deleted",
    }
}

/// An experiment as MLflow's `Experiment` message.
pub(crate) fn experiment_json(experiment: &Experiment) -> Value {
    json!({
        "experiment_id": experiment.id,
        "name": experiment.name,
        "artifact_location": experiment.artifact_location(),
        "lifecycle_stage": lifecycle_stage(experiment.lifecycle),
        "creation_time": experiment.created_ms,
        "last_update_time": experiment.updated_ms,
        "tags": key_value_list(&experiment.tags),
    })
}

fn experiment_of(call: &Call) -> MlflowResult<Experiment> {
    let id = call.fields.str("experiment_id")?;
    Ok(call.state.tracking.experiment_in(&call.workspace, &id)?)
}

pub(crate) fn create(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("name")?;
    // Shoal decides where artifacts live; a requested `artifact_location` is not honoured.
    let tags: BTreeMap<String, String> = call.fields.key_values("tags")?.into_iter().collect();
    let experiment = call
        .state
        .tracking
        .create_experiment(&call.workspace, &name, tags)?;
    Ok(json!({ "experiment_id": experiment.id }))
}

pub(crate) fn get(call: Call) -> MlflowResult<Value> {
    let experiment = experiment_of(&call)?;
    Ok(json!({ "experiment": experiment_json(&experiment) }))
}

pub(crate) fn get_by_name(call: Call) -> MlflowResult<Value> {
    let name = call.fields.str("experiment_name")?;
    let experiment = call
        .state
        .tracking
        .experiment_by_name(&call.workspace, &name)?;
    Ok(json!({ "experiment": experiment_json(&experiment) }))
}

pub(crate) fn search(call: Call) -> MlflowResult<Value> {
    let view = call
        .fields
        .opt_str("view_type")?
        .unwrap_or_else(|| "ACTIVE_ONLY".into());
    let page_size = call.page_size(DEFAULT_SEARCH_PAGE)?;
    let offset = page_offset(&call.fields)?;
    let clauses = match call.fields.opt_str("filter")? {
        Some(filter) => parse_filter(&filter)?,
        None => Vec::new(),
    };
    let mut experiments: Vec<Experiment> = call
        .state
        .tracking
        .experiments(&call.workspace, true)?
        .into_iter()
        .filter(|e| match view.as_str() {
            "DELETED_ONLY" => e.lifecycle == Lifecycle::Deleted,
            "ALL" => true,
            _ => e.lifecycle == Lifecycle::Active,
        })
        .collect();
    for clause in &clauses {
        experiments.retain(|e| experiment_matches(clause, e));
    }
    // MLflow's default order: most recently created first.
    experiments.sort_by(|a, b| {
        b.created_ms
            .cmp(&a.created_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    let (page, token) = paginate(experiments, offset, page_size);
    let mut body = json!({ "experiments": page.iter().map(experiment_json).collect::<Vec<_>>() });
    if let Some(token) = token {
        body["next_page_token"] = json!(token);
    }
    Ok(body)
}

fn experiment_matches(clause: &Clause, experiment: &Experiment) -> bool {
    match &clause.subject {
        Subject::Attribute(name) if name == "name" => clause.matches_str(Some(&experiment.name)),
        Subject::Attribute(name) if name == "experiment_id" => {
            clause.matches_str(Some(&experiment.id))
        }
        Subject::Attribute(name) if name == "creation_time" => {
            clause.matches_number(Some(experiment.created_ms as f64))
        }
        Subject::Attribute(name) if name == "last_update_time" => {
            clause.matches_number(Some(experiment.updated_ms as f64))
        }
        Subject::Tag(key) => clause.matches_str(experiment.tags.get(key).map(String::as_str)),
        _ => false,
    }
}

pub(crate) fn update(call: Call) -> MlflowResult<Value> {
    let experiment = experiment_of(&call)?;
    if let Some(new_name) = call.fields.opt_str("new_name")? {
        if experiment.name == DEFAULT_EXPERIMENT {
            return Err(MlflowError::InvalidParameter(
                "the Default experiment cannot be renamed".into(),
            ));
        }
        call.state
            .tracking
            .update_experiment(&experiment.id, |e| e.name = new_name.clone())?;
    }
    Ok(json!({}))
}

pub(crate) fn delete(call: Call) -> MlflowResult<Value> {
    let experiment = experiment_of(&call)?;
    if experiment.name == DEFAULT_EXPERIMENT {
        return Err(MlflowError::InvalidParameter(
            "the Default experiment cannot be deleted".into(),
        ));
    }
    call.state
        .tracking
        .update_experiment(&experiment.id, |e| e.lifecycle = Lifecycle::Deleted)?;
    Ok(json!({}))
}

pub(crate) fn restore(call: Call) -> MlflowResult<Value> {
    let experiment = experiment_of(&call)?;
    call.state
        .tracking
        .update_experiment(&experiment.id, |e| e.lifecycle = Lifecycle::Active)?;
    Ok(json!({}))
}

pub(crate) fn set_tag(call: Call) -> MlflowResult<Value> {
    let experiment = experiment_of(&call)?;
    let key = call.fields.str("key")?;
    let value = call.fields.str_or_empty("value")?;
    call.state.tracking.update_experiment(&experiment.id, |e| {
        e.tags.insert(key.clone(), value.clone());
    })?;
    Ok(json!({}))
}

pub(crate) fn delete_tag(call: Call) -> MlflowResult<Value> {
    let experiment = experiment_of(&call)?;
    let key = call.fields.str("key")?;
    if !experiment.tags.contains_key(&key) {
        return Err(MlflowError::NotFound(format!(
            "experiment {} has no tag '{key}'",
            experiment.id
        )));
    }
    call.state.tracking.update_experiment(&experiment.id, |e| {
        e.tags.remove(&key);
    })?;
    Ok(json!({}))
}
