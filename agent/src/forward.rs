//! The telemetry forwarder: closes windows into the store-and-forward buffer and sends them to
//! the hub until the hub acknowledges them.
//!
//! One task, one loop, and nothing in it can block the MQTT event loop:
//! - Every `telemetry.window`, and at once when a model switch closed a window, it takes the
//!   closed windows from the [`Recorder`], stamps each with the device's health and the
//!   buffer's drop counters, and pushes it into the [`TelemetryBuffer`] (durably, on the
//!   blocking pool) before anything is published. Then it drops windows past the age limit.
//! - While connected it publishes buffered windows oldest first at QoS 1 (`try_publish`: a full
//!   request channel means "later"), at most [`MAX_IN_FLIGHT`] unacknowledged at once, paced
//!   by the upload rate limit ([`pacing_delay`]: the average since the burst began stays under
//!   the limit; a burst ends when nothing is left to send).
//! - The hub acknowledges each window it has stored with a `TelemetryAck` on
//!   `telemetry/ack`; the event loop driver hands the payload over with `try_send`, and the
//!   forwarder removes the named windows from the buffer, but only those it has sent and not
//!   had acknowledged yet: an ack naming anything else (forged, or for windows it never sent)
//!   removes nothing. That is end to end: a broker's
//!   PUBACK only says the broker has it, not that a (possibly offline) hub stored it.
//! - A window not acknowledged within `ack_timeout` is published again, and so is every
//!   unacknowledged window after a reconnect (a clean session forgets what was in flight).
//!   Duplicates are expected: the hub removes them by (device, boot epoch, seq).
//!
//! Drop accounting: a window carries the buffer's cumulative counters as they stand once room
//! has been made for it ([`TelemetryBuffer::push_with`] builds it again after each drop), so
//! the newest window the hub has always tells the whole tally.
//!
//! At shutdown, once the HTTP API has answered its last request, the current window is closed
//! into the buffer; it goes out after the next start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use serde::Serialize;
use shoal_proto::device::{DeviceHealth, DropCounts, TelemetryAck};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::buffer::{BufferError, DropCounters, TelemetryBuffer};
use crate::config::TelemetryConfig;
use crate::download::pacing_delay;
use crate::host::HostSampler;
use crate::mqtt::MqttLink;
use crate::report::{unix_millis, Condition, Reporter};
use crate::telemetry::{ClosedWindow, Recorder};

/// Windows published and not yet acknowledged, at most.
pub const MAX_IN_FLIGHT: usize = 16;
/// A window's largest encoded size: below rumqttd's default payload limit of 20 KiB (a broker
/// disconnects a client that exceeds its limit). A larger window is sent without its feature
/// and output summaries, and the health string says so.
pub const MAX_WINDOW_BYTES: usize = 16 * 1024;
/// Seqs read from one acknowledgement, at most (a forged one cannot keep the buffer busy).
pub const MAX_ACKED_SEQS: usize = 1024;
/// How soon to try again when the MQTT request channel is full or the buffer failed.
pub const RETRY_DELAY: Duration = Duration::from_millis(200);
/// The telemetry buffer's folder under the data directory.
pub const TELEMETRY_DIR: &str = "telemetry";

/// What the local API shows of telemetry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TelemetryStatus {
    /// False when the buffer could not be opened at all (the health string says why).
    pub enabled: bool,
    pub window_ms: u64,
    pub buffered_records: u64,
    pub buffered_bytes: u64,
    /// Windows published and waiting for the hub's acknowledgement.
    pub in_flight: usize,
    /// The seq of the last window stored in the buffer by this run.
    pub last_closed_seq: Option<u64>,
    /// Everything the buffer ever dropped, cumulative.
    pub dropped: DropCounters,
}

/// The buffer and what is read from the device, used together on the blocking pool.
struct Disk {
    buffer: TelemetryBuffer,
    host: HostSampler,
    data_dir: PathBuf,
}

/// The buffer's state after an operation.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    records: u64,
    bytes: u64,
    dropped: DropCounters,
}

/// What storing one window came to.
#[derive(Debug)]
struct Stored {
    seq: u64,
    /// The window was too large and went without its summaries.
    stripped: bool,
}

/// How much of the current burst went out, for the rate limit.
#[derive(Debug, Clone, Copy)]
struct Burst {
    started: Instant,
    sent_bytes: u64,
}

