//! Run search as the hub applies it: the filter grammar and order-by of `shoal-experiment`,
//! turned into the predicates [`crate::tracking::Tracking::search_runs`] takes. The gRPC API and
//! the MLflow-compatible API both come through here, so a filter means the same on both.

use shoal_experiment::{Filter, OrderBy};

use crate::error::{TrackingError, TrackingResult};
use crate::tracking::{Lifecycle, Run, RunFilterFn, RunOrderFn};

/// Keeps the runs a filter matches.
pub type RunPredicate = Box<RunFilterFn<'static>>;
/// Orders runs by order-by clauses.
pub type RunOrder = Box<RunOrderFn<'static>>;

/// Parses a filter; `None` for an empty one.
///
/// # Errors
/// `InvalidArgument` naming the filter, the column of the problem and what was expected.
pub fn run_filter(filter: &str) -> TrackingResult<Option<RunPredicate>> {
    if filter.trim().is_empty() {
        return Ok(None);
    }
    // One line (the column says where); a client that shows the filter can draw a pointer
    // under it with `FilterError::pointer`.
    let parsed = Filter::parse(filter)
        .map_err(|e| TrackingError::invalid(format!("filter {filter:?}: {e}")))?;
    Ok(Some(Box::new(move |run: &Run| parsed.matches(run))))
}

/// Parses order-by clauses (`metrics.accuracy desc`); `None` when there are none.
///
/// # Errors
/// `InvalidArgument` naming the clause and column.
pub fn run_order(clauses: &[String]) -> TrackingResult<Option<RunOrder>> {
    let clauses: Vec<&String> = clauses.iter().filter(|c| !c.trim().is_empty()).collect();
    if clauses.is_empty() {
        return Ok(None);
    }
    let parsed = OrderBy::parse_many(&clauses)
        .map_err(|e| TrackingError::invalid(format!("order by: {e}")))?;
    Ok(Some(Box::new(move |a: &Run, b: &Run| parsed.compare(a, b))))
}

impl shoal_experiment::Searchable for Run {
    fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.get(key).map(|m| m.value)
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    fn attribute(
        &self,
        name: shoal_experiment::Attribute,
    ) -> Option<shoal_experiment::AttributeValue> {
        use shoal_experiment::{Attribute as A, AttributeValue as V};
        Some(match name {
            A::Status => V::Text(self.status.mlflow_name().to_string()),
            A::RunName => V::Text(self.name.clone()),
            A::RunId => V::Text(self.id.clone()),
            A::ExperimentId => V::Text(self.experiment_id.clone()),
            A::StartTime => V::Number(self.started_ms? as f64),
            A::EndTime => V::Number(self.ended_ms? as f64),
            A::UserId => V::Text(self.user.clone()),
            A::ArtifactUri => V::Text(self.artifact_uri()),
            A::LifecycleStage => V::Text(
                match self.lifecycle {
                    Lifecycle::Active => "active",
                    Lifecycle::Deleted => "deleted",
                }
                .to_string(),
            ),
        })
    }
}
