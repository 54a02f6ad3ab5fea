//! A trained model: the exported network, what it means, and how it was trained.
//!
//! # Folding
//! Training sees standardized features `(x − mean) / std`. Devices should not have to know
//! that, so the first layer absorbs it: `W'ᵢ = Wᵢ / stdᵢ` per input row and
//! `b' = b − Σᵢ meanᵢ / stdᵢ · Wᵢ`. For regression the last layer also absorbs the target's
//! de-standardization: `W' = W · std_y`, `b' = b · std_y + mean_y`. The folding is done in f64
//! and rounded once to f32.

use shoal_model::build::{Activation, Mlp};

use crate::config::{TrainConfig, Trainer};
use crate::dataset::{Dataset, Targets, TaskKind};
use crate::metrics::EpochMetrics;
use crate::network::{softmax_rows, Network, Workspace};

/// Rows predicted at once by [`TrainedModel::predict`].
const PREDICT_CHUNK_ROWS: usize = 1024;

/// Mean and standard deviation of each feature (and of a regression target) on the training
/// split.
#[derive(Debug, Clone)]
pub(crate) struct Standardization {
    pub(crate) feature_means: Vec<f64>,
    /// Population standard deviations; 1 for constant columns.
    pub(crate) feature_stds: Vec<f64>,
    /// 0 for classification.
    pub(crate) target_mean: f64,
    /// 1 for classification.
    pub(crate) target_std: f64,
}

/// What [`crate::train`] returns: the network to ship and the facts a manifest needs.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    pub trainer: Trainer,
    pub task: TaskKind,
    /// The exported network, standardization folded in: input `[N, features]` named
    /// [`crate::INPUT_NAME`], output [`crate::OUTPUT_NAME`] of class probabilities
    /// `[N, classes]` (softmax) or the predicted value `[N, 1]`.
    pub network: Mlp,
    /// Input columns in order.
    pub feature_names: Vec<String>,
    pub target_name: String,
    /// Class names in output order (sorted; numerically for numeric labels); `None` for
    /// regression.
    pub classes: Option<Vec<String>>,
    /// The configuration trained with.
    pub config: TrainConfig,
    /// Every epoch's figures, in order; the last is [`TrainedModel::metrics`].
    pub history: Vec<EpochMetrics>,
    pub rows_train: usize,
    pub rows_validation: usize,
    /// Rows left out because a feature or the target was null.
    pub rows_skipped: u64,
    /// Whether the epoch callback ended training before `config.epochs`.
    pub stopped_early: bool,
}

// === impl Standardization ===

impl Standardization {
    pub(crate) fn fit(dataset: &Dataset, train_order: &[usize], targets: &Targets) -> Self {
        let width = dataset.feature_names().len();
        let count = train_order.len() as f64;
        let mut sums = vec![0.0f64; width];
        for &row in train_order {
            for (sum, value) in sums.iter_mut().zip(dataset.row(row)) {
                *sum += *value as f64;
            }
        }
        let feature_means: Vec<f64> = sums.iter().map(|sum| sum / count).collect();
        let mut squares = vec![0.0f64; width];
        for &row in train_order {
            for ((square, value), mean) in
                squares.iter_mut().zip(dataset.row(row)).zip(&feature_means)
            {
                let centred = *value as f64 - mean;
                *square += centred * centred;
            }
        }
        let feature_stds = squares
            .iter()
            .map(|square| usable_std((square / count).sqrt()))
            .collect();
        let (target_mean, target_std) = match targets {
            Targets::Classes { .. } => (0.0, 1.0),
            Targets::Values(values) => {
                let mean = train_order.iter().map(|row| values[*row]).sum::<f64>() / count;
                let variance = train_order
                    .iter()
                    .map(|row| (values[*row] - mean).powi(2))
                    .sum::<f64>()
                    / count;
                (mean, usable_std(variance.sqrt()))
            }
        };
        Standardization {
            feature_means,
            feature_stds,
            target_mean,
            target_std,
        }
    }
}

/// A zero (constant column) or unusable deviation becomes 1, so the column is only centred.
fn usable_std(std: f64) -> f64 {
    if std.is_finite() && std > f64::MIN_POSITIVE {
        std
    } else {
        1.0
    }
}

// === impl TrainedModel ===

