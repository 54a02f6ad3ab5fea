//! The training loop: split, standardize, minibatch updates, per-epoch validation.
//!
//! # Procedure
//! 1. The target is resolved for the configured [`Task`](crate::Task).
//! 2. Rows are shuffled with the seed and the first `round(rows × validation_fraction)` (at
//!    least one, and leaving at least one) become the validation split.
//! 3. Features are standardized with the training split's mean and population standard
//!    deviation (a constant column gets 1, so it passes through centred); for regression the
//!    target is standardized the same way, so one learning rate suits targets of any scale.
//! 4. Each epoch visits the training rows in a fresh seeded order, in minibatches, and then
//!    evaluates the validation split; the callback sees the figures and may stop training.
//! 5. The standardization is folded into the exported weights (see
//!    [`TrainedModel`]), so devices feed raw feature values.
//!
//! Three independent generators derive from the seed (initialization, split, epoch order), so
//! changing e.g. the epoch count does not change the split.

use std::ops::ControlFlow;

use shoal_model::build::SplitMix64;

use crate::config::TrainConfig;
use crate::dataset::{Dataset, Targets, TaskKind};
use crate::error::{TrainError, TrainResult};
use crate::metrics::{macro_f1, EpochMetrics};
use crate::model::{Standardization, TrainedModel};
use crate::network::{argmax, softmax_rows, Gradients, Network, OptimizerState, Workspace};

/// Rows evaluated at once on the validation split: large enough to amortize the loop, small
/// enough to stay in cache.
const EVALUATION_CHUNK_ROWS: usize = 1024;

/// Salts that make the three generators independent of each other.
const INIT_STREAM: u64 = 0x5348_4f41_4c5f_494e;
const SPLIT_STREAM: u64 = 0x5348_4f41_4c5f_5350;
const ORDER_STREAM: u64 = 0x5348_4f41_4c5f_4f52;

/// The training split and the validation split, standardized, with their targets.
struct Splits {
    width: usize,
    train_features: Vec<f32>,
    train_targets: SplitTargets,
    validation_features: Vec<f32>,
    validation_targets: SplitTargets,
}

/// Targets of one split in the form the loss wants.
enum SplitTargets {
    Labels(Vec<u32>),
    /// Standardized values, and the raw ones for metrics in target units.
    Values {
        standardized: Vec<f32>,
        raw: Vec<f64>,
    },
}

