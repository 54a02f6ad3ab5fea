//! Fleet telemetry: windows from devices, stored once, rolled up by the hour, and merged into
//! drift reports over any time range and set of devices.
//!
//! A window is identified by (workspace, device, boot epoch, seq). [`Telemetry::ingest`]
//! claims that identity with a compare-and-swap before storing, so a window re-sent after a
//! lost acknowledgement is recognised and only acknowledged again. Raw windows are kept as
//! the device encoded them (protobuf), keyed so that one model version's windows are ordered
//! by time:
//!
//! ```text
//! telemetry_windows  {ws}/{model}/{version:010}/{end_ms:016}/{device}/{boot:020}/{seq:020}
//! telemetry_ids      {ws}/{device}/{boot:020}/{seq:020}                     → window key
//! telemetry_hourly   {ws}/{model}/{version:010}/{hour_ms:016}/{device}      → HourlyRollup
//! telemetry_devices  {ws}/{device}                                          → DeviceTelemetry
//! telemetry_received {ws}/{model}/{version:010}/{received_ms:016}/{device}/{boot:020}/{seq:020}
//!                                                                           → window key
//! ```
//!
//! Monitors read windows in the order the hub received them (`telemetry_received`), so a
//! window that arrives late, after an outage, is still evaluated once. The receive time is
//! taken and indexed under a lock that [`Telemetry::received_cutoff`] also takes: every
//! window indexed before a cutoff is visible to a reader of that cutoff.
//!
//! A window belongs to the hour of its end. A report over `[since, until)` merges the hourly
//! roll-ups of the whole hours inside the range and the raw windows of the partial hours at
//! its edges: the same windows, exactly, as merging raw windows throughout; raw windows can
//! then be deleted after their retention while roll-ups stay.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use serde::{Deserialize, Serialize};
use shoal_drift::{evaluate, DriftReport, Thresholds, WindowSummary};
use shoal_proto::device::{DeviceHealth, DropCounts, TelemetryWindow};
use tokio::sync::broadcast;

use crate::error::{FleetError, FleetResult};
use crate::fleet::Fleet;
use shoal_registry::registry::Registry;
use shoal_store::storage::Records;

pub const WINDOWS_TREE: &str = "telemetry_windows";
pub const IDS_TREE: &str = "telemetry_ids";
pub const HOURLY_TREE: &str = "telemetry_hourly";
pub const DEVICES_TREE: &str = "telemetry_devices";
pub const RECEIVED_TREE: &str = "telemetry_received";

const HOUR_MS: i64 = 3_600_000;
/// Below this many values a feature's drift is "not enough data", unless a request says.
pub const DEFAULT_MIN_ROWS: u64 = 100;
/// How long raw windows are kept; hourly roll-ups outlive them.
pub const DEFAULT_RAW_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Live windows buffered for slow `telemetry tail` readers before they miss some.
const TAIL_CAPACITY: usize = 1024;

/// The name a drift status has in the API, the CLI and alerts.
pub fn status_name(status: shoal_drift::DriftStatus) -> &'static str {
    use shoal_drift::DriftStatus;
    match status {
        DriftStatus::None => "none",
        DriftStatus::Moderate => "moderate",
        DriftStatus::Significant => "significant",
        DriftStatus::NotEnoughData => "not_enough_data",
    }
}

/// One device's windows of one model version in one hour, merged.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HourlyRollup {
    pub windows: u64,
    pub inferences: u64,
    pub errors: BTreeMap<String, u64>,
    /// `None` until a window with summaries arrives.
    pub summary: Option<WindowSummary>,
    /// Windows whose summaries did not fit the others (another baseline): counted, not merged.
    pub unmerged: u64,
}