/// The task that stores closed windows and sends them to the hub.
pub struct Forwarder {
    recorder: Recorder,
    disk: Arc<Mutex<Disk>>,
    link: MqttLink,
    acks: mpsc::Receiver<Bytes>,
    status: watch::Sender<TelemetryStatus>,
    reporter: Reporter,
    device_id: String,
    boot_epoch: u64,
    config: TelemetryConfig,
    /// Published, unacknowledged windows: seq → when to publish it again.
    in_flight: BTreeMap<u64, Instant>,
    /// Every window this run published and the hub has not acknowledged yet (a resend
    /// timeout or a new session does not take a window out of it): the only windows an
    /// acknowledgement may remove, so one naming anything else removes nothing.
    unacknowledged: BTreeSet<u64>,
    burst: Option<Burst>,
}

impl Forwarder {
    #[allow(clippy::too_many_arguments)] // the agent's parts it connects, each used once
    pub fn new(
        config: &TelemetryConfig,
        data_dir: PathBuf,
        device_id: &str,
        boot_epoch: u64,
        recorder: Recorder,
        buffer: TelemetryBuffer,
        link: MqttLink,
        acks: mpsc::Receiver<Bytes>,
        reporter: Reporter,
        status: watch::Sender<TelemetryStatus>,
    ) -> Forwarder {
        Forwarder {
            recorder,
            disk: Arc::new(Mutex::new(Disk {
                buffer,
                host: HostSampler::new(),
                data_dir,
            })),
            link,
            acks,
            status,
            reporter,
            device_id: device_id.to_string(),
            boot_epoch,
            config: config.clone(),
            in_flight: BTreeMap::new(),
            unacknowledged: BTreeSet::new(),
            burst: None,
        }
    }

