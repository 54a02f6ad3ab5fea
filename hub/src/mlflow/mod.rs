//! The MLflow-compatible tracking REST API, so scripts written for the official `mlflow`
//! client log into Shoal unchanged (`MLFLOW_TRACKING_URI=http://hub:7080`,
//! `MLFLOW_TRACKING_TOKEN=<a Shoal token>`).
//!
//! # Layout
//! - [`error`]: MLflow's error codes and the single mapping from domain errors.
//! - `experiments`, `runs` (runs, logging, search), `artifacts` (the `mlflow-artifacts` proxy),
//!   `logged_models` (MLflow 3's logged models, which `log_model` creates), `models`
//!   (registered models and versions, backed by Shoal's ONNX registry).
//!
//! # Paths and workspaces
//! MLflow has no workspaces. `/api/2.0/mlflow/...` and `/api/2.0/mlflow-artifacts/...` serve
//! the `default` workspace (or the one named by the `X-MLFLOW-WORKSPACE` header); the same
//! paths under `/workspaces/{ws}/` serve workspace `ws`, so
//! `MLFLOW_TRACKING_URI=http://hub:7080/workspaces/occ` selects `occ`. The `ajax-api` prefix of
//! MLflow's web UI is accepted as well.
//!
//! # Coverage
//! Served: experiments (create, get, get-by-name, search, update, delete, restore, set and
//! delete tags); runs (create, update, get, search with filter, order and page tokens, delete,
//! restore, log-metric, log-parameter, log-batch, set-tag, delete-tag, log-inputs accepted
//! without being recorded, outputs recording the run's logged models); metrics/get-history;
//! artifacts/list and the `mlflow-artifacts` proxy (upload, download, list, for runs and
//! logged models); logged models (create, get, finalize, delete, params, set and delete tags,
//! search, list artifacts); registered models (create, get, search, update,
//! get-latest-versions, aliases) and model versions (create from a run's or a logged model's
//! ONNX file, get, search, get-download-uri). Everything else, such as traces, deletes in the
//! registry and stage transitions, answers `ENDPOINT_NOT_FOUND`.
//!
//! Every request needs a token as `Authorization: Bearer <token>` (or as the password of HTTP
//! basic auth), checked by the same authenticator as gRPC. Reading endpoints need `reader` in
//! the workspace, the others `contributor`; a run's own token (`MLFLOW_TRACKING_TOKEN` of a
//! script run) reaches only the endpoints that read or log one run (`runs/get`, `log-*`,
//! `set-tag`, `runs/update`, metric history, that run's artifacts) and `experiments/get` of its
//! experiment, and only for its own run. Writing calls are appended to the audit log. Requests
//! are dispatched by hand rather than with one axum route per endpoint, so that any unknown
//! endpoint answers `ENDPOINT_NOT_FOUND` in MLflow's format and access is checked in exactly
//! one place ([`access_check`]).

mod artifacts;
pub mod error;
mod experiments;
mod filter;
mod logged_models;
mod models;
mod runs;

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};

pub use error::{MlflowError, MlflowResult};

use shoal_registry::registry::Registry;
use shoal_store::artifacts::ArtifactStore;
use shoal_tracking::dataset::Datasets;
use shoal_tracking::tracking::{Lifecycle, LoggedModel, Run, Tracking};
use shoal_tracking::Jobs;

use crate::auth::Authenticator;
use shoal_access::{Identity, Least, Rule, Target};
use shoal_store::workspace::DEFAULT_WORKSPACE;

/// Largest JSON request body accepted (a full `log-batch` is well below this).
const MAX_JSON_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The header MLflow 3 clients use to name a workspace.
const WORKSPACE_HEADER: &str = "x-mlflow-workspace";

/// What the MLflow handlers reach.
#[derive(Clone)]
pub struct MlflowState {
    /// Checks bearer tokens and roles; holds the audit log.
    pub auth: Authenticator,
    pub tracking: Tracking,
    pub registry: Registry,
    pub datasets: Datasets,
    /// Registers model versions from run artifacts (the one path shared with gRPC).
    pub jobs: Jobs,
    pub artifacts: ArtifactStore,
    /// Largest artifact accepted in one upload.
    pub max_artifact_bytes: u64,
}

