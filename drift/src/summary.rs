//! Mergeable summaries of what a device saw during a telemetry window, binned over the
//! baseline's edges.
//!
//! A device creates a [`WindowSummary`] from the baseline in its manifest, calls `observe` once
//! per feature per inference, and ships the counts. Observing costs a binary search over at
//! most nine edges (or a scan of a short vocabulary), a few additions and one Welford update;
//! it never allocates. The hub adds summaries with `merge`, which is exact: merging the
//! windows of a day gives the counts of the day.
//!
//! Every summary refuses to merge with one of another shape ([`MergeError`]), since adding
//! counts over different bins would silently produce a meaningless distribution.

use serde::{Deserialize, Serialize};

use crate::{
    Baseline, CategoricalBaseline, ClassBaseline, FeatureKind, Moments, NumericBaseline, OutputKind,
};

/// Summaries of every feature and output of one model over a window, in the baseline's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    /// One summary per [`Baseline::features`] entry, same order.
    pub features: Vec<FeatureSummary>,
    /// One summary per [`Baseline::outputs`] entry, same order.
    #[serde(default)]
    pub outputs: Vec<OutputSummary>,
}

/// What a window saw of one input feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSummary {
    /// Counts over the decile bins of a numeric feature.
    Numeric(NumericSummary),
    /// Counts over the vocabulary of a categorical feature.
    Categorical(CategoricalSummary),
}

/// What a window saw of one model output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputSummary {
    /// Counts of argmax classes.
    Classes(ClassSummary),
    /// Counts over the bins of a numeric output.
    Numeric(NumericSummary),
}

/// Counts of a numeric feature's values over the baseline's bins, with out-of-range, null and
/// NaN counters and the moments of the finite values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericSummary {
    /// Values per baseline bin, `edges.len() + 1` of them. Infinities land in the outer bins.
    pub counts: Vec<u64>,
    /// Values below the baseline's observed minimum: the first bin counts them too, this tells
    /// how many of them the training data never reached.
    pub below_min: u64,
    /// Values above the baseline's observed maximum, also counted in the last bin.
    pub above_max: u64,
    /// Missing values (the caller passed `None`).
    pub nulls: u64,
    /// NaN values, which have no bin; a broken sensor shows up here rather than in the bins.
    pub nans: u64,
    /// Moments of the finite values (infinities are binned but kept out of the moments).
    pub moments: Moments,
}

/// Counts of a categorical feature's values over the baseline's vocabulary plus OTHER.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalSummary {
    /// Values per vocabulary entry, then OTHER: `vocabulary.len() + 1` of them.
    pub counts: Vec<u64>,
    /// Missing values (the caller passed `None`).
    pub nulls: u64,
}

/// Counts of a classifier's argmax class, with an overflow bin for indices beyond the classes
/// the baseline knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassSummary {
    /// Predictions per class index, then the overflow bin: `classes + 1` of them.
    pub counts: Vec<u64>,
}

/// Two summaries, or a summary and a baseline, that do not have the same shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// One side is numeric and the other categorical (or classes).
    #[error("expected a {expected} summary, found a {found} one")]
    Kind {
        expected: &'static str,
        found: &'static str,
    },
    /// The two sides have different numbers of bins.
    #[error("expected {expected} bins, found {found}")]
    Bins { expected: usize, found: usize },
    /// The two sides summarise different numbers of features or outputs.
    #[error("expected {expected} {what} summaries, found {found}")]
    Length {
        what: &'static str,
        expected: usize,
        found: usize,
    },
}

/// Checks that two count vectors have the same number of bins.
fn check_bins(expected: usize, found: usize) -> Result<(), MergeError> {
    if expected == found {
        Ok(())
    } else {
        Err(MergeError::Bins { expected, found })
    }
}

/// Adds `other` into `counts` bin by bin, saturating rather than wrapping (only a forged
/// summary can reach `u64::MAX`). The lengths are checked by the caller.
fn add_counts(counts: &mut [u64], other: &[u64]) {
    debug_assert_eq!(counts.len(), other.len());
    for (count, more) in counts.iter_mut().zip(other) {
        *count = count.saturating_add(*more);
    }
}

