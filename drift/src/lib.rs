//! Data drift for Shoal: training baselines, cheap mergeable summaries that devices keep over
//! the baseline's bins, and the distances the hub computes from merged summaries.
//!
//! Devices never ship raw inputs. At registration the hub profiles the training CSV
//! ([`profile_csv`]) and keeps its [`Baseline`]: decile edges per numeric feature, a top-N
//! vocabulary per categorical one. The edges travel in the signed manifest; each device counts
//! its inputs over them in a [`WindowSummary`] (no allocation per observation) and ships the
//! counts. The hub adds windows exactly ([`WindowSummary::merge`]) and [`evaluate`]s them:
//! PSI, Jensen–Shannon, KS and Wasserstein per numeric feature, PSI, Jensen–Shannon and
//! chi-square per categorical feature and per classifier output, and a [`DriftStatus`] read
//! from PSI and JS bands, or "not enough data" below a minimum number of values.
//!
//! The crate is pure computation: no async runtime, no network, no file system. Its only
//! dependency on the rest of Shoal is the protobuf messages that carry its types ([`wire`]).
//!
//! # Layout
//! - [`moments`]: count, mean, variance, min and max that merge exactly.
//! - [`baseline`]: the training distribution per feature and output, and the decile rule.
//! - [`profile`]: CSV profiling with type inference, the source of baselines.
//! - [`csv_lines`]: counting a CSV's records (quoted newlines included), for profiles and
//!   trainers alike.
//! - [`summary`]: per-window counts over the baseline's bins, observed on devices, merged on
//!   the hub.
//! - [`metrics`]: PSI, Jensen–Shannon, KS, Wasserstein and chi-square over count vectors.
//! - [`report`]: drift status bands and the evaluation of a window against its baseline.
//! - [`wire`]: conversions to and from the protobuf forms in manifests and telemetry.

pub mod baseline;
pub mod csv_lines;
pub mod metrics;
pub mod moments;
pub mod profile;
pub mod report;
pub mod summary;
pub mod wire;

pub use baseline::{
    decile_edges, Baseline, BaselineError, CategoricalBaseline, ClassBaseline, DistributionError,
    FeatureBaseline, FeatureKind, NumericBaseline, OutputBaseline, OutputKind,
};
pub use metrics::{
    chi_square, js_distance, js_divergence, ks_statistic, psi, wasserstein_normalized, ChiSquare,
    PSI_PSEUDOCOUNT,
};
pub use moments::Moments;
pub use profile::{profile_csv, ColumnProfile, Profile, ProfileError, ProfileOptions};
pub use report::{evaluate, DriftReport, DriftStatus, FeatureDrift, ReportError, Thresholds};
pub use summary::{
    CategoricalSummary, ClassSummary, FeatureSummary, MergeError, NumericSummary, OutputSummary,
    WindowSummary,
};