/// Routes of the MLflow REST API, under `/api/2.0/mlflow/` and `/api/2.0/mlflow-artifacts/`
/// (and the same under `/workspaces/{ws}/` and with the `ajax-api` prefix).
pub fn router() -> Router<MlflowState> {
    let mut router = Router::new();
    for workspace in ["", "/workspaces/{ws}"] {
        for api in ["api", "ajax-api"] {
            router = router
                .route(
                    &format!("{workspace}/{api}/2.0/mlflow/{{*endpoint}}"),
                    any(tracking_api),
                )
                .route(
                    &format!("{workspace}/{api}/2.0/mlflow-artifacts/{{*endpoint}}"),
                    any(artifacts_api),
                );
        }
    }
    router
}

/// What every handler gets: the hub, the workspace the request addresses, and its fields.
pub(crate) struct Call {
    pub state: MlflowState,
    pub workspace: String,
    pub fields: Fields,
}

impl Call {
    /// The run a request names, which must belong to the request's workspace.
    pub(crate) fn run(&self, run_id: &str) -> MlflowResult<Run> {
        let run = self.state.tracking.run(run_id)?;
        if run.workspace != self.workspace {
            return Err(MlflowError::NotFound(format!("run '{run_id}' not found")));
        }
        Ok(run)
    }

    /// The logged model `id`, which must belong to the request's workspace and, unless
    /// `allow_deleted`, not be deleted.
    pub(crate) fn logged_model(&self, id: &str, allow_deleted: bool) -> MlflowResult<LoggedModel> {
        let not_found = || MlflowError::NotFound(format!("logged model '{id}' not found"));
        let model = match self.state.tracking.logged_model(id) {
            Ok(model) => model,
            Err(shoal_tracking::TrackingError::NotFound { .. }) => return Err(not_found()),
            Err(other) => return Err(other.into()),
        };
        if model.workspace != self.workspace
            || (!allow_deleted && model.lifecycle == Lifecycle::Deleted)
        {
            return Err(not_found());
        }
        Ok(model)
    }

    pub(crate) fn page_size(&self, default: usize) -> MlflowResult<usize> {
        match self.fields.opt_i64("max_results")? {
            None => Ok(default),
            Some(n) if (1..=50_000).contains(&n) => Ok(n as usize),
            Some(n) => Err(MlflowError::field(
                "max_results",
                format!("{n} is out of range; use 1 to 50000"),
            )),
        }
    }
}

async fn tracking_api(
    State(state): State<MlflowState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    let endpoint = params.get("endpoint").cloned().unwrap_or_default();
    let method = request.method().clone();
    match tracking_call(state, &params, &endpoint, request).await {
        Ok(body) => json_response(body),
        Err(error) => {
            tracing::debug!(%method, %endpoint, %error, "mlflow call refused");
            error.into_response()
        }
    }
}

async fn tracking_call(
    state: MlflowState,
    params: &HashMap<String, String>,
    endpoint: &str,
    request: Request,
) -> MlflowResult<Value> {
    let (identity, workspace) = authenticate(&state, params, request.headers())?;
    let method = request.method().clone();
    let fields = read_fields(request).await?;
    let endpoint = endpoint.trim_end_matches('/');
    let rule = tracking_rule(method.as_str(), endpoint);
    // The run (or experiment) a run-bound endpoint names, so a run's token reaches only its own.
    let named = match endpoint {
        "experiments/get" => fields.opt_str("experiment_id")?.unwrap_or_default(),
        _ if rule.run_token => fields.run_id().unwrap_or_default(),
        _ => String::new(),
    };
    let target = match endpoint {
        _ if !rule.run_token => Target::Workspace(&workspace),
        "experiments/get" => Target::Experiment {
            workspace: &workspace,
            experiment_id: &named,
        },
        _ => Target::Run {
            workspace: &workspace,
            run_id: &named,
        },
    };
    let what = format!("{method} /api/2.0/mlflow/{endpoint}");
    let described = target.describe();
    access_check(&state, &identity, rule, target, &what)?;
    let call = Call {
        state: state.clone(),
        workspace: workspace.clone(),
        fields,
    };
    let result = dispatch(call, method.as_str(), endpoint).await;
    if rule.writes {
        state.auth.audit(
            &identity,
            &workspace,
            &what,
            &described,
            result.as_ref().map_or_else(MlflowError::code, |_| "ok"),
        );
    }
    result
}