// === impl WindowSummary ===

impl WindowSummary {
    /// Returns empty summaries for every feature and output of `baseline`.
    pub fn new(baseline: &Baseline) -> Self {
        Self {
            features: baseline
                .features
                .iter()
                .map(|feature| FeatureSummary::new(&feature.kind))
                .collect(),
            outputs: baseline
                .outputs
                .iter()
                .map(|output| OutputSummary::new(&output.kind))
                .collect(),
        }
    }

    /// Adds every feature and output summary of `other` into this one.
    ///
    /// # Errors
    /// A [`MergeError`] when the two windows differ in shape anywhere; nothing is merged then.
    pub fn merge(&mut self, other: &WindowSummary) -> Result<(), MergeError> {
        self.check_mergeable(other)?;
        for (mine, theirs) in self.features.iter_mut().zip(&other.features) {
            mine.merge(theirs)?;
        }
        for (mine, theirs) in self.outputs.iter_mut().zip(&other.outputs) {
            mine.merge(theirs)?;
        }
        Ok(())
    }

    /// Checks, without changing anything, that `other` has this window's shape.
    fn check_mergeable(&self, other: &WindowSummary) -> Result<(), MergeError> {
        for (what, expected, found) in [
            ("feature", self.features.len(), other.features.len()),
            ("output", self.outputs.len(), other.outputs.len()),
        ] {
            if expected != found {
                return Err(MergeError::Length {
                    what,
                    expected,
                    found,
                });
            }
        }
        for (mine, theirs) in self.features.iter().zip(&other.features) {
            mine.check_mergeable(theirs)?;
        }
        for (mine, theirs) in self.outputs.iter().zip(&other.outputs) {
            mine.check_mergeable(theirs)?;
        }
        Ok(())
    }
}

// === impl FeatureSummary ===

impl FeatureSummary {
    /// Returns an empty summary shaped like the baseline `kind`.
    pub fn new(kind: &FeatureKind) -> Self {
        match kind {
            FeatureKind::Numeric(numeric) => Self::Numeric(NumericSummary::new(numeric)),
            FeatureKind::Categorical(categorical) => {
                Self::Categorical(CategoricalSummary::new(categorical))
            }
        }
    }

    /// Adds `other` into this summary.
    ///
    /// # Errors
    /// [`MergeError::Kind`] when one is numeric and the other categorical, or
    /// [`MergeError::Bins`] when their bins differ; nothing is merged then.
    pub fn merge(&mut self, other: &FeatureSummary) -> Result<(), MergeError> {
        match (self, other) {
            (Self::Numeric(mine), Self::Numeric(theirs)) => mine.merge(theirs),
            (Self::Categorical(mine), Self::Categorical(theirs)) => mine.merge(theirs),
            (mine, theirs) => Err(MergeError::Kind {
                expected: mine.kind_name(),
                found: theirs.kind_name(),
            }),
        }
    }

    fn check_mergeable(&self, other: &FeatureSummary) -> Result<(), MergeError> {
        match (self, other) {
            (Self::Numeric(mine), Self::Numeric(theirs)) => {
                check_bins(mine.counts.len(), theirs.counts.len())
            }
            (Self::Categorical(mine), Self::Categorical(theirs)) => {
                check_bins(mine.counts.len(), theirs.counts.len())
            }
            (mine, theirs) => Err(MergeError::Kind {
                expected: mine.kind_name(),
                found: theirs.kind_name(),
            }),
        }
    }

    /// Returns "numeric" or "categorical", for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Numeric(_) => "numeric",
            Self::Categorical(_) => "categorical",
        }
    }
}

// === impl OutputSummary ===

