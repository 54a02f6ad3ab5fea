//! Drift metrics over binned counts: PSI, Jensen–Shannon, Kolmogorov–Smirnov, Wasserstein
//! and Pearson's chi-square.
//!
//! Every function takes the baseline ("expected") and the window ("actual") counts over the
//! same bins and is pure. Each answers `None` rather than a number when a side has no mass
//! (all counts zero), when the two count vectors differ in length, or when there are no bins
//! at all: a drift score computed from nothing would read as "no drift".
//!
//! Proportions are `p_i = e_i / Σe` and `q_i = a_i / Σa`. Totals are summed in `u128`, so no
//! count vector can overflow them.
//!
//! Binning makes the KS statistic and the Wasserstein distance approximations: KS is read at
//! the bin boundaries only (a lower bound of the KS of the raw values), and Wasserstein moves
//! each bin's mass to one representative point (see [`bin_midpoints`]).

use serde::{Deserialize, Serialize};

use crate::NumericBaseline;

/// Pseudo-count added to every bin, on both sides, before PSI normalises the counts: the
/// Jeffreys prior (½). It keeps the logarithm finite when a bin is empty on one side, and
/// it is the only smoothing in this crate.
pub const PSI_PSEUDOCOUNT: f64 = 0.5;

/// Pearson's chi-square statistic of a window against its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChiSquare {
    /// `Σ (a_i − f_i)² / f_i` over the bins the baseline has seen, where `f_i` are the
    /// expected frequencies (see [`chi_square`]).
    pub statistic: f64,
    /// Degrees of freedom: the number of bins the baseline has seen, minus one.
    pub dof: u64,
    /// Window values in bins where the baseline has none. They cannot enter Pearson's sum
    /// (their expected frequency is zero) and are reported here instead.
    pub unexpected: u64,
}

/// Returns the totals of both sides when both have mass over the same, non-empty bins.
fn totals(expected: &[u64], actual: &[u64]) -> Option<(u128, u128)> {
    if expected.is_empty() || expected.len() != actual.len() {
        return None;
    }
    let expected_total = expected
        .iter()
        .map(|count| u128::from(*count))
        .sum::<u128>();
    let actual_total = actual.iter().map(|count| u128::from(*count)).sum::<u128>();
    (expected_total > 0 && actual_total > 0).then_some((expected_total, actual_total))
}

/// Returns the Population Stability Index, in nats.
///
/// Both sides are smoothed by adding [`PSI_PSEUDOCOUNT`] (½) to every one of the `k` bins:
/// `p_i = (e_i + ½) / (Σe + k/2)`, `q_i = (a_i + ½) / (Σa + k/2)`, and
/// `PSI = Σ (q_i − p_i) · ln(q_i / p_i)`, which is never negative. Identical counts give 0;
/// equal proportions over different totals give a small positive value, since the smoothing
/// pulls the smaller side harder towards uniform. `None` when a side has no mass.
pub fn psi(expected: &[u64], actual: &[u64]) -> Option<f64> {
    totals(expected, actual)?;
    let bins = expected.len() as f64;
    let smoothed_total = |counts: &[u64]| {
        counts.iter().map(|count| *count as f64).sum::<f64>() + PSI_PSEUDOCOUNT * bins
    };
    let (expected_total, actual_total) = (smoothed_total(expected), smoothed_total(actual));
    let mut index = 0.0;
    for (e, a) in expected.iter().zip(actual) {
        let p = (*e as f64 + PSI_PSEUDOCOUNT) / expected_total;
        let q = (*a as f64 + PSI_PSEUDOCOUNT) / actual_total;
        index += (q - p) * (q / p).ln();
    }
    Some(index)
}