    /// Runs until `stop` fires, then closes the current window into the buffer (recording
    /// stops for good) and returns.
    pub async fn run(mut self, stop: CancellationToken) {
        let window = self.config.window;
        let mut ticks = tokio::time::interval_at(Instant::now() + window, window);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sessions = self.link.sessions.clone();
        let recorder = self.recorder.clone();
        let mut acks_open = true;
        let mut sessions_open = true;
        // Whatever an earlier run left in the buffer goes out as soon as a session is up.
        let mut wake = Some(Instant::now());
        self.with_disk(|_| ()).await;
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = ticks.tick() => {
                    self.close_windows(true).await;
                    self.expire().await;
                    wake = Some(Instant::now());
                }
                _ = recorder.closed_by_switch() => {
                    self.close_windows(false).await;
                    wake = Some(Instant::now());
                }
                ack = self.acks.recv(), if acks_open => match ack {
                    Some(payload) => {
                        self.acknowledge(&payload).await;
                        wake = Some(Instant::now());
                    }
                    None => acks_open = false,
                },
                changed = sessions.changed(), if sessions_open => {
                    if changed.is_err() {
                        sessions_open = false;
                        continue;
                    }
                    sessions.borrow_and_update();
                    // A new session: what was in flight may be lost; send it all again.
                    self.in_flight.clear();
                    self.burst = None;
                    wake = Some(Instant::now());
                }
                _ = sleep_until(wake) => wake = self.publish().await,
            }
        }
        let last = self.recorder.stop(unix_millis());
        self.store(last).await;
        debug!("telemetry forwarder stopped");
    }

    /// Takes the closed windows (and the current one, on a tick) and stores them.
    async fn close_windows(&mut self, close_current: bool) {
        let closed = self.recorder.take_closed(unix_millis(), close_current);
        self.store(closed).await;
    }

    /// Pushes windows into the buffer, durably, with their seq, health and drop counters.
    async fn store(&mut self, windows: Vec<ClosedWindow>) {
        if windows.is_empty() {
            return;
        }
        let device_id = self.device_id.clone();
        let boot_epoch = self.boot_epoch;
        let outcomes = self
            .with_disk(move |disk| {
                windows
                    .iter()
                    .map(|window| {
                        (
                            window.inferences(),
                            disk.push_window(window, &device_id, boot_epoch),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        let Some(outcomes) = outcomes else {
            self.reporter.set_condition(
                Condition::TelemetryWrite,
                Some("a telemetry window was lost: the buffer task failed".into()),
            );
            return;
        };
        let mut write_problem = None;
        for (inferences, outcome) in outcomes {
            match outcome {
                Ok(stored) => {
                    debug!(seq = stored.seq, inferences, "telemetry window stored");
                    if stored.stripped {
                        warn!(
                            seq = stored.seq,
                            max_bytes = MAX_WINDOW_BYTES,
                            "a telemetry window is too large; sent without its feature and output summaries"
                        );
                        write_problem = Some(format!(
                            "telemetry windows exceed {MAX_WINDOW_BYTES} bytes and are sent without their feature and output summaries"
                        ));
                    }
                    self.status
                        .send_modify(|s| s.last_closed_seq = Some(stored.seq));
                }
                Err(error @ BufferError::TooLarge { .. }) => {
                    // Counted by the buffer as a cap drop, so the hub learns of it.
                    warn!(%error, inferences, "a telemetry window cannot fit the buffer; dropped");
                }
                Err(error) => {
                    warn!(%error, inferences, "cannot store a telemetry window; it is lost");
                    write_problem = Some(format!("cannot store telemetry windows: {error}"));
                }
            }
        }
        self.reporter
            .set_condition(Condition::TelemetryWrite, write_problem);
    }

    /// Drops (and counts) windows past the age limit.
    async fn expire(&mut self) {
        let now_ms = unix_millis();
        if let Some(Err(error)) = self.with_disk(move |disk| disk.buffer.expire(now_ms)).await {
            warn!(%error, "cannot expire old telemetry windows");
        }
    }

    /// Removes the windows a `TelemetryAck` names. A malformed one is logged and ignored.
    async fn acknowledge(&mut self, payload: &[u8]) {
        let mut seqs = match TelemetryAck::decode(payload) {
            Ok(ack) => ack.seqs,
            Err(error) => {
                warn!(%error, bytes = payload.len(), "ignoring a malformed telemetry ack");
                return;
            }
        };
        seqs.truncate(MAX_ACKED_SEQS);
        let named = seqs.len();
        seqs.retain(|seq| self.unacknowledged.remove(seq));
        if seqs.len() < named {
            warn!(
                named,
                in_flight = seqs.len(),
                "a telemetry ack names windows this agent has not sent; ignoring those"
            );
        }
        if seqs.is_empty() {
            return;
        }
        for seq in &seqs {
            self.in_flight.remove(seq);
        }
        debug!(?seqs, "telemetry windows acknowledged");
        if let Some(Err(error)) = self
            .with_disk(move |disk| disk.buffer.remove_many(&seqs))
            .await
        {
            warn!(%error, "cannot remove acknowledged telemetry windows; they will be sent again");
        }
        self.publish_status();
    }

    /// Publishes what may go out now; returns when to try next (`None`: when something
    /// happens: a window closes, an ack arrives, a session starts).
    async fn publish(&mut self) -> Option<Instant> {
        if !self.link.is_connected() {
            return None;
        }
        let now = Instant::now();
        // Unacknowledged past the timeout: eligible again.
        self.in_flight.retain(|_, resend_at| *resend_at > now);
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            return self.next_resend();
        }
        if let Some(at) = self.paced_until(now) {
            return Some(at);
        }
        let limit = self.in_flight.len() + MAX_IN_FLIGHT;
        let records = match self.with_disk(move |disk| disk.buffer.oldest(limit)).await {
            Some(Ok(records)) => records,
            Some(Err(error)) => {
                warn!(%error, "cannot read the telemetry buffer");
                return Some(Instant::now() + RETRY_DELAY);
            }
            None => return Some(Instant::now() + RETRY_DELAY),
        };
        let mut sent_any = false;
        for record in records {
            if self.in_flight.contains_key(&record.seq) {
                continue;
            }
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                break;
            }
            if let Some(at) = self.paced_until(Instant::now()) {
                self.publish_status();
                return Some(at);
            }
            let bytes = record.payload.len() as u64;
            if let Err(error) = self.link.publish_telemetry(record.payload) {
                debug!(%error, seq = record.seq, "cannot queue a telemetry window yet");
                self.publish_status();
                return Some(Instant::now() + RETRY_DELAY);
            }
            debug!(seq = record.seq, bytes, "telemetry window published");
            let sent_at = Instant::now();
            self.in_flight
                .insert(record.seq, sent_at + self.config.ack_timeout);
            self.unacknowledged.insert(record.seq);
            let burst = self.burst.get_or_insert(Burst {
                started: sent_at,
                sent_bytes: 0,
            });
            burst.sent_bytes += bytes;
            sent_any = true;
        }
        if !sent_any && self.in_flight.is_empty() {
            // Nothing left: the next window starts a new burst.
            self.burst = None;
        }
        self.publish_status();
        self.next_resend()
    }

    /// When the rate limit lets the next window go, if not now.
    fn paced_until(&self, now: Instant) -> Option<Instant> {
        let burst = self.burst?;
        let delay = pacing_delay(
            burst.sent_bytes,
            now.duration_since(burst.started),
            self.config.rate_limit_bytes_per_sec,
        );
        (!delay.is_zero()).then(|| now + delay)
    }

    fn next_resend(&self) -> Option<Instant> {
        self.in_flight.values().min().copied()
    }

    /// Runs `work` on the buffer on the blocking pool and refreshes the status from it.
    /// `None` when the task panicked (logged).
    async fn with_disk<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Disk) -> T + Send + 'static,
    ) -> Option<T> {
        let disk = self.disk.clone();
        let ran = tokio::task::spawn_blocking(move || {
            // A panic inside sled leaves the buffer as sled left it; its counters stay whole.
            let mut disk = disk.lock().unwrap_or_else(PoisonError::into_inner);
            let result = work(&mut disk);
            (result, disk.snapshot())
        })
        .await;
        match ran {
            Ok((result, snapshot)) => {
                let in_flight = self.in_flight.len();
                self.status.send_if_modified(|status| {
                    let before = status.clone();
                    status.buffered_records = snapshot.records;
                    status.buffered_bytes = snapshot.bytes;
                    status.dropped = snapshot.dropped;
                    status.in_flight = in_flight;
                    *status != before
                });
                Some(result)
            }
            Err(error) => {
                warn!(%error, "a telemetry buffer task failed");
                None
            }
        }
    }

    fn publish_status(&self) {
        let in_flight = self.in_flight.len();
        self.status.send_if_modified(|status| {
            let changed = status.in_flight != in_flight;
            status.in_flight = in_flight;
            changed
        });
    }
}