impl OutputSummary {
    /// Returns an empty summary shaped like the output baseline `kind`.
    pub fn new(kind: &OutputKind) -> Self {
        match kind {
            OutputKind::Classes(classes) => Self::Classes(ClassSummary::new(classes)),
            OutputKind::Numeric(numeric) => Self::Numeric(NumericSummary::new(numeric)),
        }
    }

    /// Adds `other` into this summary.
    ///
    /// # Errors
    /// [`MergeError::Kind`] when one counts classes and the other is numeric, or
    /// [`MergeError::Bins`] when their bins differ; nothing is merged then.
    pub fn merge(&mut self, other: &OutputSummary) -> Result<(), MergeError> {
        match (self, other) {
            (Self::Classes(mine), Self::Classes(theirs)) => mine.merge(theirs),
            (Self::Numeric(mine), Self::Numeric(theirs)) => mine.merge(theirs),
            (mine, theirs) => Err(MergeError::Kind {
                expected: mine.kind_name(),
                found: theirs.kind_name(),
            }),
        }
    }

    fn check_mergeable(&self, other: &OutputSummary) -> Result<(), MergeError> {
        match (self, other) {
            (Self::Classes(mine), Self::Classes(theirs)) => {
                check_bins(mine.counts.len(), theirs.counts.len())
            }
            (Self::Numeric(mine), Self::Numeric(theirs)) => {
                check_bins(mine.counts.len(), theirs.counts.len())
            }
            (mine, theirs) => Err(MergeError::Kind {
                expected: mine.kind_name(),
                found: theirs.kind_name(),
            }),
        }
    }

    /// Returns "classes" or "numeric", for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Classes(_) => "classes",
            Self::Numeric(_) => "numeric",
        }
    }
}

// === impl NumericSummary ===

impl NumericSummary {
    /// Returns an empty summary over the bins of `baseline`.
    pub fn new(baseline: &NumericBaseline) -> Self {
        Self {
            counts: vec![0; baseline.bins()],
            below_min: 0,
            above_max: 0,
            nulls: 0,
            nans: 0,
            moments: Moments::new(),
        }
    }

    /// Counts one value: `None` as a null, NaN apart, anything else in its bin (see
    /// [`NumericBaseline::bin`]) and, when outside the baseline's observed range, in
    /// `below_min` or `above_max` too. A baseline without any value has no range, so nothing
    /// counts as out of range against it.
    ///
    /// # Panics
    /// When the summary was not created from `baseline` and has fewer bins than it: the bins
    /// of a window are those of the manifest it started with.
    pub fn observe(&mut self, baseline: &NumericBaseline, value: Option<f64>) {
        debug_assert_eq!(
            self.counts.len(),
            baseline.bins(),
            "summary of another baseline"
        );
        let Some(value) = value else {
            self.nulls += 1;
            return;
        };
        if value.is_nan() {
            self.nans += 1;
            return;
        }
        self.counts[baseline.bin(value)] += 1;
        if let (Some(min), Some(max)) = (baseline.moments.min(), baseline.moments.max()) {
            if value < min {
                self.below_min += 1;
            } else if value > max {
                self.above_max += 1;
            }
        }
        if value.is_finite() {
            self.moments.observe(value);
        }
    }

