//! `shoal model baseline set`, `shoal drift report` and `shoal telemetry tail|show`.

use serde_json::{json, Value};
use shoal_proto::telemetry as tpb;

use super::output::{age, print_list, print_one, Format};
use super::CliError;
use super::CliResult;
use super::{describe_status, HubClient, MonitorCommand};

/// Parses `90s`, `30m`, `1h`, `2d` (or plain seconds) into milliseconds.
pub fn parse_duration_ms(text: &str) -> CliResult<i64> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 90s, 30m, 1h or 2d"))?;
    let ms = match unit {
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(CliError::Message(format!(
                "'{text}': unknown unit '{unit}' (s, m, h, d)"
            )))
        }
    };
    Ok(n * ms)
}

fn number(v: Option<f64>) -> Value {
    match v {
        Some(x) if x.is_finite() => json!((x * 10_000.0).round() / 10_000.0),
        _ => Value::Null,
    }
}

fn drift_row(f: &tpb::FeatureDrift) -> Value {
    json!({
        "name": f.name, "kind": f.kind, "rows": f.rows, "nulls": f.nulls, "nans": f.nans,
        "below_min": f.below_min, "above_max": f.above_max,
        "psi": number(f.psi), "js": number(f.js), "ks": number(f.ks),
        "wasserstein": number(f.wasserstein), "chi_square": number(f.chi_square), "status": f.status,
    })
}

/// Prints a drift report: per feature (and output) rows, PSI, JS, Wasserstein, KS, status.
pub fn print_drift(format: Format, report: &tpb::DriftReport) {
    let features: Vec<Value> = report.features.iter().map(drift_row).collect();
    let outputs: Vec<Value> = report.outputs.iter().map(drift_row).collect();
    match format {
        Format::Json => {
            let body = json!({
                "workspace": report.workspace, "model": report.model, "version": report.version,
                "since_ms": report.since_ms, "until_ms": report.until_ms, "windows": report.windows,
                "devices": report.devices, "inferences": report.inferences, "errors": report.errors,
                "min_rows": report.min_rows, "status": report.status, "note": report.note,
                "features": features, "outputs": outputs,
            });
            print_one(Format::Json, &body);
        }
        Format::Table => {
            println!(
                "{}@{}: {} windows from {} devices, {} inferences; drift {}",
                report.model,
                report.version,
                report.windows,
                report.devices,
                report.inferences,
                report.status
            );
            if !report.note.is_empty() {
                println!("note: {}", report.note);
            }
            let columns = [
                ("FEATURE", "name"),
                ("KIND", "kind"),
                ("ROWS", "rows"),
                ("PSI", "psi"),
                ("JS", "js"),
                ("WASSERSTEIN", "wasserstein"),
                ("KS", "ks"),
                ("CHI2", "chi_square"),
                ("STATUS", "status"),
            ];
            let mut rows = features;
            rows.extend(outputs);
            print_list(Format::Table, &columns, &rows);
        }
    }
}

fn window_row(event: &tpb::WindowEvent) -> Value {
    let w = event.window.clone().unwrap_or_default();
    let model = w
        .model
        .as_ref()
        .map(|m| format!("{}@{}", m.model, m.version))
        .unwrap_or_default();
    let errors: u64 = w.errors.values().sum();
    let dropped = w.dropped.unwrap_or_default();
    let health = w.health.unwrap_or_default();
    json!({
        "device": w.device_id, "boot_epoch": w.boot_epoch, "seq": w.seq, "model": model,
        "start_ms": w.start_ms, "end_ms": w.end_ms, "inferences": w.inferences, "errors": errors,
        "features": w.features.len(), "buffered": health.buffer_records,
        "dropped": dropped.cap_records + dropped.age_records + dropped.corrupt_records,
        "rss_mib": (health.rss_bytes as f64 / 1048576.0 * 10.0).round() / 10.0,
        "received": age(event.received_at_ms),
    })
}

