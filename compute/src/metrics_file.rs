//! The `SHOAL_METRICS` file: how a training script reports metrics without a Shoal library.
//!
//! Before starting a job, the runner creates an empty file and puts its path in the
//! `SHOAL_METRICS` environment variable. The script appends one JSON object per line; the runner
//! tails the file while the job runs and turns each line into [`MetricPoint`]s. Any language can
//! do this with a `print` to a file, which is the point.
//!
//! # Line format
//! Two shapes are accepted, one JSON object per line:
//!
//! - Keyed, one metric per line:
//!   `{"key": "loss", "value": 0.31, "step": 3, "timestamp": 1732700000000}`.
//!   `key` (non-empty string) and `value` (number) are required; other fields are ignored.
//! - Compact, several metrics per line: `{"step": 3, "loss": 0.31, "accuracy": 0.9}`. Every
//!   numeric field other than `step` and `timestamp` is a metric named after the field;
//!   non-numeric fields (strings, booleans, nested objects) are ignored so scripts can add tags.
//!   Metrics from one line come out sorted by name.
//!
//! In both shapes `step` is an integer (a float with no fractional part, such as `3.0`, is
//! accepted) and defaults to `0`; `timestamp` is milliseconds since the Unix epoch and defaults
//! to the time the line was read. Because Python's `time.time()` gives *seconds*, a timestamp
//! below 10^11 (which in milliseconds would be before March 1973) is taken as seconds and
//! converted.
//!
//! Blank lines are skipped. A line that is not valid JSON, not an object, or has no metric
//! becomes a warning naming its 1-based line number; it never fails the run. A line is only
//! read once its newline has been written, so a half-flushed write is never misparsed; when the
//! job has ended, a final line without a newline is read too. Lines longer than
//! [`MAX_METRICS_LINE_BYTES`] are skipped with a warning.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Longest metrics line accepted; longer ones are skipped so a runaway writer cannot grow the
/// runner's memory.
pub const MAX_METRICS_LINE_BYTES: usize = 1024 * 1024;

/// Timestamps below this are seconds, not milliseconds (see the module docs).
const SECONDS_TIMESTAMP_THRESHOLD: f64 = 1e11;

/// How much of the metrics file is read per system call while catching up.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// One metric value reported by a job.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// Metric name, e.g. `loss`.
    pub key: String,
    /// The value; JSON numbers cannot be NaN or infinite, so this is always finite.
    pub value: f64,
    /// Training step the value belongs to, for plotting curves; `0` when the script gave none.
    pub step: i64,
    /// Milliseconds since the Unix epoch: the script's own timestamp, or when the line was read.
    pub timestamp_ms: i64,
}

/// Parses one metrics line into its points.
///
/// `now_ms` is the timestamp used when the line has none. Returns an empty list for a blank
/// line.
///
/// # Errors
/// A lowercase description of what is wrong with the line, for a warning.
pub fn parse_metrics_line(line: &str, now_ms: i64) -> Result<Vec<MetricPoint>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(object) = value else {
        return Err("expected a JSON object".to_string());
    };
    let step = match object.get("step") {
        None | Some(Value::Null) => 0,
        Some(raw) => parse_step(raw)?,
    };
    let timestamp_ms = match object.get("timestamp") {
        None | Some(Value::Null) => now_ms,
        Some(raw) => parse_timestamp(raw)?,
    };

    if object.contains_key("key") {
        return parse_keyed(&object, step, timestamp_ms).map(|point| vec![point]);
    }

    let mut points = Vec::new();
    for (key, raw) in &object {
        if key == "step" || key == "timestamp" {
            continue;
        }
        if let Some(value) = raw.as_f64() {
            points.push(MetricPoint {
                key: key.clone(),
                value,
                step,
                timestamp_ms,
            });
        }
    }
    if points.is_empty() {
        return Err("no numeric metric fields".to_string());
    }
    Ok(points)
}

fn parse_keyed(
    object: &Map<String, Value>,
    step: i64,
    timestamp_ms: i64,
) -> Result<MetricPoint, String> {
    let key = match object.get("key") {
        Some(Value::String(key)) if !key.is_empty() => key.clone(),
        _ => return Err("\"key\" must be a non-empty string".to_string()),
    };
    let value = object
        .get("value")
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("metric {key:?} needs a numeric \"value\""))?;
    Ok(MetricPoint {
        key,
        value,
        step,
        timestamp_ms,
    })
}

fn parse_step(raw: &Value) -> Result<i64, String> {
    if let Some(step) = raw.as_i64() {
        return Ok(step);
    }
    match raw.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(format!("\"step\" must be an integer, got {raw}")),
    }
}

