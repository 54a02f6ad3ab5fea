//! Trainer choice and hyperparameters, parsed from the `--param key=value` strings a user types.
//!
//! Every value is checked here, so a run fails before any data is read rather than after an
//! hour of training; every error names the param, its value and the params that exist.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::dataset::Task;
use crate::error::TrainError;

/// Every param [`TrainConfig::from_params`] accepts, in the order errors list them.
pub const ACCEPTED_PARAMS: [&str; 9] = [
    "hidden",
    "epochs",
    "lr",
    "batch_size",
    "l2",
    "seed",
    "validation_fraction",
    "task",
    "optimizer",
];

pub const DEFAULT_EPOCHS: u32 = 20;
pub const DEFAULT_LEARNING_RATE: f32 = 0.01;
pub const DEFAULT_BATCH_SIZE: usize = 64;
pub const DEFAULT_VALIDATION_FRACTION: f64 = 0.2;
/// One hidden layer of 32 units: enough for the small tabular problems devices classify, and
/// still a few kilobytes of ONNX.
pub const DEFAULT_HIDDEN: [usize; 1] = [32];
/// Bounds that catch typos (`epochs=10000000`, `hidden=100000`) before they become a run that
/// never ends or a model no device can hold.
pub const MAX_EPOCHS: u32 = 100_000;
pub const MAX_HIDDEN_UNITS: usize = 4096;

/// Which built-in model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trainer {
    /// Multinomial logistic regression (linear regression for a regression target): one dense
    /// layer. Named `logreg`.
    LogisticRegression,
    /// Dense layers with ReLU between them. Named `mlp`.
    Mlp,
}

/// How gradients become parameter updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// Adam (β₁ 0.9, β₂ 0.999, ε 1e-8): forgiving of the learning rate, the default.
    Adam,
    /// Plain minibatch gradient descent, no momentum.
    Sgd,
}

/// A checked training configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub trainer: Trainer,
    /// Hidden layer widths; empty for logistic regression.
    pub hidden: Vec<usize>,
    /// Passes over the training split.
    pub epochs: u32,
    pub learning_rate: f32,
    /// Rows per gradient step (the last step of an epoch may be smaller).
    pub batch_size: usize,
    /// L2 penalty `l2/2 · Σ w²` on weights (not biases).
    pub l2: f32,
    /// Seeds initialization, the train/validation split and the per-epoch shuffles.
    pub seed: u64,
    /// Share of rows held out to compute validation metrics, in (0, 1).
    pub validation_fraction: f64,
    pub task: Task,
    pub optimizer: Optimizer,
}

/// A trainer name or param that is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown trainer {name:?}; the trainers are logreg and mlp")]
    UnknownTrainer { name: String },
    #[error("unknown param {name:?}; accepted params are: {}", ACCEPTED_PARAMS.join(", "))]
    UnknownParam { name: String },
    #[error(
        "param {name}={value:?} is invalid: expected {expected}; accepted params are: {}",
        ACCEPTED_PARAMS.join(", ")
    )]
    BadValue {
        name: String,
        value: String,
        /// What the param takes, in words.
        expected: &'static str,
    },
    #[error(
        "param {name}={value:?} does not apply to the {trainer} trainer; accepted params are: {}",
        ACCEPTED_PARAMS.join(", ")
    )]
    NotForTrainer {
        name: String,
        value: String,
        trainer: Trainer,
    },
}

// === impl Trainer ===

impl Trainer {
    pub fn name(self) -> &'static str {
        match self {
            Trainer::LogisticRegression => "logreg",
            Trainer::Mlp => "mlp",
        }
    }
}

impl fmt::Display for Trainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Trainer {
    type Err = TrainError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "logreg" => Ok(Trainer::LogisticRegression),
            "mlp" => Ok(Trainer::Mlp),
            other => Err(ConfigError::UnknownTrainer { name: other.into() }.into()),
        }
    }
}

// === impl TrainConfig ===

impl TrainConfig {
    /// The defaults for `trainer`, which `from_params` starts from.
    pub fn defaults(trainer: Trainer) -> TrainConfig {
        TrainConfig {
            trainer,
            hidden: match trainer {
                Trainer::LogisticRegression => Vec::new(),
                Trainer::Mlp => DEFAULT_HIDDEN.to_vec(),
            },
            epochs: DEFAULT_EPOCHS,
            learning_rate: DEFAULT_LEARNING_RATE,
            batch_size: DEFAULT_BATCH_SIZE,
            l2: 0.0,
            seed: 0,
            validation_fraction: DEFAULT_VALIDATION_FRACTION,
            task: Task::Auto,
            optimizer: Optimizer::Adam,
        }
    }

