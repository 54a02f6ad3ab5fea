//! Shoal's built-in trainers: multinomial logistic regression and small MLPs for tabular CSV
//! data, trained on the hub's CPU and exported to ONNX that devices run with tract.
//!
//! # Layout
//! - [`dataset`] — [`Dataset::from_csv`] reads numeric features and a target ([`DataSpec`]),
//!   skipping and counting rows with nulls; the target decides the [`Task`].
//! - [`config`] — [`TrainConfig::from_params`] checks the `--param key=value` strings of a run
//!   for a [`Trainer`] (`logreg`, `mlp`).
//! - [`trainer`] — [`train`] runs seeded minibatch Adam or SGD and reports every epoch's
//!   [`EpochMetrics`] to a callback that can stop it.
//! - [`model`]: the [`TrainedModel`], with standardization folded into the weights,
//!   [`TrainedModel::to_onnx`] and [`TrainedModel::predict`].
//! - [`metrics`] — [`EpochMetrics`], one epoch's figures.
//! - [`job`]: a built-in job as Shoal runs it on the hub or a worker: [`JobSpec`] over a CSV
//!   file, progress lines and per-epoch metrics by the names runs log.
//! - `network` (private): the layers, forward and backward passes.
//! - `error` (private): [`TrainError`].
//!
//! # Example
//! ```
//! use std::collections::BTreeMap;
//! use std::ops::ControlFlow;
//! use shoal_train::{train, DataSpec, Dataset, TrainConfig, Trainer};
//!
//! let mut csv = String::from("x,label\n");
//! for i in 0..40 {
//!     let x = i as f32 / 4.0;
//!     csv.push_str(&format!("{x},{}\n", if x < 5.0 { "low" } else { "high" }));
//! }
//! let spec = DataSpec { target: "label".into(), features: None };
//! let dataset = Dataset::from_csv(csv.as_bytes(), &spec)?;
//! let params = BTreeMap::from([("epochs".to_string(), "30".to_string())]);
//! let config = TrainConfig::from_params(Trainer::LogisticRegression, &params)?;
//! let model = train(&dataset, &config, |metrics| {
//!     println!("epoch {} loss {:.3}", metrics.epoch, metrics.train_loss);
//!     ControlFlow::Continue(())
//! })?;
//! assert_eq!(model.classes, Some(vec!["high".to_string(), "low".to_string()]));
//! let onnx: Vec<u8> = model.to_onnx();
//! # assert!(!onnx.is_empty());
//! # Ok::<(), shoal_train::TrainError>(())
//! ```
//!
//! # Determinism
//! Training is single-threaded in a fixed order over f32 values: the same data, params and
//! seed give bit-identical weights, hence identical ONNX bytes, on a given platform (`exp`
//! and `ln` in the loss come from the platform's math library, so x86 and ARM hubs may differ
//! in the last bits).

pub mod config;
pub mod dataset;
mod error;
pub mod job;
pub mod metrics;
pub mod model;
mod network;
pub mod trainer;

pub use config::{ConfigError, Optimizer, TrainConfig, Trainer, ACCEPTED_PARAMS};
pub use dataset::{DataSpec, Dataset, DatasetError, Targets, Task, TaskKind};
pub use error::{TrainError, TrainResult};
pub use job::{JobError, JobSpec, Progress};
pub use metrics::EpochMetrics;
pub use model::TrainedModel;
pub use trainer::train;

/// Name of the exported model's input, `[N, features]` f32 in
/// [`TrainedModel::feature_names`] order.
pub const INPUT_NAME: &str = "x";
/// Name of the exported model's output: probabilities `[N, classes]` or values `[N, 1]`.
pub const OUTPUT_NAME: &str = "y";
