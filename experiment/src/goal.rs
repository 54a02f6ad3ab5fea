//! Whether a sweep maximizes or minimizes its primary metric, and which run wins.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The direction of the primary metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    Maximize,
    Minimize,
}

/// A goal string that is none of `max`, `min`, `maximize`, `minimize`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown goal '{found}'; expected max or min")]
pub struct GoalError {
    pub found: String,
}

impl Goal {
    /// Parses `max`, `min`, `maximize` or `minimize`, ignoring case.
    ///
    /// # Errors
    ///
    /// Returns [`GoalError`] for anything else.
    pub fn parse(input: &str) -> Result<Goal, GoalError> {
        match input.trim().to_ascii_lowercase().as_str() {
            "max" | "maximize" => Ok(Goal::Maximize),
            "min" | "minimize" => Ok(Goal::Minimize),
            _ => Err(GoalError {
                found: input.to_owned(),
            }),
        }
    }

    /// Returns true when `a` is strictly better than `b`; false whenever either is NaN.
    pub fn is_better(self, a: f64, b: f64) -> bool {
        match self {
            Goal::Maximize => a > b,
            Goal::Minimize => a < b,
        }
    }

    /// Returns true when `a` is strictly worse than `b`; false whenever either is NaN.
    pub fn is_worse(self, a: f64, b: f64) -> bool {
        self.is_better(b, a)
    }

    /// Returns the better of the values, skipping NaN; `None` when none is left.
    pub fn best(self, values: impl IntoIterator<Item = f64>) -> Option<f64> {
        let mut best: Option<f64> = None;
        for value in values {
            if value.is_nan() {
                continue;
            }
            if best.is_none_or(|current| self.is_better(value, current)) {
                best = Some(value);
            }
        }
        best
    }

    /// "below" when a lower value is worse, "above" otherwise; used in stop reasons.
    pub(crate) fn worse_word(self) -> &'static str {
        match self {
            Goal::Maximize => "below",
            Goal::Minimize => "above",
        }
    }
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Goal::Maximize => "max",
            Goal::Minimize => "min",
        })
    }
}

impl FromStr for Goal {
    type Err = GoalError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Goal::parse(input)
    }
}

/// Returns the candidate with the best value of the primary metric, with that value.
///
/// Candidates without the metric, or with NaN, are skipped; on a tie the first one in
/// iteration order wins, so callers that iterate in creation order get the earliest run.
pub fn best_run<I>(
    goal: Goal,
    candidates: impl IntoIterator<Item = (I, Option<f64>)>,
) -> Option<(I, f64)> {
    let mut best: Option<(I, f64)> = None;
    for (id, value) in candidates {
        let Some(value) = value.filter(|value| !value.is_nan()) else {
            continue;
        };
        if best
            .as_ref()
            .is_none_or(|(_, current)| goal.is_better(value, *current))
        {
            best = Some((id, value));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_goals() {
        assert_eq!(Goal::parse("max"), Ok(Goal::Maximize));
        assert_eq!(Goal::parse("Minimize"), Ok(Goal::Minimize));
        assert_eq!(
            Goal::parse("up").unwrap_err().to_string(),
            "unknown goal 'up'; expected max or min"
        );
        for goal in [Goal::Maximize, Goal::Minimize] {
            assert_eq!(Goal::parse(&goal.to_string()), Ok(goal));
            let json = serde_json::to_string(&goal).expect("serializes");
            assert_eq!(
                serde_json::from_str::<Goal>(&json).expect("deserializes"),
                goal
            );
        }
    }

    #[test]
    fn best_run_ignores_missing_and_nan() {
        let runs = [
            ("a", Some(0.7)),
            ("b", None),
            ("c", Some(f64::NAN)),
            ("d", Some(0.9)),
            ("e", Some(0.9)),
            ("f", Some(0.2)),
        ];
        assert_eq!(best_run(Goal::Maximize, runs), Some(("d", 0.9)));
        assert_eq!(best_run(Goal::Minimize, runs), Some(("f", 0.2)));
        assert_eq!(
            best_run(Goal::Maximize, [("x", None), ("y", Some(f64::NAN))]),
            None
        );
        assert_eq!(best_run::<&str>(Goal::Maximize, []), None);
        assert_eq!(
            best_run(
                Goal::Minimize,
                [("a", Some(f64::INFINITY)), ("b", Some(3.0))]
            ),
            Some(("b", 3.0))
        );
    }

    #[test]
    fn best_skips_nan() {
        assert_eq!(Goal::Maximize.best([f64::NAN, 1.0, 3.0, 2.0]), Some(3.0));
        assert_eq!(Goal::Minimize.best([f64::NAN, 1.0, 3.0]), Some(1.0));
        assert_eq!(Goal::Minimize.best([f64::NAN]), None);
    }
}