    /// Returns the number of values that reached a bin (nulls and NaN excluded): the mass
    /// the drift metrics are computed over.
    pub fn binned(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other` into this summary: counts bin by bin, counters, moments.
    ///
    /// # Errors
    /// [`MergeError::Bins`] when the two have different numbers of bins; nothing is merged
    /// then.
    pub fn merge(&mut self, other: &NumericSummary) -> Result<(), MergeError> {
        check_bins(self.counts.len(), other.counts.len())?;
        add_counts(&mut self.counts, &other.counts);
        self.below_min = self.below_min.saturating_add(other.below_min);
        self.above_max = self.above_max.saturating_add(other.above_max);
        self.nulls = self.nulls.saturating_add(other.nulls);
        self.nans = self.nans.saturating_add(other.nans);
        self.moments.merge(&other.moments);
        Ok(())
    }
}

// === impl CategoricalSummary ===

impl CategoricalSummary {
    /// Returns an empty summary over the vocabulary of `baseline` plus OTHER.
    pub fn new(baseline: &CategoricalBaseline) -> Self {
        Self {
            counts: vec![0; baseline.bins()],
            nulls: 0,
        }
    }

    /// Counts one value: `None` as a null, a string in its vocabulary bin when it matches an
    /// entry exactly (no trimming, case-sensitive), else in OTHER.
    ///
    /// # Panics
    /// When the summary was not created from `baseline` and has fewer bins than it.
    pub fn observe(&mut self, baseline: &CategoricalBaseline, value: Option<&str>) {
        debug_assert_eq!(
            self.counts.len(),
            baseline.bins(),
            "summary of another baseline"
        );
        match value {
            None => self.nulls += 1,
            Some(value) => self.counts[baseline.bin(value)] += 1,
        }
    }

    /// Returns the number of values that reached a bin (nulls excluded).
    pub fn binned(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other` into this summary.
    ///
    /// # Errors
    /// [`MergeError::Bins`] when the two have different numbers of bins; nothing is merged
    /// then.
    pub fn merge(&mut self, other: &CategoricalSummary) -> Result<(), MergeError> {
        check_bins(self.counts.len(), other.counts.len())?;
        add_counts(&mut self.counts, &other.counts);
        self.nulls = self.nulls.saturating_add(other.nulls);
        Ok(())
    }
}

// === impl ClassSummary ===

impl ClassSummary {
    /// Returns an empty summary over the classes of `baseline` plus the overflow bin.
    pub fn new(baseline: &ClassBaseline) -> Self {
        Self {
            counts: vec![0; baseline.classes() + 1],
        }
    }

    /// Counts one argmax class; indices at or above the number of classes go to the overflow
    /// bin.
    ///
    /// # Panics
    /// When `counts` is empty, which a summary made by [`ClassSummary::new`] never is.
    pub fn observe_class(&mut self, class: usize) {
        let overflow = self.counts.len() - 1;
        self.counts[class.min(overflow)] += 1;
    }

