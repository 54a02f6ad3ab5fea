//! Drift evaluation: merged window summaries against the baseline, feature by feature, with a
//! status per feature and for the whole model.
//!
//! The status is read from distances only, PSI and Jensen–Shannon, never from p-values: with
//! thousands of rows every shift is "significant" to a test, while a distance says how far the
//! data moved. KS, Wasserstein and chi-square are reported next to them for people to read.
//! Below a minimum number of values the answer is [`DriftStatus::NotEnoughData`] and no number
//! is given at all.

use serde::{Deserialize, Serialize};

use crate::metrics::{chi_square, js_distance, ks_statistic, psi, wasserstein_normalized};
use crate::{
    Baseline, ChiSquare, FeatureKind, FeatureSummary, MergeError, NumericBaseline, NumericSummary,
    OutputKind, OutputSummary, WindowSummary,
};

/// Default PSI from which drift is moderate.
pub const DEFAULT_PSI_MODERATE: f64 = 0.1;
/// Default PSI from which drift is significant.
pub const DEFAULT_PSI_SIGNIFICANT: f64 = 0.25;
/// Default Jensen–Shannon distance (base 2) from which drift is significant: the alert level.
pub const DEFAULT_JS_SIGNIFICANT: f64 = 0.1;

/// How far a feature drifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    /// Below every moderate threshold.
    None,
    /// At or above a moderate threshold, below every significant one.
    Moderate,
    /// At or above a significant threshold: worth an alert.
    Significant,
    /// Too few values in the window (or none in the baseline) to say anything.
    NotEnoughData,
}

/// Where the drift bands start. The status of a feature is the worse of its PSI band and its
/// JS band.
///
/// For small shifts `PSI ≈ 8·ln 2 · JS² ≈ 5.5 · JS²`, so the default JS alert at 0.1 fires
/// around PSI 0.055, before the PSI moderate band (0.1, about JS 0.13) and well before the PSI
/// significant band (0.25, about JS 0.21). With the defaults JS therefore decides most
/// significant statuses; raise `js_significant` to let PSI's bands speak.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// PSI at or above which drift is moderate (default 0.1).
    pub psi_moderate: f64,
    /// PSI at or above which drift is significant (default 0.25).
    pub psi_significant: f64,
    /// JS distance at or above which drift is moderate. `None` by default: the issue gives JS
    /// an alert level only, and a guessed moderate band would fire on noise.
    pub js_moderate: Option<f64>,
    /// JS distance at or above which drift is significant (default 0.1).
    pub js_significant: f64,
}

/// Drift of one feature or output over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// Feature or output name, from the baseline.
    pub name: String,
    /// Observations in the window, nulls and NaN included.
    pub rows: u64,
    /// Missing values in the window.
    pub nulls: u64,
    /// NaN values in the window (numeric only; 0 otherwise).
    pub nans: u64,
    /// Values below the baseline's minimum (numeric only; 0 otherwise).
    pub below_min: u64,
    /// Values above the baseline's maximum (numeric only; 0 otherwise).
    pub above_max: u64,
    /// Population Stability Index with Jeffreys smoothing ([`crate::metrics::psi`]).
    pub psi: Option<f64>,
    /// Jensen–Shannon distance, base 2 ([`crate::metrics::js_distance`]).
    pub js: Option<f64>,
    /// Binned Kolmogorov–Smirnov statistic (numeric only).
    pub ks: Option<f64>,
    /// Binned Wasserstein distance in baseline standard deviations (numeric only).
    pub wasserstein: Option<f64>,
    /// Pearson's chi-square (categorical features and classes only).
    pub chi_square: Option<ChiSquare>,
    /// The band the PSI and JS values fall in.
    pub status: DriftStatus,
}

/// Drift of every feature and output of a model over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// The worst status among features and outputs that had enough data;
    /// [`DriftStatus::NotEnoughData`] only when none had.
    pub status: DriftStatus,
    /// One entry per baseline feature, same order.
    pub features: Vec<FeatureDrift>,
    /// One entry per baseline output (prediction drift), same order.
    pub outputs: Vec<FeatureDrift>,
}

/// Summaries that do not fit the baseline they are evaluated against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The window has a different number of feature or output summaries than the baseline.
    #[error("baseline has {expected} {what}s but the window summarises {found}")]
    Length {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// One summary has another type or other bins than its baseline.
    #[error("summary of {name:?} does not fit its baseline")]
    Mismatch {
        name: String,
        #[source]
        source: MergeError,
    },
}

