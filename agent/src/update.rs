//! The model updater: from a desired state on MQTT to a verified, loaded, switched-in model.
//!
//! For each desired state (only the latest counts):
//! 1. decode it and verify its signature with the hub key, and that it is addressed to this
//!    workspace and device ([`VerifiedDesired`]);
//! 2. refuse a revision lower than the highest this device accepted (a replay), or the same
//!    revision with other contents; a higher one is recorded in `state.json` before anything
//!    else happens, so a replay is refused after a restart too. An identical re-publish of the
//!    accepted revision (after a hub restart) goes on as usual. Refusals are logged and
//!    reported (`ReportedState.refused`);
//! 3. if its model is already active (with its drift baseline), report ACTIVE and stop;
//! 4. download the model blob window by window into `downloads/<digest>.part`, resuming from
//!    the part file's length ([`Download`] does the bookkeeping, this module the I/O and
//!    timing), then its drift baseline blob the same way;
//! 5. check each file's sha256 and size against the manifest, move it to `models/` or
//!    `baselines/`;
//! 6. load the model and run a smoke inference ([`ServedModel::load`]);
//! 7. swap it in (telemetry closes the old model's window and starts one with the new model's
//!    baseline), write `state.json` (active = new, previous = old), delete other files.
//!
//! Any failure is reported (phase FAILED, with the reason) and the served model stays. A failed
//! (revision, digest) is not retried when the same desired state arrives again (brokers
//! re-deliver retained messages on every reconnect); a new revision or a restart retries. A
//! refused desired state that arrives during a download does not stop it.
//!
//! Progress is reported at the start of a download, at most every [`PROGRESS_INTERVAL`] while it
//! runs, and at every phase change.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::VerifyingKey;
use prost::Message;
use shoal_proto::device::{
    BlobChunk, BlobRef, DesiredBody, DesiredRefusal, DesiredState, UpdatePhase, UpdateStatus,
};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::AgentConfig;
use crate::download::{pacing_delay, ChunkOutcome, Download};
use crate::inference::{LoadError, ModelSlot, ServedModel};
use crate::manifest::{ManifestError, VerifiedDesired, VerifiedManifest};
use crate::mqtt::{Inbox, MqttLink};
use crate::report::{unix_millis, Condition, Reporter, HEALTH_OK};
use crate::store::{sha256_file, AcceptedRevision, Store, StoreError, StoredModel, StoredState};
use crate::telemetry::Recorder;

