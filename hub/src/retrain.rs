//! Monitor → Retrain: a drift monitor whose `on_alert` is `retrain:<run>` repeats that run's
//! job when it alerts, and the alert records the run it started (or why none started).
//!
//! The whole loop lives here: the hook's syntax, its check when a monitor is created, and what
//! happens on an alert. The training side ([`Jobs::retrain`]) knows nothing of monitors; the
//! fleet side ([`Monitors`]) knows nothing of runs.

use shoal_fleet::monitor::{Alert, Monitor, Monitors};
use shoal_tracking::{Jobs, RetrainCause, TrackingResult};

/// The run a monitor's `on_alert` names for retraining: `retrain:<run id>`.
pub fn retrain_template(on_alert: &str) -> Option<&str> {
    on_alert
        .strip_prefix("retrain:")
        .map(str::trim)
        .filter(|id| !id.is_empty())
}

/// Starts retraining runs for alerts, and checks hooks when monitors are created.
#[derive(Clone)]
pub struct Retrainer {
    jobs: Jobs,
    monitors: Monitors,
}

impl Retrainer {
    pub fn new(jobs: Jobs, monitors: Monitors) -> Retrainer {
        Retrainer { jobs, monitors }
    }

    /// Checks a new monitor's `on_alert`: a `retrain:<run>` hook must name a run of the
    /// workspace that Shoal ran (so there is a job to repeat). Any other text is kept for an
    /// outside pipeline.
    ///
    /// # Errors
    /// What [`Jobs::check_retrain_template`] refuses.
    pub fn check_hook(&self, workspace: &str, on_alert: &str) -> TrackingResult<()> {
        match retrain_template(on_alert) {
            Some(template) => self
                .jobs
                .check_retrain_template(workspace, template)
                .map(drop),
            None => Ok(()),
        }
    }

    /// Starts the retraining `monitor` asks for on `alert`, if any, on a blocking thread, and
    /// records the run (or the refusal) on the alert.
    pub fn on_alert(&self, monitor: &Monitor, alert: &Alert) {
        let Some(template) = monitor.on_alert.as_deref().and_then(retrain_template) else {
            return;
        };
        let (retrainer, alert, template) = (self.clone(), alert.clone(), template.to_string());
        tokio::task::spawn_blocking(move || retrainer.retrain(&template, &alert));
    }

    fn retrain(&self, template: &str, alert: &Alert) {
        let cause = RetrainCause {
            workspace: alert.workspace.clone(),
            alert_id: alert.id.clone(),
            model: format!("{}@{}", alert.model, alert.version),
        };
        let outcome = match self.jobs.retrain(template, &cause) {
            Ok(run) => {
                tracing::info!(alert = %alert.id, run = %run.id, "drift alert started a retraining run");
                run.id
            }
            Err(error) => {
                tracing::warn!(alert = %alert.id, %error, "drift alert could not start a retraining run");
                format!("not started: {error}")
            }
        };
        if let Err(error) = self.monitors.record_retrain(alert, &outcome) {
            tracing::warn!(%error, "cannot record an alert's retraining");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_named_run_is_a_retrain_hook() {
        assert_eq!(retrain_template("retrain:abc"), Some("abc"));
        assert_eq!(retrain_template("retrain: abc "), Some("abc"));
        assert_eq!(retrain_template("retrain:"), None);
        assert_eq!(retrain_template("pipeline:nightly"), None);
    }
}
