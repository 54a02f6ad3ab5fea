//! `runs/*` and `metrics/get-history`: create, update, read, search and delete runs, and log
//! metrics, params and tags into them.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{json_double, key_value_list, page_offset, paginate, Call, MlflowError, MlflowResult};
use shoal_tracking::search::{RunOrder, RunPredicate};
use shoal_tracking::tracking::{
    run_model_outputs, Lifecycle, MetricPoint, NewRun, Run, RunQuery, RunStatus,
};

/// MLflow's limits on one `log-batch` request.
const MAX_BATCH_METRICS: usize = 1000;
const MAX_BATCH_PARAMS: usize = 100;
const MAX_BATCH_TAGS: usize = 100;
const MAX_BATCH_ENTRIES: usize = 1000;

/// Runs returned by one search page unless the client asks for fewer (MLflow's default).
const DEFAULT_SEARCH_PAGE: usize = 1000;
/// Points of a metric history returned by one page unless the client asks for fewer.
const DEFAULT_HISTORY_PAGE: usize = 25_000;

/// A run's `RunInfo`.
pub(crate) fn run_info_json(run: &Run) -> Value {
    let mut info = json!({
        "run_id": run.id,
        "run_uuid": run.id,
        "run_name": run.name,
        "experiment_id": run.experiment_id,
        "user_id": run.user,
        "status": run.status.mlflow_name(),
        "start_time": run.started_ms.unwrap_or(run.created_ms),
        "artifact_uri": run.artifact_uri(),
        "lifecycle_stage": match run.lifecycle {
            Lifecycle::Active => "active",
            Lifecycle::Deleted => "deleted",
        },
    });
    if let Some(end) = run.ended_ms {
        info["end_time"] = json!(end);
    }
    info
}

fn metric_json(key: &str, point: &MetricPoint) -> Value {
    json!({
        "key": key,
        "value": json_double(point.value),
        "timestamp": point.timestamp_ms,
        "step": point.step,
    })
}

/// A run as MLflow's `Run` message: info, data (latest metrics, params, tags), inputs, outputs
/// (the logged models the run output).
pub(crate) fn run_json(run: &Run) -> Value {
    let model_outputs: Vec<Value> = run_model_outputs(run)
        .into_iter()
        .map(|o| json!({ "model_id": o.model_id, "step": o.step }))
        .collect();
    let metrics: Vec<Value> = run
        .metrics
        .iter()
        .map(|(key, point)| metric_json(key, point))
        .collect();
    json!({
        "info": run_info_json(run),
        "data": {
            "metrics": metrics,
            "params": key_value_list(&run.params),
            "tags": key_value_list(&run.tags),
        },
        "inputs": {},
        "outputs": { "model_outputs": model_outputs },
    })
}

fn requested_run(call: &Call) -> MlflowResult<Run> {
    let id = call.fields.run_id()?;
    call.run(&id)
}

pub(crate) fn create(call: Call) -> MlflowResult<Value> {
    let experiment_id = call
        .fields
        .opt_str("experiment_id")?
        .unwrap_or_else(|| "0".into());
    let mut new = NewRun::tracked(&call.workspace, &experiment_id);
    new.name = call.fields.opt_str("run_name")?;
    new.start_ms = call.fields.opt_i64("start_time")?;
    new.user = call.fields.opt_str("user_id")?.unwrap_or_default();
    let tags: BTreeMap<String, String> = call.fields.key_values("tags")?.into_iter().collect();
    if let Some(parent) = tags.get("mlflow.parentRunId") {
        new.parent_run_id = Some(parent.clone());
    }
    if new.user.is_empty() {
        if let Some(user) = tags.get("mlflow.user") {
            new.user = user.clone();
        }
    }
    new.tags = tags;
    let run = call.state.tracking.create_run(new)?;
    Ok(json!({ "run": run_json(&run) }))
}

pub(crate) fn update(call: Call) -> MlflowResult<Value> {
    let run = requested_run(&call)?;
    let status = match call.fields.opt_str("status")? {
        Some(name) => Some(RunStatus::parse(&name).ok_or_else(|| {
            MlflowError::field(
                "status",
                format!("'{name}' is not one of RUNNING, SCHEDULED, FINISHED, FAILED, KILLED"),
            )
        })?),
        None => None,
    };
    let end_time = call.fields.opt_i64("end_time")?;
    let run_name = call.fields.opt_str("run_name")?;
    let run = call.state.tracking.update_run(&run.id, |run| {
        // A run Shoal executes (a script on `local` or a worker) ends when its command does:
        // the exit code decides, not the `end_run()` of an MLflow client inside the script.
        if run.compute != shoal_tracking::tracking::Compute::Tracked {
            if let Some(name) = &run_name {
                run.name = name.clone();
                run.tags.insert("mlflow.runName".into(), name.clone());
            }
            return Ok(());
        }
        // A terminal status is final in Shoal; resuming a finished run only logs more data.
        if let Some(status) = status {
            if !run.status.is_terminal() && run.status != status {
                run.status = status;
                if status == RunStatus::Running && run.started_ms.is_none() {
                    run.started_ms = Some(shoal_store::now_ms());
                }
            }
        }
        if run.status.is_terminal() && run.ended_ms.is_none() {
            run.ended_ms = Some(end_time.unwrap_or_else(shoal_store::now_ms));
        } else if let (Some(end), true) = (end_time, run.status.is_terminal()) {
            run.ended_ms = Some(end);
        }
        if let Some(name) = &run_name {
            run.name = name.clone();
            run.tags.insert("mlflow.runName".into(), name.clone());
        }
        Ok(())
    })?;
    if run.status.is_terminal() {
        call.state.tracking.flush()?;
    }
    Ok(json!({ "run_info": run_info_json(&run) }))
}

