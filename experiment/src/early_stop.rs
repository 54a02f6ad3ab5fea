//! Early termination policies: pure decisions, over a sweep's metric history, on whether a
//! run should stop now.
//!
//! The hub calls [`EarlyStop::should_stop`] when a run of a sweep reports the primary
//! metric at some step, and cancels the run when told to, logging the reason.
//!
//! The `--early-stop` syntax is on [`EarlyStop`].

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::goal::Goal;
use crate::history::MetricHistory;
use crate::number::{format_approx, format_number};

/// Slack factor of a bare `bandit`, Azure ML's usual choice.
pub const DEFAULT_BANDIT_SLACK_FACTOR: f64 = 0.1;

/// Other runs that must have reached a step before median stopping judges a run there;
/// with fewer, a median says nothing and the run continues.
pub const MEDIAN_MIN_OTHER_RUNS: usize = 1;

/// The early termination policy of a sweep.
///
/// The CLI syntax (`--early-stop`):
///
/// | text                                   | policy                                          |
/// |----------------------------------------|-------------------------------------------------|
/// | `none`                                 | never stop early                                |
/// | `median[:interval=N,delay=N]`          | [`MedianStopping`]                              |
/// | `bandit[:F]`, `bandit:factor=F`        | [`BanditPolicy`] with slack factor `F` (default 0.1) |
/// | `bandit:amount=A`                      | [`BanditPolicy`] with slack amount `A`          |
///
/// Options are comma-separated and may follow the slack: `bandit:0.2,interval=2,delay=5`.
/// `evaluation_interval` and `delay_evaluation` are accepted as long names of `interval`
/// and `delay`, as are `slack_factor` and `slack_amount`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum EarlyStop {
    #[default]
    None,
    Median(MedianStopping),
    Bandit(BanditPolicy),
}

/// Azure ML's median stopping: stop a run whose best value so far is worse than the median
/// of the other runs' running averages at the same step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MedianStopping {
    /// Evaluate only at steps that are multiples of this; at least 1.
    #[serde(default = "one")]
    pub evaluation_interval: u32,
    /// Evaluate only after this step, so runs get a warm-up before being judged.
    #[serde(default)]
    pub delay_evaluation: u32,
}

/// Azure ML's bandit policy: stop a run whose value falls outside a slack of the best
/// value any run has reached by the same step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BanditPolicy {
    /// Relative slack: for a max goal the bar is `best / (1 + slack_factor)`, for a min
    /// goal `best * (1 + slack_factor)`. Meant for metrics of one sign, as in Azure ML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_factor: Option<f64>,
    /// Absolute slack: the bar is `best - slack_amount` (max) or `best + slack_amount`
    /// (min). Exactly one of the two slacks is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_amount: Option<f64>,
    #[serde(default = "one")]
    pub evaluation_interval: u32,
    #[serde(default)]
    pub delay_evaluation: u32,
}

/// A policy's answer, with a sentence for the run's log and the sweep's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopDecision {
    pub stop: bool,
    pub reason: String,
}

