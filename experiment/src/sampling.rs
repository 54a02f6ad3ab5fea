//! Turns a search space into the parameter sets of a sweep's runs.
//!
//! A [`Sampler`] is an iterator of `name → value` maps, values formatted as a user would
//! type them (`16`, `0.001`, `relu`). It is deterministic: the hub can rebuild it after a
//! restart from the stored space and sampling, and skip the runs already created.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::number::{decimal_places, format_fixed, format_number};
use crate::rng::SplitMix64;
use crate::space::{ParamSpec, SearchSpace, SpaceError};

/// Discrete spaces up to this many combinations are drawn from a shuffled list of all of
/// them; larger ones by rejection against the combinations already drawn.
const SHUFFLE_LIMIT: u64 = 1 << 16;

/// How a sweep walks its search space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sampling {
    /// Every combination of discrete values, last parameter varying fastest. Continuous
    /// specs are refused.
    Grid,
    /// Independent draws from a SplitMix64 stream seeded with `seed`. When every spec is
    /// discrete, no combination repeats before all have been drawn.
    Random { seed: u64 },
}

/// An iterator over the parameter sets of a sweep: finite for grids, endless for random
/// sampling (take `max_runs`).
#[derive(Debug, Clone)]
pub struct Sampler {
    space: SearchSpace,
    mode: Mode,
}

#[derive(Debug, Clone)]
enum Mode {
    /// The odometer of the next combination, `None` once exhausted.
    Grid {
        radices: Vec<u64>,
        next: Option<Vec<u64>>,
    },
    /// All-discrete space: draws combination indices without repeats within a cycle.
    Discrete {
        rng: SplitMix64,
        radices: Vec<u64>,
        total: u64,
        draws: DiscreteDraws,
    },
    /// At least one continuous spec: every parameter drawn independently.
    Independent { rng: SplitMix64 },
}

#[derive(Debug, Clone)]
enum DiscreteDraws {
    /// A shuffled list of every combination index and the position in it.
    Shuffled { order: Vec<u64>, position: usize },
    /// Indices drawn in the current cycle, for spaces too large to list.
    Rejection { seen: HashSet<u64> },
}

// === impl Sampling ===

impl Sampling {
    /// Parses `grid`, `random` (seed 0) or `random:<seed>`, ignoring case.
    ///
    /// # Errors
    ///
    /// Returns [`SpaceError::UnknownSampling`] for anything else.
    pub fn parse(input: &str) -> Result<Sampling, SpaceError> {
        let text = input.trim();
        let unknown = || SpaceError::UnknownSampling {
            found: text.to_owned(),
        };
        let (kind, seed) = match text.split_once(':') {
            Some((kind, seed)) => (kind.trim(), Some(seed.trim())),
            None => (text, None),
        };
        if kind.eq_ignore_ascii_case("grid") && seed.is_none() {
            return Ok(Sampling::Grid);
        }
        if !kind.eq_ignore_ascii_case("random") {
            return Err(unknown());
        }
        let seed = match seed {
            Some(seed) => seed.parse().map_err(|_| unknown())?,
            None => 0,
        };
        Ok(Sampling::Random { seed })
    }
}

impl fmt::Display for Sampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sampling::Grid => f.write_str("grid"),
            Sampling::Random { seed } => write!(f, "random:{seed}"),
        }
    }
}

impl FromStr for Sampling {
    type Err = SpaceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Sampling::parse(input)
    }
}

// === impl Sampler ===

