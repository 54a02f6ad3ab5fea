//! Conversions between this crate's types and their protobuf form on the wire: baselines in
//! the signed manifest (hub → device) and window summaries in telemetry (device → hub).
//!
//! Everything that arrives from the network is validated here, so a forged or damaged message
//! becomes a [`WireError`] naming the field, never a panic or a summary of the wrong shape.

use shoal_proto::device as wire;

use crate::baseline::{
    Baseline, CategoricalBaseline, ClassBaseline, FeatureBaseline, FeatureKind, NumericBaseline,
    OutputBaseline, OutputKind,
};
use crate::moments::Moments;
use crate::summary::{
    CategoricalSummary, ClassSummary, FeatureSummary, NumericSummary, OutputSummary, WindowSummary,
};

/// A wire message that does not describe a usable baseline or summary.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    #[error("{what} '{name}' has no kind")]
    MissingKind { what: &'static str, name: String },
    #[error("feature '{name}': {reason}")]
    Invalid { name: String, reason: String },
}

/// Where a feature is read from in the model's inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureBinding {
    /// The model input's name.
    pub input: String,
    /// The position along the input's last axis.
    pub column: u32,
}

// === baselines ===

pub fn moments_to_wire(m: &Moments) -> wire::Moments {
    wire::Moments {
        count: m.count(),
        mean: m.mean().unwrap_or(0.0),
        m2: m.m2(),
        min: m.min().unwrap_or(0.0),
        max: m.max().unwrap_or(0.0),
    }
}

pub fn moments_from_wire(m: Option<&wire::Moments>) -> Moments {
    match m {
        Some(m) => Moments::from_parts(m.count, m.mean, m.m2, m.min, m.max),
        None => Moments::new(),
    }
}

fn numeric_to_wire(b: &NumericBaseline) -> wire::NumericBaseline {
    wire::NumericBaseline {
        edges: b.edges.clone(),
        counts: b.counts.clone(),
        moments: Some(moments_to_wire(&b.moments)),
        nulls: b.nulls,
    }
}

fn numeric_from_wire(name: &str, b: &wire::NumericBaseline) -> Result<NumericBaseline, WireError> {
    let baseline = NumericBaseline {
        edges: b.edges.clone(),
        counts: b.counts.clone(),
        moments: moments_from_wire(b.moments.as_ref()),
        nulls: b.nulls,
    };
    baseline.validate().map_err(|e| WireError::Invalid {
        name: name.into(),
        reason: e.to_string(),
    })?;
    Ok(baseline)
}

/// The manifest's feature specs for a baseline whose features are bound to model inputs.
///
/// # Panics
/// If `bindings` and the baseline's features differ in length (a caller bug).
pub fn features_to_wire(
    baseline: &Baseline,
    bindings: &[FeatureBinding],
) -> Vec<wire::FeatureSpec> {
    assert_eq!(
        baseline.features.len(),
        bindings.len(),
        "one binding per feature"
    );
    baseline
        .features
        .iter()
        .zip(bindings)
        .map(|(feature, binding)| wire::FeatureSpec {
            name: feature.name.clone(),
            input: binding.input.clone(),
            column: binding.column,
            kind: Some(match &feature.kind {
                FeatureKind::Numeric(b) => wire::feature_spec::Kind::Numeric(numeric_to_wire(b)),
                FeatureKind::Categorical(b) => {
                    wire::feature_spec::Kind::Categorical(wire::CategoricalBaseline {
                        vocabulary: b.vocabulary.clone(),
                        counts: b.counts.clone(),
                        nulls: b.nulls,
                    })
                }
            }),
        })
        .collect()
}

pub fn outputs_to_wire(baseline: &Baseline) -> Vec<wire::OutputSpec> {
    baseline
        .outputs
        .iter()
        .map(|output| wire::OutputSpec {
            name: output.name.clone(),
            kind: Some(match &output.kind {
                OutputKind::Classes(b) => wire::output_spec::Kind::Classes(wire::ClassBaseline {
                    counts: b.counts.clone(),
                }),
                OutputKind::Numeric(b) => wire::output_spec::Kind::Numeric(numeric_to_wire(b)),
            }),
        })
        .collect()
}

/// A baseline and its input bindings as devices receive it (the blob a manifest refers to).
pub fn baseline_to_wire(baseline: &Baseline, bindings: &[FeatureBinding]) -> wire::DriftBaseline {
    wire::DriftBaseline {
        features: features_to_wire(baseline, bindings),
        outputs: outputs_to_wire(baseline),
        rows: baseline.rows,
    }
}

