//! `shoal deployment`: deployments of model versions to devices.

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::HubClient;
use shoal_proto::deployment as dpb;

use crate::args::split_reference;
use crate::error::CliResult;
use crate::output::{print_list, print_one, Format};

#[derive(Subcommand)]
pub enum DeploymentCommand {
    /// Sends a model version to devices (all at once).
    Create {
        name: String,
        /// NAME@VERSION or NAME@ALIAS.
        #[arg(long)]
        model: String,
        /// Comma-separated device ids.
        #[arg(long, value_delimiter = ',', required = true)]
        devices: Vec<String>,
    },
    List,
    Show {
        name: String,
    },
}

/// `shoal deployment …`.
///
/// # Errors
/// One line for the user.
pub async fn run(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: DeploymentCommand,
) -> CliResult<()> {
    match command {
        DeploymentCommand::Create {
            name,
            model,
            devices,
        } => {
            let (model, reference) = split_reference(&model);
            let d = hub
                .deployments
                .create_deployment(dpb::CreateDeploymentRequest {
                    workspace: ws.into(),
                    name,
                    model: model.into(),
                    model_reference: reference.into(),
                    devices,
                    strategy: dpb::Strategy::AllAtOnce as i32,
                })
                .await?;
            print_one(out, &deployment_json(&d.into_inner()));
        }
        DeploymentCommand::List => {
            let list = hub
                .deployments
                .list_deployments(dpb::ListDeploymentsRequest {
                    workspace: ws.into(),
                })
                .await?;
            let rows: Vec<Value> = list
                .into_inner()
                .deployments
                .iter()
                .map(deployment_json)
                .collect();
            print_list(
                out,
                &[
                    ("NAME", "name"),
                    ("MODEL", "model_version"),
                    ("DEVICES", "devices"),
                    ("PROGRESS", "progress"),
                ],
                &rows,
            );
        }
        DeploymentCommand::Show { name } => {
            let d = hub
                .deployments
                .get_deployment(dpb::GetDeploymentRequest {
                    workspace: ws.into(),
                    name,
                })
                .await?;
            print_one(out, &deployment_json(&d.into_inner()));
        }
    }
    Ok(())
}

fn deployment_json(d: &dpb::Deployment) -> Value {
    let active = d.status.iter().filter(|s| s.state == "active").count();
    let failed = d.status.iter().filter(|s| s.state == "failed").count();
    let status: Vec<Value> = d
        .status
        .iter()
        .map(|s| json!({"device": s.device_id, "state": s.state, "error": s.error}))
        .collect();
    json!({
        "workspace": d.workspace, "name": d.name, "model": d.model, "version": d.version, "model_version": format!("{}@{}", d.model, d.version),
        "model_reference": d.model_reference, "digest": d.digest, "devices": d.devices, "strategy": "all_at_once",
        "progress": format!("{active}/{} active, {failed} failed", d.devices.len()), "status": status, "created_at_ms": d.created_at_ms,
    })
}
