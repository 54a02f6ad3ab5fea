//! `shoal alert`: alerts raised by drift monitors.

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::HubClient;
use shoal_proto::telemetry as tpb;

use crate::error::CliResult;
use crate::output::{age, print_list, Format};

#[derive(Subcommand)]
pub enum AlertCommand {
    List {
        #[arg(long, default_value = "")]
        monitor: String,
    },
}

/// `shoal alert …`.
///
/// # Errors
/// One line for the user.
pub async fn run(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: AlertCommand,
) -> CliResult<()> {
    match command {
        AlertCommand::List { monitor } => {
            let alerts = hub
                .telemetry
                .list_alerts(tpb::ListAlertsRequest {
                    workspace: ws.into(),
                    monitor,
                })
                .await?
                .into_inner()
                .alerts;
            let rows: Vec<Value> = alerts.iter().map(alert_json).collect();
            print_list(
                out,
                &[
                    ("ID", "id"),
                    ("MONITOR", "monitor"),
                    ("MODEL", "model_version"),
                    ("AT", "at"),
                    ("BREACHES", "breaches"),
                    ("WEBHOOK", "webhook"),
                    ("RETRAIN", "retrain"),
                ],
                &rows,
            );
        }
    }
    Ok(())
}

fn alert_json(a: &tpb::Alert) -> Value {
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