/// An invalid `--early-stop` value or policy.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EarlyStopError {
    #[error("unknown early termination policy '{found}'; expected none, median, bandit:<slack factor> or bandit:amount=<slack amount>")]
    UnknownPolicy { found: String },
    #[error("{policy} takes no options, found '{found}'")]
    NoOptions { policy: &'static str, found: String },
    #[error("unknown option '{option}' for {policy}; expected {expected}")]
    UnknownOption {
        policy: &'static str,
        option: String,
        expected: &'static str,
    },
    #[error("option '{option}' is given twice")]
    DuplicateOption { option: String },
    #[error("option '{option}' needs {expected}, found '{found}'")]
    InvalidValue {
        option: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("the evaluation interval must be at least 1")]
    ZeroInterval,
    #[error("bandit takes a slack factor or a slack amount, not both")]
    ConflictingSlack,
    #[error("bandit needs a slack factor or a slack amount")]
    MissingSlack,
    #[error("{option} must be a finite number of at least 0, found {value}")]
    NegativeSlack { option: &'static str, value: String },
}

fn one() -> u32 {
    1
}

// === impl EarlyStop ===

impl EarlyStop {
    /// Parses the CLI syntax described in the module docs.
    ///
    /// # Errors
    ///
    /// Returns an [`EarlyStopError`] for an unknown policy or option, a malformed number,
    /// a zero interval, or a missing, doubled or negative slack.
    pub fn parse(input: &str) -> Result<EarlyStop, EarlyStopError> {
        let text = input.trim();
        let (name, options) = match text.split_once(':') {
            Some((name, options)) => (name.trim(), Some(options)),
            None => (text, None),
        };
        let policy = match name.to_ascii_lowercase().as_str() {
            "none" => {
                if let Some(options) = options {
                    return Err(EarlyStopError::NoOptions {
                        policy: "none",
                        found: options.to_owned(),
                    });
                }
                EarlyStop::None
            }
            "median" => EarlyStop::Median(MedianStopping::parse_options(options.unwrap_or(""))?),
            "bandit" => EarlyStop::Bandit(BanditPolicy::parse_options(options.unwrap_or(""))?),
            _ => {
                return Err(EarlyStopError::UnknownPolicy {
                    found: text.to_owned(),
                })
            }
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Checks the rules `parse` enforces, for policies that arrive deserialized.
    ///
    /// # Errors
    ///
    /// As [`EarlyStop::parse`].
    pub fn validate(&self) -> Result<(), EarlyStopError> {
        match self {
            EarlyStop::None => Ok(()),
            EarlyStop::Median(policy) => check_interval(policy.evaluation_interval),
            EarlyStop::Bandit(policy) => policy.validate(),
        }
    }

    /// Decides whether `run` should stop after reporting the primary metric at `step`.
    pub fn should_stop(
        &self,
        goal: Goal,
        history: &MetricHistory,
        run: &str,
        step: u64,
    ) -> StopDecision {
        match self {
            EarlyStop::None => StopDecision::carry_on("no early termination policy".to_owned()),
            EarlyStop::Median(policy) => policy.should_stop(goal, history, run, step),
            EarlyStop::Bandit(policy) => policy.should_stop(goal, history, run, step),
        }
    }
}

impl fmt::Display for EarlyStop {
    /// Writes the CLI form; options at their defaults are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EarlyStop::None => f.write_str("none"),
            EarlyStop::Median(policy) => {
                let options = schedule_options(policy.evaluation_interval, policy.delay_evaluation);
                if options.is_empty() {
                    f.write_str("median")
                } else {
                    write!(f, "median:{}", options.join(","))
                }
            }
            EarlyStop::Bandit(policy) => {
                let mut options = Vec::new();
                if let Some(factor) = policy.slack_factor {
                    options.push(format!("factor={}", format_number(factor)));
                }
                if let Some(amount) = policy.slack_amount {
                    options.push(format!("amount={}", format_number(amount)));
                }
                options.extend(schedule_options(
                    policy.evaluation_interval,
                    policy.delay_evaluation,
                ));
                write!(f, "bandit:{}", options.join(","))
            }
        }
    }
}

impl FromStr for EarlyStop {
    type Err = EarlyStopError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        EarlyStop::parse(input)
    }
}

// === impl MedianStopping ===

impl Default for MedianStopping {
    fn default() -> Self {
        MedianStopping {
            evaluation_interval: 1,
            delay_evaluation: 0,
        }
    }
}

impl MedianStopping {
    fn parse_options(options: &str) -> Result<Self, EarlyStopError> {
        const EXPECTED: &str = "interval or delay";
        let mut policy = MedianStopping::default();
        for (key, value) in split_options(options)? {
            match key.as_deref() {
                Some("interval" | "evaluation_interval") => {
                    policy.evaluation_interval = parse_u32("interval", &value)?;
                }
                Some("delay" | "delay_evaluation") => {
                    policy.delay_evaluation = parse_u32("delay", &value)?;
                }
                _ => {
                    return Err(EarlyStopError::UnknownOption {
                        policy: "median",
                        option: key.unwrap_or(value),
                        expected: EXPECTED,
                    })
                }
            }
        }
        Ok(policy)
    }

    /// Decides whether `run` should stop at `step`.
    ///
    /// At an evaluated step, the run's best value up to `step` is compared with the median
    /// of the running averages (mean of all values up to `step`) of the other runs that
    /// have reported at `step` or later; at least [`MEDIAN_MIN_OTHER_RUNS`] are needed.
    pub fn should_stop(
        &self,
        goal: Goal,
        history: &MetricHistory,
        run: &str,
        step: u64,
    ) -> StopDecision {
        if let Some(skip) = skip_step(self.evaluation_interval, self.delay_evaluation, step) {
            return skip;
        }
        let metric = history.metric();
        let best = history
            .points(run)
            .and_then(|points| goal.best(points.range(..=step).map(|(_, value)| *value)));
        let Some(best) = best else {
            return StopDecision::carry_on(format!(
                "run '{run}' has no {metric} value up to step {step}"
            ));
        };
        let mut averages = Vec::new();
        for (other, points) in history.iter() {
            let reached = points.keys().next_back().is_some_and(|last| *last >= step);
            if other == run || !reached {
                continue;
            }
            let values: Vec<f64> = points.range(..=step).map(|(_, value)| *value).collect();
            if !values.is_empty() {
                averages.push(values.iter().sum::<f64>() / values.len() as f64);
            }
        }
        if averages.len() < MEDIAN_MIN_OTHER_RUNS {
            return StopDecision::carry_on(format!(
                "no other run has reached step {step} yet, so there is no median to compare with"
            ));
        }
        let median = median(&mut averages);
        let others = if averages.len() == 1 {
            "1 other run's running average".to_owned()
        } else {
            format!("{} other runs' running averages", averages.len())
        };
        let comparison = format!(
            "{} the median {} of {others}",
            goal.worse_word(),
            format_approx(median)
        );
        let subject = format!("best {metric} {} up to step {step}", format_approx(best));
        if goal.is_worse(best, median) {
            StopDecision::stop(format!("{subject} is {comparison}"))
        } else {
            StopDecision::carry_on(format!("{subject} is not {comparison}"))
        }
    }
}

