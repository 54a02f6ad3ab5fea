//! `shoal device`: devices, their enrollment, and the agent config `device add` writes.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::HubClient;
use shoal_proto::device::{ReportedState, UpdatePhase};
use shoal_proto::fleet as fpb;

use crate::args::parse_key_value;
use crate::error::{CliError, CliResult};
use crate::output::{age, print_list, print_one, Format};

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Enrolls a device and writes its complete agent config (with its MQTT password).
    Add {
        id: String,
        /// Where to write the agent config (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
        #[arg(long = "tag", value_parser = parse_key_value)]
        tags: Vec<(String, String)>,
    },
    List,
    Show {
        id: String,
    },
    Remove {
        id: String,
    },
}

/// `shoal device …`.
///
/// # Errors
/// One line for the user.
pub async fn run(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: DeviceCommand,
) -> CliResult<()> {
    match command {
        DeviceCommand::Add { id, output, tags } => {
            let creds = hub
                .fleet
                .add_device(fpb::AddDeviceRequest {
                    workspace: ws.into(),
                    id: id.clone(),
                    tags: tags.into_iter().collect(),
                })
                .await?
                .into_inner();
            let text = agent_config_toml(&creds)?;
            match output {
                Some(path) => {
                    write_private(&path, &text)?;
                    eprintln!("enrolled {id}; wrote its agent config to {} (it holds the device's password: keep it private)", path.display());
                }
                None => print!("{text}"),
            }
        }
        DeviceCommand::List => {
            let list = hub
                .fleet
                .list_devices(fpb::ListDevicesRequest {
                    workspace: ws.into(),
                })
                .await?;
            let rows: Vec<Value> = list.into_inner().devices.iter().map(device_json).collect();
            print_list(
                out,
                &[
                    ("ID", "id"),
                    ("ONLINE", "online"),
                    ("ACTIVE", "active_model"),
                    ("DESIRED", "desired_model"),
                    ("UPDATE", "update.phase"),
                    ("LAST SEEN", "last_seen"),
                    ("ERROR", "update.error"),
                ],
                &rows,
            );
        }
        DeviceCommand::Show { id } => {
            let d = hub
                .fleet
                .get_device(fpb::GetDeviceRequest {
                    workspace: ws.into(),
                    id,
                })
                .await?;
            print_one(out, &device_json(&d.into_inner()));
        }
        DeviceCommand::Remove { id } => {
            hub.fleet
                .remove_device(fpb::RemoveDeviceRequest {
                    workspace: ws.into(),
                    id: id.clone(),
                })
                .await?;
            eprintln!("removed device {id}");
        }
    }
    Ok(())
}

/// The agent config (TOML) for freshly issued credentials: the file `shoal-agent run
/// --config` reads. A hub serving TLS hands out its CA, written inline as `hub.ca_pem`: the
/// agent then trusts that CA only. Its format is the agent's (`shoal_agent::config::AgentConfigFile`,
/// version 1); the CLI writes it without linking the agent, and the integration tests parse
/// what it writes with the agent's own reader.
pub fn agent_config_toml(creds: &fpb::DeviceCredentials) -> CliResult<String> {
    #[derive(serde::Serialize)]
    struct File<'a> {
        version: u32,
        device: Device<'a>,
        hub: Hub<'a>,
    }
    #[derive(serde::Serialize)]
    struct Device<'a> {
        id: &'a str,
        workspace: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Hub<'a> {
        mqtt_url: &'a str,
        mqtt_username: &'a str,
        mqtt_password: &'a str,
        topic_prefix: &'a str,
        public_key: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        ca_pem: Option<&'a str>,
    }
    let device = creds.device.clone().unwrap_or_default();
    let file = File {
        version: 1,
        device: Device {
            id: &device.id,
            workspace: &device.workspace,
        },
        hub: Hub {
            mqtt_url: &creds.mqtt_url,
            mqtt_username: &creds.mqtt_username,
            mqtt_password: &creds.mqtt_password,
            topic_prefix: &creds.topic_prefix,
            public_key: &creds.hub_public_key,
            ca_pem: (!creds.hub_ca_pem.is_empty()).then_some(creds.hub_ca_pem.as_str()),
        },
    };
    let body = toml::to_string(&file)
        .map_err(|e| CliError::Message(format!("cannot write the agent config: {e}")))?;
    Ok(format!("# Shoal agent config, written by `shoal device add`. Run: shoal-agent run --config THIS_FILE\n{body}"))
}

/// Writes a file only its owner can read.
pub(crate) fn write_private(path: &Path, text: &str) -> CliResult<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| CliError::Write {
        path: path.display().to_string(),
        source,
    })?;
    file.write_all(text.as_bytes())
        .map_err(|source| CliError::Write {
            path: path.display().to_string(),
            source,
        })
}

fn phase_name(phase: i32) -> &'static str {
    match UpdatePhase::try_from(phase).unwrap_or(UpdatePhase::Unspecified) {
        UpdatePhase::Downloading => "downloading",
        UpdatePhase::Verifying => "verifying",
        UpdatePhase::Active => "active",
        UpdatePhase::Failed => "failed",
        UpdatePhase::Unspecified => "",
    }
}

/// A device as the CLI shows it.
pub fn device_json(d: &fpb::Device) -> Value {
    let reported: ReportedState = d.reported.clone().unwrap_or_default();
    let model_ref = |m: &Option<shoal_proto::device::ActiveModel>| {
        m.as_ref().map(|m| format!("{}@{}", m.model, m.version))
    };
    let update = reported.update.as_ref().map(|u| {
        json!({"revision": u.revision, "deployment": u.deployment, "model": format!("{}@{}", u.model, u.version), "phase": phase_name(u.phase),
               "error": u.error, "received_bytes": u.received_bytes, "total_bytes": u.total_bytes, "resumed_from": u.resumed_from})
    });
    let refused = reported.refused.as_ref().map(|r| {
        json!({"revision": r.revision, "reason": r.reason, "at": age(r.at_ms), "at_ms": r.at_ms})
    });
    let tags: std::collections::BTreeMap<_, _> = d.tags.iter().collect();
    json!({
        "workspace": d.workspace, "id": d.id, "online": d.online, "last_seen": age(d.last_seen_ms), "last_seen_ms": d.last_seen_ms,
        "active_model": model_ref(&reported.active), "active_digest": reported.active.as_ref().map(|a| a.digest.clone()),
        "previous_model": model_ref(&reported.previous), "desired_model": d.desired_model, "desired_revision": d.desired_revision,
        "update": update, "refused_desired_state": refused, "health": reported.health, "agent_version": reported.agent_version, "arch": reported.arch, "tags": tags,
    })
}
