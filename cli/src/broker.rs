//! `shoal broker`: configuration for an external broker that enforces Shoal's topic rules.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use shoal_client::HubClient;
use shoal_proto::fleet as fpb;

use crate::device::write_private;
use crate::error::{CliError, CliResult};

/// The files `mosquitto-config` writes into its output folder.
pub const PASSWORD_FILE: &str = "passwords";
pub const ACL_FILE: &str = "acl";
pub const CONF_FILE: &str = "mosquitto.conf";

#[derive(Subcommand)]
pub enum BrokerCommand {
    /// Writes a Mosquitto password file, ACL file and mosquitto.conf snippet for every enrolled
    /// device and the hub. Run it again whenever devices are added or removed, then reload
    /// Mosquitto with `kill -HUP <pid>`.
    MosquittoConfig {
        /// The folder to write `passwords`, `acl` and `mosquitto.conf` into (created if needed).
        #[arg(long)]
        output: PathBuf,
        /// The hub's user name on Mosquitto (default: the one in the hub's --mqtt-url, else
        /// shoal-hub).
        #[arg(long)]
        hub_username: Option<String>,
        /// A file holding the hub's password on Mosquitto (default: the one in the hub's
        /// --mqtt-url).
        #[arg(long)]
        hub_password_file: Option<PathBuf>,
    },
}

/// `shoal broker …`.
///
/// # Errors
/// One line for the user.
pub async fn run(hub: &mut HubClient, command: BrokerCommand) -> CliResult<()> {
    match command {
        BrokerCommand::MosquittoConfig {
            output,
            hub_username,
            hub_password_file,
        } => {
            let config =
                mosquitto_config(hub, &output, hub_username, hub_password_file.as_deref()).await?;
            eprintln!(
                "wrote {PASSWORD_FILE}, {ACL_FILE} and {CONF_FILE} to {} (topic prefix {}, hub user {})",
                output.display(),
                config.topic_prefix,
                config.hub_username
            );
            if !config.hub_password_included {
                eprintln!(
                    "note: the hub's password is not in {PASSWORD_FILE}: pass --hub-password-file, or add it with `mosquitto_passwd {} {}`",
                    output.join(PASSWORD_FILE).display(),
                    config.hub_username
                );
            }
            for skipped in &config.skipped {
                eprintln!("skipped {skipped}");
            }
            eprintln!(
                "a running Mosquitto reads them again on SIGHUP: kill -HUP $(pidof mosquitto)"
            );
            Ok(())
        }
    }
}

/// Asks the hub for the fleet's Mosquitto files and writes them into `output`.
///
/// # Errors
/// The hub's refusal, an unreadable password file, or a file that cannot be written.
pub async fn mosquitto_config(
    hub: &mut HubClient,
    output: &Path,
    hub_username: Option<String>,
    hub_password_file: Option<&Path>,
) -> CliResult<fpb::MosquittoConfig> {
    let hub_password = match hub_password_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| {
                CliError::Message(format!(
                    "cannot read the hub password file {}: {e}",
                    path.display()
                ))
            })?
            .trim_end_matches(['\r', '\n'])
            .to_string(),
        None => String::new(),
    };
    let config = hub
        .fleet
        .export_mosquitto_config(fpb::ExportMosquittoConfigRequest {
            hub_username: hub_username.unwrap_or_default(),
            hub_password,
        })
        .await?
        .into_inner();
    write_mosquitto_files(output, &config)?;
    Ok(config)
}

/// Writes the password file (owner-only), the ACL file and a mosquitto.conf snippet naming
/// both by absolute path.
fn write_mosquitto_files(dir: &Path, config: &fpb::MosquittoConfig) -> CliResult<()> {
    std::fs::create_dir_all(dir).map_err(|source| CliError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let dir = std::path::absolute(dir).map_err(|source| CliError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let passwords = dir.join(PASSWORD_FILE);
    let acl = dir.join(ACL_FILE);
    write_private(&passwords, &config.password_file)?;
    write_private(&acl, &config.acl_file)?;
    let conf = format!(
        "# Written by `shoal broker mosquitto-config`: include it in mosquitto.conf (next to a\n\
         # `listener` line) and reload Mosquitto after every export (kill -HUP).\n\
         allow_anonymous false\n\
         password_file {}\n\
         acl_file {}\n",
        passwords.display(),
        acl.display()
    );
    write_private(&dir.join(CONF_FILE), &conf)
}