// === impl DriftStatus ===

impl DriftStatus {
    /// Orders statuses for "the worst of": no data < none < moderate < significant.
    fn severity(self) -> u8 {
        match self {
            Self::NotEnoughData => 0,
            Self::None => 1,
            Self::Moderate => 2,
            Self::Significant => 3,
        }
    }

    /// Returns the worse of two statuses (a status with data beats `NotEnoughData`).
    pub fn worst(self, other: DriftStatus) -> DriftStatus {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

// === impl Thresholds ===

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            psi_moderate: DEFAULT_PSI_MODERATE,
            psi_significant: DEFAULT_PSI_SIGNIFICANT,
            js_moderate: None,
            js_significant: DEFAULT_JS_SIGNIFICANT,
        }
    }
}

impl Thresholds {
    /// Returns the status of PSI and JS values: the worse of their two bands, or
    /// `NotEnoughData` when neither could be computed.
    pub fn classify(&self, psi: Option<f64>, js: Option<f64>) -> DriftStatus {
        let mut status = DriftStatus::NotEnoughData;
        if let Some(psi) = psi {
            status = status.worst(band(psi, Some(self.psi_moderate), self.psi_significant));
        }
        if let Some(js) = js {
            status = status.worst(band(js, self.js_moderate, self.js_significant));
        }
        status
    }
}

fn band(value: f64, moderate: Option<f64>, significant: f64) -> DriftStatus {
    if value >= significant {
        DriftStatus::Significant
    } else if moderate.is_some_and(|moderate| value >= moderate) {
        DriftStatus::Moderate
    } else {
        DriftStatus::None
    }
}

// === evaluate ===

/// Evaluates merged window summaries against the baseline.
///
/// Each feature and output gets its counters and, when at least `min_rows` of its values
/// reached a bin (nulls and NaN do not count), its distances: PSI and JS always, KS and
/// Wasserstein for numeric ones, chi-square for categorical ones and classes. Below
/// `min_rows` the status is [`DriftStatus::NotEnoughData`] and every distance is `None`; a
/// baseline without values gives the same answer.
///
/// # Errors
/// [`ReportError::Length`] when the window does not summarise as many features or outputs as
/// the baseline has, and [`ReportError::Mismatch`] naming the first summary whose type or bins
/// differ from its baseline's.
pub fn evaluate(
    baseline: &Baseline,
    merged: &WindowSummary,
    min_rows: u64,
    thresholds: &Thresholds,
) -> Result<DriftReport, ReportError> {
    check_length("feature", baseline.features.len(), merged.features.len())?;
    check_length("output", baseline.outputs.len(), merged.outputs.len())?;
    let mut status = DriftStatus::NotEnoughData;

    let mut features = Vec::with_capacity(baseline.features.len());
    for (feature, summary) in baseline.features.iter().zip(&merged.features) {
        let drift = match (&feature.kind, summary) {
            (FeatureKind::Numeric(numeric), FeatureSummary::Numeric(window)) => {
                check_bins(&feature.name, numeric.counts.len(), window.counts.len())?;
                numeric_drift(&feature.name, numeric, window, min_rows, thresholds)
            }
            (FeatureKind::Categorical(categorical), FeatureSummary::Categorical(window)) => {
                check_bins(&feature.name, categorical.counts.len(), window.counts.len())?;
                let counts = Counts {
                    expected: &categorical.counts,
                    actual: &window.counts,
                    nulls: window.nulls,
                };
                counted_drift(&feature.name, counts, min_rows, thresholds)
            }
            (kind, window) => {
                return Err(kind_mismatch(
                    &feature.name,
                    feature_kind_name(kind),
                    window.kind_name(),
                ))
            }
        };
        status = status.worst(drift.status);
        features.push(drift);
    }

    let mut outputs = Vec::with_capacity(baseline.outputs.len());
    for (output, summary) in baseline.outputs.iter().zip(&merged.outputs) {
        let drift = match (&output.kind, summary) {
            (OutputKind::Numeric(numeric), OutputSummary::Numeric(window)) => {
                check_bins(&output.name, numeric.counts.len(), window.counts.len())?;
                numeric_drift(&output.name, numeric, window, min_rows, thresholds)
            }
            (OutputKind::Classes(classes), OutputSummary::Classes(window)) => {
                check_bins(&output.name, classes.counts.len(), window.counts.len())?;
                let counts = Counts {
                    expected: &classes.counts,
                    actual: &window.counts,
                    nulls: 0,
                };
                counted_drift(&output.name, counts, min_rows, thresholds)
            }
            (kind, window) => {
                return Err(kind_mismatch(
                    &output.name,
                    output_kind_name(kind),
                    window.kind_name(),
                ))
            }
        };
        status = status.worst(drift.status);
        outputs.push(drift);
    }

    Ok(DriftReport {
        status,
        features,
        outputs,
    })
}

