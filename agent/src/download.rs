//! The bookkeeping of one blob download: which bytes to ask for next, which chunks to keep.
//!
//! The agent asks the hub for a window of bytes from its current offset; the hub answers with
//! chunks. A chunk is kept only if it starts exactly at the current offset, so duplicates
//! (a re-request crossing an answer in flight), stale answers and out-of-order chunks are all
//! dropped, and the bytes on disk are always one contiguous prefix of the blob. Whatever is
//! dropped is asked for again, either when the window completes or when the caller's chunk
//! timeout fires. This type does no I/O and keeps no clock, so it is tested directly.

use std::time::Duration;

use shoal_proto::device::{BlobChunk, BlobRequest};

/// What to do with a received chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Not for this download, or not at the current offset: drop it.
    Ignored(&'static str),
    /// Append the chunk's data to the file (the offset has already moved past it).
    Append {
        /// The bytes asked for are all here: sync the file and ask for the next window.
        window_complete: bool,
        /// The whole blob is here: verify it.
        download_complete: bool,
    },
    /// The hub cannot serve this blob, or serves something that does not fit the manifest.
    Failed(String),
}

/// A download in progress.
#[derive(Debug, Clone)]
pub struct Download {
    /// The blob, as its sha256.
    digest: String,
    /// The size the signed manifest gives.
    total: u64,
    /// How many bytes are already appended to the file.
    offset: u64,
    /// The end of the bytes last asked for; reaching it asks for more.
    window_end: u64,
    /// How many bytes one request asks for.
    window: u64,
    /// Where this run started, for the report: non-zero means a resumed download.
    resumed_from: u64,
}

impl Download {
    /// Starts (or resumes, when `already_have > 0`) a download of `total` bytes.
    pub fn new(digest: &str, total: u64, already_have: u64, window: u64) -> Download {
        debug_assert!(
            already_have <= total,
            "a part file longer than the blob is truncated first"
        );
        debug_assert!(window > 0, "config validation keeps the window positive");
        let offset = already_have.min(total);
        Download {
            digest: digest.to_string(),
            total,
            offset,
            window_end: offset,
            window: window.max(1),
            resumed_from: offset,
        }
    }

    /// Asks for the next window from the current offset; `None` once everything is here.
    /// Calling it again before the window completes asks again from the current offset.
    pub fn next_request(&mut self) -> Option<BlobRequest> {
        let remaining = self.total - self.offset;
        if remaining == 0 {
            return None;
        }
        let length = self.window.min(remaining);
        self.window_end = self.offset + length;
        Some(BlobRequest {
            digest: self.digest.clone(),
            offset: self.offset,
            length,
        })
    }

