//! The intermediate values of a sweep's primary metric, per run and step: the input of the
//! early termination policies.

use std::collections::BTreeMap;

/// Reported values of one metric across a sweep's runs.
///
/// The hub rebuilds it from stored metric points (or keeps it up to date as points arrive)
/// and hands it to [`crate::EarlyStop::should_stop`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricHistory {
    /// The metric's name, used in stop reasons.
    metric: String,
    /// Run id → step → value; one value per step, the last one recorded.
    runs: BTreeMap<String, BTreeMap<u64, f64>>,
}

impl MetricHistory {
    pub fn new(metric: impl Into<String>) -> Self {
        MetricHistory {
            metric: metric.into(),
            runs: BTreeMap::new(),
        }
    }

    pub fn metric(&self) -> &str {
        &self.metric
    }

    /// Records `value` for `run` at `step`, replacing an earlier value at the same step.
    /// NaN is ignored, as the policies cannot rank it; infinities are kept, since a
    /// diverged loss is exactly what they should stop.
    pub fn record(&mut self, run: &str, step: u64, value: f64) {
        if value.is_nan() {
            return;
        }
        self.runs
            .entry(run.to_owned())
            .or_default()
            .insert(step, value);
    }

    /// Returns the ids of the runs with at least one value, in sorted order.
    pub fn runs(&self) -> impl Iterator<Item = &str> {
        self.runs.keys().map(String::as_str)
    }

    /// Returns a run's values by step, or `None` if it has reported nothing.
    pub fn points(&self, run: &str) -> Option<&BTreeMap<u64, f64>> {
        self.runs.get(run)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &BTreeMap<u64, f64>)> {
        self.runs.iter().map(|(run, points)| (run.as_str(), points))
    }
}