/// Runs one tracking endpoint.
async fn dispatch(call: Call, method: &str, endpoint: &str) -> MlflowResult<Value> {
    match (method, endpoint) {
        ("POST", "experiments/create") => experiments::create(call),
        ("GET", "experiments/get") => experiments::get(call),
        ("GET", "experiments/get-by-name") => experiments::get_by_name(call),
        ("POST" | "GET", "experiments/search") => experiments::search(call),
        ("POST", "experiments/update") => experiments::update(call),
        ("POST", "experiments/delete") => experiments::delete(call),
        ("POST", "experiments/restore") => experiments::restore(call),
        ("POST", "experiments/set-experiment-tag") => experiments::set_tag(call),
        ("POST", "experiments/delete-experiment-tag") => experiments::delete_tag(call),

        ("POST", "runs/create") => runs::create(call),
        ("POST", "runs/update") => runs::update(call),
        ("GET", "runs/get") => runs::get(call),
        ("POST", "runs/search") => runs::search(call),
        ("POST", "runs/delete") => runs::delete(call),
        ("POST", "runs/restore") => runs::restore(call),
        ("POST", "runs/log-metric") => runs::log_metric(call),
        ("POST", "runs/log-parameter") => runs::log_param(call),
        ("POST", "runs/log-batch") => runs::log_batch(call),
        ("POST", "runs/set-tag") => runs::set_tag(call),
        ("POST", "runs/delete-tag") => runs::delete_tag(call),
        ("POST", "runs/log-inputs") => runs::log_inputs(call),
        ("POST", "runs/outputs") => runs::log_outputs(call),
        ("GET", "metrics/get-history") => runs::metric_history(call),
        ("GET", "artifacts/list") => artifacts::list_for_run(call),

        ("POST", "logged-models") => logged_models::create(call),
        ("POST", "logged-models/search") => logged_models::search(call),
        (method, endpoint) if endpoint.starts_with("logged-models/") => {
            logged_models::route(call, method, &endpoint["logged-models/".len()..])
        }
        ("POST", "registered-models/create") => models::create_model(call),
        ("GET", "registered-models/get") => models::get_model(call),
        ("GET", "registered-models/search") => models::search_models(call),
        ("PATCH", "registered-models/update") => models::update_model(call),
        ("POST", "registered-models/get-latest-versions") => models::latest_versions(call),
        ("POST", "registered-models/alias") => models::set_alias(call),
        ("DELETE", "registered-models/alias") => models::delete_alias(call),
        ("GET", "registered-models/alias") => models::get_by_alias(call),
        ("POST", "model-versions/create") => models::create_version(call).await,
        ("GET", "model-versions/get") => models::get_version(call),
        ("GET", "model-versions/search") => models::search_versions(call),
        ("GET", "model-versions/get-download-uri") => models::download_uri(call),

        (method, endpoint) => Err(unsupported(method, &format!("/api/2.0/mlflow/{endpoint}"))),
    }
}

