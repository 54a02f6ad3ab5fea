//! Sensor-like data for telemetry and drift scenarios: rows drawn from a known distribution
//! (optionally shifted), their CSV, and telemetry windows summarised the way a device does.

use prost::Message;
use shoal_drift::{
    profile_csv, Baseline, ClassBaseline, FeatureKind, FeatureSummary, OutputBaseline, OutputKind,
    OutputSummary, ProfileOptions, WindowSummary,
};
use shoal_model::build::{Mlp, SplitMix64};
use shoal_proto::device::{ActiveModel, DropCounts, TelemetryWindow};

/// The columns of the sensor data, in the model input's order.
pub const FEATURES: [&str; 4] = ["temp", "hum", "light", "co2"];

/// `n` rows drawn uniformly from [i, i + 10) for column i, moved by `shift`.
pub fn sensor_rows(seed: u64, n: usize, shift: f32) -> Vec<[f32; 4]> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| std::array::from_fn(|i| i as f32 + 5.0 + 5.0 * rng.unit() as f32 + shift))
        .collect()
}

/// The rows as CSV with a header of [`FEATURES`].
pub fn sensor_csv(rows: &[[f32; 4]]) -> String {
    let mut text = FEATURES.join(",") + "\n";
    for row in rows {
        text += &row
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",");
        text += "\n";
    }
    text
}

pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
        )
        .0
}

/// The baseline a device gets for this training data: the same profile the hub computes, and
/// the model's classes on the same rows.
pub fn device_baseline(training: &[[f32; 4]], mlp: &Mlp) -> Baseline {
    let options = ProfileOptions {
        features: Some(FEATURES.map(String::from).to_vec()),
        ..Default::default()
    };
    let mut baseline = profile_csv(sensor_csv(training).as_bytes(), &options)
        .expect("profile")
        .baseline();
    let predictions: Vec<usize> = training.iter().map(|r| argmax(&mlp.forward(r))).collect();
    baseline.outputs = vec![OutputBaseline {
        name: "y".into(),
        kind: OutputKind::Classes(ClassBaseline::from_predictions(mlp.outputs(), predictions)),
    }];
    baseline
}

/// Identifies a window and what it reports besides its sample.
pub struct WindowMeta<'a> {
    pub device: &'a str,
    pub boot_epoch: u64,
    pub seq: u64,
    pub end_ms: i64,
    pub model: &'a str,
    pub version: u32,
    pub digest: &'a str,
    pub dropped_records: u64,
}

/// A telemetry window over `sample`, encoded as a device sends it.
pub fn window_payload(
    baseline: &Baseline,
    mlp: &Mlp,
    meta: &WindowMeta,
    sample: &[[f32; 4]],
) -> Vec<u8> {
    let mut summary = WindowSummary::new(baseline);
    for row in sample {
        for (i, feature) in baseline.features.iter().enumerate() {
            if let (FeatureKind::Numeric(b), FeatureSummary::Numeric(s)) =
                (&feature.kind, &mut summary.features[i])
            {
                s.observe(b, Some(row[i] as f64));
            }
        }
        if let Some(OutputSummary::Classes(c)) = summary.outputs.first_mut() {
            c.observe_class(argmax(&mlp.forward(row)));
        }
    }
    let (features, outputs) = shoal_drift::wire::summary_to_wire(&summary, baseline);
    TelemetryWindow {
        device_id: meta.device.into(),
        boot_epoch: meta.boot_epoch,
        seq: meta.seq,
        start_ms: meta.end_ms - 60_000,
        end_ms: meta.end_ms,
        model: Some(ActiveModel {
            model: meta.model.into(),
            version: meta.version,
            digest: meta.digest.into(),
        }),
        inferences: sample.len() as u64,
        features,
        outputs,
        dropped: Some(DropCounts {
            cap_records: meta.dropped_records,
            items: meta.dropped_records * 10,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// One received HTTP request: lower-cased header names with values, and the body.
pub type ReceivedRequest = (Vec<(String, String)>, Vec<u8>);

/// A one-request-at-a-time HTTP server that records what it receives, for webhook tests.
pub struct WebhookReceiver {
    pub url: String,
    pub requests: tokio::sync::mpsc::Receiver<ReceivedRequest>,
}

impl WebhookReceiver {
    pub async fn start() -> WebhookReceiver {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let (tx, requests) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut reader = BufReader::new(stream);
                    let mut line = String::new();
                    let mut headers = Vec::new();
                    if reader.read_line(&mut line).await.is_err() {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0
                            || line.trim().is_empty()
                        {
                            break;
                        }
                        if let Some((k, v)) = line.trim().split_once(':') {
                            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                        }
                    }
                    let length = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let _ = reader
                        .get_mut()
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    let _ = tx.send((headers, body)).await;
                });
            }
        });
        WebhookReceiver { url, requests }
    }
}
