//! `shoal telemetry`: telemetry windows from devices, live or as the hub holds them.

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::HubClient;
use shoal_proto::telemetry as tpb;

use crate::error::CliResult;
use crate::output::{age, print_one, Format};

#[derive(Subcommand)]
pub enum TelemetryCommand {
    /// Prints windows as they arrive.
    Tail {
        #[arg(long)]
        device: Option<String>,
    },
    /// What the hub holds of a device's telemetry, including what its buffer dropped.
    Show { device: String },
}

/// `shoal telemetry …`.
///
/// # Errors
/// One line for the user.
pub async fn run(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: TelemetryCommand,
) -> CliResult<()> {
    match command {
        TelemetryCommand::Tail { device } => {
            tail(hub, ws, device.as_deref().unwrap_or(""), out).await?;
        }
        TelemetryCommand::Show { device } => {
            let t = hub
                .telemetry
                .get_device_telemetry(tpb::GetDeviceTelemetryRequest {
                    workspace: ws.into(),
                    device,
                })
                .await?
                .into_inner();
            print_one(out, &device_telemetry_json(&t));
        }
    }
    Ok(())
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
async fn tail(hub: &mut HubClient, workspace: &str, device: &str, format: Format) -> CliResult<()> {
    use futures::StreamExt;
    let mut stream = hub
        .telemetry
        .tail_telemetry(tpb::TailTelemetryRequest {
            workspace: workspace.into(),
            device: device.into(),
        })
        .await?
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
        let event = event?;
        let row = window_row(&event);
        match format {
            Format::Json => println!("{row}"),
            Format::Table => {
                let text = crate::output::table(&columns, &[row]);
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
fn device_telemetry_json(t: &tpb::DeviceTelemetry) -> Value {
    let dropped = t.dropped.unwrap_or_default();
    let health = t.health.unwrap_or_default();
    let rejected: std::collections::BTreeMap<_, _> = t.rejected.iter().collect();
    json!({
        "device": t.device, "windows": t.windows, "duplicates": t.duplicates, "inferences": t.inferences,
        "rejected": t.rejected.values().sum::<u64>(), "rejected_by_reason": rejected,
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