async fn artifacts_api(
    State(state): State<MlflowState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    let endpoint = params.get("endpoint").cloned().unwrap_or_default();
    let (identity, workspace) = match authenticate(&state, &params, request.headers()) {
        Ok(found) => found,
        Err(error) => return error.into_response(),
    };
    let method = request.method().clone();
    // Listing names its folder in the query; uploads and downloads in the path.
    let artifact_path = match endpoint.strip_prefix("artifacts") {
        Some("" | "/") => query_fields(&request)
            .ok()
            .and_then(|f| f.opt_str("path").ok().flatten())
            .unwrap_or_default(),
        Some(path) => path.trim_start_matches('/').to_string(),
        None => String::new(),
    };
    let rule = if method == Method::GET {
        Rule::read(Least::READER).for_runs()
    } else {
        Rule::write(Least::CONTRIBUTOR).for_runs()
    };
    // `{experiment}/{run}/artifacts/...` belongs to a run; anything else to the workspace.
    let parts: Vec<&str> = artifact_path.trim_matches('/').splitn(4, '/').collect();
    let target = match parts.as_slice() {
        [_, run_id, "artifacts", ..] | [_, run_id, "artifacts"] if *run_id != "models" => {
            Target::Run {
                workspace: &workspace,
                run_id,
            }
        }
        _ => Target::Workspace(&workspace),
    };
    let what = format!("{method} /api/2.0/mlflow-artifacts/{endpoint}");
    let described = target.describe();
    if let Err(error) = access_check(&state, &identity, rule, target, &what) {
        return error.into_response();
    }
    let result = match (method.clone(), endpoint.strip_prefix("artifacts")) {
        (Method::GET, Some("" | "/")) => {
            let query = query_fields(&request);
            match query {
                Ok(fields) => artifacts::list(Call {
                    state: state.clone(),
                    workspace: workspace.clone(),
                    fields,
                })
                .map(json_response),
                Err(error) => Err(error),
            }
        }
        (Method::PUT, Some(path)) if path.starts_with('/') => {
            artifacts::upload(&state, &workspace, &path[1..], request.into_body())
                .await
                .map(json_response)
        }
        (Method::GET, Some(path)) if path.starts_with('/') => {
            artifacts::download(&state, &workspace, &path[1..]).await
        }
        _ => Err(unsupported(
            method.as_str(),
            &format!("/api/2.0/mlflow-artifacts/{endpoint}"),
        )),
    };
    if rule.writes {
        let outcome = result.as_ref().map_or_else(MlflowError::code, |_| "ok");
        state
            .auth
            .audit(&identity, &workspace, &what, &described, outcome);
    }
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `ENDPOINT_NOT_FOUND` for a method and path Shoal does not serve.
pub(crate) fn unsupported(method: &str, path: &str) -> MlflowError {
    MlflowError::EndpointNotFound(format!(
        "{method} {path} is not an MLflow endpoint Shoal supports"
    ))
}

/// Who is calling and which workspace the request addresses.
fn authenticate(
    state: &MlflowState,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> MlflowResult<(Identity, String)> {
    let token = bearer_or_basic_token(headers).ok_or_else(|| {
        MlflowError::Unauthenticated(
            "missing credentials: send a Shoal token as 'Authorization: Bearer <token>' \
             (set MLFLOW_TRACKING_TOKEN)"
                .into(),
        )
    })?;
    let identity = state
        .auth
        .authenticate(&token)
        .map_err(MlflowError::refused)?;
    if let Some(workspace) = params.get("ws") {
        return Ok((identity, workspace.clone()));
    }
    let header = headers
        .get(WORKSPACE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    Ok((identity, header.unwrap_or(DEFAULT_WORKSPACE).to_string()))
}

/// The one access check of the MLflow API: `identity` may call an endpoint with `rule` on
/// `target`. A refused writing call is audited here (an allowed one after it ran).
fn access_check(
    state: &MlflowState,
    identity: &Identity,
    rule: Rule,
    target: Target<'_>,
    what: &str,
) -> MlflowResult<()> {
    let refused = match identity.check(rule, &target) {
        Ok(()) => return Ok(()),
        Err(refusal) => MlflowError::refused(refusal),
    };
    if rule.writes {
        state.auth.audit(
            identity,
            target.workspace().unwrap_or_default(),
            what,
            &target.describe(),
            refused.code(),
        );
    }
    Err(refused)
}

/// What a tracking endpoint needs: reads `reader`, everything else `contributor`; the
/// endpoints that read or log one run (and `experiments/get`) also take that run's token.
fn tracking_rule(method: &str, endpoint: &str) -> Rule {
    let reads = method == "GET"
        || matches!(
            endpoint,
            "experiments/search"
                | "runs/search"
                | "registered-models/get-latest-versions"
                | "logged-models/search"
        );
    let rule = if reads {
        Rule::read(Least::READER)
    } else {
        Rule::write(Least::CONTRIBUTOR)
    };
    let one_run = matches!(
        endpoint,
        "experiments/get"
            | "runs/get"
            | "runs/update"
            | "runs/log-metric"
            | "runs/log-parameter"
            | "runs/log-batch"
            | "runs/set-tag"
            | "runs/delete-tag"
            | "runs/log-inputs"
            | "runs/outputs"
            | "metrics/get-history"
            | "artifacts/list"
    );
    if one_run {
        rule.for_runs()
    } else {
        rule
    }
}

/// The token of `Bearer <token>`, or the password of `Basic <user:password>`.
fn bearer_or_basic_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        return decoded
            .split_once(':')
            .map(|(_, password)| password.to_string());
    }
    None
}

fn json_response(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Reads a request's fields: the JSON body of a POST/PATCH/DELETE, else the query string.
async fn read_fields(request: Request) -> MlflowResult<Fields> {
    if request.method() == Method::GET {
        return query_fields(&request);
    }
    let query = query_fields(&request)?;
    let body: Bytes = axum::body::to_bytes(request.into_body(), MAX_JSON_BODY_BYTES)
        .await
        .map_err(|e| {
            MlflowError::InvalidParameter(format!(
                "request body unreadable or larger than {MAX_JSON_BODY_BYTES} bytes: {e}"
            ))
        })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(query);
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(Fields::new(map, "")),
        Ok(_) => Err(MlflowError::InvalidParameter(
            "request body must be a JSON object".into(),
        )),
        Err(e) => Err(MlflowError::InvalidParameter(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}

/// The query string as fields; a repeated key becomes a list.
fn query_fields(request: &Request<Body>) -> MlflowResult<Fields> {
    let pairs: Query<Vec<(String, String)>> = Query::try_from_uri(request.uri())
        .map_err(|e| MlflowError::InvalidParameter(format!("malformed query string: {e}")))?;
    let mut map = Map::new();
    for (key, value) in pairs.0 {
        match map.get_mut(&key) {
            Some(Value::Array(list)) => list.push(Value::String(value)),
            Some(first) => {
                let first = first.take();
                map.insert(key, Value::Array(vec![first, Value::String(value)]));
            }
            None => {
                map.insert(key, Value::String(value));
            }
        }
    }
    Ok(Fields::new(map, ""))
}

/// A request's fields (a JSON object), read with errors that name the field.
pub(crate) struct Fields {
    map: Map<String, Value>,
    /// Where this object sits in the request (`metrics[3].`), for messages.
    context: String,
}

impl Fields {
    fn new(map: Map<String, Value>, context: &str) -> Fields {
        Fields {
            map,
            context: context.to_string(),
        }
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.context)
    }

    fn value(&self, field: &str) -> Option<&Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// A string field, absent or empty as `None`. Numbers are accepted as their text.
    pub fn opt_str(&self, field: &str) -> MlflowResult<Option<String>> {
        match self.value(field) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(MlflowError::field(
                &self.name(field),
                format!("expected a string, got {other}"),
            )),
        }
    }

    /// A string field that must be present and non-empty.
    pub fn str(&self, field: &str) -> MlflowResult<String> {
        self.opt_str(field)?
            .ok_or_else(|| MlflowError::field(&self.name(field), "missing; it is required"))
    }

    /// A string field that may be present but empty (param and tag values).
    pub fn str_or_empty(&self, field: &str) -> MlflowResult<String> {
        Ok(self.opt_str(field)?.unwrap_or_default())
    }

    /// An int64 field, sent as a JSON number or a decimal string.
    pub fn opt_i64(&self, field: &str) -> MlflowResult<Option<i64>> {
        match self.value(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| MlflowError::field(&self.name(field), "expected an integer")),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
                MlflowError::field(&self.name(field), format!("expected an integer, got '{s}'"))
            }),
            Some(other) => Err(MlflowError::field(
                &self.name(field),
                format!("expected an integer, got {other}"),
            )),
        }
    }

    /// A double field: a JSON number, or `"NaN"`, `"Infinity"`, `"-Infinity"` or a decimal
    /// string as protobuf's JSON mapping writes them.
    pub fn f64(&self, field: &str) -> MlflowResult<f64> {
        match self.value(field) {
            None => Err(MlflowError::field(
                &self.name(field),
                "missing; it is required",
            )),
            Some(Value::Number(n)) => n
                .as_f64()
                .ok_or_else(|| MlflowError::field(&self.name(field), "expected a number")),
            Some(Value::String(s)) => match s.trim() {
                "NaN" | "nan" => Ok(f64::NAN),
                "Infinity" | "inf" => Ok(f64::INFINITY),
                "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
                other => other.parse().map_err(|_| {
                    MlflowError::field(&self.name(field), format!("expected a number, got '{s}'"))
                }),
            },
            Some(other) => Err(MlflowError::field(
                &self.name(field),
                format!("expected a number, got {other}"),
            )),
        }
    }

    /// A repeated field: a list, or one value (as a query string sends a single item).
    pub fn list(&self, field: &str) -> Vec<Value> {
        match self.value(field) {
            None => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(one) => vec![one.clone()],
        }
    }

    /// A repeated string field.
    pub fn str_list(&self, field: &str) -> MlflowResult<Vec<String>> {
        self.list(field)
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(MlflowError::field(
                    &format!("{}[{i}]", self.name(field)),
                    format!("expected a string, got {other}"),
                )),
            })
            .collect()
    }

    /// A repeated message field, each item as fields of its own.
    pub fn objects(&self, field: &str) -> MlflowResult<Vec<Fields>> {
        self.list(field)
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Object(map) => Ok(Fields::new(map, &format!("{}[{i}].", self.name(field)))),
                other => Err(MlflowError::field(
                    &format!("{}[{i}]", self.name(field)),
                    format!("expected an object, got {other}"),
                )),
            })
            .collect()
    }

    /// A repeated `{key, value}` field (tags).
    pub fn key_values(&self, field: &str) -> MlflowResult<Vec<(String, String)>> {
        self.objects(field)?
            .into_iter()
            .map(|item| Ok((item.str("key")?, item.str_or_empty("value")?)))
            .collect()
    }

    /// The run id, under its current name `run_id` or the older `run_uuid`.
    pub fn run_id(&self) -> MlflowResult<String> {
        match self.opt_str("run_id")? {
            Some(id) => Ok(id),
            None => self
                .str("run_uuid")
                .map_err(|_| MlflowError::field(&self.name("run_id"), "missing; it is required")),
        }
    }
}