    /// Applies user params (`epochs` → `"30"`) over the defaults of `trainer`.
    ///
    /// # Errors
    /// [`TrainError::Config`] with [`ConfigError::UnknownParam`], [`ConfigError::BadValue`] or
    /// [`ConfigError::NotForTrainer`] for the first param (in key order) that is wrong.
    pub fn from_params(
        trainer: Trainer,
        params: &BTreeMap<String, String>,
    ) -> Result<TrainConfig, TrainError> {
        Ok(TrainConfig::apply_params(trainer, params)?)
    }

    fn apply_params(
        trainer: Trainer,
        params: &BTreeMap<String, String>,
    ) -> Result<TrainConfig, ConfigError> {
        let mut config = TrainConfig::defaults(trainer);
        for (name, value) in params {
            let bad = |expected: &'static str| ConfigError::BadValue {
                name: name.clone(),
                value: value.clone(),
                expected,
            };
            let trimmed = value.trim();
            match name.as_str() {
                "hidden" => {
                    if trainer != Trainer::Mlp {
                        return Err(ConfigError::NotForTrainer {
                            name: name.clone(),
                            value: value.clone(),
                            trainer,
                        });
                    }
                    const EXPECTED: &str =
                        "one or two layer widths from 1 to 4096, comma-separated (\"32\" or \"32,16\")";
                    let widths: Vec<usize> = trimmed
                        .split(',')
                        .map(|width| width.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| bad(EXPECTED))?;
                    let valid_width = |width: &usize| (1..=MAX_HIDDEN_UNITS).contains(width);
                    if !(1..=2).contains(&widths.len()) || !widths.iter().all(valid_width) {
                        return Err(bad(EXPECTED));
                    }
                    config.hidden = widths;
                }
                "epochs" => {
                    config.epochs = trimmed
                        .parse()
                        .ok()
                        .filter(|epochs| (1..=MAX_EPOCHS).contains(epochs))
                        .ok_or_else(|| bad("an integer from 1 to 100000"))?;
                }
                "lr" => {
                    config.learning_rate = trimmed
                        .parse::<f32>()
                        .ok()
                        .filter(|lr| lr.is_finite() && *lr > 0.0 && *lr <= 10.0)
                        .ok_or_else(|| bad("a number above 0 and at most 10"))?;
                }
                "batch_size" => {
                    config.batch_size = trimmed
                        .parse()
                        .ok()
                        .filter(|size| *size >= 1)
                        .ok_or_else(|| bad("a positive integer"))?;
                }
                "l2" => {
                    config.l2 = trimmed
                        .parse::<f32>()
                        .ok()
                        .filter(|l2| l2.is_finite() && *l2 >= 0.0)
                        .ok_or_else(|| bad("a non-negative number"))?;
                }
                "seed" => {
                    config.seed = trimmed.parse().map_err(|_| bad("a non-negative integer"))?;
                }
                "validation_fraction" => {
                    config.validation_fraction = trimmed
                        .parse::<f64>()
                        .ok()
                        .filter(|fraction| *fraction > 0.0 && *fraction < 1.0)
                        .ok_or_else(|| bad("a number strictly between 0 and 1"))?;
                }
                "task" => {
                    config.task = trimmed
                        .parse()
                        .map_err(|_| bad("auto, classification or regression"))?;
                }
                "optimizer" => {
                    config.optimizer = match trimmed {
                        "adam" => Optimizer::Adam,
                        "sgd" => Optimizer::Sgd,
                        _ => return Err(bad("adam or sgd")),
                    };
                }
                _ => return Err(ConfigError::UnknownParam { name: name.clone() }),
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_overrides() {
        let config = TrainConfig::from_params(Trainer::Mlp, &params(&[])).unwrap();
        assert_eq!(config, TrainConfig::defaults(Trainer::Mlp));
        assert_eq!(config.hidden, vec![32]);
        let config = TrainConfig::from_params(
            Trainer::Mlp,
            &params(&[
                ("hidden", "32, 16"),
                ("epochs", "5"),
                ("lr", "0.001"),
                ("batch_size", "128"),
                ("l2", "1e-4"),
                ("seed", "42"),
                ("validation_fraction", "0.25"),
                ("task", "regression"),
                ("optimizer", "sgd"),
            ]),
        )
        .unwrap();
        assert_eq!(config.hidden, vec![32, 16]);
        assert_eq!(config.epochs, 5);
        assert_eq!(config.learning_rate, 0.001);
        assert_eq!(config.batch_size, 128);
        assert_eq!(config.l2, 1e-4);
        assert_eq!(config.seed, 42);
        assert_eq!(config.validation_fraction, 0.25);
        assert_eq!(config.task, Task::Regression);
        assert_eq!(config.optimizer, Optimizer::Sgd);
        assert_eq!(
            "logreg".parse::<Trainer>().unwrap(),
            Trainer::LogisticRegression
        );
        assert_eq!(
            "svm".parse::<Trainer>().unwrap_err().to_string(),
            "unknown trainer \"svm\"; the trainers are logreg and mlp"
        );
    }
}
