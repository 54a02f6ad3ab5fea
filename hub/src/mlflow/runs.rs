//! `runs/*` and `metrics/get-history`: create, update, read, search and delete runs, and log
//! metrics, params and tags into them.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::experiments::page_size;
use super::{json_double, key_value_list, page_offset, paginate, Call, MlflowError, MlflowResult};
use crate::tracking::{Lifecycle, MetricPoint, NewRun, Run, RunQuery, RunStatus};

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

/// A run as MLflow's `Run` message: info, data (latest metrics, params, tags), inputs, outputs.
pub(crate) fn run_json(run: &Run) -> Value {
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
        "outputs": {},
    })
}

/// The run a request names, which must belong to the request's workspace.
pub(crate) fn run_in_workspace(call: &Call, run_id: &str) -> MlflowResult<Run> {
    let run = call.state.tracking.run(run_id)?;
    if run.workspace != call.workspace {
        return Err(MlflowError::NotFound(format!("run '{run_id}' not found")));
    }
    Ok(run)
}

fn requested_run(call: &Call) -> MlflowResult<Run> {
    let id = call.fields.run_id()?;
    run_in_workspace(call, &id)
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
        // A terminal status is final in Shoal; resuming a finished run only logs more data.
        if let Some(status) = status {
            if !run.status.is_terminal() && run.status != status {
                run.status = status;
                if status == RunStatus::Running && run.started_ms.is_none() {
                    run.started_ms = Some(crate::now_ms());
                }
            }
        }
        if run.status.is_terminal() && run.ended_ms.is_none() {
            run.ended_ms = Some(end_time.unwrap_or_else(crate::now_ms));
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
            timestamp_ms: item.opt_i64("timestamp")?.unwrap_or_else(crate::now_ms),
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
    let points = metrics
        .iter()
        .map(metric_point)
        .collect::<MlflowResult<Vec<_>>>()?;
    let run = requested_run(&call)?;
    if !params.is_empty() {
        call.state.tracking.log_params(&run.id, &params)?;
    }
    call.state.tracking.log_metrics(&run.id, &points)?;
    if !tags.is_empty() {
        call.state.tracking.set_tags(&run.id, &tags)?;
    }
    Ok(json!({}))
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

/// `runs/outputs`: MLflow logged-model outputs are accepted and not recorded; Shoal records
/// a run's outputs when a model version is registered from it.
pub(crate) fn log_outputs(call: Call) -> MlflowResult<Value> {
    requested_run(&call)?;
    Ok(json!({}))
}

pub(crate) fn metric_history(call: Call) -> MlflowResult<Value> {
    let run = requested_run(&call)?;
    let key = call.fields.str("metric_key")?;
    let page = page_size(&call, DEFAULT_HISTORY_PAGE)?;
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
    let page = page_size(&call, DEFAULT_SEARCH_PAGE)?;
    let offset = page_offset(&call.fields)?;
    let filter = match call.fields.opt_str("filter")? {
        Some(filter) => Some(run_predicate(&filter)?),
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
        order_by: order_by
            .as_ref()
            .map(|order| order.as_ref() as &(dyn Fn(&Run, &Run) -> Ordering + Sync)),
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

// === filters and ordering ===
//
// TODO(shoal-experiment): replace this interim grammar with `shoal_experiment::Filter::parse`
// and `OrderBy::parse_many` once the hub depends on that crate; only `run_predicate` and
// `run_order` need to change.

/// What a run filter is evaluated against.
type RunPredicate = Box<dyn Fn(&Run) -> bool + Send + Sync>;
/// How a run search is ordered.
type RunOrder = Box<dyn Fn(&Run, &Run) -> Ordering + Send + Sync>;

/// Compiles an MLflow filter string (`metrics.acc > 0.9 and params.lr = '0.1'`).
///
/// # Errors
/// `INVALID_PARAMETER_VALUE` naming what could not be parsed.
pub(crate) fn run_predicate(filter: &str) -> MlflowResult<RunPredicate> {
    let clauses = parse_filter(filter)?;
    Ok(Box::new(move |run: &Run| {
        clauses.iter().all(|clause| clause.matches_run(run))
    }))
}

/// Compiles MLflow `order_by` items (`metrics.acc DESC`, `attributes.start_time`); `None`
/// for no items. Runs without the ordering value sort last.
///
/// # Errors
/// `INVALID_PARAMETER_VALUE` for an item that is not `<field> [ASC|DESC]`.
pub(crate) fn run_order(items: &[String]) -> MlflowResult<Option<RunOrder>> {
    let mut keys = Vec::new();
    for item in items {
        let item = item.trim();
        let (field, descending) = match item.rsplit_once(char::is_whitespace) {
            Some((field, dir)) if dir.eq_ignore_ascii_case("desc") => (field.trim(), true),
            Some((field, dir)) if dir.eq_ignore_ascii_case("asc") => (field.trim(), false),
            _ => (item, false),
        };
        let mut lexer = Lexer::new(field);
        let subject = lexer.subject()?;
        if !lexer.at_end() {
            return Err(MlflowError::field(
                "order_by",
                format!("'{item}' is not '<field> [ASC|DESC]'"),
            ));
        }
        keys.push((subject, descending));
    }
    if keys.is_empty() {
        return Ok(None);
    }
    Ok(Some(Box::new(move |a: &Run, b: &Run| {
        for (subject, descending) in &keys {
            let ordering = match (subject.value_of(a), subject.value_of(b)) {
                (Some(x), Some(y)) => {
                    let o = x.compare(&y);
                    if *descending {
                        o.reverse()
                    } else {
                        o
                    }
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    })))
}

/// What a clause or an order-by item looks at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Subject {
    Metric(String),
    Param(String),
    Tag(String),
    Attribute(String),
}

/// A value read from a run for comparison.
enum Scalar {
    Number(f64),
    Text(String),
}

impl Scalar {
    fn compare(&self, other: &Scalar) -> Ordering {
        match (self, other) {
            (Scalar::Number(a), Scalar::Number(b)) => a.total_cmp(b),
            (Scalar::Text(a), Scalar::Text(b)) => a.cmp(b),
            (Scalar::Number(_), Scalar::Text(_)) => Ordering::Less,
            (Scalar::Text(_), Scalar::Number(_)) => Ordering::Greater,
        }
    }
}

impl Subject {
    fn value_of(&self, run: &Run) -> Option<Scalar> {
        match self {
            Subject::Metric(key) => run.metrics.get(key).map(|p| Scalar::Number(p.value)),
            Subject::Param(key) => run.params.get(key).map(|v| Scalar::Text(v.clone())),
            Subject::Tag(key) => run.tags.get(key).map(|v| Scalar::Text(v.clone())),
            Subject::Attribute(name) => match name.as_str() {
                "run_id" | "run_uuid" => Some(Scalar::Text(run.id.clone())),
                "run_name" => Some(Scalar::Text(run.name.clone())),
                "status" => Some(Scalar::Text(run.status.mlflow_name().into())),
                "user_id" => Some(Scalar::Text(run.user.clone())),
                "artifact_uri" => Some(Scalar::Text(run.artifact_uri())),
                "experiment_id" => Some(Scalar::Text(run.experiment_id.clone())),
                "start_time" | "created" => Some(Scalar::Number(
                    run.started_ms.unwrap_or(run.created_ms) as f64,
                )),
                "end_time" => run.ended_ms.map(|t| Scalar::Number(t as f64)),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
}

/// One `subject op value` comparison of a filter.
#[derive(Debug, Clone)]
pub(crate) struct Clause {
    pub subject: Subject,
    op: Op,
    value: String,
}

impl Clause {
    fn matches_run(&self, run: &Run) -> bool {
        match self.subject.value_of(run) {
            Some(Scalar::Number(n)) => self.matches_number(Some(n)),
            Some(Scalar::Text(t)) => self.matches_str(Some(&t)),
            None => false,
        }
    }

    /// Whether a text value satisfies the clause; an absent value never does.
    pub(crate) fn matches_str(&self, value: Option<&str>) -> bool {
        let Some(value) = value else { return false };
        let wanted = self.value.as_str();
        match self.op {
            Op::Eq => value == wanted,
            Op::Ne => value != wanted,
            Op::Lt => value < wanted,
            Op::Le => value <= wanted,
            Op::Gt => value > wanted,
            Op::Ge => value >= wanted,
            Op::Like => like(value, wanted),
            Op::ILike => like(&value.to_lowercase(), &wanted.to_lowercase()),
        }
    }

    /// Whether a number satisfies the clause; an absent value never does.
    pub(crate) fn matches_number(&self, value: Option<f64>) -> bool {
        let (Some(value), Ok(wanted)) = (value, self.value.parse::<f64>()) else {
            return false;
        };
        match self.op {
            Op::Eq => value == wanted,
            Op::Ne => value != wanted,
            Op::Lt => value < wanted,
            Op::Le => value <= wanted,
            Op::Gt => value > wanted,
            Op::Ge => value >= wanted,
            Op::Like | Op::ILike => false,
        }
    }
}

/// SQL `LIKE`: `%` matches any run of characters, `_` any one character.
fn like(value: &str, pattern: &str) -> bool {
    fn go(v: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('%', rest)) => (0..=v.len()).any(|i| go(&v[i..], rest)),
            Some(('_', rest)) => !v.is_empty() && go(&v[1..], rest),
            Some((c, rest)) => v.first() == Some(c) && go(&v[1..], rest),
        }
    }
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&v, &p)
}

/// Parses `clause (AND clause)*`.
///
/// # Errors
/// `INVALID_PARAMETER_VALUE` naming the part of the filter that could not be read.
pub(crate) fn parse_filter(filter: &str) -> MlflowResult<Vec<Clause>> {
    let mut lexer = Lexer::new(filter);
    let mut clauses = Vec::new();
    if lexer.at_end() {
        return Ok(clauses);
    }
    loop {
        let subject = lexer.subject()?;
        let op = lexer.op()?;
        let value = lexer.value()?;
        clauses.push(Clause { subject, op, value });
        if lexer.at_end() {
            return Ok(clauses);
        }
        let word = lexer.word();
        if !word.eq_ignore_ascii_case("and") {
            return Err(lexer.error(&format!(
                "expected AND, found '{word}' (OR is not supported)"
            )));
        }
    }
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Lexer<'a> {
        Lexer { text, pos: 0 }
    }

    fn error(&self, problem: &str) -> MlflowError {
        MlflowError::InvalidParameter(format!(
            "filter '{}' at character {}: {problem}",
            self.text, self.pos
        ))
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.text.len()
    }

    /// Characters up to whitespace, an operator or a quote.
    fn word(&mut self) -> &'a str {
        self.skip_ws();
        let rest = self.rest();
        let end = rest
            .find(|c: char| c.is_whitespace() || "=!<>.`\"'".contains(c))
            .unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }

    fn quoted(&mut self, quote: char) -> MlflowResult<String> {
        let rest = &self.rest()[1..];
        let end = rest
            .find(quote)
            .ok_or_else(|| self.error(&format!("unclosed {quote}")))?;
        self.pos += end + 2;
        Ok(rest[..end].to_string())
    }

    fn subject(&mut self) -> MlflowResult<Subject> {
        let first = self.word().to_string();
        if first.is_empty() {
            return Err(self.error("expected a field such as metrics.loss"));
        }
        if !self.rest().starts_with('.') {
            return Ok(Subject::Attribute(first));
        }
        self.pos += 1;
        let key = match self.rest().chars().next() {
            Some(q @ ('`' | '"')) => self.quoted(q)?,
            _ => {
                // Keys may contain dots (`tags.mlflow.runName`): read to an operator or space.
                let rest = self.rest();
                let end = rest
                    .find(|c: char| c.is_whitespace() || "=!<>".contains(c))
                    .unwrap_or(rest.len());
                self.pos += end;
                rest[..end].to_string()
            }
        };
        if key.is_empty() {
            return Err(self.error("expected a key after the '.'"));
        }
        Ok(match first.to_ascii_lowercase().as_str() {
            "metrics" | "metric" => Subject::Metric(key),
            "params" | "param" | "parameters" | "parameter" => Subject::Param(key),
            "tags" | "tag" => Subject::Tag(key),
            "attributes" | "attribute" | "attr" | "run" => Subject::Attribute(key),
            other => {
                return Err(self.error(&format!(
                    "unknown field type '{other}'; use metrics., params., tags. or attributes."
                )))
            }
        })
    }

    fn op(&mut self) -> MlflowResult<Op> {
        self.skip_ws();
        for (symbol, op) in [
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if self.rest().starts_with(symbol) {
                self.pos += symbol.len();
                return Ok(op);
            }
        }
        let word = self.word();
        if word.eq_ignore_ascii_case("like") {
            Ok(Op::Like)
        } else if word.eq_ignore_ascii_case("ilike") {
            Ok(Op::ILike)
        } else {
            Err(self.error(&format!(
                "expected one of = != < <= > >= LIKE ILIKE, found '{word}'"
            )))
        }
    }

    fn value(&mut self) -> MlflowResult<String> {
        self.skip_ws();
        match self.rest().chars().next() {
            Some(q @ ('\'' | '"')) => self.quoted(q),
            Some(_) => {
                let rest = self.rest();
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                self.pos += end;
                Ok(rest[..end].to_string())
            }
            None => Err(self.error("expected a value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_joined_clauses() {
        let clauses =
            parse_filter("metrics.acc >= 0.9 AND params.lr = '0.1' and tags.`my tag` LIKE 'a%'")
                .expect("parses");
        assert_eq!(clauses.len(), 3);
        assert_eq!(clauses[0].subject, Subject::Metric("acc".into()));
        assert_eq!(clauses[1].subject, Subject::Param("lr".into()));
        assert_eq!(clauses[2].subject, Subject::Tag("my tag".into()));
        assert!(clauses[2].matches_str(Some("abc")));
        assert!(!clauses[2].matches_str(Some("cba")));
        assert!(clauses[0].matches_number(Some(0.95)));
        let dotted = parse_filter("tags.mlflow.runName = 'x'").expect("parses");
        assert_eq!(dotted[0].subject, Subject::Tag("mlflow.runName".into()));
        assert!(parse_filter("metrics.acc > 1 or params.x = 'y'").is_err());
        assert!(parse_filter("bogus.x = 1").is_err());
    }
}
