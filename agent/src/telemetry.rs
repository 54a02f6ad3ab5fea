//! Telemetry windows: what the agent served, summarised on the device against the active
//! model's training baseline, one window at a time.
//!
//! [`Recorder`] is the accumulator. The HTTP handlers record every answered inference
//! ([`Recorder::record_inference`]) and every refused request ([`Recorder::record_error`]);
//! the forwarder (`forward.rs`) closes windows ([`Recorder::take_closed`]) and stores them.
//! A window belongs to one model: when another model becomes active ([`Recorder::activate`]),
//! the current window is closed on the spot and a new one starts.
//!
//! A window counts:
//! - inferences: rows, the first dimension of the model's first input (1 for a scalar input);
//! - errors by kind ([`ErrorKind`]);
//! - latency per request (not per row) in fixed base-2 microsecond buckets
//!   ([`latency_bucket`]), so windows from any device add up exactly;
//! - per baseline feature, each row's value at the feature's column of its input, binned over
//!   the baseline's edges (numeric) or counted over its vocabulary (categorical: the value as
//!   an integer when it is integral, else as Rust's `{}` prints it);
//! - per baseline output, each row's argmax class (for `[N, C]` outputs, C ≥ 2, first maximum
//!   wins, exactly as the hub computed the baseline) or the row's first value binned.
//!
//! Cost on the request path: one `std::sync::Mutex` lock per request, then per feature one map
//! lookup and per row a binary search over at most nine edges (or a scan of a short
//! vocabulary). Nothing is allocated per value: categorical values are formatted into a stack
//! buffer. `cargo test -p shoal-agent --lib --release -- --ignored --nocapture observe_cost`
//! prints the cost per row.
//!
//! A request served by a model that is no longer the window's (a switch while it ran) still
//! counts as inferences and latency in the current window, so totals stay exact, but its values
//! are not binned: they belong to another baseline.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use shoal_drift::wire::{baseline_from_wire, summary_to_wire};
use shoal_drift::{
    Baseline, CategoricalBaseline, CategoricalSummary, ClassSummary, FeatureKind, FeatureSummary,
    NumericBaseline, NumericSummary, OutputKind, OutputSummary, WindowSummary,
};
use shoal_model::{Dim, IoSignature, JsonTensor};
use shoal_proto::device::{
    ActiveModel, DeviceHealth, DriftBaseline, DropCounts, LatencyHistogram, Manifest,
    TelemetryWindow,
};
use tokio::sync::Notify;

/// Buckets of the latency histogram: bucket `i` counts `[2^(i-1), 2^i)` µs, bucket 0 under
/// 1 µs, the last one is open (≥ 2^30 µs, about 18 minutes).
pub const LATENCY_BUCKETS: usize = 32;

/// The bucket of one request's latency (see [`LATENCY_BUCKETS`]).
pub fn latency_bucket(latency: Duration) -> usize {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    // The number of significant bits: 0 for 0 µs, 1 for 1 µs, 2 for 2-3 µs, 3 for 4-7 µs…
    ((u64::BITS - micros.leading_zeros()) as usize).min(LATENCY_BUCKETS - 1)
}

/// Why a request got no inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A 4xx: malformed JSON, an input the model refuses, a body too large.
    BadInput,
    /// A 500: tract failed, or the inference task panicked.
    Inference,
    /// A 503: no model is active.
    NoModel,
}

impl ErrorKind {
    const COUNT: usize = 3;
    const ALL: [ErrorKind; ErrorKind::COUNT] = [
        ErrorKind::BadInput,
        ErrorKind::Inference,
        ErrorKind::NoModel,
    ];

    /// The key in `TelemetryWindow.errors`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadInput => "bad_input",
            ErrorKind::Inference => "inference",
            ErrorKind::NoModel => "no_model",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The shared accumulator of telemetry windows.
#[derive(Debug, Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Woken when a model switch closed a window, so the forwarder stores it right away.
    closed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The window of the active model; `None` before any model is active and after `stop`.
    current: Option<OpenWindow>,
    /// Windows closed by a model switch, waiting for the forwarder.
    closed: Vec<ClosedWindow>,
    /// Set by `stop`: nothing is recorded and no window opens any more.
    stopped: bool,
    /// 503s answered while no model was active: there is no window to count them in (a window
    /// belongs to a model), so they are only shown by the local API.
    errors_without_model: u64,
}

#[derive(Debug)]
struct OpenWindow {
    model: Arc<ModelBaseline>,
    start_ms: i64,
    counts: Counts,
    summary: WindowSummary,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Counts {
    inferences: u64,
    errors: [u64; ErrorKind::COUNT],
    latency: [u64; LATENCY_BUCKETS],
}

impl Counts {
    fn new() -> Counts {
        Counts {
            inferences: 0,
            errors: [0; ErrorKind::COUNT],
            latency: [0; LATENCY_BUCKETS],
        }
    }