// === impl BanditPolicy ===

impl BanditPolicy {
    /// A bandit policy with a relative slack, evaluated at every step.
    pub fn with_slack_factor(slack_factor: f64) -> Self {
        BanditPolicy {
            slack_factor: Some(slack_factor),
            slack_amount: None,
            evaluation_interval: 1,
            delay_evaluation: 0,
        }
    }

    /// A bandit policy with an absolute slack, evaluated at every step.
    pub fn with_slack_amount(slack_amount: f64) -> Self {
        BanditPolicy {
            slack_factor: None,
            slack_amount: Some(slack_amount),
            evaluation_interval: 1,
            delay_evaluation: 0,
        }
    }

    fn parse_options(options: &str) -> Result<Self, EarlyStopError> {
        const EXPECTED: &str = "factor, amount, interval or delay";
        let mut policy = BanditPolicy {
            slack_factor: None,
            ..BanditPolicy::with_slack_factor(DEFAULT_BANDIT_SLACK_FACTOR)
        };
        for (index, (key, value)) in split_options(options)?.into_iter().enumerate() {
            match key.as_deref() {
                // A bare first option is the slack factor: `bandit:0.1`.
                None if index == 0 => policy.slack_factor = Some(parse_slack("factor", &value)?),
                Some("factor" | "slack_factor") => {
                    policy.slack_factor = Some(parse_slack("factor", &value)?);
                }
                Some("amount" | "slack_amount") => {
                    policy.slack_amount = Some(parse_slack("amount", &value)?);
                }
                Some("interval" | "evaluation_interval") => {
                    policy.evaluation_interval = parse_u32("interval", &value)?;
                }
                Some("delay" | "delay_evaluation") => {
                    policy.delay_evaluation = parse_u32("delay", &value)?;
                }
                _ => {
                    return Err(EarlyStopError::UnknownOption {
                        policy: "bandit",
                        option: key.unwrap_or(value),
                        expected: EXPECTED,
                    })
                }
            }
        }
        if policy.slack_factor.is_none() && policy.slack_amount.is_none() {
            policy.slack_factor = Some(DEFAULT_BANDIT_SLACK_FACTOR);
        }
        Ok(policy)
    }

    /// Checks the interval and that exactly one non-negative slack is set.
    ///
    /// # Errors
    ///
    /// Returns the first violated rule.
    pub fn validate(&self) -> Result<(), EarlyStopError> {
        check_interval(self.evaluation_interval)?;
        let slack = match (self.slack_factor, self.slack_amount) {
            (Some(_), Some(_)) => return Err(EarlyStopError::ConflictingSlack),
            (None, None) => return Err(EarlyStopError::MissingSlack),
            (Some(factor), None) => ("slack factor", factor),
            (None, Some(amount)) => ("slack amount", amount),
        };
        if !(slack.1.is_finite() && slack.1 >= 0.0) {
            return Err(EarlyStopError::NegativeSlack {
                option: slack.0,
                value: format_number(slack.1),
            });
        }
        Ok(())
    }

    /// Returns the worst value a run may have and continue, given the best value so far.
    /// A slack factor wins over a slack amount if both are set (validation refuses that).
    pub fn threshold(&self, goal: Goal, best: f64) -> f64 {
        match (self.slack_factor, self.slack_amount, goal) {
            (Some(factor), _, Goal::Maximize) => best / (1.0 + factor),
            (Some(factor), _, Goal::Minimize) => best * (1.0 + factor),
            (None, Some(amount), Goal::Maximize) => best - amount,
            (None, Some(amount), Goal::Minimize) => best + amount,
            (None, None, _) => best,
        }
    }

    /// Describes the slack for stop reasons, matching what [`BanditPolicy::threshold`] uses.
    fn slack_description(&self) -> String {
        match (self.slack_factor, self.slack_amount) {
            (Some(factor), _) => format!("slack factor {}", format_number(factor)),
            (None, Some(amount)) => format!("slack amount {}", format_number(amount)),
            (None, None) => "no slack".to_owned(),
        }
    }