fn check_length(what: &'static str, expected: usize, found: usize) -> Result<(), ReportError> {
    if expected == found {
        Ok(())
    } else {
        Err(ReportError::Length {
            what,
            expected,
            found,
        })
    }
}

fn check_bins(name: &str, expected: usize, found: usize) -> Result<(), ReportError> {
    if expected == found {
        Ok(())
    } else {
        Err(ReportError::Mismatch {
            name: name.to_owned(),
            source: MergeError::Bins { expected, found },
        })
    }
}

fn kind_mismatch(name: &str, expected: &'static str, found: &'static str) -> ReportError {
    ReportError::Mismatch {
        name: name.to_owned(),
        source: MergeError::Kind { expected, found },
    }
}

fn feature_kind_name(kind: &FeatureKind) -> &'static str {
    match kind {
        FeatureKind::Numeric(_) => "numeric",
        FeatureKind::Categorical(_) => "categorical",
    }
}

fn output_kind_name(kind: &OutputKind) -> &'static str {
    match kind {
        OutputKind::Classes(_) => "classes",
        OutputKind::Numeric(_) => "numeric",
    }
}

/// Drift of a numeric feature or output: PSI, JS, KS and Wasserstein over the decile bins.
fn numeric_drift(
    name: &str,
    baseline: &NumericBaseline,
    window: &NumericSummary,
    min_rows: u64,
    thresholds: &Thresholds,
) -> FeatureDrift {
    let binned = window.binned();
    let mut drift = FeatureDrift {
        name: name.to_owned(),
        rows: binned
            .saturating_add(window.nulls)
            .saturating_add(window.nans),
        nulls: window.nulls,
        nans: window.nans,
        below_min: window.below_min,
        above_max: window.above_max,
        psi: None,
        js: None,
        ks: None,
        wasserstein: None,
        chi_square: None,
        status: DriftStatus::NotEnoughData,
    };
    if binned < min_rows {
        return drift;
    }
    let (expected, actual) = (&baseline.counts, &window.counts);
    drift.psi = psi(expected, actual);
    drift.js = js_distance(expected, actual);
    drift.ks = ks_statistic(expected, actual);
    drift.wasserstein = wasserstein_normalized(baseline, expected, actual);
    drift.status = thresholds.classify(drift.psi, drift.js);
    drift
}

/// Baseline and window counts of an unordered variable.
struct Counts<'a> {
    expected: &'a [u64],
    actual: &'a [u64],
    nulls: u64,
}