/// `[{key, value}]` as MLflow lists tags and params.
pub(crate) fn key_value_list<'a>(
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Value {
    Value::Array(
        pairs
            .into_iter()
            .map(|(k, v)| serde_json::json!({ "key": k, "value": v }))
            .collect(),
    )
}

/// A double as protobuf's JSON mapping writes it: non-finite values as strings.
pub(crate) fn json_double(value: f64) -> Value {
    if value.is_nan() {
        Value::String("NaN".into())
    } else if value == f64::INFINITY {
        Value::String("Infinity".into())
    } else if value == f64::NEG_INFINITY {
        Value::String("-Infinity".into())
    } else {
        serde_json::json!(value)
    }
}

/// Offset page tokens: the decimal index of the next item, opaque to clients.
pub(crate) fn page_offset(fields: &Fields) -> MlflowResult<usize> {
    match fields.opt_str("page_token")? {
        None => Ok(0),
        Some(token) => token.parse().map_err(|_| {
            MlflowError::field(
                "page_token",
                format!("'{token}' is not a token this hub issued"),
            )
        }),
    }
}

/// Cuts one page out of `items` and returns it with the next page's token.
pub(crate) fn paginate<T>(
    items: Vec<T>,
    offset: usize,
    page_size: usize,
) -> (Vec<T>, Option<String>) {
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(page_size).collect();
    let next = offset + page.len();
    let token = (next < total).then(|| next.to_string());
    (page, token)
}

/// A file or folder of an artifact listing, as MLflow shows it.
pub(crate) fn file_json(path: &str, is_dir: bool, size_bytes: u64) -> Value {
    if is_dir {
        json!({ "path": path, "is_dir": true })
    } else {
        json!({ "path": path, "is_dir": false, "file_size": size_bytes })
    }
}