impl TrainedModel {
    #[allow(clippy::too_many_arguments)] // One private call site; a struct would only rename them.
    pub(crate) fn from_training(
        trained: Network,
        standardization: &Standardization,
        dataset: &Dataset,
        config: &TrainConfig,
        task: TaskKind,
        classes: Option<Vec<String>>,
        history: Vec<EpochMetrics>,
        stopped_early: bool,
        (rows_train, rows_validation): (usize, usize),
    ) -> TrainedModel {
        let folded = fold(trained, standardization, task);
        let last_activation = match task {
            TaskKind::Classification => Activation::Softmax,
            TaskKind::Regression => Activation::None,
        };
        TrainedModel {
            trainer: config.trainer,
            task,
            network: folded.to_mlp(last_activation),
            feature_names: dataset.feature_names().to_vec(),
            target_name: dataset.target_name().to_owned(),
            classes,
            config: config.clone(),
            history,
            rows_train,
            rows_validation,
            rows_skipped: dataset.rows_skipped(),
            stopped_early,
        }
    }

    /// The last epoch's figures.
    pub fn metrics(&self) -> &EpochMetrics {
        self.history
            .last()
            .expect("training runs at least one epoch")
    }

    /// Epochs completed (fewer than `config.epochs` when stopped early).
    pub fn epochs_run(&self) -> u32 {
        self.history.len() as u32
    }

    /// The ONNX file to register and ship (opset 13, symbolic batch dimension `N`).
    pub fn to_onnx(&self) -> Vec<u8> {
        self.network.to_onnx()
    }

    /// Predicts raw feature rows with the trainer's own forward pass over the exported
    /// weights (f32, like the devices): class probabilities or the predicted value per row.
    ///
    /// # Panics
    /// When a row's width is not the number of features.
    pub fn predict(&self, rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let width = self.feature_names.len();
        let network = Network::from_mlp(&self.network);
        let outputs = network.outputs();
        let mut workspace = Workspace::default();
        let mut flat = Vec::with_capacity(PREDICT_CHUNK_ROWS.min(rows.len()) * width);
        let mut predictions = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(PREDICT_CHUNK_ROWS) {
            flat.clear();
            for row in chunk {
                assert_eq!(
                    row.len(),
                    width,
                    "a row to predict has one value per feature ({width})"
                );
                flat.extend_from_slice(row);
            }
            network.forward(&flat, chunk.len(), &mut workspace);
            let mut values = workspace
                .outputs
                .last()
                .expect("the network has layers")
                .clone();
            if self.task == TaskKind::Classification {
                softmax_rows(&mut values, outputs);
            }
            predictions.extend(values.chunks_exact(outputs).map(<[f32]>::to_vec));
        }
        predictions
    }

    /// The most probable class of each row, for classification models; `None` for regression.
    ///
    /// # Panics
    /// As [`TrainedModel::predict`].
    pub fn predict_classes(&self, rows: &[Vec<f32>]) -> Option<Vec<String>> {
        let classes = self.classes.as_ref()?;
        Some(
            self.predict(rows)
                .iter()
                .map(|probabilities| classes[crate::network::argmax(probabilities)].clone())
                .collect(),
        )
    }
}

/// Folds standardization into the first layer and, for regression, the target's scale into
/// the last (see the module doc).
fn fold(mut network: Network, standardization: &Standardization, task: TaskKind) -> Network {
    if let Some(first) = network.layers.first_mut() {
        let outputs = first.outputs;
        let mut bias: Vec<f64> = first.bias.iter().map(|b| *b as f64).collect();
        for (input, (mean, std)) in standardization
            .feature_means
            .iter()
            .zip(&standardization.feature_stds)
            .enumerate()
        {
            let row = &mut first.weights[input * outputs..(input + 1) * outputs];
            for (weight, bias) in row.iter_mut().zip(bias.iter_mut()) {
                let scaled = *weight as f64 / std;
                *bias -= mean * scaled;
                *weight = scaled as f32;
            }
        }
        first.bias = bias.into_iter().map(|b| b as f32).collect();
    }
    if task == TaskKind::Regression {
        if let Some(last) = network.layers.last_mut() {
            let (mean, std) = (standardization.target_mean, standardization.target_std);
            last.weights
                .iter_mut()
                .for_each(|weight| *weight = (*weight as f64 * std) as f32);
            last.bias
                .iter_mut()
                .for_each(|bias| *bias = (*bias as f64 * std + mean) as f32);
        }
    }
    network
}
