//! `shoal workspace`: workspaces, the unit of isolation.

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::HubClient;
use shoal_proto::workspace as wpb;

use crate::error::CliResult;
use crate::output::{print_list, print_one, Format};

#[derive(Subcommand)]
pub enum WorkspaceCommand {
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    List,
    Show {
        name: String,
    },
    /// Deletes a workspace; one that still holds anything needs --force.
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
    },
}

/// `shoal workspace …`.
///
/// # Errors
/// One line for the user.
pub async fn run(hub: &mut HubClient, out: Format, command: WorkspaceCommand) -> CliResult<()> {
    match command {
        WorkspaceCommand::Create { name, description } => {
            let w = hub
                .workspaces
                .create_workspace(wpb::CreateWorkspaceRequest { name, description })
                .await?;
            print_one(out, &workspace_json(&w.into_inner()));
        }
        WorkspaceCommand::List => {
            let list = hub
                .workspaces
                .list_workspaces(wpb::ListWorkspacesRequest {})
                .await?;
            let rows: Vec<Value> = list
                .into_inner()
                .workspaces
                .iter()
                .map(workspace_json)
                .collect();
            print_list(
                out,
                &[("NAME", "name"), ("DESCRIPTION", "description")],
                &rows,
            );
        }
        WorkspaceCommand::Show { name } => {
            let w = hub
                .workspaces
                .get_workspace(wpb::GetWorkspaceRequest { name })
                .await?;
            print_one(out, &workspace_json(&w.into_inner()));
        }
        WorkspaceCommand::Delete { name, force } => {
            hub.workspaces
                .delete_workspace(wpb::DeleteWorkspaceRequest {
                    name: name.clone(),
                    force,
                })
                .await?;
            eprintln!("deleted workspace {name}");
        }
    }
    Ok(())
}

fn workspace_json(w: &wpb::Workspace) -> Value {
    json!({"name": w.name, "description": w.description, "created_at_ms": w.created_at_ms})
}