/// Returns the Jensen–Shannon divergence in bits (log base 2), in [0, 1].
///
/// With `m = (p + q) / 2`, `JSD = ½ Σ p_i log₂(p_i / m_i) + ½ Σ q_i log₂(q_i / m_i)`, taking
/// `0 · log 0 = 0`; no smoothing is needed since `m_i > 0` wherever `p_i` or `q_i` is. Rounding
/// is clamped into [0, 1]. `None` when a side has no mass.
pub fn js_divergence(expected: &[u64], actual: &[u64]) -> Option<f64> {
    let (expected_total, actual_total) = totals(expected, actual)?;
    let (expected_total, actual_total) = (expected_total as f64, actual_total as f64);
    let mut divergence = 0.0;
    for (e, a) in expected.iter().zip(actual) {
        let p = *e as f64 / expected_total;
        let q = *a as f64 / actual_total;
        let m = (p + q) / 2.0;
        if p > 0.0 {
            divergence += 0.5 * p * (p / m).log2();
        }
        if q > 0.0 {
            divergence += 0.5 * q * (q / m).log2();
        }
    }
    Some(divergence.clamp(0.0, 1.0))
}

/// Returns the Jensen–Shannon distance, the square root of [`js_divergence`] (base 2), in
/// [0, 1]: 0 for identical proportions, 1 for distributions with no bin in common.
pub fn js_distance(expected: &[u64], actual: &[u64]) -> Option<f64> {
    js_divergence(expected, actual).map(f64::sqrt)
}

/// Returns the Kolmogorov–Smirnov statistic of the binned distributions: the largest
/// `|F_p(i) − F_q(i)|` over the bin boundaries, where `F(i)` is the share of mass in bins
/// `0..=i`. Cumulative counts are exact integers, divided once per boundary. In [0, 1];
/// `None` when a side has no mass. Only meaningful for ordered bins (numeric features).
pub fn ks_statistic(expected: &[u64], actual: &[u64]) -> Option<f64> {
    let (expected_total, actual_total) = totals(expected, actual)?;
    let (mut expected_cumulative, mut actual_cumulative) = (0u128, 0u128);
    let mut statistic: f64 = 0.0;
    for (e, a) in expected.iter().zip(actual) {
        expected_cumulative += u128::from(*e);
        actual_cumulative += u128::from(*a);
        let gap = expected_cumulative as f64 / expected_total as f64
            - actual_cumulative as f64 / actual_total as f64;
        statistic = statistic.max(gap.abs());
    }
    Some(statistic)
}

/// Returns one representative point per bin of `baseline`: the midpoint of each bin, where
/// the open outer bins are closed by the baseline's observed minimum and maximum.
///
/// With edges `e_0 < … < e_{k−1}`, minimum `lo` and maximum `hi`, the points are
/// `(lo + e_0)/2, (e_0 + e_1)/2, …, (e_{k−2} + e_{k−1})/2, (e_{k−1} + hi)/2`; a baseline
/// without edges has the single point `(lo + hi)/2`. Should the range not cover the edges (a
/// baseline built over given edges), `lo` is taken as `min(lo, e_0)` and `hi` as
/// `max(hi, e_{k−1})`, so the points stay ascending. `None` when the baseline has no values,
/// hence no range.
pub fn bin_midpoints(baseline: &NumericBaseline) -> Option<Vec<f64>> {
    let (lowest, highest) = (baseline.moments.min()?, baseline.moments.max()?);
    let (Some(first), Some(last)) = (baseline.edges.first(), baseline.edges.last()) else {
        return Some(vec![(lowest + highest) / 2.0]);
    };
    let mut points = Vec::with_capacity(baseline.edges.len() + 1);
    points.push((lowest.min(*first) + first) / 2.0);
    for pair in baseline.edges.windows(2) {
        points.push((pair[0] + pair[1]) / 2.0);
    }
    points.push((last + highest.max(*last)) / 2.0);
    Some(points)
}