/// Trains `config.trainer` on `dataset`, calling `on_epoch` after every epoch.
///
/// `on_epoch` returning [`ControlFlow::Break`] ends training after that epoch; the model is
/// still returned, with [`TrainedModel::stopped_early`] set.
///
/// # Errors
/// [`TrainError::Dataset`] when the target does not fit the task, [`TrainError::TooFewRows`]
/// below two usable rows, [`TrainError::SingleClass`] for a one-class target, and
/// [`TrainError::Diverged`] when the loss stops being finite.
pub fn train(
    dataset: &Dataset,
    config: &TrainConfig,
    mut on_epoch: impl FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> TrainResult<TrainedModel> {
    const MINIMUM_ROWS: usize = 2;
    let rows = dataset.rows();
    if rows < MINIMUM_ROWS {
        return Err(TrainError::TooFewRows {
            rows,
            skipped: dataset.rows_skipped(),
            needed: MINIMUM_ROWS,
        });
    }
    let (task, targets) = dataset.targets(config.task)?;
    let classes = match &targets {
        Targets::Classes { names, .. } if names.len() < 2 => {
            return Err(TrainError::SingleClass {
                column: dataset.target_name().to_owned(),
                class: names.first().cloned().unwrap_or_default(),
            });
        }
        Targets::Classes { names, .. } => Some(names.clone()),
        Targets::Values(_) => None,
    };

    let mut split_rng = SplitMix64(config.seed ^ SPLIT_STREAM);
    let mut order: Vec<usize> = (0..rows).collect();
    shuffle(&mut order, &mut split_rng);
    let validation_rows =
        ((rows as f64 * config.validation_fraction).round() as usize).clamp(1, rows - 1);
    let (validation_order, train_order) = order.split_at(validation_rows);
    let standardization = Standardization::fit(dataset, train_order, &targets);
    let splits = Splits::build(
        dataset,
        &targets,
        &standardization,
        train_order,
        validation_order,
    );

    let outputs = classes.as_ref().map_or(1, Vec::len);
    let mut sizes = vec![dataset.feature_names().len()];
    sizes.extend(&config.hidden);
    sizes.push(outputs);
    let mut init_rng = SplitMix64(config.seed ^ INIT_STREAM);
    let mut network = Network::seeded(&sizes, &mut init_rng);

    let mut order_rng = SplitMix64(config.seed ^ ORDER_STREAM);
    let mut state = OptimizerState::new(config.optimizer, &network);
    let mut gradients = Gradients::zeros_like(&network);
    let mut workspace = Workspace::default();
    let train_rows = train_order.len();
    let batch_size = config.batch_size.min(train_rows);
    let width = splits.width;
    let mut epoch_order: Vec<usize> = (0..train_rows).collect();
    let mut batch_features = Vec::with_capacity(batch_size * width);
    let mut batch_outputs = Vec::new();
    let mut history = Vec::new();
    let mut stopped_early = false;

    for epoch in 1..=config.epochs {
        shuffle(&mut epoch_order, &mut order_rng);
        let mut loss_sum = 0.0f64;
        let mut correct = 0u64;
        for batch in epoch_order.chunks(batch_size) {
            let batch_rows = batch.len();
            batch_features.clear();
            for &row in batch {
                batch_features.extend_from_slice(&splits.train_features[row * width..][..width]);
            }
            network.forward(&batch_features, batch_rows, &mut workspace);
            // The raw outputs are copied out (softmax turns the copy into batch_outputs in
            // place) because the workspace is borrowed again for the delta buffer.
            batch_outputs.clear();
            batch_outputs
                .extend_from_slice(workspace.outputs.last().expect("the network has layers"));
            let delta = network.output_delta_mut(&mut workspace, batch_rows);
            let scale = 1.0 / batch_rows as f32;
            match &splits.train_targets {
                SplitTargets::Labels(labels) => {
                    for (position, &row) in batch.iter().enumerate() {
                        let logits_row = &batch_outputs[position * outputs..][..outputs];
                        let label = labels[row] as usize;
                        loss_sum += cross_entropy(logits_row, label);
                        if argmax(logits_row) == label {
                            correct += 1;
                        }
                    }
                    softmax_rows(&mut batch_outputs, outputs);
                    for (position, &row) in batch.iter().enumerate() {
                        let label = labels[row] as usize;
                        let delta_row = &mut delta[position * outputs..][..outputs];
                        let probability_row = &batch_outputs[position * outputs..][..outputs];
                        for (class, (d, p)) in delta_row.iter_mut().zip(probability_row).enumerate()
                        {
                            let indicator = if class == label { 1.0 } else { 0.0 };
                            *d = (p - indicator) * scale;
                        }
                    }
                }
                SplitTargets::Values { standardized, .. } => {
                    for (position, &row) in batch.iter().enumerate() {
                        let difference = batch_outputs[position] - standardized[row];
                        loss_sum += (difference as f64) * (difference as f64);
                        delta[position] = 2.0 * difference * scale;
                    }
                }
            }
            network.backward(&batch_features, batch_rows, &mut workspace, &mut gradients);
            network.step(&gradients, &mut state, config.learning_rate, config.l2);
        }
        let train_loss = loss_sum / train_rows as f64;
        if !train_loss.is_finite() {
            return Err(TrainError::Diverged {
                epoch,
                learning_rate: config.learning_rate,
            });
        }
        let mut metrics = evaluate(&network, &splits, &standardization, outputs, epoch);
        metrics.train_loss = train_loss;
        match task {
            TaskKind::Classification => {
                metrics.train_accuracy = Some(correct as f64 / train_rows as f64);
            }
            TaskKind::Regression => {
                metrics.train_rmse = Some(train_loss.sqrt() * standardization.target_std);
            }
        }
        history.push(metrics);
        let latest = history.last().expect("an epoch was just pushed");
        if on_epoch(latest).is_break() {
            stopped_early = epoch < config.epochs;
            break;
        }
    }

    Ok(TrainedModel::from_training(
        network,
        &standardization,
        dataset,
        config,
        task,
        classes,
        history,
        stopped_early,
        (train_rows, validation_rows),
    ))
}

/// Validation figures of `network` as it stands; `train_*` fields are left for the caller.
fn evaluate(
    network: &Network,
    splits: &Splits,
    standardization: &Standardization,
    outputs: usize,
    epoch: u32,
) -> EpochMetrics {
    let width = splits.width;
    let rows = splits.validation_features.len() / width;
    let mut workspace = Workspace::default();
    let mut loss_sum = 0.0f64;
    let mut predicted_labels = Vec::new();
    let mut squared_error_sum = 0.0f64;
    let mut absolute_error_sum = 0.0f64;
    for start in (0..rows).step_by(EVALUATION_CHUNK_ROWS) {
        let chunk_rows = EVALUATION_CHUNK_ROWS.min(rows - start);
        let chunk = &splits.validation_features[start * width..(start + chunk_rows) * width];
        network.forward(chunk, chunk_rows, &mut workspace);
        let raw = workspace.outputs.last().expect("the network has layers");
        match &splits.validation_targets {
            SplitTargets::Labels(labels) => {
                for (offset, logits_row) in raw.chunks_exact(outputs).enumerate() {
                    loss_sum += cross_entropy(logits_row, labels[start + offset] as usize);
                    predicted_labels.push(argmax(logits_row) as u32);
                }
            }
            SplitTargets::Values {
                standardized,
                raw: raw_targets,
            } => {
                for (offset, value) in raw.iter().enumerate() {
                    let difference = (value - standardized[start + offset]) as f64;
                    loss_sum += difference * difference;
                    let prediction =
                        standardization.target_mean + *value as f64 * standardization.target_std;
                    let error = prediction - raw_targets[start + offset];
                    squared_error_sum += error * error;
                    absolute_error_sum += error.abs();
                }
            }
        }
    }
    let count = rows as f64;
    let mut metrics = EpochMetrics {
        epoch,
        train_loss: 0.0,
        val_loss: loss_sum / count,
        accuracy: None,
        macro_f1: None,
        train_accuracy: None,
        rmse: None,
        mae: None,
        train_rmse: None,
    };
    match &splits.validation_targets {
        SplitTargets::Labels(labels) => {
            let correct = labels
                .iter()
                .zip(&predicted_labels)
                .filter(|(actual, predicted)| actual == predicted)
                .count();
            metrics.accuracy = Some(correct as f64 / count);
            metrics.macro_f1 = Some(macro_f1(labels, &predicted_labels, outputs));
        }
        SplitTargets::Values { .. } => {
            metrics.rmse = Some((squared_error_sum / count).sqrt());
            metrics.mae = Some(absolute_error_sum / count);
        }
    }
    metrics
}

/// `-ln softmax(logits)[label]`, computed stably from the logits.
fn cross_entropy(logits: &[f32], label: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|z| (*z as f64 - max).exp()).sum();
    sum.ln() + max - logits[label] as f64
}