/// The shortest interval between two progress reports of one download.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Why an update failed; the message goes into the reported `UpdateStatus.error`.
#[derive(Debug, Error)]
pub enum UpdateError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("the drift baseline {digest} is unusable: {problem}")]
    Baseline { digest: String, problem: String },
    /// The hub answered a blob request with an error; its words are passed on as they are.
    #[error("{0}")]
    Blob(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("digest mismatch: expected {expected}, got {got}")]
    DigestMismatch { expected: String, got: String },
    #[error("size mismatch: expected {expected} bytes, got {got}")]
    SizeMismatch { expected: u64, got: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// A verified desired state this device should apply.
#[derive(Debug, Clone)]
struct Target {
    revision: u64,
    deployment: String,
    verified: VerifiedManifest,
    /// The payload it came in, to tell a re-delivery of it from a new desired state.
    payload: Bytes,
}

/// What to do with a desired state.
enum Evaluated {
    /// Apply this target (boxed: it is much larger than the other answers).
    Apply(Box<Target>),
    /// Accepted, and nothing to do (already active, no model, failed before).
    Nothing,
    /// Refused (reported): whatever was being applied goes on.
    Refused,
}

/// Why a desired state is refused.
#[derive(Debug, Error)]
enum Refusal {
    #[error("malformed desired state: {0}")]
    Malformed(prost::DecodeError),
    #[error(transparent)]
    Unverified(#[from] ManifestError),
    #[error("revision {revision} is older than revision {accepted}, which this device already accepted (a replay?)")]
    Older { revision: u64, accepted: u64 },
    #[error("revision {revision} was already accepted with other contents")]
    Changed { revision: u64 },
    #[error("cannot record the accepted revision {revision}: {source}")]
    Unrecorded { revision: u64, source: StoreError },
}

impl Target {
    fn digest(&self) -> &str {
        self.verified.digest()
    }

    fn size(&self) -> u64 {
        self.verified.manifest.size_bytes
    }

    fn status(&self, phase: UpdatePhase) -> UpdateStatus {
        UpdateStatus {
            revision: self.revision,
            deployment: self.deployment.clone(),
            model: self.verified.manifest.model.clone(),
            version: self.verified.manifest.version,
            digest: self.verified.manifest.digest.clone(),
            phase: phase as i32,
            error: String::new(),
            received_bytes: 0,
            total_bytes: self.size(),
            resumed_from: 0,
        }
    }
}

/// Which of a target's blobs a download is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blob {
    Model,
    Baseline,
}

/// How applying a target ended.
enum Applied {
    /// Switched in, or failed and reported.
    Done,
    /// A different desired state arrived meanwhile; handle this payload next.
    Interrupted(Bytes),
    /// The agent is shutting down.
    Cancelled,
}

/// How a download ended.
enum Downloaded {
    Complete,
    Failed(UpdateError),
    Interrupted(Bytes),
    Cancelled,
}

/// The task that applies desired states.
pub struct Updater {
    store: Store,
    slot: ModelSlot,
    reporter: Reporter,
    /// Told about every switch, so telemetry windows never mix two models.
    recorder: Recorder,
    link: MqttLink,
    hub_key: VerifyingKey,
    workspace: String,
    device: String,
    window: u64,
    chunk_timeout: Duration,
    rate_limit: u64,
    /// The model served before the active one, on disk for rollback.
    previous: Option<VerifiedManifest>,
    /// `state.json` as last written; shutdown writes it once more.
    persisted: Arc<Mutex<StoredState>>,
    /// The (revision, digest) whose update last failed, so re-deliveries do not loop.
    last_failure: Option<(u64, String)>,
}

impl Updater {
    #[allow(clippy::too_many_arguments)] // the agent's parts it works with, each used once
    pub fn new(
        config: &AgentConfig,
        store: Store,
        slot: ModelSlot,
        reporter: Reporter,
        recorder: Recorder,
        link: MqttLink,
        previous: Option<VerifiedManifest>,
        persisted: Arc<Mutex<StoredState>>,
    ) -> Updater {
        Updater {
            store,
            slot,
            reporter,
            recorder,
            link,
            hub_key: config.hub_public_key,
            workspace: config.workspace.clone(),
            device: config.device_id.clone(),
            window: config.download_window_bytes,
            chunk_timeout: config.chunk_timeout,
            rate_limit: config.download_rate_limit_bytes_per_sec,
            previous,
            persisted,
            last_failure: None,
        }
    }

    /// Applies desired states as they arrive, until `cancel` fires.
    pub async fn run(mut self, mut inbox: Inbox, cancel: CancellationToken) {
        let mut next: Option<Bytes> = None;
        // The accepted desired state being applied, resumed when a refused one interrupts it.
        let mut applying: Option<Bytes> = None;
        loop {
            let payload = match next.take() {
                Some(payload) => payload,
                None => tokio::select! {
                    _ = cancel.cancelled() => break,
                    changed = inbox.desired.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let latest = inbox.desired.borrow_and_update().clone();
                        match latest {
                            Some(payload) => payload,
                            None => continue,
                        }
                    }
                },
            };
            let target = match self.evaluate(&payload).await {
                Evaluated::Apply(target) => target,
                Evaluated::Nothing => {
                    applying = None;
                    continue;
                }
                Evaluated::Refused => {
                    next = applying.take();
                    continue;
                }
            };
            applying = Some(payload);
            match self.apply(*target, &mut inbox, &cancel).await {
                Applied::Done => applying = None,
                Applied::Interrupted(payload) => next = Some(payload),
                Applied::Cancelled => break,
            }
        }
        debug!("updater stopped");
    }

    /// Decodes and verifies a desired state, checks and records its revision, and reports
    /// what needs no download.
    async fn evaluate(&mut self, payload: &Bytes) -> Evaluated {
        let desired = match self.accept(payload).await {
            Ok(desired) => desired,
            Err((revision, refusal)) => {
                warn!(revision, reason = %refusal, "desired state refused");
                self.reporter.set_refused(Some(DesiredRefusal {
                    revision,
                    reason: refusal.to_string(),
                    at_ms: unix_millis(),
                }));
                return Evaluated::Refused;
            }
        };
        let Some(verified) = desired.model else {
            debug!(
                revision = desired.revision,
                "the desired state names no model; keeping the current one"
            );
            return Evaluated::Nothing;
        };
        let target = Target {
            revision: desired.revision,
            deployment: desired.deployment,
            verified,
            payload: payload.clone(),
        };
        let active = self.slot.current();
        // The same model with a new drift baseline (set after it was deployed), or one whose
        // baseline could not be read, goes through `apply` again: the model file is on disk,
        // so only the baseline is fetched and the windows re-bound.
        if active.as_ref().is_some_and(|a| {
            a.digest() == target.digest()
                && a.verified.baseline() == target.verified.baseline()
                && a.has_its_baseline()
        }) {
            debug!(revision = target.revision, digest = %target.digest(), "the desired model is already active");
            let mut status = target.status(UpdatePhase::Active);
            status.received_bytes = target.size();
            self.reporter.set_update(status);
            return Evaluated::Nothing;
        }
        if self.last_failure.as_ref() == Some(&(target.revision, target.digest().to_string())) {
            debug!(
                revision = target.revision,
                "this revision already failed; waiting for a new one"
            );
            return Evaluated::Nothing;
        }
        Evaluated::Apply(Box::new(target))
    }

    /// Verifies a desired state and checks its revision against the highest accepted one,
    /// recording a higher one durably before it is acted on. Refusals come with the revision
    /// they carried (0 when unreadable).
    async fn accept(&mut self, payload: &[u8]) -> Result<VerifiedDesired, (u64, Refusal)> {
        let state = DesiredState::decode(payload).map_err(|e| (0, Refusal::Malformed(e)))?;
        // The revision it claims, for the report only: nothing of it is trusted yet.
        let claimed = DesiredBody::decode(state.body.as_slice()).map_or(0, |b| b.revision);
        let desired = VerifiedDesired::verify(&state, &self.hub_key, &self.workspace, &self.device)
            .map_err(|e| (claimed, Refusal::Unverified(e)))?;
        let revision = desired.revision;
        let accepted = self
            .persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .accepted
            .clone();
        match &accepted {
            Some(held) if revision < held.revision => {
                return Err((
                    revision,
                    Refusal::Older {
                        revision,
                        accepted: held.revision,
                    },
                ));
            }
            Some(held) if revision == held.revision => {
                if held.body_sha256 != desired.body_sha256 {
                    return Err((revision, Refusal::Changed { revision }));
                }
                // The revision already held, published again: nothing new to record.
                return Ok(desired);
            }
            _ => {}
        }
        let state = {
            let mut persisted = self
                .persisted
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            persisted.accepted = Some(AcceptedRevision {
                revision,
                body_sha256: desired.body_sha256.clone(),
            });
            persisted.clone()
        };
        if let Err(source) = self
            .store
            .blocking(move |store| store.write_state(&state))
            .await
        {
            // Not applied: a revision that is not on disk could be replayed after a restart.
            let mut persisted = self
                .persisted
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            persisted.accepted = accepted;
            return Err((revision, Refusal::Unrecorded { revision, source }));
        }
        info!(revision, deployment = %desired.deployment, "desired state accepted");
        self.reporter.set_refused(None);
        Ok(desired)
    }

    async fn apply(
        &mut self,
        target: Target,
        inbox: &mut Inbox,
        cancel: &CancellationToken,
    ) -> Applied {
        info!(
            revision = target.revision,
            deployment = %target.deployment,
            model = %target.verified.manifest.model,
            version = target.verified.manifest.version,
            digest = %target.digest(),
            size_bytes = target.size(),
            "applying desired model"
        );
        let digest = target.digest().to_string();
        let model_path = self.store.model_path(&digest);
        let mut status = target.status(UpdatePhase::Verifying);
        let model_blob = BlobRef {
            digest: digest.clone(),
            size_bytes: target.size(),
        };
        // The model, then its drift baseline: each fetched unless it is on disk already (the
        // previous model for a rollback, or one verified before an interrupted switch).
        let mut blobs = vec![(Blob::Model, model_blob)];
        blobs.extend(
            target
                .verified
                .baseline()
                .cloned()
                .map(|b| (Blob::Baseline, b)),
        );
        for (kind, blob) in &blobs {
            let path = match kind {
                Blob::Model => model_path.clone(),
                Blob::Baseline => self.store.baseline_path(&blob.digest),
            };
            if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                debug!(digest = %blob.digest, ?kind, "already on disk; skipping the download");
                continue;
            }
            match self
                .download(blob, &target, &mut status, inbox, cancel)
                .await
            {
                Downloaded::Complete => {}
                Downloaded::Failed(error) => return self.fail(&target, status, error),
                Downloaded::Interrupted(payload) => return Applied::Interrupted(payload),
                Downloaded::Cancelled => return Applied::Cancelled,
            }
            status.phase = UpdatePhase::Verifying as i32;
            self.reporter.set_update(status.clone());
            if let Err(error) = self.verify_part(*kind, blob).await {
                return self.fail(&target, status, error);
            }
        }
        status.phase = UpdatePhase::Verifying as i32;
        status.received_bytes = target.size();
        status.total_bytes = target.size();
        self.reporter.set_update(status.clone());
        let baseline = match target.verified.baseline().cloned() {
            None => None,
            Some(blob) => {
                let read = self
                    .store
                    .blocking(move |store| store.read_baseline(&blob.digest, blob.size_bytes))
                    .await;
                match read {
                    Ok(baseline) => Some(baseline),
                    Err(error) => {
                        let digest = target.verified.baseline().map(|b| b.digest.clone());
                        if let Some(digest) = digest.clone() {
                            let _ = self
                                .store
                                .blocking(move |store| store.remove_baseline(&digest))
                                .await;
                        }
                        let error = UpdateError::Baseline {
                            digest: digest.unwrap_or_default(),
                            problem: error.to_string(),
                        };
                        return self.fail(&target, status, error);
                    }
                }
            }
        };

        let loaded = tokio::select! {
            loaded = ServedModel::load(&model_path, target.verified.clone()) => loaded,
            _ = cancel.cancelled() => return Applied::Cancelled,
        };
        let served = match loaded {
            Ok(served) => served.with_baseline(baseline),
            Err(error) => {
                let remove = self
                    .store
                    .blocking(move |store| store.remove_model(&digest))
                    .await;
                if let Err(remove_error) = remove {
                    warn!(error = %remove_error, "cannot remove a model that failed to load");
                }
                return self.fail(&target, status, error.into());
            }
        };
        self.switch(served, status).await;
        Applied::Done
    }

    /// Downloads one blob of `target` (its model or its baseline) into its part file.
    async fn download(
        &mut self,
        blob: &BlobRef,
        target: &Target,
        status: &mut UpdateStatus,
        inbox: &mut Inbox,
        cancel: &CancellationToken,
    ) -> Downloaded {
        let digest = blob.digest.clone();
        let total = blob.size_bytes;
        status.total_bytes = total;
        let part_path = self.store.part_path(&digest);
        let opened = {
            let digest = digest.clone();
            self.store
                .blocking(move |store| store.open_part(&digest))
                .await
        };
        let (file, mut have) = match opened {
            Ok(opened) => opened,
            Err(error) => return Downloaded::Failed(error.into()),
        };
        let mut file = tokio::fs::File::from_std(file);
        if have > total {
            warn!(digest = %digest, have, total, "the partial download is longer than the model; starting over");
            if let Err(source) = file.set_len(0).await {
                return Downloaded::Failed(UpdateError::Write {
                    path: part_path,
                    source,
                });
            }
            have = 0;
        }
        let mut download = Download::new(&digest, total, have, self.window);
        if have > 0 {
            info!(digest = %digest, resumed_from = have, total, "resuming the download");
        } else {
            info!(digest = %digest, total, "starting the download");
        }
        status.phase = UpdatePhase::Downloading as i32;
        status.received_bytes = have;
        status.resumed_from = download.resumed_from();
        self.reporter.set_update(status.clone());

        // Chunks queued for an earlier download are stale; they would be ignored anyway.
        while inbox.chunks.try_recv().is_ok() {}
        let mut sessions = self.link.sessions.clone();
        sessions.borrow_and_update();
        let started = Instant::now();
        let mut received_this_run = 0u64;
        let mut last_report = Instant::now();
        let mut send_at = Some(Instant::now());
        let mut deadline = Instant::now() + self.chunk_timeout;

        while !download.is_complete() {
            let wake_at = send_at.unwrap_or(deadline);
            tokio::select! {
                _ = cancel.cancelled() => {
                    sync_quietly(&file).await;
                    return Downloaded::Cancelled;
                }
                changed = inbox.desired.changed() => {
                    if changed.is_err() {
                        return Downloaded::Cancelled;
                    }
                    let latest = inbox.desired.borrow_and_update().clone();
                    let Some(payload) = latest else { continue };
                    if payload == target.payload {
                        debug!("the desired state being applied was delivered again; continuing");
                        continue;
                    }
                    // Judged by `evaluate`: a refused one resumes this download from its part
                    // file, an accepted one replaces it.
                    info!(digest = %digest, offset = download.offset(), "a new desired state interrupts the download");
                    sync_quietly(&file).await;
                    return Downloaded::Interrupted(payload);
                }
                changed = sessions.changed() => {
                    if changed.is_ok() {
                        sessions.borrow_and_update();
                        // A new session: whatever was in flight is lost; ask again now.
                        if download.offset() > 0 {
                            info!(digest = %digest, resumed_from = download.offset(), "resuming the download after reconnecting");
                            status.resumed_from = download.offset();
                            self.reporter.set_update(status.clone());
                        }
                        send_at = Some(Instant::now());
                    }
                }
                chunk = inbox.chunks.recv() => {
                    let Some(payload) = chunk else {
                        return Downloaded::Cancelled;
                    };
                    let chunk = match BlobChunk::decode(payload) {
                        Ok(chunk) => chunk,
                        Err(error) => {
                            debug!(%error, "ignoring a malformed blob chunk");
                            continue;
                        }
                    };
                    match download.accept(&chunk) {
                        ChunkOutcome::Ignored(why) => {
                            debug!(offset = chunk.offset, expected = download.offset(), why, "ignoring a chunk");
                        }
                        ChunkOutcome::Failed(error) => {
                            sync_quietly(&file).await;
                            return Downloaded::Failed(UpdateError::Blob(error));
                        }
                        ChunkOutcome::Append { window_complete, download_complete } => {
                            if let Err(source) = file.write_all(&chunk.data).await {
                                return Downloaded::Failed(UpdateError::Write { path: part_path, source });
                            }
                            received_this_run += chunk.data.len() as u64;
                            deadline = Instant::now() + self.chunk_timeout;
                            if window_complete {
                                // What is on disk is where a killed agent resumes.
                                if let Err(source) = file.sync_data().await {
                                    return Downloaded::Failed(UpdateError::Write { path: part_path, source });
                                }
                                if !download_complete {
                                    let pause = pacing_delay(received_this_run, started.elapsed(), self.rate_limit);
                                    send_at = Some(Instant::now() + pause);
                                }
                            }
                            status.received_bytes = download.offset();
                            if last_report.elapsed() >= PROGRESS_INTERVAL {
                                last_report = Instant::now();
                                self.reporter.set_update(status.clone());
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    if send_at.take().is_none() {
                        debug!(digest = %digest, offset = download.offset(), "no chunk within the timeout; asking again");
                    }
                    self.request_next(&mut download);
                    deadline = Instant::now() + self.chunk_timeout;
                }
            }
        }
        if let Err(source) = file.sync_all().await {
            return Downloaded::Failed(UpdateError::Write {
                path: part_path,
                source,
            });
        }
        info!(digest = %digest, bytes = total, resumed_from = status.resumed_from, "download complete");
        status.received_bytes = total;
        Downloaded::Complete
    }

    fn request_next(&self, download: &mut Download) {
        let Some(request) = download.next_request() else {
            return;
        };
        if !self.link.is_connected() {
            debug!(
                offset = request.offset,
                "not connected; asking once a session is up"
            );
            return;
        }
        debug!(
            offset = request.offset,
            length = request.length,
            "requesting blob bytes"
        );
        if let Err(error) = self.link.request_blob(&request) {
            debug!(%error, "cannot queue the blob request; asking again after the timeout");
        }
    }

    /// Checks a complete part file against its reference and moves it to `models/` or
    /// `baselines/`; deletes it when it does not match.
    async fn verify_part(&self, kind: Blob, blob: &BlobRef) -> Result<(), UpdateError> {
        let digest = blob.digest.clone();
        let size = blob.size_bytes;
        self.store
            .blocking(move |store| {
                let (got, length) = sha256_file(&store.part_path(&digest))?;
                let mismatch = if got != digest {
                    Some(UpdateError::DigestMismatch {
                        expected: digest.clone(),
                        got,
                    })
                } else if length != size {
                    Some(UpdateError::SizeMismatch {
                        expected: size,
                        got: length,
                    })
                } else {
                    None
                };
                if let Some(error) = mismatch {
                    store.remove_part(&digest)?;
                    return Ok(Err(error));
                }
                match kind {
                    Blob::Model => store.promote_part(&digest)?,
                    Blob::Baseline => store.promote_baseline_part(&digest)?,
                };
                Ok(Ok(()))
            })
            .await?
    }

    /// Serves `served`, records it in `state.json`, cleans up, and reports ACTIVE.
    async fn switch(&mut self, served: ServedModel, mut status: UpdateStatus) {
        let served = Arc::new(served);
        let new_digest = served.digest().to_string();
        let old = self.slot.replace(Some(served.clone()));
        let baseline_problem = self.recorder.activate(
            &served.verified.manifest,
            served.baseline.as_ref(),
            served.model.signature(),
            unix_millis(),
        );
        if let Some(problem) = &baseline_problem {
            warn!(%problem, "the new model's drift baseline cannot be fully used; serving it anyway");
        }
        self.reporter
            .set_condition(Condition::Baseline, baseline_problem);
        let previous = match old {
            Some(old) if old.digest() != new_digest => Some(old.verified.clone()),
            _ => self.previous.take().filter(|p| p.digest() != new_digest),
        };
        self.previous = previous.clone();
        info!(
            model = %served.name(),
            version = served.version(),
            digest = %new_digest,
            previous = previous.as_ref().map(|p| p.digest().to_string()).unwrap_or_default(),
            "switched to the new model"
        );

        let state = {
            let mut persisted = self
                .persisted
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            persisted.active = Some(StoredModel::from_verified(&served.verified));
            persisted.previous = previous.as_ref().map(StoredModel::from_verified);
            persisted.clone()
        };
        let keep: Vec<String> = std::iter::once(new_digest.clone())
            .chain(previous.as_ref().map(|p| p.digest().to_string()))
            .collect();
        let keep_baselines: Vec<String> = std::iter::once(&served.verified)
            .chain(previous.as_ref())
            .filter_map(|m| m.baseline().map(|b| b.digest.clone()))
            .collect();
        let written = self
            .store
            .blocking(move |store| {
                store.write_state(&state)?;
                let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
                let removed = store.remove_models_except(&keep)?;
                let keep: Vec<&str> = keep_baselines.iter().map(String::as_str).collect();
                store.remove_baselines_except(&keep)?;
                store.remove_parts_except(&[])?;
                Ok(removed)
            })
            .await;
        match written {
            Ok(removed) => {
                if !removed.is_empty() {
                    debug!(?removed, "removed old model files");
                }
                self.reporter.set_health(HEALTH_OK.to_string());
            }
            Err(error) => {
                warn!(%error, "the new model is served but state.json was not updated");
                self.reporter
                    .set_health(format!("cannot record the active model: {error}"));
            }
        }
        self.last_failure = None;
        status.phase = UpdatePhase::Active as i32;
        status.error.clear();
        status.received_bytes = status.total_bytes;
        self.reporter.set_models(
            Some(served.verified.active_model()),
            previous.as_ref().map(VerifiedManifest::active_model),
        );
        self.reporter.set_update(status);
    }

    fn fail(&mut self, target: &Target, status: UpdateStatus, error: UpdateError) -> Applied {
        self.last_failure = Some((target.revision, target.digest().to_string()));
        self.report_failure(status, error);
        Applied::Done
    }

    fn report_failure(&self, mut status: UpdateStatus, error: UpdateError) {
        warn!(revision = status.revision, digest = %status.digest, %error, "update failed; keeping the current model");
        status.phase = UpdatePhase::Failed as i32;
        status.error = error.to_string();
        self.reporter.set_update(status);
    }
}

async fn sync_quietly(file: &tokio::fs::File) {
    if let Err(error) = file.sync_data().await {
        warn!(%error, "cannot sync the partial download");
    }
}
