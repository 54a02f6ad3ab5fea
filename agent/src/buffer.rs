//! The store-and-forward buffer: closed telemetry windows wait here, durably, until the
//! hub has acknowledged them.
//!
//! Records live in sled under their sequence number (big-endian, so key order is seq order).
//! Each value carries a checksum, the record's creation time and how many inferences it
//! summarises, so that whatever the buffer has to drop is counted exactly:
//!
//! ```text
//! value = sha256(rest)[..8] ‖ created_at_ms (i64 BE) ‖ items (u64 BE) ‖ payload
//! ```
//!
//! - A record leaves only through [`TelemetryBuffer::remove`] (after the hub's acknowledgement)
//!   or by being dropped: the byte cap drops the oldest first (and refuses, counting it, a record
//!   larger than the cap itself), the age limit drops what is older than it, and a
//!   record whose checksum fails is dropped when read. Every drop adds to [`DropCounters`],
//!   which are persisted with the records and travel to the hub in the next window.
//! - sled 0.34 has crash-corruption reports. A store that will not open, or whose metadata is
//!   unreadable, is moved aside (`{dir}.corrupt-{unix_ms}`) and started fresh; the
//!   [`OpenReport`] says so, and the agent reports the loss instead of crash-looping.
//!
//! All methods do blocking I/O; async callers go through `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// sled's page cache on a device: small, the buffer is written once a window.
pub const DEFAULT_CACHE_BYTES: u64 = 1024 * 1024;
/// What the buffer may hold before it drops the oldest windows.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// How long a window may wait for a broker before it is dropped (and counted).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

const HEADER_BYTES: usize = 8 + 8 + 8;
const META_COUNTERS: &str = "drop_counters";
const META_NEXT_SEQ: &str = "next_seq";

/// How long opening waits for a store whose lock another handle holds.
const LOCK_WAIT: Duration = Duration::from_secs(5);

fn is_lock_contention(reason: &str) -> bool {
    reason.contains("could not acquire lock")
}

#[derive(Debug, Error)]
pub enum BufferError {
    #[error("telemetry buffer at {path} is in use by another handle: {reason}")]
    Locked { path: PathBuf, reason: String },
    #[error("telemetry buffer at {path}: {source}")]
    Sled { path: PathBuf, source: sled::Error },
    #[error("cannot move the unreadable telemetry buffer {path} aside: {source}")]
    MoveAside {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a record of {bytes} bytes can never fit a buffer capped at {cap} bytes")]
    TooLarge { bytes: u64, cap: u64 },
}

pub type BufferResult<T> = Result<T, BufferError>;

/// Limits of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferConfig {
    pub max_bytes: u64,
    pub max_age: Duration,
    pub cache_bytes: u64,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            max_age: DEFAULT_MAX_AGE,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// Everything the buffer ever dropped, by reason. Cumulative over the device's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCounters {
    /// Records dropped to stay under the byte cap.
    pub cap_records: u64,
    /// Records dropped for being older than the age limit.
    pub age_records: u64,
    /// Records whose checksum failed.
    pub corrupt_records: u64,
    /// Inferences summarised by all dropped records (corrupt ones count what their header said
    /// when it was readable, else nothing).
    pub items: u64,
    pub bytes: u64,
    /// How many times the whole store was unreadable and started afresh.
    pub store_resets: u64,
}

impl DropCounters {
    pub fn records(&self) -> u64 {
        self.cap_records + self.age_records + self.corrupt_records
    }
}

/// One buffered window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub created_at_ms: i64,
    pub items: u64,
    pub payload: Vec<u8>,
}

/// What opening found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Set when the store could not be used and was moved aside: where to, and why.
    pub moved_aside: Option<(PathBuf, String)>,
    pub records: u64,
    pub bytes: u64,
}

/// The durable queue of closed windows.
pub struct TelemetryBuffer {
    db: sled::Db,
    records: sled::Tree,
    path: PathBuf,
    config: BufferConfig,
    /// Bytes of all record values, kept in memory (recounted at open).
    bytes: u64,
    /// The number of records, kept in memory (recounted at open): sled's `Tree::len` scans the
    /// whole tree, and the agent reads the count after every operation.
    count: u64,
    next_seq: u64,
    counters: DropCounters,
}