pub(crate) fn get(call: Call) -> MlflowResult<Value> {
    let run = requested_run(&call)?;
    Ok(json!({ "run": run_json(&run) }))
}

pub(crate) fn delete(call: Call) -> MlflowResult<Value> {
    let run = requested_run(&call)?;
    call.state
        .tracking
        .set_run_lifecycle(&run.id, Lifecycle::Deleted)?;
    Ok(json!({}))
}

pub(crate) fn restore(call: Call) -> MlflowResult<Value> {
    let run = requested_run(&call)?;
    call.state
        .tracking
        .set_run_lifecycle(&run.id, Lifecycle::Active)?;
    Ok(json!({}))
}

fn metric_point(item: &super::Fields) -> MlflowResult<(String, MetricPoint)> {
    Ok((
        item.str("key")?,
        MetricPoint {
            value: item.f64("value")?,
            step: item.opt_i64("step")?.unwrap_or(0),
            timestamp_ms: item
                .opt_i64("timestamp")?
                .unwrap_or_else(shoal_store::now_ms),
        },
    ))
}

pub(crate) fn log_metric(call: Call) -> MlflowResult<Value> {
    let run = requested_run(&call)?;
    let point = metric_point(&call.fields)?;
    call.state.tracking.log_metrics(&run.id, &[point])?;
    Ok(json!({}))
}

pub(crate) fn log_param(call: Call) -> MlflowResult<Value> {
    let run = requested_run(&call)?;
    let key = call.fields.str("key")?;
    let value = call.fields.str_or_empty("value")?;
    call.state.tracking.log_params(&run.id, &[(key, value)])?;
    Ok(json!({}))
}

pub(crate) fn log_batch(call: Call) -> MlflowResult<Value> {
    let metrics = call.fields.objects("metrics")?;
    let params = call.fields.key_values("params")?;
    let tags = call.fields.key_values("tags")?;
    for (what, count, limit) in [
        ("metrics", metrics.len(), MAX_BATCH_METRICS),
        ("params", params.len(), MAX_BATCH_PARAMS),
        ("tags", tags.len(), MAX_BATCH_TAGS),
    ] {
        if count > limit {
            return Err(MlflowError::field(
                what,
                format!("a batch may hold at most {limit} {what}, this one holds {count}"),
            ));
        }
    }
    let total = metrics.len() + params.len() + tags.len();
    if total > MAX_BATCH_ENTRIES {
        return Err(MlflowError::InvalidParameter(format!(
            "a batch may hold at most {MAX_BATCH_ENTRIES} metrics, params and tags together, this one holds {total}"
        )));
    }
    let run = requested_run(&call)?;
    let mut points = Vec::with_capacity(metrics.len());
    for item in &metrics {
        let (key, point) = metric_point(item)?;
        // MLflow 3's `log_model` logs the run's metrics at the model's step again, each now
        // naming the model. Shoal keeps no metrics on logged models, and a point the run
        // already has is not logged twice.
        if item.opt_str("model_id")?.is_some()
            && call
                .state
                .tracking
                .metric_history(&run.id, &key)?
                .iter()
                .any(|old| same_point(old, &point))
        {
            continue;
        }
        points.push((key, point));
    }
    if !params.is_empty() {
        call.state.tracking.log_params(&run.id, &params)?;
    }
    call.state.tracking.log_metrics(&run.id, &points)?;
    if !tags.is_empty() {
        call.state.tracking.set_tags(&run.id, &tags)?;
    }
    Ok(json!({}))
}

/// Whether two points are the same logged value (NaN equal to NaN).
fn same_point(a: &MetricPoint, b: &MetricPoint) -> bool {
    a.step == b.step
        && a.timestamp_ms == b.timestamp_ms
        && (a.value == b.value || (a.value.is_nan() && b.value.is_nan()))
}

