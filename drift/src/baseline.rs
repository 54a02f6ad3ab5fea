//! Training baselines: how each feature (and each model output) was distributed at
//! registration, and the bin edges that devices must reuse to summarise what they see.
//!
//! Numeric features are cut at their deciles; categorical features keep their most frequent
//! values plus an OTHER bin; classifier outputs count argmax classes. The edges and the
//! vocabulary go into the signed manifest, so a device bins exactly as the baseline did and the
//! hub compares counts bin for bin.
//!
//! # Deciles
//! The interior edges of a numeric feature are the type-7 sample quantiles (the default of R,
//! NumPy's `linear`) at p = 0.1, 0.2, …, 0.9 of the sorted finite values `x[0] ≤ … ≤ x[n−1]`:
//! with `h = (n − 1)·p`, `q = x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])`. `h` is computed in
//! integers (`(n − 1)·k / 10`), so the deciles of 1..=10 are exactly 1.9, 2.8, …, 9.1. Repeated
//! edges are then kept once, and an edge equal to the minimum is dropped, because the bin below
//! it would be empty in the baseline (values below the minimum are counted apart by
//! [`crate::NumericSummary::below_min`]). A constant column therefore has no edge and a single
//! bin; a 0/1 column has the single edge 1 (or an interpolated edge in between, depending on
//! where its deciles fall).
//!
//! # Bins
//! With edges `e_0 < … < e_{k−1}`, a value `v` falls in bin `i = #{j : e_j ≤ v}`: bin 0 is
//! `(−∞, e_0)`, bin `i` is `[e_{i−1}, e_i)`, bin `k` is `[e_{k−1}, +∞)`. The outer bins are
//! open, so every value has a bin; [`NumericBaseline::bin`] finds it by binary search.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::Moments;

/// Number of quantile cuts: deciles give nine interior edges and ten bins.
const QUANTILE_CUTS: usize = 10;

/// Training distribution of a model, feature by feature and output by output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Rows in the data the baseline was computed from (nulls included), for display and for
    /// sanity checks; metrics use each feature's own counts.
    pub rows: u64,
    /// Input features in the model's input order; summaries follow the same order.
    pub features: Vec<FeatureBaseline>,
    /// Model outputs watched for prediction drift, in the order of the output summaries.
    /// Profiles of a dataset know no outputs, so this starts empty; the hub adds them.
    #[serde(default)]
    pub outputs: Vec<OutputBaseline>,
}

/// Baseline of one input feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBaseline {
    /// Column name in the training data, also the name the device binds the input to.
    pub name: String,
    /// The distribution, numeric or categorical.
    pub kind: FeatureKind,
}

/// Distribution of a feature, by type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// A number, binned at its deciles.
    Numeric(NumericBaseline),
    /// A string, counted over its most frequent values plus OTHER.
    Categorical(CategoricalBaseline),
}

/// Baseline of one model output, for prediction drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputBaseline {
    /// Output name in the model's IO signature.
    pub name: String,
    /// The distribution, argmax classes or a numeric histogram.
    pub kind: OutputKind,
}

/// Distribution of a model output, by type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// Argmax class of a classifier, treated as a categorical variable over class indices.
    Classes(ClassBaseline),
    /// A regression output (or a score), binned like a numeric feature.
    Numeric(NumericBaseline),
}

/// Binned distribution of a numeric feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericBaseline {
    /// Interior cut points, strictly ascending and finite (see the module doc for how deciles
    /// become edges). Low-cardinality or constant columns have fewer than nine, even none.
    pub edges: Vec<f64>,
    /// Values per bin, `edges.len() + 1` of them; the first and last bins are open.
    pub counts: Vec<u64>,
    /// Moments of the finite values: the range that defines "out of range" on devices, the
    /// bounds of the outer bins and the scale of the normalized Wasserstein distance.
    pub moments: Moments,
    /// Null cells (and non-finite values) that reached no bin.
    pub nulls: u64,
}