/// Returns the Wasserstein-1 (earth mover's) distance between two binned distributions over
/// `baseline`'s bins, divided by the baseline's standard deviation.
///
/// Each bin's mass sits at its [`bin_midpoints`] point `x_i`, so
/// `W1 = Σ_{i<k−1} |F_p(i) − F_q(i)| · (x_{i+1} − x_i)` with `F` the cumulative shares. The
/// result is `W1 / σ`, `σ` being the population standard deviation of the baseline's values
/// ([`crate::Moments::std`]); when `σ` is zero (a constant column) the divisor is 1 instead,
/// and W1 is then 0 anyway since a constant column has a single bin. A value of 0.5 thus reads
/// "the window's mass moved half a training standard deviation on average".
///
/// `None` when a side has no mass, when the counts do not have one entry per bin of
/// `baseline`, or when the baseline has no values (no range to close the outer bins).
pub fn wasserstein_normalized(
    baseline: &NumericBaseline,
    expected: &[u64],
    actual: &[u64],
) -> Option<f64> {
    let (expected_total, actual_total) = totals(expected, actual)?;
    if expected.len() != baseline.bins() {
        return None;
    }
    let points = bin_midpoints(baseline)?;
    let (mut expected_cumulative, mut actual_cumulative) = (0u128, 0u128);
    let mut distance = 0.0;
    for (index, (e, a)) in expected.iter().zip(actual).enumerate() {
        let Some(next) = points.get(index + 1) else {
            break;
        };
        expected_cumulative += u128::from(*e);
        actual_cumulative += u128::from(*a);
        let gap = expected_cumulative as f64 / expected_total as f64
            - actual_cumulative as f64 / actual_total as f64;
        distance += gap.abs() * (next - points[index]);
    }
    let scale = match baseline.moments.std() {
        Some(std) if std > 0.0 && std.is_finite() => std,
        _ => 1.0,
    };
    Some(distance / scale)
}