impl Sampler {
    /// Prepares to sample `space`.
    ///
    /// # Errors
    ///
    /// Returns [`SpaceError::NotEnumerable`] for grid sampling over a continuous spec.
    pub fn new(space: &SearchSpace, sampling: Sampling) -> Result<Sampler, SpaceError> {
        let radices: Option<Vec<u64>> = space
            .params()
            .iter()
            .map(|param| param.spec.discrete_count())
            .collect();
        let mode = match (sampling, radices) {
            (Sampling::Grid, Some(radices)) => Mode::Grid {
                next: Some(vec![0; radices.len()]),
                radices,
            },
            (Sampling::Grid, None) => {
                let continuous = space
                    .params()
                    .iter()
                    .find(|param| param.spec.discrete_count().is_none());
                let (name, spec) = continuous.map_or_else(
                    || (String::new(), String::new()),
                    |param| (param.name.clone(), param.spec.to_string()),
                );
                return Err(SpaceError::NotEnumerable { name, spec });
            }
            (Sampling::Random { seed }, Some(radices)) => {
                let total = radices.iter().fold(1u64, |acc, r| acc.saturating_mul(*r));
                let mut rng = SplitMix64::new(seed);
                let draws = if total <= SHUFFLE_LIMIT {
                    DiscreteDraws::Shuffled {
                        order: shuffled(total, &mut rng),
                        position: 0,
                    }
                } else {
                    DiscreteDraws::Rejection {
                        seen: HashSet::new(),
                    }
                };
                Mode::Discrete {
                    rng,
                    radices,
                    total,
                    draws,
                }
            }
            (Sampling::Random { seed }, None) => Mode::Independent {
                rng: SplitMix64::new(seed),
            },
        };
        Ok(Sampler {
            space: space.clone(),
            mode,
        })
    }

    /// Maps per-parameter value indices to the parameter set.
    fn discrete_set(&self, indices: &[u64]) -> BTreeMap<String, String> {
        self.space
            .params()
            .iter()
            .zip(indices)
            .map(|(param, index)| {
                let value = param.spec.discrete_value(*index).unwrap_or_default();
                (param.name.clone(), value)
            })
            .collect()
    }
}

impl Iterator for Sampler {
    type Item = BTreeMap<String, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let indices = match &mut self.mode {
            Mode::Grid { radices, next } => {
                let current = next.take()?;
                *next = increment(&current, radices);
                current
            }
            Mode::Discrete {
                rng,
                radices,
                total,
                draws,
            } => {
                let index = draws.draw(rng, *total);
                decode(index, radices)
            }
            Mode::Independent { rng } => {
                let mut set = BTreeMap::new();
                for param in self.space.params() {
                    set.insert(param.name.clone(), sample(&param.spec, rng));
                }
                return Some(set);
            }
        };
        Some(self.discrete_set(&indices))
    }
}

impl SearchSpace {
    /// Returns up to `max_runs` parameter sets; a grid with fewer combinations returns
    /// them all.
    ///
    /// # Errors
    ///
    /// As [`Sampler::new`].
    pub fn sample(
        &self,
        sampling: Sampling,
        max_runs: usize,
    ) -> Result<Vec<BTreeMap<String, String>>, SpaceError> {
        Ok(Sampler::new(self, sampling)?.take(max_runs).collect())
    }
}

// === impl DiscreteDraws ===

impl DiscreteDraws {
    /// Returns the next combination index; a new cycle starts once all were drawn.
    fn draw(&mut self, rng: &mut SplitMix64, total: u64) -> u64 {
        match self {
            DiscreteDraws::Shuffled { order, position } => {
                if *position == order.len() {
                    *order = shuffled(total, rng);
                    *position = 0;
                }
                let index = order.get(*position).copied().unwrap_or(0);
                *position += 1;
                index
            }
            DiscreteDraws::Rejection { seen } => {
                if seen.len() as u64 >= total {
                    seen.clear();
                }
                loop {
                    let index = rng.below(total);
                    if seen.insert(index) {
                        return index;
                    }
                }
            }
        }
    }
}

/// Returns `0..total` in a Fisher–Yates shuffled order.
fn shuffled(total: u64, rng: &mut SplitMix64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..total).collect();
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Advances a mixed-radix odometer, last digit fastest; `None` after the last combination.
fn increment(current: &[u64], radices: &[u64]) -> Option<Vec<u64>> {
    let mut next = current.to_vec();
    for position in (0..next.len()).rev() {
        next[position] += 1;
        if next[position] < radices[position] {
            return Some(next);
        }
        next[position] = 0;
    }
    None
}