impl std::fmt::Debug for TelemetryBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryBuffer")
            .field("path", &self.path)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl TelemetryBuffer {
    /// Opens the buffer in `dir`, or, if that store is unusable, moves it aside and starts an
    /// empty one (counting a store reset).
    ///
    /// # Errors
    /// Only when even a fresh store cannot be created, or the broken one cannot be moved.
    pub fn open(dir: &Path, config: BufferConfig) -> BufferResult<(TelemetryBuffer, OpenReport)> {
        // A store another handle still holds (a previous run's threads finishing, or a second
        // agent on the same folder) is not corrupt: wait a little for its lock, and never move
        // it aside for that.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let first = loop {
            match Self::open_existing(dir, config) {
                Err(reason) if is_lock_contention(&reason) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(BufferError::Locked {
                            path: dir.to_path_buf(),
                            reason,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other,
            }
        };
        match first {
            Ok(buffer) => {
                let report = OpenReport {
                    moved_aside: None,
                    records: buffer.count,
                    bytes: buffer.bytes,
                };
                Ok((buffer, report))
            }
            Err(reason) => {
                let aside = aside_path(dir);
                if dir.exists() {
                    std::fs::rename(dir, &aside).map_err(|source| BufferError::MoveAside {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
                let mut buffer =
                    Self::open_existing(dir, config).map_err(|_| BufferError::Sled {
                        path: dir.to_path_buf(),
                        source: sled::Error::Unsupported(format!(
                            "a fresh store cannot be opened either (first: {reason})"
                        )),
                    })?;
                buffer.counters.store_resets += 1;
                buffer.save_meta()?;
                let report = OpenReport {
                    moved_aside: Some((aside, reason)),
                    records: 0,
                    bytes: 0,
                };
                Ok((buffer, report))
            }
        }
    }

    fn open_existing(dir: &Path, config: BufferConfig) -> Result<TelemetryBuffer, String> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(config.cache_bytes)
            .open()
            .map_err(|e| e.to_string())?;
        let records = db.open_tree("records").map_err(|e| e.to_string())?;
        let counters = match db.get(META_COUNTERS).map_err(|e| e.to_string())? {
            None => DropCounters::default(),
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("drop counters: {e}"))?
            }
        };
        let mut bytes = 0u64;
        let mut count = 0u64;
        let mut last_seq = None;
        for entry in records.iter() {
            let (key, value) = entry.map_err(|e| e.to_string())?;
            bytes += value.len() as u64;
            count += 1;
            last_seq = Some(seq_of(&key).ok_or("a record key is not a sequence number")?);
        }
        let stored_next = match db.get(META_NEXT_SEQ).map_err(|e| e.to_string())? {
            None => 0,
            Some(v) => seq_of(&v).ok_or("next sequence number is unreadable")?,
        };
        let next_seq = stored_next.max(last_seq.map_or(0, |s| s + 1));
        Ok(TelemetryBuffer {
            db,
            records,
            path: dir.to_path_buf(),
            config,
            bytes,
            count,
            next_seq,
            counters,
        })
    }

    /// Appends a record durably and returns its sequence number; then drops the oldest
    /// records while the buffer is over its byte cap.
    ///
    /// # Errors
    /// `TooLarge` for a record bigger than the cap itself (it is counted as a cap drop); sled
    /// errors.
    pub fn push(&mut self, created_at_ms: i64, items: u64, payload: &[u8]) -> BufferResult<u64> {
        self.push_with(created_at_ms, items, |_, _| payload.to_vec())
    }

    /// Appends a record built for its sequence number and the drop counters as they will
    /// stand once it is stored, so a window reports the drops its own arrival caused. Room is
    /// made first: the oldest records are dropped (and counted) until the new one fits the cap.
    ///
    /// A record too large for the cap is not stored: it is counted as dropped by the cap
    /// (`cap_records`, its `items` and bytes) and its sequence number is not reused.
    ///
    /// # Errors
    /// `TooLarge` for a record bigger than the cap itself; sled errors.
    pub fn push_with(
        &mut self,
        created_at_ms: i64,
        items: u64,
        mut payload: impl FnMut(u64, DropCounters) -> Vec<u8>,
    ) -> BufferResult<u64> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut value = encode(created_at_ms, items, &payload(seq, self.counters));
        if value.len() as u64 > self.config.max_bytes {
            self.counters.cap_records += 1;
            self.counters.items += items;
            self.counters.bytes += value.len() as u64;
            self.save_meta()?;
            self.db.flush().map_err(|e| self.sled(e))?;
            return Err(BufferError::TooLarge {
                bytes: value.len() as u64,
                cap: self.config.max_bytes,
            });
        }
        // Each round either fits or drops the oldest record, which changes the counters the
        // record carries, so it is built again.
        while self.count > 0 && self.bytes + value.len() as u64 > self.config.max_bytes {
            self.drop_oldest()?;
            value = encode(created_at_ms, items, &payload(seq, self.counters));
        }
        self.records
            .insert(seq.to_be_bytes(), value.as_slice())
            .map_err(|e| self.sled(e))?;
        self.bytes += value.len() as u64;
        self.count += 1;
        self.save_meta()?;
        self.db.flush().map_err(|e| self.sled(e))?;
        Ok(seq)
    }

    fn drop_oldest(&mut self) -> BufferResult<()> {
        let Some((key, old)) = self.records.pop_min().map_err(|e| self.sled(e))? else {
            return Ok(());
        };
        self.bytes = self.bytes.saturating_sub(old.len() as u64);
        self.count = self.count.saturating_sub(1);
        self.counters.cap_records += 1;
        self.counters.bytes += old.len() as u64;
        self.counters.items += decode(&old).map_or(0, |(_, items, _)| items);
        tracing::warn!(
            seq = seq_of(&key).unwrap_or(0),
            "telemetry buffer full: dropped the oldest window"
        );
        Ok(())
    }

    /// Up to `limit` records, oldest first. Records whose checksum fails are dropped (and
    /// counted) on the way.
    ///
    /// # Errors
    /// sled errors.
    pub fn oldest(&mut self, limit: usize) -> BufferResult<Vec<Record>> {
        let mut out = Vec::new();
        let mut corrupt = Vec::new();
        for entry in self.records.iter() {
            if out.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(|e| self.sled(e))?;
            let seq = seq_of(&key);
            match (seq, decode(&value)) {
                (Some(seq), Some((created_at_ms, items, payload))) => out.push(Record {
                    seq,
                    created_at_ms,
                    items,
                    payload: payload.to_vec(),
                }),
                _ => corrupt.push((key, value)),
            }
        }
        for (key, value) in corrupt {
            self.records.remove(&key).map_err(|e| self.sled(e))?;
            self.bytes = self.bytes.saturating_sub(value.len() as u64);
            self.count = self.count.saturating_sub(1);
            self.counters.corrupt_records += 1;
            self.counters.bytes += value.len() as u64;
            self.counters.items += header_items(&value).unwrap_or(0);
            tracing::warn!("telemetry buffer: dropped a record whose checksum failed");
            self.save_meta()?;
        }
        Ok(out)
    }

    /// Removes a record the hub has acknowledged. Removing one that is gone is a no-op.
    ///
    /// # Errors
    /// sled errors.
    pub fn remove(&mut self, seq: u64) -> BufferResult<()> {
        self.remove_many(&[seq])
    }

    /// Removes several acknowledged records with one flush. Seqs that are gone are skipped.
    ///
    /// # Errors
    /// sled errors.
    pub fn remove_many(&mut self, seqs: &[u64]) -> BufferResult<()> {
        for seq in seqs {
            if let Some(old) = self
                .records
                .remove(seq.to_be_bytes())
                .map_err(|e| self.sled(e))?
            {
                self.bytes = self.bytes.saturating_sub(old.len() as u64);
                self.count = self.count.saturating_sub(1);
            }
        }
        self.db.flush().map_err(|e| self.sled(e))?;
        Ok(())
    }

    /// Drops (and counts) the records older than the age limit at `now_ms`, oldest first, up
    /// to the first one that is still young. Returns how many.
    ///
    /// Records are pushed in time order, so this reads only what expires (and one more)
    /// instead of the whole buffer on every call. If the clock went back between two pushes,
    /// a later record that expired first waits for the ones before it: dropped and counted a
    /// little later, never lost from the accounting. Damaged records are left to `oldest`.
    ///
    /// # Errors
    /// sled errors.
    pub fn expire(&mut self, now_ms: i64) -> BufferResult<u64> {
        let oldest_allowed = now_ms - self.config.max_age.as_millis() as i64;
        let mut expired = Vec::new();
        for entry in self.records.iter() {
            let (key, value) = entry.map_err(|e| self.sled(e))?;
            match decode(&value) {
                Some((created_at_ms, items, _)) if created_at_ms < oldest_allowed => {
                    expired.push((key, value.len() as u64, items))
                }
                Some(_) => break,
                None => {}
            }
        }
        for (key, len, items) in &expired {
            self.records.remove(key).map_err(|e| self.sled(e))?;
            self.bytes = self.bytes.saturating_sub(*len);
            self.count = self.count.saturating_sub(1);
            self.counters.age_records += 1;
            self.counters.bytes += len;
            self.counters.items += items;
        }
        if !expired.is_empty() {
            tracing::warn!(
                records = expired.len(),
                "telemetry buffer: dropped windows past the age limit"
            );
            self.save_meta()?;
            self.db.flush().map_err(|e| self.sled(e))?;
        }
        Ok(expired.len() as u64)
    }

    pub fn counters(&self) -> DropCounters {
        self.counters
    }

    /// The number of records (kept in memory; no scan).
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn save_meta(&self) -> BufferResult<()> {
        let counters = serde_json::to_vec(&self.counters).expect("drop counters serialize");
        self.db
            .insert(META_COUNTERS, counters)
            .map_err(|e| self.sled(e))?;
        self.db
            .insert(META_NEXT_SEQ, &self.next_seq.to_be_bytes())
            .map_err(|e| self.sled(e))?;
        Ok(())
    }

    fn sled(&self, source: sled::Error) -> BufferError {
        BufferError::Sled {
            path: self.path.clone(),
            source,
        }
    }
}

