//! `shoal secret`: workspace secrets (the Key Vault). Values go in from stdin or a file and
//! never come back out: listings show names and dates.

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::HubClient;
use shoal_proto::secret as pb;

use crate::error::{CliError, CliResult};
use crate::output::{age, print_list, print_one, Format};

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Creates or replaces a secret; the value is read from stdin (up to its end) unless
    /// --from-file names a file. It is never shown again.
    Set {
        name: String,
        #[arg(long)]
        from_file: Option<PathBuf>,
    },
    /// Names and dates of the workspace's secrets (never their values).
    List,
    Delete {
        name: String,
    },
}

/// `shoal secret …`.
///
/// # Errors
/// One line for the user.
pub async fn run(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: SecretCommand,
) -> CliResult<()> {
    match command {
        SecretCommand::Set { name, from_file } => {
            let value = read_value(from_file)?;
            let info = hub
                .secrets
                .set_secret(pb::SetSecretRequest {
                    workspace: ws.into(),
                    name,
                    value,
                })
                .await?
                .into_inner();
            print_one(out, &secret_json(&info));
        }
        SecretCommand::List => {
            let list = hub
                .secrets
                .list_secrets(pb::ListSecretsRequest {
                    workspace: ws.into(),
                })
                .await?
                .into_inner();
            let rows: Vec<Value> = list.secrets.iter().map(secret_json).collect();
            print_list(out, &[("NAME", "name"), ("UPDATED", "updated")], &rows);
        }
        SecretCommand::Delete { name } => {
            hub.secrets
                .delete_secret(pb::DeleteSecretRequest {
                    workspace: ws.into(),
                    name: name.clone(),
                })
                .await?;
            eprintln!("deleted secret {name}");
        }
    }
    Ok(())
}

/// The value from the file, or all of stdin. A single trailing newline (from `echo` or a
/// terminal) is dropped.
fn read_value(from_file: Option<PathBuf>) -> CliResult<Vec<u8>> {
    let mut value = match from_file {
        Some(path) => std::fs::read(&path)
            .map_err(|e| CliError::Message(format!("cannot read {}: {e}", path.display())))?,
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("reading the secret from stdin; end it with Ctrl-D");
            }
            let mut value = Vec::new();
            std::io::stdin()
                .read_to_end(&mut value)
                .map_err(|e| CliError::Message(format!("cannot read stdin: {e}")))?;
            value
        }
    };
    if value.ends_with(b"\n") {
        value.pop();
        if value.ends_with(b"\r") {
            value.pop();
        }
    }
    Ok(value)
}

fn secret_json(s: &pb::SecretInfo) -> Value {
    json!({
        "workspace": s.workspace,
        "name": s.name,
        "created_ms": s.created_ms,
        "updated_ms": s.updated_ms,
        "updated": age(s.updated_ms),
    })
}