fn parse_timestamp(raw: &Value) -> Result<i64, String> {
    let Some(ts) = raw.as_f64() else {
        return Err(format!(
            "\"timestamp\" must be a number of milliseconds, got {raw}"
        ));
    };
    if !(0.0..9.0e15).contains(&ts) {
        return Err(format!("\"timestamp\" {raw} is out of range"));
    }
    let ms = if ts < SECONDS_TIMESTAMP_THRESHOLD {
        ts * 1000.0
    } else {
        ts
    };
    Ok(ms.round() as i64)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Something the metrics file produced: a line's points, or a warning.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MetricsRecord {
    Points(Vec<MetricPoint>),
    Warning(String),
}

// === impl LineBuffer ===

/// Splits appended bytes into complete lines, holding back an unfinished last line.
///
/// Kept free of I/O so the partial-line rules are unit-tested directly.
#[derive(Debug, Default)]
pub(crate) struct LineBuffer {
    /// Bytes of the line being assembled (without its newline).
    pending: Vec<u8>,
    /// 1-based number of the line in `pending`.
    next_line_no: usize,
    /// Set when the current line went over the limit; its bytes are dropped until the newline.
    overlong: bool,
}

/// A complete line, or a note that a line was too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SplitLine {
    Line { line_no: usize, text: String },
    TooLong { line_no: usize },
}

impl LineBuffer {
    pub(crate) fn new() -> Self {
        LineBuffer {
            pending: Vec::new(),
            next_line_no: 1,
            overlong: false,
        }
    }

    /// Appends bytes and returns the lines they completed.
    pub(crate) fn push(&mut self, mut bytes: &[u8]) -> Vec<SplitLine> {
        let mut lines = Vec::new();
        while !bytes.is_empty() {
            let (chunk, complete) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], Some(i + 1)),
                None => (bytes, None),
            };
            if !self.overlong {
                if self.pending.len() + chunk.len() > MAX_METRICS_LINE_BYTES {
                    self.overlong = true;
                    self.pending.clear();
                } else {
                    self.pending.extend_from_slice(chunk);
                }
            }
            match complete {
                Some(consumed) => {
                    lines.push(self.take_line());
                    bytes = &bytes[consumed..];
                }
                None => bytes = &[],
            }
        }
        lines
    }

    /// Returns the unfinished last line, if any, as complete (the writer is gone).
    pub(crate) fn finish(&mut self) -> Option<SplitLine> {
        if self.pending.is_empty() && !self.overlong {
            return None;
        }
        Some(self.take_line())
    }

    fn take_line(&mut self) -> SplitLine {
        let line_no = self.next_line_no;
        self.next_line_no += 1;
        if std::mem::take(&mut self.overlong) {
            self.pending.clear();
            return SplitLine::TooLong { line_no };
        }
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        SplitLine::Line { line_no, text }
    }
}

/// Turns a split line into what should be reported.
pub(crate) fn interpret_line(line: SplitLine, now_ms: i64) -> Option<MetricsRecord> {
    match line {
        SplitLine::TooLong { line_no } => Some(MetricsRecord::Warning(format!(
            "metrics file line {line_no}: longer than {MAX_METRICS_LINE_BYTES} bytes, skipped"
        ))),
        SplitLine::Line { line_no, text } => match parse_metrics_line(&text, now_ms) {
            Ok(points) if points.is_empty() => None,
            Ok(points) => Some(MetricsRecord::Points(points)),
            Err(problem) => Some(MetricsRecord::Warning(format!(
                "metrics file line {line_no}: {problem}"
            ))),
        },
    }
}

// === impl MetricsFileTail ===

/// Follows a metrics file as the job appends to it.
#[derive(Debug)]
pub(crate) struct MetricsFileTail {
    path: PathBuf,
    /// Bytes of the file already consumed.
    offset: u64,
    lines: LineBuffer,
}

impl MetricsFileTail {
    pub(crate) fn new(path: PathBuf) -> Self {
        MetricsFileTail {
            path,
            offset: 0,
            lines: LineBuffer::new(),
        }
    }

    /// Reads whatever was appended since the last call. With `at_end`, the job is over and an
    /// unfinished last line counts as complete.
    ///
    /// I/O problems (the script deleted the file, say) become warnings: metrics are best effort
    /// and must not fail a run that otherwise succeeded.
    pub(crate) async fn read_new(&mut self, at_end: bool) -> Vec<MetricsRecord> {
        let mut records = Vec::new();
        if let Err(e) = self.read_appended(&mut records).await {
            if e.kind() != std::io::ErrorKind::NotFound || at_end {
                records.push(MetricsRecord::Warning(format!(
                    "metrics file {}: {e}",
                    self.path.display()
                )));
            }
        }
        if at_end {
            if let Some(line) = self.lines.finish() {
                records.extend(interpret_line(line, now_ms()));
            }
        }
        records
    }