fn aside_path(dir: &Path) -> PathBuf {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".corrupt-{ms}"));
    dir.with_file_name(name)
}

fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

fn checksum(rest: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(rest);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

fn encode(created_at_ms: i64, items: u64, payload: &[u8]) -> Vec<u8> {
    let mut rest = Vec::with_capacity(16 + payload.len());
    rest.extend_from_slice(&created_at_ms.to_be_bytes());
    rest.extend_from_slice(&items.to_be_bytes());
    rest.extend_from_slice(payload);
    let mut value = Vec::with_capacity(8 + rest.len());
    value.extend_from_slice(&checksum(&rest));
    value.extend_from_slice(&rest);
    value
}

/// `(created_at_ms, items, payload)` of a value whose checksum holds.
fn decode(value: &[u8]) -> Option<(i64, u64, &[u8])> {
    if value.len() < HEADER_BYTES {
        return None;
    }
    let (sum, rest) = value.split_at(8);
    if sum != checksum(rest) {
        return None;
    }
    let created_at_ms = i64::from_be_bytes(rest[..8].try_into().ok()?);
    let items = u64::from_be_bytes(rest[8..16].try_into().ok()?);
    Some((created_at_ms, items, &rest[16..]))
}

/// The item count of a damaged value, if its header still parses (for accounting only).
fn header_items(value: &[u8]) -> Option<u64> {
    let bytes = value.get(16..24)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_bytes: u64) -> BufferConfig {
        BufferConfig {
            max_bytes,
            max_age: Duration::from_secs(60),
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }

    #[test]
    fn records_survive_reopen_in_order_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buffer");
        {
            let (mut buffer, report) = TelemetryBuffer::open(&path, config(1 << 20)).unwrap();
            assert_eq!(report.moved_aside, None);
            for i in 0..3u64 {
                assert_eq!(
                    buffer
                        .push(1000 + i as i64, 10 + i, format!("w{i}").as_bytes())
                        .unwrap(),
                    i
                );
            }
            buffer.remove(0).unwrap();
        }
        let (mut buffer, report) = TelemetryBuffer::open(&path, config(1 << 20)).unwrap();
        assert_eq!(report.records, 2);
        let records = buffer.oldest(10).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(
            records[1],
            Record {
                seq: 2,
                created_at_ms: 1002,
                items: 12,
                payload: b"w2".to_vec()
            }
        );
        // Sequence numbers keep growing across restarts, even after everything is removed.
        buffer.remove(1).unwrap();
        buffer.remove(2).unwrap();
        assert_eq!(buffer.push(2000, 1, b"w3").unwrap(), 3);
    }

    #[test]
    fn the_cap_drops_the_oldest_and_counts_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let one = encode(0, 0, &[0u8; 100]).len() as u64;
        let (mut buffer, _) =
            TelemetryBuffer::open(&dir.path().join("b"), config(one * 3)).unwrap();
        for i in 0..5u64 {
            buffer.push(i as i64, 7, &[0u8; 100]).unwrap();
        }
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.oldest(10).unwrap()[0].seq, 2);
        let counters = buffer.counters();
        assert_eq!(
            (counters.cap_records, counters.items, counters.bytes),
            (2, 14, 2 * one)
        );
        assert!(matches!(
            buffer.push(9, 1, &vec![0u8; 400]),
            Err(BufferError::TooLarge { .. })
        ));
    }

    #[test]
    fn push_with_hands_the_payload_its_seq_and_counts_what_cannot_fit() {
        let dir = tempfile::tempdir().unwrap();
        let (mut buffer, _) = TelemetryBuffer::open(&dir.path().join("b"), config(1000)).unwrap();
        let seq = buffer
            .push_with(1, 2, |seq, _| format!("seq={seq}").into_bytes())
            .unwrap();
        assert_eq!(seq, 0);
        assert_eq!(buffer.oldest(1).unwrap()[0].payload, b"seq=0");

        let error = buffer.push_with(2, 9, |_, _| vec![0u8; 2000]).unwrap_err();
        assert!(matches!(error, BufferError::TooLarge { .. }), "{error}");
        let counters = buffer.counters();
        assert_eq!(
            (counters.cap_records, counters.items, counters.bytes),
            (1, 9, encode(2, 9, &[0u8; 2000]).len() as u64)
        );
        assert_eq!(buffer.len(), 1, "the refused record is not stored");
        assert_eq!(
            buffer.push(3, 1, b"next").unwrap(),
            2,
            "its seq is not reused"
        );

        buffer.remove_many(&[0, 2, 77]).unwrap();
        assert!(buffer.is_empty());
        assert_eq!(buffer.bytes(), 0);
    }

    #[test]
    fn a_record_carries_the_drops_its_own_arrival_caused() {
        let dir = tempfile::tempdir().unwrap();
        let one = encode(0, 0, &[0u8; 100]).len() as u64;
        let (mut buffer, _) =
            TelemetryBuffer::open(&dir.path().join("b"), config(one * 2)).unwrap();
        for i in 0..2 {
            buffer.push(i, 1, &[0u8; 100]).unwrap();
        }
        let mut seen = None;
        buffer
            .push_with(2, 1, |_, counters| {
                seen = Some(counters.cap_records);
                vec![0u8; 100]
            })
            .unwrap();
        assert_eq!(seen, Some(1), "built again after making room");
        assert_eq!(buffer.counters().cap_records, 1);
    }

    #[test]
    fn the_age_limit_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut buffer, _) =
            TelemetryBuffer::open(&dir.path().join("b"), config(1 << 20)).unwrap();
        buffer.push(0, 5, b"old").unwrap();
        buffer.push(50_000, 6, b"new").unwrap();
        assert_eq!(buffer.expire(70_000).unwrap(), 1);
        assert_eq!(buffer.counters().age_records, 1);
        assert_eq!(buffer.counters().items, 5);
        assert_eq!(buffer.oldest(10).unwrap()[0].payload, b"new");
    }

    #[test]
    fn expiry_reads_only_what_expires_and_catches_up_after_a_clock_jump() {
        let dir = tempfile::tempdir().unwrap();
        let (mut buffer, _) =
            TelemetryBuffer::open(&dir.path().join("b"), config(1 << 20)).unwrap();
        buffer.push(0, 1, b"a").unwrap();
        buffer.push(100_000, 2, b"b").unwrap();
        // The clock went back before this one was pushed.
        buffer.push(5, 4, b"c").unwrap();
        assert_eq!(
            buffer.expire(70_000).unwrap(),
            1,
            "stops at the first young record"
        );
        assert_eq!((buffer.len(), buffer.counters().items), (2, 1));
        assert_eq!(buffer.expire(200_000).unwrap(), 2);
        assert_eq!(buffer.counters().age_records, 3);
        assert_eq!(buffer.counters().items, 7);
        assert!(buffer.is_empty());
        assert_eq!(buffer.bytes(), 0);
    }

    #[test]
    fn a_damaged_record_is_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut buffer, _) =
            TelemetryBuffer::open(&dir.path().join("b"), config(1 << 20)).unwrap();
        buffer.push(1, 3, b"fine").unwrap();
        let mut bad = encode(2, 4, b"flipped");
        let last = bad.len() - 1;
        bad[last] ^= 1;
        buffer.records.insert(1u64.to_be_bytes(), bad).unwrap();
        buffer.count += 1;
        let records = buffer.oldest(10).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(buffer.counters().corrupt_records, 1);
        assert_eq!(buffer.counters().items, 4);
    }

    #[test]
    fn an_unreadable_store_is_moved_aside_and_started_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buffer");
        std::fs::create_dir_all(&path).unwrap();
        // sled keeps its configuration in `conf` and its data in `db`: garbage in both.
        std::fs::write(path.join("conf"), b"\xff\xfe not a sled config").unwrap();
        std::fs::write(path.join("db"), vec![0xAB; 4096]).unwrap();
        let (mut buffer, report) = TelemetryBuffer::open(&path, config(1 << 20)).unwrap();
        let (aside, reason) = report.moved_aside.expect("moved aside");
        assert!(aside.exists(), "the broken store is kept for inspection");
        assert!(!reason.is_empty());
        assert_eq!(buffer.counters().store_resets, 1);
        assert_eq!(buffer.push(1, 1, b"after").unwrap(), 0);
    }
}