    /// Decides about one chunk from the hub.
    pub fn accept(&mut self, chunk: &BlobChunk) -> ChunkOutcome {
        if chunk.digest != self.digest {
            return ChunkOutcome::Ignored("a chunk of another blob");
        }
        if !chunk.error.is_empty() {
            return ChunkOutcome::Failed(chunk.error.clone());
        }
        if chunk.total_size != 0 && chunk.total_size != self.total {
            return ChunkOutcome::Failed(format!(
                "the hub serves {} bytes for digest {}, the manifest says {}",
                chunk.total_size, self.digest, self.total
            ));
        }
        if chunk.offset < self.offset {
            return ChunkOutcome::Ignored("a duplicate chunk");
        }
        if chunk.offset > self.offset {
            return ChunkOutcome::Ignored("a chunk ahead of the current offset");
        }
        if chunk.data.is_empty() {
            return ChunkOutcome::Ignored("an empty chunk");
        }
        let length = chunk.data.len() as u64;
        if length > self.total - self.offset {
            return ChunkOutcome::Failed(format!(
                "the hub sent {length} bytes at offset {} of a {}-byte blob",
                chunk.offset, self.total
            ));
        }
        self.offset += length;
        ChunkOutcome::Append {
            window_complete: self.offset >= self.window_end,
            download_complete: self.offset == self.total,
        }
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    pub fn is_complete(&self) -> bool {
        self.offset == self.total
    }
}

/// How long to wait before the next request so that `received` bytes over `elapsed` (plus the
/// wait) stay at or under `bytes_per_sec` on average. `0` means unlimited.
pub fn pacing_delay(received: u64, elapsed: Duration, bytes_per_sec: u64) -> Duration {
    if bytes_per_sec == 0 {
        return Duration::ZERO;
    }
    let earliest = Duration::from_secs_f64(received as f64 / bytes_per_sec as f64);
    earliest.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "d1";

    fn chunk(offset: u64, len: usize) -> BlobChunk {
        BlobChunk {
            digest: DIGEST.into(),
            offset,
            data: vec![0xAB; len],
            total_size: 100,
            error: String::new(),
        }
    }

    fn append(window_complete: bool, download_complete: bool) -> ChunkOutcome {
        ChunkOutcome::Append {
            window_complete,
            download_complete,
        }
    }

    #[test]
    fn asks_window_by_window_until_complete() {
        let mut download = Download::new(DIGEST, 100, 0, 40);
        let first = download.next_request().unwrap();
        assert_eq!((first.offset, first.length), (0, 40));
        assert_eq!(download.accept(&chunk(0, 16)), append(false, false));
        assert_eq!(download.accept(&chunk(16, 16)), append(false, false));
        assert_eq!(download.accept(&chunk(32, 8)), append(true, false));
        let second = download.next_request().unwrap();
        assert_eq!((second.offset, second.length), (40, 40));
        assert_eq!(download.accept(&chunk(40, 40)), append(true, false));
        let last = download.next_request().unwrap();
        assert_eq!(
            (last.offset, last.length),
            (80, 20),
            "the last window is what remains"
        );
        assert_eq!(download.accept(&chunk(80, 20)), append(true, true));
        assert!(download.is_complete());
        assert_eq!(download.next_request(), None);
    }

    #[test]
    fn resumes_from_what_is_on_disk() {
        let mut download = Download::new(DIGEST, 100, 64, 1000);
        assert_eq!(download.resumed_from(), 64);
        let request = download.next_request().unwrap();
        assert_eq!((request.offset, request.length), (64, 36));
        assert_eq!(
            download.accept(&chunk(0, 16)),
            ChunkOutcome::Ignored("a duplicate chunk")
        );
        assert_eq!(download.accept(&chunk(64, 36)), append(true, true));
    }

    #[test]
    fn drops_duplicates_out_of_order_and_foreign_chunks() {
        let mut download = Download::new(DIGEST, 100, 0, 100);
        download.next_request();
        assert_eq!(
            download.accept(&chunk(16, 16)),
            ChunkOutcome::Ignored("a chunk ahead of the current offset")
        );
        assert_eq!(download.accept(&chunk(0, 16)), append(false, false));
        assert_eq!(
            download.accept(&chunk(0, 16)),
            ChunkOutcome::Ignored("a duplicate chunk")
        );
        let mut other = chunk(16, 16);
        other.digest = "d2".into();
        assert_eq!(
            download.accept(&other),
            ChunkOutcome::Ignored("a chunk of another blob")
        );
        assert_eq!(
            download.accept(&chunk(16, 0)),
            ChunkOutcome::Ignored("an empty chunk")
        );
        assert_eq!(download.offset(), 16);
        // The out-of-order chunk was dropped: a re-request starts at the current offset.
        let again = download.next_request().unwrap();
        assert_eq!((again.offset, again.length), (16, 84));
        assert_eq!(download.accept(&chunk(16, 16)), append(false, false));
    }

    #[test]
    fn fails_on_hub_errors_and_on_chunks_that_do_not_fit() {
        let mut download = Download::new(DIGEST, 100, 0, 100);
        let mut error = chunk(0, 0);
        error.error = "blob not found".into();
        assert_eq!(
            download.accept(&error),
            ChunkOutcome::Failed("blob not found".into())
        );

        let mut wrong_size = chunk(0, 16);
        wrong_size.total_size = 99;
        assert!(
            matches!(download.accept(&wrong_size), ChunkOutcome::Failed(m) if m.contains("the manifest says 100"))
        );

        let mut download = Download::new(DIGEST, 100, 90, 100);
        assert!(
            matches!(download.accept(&chunk(90, 16)), ChunkOutcome::Failed(m) if m.contains("16 bytes at offset 90"))
        );
        assert_eq!(download.offset(), 90);
    }

    #[test]
    fn a_chunk_past_the_window_end_still_counts() {
        let mut download = Download::new(DIGEST, 100, 0, 10);
        download.next_request();
        assert_eq!(download.accept(&chunk(0, 16)), append(true, false));
        assert_eq!(download.next_request().unwrap().offset, 16);
    }

    #[test]
    fn pacing_keeps_the_average_under_the_limit() {
        assert_eq!(pacing_delay(1_000_000, Duration::ZERO, 0), Duration::ZERO);
        assert_eq!(
            pacing_delay(1000, Duration::from_millis(250), 1000),
            Duration::from_millis(750)
        );
        assert_eq!(
            pacing_delay(1000, Duration::from_secs(2), 1000),
            Duration::ZERO
        );
        assert_eq!(pacing_delay(0, Duration::ZERO, 1000), Duration::ZERO);
    }
}