/// The baseline and input bindings a device received.
///
/// # Errors
/// A feature or output without a kind, or with a distribution that does not validate.
pub fn baseline_from_wire(
    manifest: &wire::DriftBaseline,
) -> Result<(Baseline, Vec<FeatureBinding>), WireError> {
    let mut features = Vec::with_capacity(manifest.features.len());
    let mut bindings = Vec::with_capacity(manifest.features.len());
    for spec in &manifest.features {
        let kind = match &spec.kind {
            Some(wire::feature_spec::Kind::Numeric(b)) => {
                FeatureKind::Numeric(numeric_from_wire(&spec.name, b)?)
            }
            Some(wire::feature_spec::Kind::Categorical(b)) => {
                let baseline = CategoricalBaseline {
                    vocabulary: b.vocabulary.clone(),
                    counts: b.counts.clone(),
                    nulls: b.nulls,
                };
                baseline.validate().map_err(|e| WireError::Invalid {
                    name: spec.name.clone(),
                    reason: e.to_string(),
                })?;
                FeatureKind::Categorical(baseline)
            }
            None => {
                return Err(WireError::MissingKind {
                    what: "feature",
                    name: spec.name.clone(),
                })
            }
        };
        features.push(FeatureBaseline {
            name: spec.name.clone(),
            kind,
        });
        bindings.push(FeatureBinding {
            input: spec.input.clone(),
            column: spec.column,
        });
    }
    let mut outputs = Vec::with_capacity(manifest.outputs.len());
    for spec in &manifest.outputs {
        let kind = match &spec.kind {
            Some(wire::output_spec::Kind::Classes(b)) => {
                let baseline = ClassBaseline {
                    counts: b.counts.clone(),
                };
                baseline.validate().map_err(|e| WireError::Invalid {
                    name: spec.name.clone(),
                    reason: e.to_string(),
                })?;
                OutputKind::Classes(baseline)
            }
            Some(wire::output_spec::Kind::Numeric(b)) => {
                OutputKind::Numeric(numeric_from_wire(&spec.name, b)?)
            }
            None => {
                return Err(WireError::MissingKind {
                    what: "output",
                    name: spec.name.clone(),
                })
            }
        };
        outputs.push(OutputBaseline {
            name: spec.name.clone(),
            kind,
        });
    }
    Ok((
        Baseline {
            rows: manifest.rows,
            features,
            outputs,
        },
        bindings,
    ))
}

// === summaries ===

fn numeric_summary_to_wire(s: &NumericSummary) -> wire::NumericCounts {
    wire::NumericCounts {
        bins: s.counts.clone(),
        below_min: s.below_min,
        above_max: s.above_max,
        nulls: s.nulls,
        nans: s.nans,
        moments: Some(moments_to_wire(&s.moments)),
    }
}

fn numeric_summary_from_wire(c: &wire::NumericCounts) -> NumericSummary {
    NumericSummary {
        counts: c.bins.clone(),
        below_min: c.below_min,
        above_max: c.above_max,
        nulls: c.nulls,
        nans: c.nans,
        moments: moments_from_wire(c.moments.as_ref()),
    }
}

/// A window's summaries as telemetry carries them, named after the baseline's features and
/// outputs.
pub fn summary_to_wire(
    summary: &WindowSummary,
    baseline: &Baseline,
) -> (Vec<wire::FeatureWindow>, Vec<wire::OutputWindow>) {
    let features = summary
        .features
        .iter()
        .zip(&baseline.features)
        .map(|(s, b)| wire::FeatureWindow {
            name: b.name.clone(),
            kind: Some(match s {
                FeatureSummary::Numeric(n) => {
                    wire::feature_window::Kind::Numeric(numeric_summary_to_wire(n))
                }
                FeatureSummary::Categorical(c) => {
                    wire::feature_window::Kind::Categorical(wire::CategoricalCounts {
                        counts: c.counts.clone(),
                        nulls: c.nulls,
                    })
                }
            }),
        })
        .collect();
    let outputs = summary
        .outputs
        .iter()
        .zip(&baseline.outputs)
        .map(|(s, b)| wire::OutputWindow {
            name: b.name.clone(),
            kind: Some(match s {
                OutputSummary::Classes(c) => {
                    wire::output_window::Kind::Classes(wire::ClassCounts {
                        counts: c.counts.clone(),
                    })
                }
                OutputSummary::Numeric(n) => {
                    wire::output_window::Kind::Numeric(numeric_summary_to_wire(n))
                }
            }),
        })
        .collect();
    (features, outputs)
}