/// Returns Pearson's chi-square statistic of the window against the baseline proportions.
///
/// Only bins with a baseline count enter the test. With `S` the set of those bins and
/// `A_S = Σ_{i∈S} a_i`, the expected frequencies are the baseline proportions scaled to that
/// window mass, `f_i = A_S · e_i / Σe`, and `statistic = Σ_{i∈S} (a_i − f_i)² / f_i` with
/// `|S| − 1` degrees of freedom. Window values in bins outside `S` (where a zero expected
/// frequency would make the sum infinite) are counted in [`ChiSquare::unexpected`] instead;
/// when there are none, `A_S` is the whole window as usual. If every window value is
/// unexpected, the statistic is 0 and `unexpected` holds the whole window. `None` when a side
/// has no mass.
pub fn chi_square(expected: &[u64], actual: &[u64]) -> Option<ChiSquare> {
    let (expected_total, actual_total) = totals(expected, actual)?;
    let mut seen_bins = 0u64;
    let mut seen_mass = 0u128;
    for (e, a) in expected.iter().zip(actual) {
        if *e > 0 {
            seen_bins += 1;
            seen_mass += u128::from(*a);
        }
    }
    let unexpected = u64::try_from(actual_total - seen_mass).unwrap_or(u64::MAX);
    let mut statistic = 0.0;
    if seen_mass > 0 {
        let (seen_mass, expected_total) = (seen_mass as f64, expected_total as f64);
        for (e, a) in expected.iter().zip(actual) {
            if *e > 0 {
                // Multiplied before dividing, so equal proportions give exact frequencies.
                let frequency = *e as f64 * seen_mass / expected_total;
                let deviation = *a as f64 - frequency;
                statistic += deviation * deviation / frequency;
            }
        }
    }
    Some(ChiSquare {
        statistic,
        dof: seen_bins - 1,
        unexpected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Moments;

    fn assert_near(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-12,
            "got {actual}, expected {expected}"
        );
    }

    /// Edges 10 and 20 over a baseline whose values ran from 0 to 40 with std 5: midpoints
    /// (0+10)/2 = 5, (10+20)/2 = 15, (20+40)/2 = 30.
    fn three_bin_baseline() -> NumericBaseline {
        NumericBaseline {
            edges: vec![10.0, 20.0],
            counts: vec![1, 2, 1],
            // Four values, variance m2 / n = 100 / 4 = 25, std 5.
            moments: Moments::from_parts(4, 17.5, 100.0, 0.0, 40.0),
            nulls: 0,
        }
    }

    #[test]
    fn js_of_even_against_ninety_ten() {
        // p = (.5, .5), q = (.9, .1), m = (.7, .3).
        // JSD = ½[.5·log₂(.5/.7) + .5·log₂(.5/.3)] + ½[.9·log₂(.9/.7) + .1·log₂(.1/.3)]
        //     = ¼·log₂(25/21) + .45·log₂(9/7) − .05·log₂(3)
        //     ≈ .0628847 + .1631565 − .0792481 = 0.1467931024360521; distance ≈ 0.3831359.
        let divergence =
            0.25 * (25.0f64 / 21.0).log2() + 0.45 * (9.0f64 / 7.0).log2() - 0.05 * 3.0f64.log2();
        assert_near(divergence, 0.146_793_102_436_052_1);
        assert_near(js_divergence(&[50, 50], &[90, 10]).unwrap(), divergence);
        assert_near(
            js_distance(&[50, 50], &[90, 10]).unwrap(),
            divergence.sqrt(),
        );
        // Symmetric.
        assert_near(
            js_distance(&[90, 10], &[50, 50]).unwrap(),
            divergence.sqrt(),
        );
    }

    #[test]
    fn psi_of_uniform_against_a_ramp_with_jeffreys_smoothing() {
        // k = 4 bins, ½ added to each: both totals become 100 + 2 = 102.
        // p_i = 25.5/102 = .25; q = (10.5, 20.5, 30.5, 40.5)/102.
        // PSI = Σ (q_i − p_i)·ln(q_i/p_i) = (1/102)·Σ (a_i − 25)·ln((a_i + .5)/25.5)
        //     = (1/102)·[−15·ln(10.5/25.5) − 5·ln(20.5/25.5) + 5·ln(30.5/25.5)
        //                + 15·ln(40.5/25.5)] ≈ 0.2179942131527476.
        let hand = (-15.0 * (10.5f64 / 25.5).ln() - 5.0 * (20.5f64 / 25.5).ln()
            + 5.0 * (30.5f64 / 25.5).ln()
            + 15.0 * (40.5f64 / 25.5).ln())
            / 102.0;
        assert_near(hand, 0.217_994_213_152_747_6);
        assert_near(psi(&[25, 25, 25, 25], &[10, 20, 30, 40]).unwrap(), hand);
    }

    #[test]
    fn ks_is_the_largest_cdf_gap() {
        // CDFs at the boundaries: (.25, .5, .75, 1) against (.1, .3, .6, 1); gaps .15, .2,
        // .15, 0: KS = .2.
        assert_near(
            ks_statistic(&[25, 25, 25, 25], &[10, 20, 30, 40]).unwrap(),
            0.2,
        );
        // Different totals: (1/4, 1) against (30/40, 1): .5.
        assert_near(ks_statistic(&[1, 3], &[30, 10]).unwrap(), 0.5);
    }

    #[test]
    fn wasserstein_on_three_bins_with_explicit_midpoints() {
        let baseline = three_bin_baseline();
        assert_eq!(bin_midpoints(&baseline), Some(vec![5.0, 15.0, 30.0]));
        // p = (.25, .5, .25): F_p = (.25, .75); q = (0, .25, .75): F_q = (0, .25).
        // W1 = |.25 − 0|·(15 − 5) + |.75 − .25|·(30 − 15) = 2.5 + 7.5 = 10; σ = 5 → 2.
        let distance = wasserstein_normalized(&baseline, &[1, 2, 1], &[0, 1, 3]).unwrap();
        assert_near(distance, 2.0);
        // Moving all mass from the middle bin to the last: W1 = 1·(30 − 15) = 15 → 3.
        assert_near(
            wasserstein_normalized(&baseline, &[0, 9, 0], &[0, 0, 4]).unwrap(),
            3.0,
        );
        // Counts that do not fit the baseline's bins have no distance.
        assert_eq!(wasserstein_normalized(&baseline, &[1, 1], &[1, 1]), None);
    }

    #[test]
    fn wasserstein_of_a_constant_baseline_divides_by_one() {
        let baseline = NumericBaseline::from_values(vec![3.0; 5], 0);
        assert_eq!(baseline.moments.std(), Some(0.0));
        assert_eq!(bin_midpoints(&baseline), Some(vec![3.0]));
        assert_eq!(wasserstein_normalized(&baseline, &[5], &[2]), Some(0.0));
        let empty = NumericBaseline::from_values(Vec::new(), 0);
        assert_eq!(bin_midpoints(&empty), None);
        assert_eq!(wasserstein_normalized(&empty, &[1], &[1]), None);
    }

    #[test]
    fn chi_square_by_hand() {
        // Frequencies 50, 50: (90 − 50)²/50 + (10 − 50)²/50 = 32 + 32 = 64, one dof.
        let result = chi_square(&[50, 50], &[90, 10]).unwrap();
        assert_near(result.statistic, 64.0);
        assert_eq!((result.dof, result.unexpected), (1, 0));
        // Proportions (1/4, 3/4) scaled to 20 window values: 5, 15.
        // (10 − 5)²/5 + (10 − 15)²/15 = 5 + 5/3.
        let result = chi_square(&[1, 3], &[10, 10]).unwrap();
        assert_near(result.statistic, 5.0 + 5.0 / 3.0);
        // Uniform vs ramp, frequencies 25: (225 + 25 + 25 + 225)/25 = 20, three dof.
        let result = chi_square(&[25, 25, 25, 25], &[10, 20, 30, 40]).unwrap();
        assert_near(result.statistic, 20.0);
        assert_eq!(result.dof, 3);
    }

    #[test]
    fn empty_bin_on_one_side() {
        let (expected, actual) = ([0, 50, 50], [20, 40, 40]);
        // PSI: totals 100 + 1.5 = 101.5; p = (.5, 50.5, 50.5)/101.5, q = (20.5, 40.5, 40.5)/101.5.
        // PSI = (1/101.5)·[20·ln(20.5/.5) + 2·(−10)·ln(40.5/50.5)]
        //     = (20·ln 41 + 20·ln(50.5/40.5)) / 101.5 ≈ 0.775220380073523.
        let hand = (20.0 * 41.0f64.ln() + 20.0 * (50.5f64 / 40.5).ln()) / 101.5;
        assert_near(hand, 0.775_220_380_073_523);
        assert_near(psi(&expected, &actual).unwrap(), hand);
        // JS: p = (0, .5, .5), q = (.2, .4, .4), m = (.1, .45, .45).
        // JSD = ½·[2·.5·log₂(.5/.45)] + ½·[.2·log₂(.2/.1) + 2·.4·log₂(.4/.45)]
        //     = ½·log₂(10/9) + ½·(.2 + .8·log₂(8/9)) ≈ 0.10803154614560005.
        let divergence = 0.5 * (10.0f64 / 9.0).log2() + 0.5 * (0.2 + 0.8 * (8.0f64 / 9.0).log2());
        assert_near(divergence, 0.108_031_546_145_600_05);
        assert_near(js_divergence(&expected, &actual).unwrap(), divergence);
        // KS: CDFs (0, .5, 1) and (.2, .6, 1): .2.
        assert_near(ks_statistic(&expected, &actual).unwrap(), 0.2);
        // Chi-square: bin 0 has no baseline count; its 20 values are unexpected, the other 80
        // split as expected (40, 40): statistic 0 over the two seen bins, one dof.
        let result = chi_square(&expected, &actual).unwrap();
        assert_eq!(
            result,
            ChiSquare {
                statistic: 0.0,
                dof: 1,
                unexpected: 20
            }
        );
        // Swapped, the empty bin is in the window: it simply contributes its frequency.
        // Frequencies 100·(.2, .4, .4) = (20, 40, 40): (0−20)²/20 + (50−40)²/40·2 = 20 + 5 = 25.
        let result = chi_square(&actual, &expected).unwrap();
        assert_near(result.statistic, 25.0);
        assert_eq!((result.dof, result.unexpected), (2, 0));
    }

    #[test]
    fn single_bin_distributions() {
        // One bin holds everything on both sides: nothing can differ.
        assert_eq!(psi(&[100], &[7]), Some(0.0));
        assert_eq!(js_distance(&[100], &[7]), Some(0.0));
        assert_eq!(ks_statistic(&[100], &[7]), Some(0.0));
        assert_eq!(
            chi_square(&[100], &[7]),
            Some(ChiSquare {
                statistic: 0.0,
                dof: 0,
                unexpected: 0
            })
        );
        // All mass in one bin on each side, different bins: disjoint supports.
        let (expected, actual) = ([0, 100, 0], [0, 0, 50]);
        assert_eq!(js_distance(&expected, &actual), Some(1.0));
        assert_eq!(ks_statistic(&expected, &actual), Some(1.0));
        // PSI: p = (.5, 100.5, .5)/101.5, q = (.5, .5, 50.5)/51.5; the first bin adds
        // (.5/51.5 − .5/101.5)·ln(101.5/51.5), the others the terms below.
        let p: [f64; 3] = [0.5 / 101.5, 100.5 / 101.5, 0.5 / 101.5];
        let q: [f64; 3] = [0.5 / 51.5, 0.5 / 51.5, 50.5 / 51.5];
        let hand: f64 = (0..3).map(|i| (q[i] - p[i]) * (q[i] / p[i]).ln()).sum();
        assert_near(hand, 9.702_339_143_850_626);
        assert_near(psi(&expected, &actual).unwrap(), hand);
        // Chi-square: only the middle bin was seen, and the window has nothing there.
        assert_eq!(
            chi_square(&expected, &actual),
            Some(ChiSquare {
                statistic: 0.0,
                dof: 0,
                unexpected: 50
            })
        );
    }

    #[test]
    fn identical_distributions_score_zero() {
        let counts = [3, 0, 17, 80, 1];
        assert_eq!(psi(&counts, &counts), Some(0.0));
        assert_eq!(js_distance(&counts, &counts), Some(0.0));
        assert_eq!(ks_statistic(&counts, &counts), Some(0.0));
        assert_eq!(chi_square(&counts, &counts).map(|c| c.statistic), Some(0.0));
        // Same proportions over a different total: still zero for JS, KS and chi-square.
        let doubled = counts.map(|count| count * 2);
        assert_eq!(js_distance(&counts, &doubled), Some(0.0));
        assert_eq!(ks_statistic(&counts, &doubled), Some(0.0));
        assert_near(chi_square(&counts, &doubled).unwrap().statistic, 0.0);
        let baseline = three_bin_baseline();
        assert_eq!(
            wasserstein_normalized(&baseline, &[1, 2, 1], &[1, 2, 1]),
            Some(0.0)
        );
    }

    #[test]
    fn no_mass_gives_none() {
        let baseline = three_bin_baseline();
        for (expected, actual) in [
            (&[0u64, 0, 0][..], &[1u64, 2, 3][..]),
            (&[1, 2, 3], &[0, 0, 0]),
        ] {
            assert_eq!(psi(expected, actual), None);
            assert_eq!(js_distance(expected, actual), None);
            assert_eq!(ks_statistic(expected, actual), None);
            assert_eq!(wasserstein_normalized(&baseline, expected, actual), None);
            assert_eq!(chi_square(expected, actual), None);
        }
        // No bins, or counts of different lengths, are not comparable either.
        assert_eq!(psi(&[], &[]), None);
        assert_eq!(js_distance(&[1, 2], &[1, 2, 3]), None);
    }
}