/// Drift of a categorical feature or a class output: PSI, JS and chi-square.
fn counted_drift(
    name: &str,
    counts: Counts<'_>,
    min_rows: u64,
    thresholds: &Thresholds,
) -> FeatureDrift {
    let binned: u64 = counts.actual.iter().sum();
    let mut drift = FeatureDrift {
        name: name.to_owned(),
        rows: binned.saturating_add(counts.nulls),
        nulls: counts.nulls,
        nans: 0,
        below_min: 0,
        above_max: 0,
        psi: None,
        js: None,
        ks: None,
        wasserstein: None,
        chi_square: None,
        status: DriftStatus::NotEnoughData,
    };
    if binned < min_rows {
        return drift;
    }
    drift.psi = psi(counts.expected, counts.actual);
    drift.js = js_distance(counts.expected, counts.actual);
    drift.chi_square = chi_square(counts.expected, counts.actual);
    drift.status = thresholds.classify(drift.psi, drift.js);
    drift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        CategoricalBaseline, CategoricalSummary, ClassBaseline, ClassSummary, FeatureBaseline,
        OutputBaseline,
    };

    /// A baseline of 1000 rows: x = 0..1000 (numeric), colour cycling red, green, blue, and
    /// a three-class output predicted as row % 3.
    fn baseline() -> Baseline {
        let values: Vec<f64> = (0..1000).map(f64::from).collect();
        let colours = [("red", 334), ("green", 333), ("blue", 333)];
        Baseline {
            rows: 1000,
            features: vec![
                FeatureBaseline {
                    name: "x".into(),
                    kind: FeatureKind::Numeric(NumericBaseline::from_values(values, 0)),
                },
                FeatureBaseline {
                    name: "colour".into(),
                    kind: FeatureKind::Categorical(CategoricalBaseline::from_value_counts(
                        colours.map(|(name, count)| (name.to_owned(), count)),
                        0,
                        20,
                    )),
                },
            ],
            outputs: vec![OutputBaseline {
                name: "label".into(),
                kind: OutputKind::Classes(ClassBaseline::from_predictions(
                    3,
                    (0..1000).map(|row| row % 3),
                )),
            }],
        }
    }

    /// Observes rows `0..rows` with x shifted by `shift`; colours and classes follow the
    /// baseline's cycle, or are all "red" and class 0 when `skew` is set.
    fn window(baseline: &Baseline, rows: u32, shift: f64, skew: bool) -> WindowSummary {
        let mut window = WindowSummary::new(baseline);
        let FeatureKind::Numeric(numeric) = &baseline.features[0].kind else {
            panic!("x is numeric");
        };
        let FeatureKind::Categorical(categorical) = &baseline.features[1].kind else {
            panic!("colour is categorical");
        };
        for row in 0..rows {
            if let FeatureSummary::Numeric(summary) = &mut window.features[0] {
                summary.observe(numeric, Some(f64::from(row) + shift));
            }
            let colour = if skew {
                "red"
            } else {
                ["red", "green", "blue"][row as usize % 3]
            };
            if let FeatureSummary::Categorical(summary) = &mut window.features[1] {
                summary.observe(categorical, Some(colour));
            }
            if let OutputSummary::Classes(summary) = &mut window.outputs[0] {
                summary.observe_class(if skew { 0 } else { row as usize % 3 });
            }
        }
        window
    }

    #[test]
    fn same_data_gives_no_drift_anywhere() {
        let baseline = baseline();
        let report = evaluate(
            &baseline,
            &window(&baseline, 1000, 0.0, false),
            100,
            &Thresholds::default(),
        )
        .unwrap();
        assert_eq!(report.status, DriftStatus::None);
        let x = &report.features[0];
        assert_eq!(
            (x.name.as_str(), x.rows, x.status),
            ("x", 1000, DriftStatus::None)
        );
        assert_eq!(x.psi, Some(0.0));
        assert_eq!(x.js, Some(0.0));
        assert_eq!(x.ks, Some(0.0));
        assert_eq!(x.wasserstein, Some(0.0));
        assert_eq!(x.chi_square, None);
        let colour = &report.features[1];
        assert_eq!(colour.status, DriftStatus::None);
        assert_eq!(colour.psi, Some(0.0));
        assert_eq!(colour.chi_square.map(|c| c.statistic), Some(0.0));
        assert_eq!((colour.ks, colour.wasserstein), (None, None));
        assert_eq!(report.outputs[0].status, DriftStatus::None);
        assert_eq!(report.outputs[0].js, Some(0.0));
    }

    #[test]
    fn shifted_sample_is_significant() {
        let baseline = baseline();
        let shifted = window(&baseline, 1000, 500.0, true);
        let report = evaluate(&baseline, &shifted, 100, &Thresholds::default()).unwrap();
        assert_eq!(report.status, DriftStatus::Significant);
        let x = &report.features[0];
        assert_eq!(x.status, DriftStatus::Significant);
        assert!(x.psi.unwrap() >= DEFAULT_PSI_SIGNIFICANT, "{x:?}");
        assert!(x.js.unwrap() >= DEFAULT_JS_SIGNIFICANT, "{x:?}");
        // Half of the window (500..1500) is above the training maximum 999.
        assert_eq!(x.above_max, 500);
        // The CDFs differ by .5 at the median boundary.
        assert!((x.ks.unwrap() - 0.5).abs() < 1e-12, "{x:?}");
        assert!(x.wasserstein.unwrap() > 1.0, "{x:?}");
        assert_eq!(report.features[1].status, DriftStatus::Significant);
        assert_eq!(report.outputs[0].status, DriftStatus::Significant);
    }

    #[test]
    fn below_min_rows_there_is_no_number() {
        let baseline = baseline();
        let mut small = window(&baseline, 50, 500.0, true);
        if let FeatureSummary::Numeric(summary) = &mut small.features[0] {
            summary.nulls += 500;
        }
        let report = evaluate(&baseline, &small, 100, &Thresholds::default()).unwrap();
        assert_eq!(report.status, DriftStatus::NotEnoughData);
        let x = &report.features[0];
        // Nulls are rows but not values: 550 rows, 50 values, still not enough.
        assert_eq!((x.rows, x.nulls), (550, 500));
        assert_eq!(x.status, DriftStatus::NotEnoughData);
        assert_eq!((x.psi, x.js, x.ks, x.wasserstein), (None, None, None, None));
        assert!(report.features[1].chi_square.is_none());
        assert_eq!(report.outputs[0].status, DriftStatus::NotEnoughData);
        // At exactly min_rows the numbers appear.
        let report = evaluate(&baseline, &small, 50, &Thresholds::default()).unwrap();
        assert_eq!(report.status, DriftStatus::Significant);
    }

    #[test]
    fn bands_follow_the_thresholds() {
        let thresholds = Thresholds::default();
        assert_eq!(
            thresholds.classify(Some(0.0999), Some(0.0)),
            DriftStatus::None
        );
        assert_eq!(
            thresholds.classify(Some(0.1), Some(0.0)),
            DriftStatus::Moderate
        );
        assert_eq!(
            thresholds.classify(Some(0.2499), Some(0.0)),
            DriftStatus::Moderate
        );
        assert_eq!(
            thresholds.classify(Some(0.25), Some(0.0)),
            DriftStatus::Significant
        );
        assert_eq!(
            thresholds.classify(Some(0.0), Some(0.0999)),
            DriftStatus::None
        );
        assert_eq!(
            thresholds.classify(Some(0.0), Some(0.1)),
            DriftStatus::Significant
        );
        assert_eq!(thresholds.classify(None, None), DriftStatus::NotEnoughData);
        let with_js_moderate = Thresholds {
            js_moderate: Some(0.05),
            ..thresholds
        };
        assert_eq!(
            with_js_moderate.classify(Some(0.0), Some(0.05)),
            DriftStatus::Moderate
        );
        // Shifting 0..1000 by 75 empties a quarter of the first decile bin into the last:
        // window counts (25, 100 × 8, 175), PSI ≈ 0.144, a moderate band when JS may not decide.
        let moderate_only = Thresholds {
            js_significant: 1.0,
            ..thresholds
        };
        let baseline = baseline();
        let report = evaluate(
            &baseline,
            &window(&baseline, 1000, 75.0, false),
            100,
            &moderate_only,
        )
        .unwrap();
        let x = &report.features[0];
        let psi = x.psi.unwrap();
        assert!((0.1..0.25).contains(&psi), "{x:?}");
        assert_eq!(x.status, DriftStatus::Moderate);
    }

    #[test]
    fn mismatched_window_is_refused() {
        let baseline = baseline();
        let mut wrong = window(&baseline, 10, 0.0, false);
        wrong.features.swap(0, 1);
        assert_eq!(
            evaluate(&baseline, &wrong, 1, &Thresholds::default()),
            Err(ReportError::Mismatch {
                name: "x".into(),
                source: MergeError::Kind {
                    expected: "numeric",
                    found: "categorical"
                },
            })
        );
        let mut wrong = window(&baseline, 10, 0.0, false);
        wrong.outputs[0] = OutputSummary::Classes(ClassSummary { counts: vec![0; 9] });
        assert_eq!(
            evaluate(&baseline, &wrong, 1, &Thresholds::default()),
            Err(ReportError::Mismatch {
                name: "label".into(),
                source: MergeError::Bins {
                    expected: 4,
                    found: 9
                },
            })
        );
        let mut wrong = window(&baseline, 10, 0.0, false);
        wrong
            .features
            .push(FeatureSummary::Categorical(CategoricalSummary {
                counts: vec![0],
                nulls: 0,
            }));
        assert_eq!(
            evaluate(&baseline, &wrong, 1, &Thresholds::default()),
            Err(ReportError::Length {
                what: "feature",
                expected: 2,
                found: 3
            })
        );
    }

    #[test]
    fn thresholds_and_report_round_trip_through_serde() {
        let partial: Thresholds = serde_json::from_str(r#"{"js_significant": 0.2}"#).unwrap();
        assert_eq!(
            partial,
            Thresholds {
                js_significant: 0.2,
                ..Thresholds::default()
            }
        );
        let baseline = baseline();
        let report = evaluate(
            &baseline,
            &window(&baseline, 300, 10.0, false),
            100,
            &Thresholds::default(),
        )
        .unwrap();
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<DriftReport>(&json).unwrap(), report);
        assert!(json.contains(r#""status":"#));
        assert_eq!(
            serde_json::to_string(&DriftStatus::NotEnoughData).unwrap(),
            r#""not_enough_data""#
        );
    }
}