// === impl Disk ===

impl Disk {
    fn push_window(
        &mut self,
        window: &ClosedWindow,
        device_id: &str,
        boot_epoch: u64,
    ) -> Result<Stored, BufferError> {
        let host = self.host.sample(&self.data_dir);
        let health = DeviceHealth {
            cpu_percent: host.cpu_percent,
            rss_bytes: host.rss_bytes,
            disk_free_bytes: host.disk_free_bytes,
            buffer_records: self.buffer.len(),
            buffer_bytes: self.buffer.bytes(),
        };
        let mut stripped = false;
        let seq =
            self.buffer
                .push_with(window.end_ms(), window.inferences(), |seq, counters| {
                    let dropped = drop_counts(counters);
                    let mut wire = window.to_wire(device_id, boot_epoch, seq, health, dropped);
                    let mut payload = wire.encode_to_vec();
                    if payload.len() > MAX_WINDOW_BYTES {
                        wire.features.clear();
                        wire.outputs.clear();
                        payload = wire.encode_to_vec();
                        stripped = true;
                    }
                    payload
                })?;
        Ok(Stored { seq, stripped })
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            records: self.buffer.len(),
            bytes: self.buffer.bytes(),
            dropped: self.buffer.counters(),
        }
    }
}

/// The buffer's counters as a window carries them.
pub fn drop_counts(counters: DropCounters) -> DropCounts {
    DropCounts {
        cap_records: counters.cap_records,
        age_records: counters.age_records,
        corrupt_records: counters.corrupt_records,
        items: counters.items,
        bytes: counters.bytes,
        store_resets: counters.store_resets,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The initial status, before the forwarder runs (or when it cannot).
pub fn initial_status(
    config: &TelemetryConfig,
    opened: Option<(&TelemetryBuffer, u64, u64)>,
) -> TelemetryStatus {
    let window_ms = u64::try_from(config.window.as_millis()).unwrap_or(u64::MAX);
    match opened {
        Some((buffer, records, bytes)) => {
            info!(records, bytes, "telemetry buffer opened");
            TelemetryStatus {
                enabled: true,
                window_ms,
                buffered_records: records,
                buffered_bytes: bytes,
                dropped: buffer.counters(),
                ..Default::default()
            }
        }
        None => TelemetryStatus {
            window_ms,
            ..Default::default()
        },
    }
}
