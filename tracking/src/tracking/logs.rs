//! Run logs: one record per line under `run_logs/{run}/{line:012}`.

use super::*;

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// 1-based position in the log.
    pub number: u64,
    pub timestamp_ms: i64,
    pub text: String,
}

impl Tracking {
    /// Appends lines to a run's log and returns the new line count.
    ///
    /// # Errors
    /// `NotFound` for the run.
    pub fn append_log(&self, run_id: &str, lines: &[(i64, String)]) -> TrackingResult<u64> {
        if lines.is_empty() {
            return Ok(self.run(run_id)?.log_lines);
        }
        // Reserve the line numbers first, so concurrent appenders never share one.
        let mut first = 0;
        let run = self.update_run(run_id, |run| {
            first = run.log_lines + 1;
            run.log_lines += lines.len() as u64;
            Ok(())
        })?;
        for (i, (timestamp_ms, text)) in lines.iter().enumerate() {
            let number = first + i as u64;
            let line = LogLine {
                number,
                timestamp_ms: *timestamp_ms,
                text: text.clone(),
            };
            self.records
                .put(LOGS_TREE, &format!("{run_id}/{number:012}"), &line)?;
        }
        self.changed();
        Ok(run.log_lines)
    }

    /// Log lines after line `after` (0: from the start), at most `limit`.
    ///
    /// # Errors
    /// Storage errors.
    pub fn log_lines(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> TrackingResult<Vec<LogLine>> {
        let from = format!("{run_id}/{:012}", after + 1);
        let to = format!("{run_id}/{:012}", after.saturating_add(limit as u64 + 1));
        let lines = self.records.scan_range_bytes(LOGS_TREE, &from, &to)?;
        lines
            .into_iter()
            .map(|(key, bytes)| {
                serde_json::from_slice(&bytes).map_err(|e| {
                    TrackingError::Internal(format!("log record {key} is corrupt: {e}"))
                })
            })
            .collect()
    }

    /// The last `n` lines of a run's log.
    ///
    /// # Errors
    /// `NotFound` for the run.
    pub fn log_tail(&self, run_id: &str, n: usize) -> TrackingResult<Vec<String>> {
        let total = self.run(run_id)?.log_lines;
        let after = total.saturating_sub(n as u64);
        Ok(self
            .log_lines(run_id, after, n)?
            .into_iter()
            .map(|l| l.text)
            .collect())
    }
}