/// What the hub holds of one device's telemetry.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct DeviceTelemetry {
    pub windows: u64,
    pub duplicates: u64,
    pub inferences: u64,
    pub last_window_ms: i64,
    /// The device's drop accounting as its latest window reported it (cumulative); the
    /// protobuf `DropCounts`, encoded, so no field is lost in translation.
    #[serde(default)]
    pub dropped: Vec<u8>,
    #[serde(default)]
    pub health: Vec<u8>,
    /// The highest (boot epoch, seq) seen, to tell the latest window from a late re-send.
    #[serde(default)]
    pub latest: (u64, u64),
    /// Messages on the device's topics the hub refused, by reason (see [`Rejection`]).
    #[serde(default)]
    pub rejected: BTreeMap<String, u64>,
}

impl DeviceTelemetry {
    pub fn dropped(&self) -> DropCounts {
        DropCounts::decode(self.dropped.as_slice()).unwrap_or_default()
    }

    pub fn health(&self) -> DeviceHealth {
        DeviceHealth::decode(self.health.as_slice()).unwrap_or_default()
    }
}

/// What [`Telemetry::ingest`] did with a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    Stored {
        seq: u64,
    },
    Duplicate {
        seq: u64,
    },
    /// Refused for good, and counted: sending it again cannot change the answer, so it is
    /// acknowledged like a stored one.
    Rejected {
        seq: u64,
        reason: Rejection,
    },
}

/// Why the hub refused a message on a device's topic; each is counted per device
/// ([`DeviceTelemetry::rejected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The payload names another device than the topic it arrived on.
    WrongDevice,
    /// A window about a model version the device is not assigned.
    UnassignedModel,
    /// A window whose (boot epoch, seq) the hub already holds with other contents.
    IdentityConflict,
    /// The payload does not decode.
    Malformed,
}

impl Rejection {
    /// The name the counters, the API and the CLI use.
    pub fn name(self) -> &'static str {
        match self {
            Rejection::WrongDevice => "wrong_device",
            Rejection::UnassignedModel => "unassigned_model",
            Rejection::IdentityConflict => "identity_conflict",
            Rejection::Malformed => "malformed",
        }
    }
}

/// A window as it was stored, for live tails.
#[derive(Debug, Clone)]
pub struct WindowEvent {
    pub workspace: String,
    pub window: TelemetryWindow,
    pub received_at_ms: i64,
}

/// Which windows a drift report merges, and when a feature has too little data.
#[derive(Debug, Clone, Default)]
pub struct DriftQuery {
    pub workspace: String,
    pub model: String,
    /// A version number, an alias or "latest".
    pub reference: String,
    /// The range, in Unix milliseconds; `to_ms` of 0 or less means unbounded.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Empty: every device.
    pub devices: Vec<String>,
    /// 0: [`DEFAULT_MIN_ROWS`].
    pub min_rows: u64,
}

/// A drift report with what it was computed from.
#[derive(Debug, Clone)]
pub struct DriftResult {
    pub model: String,
    pub version: u32,
    pub since_ms: i64,
    pub until_ms: i64,
    pub windows: u64,
    pub devices: u64,
    pub inferences: u64,
    pub errors: BTreeMap<String, u64>,
    pub min_rows: u64,
    /// `None` when the version has no baseline.
    pub report: Option<DriftReport>,
    pub note: String,
}

#[derive(Clone)]
pub struct Telemetry {
    records: Records,
    registry: Registry,
    fleet: Fleet,
    tail: broadcast::Sender<WindowEvent>,
    /// Orders receive-time indexing against cutoffs (see the module doc).
    received: std::sync::Arc<std::sync::Mutex<()>>,
}

fn window_key(ws: &str, w: &TelemetryWindow, model: &str, version: u32) -> String {
    format!(
        "{ws}/{model}/{version:010}/{:016}/{}/{:020}/{:020}",
        w.end_ms.max(0),
        w.device_id,
        w.boot_epoch,
        w.seq
    )
}

