//! The agent's reported state: what it serves, what it keeps for rollback, where its last update
//! stands, and whether anything is wrong.
//!
//! The updater and boot write it; the MQTT session publishes it (retained, on every change and
//! on every connection) and the HTTP API reads it. Each change bumps a `watch` generation so the
//! publisher wakes up; the state itself sits behind a short synchronous lock.
//!
//! The health string has two sources: the base health that boot and the updater set ("ok", or
//! what their last step found), and standing [`Condition`]s that other parts raise and clear
//! (the telemetry buffer had to be started afresh, the model's baseline is unusable). The
//! reported health is the base health followed by the conditions, or just the conditions when
//! the base is "ok", so a successful update never hides a telemetry loss.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use shoal_proto::device::{ActiveModel, DesiredRefusal, ReportedState, UpdatePhase, UpdateStatus};
use tokio::sync::watch;

/// The health string when nothing is wrong.
pub const HEALTH_OK: &str = "ok";

/// A standing problem reported in the health string until it is cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    /// The telemetry buffer was unreadable and started afresh, or cannot be used at all.
    TelemetryStore,
    /// Windows cannot be written to the telemetry buffer.
    TelemetryWrite,
    /// The active model's drift baseline, or its binding to the model's inputs, is unusable.
    Baseline,
}

/// A shared handle on the reported state.
#[derive(Debug, Clone)]
pub struct Reporter {
    state: Arc<Mutex<Health>>,
    /// Bumped on every change; the MQTT session waits on it.
    changed: watch::Sender<u64>,
}

impl Reporter {
    pub fn new(device_id: &str, boot_epoch: u64, health: String) -> Reporter {
        let state = ReportedState {
            device_id: device_id.to_string(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            arch: std::env::consts::ARCH.to_string(),
            active: None,
            previous: None,
            update: None,
            health,
            boot_epoch,
            at_ms: 0,
            refused: None,
        };
        Reporter {
            state: Arc::new(Mutex::new(Health {
                base: state.health.clone(),
                conditions: BTreeMap::new(),
                reported: state,
            })),
            changed: watch::Sender::new(0),
        }
    }

    /// The current state, stamped with the current time.
    pub fn snapshot(&self) -> ReportedState {
        let mut state = self.lock().reported.clone();
        state.at_ms = unix_millis();
        state
    }

    /// Wakes up whenever the state changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn boot_epoch(&self) -> u64 {
        self.lock().reported.boot_epoch
    }

    pub fn update_status(&self) -> Option<UpdateStatus> {
        self.lock().reported.update.clone()
    }

    /// The reported health: the base health and every standing condition.
    pub fn health(&self) -> String {
        self.lock().reported.health.clone()
    }

    pub fn models(&self) -> (Option<ActiveModel>, Option<ActiveModel>) {
        let state = self.lock();
        (
            state.reported.active.clone(),
            state.reported.previous.clone(),
        )
    }

    pub fn set_update(&self, update: UpdateStatus) {
        self.modify(|state| state.update = Some(update));
    }

    /// Records the last desired state the device refused (`None`: clears it, once a newer
    /// one is accepted).
    pub fn set_refused(&self, refused: Option<DesiredRefusal>) {
        self.modify(|state| state.refused = refused);
    }

    pub fn refused(&self) -> Option<DesiredRefusal> {
        self.lock().reported.refused.clone()
    }

    pub fn set_models(&self, active: Option<ActiveModel>, previous: Option<ActiveModel>) {
        self.modify(|state| {
            state.active = active;
            state.previous = previous;
        });
    }

    /// Sets the base health ("ok", or what boot or the last update found).
    pub fn set_health(&self, health: String) {
        self.modify_health(|state| state.base = health);
    }

    /// Raises (`Some`) or clears (`None`) a standing condition.
    pub fn set_condition(&self, condition: Condition, problem: Option<String>) {
        self.modify_health(|state| match problem {
            Some(problem) => {
                state.conditions.insert(condition, problem);
            }
            None => {
                state.conditions.remove(&condition);
            }
        });
    }

    fn modify_health(&self, change: impl FnOnce(&mut Health)) {
        let changed = {
            let mut state = self.lock();
            change(&mut state);
            let health = state.compose();
            let changed = state.reported.health != health;
            state.reported.health = health;
            changed
        };
        if changed {
            self.changed.send_modify(|generation| *generation += 1);
        }
    }

    fn modify(&self, change: impl FnOnce(&mut ReportedState)) {
        let changed = {
            let mut state = self.lock();
            let before = state.reported.clone();
            change(&mut state.reported);
            state.reported != before
        };
        if changed {
            self.changed.send_modify(|generation| *generation += 1);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        // Every change is a plain field assignment, so a poisoned state is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The reported state with the parts its health string is made of.
#[derive(Debug)]
struct Health {
    reported: ReportedState,
    base: String,
    conditions: BTreeMap<Condition, String>,
}

impl Health {
    fn compose(&self) -> String {
        let mut parts: Vec<&str> = Vec::with_capacity(self.conditions.len() + 1);
        if self.base != HEALTH_OK || self.conditions.is_empty() {
            parts.push(&self.base);
        }
        parts.extend(self.conditions.values().map(String::as_str));
        parts.join("; ")
    }
}

/// The lowercase name of a phase, as the HTTP API shows it.
pub fn phase_name(phase: i32) -> &'static str {
    match UpdatePhase::try_from(phase) {
        Ok(UpdatePhase::Downloading) => "downloading",
        Ok(UpdatePhase::Verifying) => "verifying",
        Ok(UpdatePhase::Active) => "active",
        Ok(UpdatePhase::Failed) => "failed",
        Ok(UpdatePhase::Unspecified) | Err(_) => "unspecified",
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_changes_wake_the_publisher() {
        let reporter = Reporter::new("cam-01", 4, HEALTH_OK.into());
        let mut changes = reporter.subscribe();
        assert!(!changes.has_changed().unwrap());
        reporter.set_health(HEALTH_OK.into());
        assert!(!changes.has_changed().unwrap());
        reporter.set_update(UpdateStatus {
            revision: 1,
            ..Default::default()
        });
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let snapshot = reporter.snapshot();
        assert_eq!(
            (snapshot.device_id.as_str(), snapshot.boot_epoch),
            ("cam-01", 4)
        );
        assert_eq!(snapshot.update.unwrap().revision, 1);
        assert!(snapshot.at_ms > 0);
        assert_eq!(phase_name(UpdatePhase::Downloading as i32), "downloading");
        assert_eq!(phase_name(99), "unspecified");
    }

    #[test]
    fn conditions_outlive_the_base_health() {
        let reporter = Reporter::new("cam-01", 1, "state.json was unreadable".into());
        let mut changes = reporter.subscribe();
        reporter.set_condition(Condition::TelemetryStore, Some("buffer lost".into()));
        assert!(changes.has_changed().unwrap());
        assert_eq!(reporter.health(), "state.json was unreadable; buffer lost");
        reporter.set_health(HEALTH_OK.into());
        assert_eq!(reporter.health(), "buffer lost");
        reporter.set_condition(Condition::Baseline, Some("bad baseline".into()));
        assert_eq!(reporter.snapshot().health, "buffer lost; bad baseline");
        reporter.set_condition(Condition::TelemetryStore, None);
        reporter.set_condition(Condition::Baseline, None);
        assert_eq!(reporter.health(), HEALTH_OK);
        changes.mark_unchanged();
        reporter.set_condition(Condition::Baseline, None);
        assert!(!changes.has_changed().unwrap());
    }
}