    /// Decides whether `run` should stop at `step`: its latest value up to `step` is
    /// compared with the best value any run (itself included) reached up to `step`,
    /// loosened by the slack.
    pub fn should_stop(
        &self,
        goal: Goal,
        history: &MetricHistory,
        run: &str,
        step: u64,
    ) -> StopDecision {
        if let Some(skip) = skip_step(self.evaluation_interval, self.delay_evaluation, step) {
            return skip;
        }
        let metric = history.metric();
        let latest = history
            .points(run)
            .and_then(|points| points.range(..=step).next_back())
            .map(|(_, value)| *value);
        let Some(value) = latest else {
            return StopDecision::carry_on(format!(
                "run '{run}' has no {metric} value up to step {step}"
            ));
        };
        let values_so_far = history
            .iter()
            .flat_map(|(_, points)| points.range(..=step).map(|(_, value)| *value));
        let best = goal.best(values_so_far).unwrap_or(value);
        let threshold = self.threshold(goal, best);
        let slack = self.slack_description();
        let comparison = format!(
            "{} {}, the best {} loosened by {slack}",
            goal.worse_word(),
            format_approx(threshold),
            format_approx(best)
        );
        let subject = format!("{metric} {} at step {step}", format_approx(value));
        if goal.is_worse(value, threshold) {
            StopDecision::stop(format!("{subject} is {comparison}"))
        } else {
            StopDecision::carry_on(format!("{subject} is not {comparison}"))
        }
    }
}

// === impl StopDecision ===

impl StopDecision {
    pub fn stop(reason: String) -> Self {
        StopDecision { stop: true, reason }
    }

    /// The run continues; `reason` says why, for debugging a sweep that never stops.
    pub fn carry_on(reason: String) -> Self {
        StopDecision {
            stop: false,
            reason,
        }
    }
}

// === helpers ===

/// Returns a "continue" decision when `step` is not evaluated: within the delay, or not a
/// multiple of the interval (an interval of 0 counts as 1).
fn skip_step(interval: u32, delay: u32, step: u64) -> Option<StopDecision> {
    if step <= u64::from(delay) {
        return Some(StopDecision::carry_on(format!(
            "step {step} is within the evaluation delay of {delay} steps"
        )));
    }
    let interval = u64::from(interval.max(1));
    if !step.is_multiple_of(interval) {
        return Some(StopDecision::carry_on(format!(
            "step {step} is not a multiple of the evaluation interval {interval}"
        )));
    }
    None
}

fn check_interval(interval: u32) -> Result<(), EarlyStopError> {
    if interval == 0 {
        return Err(EarlyStopError::ZeroInterval);
    }
    Ok(())
}

/// Median of non-NaN values; sorts in place. `values` must not be empty.
fn median(values: &mut [f64]) -> f64 {
    debug_assert!(!values.is_empty(), "median of nothing");
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// Splits `a=1,b=2` into `(Some(key), value)` pairs, keys lowercased; a part without `=`
/// has no key. Rejects a key given twice.
fn split_options(options: &str) -> Result<Vec<(Option<String>, String)>, EarlyStopError> {
    let mut seen = HashSet::new();
    let mut pairs = Vec::new();
    for part in options
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let pair = match part.split_once('=') {
            Some((key, value)) => {
                let key = key.trim().to_ascii_lowercase();
                let canonical = key
                    .trim_start_matches("slack_")
                    .replace("evaluation_interval", "interval")
                    .replace("delay_evaluation", "delay");
                if !seen.insert(canonical) {
                    return Err(EarlyStopError::DuplicateOption { option: key });
                }
                (Some(key), value.trim().to_owned())
            }
            None => (None, part.to_owned()),
        };
        pairs.push(pair);
    }
    Ok(pairs)
}

fn parse_u32(option: &'static str, value: &str) -> Result<u32, EarlyStopError> {
    value.parse().map_err(|_| EarlyStopError::InvalidValue {
        option,
        expected: "a whole number",
        found: value.to_owned(),
    })
}

fn parse_slack(option: &'static str, value: &str) -> Result<f64, EarlyStopError> {
    value.parse().map_err(|_| EarlyStopError::InvalidValue {
        option,
        expected: "a number",
        found: value.to_owned(),
    })
}

/// `interval=N` and `delay=N` when they differ from the defaults.
fn schedule_options(interval: u32, delay: u32) -> Vec<String> {
    let mut options = Vec::new();
    if interval != 1 {
        options.push(format!("interval={interval}"));
    }
    if delay != 0 {
        options.push(format!("delay={delay}"));
    }
    options
}

#[cfg(test)]
mod tests;