/// Fisher–Yates with the crate's seeded generator.
fn shuffle(values: &mut [usize], rng: &mut SplitMix64) {
    for index in (1..values.len()).rev() {
        let other = (rng.next_u64() % (index as u64 + 1)) as usize;
        values.swap(index, other);
    }
}

// === impl Splits ===

impl Splits {
    fn build(
        dataset: &Dataset,
        targets: &Targets,
        standardization: &Standardization,
        train_order: &[usize],
        validation_order: &[usize],
    ) -> Splits {
        let width = dataset.feature_names().len();
        let features = |order: &[usize]| {
            let mut standardized = Vec::with_capacity(order.len() * width);
            for &row in order {
                let values = dataset.row(row);
                for (column, value) in values.iter().enumerate() {
                    standardized.push(
                        ((*value as f64 - standardization.feature_means[column])
                            / standardization.feature_stds[column]) as f32,
                    );
                }
            }
            standardized
        };
        let split_targets = |order: &[usize]| match targets {
            Targets::Classes { labels, .. } => {
                SplitTargets::Labels(order.iter().map(|row| labels[*row]).collect())
            }
            Targets::Values(values) => SplitTargets::Values {
                standardized: order
                    .iter()
                    .map(|row| {
                        ((values[*row] - standardization.target_mean) / standardization.target_std)
                            as f32
                    })
                    .collect(),
                raw: order.iter().map(|row| values[*row]).collect(),
            },
        };
        Splits {
            width,
            train_features: features(train_order),
            train_targets: split_targets(train_order),
            validation_features: features(validation_order),
            validation_targets: split_targets(validation_order),
        }
    }
}
