//! The agent's reported state: what it serves, what it keeps for rollback, where its last update
//! stands, and whether anything is wrong.
//!
//! The updater and boot write it; the MQTT session publishes it (retained, on every change and
//! on every connection) and the HTTP API reads it. Each change bumps a `watch` generation so the
//! publisher wakes up; the state itself sits behind a short synchronous lock.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use shoal_proto::device::{ActiveModel, ReportedState, UpdatePhase, UpdateStatus};
use tokio::sync::watch;

/// The health string when nothing is wrong.
pub const HEALTH_OK: &str = "ok";

/// A shared handle on the reported state.
#[derive(Debug, Clone)]
pub struct Reporter {
    state: Arc<Mutex<ReportedState>>,
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
        };
        Reporter {
            state: Arc::new(Mutex::new(state)),
            changed: watch::Sender::new(0),
        }
    }

    /// The current state, stamped with the current time.
    pub fn snapshot(&self) -> ReportedState {
        let mut state = self.lock().clone();
        state.at_ms = unix_millis();
        state
    }

    /// Wakes up whenever the state changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn boot_epoch(&self) -> u64 {
        self.lock().boot_epoch
    }

    pub fn update_status(&self) -> Option<UpdateStatus> {
        self.lock().update.clone()
    }

    pub fn health(&self) -> String {
        self.lock().health.clone()
    }

    pub fn models(&self) -> (Option<ActiveModel>, Option<ActiveModel>) {
        let state = self.lock();
        (state.active.clone(), state.previous.clone())
    }

    pub fn set_update(&self, update: UpdateStatus) {
        self.modify(|state| state.update = Some(update));
    }

    pub fn set_models(&self, active: Option<ActiveModel>, previous: Option<ActiveModel>) {
        self.modify(|state| {
            state.active = active;
            state.previous = previous;
        });
    }

    pub fn set_health(&self, health: String) {
        self.modify(|state| state.health = health);
    }

    fn modify(&self, change: impl FnOnce(&mut ReportedState)) {
        let changed = {
            let mut state = self.lock();
            let before = state.clone();
            change(&mut state);
            *state != before
        };
        if changed {
            self.changed.send_modify(|generation| *generation += 1);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReportedState> {
        // Every change is a plain field assignment, so a poisoned state is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
}
