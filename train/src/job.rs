//! A built-in training job as Shoal runs it, on the hub or on a remote worker alike: a
//! trainer name, a target and features over a CSV file, `--param` strings, log lines and each
//! epoch's figures under the metric names runs log.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use crate::{DataSpec, Dataset, EpochMetrics, TrainConfig, TrainError, TrainedModel, Trainer};

/// What a built-in job trains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// `mlp` or `logreg`.
    pub trainer: String,
    /// The column to predict.
    pub target: String,
    /// Feature columns; empty: every column but the target.
    pub features: Vec<String>,
}

/// Why a built-in job could not train.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The trainer, params or target are not usable; nothing was read.
    #[error("{0}")]
    Refused(TrainError),
    #[error("a built-in run needs --target, the column to predict")]
    NoTarget,
    #[error("cannot read dataset {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("dataset {label}: {source}")]
    Dataset {
        label: String,
        #[source]
        source: TrainError,
    },
    #[error("training failed: {0}")]
    Training(TrainError),
}

/// What a built-in job reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A line for the run's log.
    Line(String),
    /// An epoch's figures by their metric names (step = epoch), with the line that
    /// summarises them.
    Epoch {
        epoch: u32,
        metrics: Vec<(String, f64)>,
        line: String,
    },
}

impl JobSpec {
    /// Checks the trainer and params before anything is queued.
    ///
    /// # Errors
    /// [`JobError::Refused`] naming the trainer or the param, or [`JobError::NoTarget`].
    pub fn check(&self, params: &BTreeMap<String, String>) -> Result<TrainConfig, JobError> {
        let trainer: Trainer = self.trainer.parse().map_err(JobError::Refused)?;
        let config = TrainConfig::from_params(trainer, params).map_err(JobError::Refused)?;
        if self.target.is_empty() {
            return Err(JobError::NoTarget);
        }
        Ok(config)
    }

    /// Trains on the CSV at `csv`, on the calling (blocking) thread. `on_progress` sees every
    /// log line and epoch and returns `false` to stop after that epoch (the model so far is
    /// returned). `label` names the dataset in messages (`sensors@2`).
    ///
    /// # Errors
    /// What [`JobSpec::check`] refuses, an unreadable or unusable dataset, or a training
    /// failure (divergence, a single class).
    pub fn train_csv(
        &self,
        csv: &Path,
        params: &BTreeMap<String, String>,
        label: &str,
        mut on_progress: impl FnMut(Progress) -> bool,
    ) -> Result<TrainedModel, JobError> {
        let config = self.check(params)?;
        let spec = DataSpec {
            target: self.target.clone(),
            features: (!self.features.is_empty()).then(|| self.features.clone()),
        };
        let file = std::fs::File::open(csv).map_err(|source| JobError::Read {
            path: csv.display().to_string(),
            source,
        })?;
        let dataset = Dataset::from_csv(std::io::BufReader::new(file), &spec).map_err(|e| {
            JobError::Dataset {
                label: label.into(),
                source: e,
            }
        })?;
        on_progress(Progress::Line(format!(
            "[shoal] {} on {label}: {} rows ({} skipped for nulls), {} features, target '{}'",
            config.trainer,
            dataset.rows(),
            dataset.rows_skipped(),
            dataset.feature_names().len(),
            dataset.target_name()
        )));
        let epochs = config.epochs;
        crate::train(&dataset, &config, |metrics| {
            let named = metric_values(metrics);
            let summary: Vec<String> = named.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            let line = format!("epoch {}/{epochs}: {}", metrics.epoch, summary.join(", "));
            let go_on = on_progress(Progress::Epoch {
                epoch: metrics.epoch,
                metrics: named,
                line,
            });
            if go_on {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })
        .map_err(JobError::Training)
    }
}

/// The metric names a built-in run logs: validation figures by their plain names
/// (`accuracy`, `macro_f1`, `rmse`, `mae`), `val_loss`, and training figures as they are.
pub fn metric_values(metrics: &EpochMetrics) -> Vec<(String, f64)> {
    metrics
        .named_values()
        .into_iter()
        .map(|(name, value)| {
            let name = match name {
                "val_loss" => "val_loss",
                other => other.strip_prefix("val_").unwrap_or(other),
            };
            (name.to_string(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(trainer: &str, target: &str) -> JobSpec {
        JobSpec {
            trainer: trainer.into(),
            target: target.into(),
            features: Vec::new(),
        }
    }

    #[test]
    fn unknown_trainers_params_and_missing_targets_are_refused() {
        let none = BTreeMap::new();
        assert!(spec("forest", "y").check(&none).is_err());
        assert!(matches!(
            spec("mlp", "").check(&none),
            Err(JobError::NoTarget)
        ));
        let bad = BTreeMap::from([("depth".to_string(), "3".to_string())]);
        let error = spec("logreg", "y").check(&bad).unwrap_err().to_string();
        assert!(error.contains("depth"), "{error}");
    }

    #[test]
    fn trains_from_a_file_and_reports_every_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.csv");
        let mut csv = String::from("x,label\n");
        for i in 0..60 {
            let x = i as f32 / 6.0;
            csv.push_str(&format!("{x},{}\n", if x < 5.0 { "low" } else { "high" }));
        }
        std::fs::write(&path, csv).unwrap();
        let params = BTreeMap::from([("epochs".to_string(), "5".to_string())]);
        let mut seen = Vec::new();
        let model = spec("logreg", "label")
            .train_csv(&path, &params, "toy@1", |p| {
                seen.push(p);
                true
            })
            .unwrap();
        assert_eq!(model.classes.as_ref().map(Vec::len), Some(2));
        assert!(matches!(&seen[0], Progress::Line(l) if l.contains("toy@1")));
        let epochs: Vec<u32> = seen
            .iter()
            .filter_map(|p| match p {
                Progress::Epoch { epoch, metrics, .. } => {
                    assert!(metrics.iter().any(|(k, _)| k == "accuracy"), "{metrics:?}");
                    Some(*epoch)
                }
                Progress::Line(_) => None,
            })
            .collect();
        assert_eq!(epochs, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = spec("mlp", "y")
            .train_csv(
                Path::new("/nonexistent/data.csv"),
                &BTreeMap::new(),
                "d@1",
                |_| true,
            )
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/data.csv"), "{error}");
    }
}