/// Splits a combination index into per-parameter indices, in the grid's order.
fn decode(mut index: u64, radices: &[u64]) -> Vec<u64> {
    let mut indices = vec![0; radices.len()];
    for position in (0..radices.len()).rev() {
        indices[position] = index % radices[position];
        index /= radices[position];
    }
    indices
}

/// Draws one value of `spec`, formatted for the run.
fn sample(spec: &ParamSpec, rng: &mut SplitMix64) -> String {
    match spec {
        ParamSpec::Constant { value } => value.to_string(),
        ParamSpec::Choice { values } => {
            let index = rng.below(values.len() as u64) as usize;
            values
                .get(index)
                .map(ToString::to_string)
                .unwrap_or_default()
        }
        ParamSpec::Uniform { low, high } => {
            let value = low + rng.next_f64() * (high - low);
            format_number(value.clamp(*low, *high))
        }
        ParamSpec::LogUniform { low, high } => {
            let (ln_low, ln_high) = (low.ln(), high.ln());
            let value = (ln_low + rng.next_f64() * (ln_high - ln_low)).exp();
            // exp(ln x) can land a hair outside the bounds.
            format_number(value.clamp(*low, *high))
        }
        ParamSpec::QUniform { low, high, q } => {
            let steps = ((low + rng.next_f64() * (high - low)) / q).round();
            let value = steps * q;
            match decimal_places(*q) {
                Some(decimals) => format_fixed(value, decimals),
                None => format_number(value),
            }
        }
        ParamSpec::RandInt { low, high } => {
            let span = (i128::from(*high) - i128::from(*low)) as u64;
            (i128::from(*low) + i128::from(rng.below(span))).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(assignments: &[&str]) -> SearchSpace {
        SearchSpace::from_assignments(assignments).expect("valid space")
    }

    fn values(sets: &[BTreeMap<String, String>], name: &str) -> Vec<String> {
        sets.iter().map(|set| set[name].clone()).collect()
    }

    #[test]
    fn parses_sampling() {
        assert_eq!(Sampling::parse("grid"), Ok(Sampling::Grid));
        assert_eq!(Sampling::parse("Random"), Ok(Sampling::Random { seed: 0 }));
        assert_eq!(
            Sampling::parse("random:42"),
            Ok(Sampling::Random { seed: 42 })
        );
        assert!(Sampling::parse("random:x").is_err());
        assert!(Sampling::parse("grid:1").is_err());
        assert!(Sampling::parse("bayes").is_err());
        for sampling in [Sampling::Grid, Sampling::Random { seed: 7 }] {
            assert_eq!(Sampling::parse(&sampling.to_string()), Ok(sampling));
            let json = serde_json::to_string(&sampling).expect("serializes");
            assert_eq!(
                serde_json::from_str::<Sampling>(&json).expect("deserializes"),
                sampling
            );
        }
    }

    #[test]
    fn grid_enumerates_in_declaration_order_last_fastest() {
        let space = space(&[
            "hidden=choice(8,16)",
            "act=choice(relu,tanh,'leaky relu')",
            "epochs=40",
        ]);
        let sets = space.sample(Sampling::Grid, 100).expect("enumerable");
        assert_eq!(sets.len(), 6);
        assert_eq!(values(&sets, "hidden"), ["8", "8", "8", "16", "16", "16"]);
        assert_eq!(
            values(&sets, "act"),
            ["relu", "tanh", "leaky relu", "relu", "tanh", "leaky relu"]
        );
        assert!(values(&sets, "epochs").iter().all(|v| v == "40"));
        // max_runs cuts the grid short.
        assert_eq!(
            space.sample(Sampling::Grid, 4).expect("enumerable").len(),
            4
        );
    }

    #[test]
    fn grid_enumerates_randint_and_handles_empty_space() {
        let sets = space(&["seed=randint(-1, 2)"])
            .sample(Sampling::Grid, 10)
            .expect("enumerable");
        assert_eq!(values(&sets, "seed"), ["-1", "0", "1"]);
        let sets = SearchSpace::default()
            .sample(Sampling::Grid, 10)
            .expect("enumerable");
        assert_eq!(sets, vec![BTreeMap::new()]);
    }

    #[test]
    fn grid_refuses_continuous_specs() {
        let error = space(&["hidden=choice(8,16)", "lr=loguniform(1e-3,1e-1)"])
            .sample(Sampling::Grid, 10)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "parameter 'lr' is loguniform(0.001, 0.1), which grid sampling cannot enumerate; use choice(...) or random sampling"
        );
    }

    #[test]
    fn random_is_reproducible_per_seed() {
        let space = space(&[
            "hidden=choice(8,16,32)",
            "lr=loguniform(1e-3,1e-1)",
            "epochs=40",
        ]);
        let first = space
            .sample(Sampling::Random { seed: 42 }, 20)
            .expect("samples");
        let again = space
            .sample(Sampling::Random { seed: 42 }, 20)
            .expect("samples");
        let other = space
            .sample(Sampling::Random { seed: 43 }, 20)
            .expect("samples");
        assert_eq!(first.len(), 20);
        assert_eq!(first, again);
        assert_ne!(first, other);
        // A restarted hub can skip what it already created.
        let resumed: Vec<_> = Sampler::new(&space, Sampling::Random { seed: 42 })
            .expect("samples")
            .skip(5)
            .take(3)
            .collect();
        assert_eq!(resumed, first[5..8]);
    }

    #[test]
    fn random_values_stay_in_bounds() {
        let space = space(&[
            "lr=loguniform(1e-3,1e-1)",
            "dropout=uniform(0.1, 0.5)",
            "width=quniform(0, 1, 0.05)",
            "batch=quniform(16, 256, 16)",
            "layers=randint(1, 4)",
        ]);
        let sets = space
            .sample(Sampling::Random { seed: 1 }, 500)
            .expect("samples");
        let mut layers_seen = std::collections::BTreeSet::new();
        let (mut low_decade, mut high_decade) = (0, 0);
        for set in &sets {
            let lr: f64 = set["lr"].parse().expect("number");
            assert!((1e-3..=1e-1).contains(&lr), "{lr}");
            if lr < 1e-2 {
                low_decade += 1;
            } else {
                high_decade += 1;
            }
            let dropout: f64 = set["dropout"].parse().expect("number");
            assert!((0.1..0.5).contains(&dropout), "{dropout}");
            let width: f64 = set["width"].parse().expect("number");
            let steps = width / 0.05;
            assert!((steps - steps.round()).abs() < 1e-9, "{width}");
            assert!(set["width"].len() <= 4, "noise in {}", set["width"]);
            let batch: i64 = set["batch"]
                .parse()
                .expect("an integer, written without .0");
            assert_eq!(batch % 16, 0);
            let layers: i64 = set["layers"].parse().expect("integer");
            assert!((1..4).contains(&layers));
            layers_seen.insert(layers);
        }
        // Log-uniform: each decade gets about half the draws.
        assert!(
            low_decade > 180 && high_decade > 180,
            "{low_decade} / {high_decade}"
        );
        assert_eq!(layers_seen.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn discrete_random_does_not_repeat_until_exhausted() {
        let space = space(&[
            "hidden=choice(8,16,32)",
            "act=choice(relu,tanh)",
            "epochs=40",
        ]);
        let sets = space
            .sample(Sampling::Random { seed: 9 }, 12)
            .expect("samples");
        let first_cycle: std::collections::HashSet<_> = sets[..6].iter().collect();
        assert_eq!(first_cycle.len(), 6);
        let second_cycle: std::collections::HashSet<_> = sets[6..].iter().collect();
        assert_eq!(second_cycle.len(), 6);
        // Random order, not the grid's.
        let grid = space.sample(Sampling::Grid, 6).expect("enumerable");
        assert_ne!(sets[..6], grid[..]);
    }

    #[test]
    fn large_discrete_spaces_do_not_repeat() {
        let space = space(&["a=randint(0, 1000)", "b=randint(0, 1000)"]);
        let sets = space
            .sample(Sampling::Random { seed: 3 }, 2000)
            .expect("samples");
        let unique: std::collections::HashSet<_> = sets.iter().collect();
        assert_eq!(unique.len(), 2000);
    }
}
