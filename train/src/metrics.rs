//! What each epoch reports: losses and task metrics on the validation split.

use serde::{Deserialize, Serialize};

/// Figures of one finished epoch, handed to the training callback and kept in the history.
///
/// Losses are the objective the optimizer minimizes, without the L2 penalty: mean softmax
/// cross-entropy for classification, mean squared error of the *standardized* target for
/// regression (so it is comparable across datasets; `rmse`/`mae` are in target units).
/// `train_*` figures are running values over the epoch's minibatches (as the weights moved),
/// which costs nothing extra; the others are computed on the validation split after the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: u32,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Classification only: share of validation rows whose most probable class is right.
    pub accuracy: Option<f64>,
    /// Classification only: F1 averaged over the classes present in the validation labels or
    /// predictions, each class counting equally (scikit-learn's `f1_score(average="macro")`).
    pub macro_f1: Option<f64>,
    /// Classification only: running accuracy over the epoch's minibatches.
    pub train_accuracy: Option<f64>,
    /// Regression only: validation root mean squared error, in target units.
    pub rmse: Option<f64>,
    /// Regression only: validation mean absolute error, in target units.
    pub mae: Option<f64>,
    /// Regression only: running RMSE over the epoch's minibatches, in target units.
    pub train_rmse: Option<f64>,
}

// === impl EpochMetrics ===

impl EpochMetrics {
    /// The figures as `(name, value)` pairs, present ones only, ready to log to a run:
    /// `train_loss`, `val_loss`, then `val_accuracy`, `val_macro_f1`, `train_accuracy` or
    /// `val_rmse`, `val_mae`, `train_rmse`.
    pub fn named_values(&self) -> Vec<(&'static str, f64)> {
        let optional = [
            ("val_accuracy", self.accuracy),
            ("val_macro_f1", self.macro_f1),
            ("train_accuracy", self.train_accuracy),
            ("val_rmse", self.rmse),
            ("val_mae", self.mae),
            ("train_rmse", self.train_rmse),
        ];
        let mut values = vec![("train_loss", self.train_loss), ("val_loss", self.val_loss)];
        values.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| value.map(|value| (name, value))),
        );
        values
    }
}

/// Macro-averaged F1 of `predicted` against `actual` over `classes` labels.
pub(crate) fn macro_f1(actual: &[u32], predicted: &[u32], classes: usize) -> f64 {
    let mut true_positives = vec![0u64; classes];
    let mut actual_counts = vec![0u64; classes];
    let mut predicted_counts = vec![0u64; classes];
    for (actual, predicted) in actual.iter().zip(predicted) {
        actual_counts[*actual as usize] += 1;
        predicted_counts[*predicted as usize] += 1;
        if actual == predicted {
            true_positives[*actual as usize] += 1;
        }
    }
    let mut sum = 0.0;
    let mut present = 0u32;
    for class in 0..classes {
        let denominator = actual_counts[class] + predicted_counts[class];
        if denominator == 0 {
            continue;
        }
        present += 1;
        sum += 2.0 * true_positives[class] as f64 / denominator as f64;
    }
    if present == 0 {
        0.0
    } else {
        sum / present as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_matches_a_hand_computation() {
        // Class 0: tp 1, 2 actual, 1 predicted → F1 2/3. Class 1: tp 1, 1 actual, 2 predicted
        // → 2/3. Class 2: absent from both, not averaged.
        let f1 = macro_f1(&[0, 0, 1], &[0, 1, 1], 3);
        assert!((f1 - 2.0 / 3.0).abs() < 1e-12, "{f1}");
        assert_eq!(macro_f1(&[1, 1], &[1, 1], 2), 1.0);
    }
}