    async fn read_appended(&mut self, records: &mut Vec<MetricsRecord>) -> std::io::Result<()> {
        let mut file = tokio::fs::File::open(&self.path).await?;
        let len = file.metadata().await?.len();
        if len < self.offset {
            records.push(MetricsRecord::Warning(format!(
                "metrics file {} was truncated; reading it again from the start",
                self.path.display()
            )));
            self.offset = 0;
            self.lines = LineBuffer::new();
        }
        if len == self.offset {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.offset)).await?;
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        loop {
            let n = file.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            self.offset += n as u64;
            let now = now_ms();
            for line in self.lines.push(&chunk[..n]) {
                records.extend(interpret_line(line, now));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_732_700_000_000;

    fn point(key: &str, value: f64, step: i64, timestamp_ms: i64) -> MetricPoint {
        MetricPoint {
            key: key.to_string(),
            value,
            step,
            timestamp_ms,
        }
    }

    #[test]
    fn keyed_line_with_all_fields() {
        let points = parse_metrics_line(
            r#"{"key": "loss", "value": 0.31, "step": 3, "timestamp": 1732700001234}"#,
            NOW,
        )
        .expect("valid line");
        assert_eq!(points, vec![point("loss", 0.31, 3, 1_732_700_001_234)]);
    }

    #[test]
    fn keyed_line_defaults_step_and_timestamp() {
        let points = parse_metrics_line(r#"{"key": "lr", "value": 1}"#, NOW).expect("valid");
        assert_eq!(points, vec![point("lr", 1.0, 0, NOW)]);
    }

    #[test]
    fn compact_line_yields_every_numeric_field() {
        let points = parse_metrics_line(
            r#"{"step": 3, "loss": 0.31, "accuracy": 0.9, "phase": "val", "best": true}"#,
            NOW,
        )
        .expect("valid line");
        assert_eq!(
            points,
            vec![point("accuracy", 0.9, 3, NOW), point("loss", 0.31, 3, NOW)]
        );
    }

    #[test]
    fn seconds_timestamps_are_converted() {
        let points =
            parse_metrics_line(r#"{"loss": 1, "timestamp": 1732700000.5}"#, NOW).expect("valid");
        assert_eq!(points[0].timestamp_ms, 1_732_700_000_500);
    }

    #[test]
    fn integral_float_step_is_accepted() {
        let points = parse_metrics_line(r#"{"loss": 1, "step": 7.0}"#, NOW).expect("valid");
        assert_eq!(points[0].step, 7);
    }

    #[test]
    fn malformed_lines_are_described() {
        let cases = [
            ("not json", "invalid JSON"),
            ("[1, 2]", "expected a JSON object"),
            (r#"{"step": 1}"#, "no numeric metric fields"),
            (r#"{"key": "loss"}"#, "numeric \"value\""),
            (r#"{"key": "", "value": 1}"#, "non-empty string"),
            (r#"{"loss": 1, "step": 1.5}"#, "\"step\" must be an integer"),
            (
                r#"{"loss": 1, "timestamp": "soon"}"#,
                "\"timestamp\" must be",
            ),
        ];
        for (line, expected) in cases {
            let err = parse_metrics_line(line, NOW).expect_err(line);
            assert!(err.contains(expected), "{line:?} gave {err:?}");
        }
    }

    #[test]
    fn blank_line_has_no_points() {
        assert_eq!(parse_metrics_line("  ", NOW), Ok(Vec::new()));
    }

    #[test]
    fn line_buffer_holds_back_partial_line() {
        let mut buffer = LineBuffer::new();
        assert_eq!(
            buffer.push(b"{\"a\": 1}\n{\"b\""),
            vec![line(1, "{\"a\": 1}")]
        );
        assert_eq!(buffer.push(b": 2}"), vec![]);
        assert_eq!(buffer.push(b"\n"), vec![line(2, "{\"b\": 2}")]);
        assert_eq!(buffer.finish(), None);
    }

    #[test]
    fn line_buffer_finish_returns_unterminated_line() {
        let mut buffer = LineBuffer::new();
        assert!(buffer.push(b"x\ny").len() == 1);
        assert_eq!(buffer.finish(), Some(line(2, "y")));
    }

    #[test]
    fn line_buffer_skips_overlong_line() {
        let mut buffer = LineBuffer::new();
        let long = vec![b'x'; MAX_METRICS_LINE_BYTES + 1];
        assert_eq!(buffer.push(&long), vec![]);
        assert_eq!(
            buffer.push(b"tail\nok\n"),
            vec![SplitLine::TooLong { line_no: 1 }, line(2, "ok")]
        );
    }

    #[test]
    fn warnings_name_the_line_number() {
        let record = interpret_line(line(4, "oops"), NOW).expect("a warning");
        let MetricsRecord::Warning(message) = record else {
            panic!("expected a warning, got {record:?}");
        };
        assert!(message.starts_with("metrics file line 4:"), "{message}");
    }

    fn line(line_no: usize, text: &str) -> SplitLine {
        SplitLine::Line {
            line_no,
            text: text.to_string(),
        }
    }
}
