//! Experiment tracking logic for Shoal: searching and ordering runs, and running sweeps.
//!
//! Everything here is pure: no I/O, no clock, no global state. The hub and the CLI hand it
//! run records and metric histories, and act on its answers; that keeps the rules (what a
//! filter means, which run a sweep stops) testable in isolation and identical on both sides.
//!
//! # Layout
//! - `field`: what a search can look at on a run ([`Searchable`], [`Field`], [`Attribute`]).
//! - `filter`: the run search grammar, MLflow's plus `or` and parentheses ([`Filter`]).
//! - `order`: order-by clauses with missing values last ([`OrderBy`]).
//! - `space`: sweep parameter specs such as `choice(8,16)` ([`ParamSpec`], [`SearchSpace`]).
//! - `sampling`: grid and seeded random enumeration of a search space ([`Sampler`]).
//! - `goal`: maximize or minimize the primary metric, and pick the best run ([`best_run`]).
//! - `history`: intermediate metric values reported by a sweep's runs ([`MetricHistory`]).
//! - `early_stop`: median stopping and bandit termination policies ([`EarlyStop`]).
//! - `number`, `rng`: number formatting and the seeded PRNG behind random sampling.
//!
//! # Example
//!
//! ```
//! use shoal_experiment::{EarlyStop, Filter, Goal, MetricHistory, Sampling, SearchSpace};
//!
//! let filter = Filter::parse("metrics.accuracy > 0.9 and params.hidden = '16'")?;
//! assert!(!filter.is_match_all());
//!
//! let space = SearchSpace::from_assignments(&["hidden=choice(8,16,32)", "epochs=40"])?;
//! let runs = space.sample(Sampling::Grid, 12)?;
//! assert_eq!(runs.len(), 3);
//! assert_eq!(runs[1]["hidden"], "16");
//!
//! let mut history = MetricHistory::new("accuracy");
//! history.record("good", 1, 0.9);
//! history.record("bad", 1, 0.2);
//! let decision = EarlyStop::parse("median")?.should_stop(Goal::Maximize, &history, "bad", 1);
//! assert!(decision.stop);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod early_stop;
mod field;
mod filter;
mod goal;
mod history;
mod number;
mod order;
mod rng;
mod sampling;
mod space;

pub use early_stop::{
    BanditPolicy, EarlyStop, EarlyStopError, MedianStopping, StopDecision,
    DEFAULT_BANDIT_SLACK_FACTOR, MEDIAN_MIN_OTHER_RUNS,
};
pub use field::{Attribute, AttributeValue, Field, Searchable};
pub use filter::{Filter, FilterError};
pub use goal::{best_run, Goal, GoalError};
pub use history::MetricHistory;
pub use order::{OrderBy, OrderClause};
pub use sampling::{Sampler, Sampling};
pub use space::{ParamSpec, ParamSpecError, ParamValue, SearchParam, SearchSpace, SpaceError};