    fn is_empty(&self) -> bool {
        self.inferences == 0 && self.errors.iter().all(|n| *n == 0)
    }
}

/// The active model's baseline, resolved against the model's inputs once, at activation.
#[derive(Debug)]
struct ModelBaseline {
    model: ActiveModel,
    baseline: Baseline,
    /// Where each baseline feature is read from, in the baseline's order.
    sources: Vec<FeatureSource>,
    /// The input whose first dimension is the number of rows (the signature's first input).
    batch_input: Option<String>,
}

#[derive(Debug)]
struct FeatureSource {
    input: String,
    column: usize,
    /// False when the model has no such input or column: every row then counts as a null,
    /// which the hub sees, and the health string says why.
    usable: bool,
}

/// The open window's counts, for the local API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OpenWindowView {
    pub start_ms: i64,
    pub inferences: u64,
    pub errors: u64,
}

/// A window that is over, ready to be stored and sent.
#[derive(Debug)]
pub struct ClosedWindow {
    model: Arc<ModelBaseline>,
    start_ms: i64,
    end_ms: i64,
    counts: Counts,
    summary: WindowSummary,
}

// === impl Recorder ===

impl Recorder {
    /// A recorder with no model yet.
    pub fn new() -> Recorder {
        Recorder {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                closed: Notify::new(),
            }),
        }
    }

    /// Makes `manifest`'s model the one windows are about: closes the current window (kept
    /// for the forwarder if it counted anything) and opens a new one at `now_ms`.
    ///
    /// Returns what is wrong with the manifest's baseline, for the reported health; a bad
    /// baseline only means the windows carry no (or fewer) summaries, never that serving
    /// stops.
    pub fn activate(
        &self,
        manifest: &Manifest,
        baseline: Option<&DriftBaseline>,
        signature: &IoSignature,
        now_ms: i64,
    ) -> Option<String> {
        let (model, problems) = ModelBaseline::resolve(manifest, baseline, signature);
        let model = Arc::new(model);
        let closed_one = {
            let mut state = self.lock();
            if state.stopped {
                return None;
            }
            let previous = state.current.replace(OpenWindow::new(model, now_ms));
            match previous.map(|window| window.close(now_ms)) {
                Some(closed) if !closed.is_empty() => {
                    state.closed.push(closed);
                    true
                }
                _ => false,
            }
        };
        if closed_one {
            self.shared.closed.notify_one();
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// Counts one answered request: its rows, its latency, and (when `digest` is still the
    /// window's model) its inputs and outputs against the baseline.
    pub fn record_inference(
        &self,
        digest: &str,
        inputs: &BTreeMap<String, JsonTensor>,
        outputs: &BTreeMap<String, JsonTensor>,
        latency: Duration,
    ) {
        let mut state = self.lock();
        let Some(window) = state.current.as_mut() else {
            return;
        };
        let OpenWindow {
            model,
            counts,
            summary,
            ..
        } = window;
        let rows = model.rows(inputs);
        counts.inferences = counts.inferences.saturating_add(rows);
        counts.latency[latency_bucket(latency)] += 1;
        if model.model.digest == digest {
            model.observe_features(inputs, rows, summary);
            model.observe_outputs(outputs, summary);
        }
    }

    /// Counts one request that got no inference.
    pub fn record_error(&self, kind: ErrorKind) {
        let mut state = self.lock();
        if state.stopped {
            return;
        }
        match state.current.as_mut() {
            Some(window) => window.counts.errors[kind.index()] += 1,
            None => state.errors_without_model += 1,
        }
    }

    /// The windows closed since the last call (by model switches), plus the current one when
    /// `close_current` is set (a new window for the same model then starts at `now_ms`).
    /// Windows that counted nothing are left out: they are not worth storing.
    pub fn take_closed(&self, now_ms: i64, close_current: bool) -> Vec<ClosedWindow> {
        let mut state = self.lock();
        if close_current {
            if let Some(window) = state.current.take() {
                let model = window.model.clone();
                let closed = window.close(now_ms);
                state.current = Some(OpenWindow::new(model, now_ms));
                if !closed.is_empty() {
                    state.closed.push(closed);
                }
            }
        }
        std::mem::take(&mut state.closed)
    }

    /// Stops recording for good and returns every window still open or waiting (shutdown).
    pub fn stop(&self, now_ms: i64) -> Vec<ClosedWindow> {
        let mut state = self.lock();
        state.stopped = true;
        if let Some(window) = state.current.take() {
            let closed = window.close(now_ms);
            if !closed.is_empty() {
                state.closed.push(closed);
            }
        }
        std::mem::take(&mut state.closed)
    }

    /// Completes when a model switch has closed a window (at once if one did since the last
    /// wait).
    pub async fn closed_by_switch(&self) {
        self.shared.closed.notified().await;
    }

    /// 503s answered while no model was active (since start).
    pub fn errors_without_model(&self) -> u64 {
        self.lock().errors_without_model
    }

    /// What the open window has counted so far; `None` when no window is open.
    pub fn open_window(&self) -> Option<OpenWindowView> {
        let state = self.lock();
        let window = state.current.as_ref()?;
        Some(OpenWindowView {
            start_ms: window.start_ms,
            inferences: window.counts.inferences,
            errors: window.counts.errors.iter().sum(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a few additions on plain counters: a panic cannot leave them in a
        // state worse than one request counted in part.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

// === impl OpenWindow ===

impl OpenWindow {
    fn new(model: Arc<ModelBaseline>, start_ms: i64) -> OpenWindow {
        let summary = WindowSummary::new(&model.baseline);
        OpenWindow {
            model,
            start_ms,
            counts: Counts::new(),
            summary,
        }
    }

    fn close(self, end_ms: i64) -> ClosedWindow {
        ClosedWindow {
            model: self.model,
            start_ms: self.start_ms,
            end_ms: end_ms.max(self.start_ms),
            counts: self.counts,
            summary: self.summary,
        }
    }
}

// === impl ClosedWindow ===

impl ClosedWindow {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    pub fn inferences(&self) -> u64 {
        self.counts.inferences
    }

    pub fn end_ms(&self) -> i64 {
        self.end_ms
    }

    /// The window as it travels, with what only the forwarder knows: who sends it, its place
    /// in the buffer, the device's health and the buffer's drop accounting.
    pub fn to_wire(
        &self,
        device_id: &str,
        boot_epoch: u64,
        seq: u64,
        health: DeviceHealth,
        dropped: DropCounts,
    ) -> TelemetryWindow {
        let (features, outputs) = summary_to_wire(&self.summary, &self.model.baseline);
        let mut errors = std::collections::HashMap::new();
        for kind in ErrorKind::ALL {
            let count = self.counts.errors[kind.index()];
            if count > 0 {
                errors.insert(kind.as_str().to_string(), count);
            }
        }
        TelemetryWindow {
            device_id: device_id.to_string(),
            boot_epoch,
            seq,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            model: Some(self.model.model.clone()),
            inferences: self.counts.inferences,
            errors,
            latency: Some(LatencyHistogram {
                counts: self.counts.latency.to_vec(),
            }),
            features,
            outputs,
            health: Some(health),
            dropped: Some(dropped),
        }
    }
}

// === impl ModelBaseline ===

impl ModelBaseline {
    /// The baseline and bindings of a verified manifest's drift baseline (none: no
    /// summaries), checked against the model's inputs and outputs; with a description of each
    /// problem found.
    fn resolve(
        manifest: &Manifest,
        baseline: Option<&DriftBaseline>,
        signature: &IoSignature,
    ) -> (ModelBaseline, Vec<String>) {
        let model = ActiveModel {
            model: manifest.model.clone(),
            version: manifest.version,
            digest: manifest.digest.clone(),
        };
        let mut problems = Vec::new();
        let none = DriftBaseline::default();
        let (baseline, bindings) = match baseline_from_wire(baseline.unwrap_or(&none)) {
            Ok(found) => found,
            Err(error) => {
                problems.push(format!(
                    "the drift baseline of {} v{} is unusable ({error}); its telemetry carries no feature or output summaries",
                    manifest.model, manifest.version
                ));
                let empty = Baseline {
                    rows: 0,
                    features: Vec::new(),
                    outputs: Vec::new(),
                };
                (empty, Vec::new())
            }
        };
        let mut sources = Vec::with_capacity(bindings.len());
        for (feature, binding) in baseline.features.iter().zip(bindings) {
            let column = binding.column as usize;
            let usable = match signature.inputs.iter().find(|i| i.name == binding.input) {
                None => {
                    problems.push(format!(
                        "feature '{}' reads input '{}', which the model does not have",
                        feature.name, binding.input
                    ));
                    false
                }
                Some(spec) => {
                    let width = match spec.shape.as_slice() {
                        [] | [_] => Some(1),
                        [.., Dim::Fixed(n)] => Some(*n),
                        [.., Dim::Symbol(_)] => None,
                    };
                    match width {
                        Some(width) if column as u64 >= width => {
                            problems.push(format!(
                                "feature '{}' reads column {column} of input '{}', which has {width}",
                                feature.name, binding.input
                            ));
                            false
                        }
                        _ => true,
                    }
                }
            };
            sources.push(FeatureSource {
                input: binding.input,
                column,
                usable,
            });
        }
        for output in &baseline.outputs {
            if !signature.outputs.iter().any(|o| o.name == output.name) {
                problems.push(format!(
                    "the baseline's output '{}' is not an output of the model",
                    output.name
                ));
            }
        }
        let batch_input = signature.inputs.first().map(|spec| spec.name.clone());
        (
            ModelBaseline {
                model,
                baseline,
                sources,
                batch_input,
            },
            problems,
        )
    }

    /// The rows of a request: the first dimension of the model's first input.
    fn rows(&self, inputs: &BTreeMap<String, JsonTensor>) -> u64 {
        let tensor = match &self.batch_input {
            Some(name) => inputs.get(name.as_str()),
            None => None,
        };
        // A request served by another model may lack this model's input: its first one then.
        match tensor.or_else(|| inputs.values().next()) {
            Some(tensor) => tensor_rows(tensor) as u64,
            None => 1,
        }
    }

    fn observe_features(
        &self,
        inputs: &BTreeMap<String, JsonTensor>,
        rows: u64,
        summary: &mut WindowSummary,
    ) {
        let features = self.baseline.features.iter().zip(&self.sources);
        for ((feature, source), feature_summary) in features.zip(summary.features.iter_mut()) {
            let tensor = if source.usable {
                inputs.get(source.input.as_str())
            } else {
                None
            };
            match (feature_summary, &feature.kind) {
                (FeatureSummary::Numeric(summary), FeatureKind::Numeric(baseline)) => {
                    observe_numeric_column(summary, baseline, tensor, source.column, rows)
                }
                (FeatureSummary::Categorical(summary), FeatureKind::Categorical(baseline)) => {
                    observe_categorical_column(summary, baseline, tensor, source.column, rows)
                }
                // `WindowSummary::new` shapes every summary like its baseline.
                _ => debug_assert!(false, "a summary of another kind than its baseline"),
            }
        }
    }

    fn observe_outputs(&self, outputs: &BTreeMap<String, JsonTensor>, summary: &mut WindowSummary) {
        for (output, output_summary) in self.baseline.outputs.iter().zip(&mut summary.outputs) {
            let Some(tensor) = outputs.get(output.name.as_str()) else {
                continue;
            };
            match (output_summary, &output.kind) {
                (OutputSummary::Classes(summary), OutputKind::Classes(_)) => {
                    observe_classes(summary, tensor)
                }
                (OutputSummary::Numeric(summary), OutputKind::Numeric(baseline)) => {
                    let rows = tensor_rows(tensor);
                    if let Some(stride) = row_stride(tensor, rows) {
                        for row in 0..rows {
                            summary.observe(baseline, number(&tensor.data[row * stride]));
                        }
                    }
                }
                _ => debug_assert!(false, "a summary of another kind than its baseline"),
            }
        }
    }
}

// === reading tensors ===

/// The first dimension (1 for a scalar).
fn tensor_rows(tensor: &JsonTensor) -> usize {
    tensor.shape.first().copied().unwrap_or(1)
}

/// How many values one row spans, when every row has at least one.
fn row_stride(tensor: &JsonTensor, rows: usize) -> Option<usize> {
    if rows == 0 || tensor.data.is_empty() {
        return None;
    }
    // The model checked that the data holds exactly the shape's product.
    Some(tensor.data.len() / rows).filter(|stride| *stride > 0)
}

/// The number of values along the last axis (1 for a scalar or a vector of rows).
fn last_axis(tensor: &JsonTensor) -> usize {
    match tensor.shape.as_slice() {
        [] | [_] => 1,
        [.., last] => *last,
    }
}

/// Each row's value at `column` of the last axis (the first one when there are middle
/// axes), or `None` per row where the tensor cannot give it.
fn for_each_row_value(
    tensor: Option<&JsonTensor>,
    column: usize,
    rows_without_tensor: u64,
    mut observe: impl FnMut(Option<&Value>),
    mut observe_nulls: impl FnMut(u64),
) {
    let Some(tensor) = tensor else {
        observe_nulls(rows_without_tensor);
        return;
    };
    let rows = tensor_rows(tensor);
    match row_stride(tensor, rows) {
        Some(stride) if column < last_axis(tensor) => {
            for row in 0..rows {
                observe(tensor.data.get(row * stride + column));
            }
        }
        // No value at that column in any row: counted at once, not row by row.
        _ => observe_nulls(rows as u64),
    }
}

fn observe_numeric_column(
    summary: &mut NumericSummary,
    baseline: &NumericBaseline,
    tensor: Option<&JsonTensor>,
    column: usize,
    rows: u64,
) {
    let mut nulls = 0;
    for_each_row_value(
        tensor,
        column,
        rows,
        |value| summary.observe(baseline, value.and_then(number)),
        |n| nulls += n,
    );
    summary.nulls = summary.nulls.saturating_add(nulls);
}

fn observe_categorical_column(
    summary: &mut CategoricalSummary,
    baseline: &CategoricalBaseline,
    tensor: Option<&JsonTensor>,
    column: usize,
    rows: u64,
) {
    let mut nulls = 0;
    for_each_row_value(
        tensor,
        column,
        rows,
        |value| observe_category(summary, baseline, value),
        |n| nulls += n,
    );
    summary.nulls = summary.nulls.saturating_add(nulls);
}

/// Argmax classes of an `[N, C]` output (C ≥ 2), first maximum wins (NaN never does); an
/// output with one value per row holds class indices itself.
fn observe_classes(summary: &mut ClassSummary, tensor: &JsonTensor) {
    let rows = tensor_rows(tensor);
    let Some(stride) = row_stride(tensor, rows) else {
        return;
    };
    if stride == 1 {
        for value in &tensor.data {
            summary.observe_class(class_index(value));
        }
        return;
    }
    for row in tensor.data.chunks(stride) {
        let mut best = (0, f64::NEG_INFINITY);
        for (class, value) in row.iter().enumerate() {
            if let Some(value) = number(value) {
                if value > best.1 {
                    best = (class, value);
                }
            }
        }
        summary.observe_class(best.0);
    }
}

/// A value as a number: JSON numbers, and booleans as 0 or 1.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// A class index from an output value; anything but a non-negative integer overflows.
fn class_index(value: &Value) -> usize {
    match number(value) {
        Some(x) if x >= 0.0 && x.fract() == 0.0 => {
            if x < usize::MAX as f64 {
                x as usize
            } else {
                usize::MAX
            }
        }
        _ => usize::MAX,
    }
}

fn observe_category(
    summary: &mut CategoricalSummary,
    baseline: &CategoricalBaseline,
    value: Option<&Value>,
) {
    let mut text = ShortText::new();
    let written = match value {
        None | Some(Value::Null) => {
            summary.observe(baseline, None);
            return;
        }
        Some(Value::String(s)) => {
            summary.observe(baseline, Some(s));
            return;
        }
        Some(Value::Bool(b)) => write!(text, "{b}"),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                write!(text, "{i}")
            } else if let Some(u) = n.as_u64() {
                write!(text, "{u}")
            } else {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if is_integral(x) {
                    write!(text, "{}", x as i64)
                } else {
                    write!(text, "{x}")
                }
            }
        }
        Some(other) => {
            // Arrays and objects never pass the model's input checks.
            summary.observe(baseline, Some(&other.to_string()));
            return;
        }
    };
    match written {
        Ok(()) => summary.observe(baseline, Some(text.as_str())),
        // Only floats of extreme magnitude print longer than the buffer (1e300 prints 301
        // digits); no vocabulary entry is likely to be one, but count it right all the same.
        Err(fmt::Error) => {
            let long = match value.and_then(number) {
                Some(x) => format!("{x}"),
                None => String::new(),
            };
            summary.observe(baseline, Some(&long));
        }
    }
}

/// Whether `x` is an integer an `i64` holds exactly as printed.
fn is_integral(x: f64) -> bool {
    x.is_finite() && x.fract() == 0.0 && x >= i64::MIN as f64 && x < i64::MAX as f64
}

/// A short string on the stack, so categorical values are compared without allocating.
struct ShortText {
    bytes: [u8; ShortText::CAPACITY],
    len: usize,
}

impl ShortText {
    /// Room for any i64, u64 or bool, and for floats of ordinary magnitude.
    const CAPACITY: usize = 64;

    fn new() -> ShortText {
        ShortText {
            bytes: [0; ShortText::CAPACITY],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len])
            .expect("only whole str pieces are ever written")
    }
}

impl fmt::Write for ShortText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > ShortText::CAPACITY {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shoal_drift::wire::{baseline_to_wire, FeatureBinding};
    use shoal_drift::{ClassBaseline, FeatureBaseline, Moments, OutputBaseline};
    use shoal_model::{DType, TensorSpec};

    const DIGEST_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const DIGEST_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn numeric(edges: &[f64], min: f64, max: f64) -> NumericBaseline {
        NumericBaseline {
            edges: edges.to_vec(),
            counts: vec![1; edges.len() + 1],
            moments: Moments::from_parts(2, (min + max) / 2.0, 1.0, min, max),
            nulls: 0,
        }
    }

    /// Input `x` `[N, 3]`: a numeric feature in column 0 (edges 1, 2, 3; seen from 0 to 4), a
    /// categorical one in column 2; output `y` `[N, 3]` counted as argmax over 3 classes.
    fn manifest(digest: &str) -> Manifest {
        Manifest {
            workspace: "default".into(),
            model: "iris".into(),
            version: 1,
            digest: digest.into(),
            size_bytes: 10,
            ..Default::default()
        }
    }

    /// The drift baseline the tests' models come with.
    fn drift_baseline() -> DriftBaseline {
        let baseline = Baseline {
            rows: 10,
            features: vec![
                FeatureBaseline {
                    name: "temp".into(),
                    kind: FeatureKind::Numeric(numeric(&[1.0, 2.0, 3.0], 0.0, 4.0)),
                },
                FeatureBaseline {
                    name: "room".into(),
                    kind: FeatureKind::Categorical(CategoricalBaseline {
                        vocabulary: vec!["1".into(), "2".into(), "7.5".into()],
                        counts: vec![1, 1, 1, 1],
                        nulls: 0,
                    }),
                },
            ],
            outputs: vec![OutputBaseline {
                name: "y".into(),
                kind: OutputKind::Classes(ClassBaseline {
                    counts: vec![1, 1, 1, 0],
                }),
            }],
        };
        let bindings = [0, 2].map(|column| FeatureBinding {
            input: "x".into(),
            column,
        });
        baseline_to_wire(&baseline, &bindings)
    }

    fn signature(width: u64) -> IoSignature {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            dtype: DType::F32,
            shape: vec![Dim::Symbol("N".into()), Dim::Fixed(width)],
        };
        IoSignature {
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
        }
    }

    fn tensors(
        name: &str,
        shape: Vec<usize>,
        data: serde_json::Value,
    ) -> BTreeMap<String, JsonTensor> {
        let tensor = JsonTensor {
            shape,
            dtype: None,
            data: data.as_array().unwrap().clone(),
        };
        BTreeMap::from([(name.to_string(), tensor)])
    }

    fn only(mut windows: Vec<ClosedWindow>) -> ClosedWindow {
        assert_eq!(windows.len(), 1, "{windows:?}");
        windows.pop().unwrap()
    }

    #[test]
    fn latency_buckets_are_base_two_microseconds() {
        let us = Duration::from_micros;
        assert_eq!(latency_bucket(Duration::ZERO), 0);
        assert_eq!(latency_bucket(Duration::from_nanos(999)), 0);
        assert_eq!(latency_bucket(us(1)), 1);
        assert_eq!(latency_bucket(Duration::from_nanos(1999)), 1);
        assert_eq!(latency_bucket(us(2)), 2);
        assert_eq!(latency_bucket(us(3)), 2);
        assert_eq!(latency_bucket(us(4)), 3);
        assert_eq!(latency_bucket(us(7)), 3);
        // 1 ms: 2^9 = 512 ≤ 1000 < 1024 = 2^10.
        assert_eq!(latency_bucket(Duration::from_millis(1)), 10);
        assert_eq!(latency_bucket(us(1 << 29)), 30);
        assert_eq!(latency_bucket(us((1 << 30) - 1)), 30);
        assert_eq!(latency_bucket(us(1 << 30)), 31);
        assert_eq!(latency_bucket(Duration::from_secs(86_400)), 31);
        assert_eq!(latency_bucket(Duration::MAX), 31);
    }

    #[test]
    fn a_batch_is_counted_feature_by_feature_and_class_by_class() {
        let recorder = Recorder::new();
        assert_eq!(
            recorder.activate(
                &manifest(DIGEST_A),
                Some(&drift_baseline()),
                &signature(3),
                1000
            ),
            None
        );
        // Four rows: temp 0.5, 2, 3, 9 (bins 0, 2, 3, 3; 9 above the maximum 4); room 1, 2.0,
        // 7.5 and 3 (vocabulary, vocabulary, vocabulary, OTHER).
        let inputs = tensors(
            "x",
            vec![4, 3],
            json!([0.5, 0, 1, 2, 0, 2.0, 3, 0, 7.5, 9, 0, 3]),
        );
        let outputs = tensors(
            "y",
            vec![4, 3],
            json!([0.1, 0.8, 0.1, 0.7, 0.2, 0.1, 0.3, 0.3, 0.3, 0.0, 0.1, 0.9]),
        );
        recorder.record_inference(DIGEST_A, &inputs, &outputs, Duration::from_micros(5));
        recorder.record_error(ErrorKind::BadInput);
        recorder.record_error(ErrorKind::BadInput);
        recorder.record_error(ErrorKind::Inference);

        let open = recorder.open_window().unwrap();
        assert_eq!((open.start_ms, open.inferences, open.errors), (1000, 4, 3));
        let window = only(recorder.take_closed(2000, true));
        assert_eq!(recorder.open_window().unwrap().inferences, 0);
        let wire = window.to_wire(
            "cam-01",
            7,
            42,
            DeviceHealth::default(),
            DropCounts::default(),
        );
        assert_eq!(
            (wire.device_id.as_str(), wire.boot_epoch, wire.seq),
            ("cam-01", 7, 42)
        );
        assert_eq!((wire.start_ms, wire.end_ms), (1000, 2000));
        assert_eq!(wire.model.as_ref().unwrap().digest, DIGEST_A);
        assert_eq!(wire.inferences, 4);
        assert_eq!(
            wire.errors,
            [("bad_input".to_string(), 2), ("inference".to_string(), 1)].into()
        );
        let mut latency = vec![0; LATENCY_BUCKETS];
        latency[3] = 1;
        assert_eq!(wire.latency.unwrap().counts, latency);

        let summary = shoal_drift::wire::summary_from_wire(&wire.features, &wire.outputs).unwrap();
        let FeatureSummary::Numeric(temp) = &summary.features[0] else {
            panic!("{summary:?}")
        };
        assert_eq!(temp.counts, vec![1, 0, 1, 2]);
        assert_eq!((temp.below_min, temp.above_max, temp.nulls), (0, 1, 0));
        assert_eq!(temp.moments.count(), 4);
        assert_eq!(temp.moments.max(), Some(9.0));
        let FeatureSummary::Categorical(room) = &summary.features[1] else {
            panic!("{summary:?}")
        };
        assert_eq!(room.counts, vec![1, 1, 1, 1]);
        // Argmax per row: 1, 0, 0 (a tie: the first wins), 2.
        let OutputSummary::Classes(y) = &summary.outputs[0] else {
            panic!("{summary:?}")
        };
        assert_eq!(y.counts, vec![2, 1, 1, 0]);
        assert_eq!(
            wire.features
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>(),
            ["temp", "room"]
        );
    }

    #[test]
    fn categorical_values_print_as_integers_when_integral() {
        let baseline = CategoricalBaseline {
            vocabulary: vec!["3".into(), "-2".into(), "0.25".into(), "true".into()],
            counts: vec![0; 5],
            nulls: 0,
        };
        let mut summary = CategoricalSummary::new(&baseline);
        for value in [
            json!(3),
            json!(3.0),
            json!(-2.0),
            json!(0.25),
            json!(true),
            json!(1e300),
        ] {
            observe_category(&mut summary, &baseline, Some(&value));
        }
        observe_category(&mut summary, &baseline, None);
        assert_eq!(summary.counts, vec![2, 1, 1, 1, 1]);
        assert_eq!(summary.nulls, 1);
    }

    #[test]
    fn missing_columns_count_as_nulls_and_are_reported() {
        let recorder = Recorder::new();
        // The model's input has 2 columns: the categorical feature's column 2 does not exist.
        let problem = recorder
            .activate(
                &manifest(DIGEST_A),
                Some(&drift_baseline()),
                &signature(2),
                0,
            )
            .unwrap();
        assert_eq!(
            problem,
            "feature 'room' reads column 2 of input 'x', which has 2"
        );
        let inputs = tensors("x", vec![2, 2], json!([1.5, 0, 2.5, 0]));
        let outputs = tensors("y", vec![2, 2], json!([1, 0, 0, 1]));
        recorder.record_inference(DIGEST_A, &inputs, &outputs, Duration::ZERO);
        let wire = only(recorder.take_closed(1, true)).to_wire(
            "d",
            1,
            0,
            DeviceHealth::default(),
            DropCounts::default(),
        );
        let summary = shoal_drift::wire::summary_from_wire(&wire.features, &wire.outputs).unwrap();
        let FeatureSummary::Categorical(room) = &summary.features[1] else {
            panic!()
        };
        assert_eq!((room.nulls, room.binned()), (2, 0));
        let FeatureSummary::Numeric(temp) = &summary.features[0] else {
            panic!()
        };
        assert_eq!(temp.counts, vec![0, 1, 1, 0]);
    }

    #[test]
    fn a_bad_baseline_is_reported_and_inferences_still_count() {
        let mut broken = drift_baseline();
        broken.features[0].kind = None;
        let recorder = Recorder::new();
        let problem = recorder
            .activate(&manifest(DIGEST_A), Some(&broken), &signature(3), 0)
            .unwrap();
        assert!(
            problem.starts_with(
                "the drift baseline of iris v1 is unusable (feature 'temp' has no kind)"
            ),
            "{problem}"
        );
        let inputs = tensors("x", vec![1, 3], json!([1, 2, 3]));
        recorder.record_inference(DIGEST_A, &inputs, &BTreeMap::new(), Duration::ZERO);
        let wire = only(recorder.take_closed(1, true)).to_wire(
            "d",
            1,
            0,
            DeviceHealth::default(),
            DropCounts::default(),
        );
        assert_eq!(wire.inferences, 1);
        assert!(wire.features.is_empty() && wire.outputs.is_empty());
    }

    #[test]
    fn a_model_switch_closes_the_window() {
        let recorder = Recorder::new();
        recorder.activate(
            &manifest(DIGEST_A),
            Some(&drift_baseline()),
            &signature(3),
            100,
        );
        let inputs = tensors("x", vec![2, 3], json!([1, 1, 1, 2, 2, 2]));
        recorder.record_inference(DIGEST_A, &inputs, &BTreeMap::new(), Duration::ZERO);
        assert!(recorder.take_closed(150, false).is_empty(), "still open");

        recorder.activate(
            &manifest(DIGEST_B),
            Some(&drift_baseline()),
            &signature(3),
            200,
        );
        let closed = only(recorder.take_closed(250, false));
        let wire = closed.to_wire("d", 1, 0, DeviceHealth::default(), DropCounts::default());
        assert_eq!(wire.model.unwrap().digest, DIGEST_A);
        assert_eq!((wire.start_ms, wire.end_ms, wire.inferences), (100, 200, 2));

        // A request the old model answered after the switch: counted, not binned.
        recorder.record_inference(DIGEST_A, &inputs, &BTreeMap::new(), Duration::ZERO);
        recorder.record_inference(DIGEST_B, &inputs, &BTreeMap::new(), Duration::ZERO);
        let wire = only(recorder.take_closed(300, true)).to_wire(
            "d",
            1,
            1,
            DeviceHealth::default(),
            DropCounts::default(),
        );
        assert_eq!(wire.model.unwrap().digest, DIGEST_B);
        assert_eq!((wire.start_ms, wire.end_ms, wire.inferences), (200, 300, 4));
        let summary = shoal_drift::wire::summary_from_wire(&wire.features, &wire.outputs).unwrap();
        let FeatureSummary::Numeric(temp) = &summary.features[0] else {
            panic!()
        };
        assert_eq!(temp.binned(), 2, "only model B's own request is binned");
    }

    #[test]
    fn empty_windows_are_not_kept() {
        let recorder = Recorder::new();
        recorder.record_error(ErrorKind::NoModel);
        assert_eq!(recorder.errors_without_model(), 1);
        assert!(
            recorder.take_closed(10, true).is_empty(),
            "no model, no window"
        );

        recorder.activate(
            &manifest(DIGEST_A),
            Some(&drift_baseline()),
            &signature(3),
            10,
        );
        assert!(recorder.take_closed(20, true).is_empty());
        recorder.activate(
            &manifest(DIGEST_B),
            Some(&drift_baseline()),
            &signature(3),
            30,
        );
        assert!(
            recorder.take_closed(40, false).is_empty(),
            "the switch closed nothing"
        );

        recorder.record_error(ErrorKind::NoModel);
        let closed = recorder.stop(50);
        assert_eq!(only(closed).counts.errors, [0, 0, 1]);
        recorder.record_error(ErrorKind::BadInput);
        assert!(recorder.take_closed(60, true).is_empty(), "stopped");
        assert_eq!(
            recorder.activate(
                &manifest(DIGEST_A),
                Some(&drift_baseline()),
                &signature(3),
                70
            ),
            None
        );
        assert!(
            recorder.take_closed(80, true).is_empty(),
            "stopped for good"
        );
    }

    /// Not an assertion: prints what one row costs the accumulator. Run with
    /// `cargo test -p shoal-agent --lib --release -- --ignored --nocapture observe_cost`.
    #[test]
    #[ignore]
    fn observe_cost() {
        let recorder = Recorder::new();
        recorder.activate(
            &manifest(DIGEST_A),
            Some(&drift_baseline()),
            &signature(3),
            0,
        );
        for batch in [1usize, 64] {
            let values: Vec<f64> = (0..batch * 3).map(|i| (i % 7) as f64 * 0.7).collect();
            let inputs = tensors("x", vec![batch, 3], json!(values));
            let outputs = tensors("y", vec![batch, 3], json!(values));
            let rounds = 200_000 / batch;
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                recorder.record_inference(
                    std::hint::black_box(DIGEST_A),
                    std::hint::black_box(&inputs),
                    std::hint::black_box(&outputs),
                    Duration::from_micros(50),
                );
            }
            let per_request = started.elapsed().as_nanos() as f64 / rounds as f64;
            println!(
                "batch {batch}: {per_request:.0} ns per request, {:.0} ns per row (2 features, 1 output)",
                per_request / batch as f64
            );
        }
    }
}