/// Follows live windows until the stream ends or the user interrupts.
pub async fn tail(
    hub: &mut HubClient,
    workspace: &str,
    device: &str,
    format: Format,
) -> CliResult<()> {
    use futures::StreamExt;
    let mut stream = hub
        .telemetry
        .tail_telemetry(tpb::TailTelemetryRequest {
            workspace: workspace.into(),
            device: device.into(),
        })
        .await
        .map_err(|s| describe_status(&s))?
        .into_inner();
    let columns = [
        ("DEVICE", "device"),
        ("SEQ", "seq"),
        ("MODEL", "model"),
        ("INFERENCES", "inferences"),
        ("ERRORS", "errors"),
        ("BUFFERED", "buffered"),
        ("DROPPED", "dropped"),
        ("RSS MiB", "rss_mib"),
    ];
    if format == Format::Table {
        eprintln!("following telemetry windows (Ctrl-C stops)");
    }
    while let Some(event) = stream.next().await {
        let event = event.map_err(|s| describe_status(&s))?;
        let row = window_row(&event);
        match format {
            Format::Json => println!("{row}"),
            Format::Table => {
                let text = super::output::table(&columns, &[row]);
                // One line per window: the table's body, without its header.
                print!(
                    "{}",
                    text.lines()
                        .nth(1)
                        .map(|l| format!("{l}\n"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// What the hub holds of one device's telemetry, including its drop accounting.
pub fn device_telemetry_json(t: &tpb::DeviceTelemetry) -> Value {
    let dropped = t.dropped.unwrap_or_default();
    let health = t.health.unwrap_or_default();
    json!({
        "device": t.device, "windows": t.windows, "duplicates": t.duplicates, "inferences": t.inferences,
        "last_window": age(t.last_window_ms), "last_window_ms": t.last_window_ms,
        "dropped": {
            "records": dropped.cap_records + dropped.age_records + dropped.corrupt_records,
            "cap_records": dropped.cap_records, "age_records": dropped.age_records,
            "corrupt_records": dropped.corrupt_records, "inferences": dropped.items,
            "bytes": dropped.bytes, "store_resets": dropped.store_resets,
        },
        "health": {
            "cpu_percent": health.cpu_percent, "rss_bytes": health.rss_bytes,
            "disk_free_bytes": health.disk_free_bytes, "buffer_records": health.buffer_records,
            "buffer_bytes": health.buffer_bytes,
        },
    })
}

pub fn alert_json(a: &tpb::Alert) -> Value {
    let breaches: Vec<String> = a
        .breaches
        .iter()
        .map(|b| format!("{} {}={:.4}≥{}", b.feature, b.metric, b.value, b.threshold))
        .collect();
    json!({
        "workspace": a.workspace, "id": a.id, "monitor": a.monitor, "model": a.model, "version": a.version,
        "model_version": format!("{}@{}", a.model, a.version), "at": age(a.at_ms), "at_ms": a.at_ms,
        "breaches": breaches, "webhook": a.webhook, "on_alert": a.on_alert, "retrain": a.retrain,
    })
}

fn monitor_json(m: &tpb::Monitor) -> Value {
    json!({
        "workspace": m.workspace, "name": m.name, "model": format!("{}@{}", m.model, m.reference),
        "thresholds": m.thresholds.iter().map(|t| format!("{}≥{}", t.metric, t.threshold)).collect::<Vec<_>>(), "every_ms": m.every_ms, "min_rows": m.min_rows,
        "devices": m.devices, "webhook": m.webhook_url, "on_alert": m.on_alert, "created_at_ms": m.created_at_ms,
    })
}

pub(super) async fn monitor_command(
    hub: &mut HubClient,
    workspace: &str,
    format: Format,
    command: MonitorCommand,
) -> CliResult<()> {
    let status = |s: tonic::Status| describe_status(&s);
    match command {
        MonitorCommand::Create {
            name,
            model,
            metric,
            threshold,
            every,
            min_rows,
            devices,
            webhook,
            on_alert,
        } => {
            let (model, reference) = super::split_reference(&model);
            if metric.len() != threshold.len() {
                return Err(CliError::Message(format!(
                    "{} --metric but {} --threshold: give one threshold per metric, in order",
                    metric.len(),
                    threshold.len()
                )));
            }
            let thresholds = metric
                .into_iter()
                .zip(threshold)
                .map(|(metric, threshold)| tpb::MetricThreshold { metric, threshold })
                .collect();
            let monitor = tpb::Monitor {
                workspace: workspace.into(),
                name,
                model: model.into(),
                reference: reference.into(),
                devices,
                thresholds,
                every_ms: parse_duration_ms(&every)?,
                min_rows,
                webhook_url: webhook,
                on_alert,
                ..Default::default()
            };
            let created = hub
                .telemetry
                .create_monitor(tpb::CreateMonitorRequest {
                    monitor: Some(monitor),
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut body = monitor_json(&created);
            if !created.webhook_url.is_empty() {
                body["webhook_secret"] = json!(created.webhook_secret);
                eprintln!("webhook bodies are signed: X-Shoal-Signature: sha256=HMAC-SHA256(secret, body); the secret is shown only now");
            }
            print_one(format, &body);
        }
        MonitorCommand::List => {
            let list = hub
                .telemetry
                .list_monitors(tpb::ListMonitorsRequest {
                    workspace: workspace.into(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let rows: Vec<Value> = list.monitors.iter().map(monitor_json).collect();
            print_list(
                format,
                &[
                    ("NAME", "name"),
                    ("MODEL", "model"),
                    ("THRESHOLDS", "thresholds"),
                    ("EVERY MS", "every_ms"),
                    ("MIN ROWS", "min_rows"),
                    ("WEBHOOK", "webhook"),
                ],
                &rows,
            );
        }
        MonitorCommand::Show { name } => {
            let details = hub
                .telemetry
                .get_monitor(tpb::GetMonitorRequest {
                    workspace: workspace.into(),
                    name,
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut body = details
                .monitor
                .as_ref()
                .map(monitor_json)
                .unwrap_or(Value::Null);
            body["evaluations"] = details
                .evaluations
                .iter()
                .map(|e| json!({"at": age(e.at_ms), "at_ms": e.at_ms, "version": e.version, "windows": e.windows, "inferences": e.inferences, "status": e.status, "breaches": e.breaches.len(), "note": e.note}))
                .collect();
            print_one(format, &body);
        }
        MonitorCommand::Delete { name } => {
            hub.telemetry
                .delete_monitor(tpb::DeleteMonitorRequest {
                    workspace: workspace.into(),
                    name: name.clone(),
                })
                .await
                .map_err(status)?;
            eprintln!("deleted monitor {name}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration_ms("90s").unwrap(), 90_000);
        assert_eq!(parse_duration_ms("30m").unwrap(), 1_800_000);
        assert_eq!(parse_duration_ms("1h").unwrap(), 3_600_000);
        assert_eq!(parse_duration_ms("2d").unwrap(), 172_800_000);
        assert_eq!(parse_duration_ms("15").unwrap(), 15_000);
        assert!(parse_duration_ms("1w")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse_duration_ms("soon").is_err());
    }
}