/// A window's summaries from telemetry. Shapes are checked against the baseline when the hub
/// merges or evaluates them (`WindowSummary::merge`, `evaluate`), not here.
///
/// # Errors
/// A feature or output without a kind.
pub fn summary_from_wire(
    features: &[wire::FeatureWindow],
    outputs: &[wire::OutputWindow],
) -> Result<WindowSummary, WireError> {
    let mut summary = WindowSummary {
        features: Vec::with_capacity(features.len()),
        outputs: Vec::with_capacity(outputs.len()),
    };
    for f in features {
        summary.features.push(match &f.kind {
            Some(wire::feature_window::Kind::Numeric(n)) => {
                FeatureSummary::Numeric(numeric_summary_from_wire(n))
            }
            Some(wire::feature_window::Kind::Categorical(c)) => {
                FeatureSummary::Categorical(CategoricalSummary {
                    counts: c.counts.clone(),
                    nulls: c.nulls,
                })
            }
            None => {
                return Err(WireError::MissingKind {
                    what: "feature window",
                    name: f.name.clone(),
                })
            }
        });
    }
    for o in outputs {
        summary.outputs.push(match &o.kind {
            Some(wire::output_window::Kind::Classes(c)) => OutputSummary::Classes(ClassSummary {
                counts: c.counts.clone(),
            }),
            Some(wire::output_window::Kind::Numeric(n)) => {
                OutputSummary::Numeric(numeric_summary_from_wire(n))
            }
            None => {
                return Err(WireError::MissingKind {
                    what: "output window",
                    name: o.name.clone(),
                })
            }
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline() -> Baseline {
        let temp = NumericBaseline::from_values((1..=100).map(f64::from).collect(), 2);
        let room = CategoricalBaseline::from_value_counts(
            [("a".to_string(), 5u64), ("b".to_string(), 3)],
            1,
            10,
        );
        Baseline {
            rows: 102,
            features: vec![
                FeatureBaseline {
                    name: "temp".into(),
                    kind: FeatureKind::Numeric(temp),
                },
                FeatureBaseline {
                    name: "room".into(),
                    kind: FeatureKind::Categorical(room),
                },
            ],
            outputs: vec![OutputBaseline {
                name: "y".into(),
                kind: OutputKind::Classes(ClassBaseline::from_predictions(2, [0, 1, 1])),
            }],
        }
    }

    #[test]
    fn baselines_round_trip_through_the_wire() {
        let baseline = baseline();
        let bindings = vec![
            FeatureBinding {
                input: "x".into(),
                column: 0,
            },
            FeatureBinding {
                input: "x".into(),
                column: 1,
            },
        ];
        let manifest = baseline_to_wire(&baseline, &bindings);
        let (back, back_bindings) = baseline_from_wire(&manifest).unwrap();
        assert_eq!(back, baseline);
        assert_eq!(back_bindings, bindings);
    }

    #[test]
    fn summaries_round_trip_through_telemetry() {
        let baseline = baseline();
        let mut summary = WindowSummary::new(&baseline);
        if let (FeatureSummary::Numeric(s), FeatureKind::Numeric(b)) =
            (&mut summary.features[0], &baseline.features[0].kind)
        {
            for v in [0.5, 50.0, 150.0] {
                s.observe(b, Some(v));
            }
            s.observe(b, None);
        }
        let (features, outputs) = summary_to_wire(&summary, &baseline);
        assert_eq!(features[0].name, "temp");
        let back = summary_from_wire(&features, &outputs).unwrap();
        assert_eq!(back, summary);
    }

    #[test]
    fn damaged_baselines_are_refused_by_name() {
        let manifest = wire::DriftBaseline {
            features: vec![wire::FeatureSpec {
                name: "temp".into(),
                kind: Some(wire::feature_spec::Kind::Numeric(wire::NumericBaseline {
                    edges: vec![2.0, 1.0],
                    counts: vec![1, 1, 1],
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        };
        let error = baseline_from_wire(&manifest).unwrap_err();
        assert!(
            matches!(&error, WireError::Invalid { name, .. } if name == "temp"),
            "{error}"
        );
        let no_kind = wire::DriftBaseline {
            features: vec![wire::FeatureSpec {
                name: "t".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            baseline_from_wire(&no_kind).unwrap_err().to_string(),
            "feature 't' has no kind"
        );
    }
}
