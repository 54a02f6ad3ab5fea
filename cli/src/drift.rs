//! `shoal drift`: drift reports of a model version, and the monitors that evaluate them every
//! period and raise alerts.

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::HubClient;
use shoal_proto::telemetry as tpb;

use crate::args::split_reference;
use crate::error::{CliError, CliResult};
use crate::output::{age, print_list, print_one, Format};

#[derive(Subcommand)]
pub enum DriftCommand {
    /// Per feature: rows, PSI, JS, Wasserstein, KS, chi-square and status.
    Report {
        /// NAME@VERSION or NAME@ALIAS.
        reference: String,
        /// How far back: 90s, 30m, 1h, 2d (default: all stored windows).
        #[arg(long)]
        since: Option<String>,
        /// Comma-separated device ids (default: every device).
        #[arg(long, value_delimiter = ',')]
        devices: Vec<String>,
        /// Below this many values a feature reads "not enough data".
        #[arg(long, default_value_t = 0)]
        min_rows: u64,
    },
    /// Monitors that evaluate drift every period and raise alerts.
    #[command(subcommand)]
    Monitor(MonitorCommand),
}

#[derive(Subcommand)]
pub enum MonitorCommand {
    /// Evaluates a model's drift every period and alerts on a breach.
    Create {
        name: String,
        /// NAME@VERSION or NAME@ALIAS (an alias is followed as it moves).
        #[arg(long)]
        model: String,
        /// js, psi, wasserstein or ks; repeat `--metric M --threshold T` to watch several.
        #[arg(long, default_values_t = vec!["js".to_string()])]
        metric: Vec<String>,
        /// The value at which each metric (in the same order) breaches.
        #[arg(long, default_values_t = vec![0.1])]
        threshold: Vec<f64>,
        /// The period: 90s, 5m, 1h.
        #[arg(long, default_value = "5m")]
        every: String,
        #[arg(long, default_value_t = 500)]
        min_rows: u64,
        #[arg(long, value_delimiter = ',')]
        devices: Vec<String>,
        /// POSTs each alert here, signed with HMAC-SHA256 (X-Shoal-Signature).
        #[arg(long, default_value = "")]
        webhook: String,
        /// What to start on an alert: `retrain:<run>` repeats that run (a built-in trainer on its
        /// dataset's latest version, or the same script); anything else is kept on the alert
        /// for an outside pipeline.
        #[arg(long, default_value = "")]
        on_alert: String,
    },
    List,
    /// A monitor and its recent evaluations.
    Show {
        name: String,
    },
    Delete {
        name: String,
    },
}

/// `shoal drift …`.
///
/// # Errors
/// One line for the user.
pub async fn run(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: DriftCommand,
) -> CliResult<()> {
    match command {
        DriftCommand::Report {
            reference,
            since,
            devices,
            min_rows,
        } => {
            let (name, version) = split_reference(&reference);
            let since_ms = match since {
                Some(text) => shoal_compute::now_ms() - parse_duration_ms(&text)?,
                None => 0,
            };
            let report = hub
                .telemetry
                .get_drift_report(tpb::GetDriftReportRequest {
                    workspace: ws.into(),
                    model: name.into(),
                    reference: version.into(),
                    since_ms,
                    until_ms: 0,
                    devices,
                    min_rows,
                })
                .await?
                .into_inner();
            print_drift(out, &report);
        }
        DriftCommand::Monitor(command) => monitor_command(hub, ws, out, command).await?,
    }
    Ok(())
}

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
fn print_drift(format: Format, report: &tpb::DriftReport) {
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

fn monitor_json(m: &tpb::Monitor) -> Value {
    json!({
        "workspace": m.workspace, "name": m.name, "model": format!("{}@{}", m.model, m.reference),
        "thresholds": m.thresholds.iter().map(|t| format!("{}≥{}", t.metric, t.threshold)).collect::<Vec<_>>(), "every_ms": m.every_ms, "min_rows": m.min_rows,
        "devices": m.devices, "webhook": m.webhook_url, "on_alert": m.on_alert, "created_at_ms": m.created_at_ms,
    })
}

async fn monitor_command(
    hub: &mut HubClient,
    workspace: &str,
    format: Format,
    command: MonitorCommand,
) -> CliResult<()> {
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
            let (model, reference) = split_reference(&model);
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
                .await?
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
                .await?
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
                .await?
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
                .await?;
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
