//! Mergeable running moments: count, mean, spread, minimum and maximum.
//!
//! A device folds every input value into a [`Moments`] with [`Moments::observe`] (Welford's
//! update: no allocation, a handful of flops), and the hub adds the moments of many windows
//! with [`Moments::merge`] (the pairwise formula of Chan, Golub and LeVeque), which gives the
//! same result as observing all values in one place, up to floating-point rounding.

use serde::{Deserialize, Serialize};

/// Count, mean, sum of squared deviations, minimum and maximum of a stream of finite values.
///
/// The fields are private so that they stay consistent with each other: an empty `Moments`
/// (count 0) stores zeros everywhere, and its accessors answer `None`.
/// [`Moments::from_parts`] rebuilds one from its wire form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Number of values observed; zero means every other field is meaningless (and zero).
    count: u64,
    /// Running mean, updated incrementally so that it never overflows like a plain sum would.
    mean: f64,
    /// Sum of squared deviations from the mean (`Σ (x - mean)²`), the quantity that merges
    /// exactly; the variance is derived from it.
    m2: f64,
    /// Smallest value observed; drift counts values below it as out of range.
    min: f64,
    /// Largest value observed; drift counts values above it as out of range.
    max: f64,
}

// === impl Moments ===

impl Moments {
    /// Returns empty moments: no values observed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds moments from their stored parts, such as a protobuf message.
    ///
    /// A `count` of zero gives empty moments whatever the other parts say. A negative `m2`,
    /// which only rounding or a forged message can produce, is clamped to zero.
    pub fn from_parts(count: u64, mean: f64, m2: f64, min: f64, max: f64) -> Self {
        if count == 0 {
            return Self::new();
        }
        Self {
            count,
            mean,
            m2: m2.max(0.0),
            min,
            max,
        }
    }

    /// Folds one value into the moments (Welford's online update).
    ///
    /// The value must be finite: callers count NaN and nulls apart (see
    /// [`crate::NumericSummary`]), and one infinity would turn the mean into NaN for good.
    pub fn observe(&mut self, value: f64) {
        debug_assert!(
            value.is_finite(),
            "moments only take finite values, got {value}"
        );
        if self.count == 0 {
            *self = Self {
                count: 1,
                mean: value,
                m2: 0.0,
                min: value,
                max: value,
            };
            return;
        }
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds the values summarised by `other`, as if they had been observed here.
    ///
    /// Uses the parallel update of Chan et al.: with `n = na + nb` and `δ = mean_b − mean_a`,
    /// `mean = mean_a + δ·nb/n` and `m2 = m2_a + m2_b + δ²·na·nb/n`. The count saturates at
    /// `u64::MAX` instead of wrapping (only a forged summary gets there).
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let count_a = self.count as f64;
        let count_b = other.count as f64;
        let total = count_a + count_b;
        let delta = other.mean - self.mean;
        self.mean += delta * (count_b / total);
        self.m2 += other.m2 + delta * delta * (count_a * count_b / total);
        self.count = self.count.saturating_add(other.count);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Returns the number of values observed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Returns the mean, or `None` when no value was observed.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// Returns the sum of squared deviations from the mean (zero when empty), the part that
    /// travels on the wire next to the count and the mean.
    pub fn m2(&self) -> f64 {
        self.m2
    }

    /// Returns the smallest value observed, or `None` when no value was observed.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Returns the largest value observed, or `None` when no value was observed.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Returns the population variance `m2 / count` (divided by n, not n − 1), or `None` when
    /// no value was observed.
    pub fn variance(&self) -> Option<f64> {
        (self.count > 0).then(|| self.m2 / self.count as f64)
    }

    /// Returns the population standard deviation, the square root of [`Moments::variance`].
    pub fn std(&self) -> Option<f64> {
        self.variance().map(f64::sqrt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe_all(values: &[f64]) -> Moments {
        let mut moments = Moments::new();
        for value in values {
            moments.observe(*value);
        }
        moments
    }

    #[test]
    fn empty_moments_answer_none() {
        let moments = Moments::new();
        assert_eq!(moments.count(), 0);
        assert_eq!(moments.mean(), None);
        assert_eq!(moments.variance(), None);
        assert_eq!(moments.std(), None);
        assert_eq!(moments.min(), None);
        assert_eq!(moments.max(), None);
    }

    #[test]
    fn observe_matches_hand_computed_moments() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 40/8 = 5; squared deviations 9+1+1+1+0+0+4+16 = 32;
        // population variance 32/8 = 4, std 2.
        let moments = observe_all(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(moments.count(), 8);
        assert_eq!(moments.mean(), Some(5.0));
        assert_eq!(moments.m2(), 32.0);
        assert_eq!(moments.variance(), Some(4.0));
        assert_eq!(moments.std(), Some(2.0));
        assert_eq!(moments.min(), Some(2.0));
        assert_eq!(moments.max(), Some(9.0));
    }

    #[test]
    fn merge_equals_observing_everything_in_one_place() {
        let values: Vec<f64> = (0..1000)
            .map(|i| (i as f64 * 0.37).sin() * 100.0 + 1e6)
            .collect();
        let whole = observe_all(&values);
        for split in [0, 1, 10, 500, 999, 1000] {
            let mut left = observe_all(&values[..split]);
            let right = observe_all(&values[split..]);
            left.merge(&right);
            assert_eq!(left.count(), whole.count());
            assert_eq!(left.min(), whole.min());
            assert_eq!(left.max(), whole.max());
            let (mean, whole_mean) = (left.mean().unwrap(), whole.mean().unwrap());
            assert!(
                (mean - whole_mean).abs() < 1e-9,
                "split {split}: {mean} vs {whole_mean}"
            );
            let (var, whole_var) = (left.variance().unwrap(), whole.variance().unwrap());
            assert!(
                (var - whole_var).abs() < 1e-9 * whole_var,
                "split {split}: {var} vs {whole_var}"
            );
        }
    }

    #[test]
    fn merge_with_empty_is_identity_both_ways() {
        let some = observe_all(&[1.0, 2.0, 3.0]);
        let mut left = some;
        left.merge(&Moments::new());
        assert_eq!(left, some);
        let mut empty = Moments::new();
        empty.merge(&some);
        assert_eq!(empty, some);
    }

    #[test]
    fn from_parts_round_trips_and_normalises_empty() {
        let moments = observe_all(&[1.0, 5.0]);
        let rebuilt = Moments::from_parts(
            moments.count(),
            moments.mean().unwrap(),
            moments.m2(),
            moments.min().unwrap(),
            moments.max().unwrap(),
        );
        assert_eq!(rebuilt, moments);
        assert_eq!(Moments::from_parts(0, 3.0, 2.0, 1.0, 9.0), Moments::new());
        assert_eq!(
            Moments::from_parts(2, 3.0, -1e-18, 3.0, 3.0).variance(),
            Some(0.0)
        );
    }

    #[test]
    fn serde_round_trip() {
        let moments = observe_all(&[1.5, -2.0, 8.25]);
        let json = serde_json::to_string(&moments).unwrap();
        assert_eq!(serde_json::from_str::<Moments>(&json).unwrap(), moments);
        let empty = serde_json::to_string(&Moments::new()).unwrap();
        assert_eq!(
            serde_json::from_str::<Moments>(&empty).unwrap(),
            Moments::new()
        );
    }
}