/// Counted distribution of a categorical feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalBaseline {
    /// The most frequent values, by descending count, ties broken by ascending name (byte
    /// order); everything else is OTHER.
    pub vocabulary: Vec<String>,
    /// Count per vocabulary entry, then the OTHER count: `vocabulary.len() + 1` of them.
    pub counts: Vec<u64>,
    /// Null cells, kept out of the bins.
    pub nulls: u64,
}

/// Counted distribution of a classifier's argmax class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassBaseline {
    /// Count per class index `0..classes`, then one overflow count for any index at or above
    /// `classes`, so a model that grew classes still bins; `classes + 1` entries in all.
    pub counts: Vec<u64>,
}

/// A distribution whose shape cannot be used: edges out of order, counts of the wrong length.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DistributionError {
    /// An edge is NaN or infinite.
    #[error("edge {index} is not finite: {value}")]
    NonFiniteEdge { index: usize, value: f64 },
    /// An edge is not strictly above the one before it.
    #[error("edge {index} ({value}) is not above the edge before it ({previous})")]
    EdgesNotAscending {
        index: usize,
        value: f64,
        previous: f64,
    },
    /// The counts do not have one entry per bin.
    #[error("expected {expected} bin counts, found {found}")]
    BinCount { expected: usize, found: usize },
    /// A categorical vocabulary lists the same value twice.
    #[error("vocabulary lists {value:?} twice")]
    DuplicateCategory { value: String },
}

/// A baseline that cannot be used, naming the feature or output at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BaselineError {
    /// Two features, or two outputs, share a name.
    #[error("name {name:?} appears twice")]
    DuplicateName { name: String },
    /// One feature's or output's distribution is malformed.
    #[error("distribution of {name:?} is malformed")]
    Distribution {
        name: String,
        #[source]
        source: DistributionError,
    },
}

/// Returns the decile edges of sorted finite values, as defined in the module doc: type-7
/// quantiles at 0.1..0.9, repeats removed, an edge equal to the minimum dropped.
///
/// `sorted` must be in ascending order and finite; an empty slice gives no edges.
pub fn decile_edges(sorted: &[f64]) -> Vec<f64> {
    debug_assert!(
        sorted.windows(2).all(|pair| pair[0] <= pair[1]),
        "values are not sorted"
    );
    let Some(&minimum) = sorted.first() else {
        return Vec::new();
    };
    let last = sorted.len() - 1;
    let mut edges = Vec::with_capacity(QUANTILE_CUTS - 1);
    for cut in 1..QUANTILE_CUTS {
        let position = last * cut;
        let low = position / QUANTILE_CUTS;
        let fraction = (position % QUANTILE_CUTS) as f64 / QUANTILE_CUTS as f64;
        let below = sorted[low];
        let edge = if fraction == 0.0 {
            below
        } else {
            below + fraction * (sorted[low + 1] - below)
        };
        if edge > minimum && edges.last().is_none_or(|previous| edge > *previous) {
            edges.push(edge);
        }
    }
    edges
}

/// Returns the index of the first duplicated name, if any.
fn first_duplicate<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = HashSet::new();
    names.into_iter().find(|name| !seen.insert(*name))
}

// === impl Baseline ===

