//! Booting into the last known good model, with or without a hub.
//!
//! `state.json` names the active and previous model by the signed desired states that brought
//! them. Each is trusted again only after its signature verifies with the configured hub key
//! (for this workspace and device) and the model file's sha256 and size match (and those of its
//! drift baseline, without which it is still served); the active one is tried first, then the previous one. Whatever goes
//! wrong is logged and summed up in the reported health; the agent still starts (without a
//! model, if need be) so its API and MQTT session come up.

use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use tracing::{info, warn};

use crate::inference::ServedModel;
use crate::manifest::VerifiedManifest;
use crate::report::{unix_millis, HEALTH_OK};
use crate::store::{Store, StoreError, StoredModel, StoredState};

/// What the agent starts with.
#[derive(Debug)]
pub struct Booted {
    /// The model to serve, if one survived the checks.
    pub served: Option<Arc<ServedModel>>,
    /// The model kept for rollback, if its manifest verifies and its file is there.
    pub previous: Option<VerifiedManifest>,
    /// The state to write back: this boot's epoch, and what is actually served.
    pub state: StoredState,
    /// "ok", or what went wrong.
    pub health: String,
}

/// Reads `state.json`, increments the boot epoch, and loads the last good model.
///
/// A corrupt `state.json` is moved aside; the epoch then restarts from the current Unix time in
/// seconds, which is above any count of restarts, so (device, boot epoch) stays unique for the
/// hub's de-duplication as long as the clock is set.
///
/// # Errors
/// Only for storage failures that leave nothing to work with; a bad state file, manifest or
/// model is reported in `health` instead.
pub async fn boot(
    store: &Store,
    hub_key: &VerifyingKey,
    workspace: &str,
    device: &str,
) -> Result<Booted, StoreError> {
    let mut problems = Vec::new();
    let read = store.blocking(|store| store.read_state()).await;
    let stored = match read {
        Ok(Some(state)) => state,
        Ok(None) => {
            info!(data_dir = %store.root().display(), "no state.json: a fresh device");
            StoredState::empty(0)
        }
        Err(StoreError::Task(message)) => return Err(StoreError::Task(message)),
        Err(error) => {
            let epoch = fallback_epoch();
            let aside = store
                .blocking(move |store| store.move_state_aside(epoch))
                .await;
            let moved = match aside {
                Ok(path) => format!("moved to {}", path.display()),
                Err(move_error) => format!("could not be moved aside: {move_error}"),
            };
            warn!(%error, moved = %moved, "state.json is unreadable; starting without a model");
            problems.push(format!(
                "state.json was unreadable ({error}) and {moved}; started without a model"
            ));
            StoredState::empty(epoch - 1)
        }
    };
    let boot_epoch = stored.boot_epoch.saturating_add(1);

    let mut served = None;
    let mut previous = None;
    if let Some(entry) = &stored.active {
        match load(store, hub_key, workspace, device, entry, &mut problems).await {
            Ok(model) => served = Some(Arc::new(model)),
            Err(problem) => {
                warn!(digest = %entry.digest, %problem, "the active model cannot be served");
                problems.push(format!(
                    "active model {} v{} cannot be served: {problem}",
                    entry.model, entry.version
                ));
            }
        }
    }
    if let Some(entry) = &stored.previous {
        if served.is_some() {
            match check_kept(store, hub_key, workspace, device, entry).await {
                Ok(verified) => previous = Some(verified),
                Err(problem) => {
                    warn!(digest = %entry.digest, %problem, "the previous model is no longer usable for rollback");
                    problems.push(format!(
                        "previous model {} v{} is unusable: {problem}",
                        entry.model, entry.version
                    ));
                }
            }
        } else {
            match load(store, hub_key, workspace, device, entry, &mut problems).await {
                Ok(model) => {
                    info!(digest = %entry.digest, "serving the previous model instead");
                    served = Some(Arc::new(model));
                }
                Err(problem) => {
                    warn!(digest = %entry.digest, %problem, "the previous model cannot be served either");
                    problems.push(format!(
                        "previous model {} v{} cannot be served: {problem}",
                        entry.model, entry.version
                    ));
                }
            }
        }
    }

    let state = StoredState {
        format: stored.format,
        boot_epoch,
        active: served
            .as_ref()
            .map(|s| StoredModel::from_verified(&s.verified)),
        previous: previous.as_ref().map(StoredModel::from_verified),
        accepted: stored.accepted.clone(),
    };
    let health = if problems.is_empty() {
        HEALTH_OK.to_string()
    } else {
        problems.join("; ")
    };
    Ok(Booted {
        served,
        previous,
        state,
        health,
    })
}

async fn load(
    store: &Store,
    hub_key: &VerifyingKey,
    workspace: &str,
    device: &str,
    entry: &StoredModel,
    problems: &mut Vec<String>,
) -> Result<ServedModel, String> {
    let verified = verify(hub_key, workspace, device, entry)?;
    let path = store.model_path(verified.digest());
    let baseline = verified.baseline().cloned();
    let served = ServedModel::load(&path, verified)
        .await
        .map_err(|e| e.to_string())?;
    let Some(reference) = baseline else {
        return Ok(served);
    };
    let read = store
        .blocking(move |store| store.read_baseline(&reference.digest, reference.size_bytes))
        .await;
    match read {
        Ok(baseline) => Ok(served.with_baseline(Some(baseline))),
        Err(error) => {
            // Served all the same; the hub's desired state brings the baseline again.
            warn!(%error, "the model's drift baseline cannot be read");
            problems.push(format!(
                "the drift baseline of {} v{} cannot be read ({error}); fetching it again",
                entry.model, entry.version
            ));
            Ok(served)
        }
    }
}

/// Checks a rollback candidate without loading it: signature, and a file of the right size.
/// Its sha256 is checked when (if) it is switched in.
async fn check_kept(
    store: &Store,
    hub_key: &VerifyingKey,
    workspace: &str,
    device: &str,
    entry: &StoredModel,
) -> Result<VerifiedManifest, String> {
    let verified = verify(hub_key, workspace, device, entry)?;
    let path = store.model_path(verified.digest());
    let metadata = tokio::fs::metadata(&path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if metadata.len() != verified.manifest.size_bytes {
        return Err(format!(
            "size mismatch: expected {} bytes, got {}",
            verified.manifest.size_bytes,
            metadata.len()
        ));
    }
    Ok(verified)
}

fn verify(
    hub_key: &VerifyingKey,
    workspace: &str,
    device: &str,
    entry: &StoredModel,
) -> Result<VerifiedManifest, String> {
    let signed = entry.signed_desired()?;
    VerifiedManifest::verify(&signed, hub_key, workspace, device).map_err(|e| e.to_string())
}

fn fallback_epoch() -> u64 {
    u64::try_from(unix_millis() / 1000).unwrap_or(0).max(1)
}