    /// Returns the number of predictions counted.
    pub fn binned(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other` into this summary.
    ///
    /// # Errors
    /// [`MergeError::Bins`] when the two track different numbers of classes; nothing is
    /// merged then.
    pub fn merge(&mut self, other: &ClassSummary) -> Result<(), MergeError> {
        check_bins(self.counts.len(), other.counts.len())?;
        add_counts(&mut self.counts, &other.counts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FeatureBaseline, OutputBaseline};

    fn one_to_hundred() -> (Vec<f64>, NumericBaseline) {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let baseline = NumericBaseline::from_values(values.clone(), 0);
        (values, baseline)
    }

    #[test]
    fn observing_the_baseline_data_gives_the_baseline_counts() {
        let (values, baseline) = one_to_hundred();
        let mut summary = NumericSummary::new(&baseline);
        for value in &values {
            summary.observe(&baseline, Some(*value));
        }
        assert_eq!(summary.counts, baseline.counts);
        assert_eq!(summary.moments.count(), baseline.moments.count());
        assert_eq!(summary.moments.min(), baseline.moments.min());
        assert_eq!(summary.moments.max(), baseline.moments.max());
        assert_eq!((summary.below_min, summary.above_max), (0, 0));
        assert_eq!((summary.nulls, summary.nans), (0, 0));

        let counts = [("red", 3), ("green", 2), ("blue", 1)].map(|(n, c)| (n.to_owned(), c));
        let categorical = CategoricalBaseline::from_value_counts(counts, 0, 2);
        let mut summary = CategoricalSummary::new(&categorical);
        for value in ["red", "red", "red", "green", "green", "blue"] {
            summary.observe(&categorical, Some(value));
        }
        assert_eq!(summary.counts, categorical.counts);
        assert_eq!(summary.counts, vec![3, 2, 1]);
    }

    #[test]
    fn numeric_counters_for_out_of_range_null_and_nan() {
        let (_, baseline) = one_to_hundred();
        let mut summary = NumericSummary::new(&baseline);
        for value in [
            Some(0.5),
            Some(-3.0),
            Some(1.0),
            Some(100.0),
            Some(100.5),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            None,
            Some(f64::NAN),
            None,
        ] {
            summary.observe(&baseline, value);
        }
        // 0.5, -3 and -∞ are below the minimum 1 (bin 0, with 1.0 itself, which is in range);
        // 100.5 and +∞ above the maximum 100 (last bin, with 100 itself).
        assert_eq!(summary.below_min, 3);
        assert_eq!(summary.above_max, 2);
        assert_eq!(summary.counts[0], 4);
        assert_eq!(summary.counts[9], 3);
        assert_eq!(summary.binned(), 7);
        assert_eq!(summary.nulls, 2);
        assert_eq!(summary.nans, 1);
        // Infinities are binned but not in the moments: 0.5, -3, 1, 100, 100.5.
        assert_eq!(summary.moments.count(), 5);
        assert_eq!(summary.moments.min(), Some(-3.0));
    }

    #[test]
    fn categorical_unknown_values_go_to_other_and_none_to_nulls() {
        let counts = [("a", 2), ("b", 1)].map(|(n, c)| (n.to_owned(), c));
        let baseline = CategoricalBaseline::from_value_counts(counts, 0, 5);
        let mut summary = CategoricalSummary::new(&baseline);
        for value in [Some("a"), Some("A"), Some(" a"), Some("z"), None] {
            summary.observe(&baseline, value);
        }
        assert_eq!(summary.counts, vec![1, 0, 3]);
        assert_eq!(summary.nulls, 1);
    }

    #[test]
    fn class_summary_overflows_into_the_last_bin() {
        let baseline = ClassBaseline::from_predictions(2, []);
        let mut summary = ClassSummary::new(&baseline);
        for class in [0, 1, 1, 2, 5] {
            summary.observe_class(class);
        }
        assert_eq!(summary.counts, vec![1, 2, 2]);
        assert_eq!(summary.binned(), 5);
    }

    #[test]
    fn merge_is_exact_addition() {
        let (values, baseline) = one_to_hundred();
        let mut whole = NumericSummary::new(&baseline);
        let mut left = NumericSummary::new(&baseline);
        let mut right = NumericSummary::new(&baseline);
        for (index, value) in values.iter().enumerate() {
            let value = if index % 7 == 0 {
                None
            } else {
                Some(*value * 1.3 - 10.0)
            };
            whole.observe(&baseline, value);
            if index < 40 {
                left.observe(&baseline, value);
            } else {
                right.observe(&baseline, value);
            }
        }
        right.observe(&baseline, Some(f64::NAN));
        whole.observe(&baseline, Some(f64::NAN));
        left.merge(&right).unwrap();
        assert_eq!(left.counts, whole.counts);
        assert_eq!(left.below_min, whole.below_min);
        assert_eq!(left.above_max, whole.above_max);
        assert_eq!(left.nulls, whole.nulls);
        assert_eq!(left.nans, whole.nans);
        assert_eq!(left.moments.count(), whole.moments.count());
        let gap = (left.moments.mean().unwrap() - whole.moments.mean().unwrap()).abs();
        assert!(gap < 1e-9);

        let mut sum = ClassSummary {
            counts: vec![1, 2, 3],
        };
        sum.merge(&ClassSummary {
            counts: vec![10, 20, 30],
        })
        .unwrap();
        assert_eq!(sum.counts, vec![11, 22, 33]);
        let mut categorical = CategoricalSummary {
            counts: vec![1, 0],
            nulls: 2,
        };
        categorical
            .merge(&CategoricalSummary {
                counts: vec![4, 5],
                nulls: 1,
            })
            .unwrap();
        assert_eq!(
            categorical,
            CategoricalSummary {
                counts: vec![5, 5],
                nulls: 3
            }
        );
    }

    #[test]
    fn merge_refuses_mismatched_shapes_and_changes_nothing() {
        let mut numeric = FeatureSummary::Numeric(NumericSummary {
            counts: vec![1, 2],
            below_min: 0,
            above_max: 0,
            nulls: 0,
            nans: 0,
            moments: Moments::new(),
        });
        let three_bins = FeatureSummary::Numeric(NumericSummary {
            counts: vec![1, 2, 3],
            ..match &numeric {
                FeatureSummary::Numeric(summary) => summary.clone(),
                FeatureSummary::Categorical(_) => unreachable!(),
            }
        });
        let before = numeric.clone();
        assert_eq!(
            numeric.merge(&three_bins),
            Err(MergeError::Bins {
                expected: 2,
                found: 3
            })
        );
        let categorical = FeatureSummary::Categorical(CategoricalSummary {
            counts: vec![1, 2],
            nulls: 0,
        });
        assert_eq!(
            numeric.merge(&categorical),
            Err(MergeError::Kind {
                expected: "numeric",
                found: "categorical"
            })
        );
        assert_eq!(numeric, before);

        // A window whose second feature mismatches leaves the first one untouched too.
        let mut window = WindowSummary {
            features: vec![numeric.clone(), numeric.clone()],
            outputs: Vec::new(),
        };
        let other = WindowSummary {
            features: vec![numeric.clone(), three_bins],
            outputs: Vec::new(),
        };
        let unchanged = window.clone();
        assert_eq!(
            window.merge(&other),
            Err(MergeError::Bins {
                expected: 2,
                found: 3
            })
        );
        assert_eq!(window, unchanged);
        let shorter = WindowSummary {
            features: vec![numeric],
            outputs: Vec::new(),
        };
        assert_eq!(
            window.merge(&shorter),
            Err(MergeError::Length {
                what: "feature",
                expected: 2,
                found: 1
            })
        );

        let mut classes = OutputSummary::Classes(ClassSummary { counts: vec![0, 0] });
        let wider = OutputSummary::Classes(ClassSummary {
            counts: vec![0, 0, 0],
        });
        assert_eq!(
            classes.merge(&wider),
            Err(MergeError::Bins {
                expected: 2,
                found: 3
            })
        );
    }

    #[test]
    fn window_follows_the_baseline_and_round_trips_through_serde() {
        let (values, numeric) = one_to_hundred();
        let counts = [("a", 2), ("b", 1)].map(|(n, c)| (n.to_owned(), c));
        let baseline = Baseline {
            rows: 100,
            features: vec![
                FeatureBaseline {
                    name: "x".into(),
                    kind: FeatureKind::Numeric(numeric.clone()),
                },
                FeatureBaseline {
                    name: "c".into(),
                    kind: FeatureKind::Categorical(CategoricalBaseline::from_value_counts(
                        counts, 0, 5,
                    )),
                },
            ],
            outputs: vec![OutputBaseline {
                name: "label".into(),
                kind: OutputKind::Classes(ClassBaseline::from_predictions(3, [])),
            }],
        };
        let mut window = WindowSummary::new(&baseline);
        if let FeatureSummary::Numeric(summary) = &mut window.features[0] {
            summary.observe(&numeric, Some(values[0]));
        }
        if let OutputSummary::Classes(summary) = &mut window.outputs[0] {
            summary.observe_class(2);
        }
        let mut doubled = window.clone();
        doubled.merge(&window).unwrap();
        match &doubled.features[0] {
            FeatureSummary::Numeric(summary) => assert_eq!(summary.counts[0], 2),
            FeatureSummary::Categorical(_) => panic!("feature 0 is numeric"),
        }
        assert_eq!(
            doubled.outputs[0],
            OutputSummary::Classes(ClassSummary {
                counts: vec![0, 0, 2, 0]
            })
        );
        let json = serde_json::to_string(&doubled).unwrap();
        assert_eq!(
            serde_json::from_str::<WindowSummary>(&json).unwrap(),
            doubled
        );
    }
}