fn id_key(ws: &str, device: &str, boot: u64, seq: u64) -> String {
    format!("{ws}/{device}/{boot:020}/{seq:020}")
}

fn hour_of(ms: i64) -> i64 {
    ms.max(0) / HOUR_MS * HOUR_MS
}

impl Telemetry {
    pub fn new(records: Records, registry: Registry, fleet: Fleet) -> Telemetry {
        let (tail, _) = broadcast::channel(TAIL_CAPACITY);
        Telemetry {
            records,
            registry,
            fleet,
            tail,
            received: Default::default(),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Live windows as they are stored.
    pub fn subscribe(&self) -> broadcast::Receiver<WindowEvent> {
        self.tail.subscribe()
    }

    /// Stores a window sent on `{ws}/dev/{device}/telemetry`, once. `device` is the one the
    /// topic names: the identity of a window is always (topic device, boot epoch, seq).
    ///
    /// Only windows about the model version the device is assigned (or the one it is moving
    /// away from) are stored; others are rejected and counted. A window whose identity the
    /// hub already holds is a duplicate when its bytes are the same, and rejected as an
    /// identity conflict otherwise.
    ///
    /// # Errors
    /// `InvalidArgument` for an undecodable window, one that names another device or no
    /// model (counted when the device is known); `NotFound` for an unknown device; storage
    /// errors.
    pub fn ingest(&self, workspace: &str, device: &str, payload: &[u8]) -> FleetResult<Ingested> {
        let window = match TelemetryWindow::decode(payload) {
            Ok(window) => window,
            Err(e) => {
                self.count_rejected(workspace, device, Rejection::Malformed)?;
                return Err(FleetError::invalid(format!(
                    "malformed telemetry window: {e}"
                )));
            }
        };
        if window.device_id != device {
            self.count_rejected(workspace, device, Rejection::WrongDevice)?;
            return Err(FleetError::invalid(format!(
                "window of device '{}' arrived on the topic of '{device}'",
                window.device_id
            )));
        }
        let Some(model) = window.model.as_ref() else {
            self.count_rejected(workspace, device, Rejection::Malformed)?;
            return Err(FleetError::invalid("telemetry window names no model"));
        };
        let record = self.fleet.get(workspace, device)?;
        let assigned = record
            .desired
            .as_ref()
            .is_some_and(|d| d.accepts_windows_of(&model.model, model.version));
        if !assigned {
            tracing::warn!(%workspace, %device, model = %model.model, version = model.version, "telemetry window for a model version the device is not assigned");
            self.count_rejected(workspace, device, Rejection::UnassignedModel)?;
            return Ok(Ingested::Rejected {
                seq: window.seq,
                reason: Rejection::UnassignedModel,
            });
        }
        let key = window_key(workspace, &window, &model.model, model.version);
        let id = id_key(workspace, device, window.boot_epoch, window.seq);
        if !self
            .records
            .insert_new_bytes(IDS_TREE, &id, key.as_bytes())?
        {
            let held = match self.records.get_bytes(IDS_TREE, &id)? {
                Some(held_key) => match String::from_utf8(held_key) {
                    Ok(held_key) => self.records.get_bytes(WINDOWS_TREE, &held_key)?,
                    Err(_) => None,
                },
                None => None,
            };
            if held.as_deref().is_some_and(|held| held != payload) {
                tracing::warn!(%workspace, %device, boot_epoch = window.boot_epoch, seq = window.seq, "a window claims the identity of another one the hub holds");
                self.count_rejected(workspace, device, Rejection::IdentityConflict)?;
                return Ok(Ingested::Rejected {
                    seq: window.seq,
                    reason: Rejection::IdentityConflict,
                });
            }
            self.records.update::<DeviceTelemetry, FleetError>(
                DEVICES_TREE,
                &format!("{workspace}/{device}"),
                |current| {
                    let mut stats = current.unwrap_or_default();
                    stats.duplicates += 1;
                    Ok(stats)
                },
            )?;
            return Ok(Ingested::Duplicate { seq: window.seq });
        }
        self.records.put_bytes(WINDOWS_TREE, &key, payload)?;
        self.roll_up(workspace, &window, &model.model, model.version)?;
        let now = {
            let _order = self.received.lock().unwrap_or_else(|p| p.into_inner());
            let now = shoal_store::now_ms();
            let received = format!(
                "{workspace}/{}/{:010}/{now:016}/{device}/{:020}/{:020}",
                model.model, model.version, window.boot_epoch, window.seq
            );
            self.records
                .put_bytes(RECEIVED_TREE, &received, key.as_bytes())?;
            now
        };
        self.records.update::<DeviceTelemetry, FleetError>(
            DEVICES_TREE,
            &format!("{workspace}/{device}"),
            |current| {
                let mut stats = current.unwrap_or_default();
                stats.windows += 1;
                stats.inferences += window.inferences;
                stats.last_window_ms = stats.last_window_ms.max(window.end_ms);
                if (window.boot_epoch, window.seq) >= stats.latest {
                    stats.latest = (window.boot_epoch, window.seq);
                    stats.dropped = window.dropped.unwrap_or_default().encode_to_vec();
                    stats.health = window.health.unwrap_or_default().encode_to_vec();
                }
                Ok(stats)
            },
        )?;
        let seq = window.seq;
        let _ = self.tail.send(WindowEvent {
            workspace: workspace.into(),
            window,
            received_at_ms: now,
        });
        Ok(Ingested::Stored { seq })
    }

    /// Counts a refused message on a known device's topics. Unknown devices are not counted:
    /// a topic name alone must not create records.
    ///
    /// # Errors
    /// Storage errors.
    pub fn count_rejected(
        &self,
        workspace: &str,
        device: &str,
        reason: Rejection,
    ) -> FleetResult<()> {
        match self.fleet.get(workspace, device) {
            Ok(_) => {}
            Err(FleetError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        self.records.update::<DeviceTelemetry, FleetError>(
            DEVICES_TREE,
            &format!("{workspace}/{device}"),
            |current| {
                let mut stats = current.unwrap_or_default();
                *stats.rejected.entry(reason.name().to_string()).or_default() += 1;
                Ok(stats)
            },
        )?;
        Ok(())
    }

    /// Makes every window stored so far durable: the hub acknowledges windows only after this
    /// (once per batch), so an acknowledged window survives a crash.
    ///
    /// # Errors
    /// Storage errors.
    pub fn flush(&self) -> FleetResult<()> {
        Ok(self.records.flush()?)
    }

    fn roll_up(
        &self,
        workspace: &str,
        window: &TelemetryWindow,
        model: &str,
        version: u32,
    ) -> FleetResult<()> {
        let key = format!(
            "{workspace}/{model}/{version:010}/{:016}/{}",
            hour_of(window.end_ms),
            window.device_id
        );
        // A window without summaries (its version had no baseline yet) cannot set the hour's
        // shape: it would make every later window of the hour unmergeable.
        let summary = shoal_drift::wire::summary_from_wire(&window.features, &window.outputs)
            .ok()
            .filter(|s| !(s.features.is_empty() && s.outputs.is_empty()));
        self.records
            .update::<HourlyRollup, FleetError>(HOURLY_TREE, &key, |current| {
                let mut rollup = current.unwrap_or_default();
                rollup.windows += 1;
                rollup.inferences += window.inferences;
                for (kind, n) in &window.errors {
                    *rollup.errors.entry(kind.clone()).or_default() += n;
                }
                match (&mut rollup.summary, &summary) {
                    (_, None) => rollup.unmerged += 1,
                    (None, Some(s)) => rollup.summary = Some(s.clone()),
                    (Some(total), Some(s)) => {
                        if total.merge(s).is_err() {
                            rollup.unmerged += 1;
                        }
                    }
                }
                Ok(rollup)
            })?;
        Ok(())
    }

    /// The telemetry the hub holds of a device.
    ///
    /// # Errors
    /// `NotFound` for an unknown device.
    pub fn device(&self, workspace: &str, device: &str) -> FleetResult<DeviceTelemetry> {
        self.fleet.get(workspace, device)?;
        Ok(self
            .records
            .get(DEVICES_TREE, &format!("{workspace}/{device}"))?
            .unwrap_or_default())
    }

    /// Merges the windows of one model version in `[since_ms, until_ms)` from `devices` (all
    /// when empty) and evaluates them against the version's baseline.
    ///
    /// # Errors
    /// `NotFound` for the model or version; storage errors.
    pub fn drift_report(&self, query: &DriftQuery) -> FleetResult<DriftResult> {
        let DriftQuery {
            workspace,
            model,
            reference,
            from_ms: since_ms,
            to_ms: until_ms,
            devices,
            min_rows,
        } = query;
        let (workspace, model, reference, since_ms, until_ms, min_rows) = (
            workspace.as_str(),
            model.as_str(),
            reference.as_str(),
            *since_ms,
            *until_ms,
            *min_rows,
        );
        let version = self.registry.resolve(workspace, model, reference)?;
        let until_ms = if until_ms <= 0 {
            i64::MAX / 2
        } else {
            until_ms
        };
        let since_ms = since_ms.max(0);
        let min_rows = if min_rows == 0 {
            DEFAULT_MIN_ROWS
        } else {
            min_rows
        };
        let mut acc = Accumulator::new(version.baseline.as_ref().map(|b| &b.baseline), devices);
        let prefix = format!("{workspace}/{model}/{:010}/", version.version);
        let first_full = (since_ms + HOUR_MS - 1) / HOUR_MS * HOUR_MS;
        let last_full = until_ms / HOUR_MS * HOUR_MS;
        let raw = |from: i64, to: i64, acc: &mut Accumulator| -> FleetResult<()> {
            let (a, b) = (format!("{prefix}{from:016}"), format!("{prefix}{to:016}"));
            for (key, bytes) in self.records.scan_range_bytes(WINDOWS_TREE, &a, &b)? {
                match TelemetryWindow::decode(bytes.as_slice()) {
                    Ok(window) => acc.window(&window),
                    Err(error) => {
                        tracing::warn!(%key, %error, "skipping an unreadable stored window")
                    }
                }
            }
            Ok(())
        };
        if first_full < last_full {
            raw(since_ms, first_full, &mut acc)?;
            let (a, b) = (
                format!("{prefix}{first_full:016}"),
                format!("{prefix}{last_full:016}"),
            );
            for (key, rollup) in self.records_scan_hourly(&a, &b)? {
                let device = key.rsplit('/').next().unwrap_or_default().to_string();
                acc.rollup(&device, &rollup);
            }
            raw(last_full, until_ms, &mut acc)?;
        } else {
            raw(since_ms, until_ms, &mut acc)?;
        }
        Ok(self.finish(&version, &acc, model, since_ms, until_ms, min_rows))
    }

    /// A time before which every received window is indexed and readable.
    pub fn received_cutoff(&self) -> i64 {
        let _order = self.received.lock().unwrap_or_else(|p| p.into_inner());
        shoal_store::now_ms()
    }

    /// Like [`Telemetry::drift_report`], over the windows the hub received in
    /// `[from_ms, to_ms)`, whatever their end times: what monitors evaluate.
    ///
    /// # Errors
    /// `NotFound` for the model or version; storage errors.
    pub fn drift_report_received(&self, query: &DriftQuery) -> FleetResult<DriftResult> {
        let DriftQuery {
            workspace,
            model,
            reference,
            from_ms,
            to_ms,
            devices,
            min_rows,
        } = query;
        let (workspace, model, reference, from_ms, to_ms, min_rows) = (
            workspace.as_str(),
            model.as_str(),
            reference.as_str(),
            *from_ms,
            *to_ms,
            *min_rows,
        );
        let version = self.registry.resolve(workspace, model, reference)?;
        let min_rows = if min_rows == 0 {
            DEFAULT_MIN_ROWS
        } else {
            min_rows
        };
        let mut acc = Accumulator::new(version.baseline.as_ref().map(|b| &b.baseline), devices);
        let prefix = format!("{workspace}/{model}/{:010}/", version.version);
        let (a, b) = (
            format!("{prefix}{:016}", from_ms.max(0)),
            format!("{prefix}{:016}", to_ms.max(0)),
        );
        for (_, window_key) in self.records.scan_range_bytes(RECEIVED_TREE, &a, &b)? {
            let Ok(window_key) = String::from_utf8(window_key) else {
                continue;
            };
            let Some(bytes) = self.records.get_bytes(WINDOWS_TREE, &window_key)? else {
                continue;
            };
            match TelemetryWindow::decode(bytes.as_slice()) {
                Ok(window) => acc.window(&window),
                Err(error) => {
                    tracing::warn!(key = %window_key, %error, "skipping an unreadable stored window")
                }
            }
        }
        Ok(self.finish(&version, &acc, model, from_ms, to_ms, min_rows))
    }

    fn finish(
        &self,
        version: &shoal_registry::registry::ModelVersion,
        acc: &Accumulator,
        model: &str,
        since_ms: i64,
        until_ms: i64,
        min_rows: u64,
    ) -> DriftResult {
        let (report, note) = match &version.baseline {
            None => (
                None,
                format!(
                    "{model}@{} has no baseline: set one with `shoal model baseline set`",
                    version.version
                ),
            ),
            Some(b) => {
                match evaluate(&b.baseline, &acc.summary, min_rows, &Thresholds::default()) {
                    Ok(report) => (Some(report), acc.note()),
                    Err(e) => (
                        None,
                        format!("the merged windows do not fit the baseline: {e}"),
                    ),
                }
            }
        };
        DriftResult {
            model: model.into(),
            version: version.version,
            since_ms,
            until_ms,
            windows: acc.windows,
            devices: acc.devices.len() as u64,
            inferences: acc.inferences,
            errors: acc.errors.clone(),
            min_rows,
            report,
            note,
        }
    }

    fn records_scan_hourly(
        &self,
        from: &str,
        to: &str,
    ) -> FleetResult<Vec<(String, HourlyRollup)>> {
        let mut out = Vec::new();
        for (key, bytes) in self.records.scan_range_bytes(HOURLY_TREE, from, to)? {
            match serde_json::from_slice::<HourlyRollup>(&bytes) {
                Ok(rollup) => out.push((key, rollup)),
                Err(error) => tracing::warn!(%key, %error, "skipping an unreadable roll-up"),
            }
        }
        Ok(out)
    }

    /// Deletes raw windows that ended before `now_ms - retention` (their hourly roll-ups stay).
    /// Returns how many were deleted.
    ///
    /// # Errors
    /// Storage errors.
    pub fn enforce_retention(&self, now_ms: i64, retention: Duration) -> FleetResult<u64> {
        let cutoff = now_ms - retention.as_millis() as i64;
        let mut deleted = 0;
        for (key, bytes) in self.records.scan_bytes(WINDOWS_TREE, "")? {
            let parts: Vec<&str> = key.rsplitn(5, '/').collect();
            // parts: seq, boot, device, end_ms, "{ws}/{model}/{version}"
            let Some(end_ms) = parts.get(3).and_then(|p| p.parse::<i64>().ok()) else {
                continue;
            };
            if end_ms >= cutoff {
                continue;
            }
            if let (Some(seq), Some(boot), Some(device), Some(ws)) = (
                parts.first().and_then(|p| p.parse::<u64>().ok()),
                parts.get(1).and_then(|p| p.parse::<u64>().ok()),
                parts.get(2),
                parts.get(4).and_then(|p| p.split('/').next()),
            ) {
                self.records
                    .delete(IDS_TREE, &id_key(ws, device, boot, seq))?;
            }
            drop(bytes);
            self.records.delete(WINDOWS_TREE, &key)?;
            deleted += 1;
        }
        for key in self.records.keys(RECEIVED_TREE, "")? {
            let received = key.rsplit('/').nth(3).and_then(|p| p.parse::<i64>().ok());
            if received.is_some_and(|r| r < cutoff) {
                self.records.delete(RECEIVED_TREE, &key)?;
            }
        }
        Ok(deleted)
    }
}

/// Merges windows and roll-ups for one report.
struct Accumulator<'a> {
    baseline: Option<&'a shoal_drift::Baseline>,
    filter: &'a [String],
    summary: WindowSummary,
    windows: u64,
    inferences: u64,
    errors: BTreeMap<String, u64>,
    devices: std::collections::BTreeSet<String>,
    unmerged: u64,
}

impl<'a> Accumulator<'a> {
    fn new(baseline: Option<&'a shoal_drift::Baseline>, filter: &'a [String]) -> Self {
        let summary = baseline.map(WindowSummary::new).unwrap_or(WindowSummary {
            features: Vec::new(),
            outputs: Vec::new(),
        });
        Accumulator {
            baseline,
            filter,
            summary,
            windows: 0,
            inferences: 0,
            errors: BTreeMap::new(),
            devices: Default::default(),
            unmerged: 0,
        }
    }

    fn wanted(&self, device: &str) -> bool {
        self.filter.is_empty() || self.filter.iter().any(|d| d == device)
    }

    fn window(&mut self, window: &TelemetryWindow) {
        if !self.wanted(&window.device_id) {
            return;
        }
        self.windows += 1;
        self.inferences += window.inferences;
        self.devices.insert(window.device_id.clone());
        for (kind, n) in &window.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        if self.baseline.is_some() {
            match shoal_drift::wire::summary_from_wire(&window.features, &window.outputs) {
                Ok(summary) if self.summary.merge(&summary).is_ok() => {}
                _ => self.unmerged += 1,
            }
        }
    }

    fn rollup(&mut self, device: &str, rollup: &HourlyRollup) {
        if !self.wanted(device) {
            return;
        }
        self.windows += rollup.windows;
        self.inferences += rollup.inferences;
        self.devices.insert(device.to_string());
        for (kind, n) in &rollup.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        self.unmerged += rollup.unmerged;
        if self.baseline.is_some() {
            if let Some(summary) = &rollup.summary {
                if self.summary.merge(summary).is_err() {
                    // The hour's merged windows summarised another baseline; the unmerged
                    // ones are counted already.
                    self.unmerged += rollup.windows - rollup.unmerged;
                }
            }
        }
    }

    fn note(&self) -> String {
        if self.unmerged > 0 {
            format!(
                "{} windows summarised another baseline and were left out",
                self.unmerged
            )
        } else {
            String::new()
        }
    }
}

/// Telemetry is kept per workspace; it is not what makes a workspace "not empty" (its
/// devices and models are), and it goes with the workspace.
impl shoal_store::WorkspaceContents for Telemetry {
    fn held(&self, _workspace: &str) -> shoal_store::WorkspaceResult<Vec<String>> {
        Ok(Vec::new())
    }

    fn delete_all(&self, workspace: &str) -> shoal_store::WorkspaceResult<()> {
        let prefix = format!("{workspace}/");
        for tree in [
            WINDOWS_TREE,
            IDS_TREE,
            HOURLY_TREE,
            DEVICES_TREE,
            RECEIVED_TREE,
        ] {
            self.records.delete_prefix(tree, &prefix)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