impl Baseline {
    /// Checks every distribution's shape and that names are unique, as a device should before
    /// summarising against a baseline from a manifest.
    ///
    /// # Errors
    /// [`BaselineError::DuplicateName`] when two features or two outputs share a name, and
    /// [`BaselineError::Distribution`] naming the first malformed one.
    pub fn validate(&self) -> Result<(), BaselineError> {
        let feature_names = self.features.iter().map(|feature| feature.name.as_str());
        let output_names = self.outputs.iter().map(|output| output.name.as_str());
        let duplicate = first_duplicate(feature_names).or_else(|| first_duplicate(output_names));
        if let Some(name) = duplicate {
            return Err(BaselineError::DuplicateName {
                name: name.to_owned(),
            });
        }
        for feature in &self.features {
            let checked = match &feature.kind {
                FeatureKind::Numeric(numeric) => numeric.validate(),
                FeatureKind::Categorical(categorical) => categorical.validate(),
            };
            checked.map_err(|source| BaselineError::Distribution {
                name: feature.name.clone(),
                source,
            })?;
        }
        for output in &self.outputs {
            let checked = match &output.kind {
                OutputKind::Classes(classes) => classes.validate(),
                OutputKind::Numeric(numeric) => numeric.validate(),
            };
            checked.map_err(|source| BaselineError::Distribution {
                name: output.name.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

// === impl NumericBaseline ===

impl NumericBaseline {
    /// Builds the baseline of a numeric column from its values: decile edges, bin counts and
    /// moments. Non-finite values (NaN, ±∞) are counted as nulls, next to `nulls` given.
    pub fn from_values(mut values: Vec<f64>, nulls: u64) -> Self {
        let before = values.len();
        values.retain(|value| value.is_finite());
        let nulls = nulls + (before - values.len()) as u64;
        values.sort_unstable_by(f64::total_cmp);
        let edges = decile_edges(&values);
        Self::count_sorted(edges, &values, nulls)
    }

    /// Builds a baseline over given edges instead of deciles, for outputs whose natural cuts
    /// are known (probabilities at 0.1, 0.2, …). Non-finite values are counted as nulls.
    ///
    /// # Errors
    /// A [`DistributionError`] when an edge is not finite or the edges are not strictly
    /// ascending.
    pub fn from_values_with_edges(
        edges: Vec<f64>,
        mut values: Vec<f64>,
        nulls: u64,
    ) -> Result<Self, DistributionError> {
        validate_edges(&edges)?;
        let before = values.len();
        values.retain(|value| value.is_finite());
        let nulls = nulls + (before - values.len()) as u64;
        values.sort_unstable_by(f64::total_cmp);
        Ok(Self::count_sorted(edges, &values, nulls))
    }

    /// Counts sorted finite values into the bins of `edges`.
    fn count_sorted(edges: Vec<f64>, sorted: &[f64], nulls: u64) -> Self {
        let mut counts = vec![0; edges.len() + 1];
        let mut moments = Moments::new();
        let mut bin = 0;
        for value in sorted {
            // Sorted values only ever move to later bins: a merge walk, no search needed.
            while bin < edges.len() && edges[bin] <= *value {
                bin += 1;
            }
            counts[bin] += 1;
            moments.observe(*value);
        }
        Self {
            edges,
            counts,
            moments,
            nulls,
        }
    }

    /// Returns the bin of `value`: the number of edges at or below it (see the module doc).
    /// NaN falls in bin 0; callers count it apart before binning.
    pub fn bin(&self, value: f64) -> usize {
        self.edges.partition_point(|edge| *edge <= value)
    }

    /// Returns the number of bins, one more than the number of edges.
    pub fn bins(&self) -> usize {
        self.edges.len() + 1
    }

    /// Checks that the edges are finite and strictly ascending, and that there is one count
    /// per bin.
    ///
    /// # Errors
    /// The first [`DistributionError`] found.
    pub fn validate(&self) -> Result<(), DistributionError> {
        validate_edges(&self.edges)?;
        check_bin_count(self.bins(), self.counts.len())
    }
}

fn validate_edges(edges: &[f64]) -> Result<(), DistributionError> {
    for (index, value) in edges.iter().copied().enumerate() {
        if !value.is_finite() {
            return Err(DistributionError::NonFiniteEdge { index, value });
        }
        if let Some(previous) = index.checked_sub(1).map(|before| edges[before]) {
            if value <= previous {
                return Err(DistributionError::EdgesNotAscending {
                    index,
                    value,
                    previous,
                });
            }
        }
    }
    Ok(())
}

fn check_bin_count(expected: usize, found: usize) -> Result<(), DistributionError> {
    if expected == found {
        Ok(())
    } else {
        Err(DistributionError::BinCount { expected, found })
    }
}

// === impl CategoricalBaseline ===

impl CategoricalBaseline {
    /// Builds the baseline of a categorical column from the count of each distinct value:
    /// the `top_n` most frequent (ties broken by ascending name) form the vocabulary, and the
    /// rest add up in OTHER. `top_n == 0` puts everything in OTHER.
    pub fn from_value_counts(
        value_counts: impl IntoIterator<Item = (String, u64)>,
        nulls: u64,
        top_n: usize,
    ) -> Self {
        let mut ranked: Vec<(String, u64)> = value_counts.into_iter().collect();
        ranked.sort_unstable_by(|(name_a, count_a), (name_b, count_b)| {
            count_b.cmp(count_a).then_with(|| name_a.cmp(name_b))
        });
        let other: u64 = ranked.iter().skip(top_n).map(|(_, count)| count).sum();
        ranked.truncate(top_n);
        let mut counts: Vec<u64> = ranked.iter().map(|(_, count)| *count).collect();
        counts.push(other);
        let vocabulary = ranked.into_iter().map(|(name, _)| name).collect();
        Self {
            vocabulary,
            counts,
            nulls,
        }
    }

    /// Returns the bin of `value`: its index in the vocabulary, or the OTHER bin
    /// (`vocabulary.len()`). A linear scan: vocabularies are short (top 20 by default) and a
    /// scan allocates nothing.
    pub fn bin(&self, value: &str) -> usize {
        self.vocabulary
            .iter()
            .position(|known| known == value)
            .unwrap_or(self.vocabulary.len())
    }

    /// Returns the number of bins: the vocabulary plus OTHER.
    pub fn bins(&self) -> usize {
        self.vocabulary.len() + 1
    }

    /// Checks that the vocabulary has no duplicate and that there is one count per bin.
    ///
    /// # Errors
    /// The first [`DistributionError`] found.
    pub fn validate(&self) -> Result<(), DistributionError> {
        if let Some(value) = first_duplicate(self.vocabulary.iter().map(String::as_str)) {
            return Err(DistributionError::DuplicateCategory {
                value: value.to_owned(),
            });
        }
        check_bin_count(self.bins(), self.counts.len())
    }
}

// === impl ClassBaseline ===

impl ClassBaseline {
    /// Counts predicted class indices over `classes` classes plus the overflow bin.
    pub fn from_predictions(classes: usize, predictions: impl IntoIterator<Item = usize>) -> Self {
        let mut counts = vec![0; classes + 1];
        for class in predictions {
            counts[class.min(classes)] += 1;
        }
        Self { counts }
    }

    /// Returns the number of classes tracked one by one (the overflow bin excluded).
    pub fn classes(&self) -> usize {
        self.counts.len().saturating_sub(1)
    }

    /// Returns the bin of a class index: itself, or the overflow bin for indices at or above
    /// [`ClassBaseline::classes`].
    pub fn bin(&self, class: usize) -> usize {
        class.min(self.classes())
    }

    /// Checks that the overflow bin is there.
    ///
    /// # Errors
    /// [`DistributionError::BinCount`] when `counts` is empty.
    pub fn validate(&self) -> Result<(), DistributionError> {
        if self.counts.is_empty() {
            return Err(DistributionError::BinCount {
                expected: 1,
                found: 0,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn deciles_of_one_to_ten() {
        // n = 10, h = 9·k/10: 0.9, 1.8, …, 8.1; x[⌊h⌋] = ⌊h⌋ + 1 and neighbours differ by 1,
        // so the k-th decile is 1 + 0.9·k: 1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1.
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        let baseline = NumericBaseline::from_values(values, 0);
        assert_close(
            &baseline.edges,
            &[1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1],
        );
        // 1 is below 1.9 (bin 0), 2 in [1.9, 2.8) (bin 1), …, 10 at or above 9.1 (bin 9).
        assert_eq!(baseline.counts, vec![1; 10]);
        assert_eq!(baseline.moments.count(), 10);
        assert_eq!(baseline.moments.mean(), Some(5.5));
        assert_eq!(baseline.nulls, 0);
    }

    #[test]
    fn deciles_of_one_to_hundred() {
        // n = 100, h = 99·k/10 = 9.9k: x[⌊h⌋] = ⌊h⌋ + 1, so q_k = 1 + 9.9·k:
        // 10.9, 20.8, 30.7, 40.6, 50.5, 60.4, 70.3, 80.2, 90.1; ten values per bin.
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let baseline = NumericBaseline::from_values(values, 3);
        assert_close(
            &baseline.edges,
            &[10.9, 20.8, 30.7, 40.6, 50.5, 60.4, 70.3, 80.2, 90.1],
        );
        assert_eq!(baseline.counts, vec![10; 10]);
        assert_eq!(baseline.nulls, 3);
    }

    #[test]
    fn constant_column_has_no_edge_and_one_bin() {
        let baseline = NumericBaseline::from_values(vec![4.0; 7], 0);
        assert!(baseline.edges.is_empty());
        assert_eq!(baseline.counts, vec![7]);
        assert_eq!(baseline.bin(-1e9), 0);
        assert_eq!(baseline.bin(1e9), 0);
    }

    #[test]
    fn low_cardinality_column_keeps_distinct_edges_above_the_minimum() {
        // Seven 0s then three 1s: x[0..7] = 0, x[7..10] = 1. h = 0.9k; deciles 1..6 sit in
        // the zeros (0), the 7th has h = 6.3: 0 + 0.3·(1 − 0) = 0.3, the 8th h = 7.2 → 1,
        // the 9th h = 8.1 → 1. Edges 0 (the minimum) dropped, 1 kept once: [0.3, 1].
        let mut values = vec![0.0; 7];
        values.extend([1.0; 3]);
        let baseline = NumericBaseline::from_values(values, 0);
        assert_close(&baseline.edges, &[0.3, 1.0]);
        assert_eq!(baseline.counts, vec![7, 0, 3]);
    }

    #[test]
    fn empty_column_has_one_empty_bin() {
        let baseline = NumericBaseline::from_values(vec![f64::NAN, f64::INFINITY], 2);
        assert!(baseline.edges.is_empty());
        assert_eq!(baseline.counts, vec![0]);
        assert_eq!(baseline.nulls, 4);
        assert_eq!(baseline.moments.count(), 0);
    }

    #[test]
    fn bin_rule_counts_edges_at_or_below() {
        let baseline = NumericBaseline {
            edges: vec![1.0, 2.0, 3.0],
            counts: vec![0; 4],
            moments: Moments::new(),
            nulls: 0,
        };
        assert_eq!(baseline.bin(f64::NEG_INFINITY), 0);
        assert_eq!(baseline.bin(0.999), 0);
        assert_eq!(baseline.bin(1.0), 1);
        assert_eq!(baseline.bin(2.5), 2);
        assert_eq!(baseline.bin(3.0), 3);
        assert_eq!(baseline.bin(f64::INFINITY), 3);
    }

    #[test]
    fn given_edges_are_checked_and_used() {
        let baseline =
            NumericBaseline::from_values_with_edges(vec![0.5], vec![0.1, 0.5, 0.9, 0.2], 0)
                .unwrap();
        assert_eq!(baseline.counts, vec![2, 2]);
        assert_eq!(
            NumericBaseline::from_values_with_edges(vec![0.5, 0.5], vec![], 0),
            Err(DistributionError::EdgesNotAscending {
                index: 1,
                value: 0.5,
                previous: 0.5
            })
        );
        assert!(matches!(
            NumericBaseline::from_values_with_edges(vec![f64::NAN], vec![], 0),
            Err(DistributionError::NonFiniteEdge { index: 0, .. })
        ));
    }

    #[test]
    fn vocabulary_is_top_n_by_count_then_name() {
        let counts = [("b", 5), ("a", 5), ("c", 9), ("d", 1), ("e", 1)]
            .map(|(name, count)| (name.to_owned(), count));
        let baseline = CategoricalBaseline::from_value_counts(counts.clone(), 2, 3);
        assert_eq!(baseline.vocabulary, ["c", "a", "b"]);
        assert_eq!(baseline.counts, vec![9, 5, 5, 2]);
        assert_eq!(baseline.nulls, 2);
        assert_eq!(baseline.bin("a"), 1);
        assert_eq!(baseline.bin("d"), 3);
        let none_kept = CategoricalBaseline::from_value_counts(counts, 0, 0);
        assert!(none_kept.vocabulary.is_empty());
        assert_eq!(none_kept.counts, vec![21]);
    }

    #[test]
    fn class_baseline_has_an_overflow_bin() {
        let baseline = ClassBaseline::from_predictions(3, [0, 1, 1, 2, 7]);
        assert_eq!(baseline.counts, vec![1, 2, 1, 1]);
        assert_eq!(baseline.classes(), 3);
        assert_eq!(baseline.bin(2), 2);
        assert_eq!(baseline.bin(3), 3);
        assert_eq!(baseline.bin(99), 3);
    }

    #[test]
    fn validate_names_the_malformed_feature() {
        let numeric = NumericBaseline::from_values(vec![1.0, 2.0], 0);
        let mut broken = numeric.clone();
        broken.counts.push(0);
        let baseline = Baseline {
            rows: 2,
            features: vec![
                FeatureBaseline {
                    name: "x".into(),
                    kind: FeatureKind::Numeric(numeric.clone()),
                },
                FeatureBaseline {
                    name: "y".into(),
                    kind: FeatureKind::Numeric(broken),
                },
            ],
            outputs: Vec::new(),
        };
        assert_eq!(
            baseline.validate(),
            Err(BaselineError::Distribution {
                name: "y".into(),
                // Two values interpolate to nine edges (1.1, …, 1.9): ten bins, eleven counts.
                source: DistributionError::BinCount {
                    expected: 10,
                    found: 11
                },
            })
        );
        let duplicated = Baseline {
            rows: 2,
            features: vec![
                FeatureBaseline {
                    name: "x".into(),
                    kind: FeatureKind::Numeric(numeric.clone()),
                },
                FeatureBaseline {
                    name: "x".into(),
                    kind: FeatureKind::Numeric(numeric),
                },
            ],
            outputs: Vec::new(),
        };
        assert_eq!(
            duplicated.validate(),
            Err(BaselineError::DuplicateName { name: "x".into() })
        );
        let vocabulary = CategoricalBaseline {
            vocabulary: vec!["a".into(), "a".into()],
            counts: vec![1, 1, 0],
            nulls: 0,
        };
        assert_eq!(
            vocabulary.validate(),
            Err(DistributionError::DuplicateCategory { value: "a".into() })
        );
    }

    #[test]
    fn serde_round_trip() {
        let baseline = Baseline {
            rows: 10,
            features: vec![FeatureBaseline {
                name: "x".into(),
                kind: FeatureKind::Numeric(NumericBaseline::from_values(
                    (1..=10).map(f64::from).collect(),
                    0,
                )),
            }],
            outputs: vec![OutputBaseline {
                name: "label".into(),
                kind: OutputKind::Classes(ClassBaseline::from_predictions(2, [0, 1, 1])),
            }],
        };
        let json = serde_json::to_string(&baseline).unwrap();
        assert_eq!(serde_json::from_str::<Baseline>(&json).unwrap(), baseline);
        let without_outputs = r#"{"rows":0,"features":[]}"#;
        assert!(serde_json::from_str::<Baseline>(without_outputs)
            .unwrap()
            .outputs
            .is_empty());
    }
}