pub(crate) fn set_tag(call: Call) -> MlflowResult<Value> {
    let run = requested_run(&call)?;
    let key = call.fields.str("key")?;
    let value = call.fields.str_or_empty("value")?;
    call.state.tracking.set_tags(&run.id, &[(key, value)])?;
    Ok(json!({}))
}

pub(crate) fn delete_tag(call: Call) -> MlflowResult<Value> {
    let run = requested_run(&call)?;
    let key = call.fields.str("key")?;
    call.state.tracking.delete_tag(&run.id, &key)?;
    Ok(json!({}))
}

/// `runs/log-inputs`: MLflow datasets have no counterpart in Shoal (whose runs read
/// registered dataset versions), so they are accepted and not recorded.
pub(crate) fn log_inputs(call: Call) -> MlflowResult<Value> {
    let run = requested_run(&call)?;
    let datasets = call.fields.list("datasets").len();
    tracing::debug!(run = %run.id, datasets, "mlflow dataset inputs accepted but not recorded");
    Ok(json!({}))
}

/// `runs/outputs`: links logged models to the run (MLflow 3's `log_model` does this for the
/// model it creates). The links are kept in the run's `mlflow.loggedModels` tag, so they show
/// wherever the run's tags do; a model version registered from the run is recorded among the
/// run's outputs when it is created.
pub(crate) fn log_outputs(call: Call) -> MlflowResult<Value> {
    let run = requested_run(&call)?;
    let models = call
        .fields
        .objects("models")?
        .iter()
        .map(|item| Ok((item.str("model_id")?, item.opt_i64("step")?.unwrap_or(0))))
        .collect::<MlflowResult<Vec<_>>>()?;
    for (model_id, _) in &models {
        call.logged_model(model_id, false)?;
    }
    for (model_id, step) in models {
        call.state
            .tracking
            .link_logged_model_output(&run.id, &model_id, step)?;
    }
    Ok(json!({}))
}

pub(crate) fn metric_history(call: Call) -> MlflowResult<Value> {
    let run = requested_run(&call)?;
    let key = call.fields.str("metric_key")?;
    let page = call.page_size(DEFAULT_HISTORY_PAGE)?;
    let offset = page_offset(&call.fields)?;
    let points = call.state.tracking.metric_history(&run.id, &key)?;
    let (points, token) = paginate(points, offset, page);
    let mut body = json!({
        "metrics": points.iter().map(|p| metric_json(&key, p)).collect::<Vec<_>>(),
    });
    if let Some(token) = token {
        body["next_page_token"] = json!(token);
    }
    Ok(body)
}

pub(crate) fn search(call: Call) -> MlflowResult<Value> {
    let experiment_ids = call.fields.str_list("experiment_ids")?;
    let view = call
        .fields
        .opt_str("run_view_type")?
        .unwrap_or_else(|| "ACTIVE_ONLY".into());
    let page = call.page_size(DEFAULT_SEARCH_PAGE)?;
    let offset = page_offset(&call.fields)?;
    let filter = match call.fields.opt_str("filter")? {
        Some(filter) => run_predicate(&filter)?,
        None => None,
    };
    let order_by = run_order(&call.fields.str_list("order_by")?)?;
    let deleted_only = view == "DELETED_ONLY";
    let view_filter = |run: &Run| {
        (!deleted_only || run.lifecycle == Lifecycle::Deleted)
            && filter.as_ref().is_none_or(|f| f(run))
    };
    let runs = call.state.tracking.search_runs(&RunQuery {
        workspace: &call.workspace,
        experiment_ids,
        filter: Some(&view_filter),
        order_by: order_by.as_deref(),
        include_deleted: view != "ACTIVE_ONLY",
        limit: offset + page + 1,
    })?;
    let (runs, token) = paginate(runs, offset, page);
    let mut body = json!({ "runs": runs.iter().map(run_json).collect::<Vec<_>>() });
    if let Some(token) = token {
        body["next_page_token"] = json!(token);
    }
    Ok(body)
}

// === filters and ordering: the hub's run search grammar ===

/// Compiles an MLflow filter string (`metrics.acc > 0.9 and params.lr = '0.1'`) with the
/// hub's run search grammar, so a filter means the same here as on the gRPC API.
///
/// # Errors
/// `INVALID_PARAMETER_VALUE` naming what could not be parsed.
pub(crate) fn run_predicate(filter: &str) -> MlflowResult<Option<RunPredicate>> {
    Ok(shoal_tracking::search::run_filter(filter)?)
}

/// Compiles MLflow `order_by` items (`metrics.acc DESC`, `attributes.start_time`); `None`
/// for no items.
///
/// # Errors
/// `INVALID_PARAMETER_VALUE` for an item the grammar does not accept.
pub(crate) fn run_order(items: &[String]) -> MlflowResult<Option<RunOrder>> {
    Ok(shoal_tracking::search::run_order(items)?)
}
