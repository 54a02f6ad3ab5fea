//! `shoal experiment`: experiments, which group runs.

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::HubClient;
use shoal_proto::training as pb;

use crate::error::CliResult;
use crate::output::{age, print_list, print_one, Format};

#[derive(Subcommand)]
pub enum ExperimentCommand {
    Create { name: String },
    List,
}

/// `shoal experiment …`.
///
/// # Errors
/// One line for the user.
pub async fn run(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: ExperimentCommand,
) -> CliResult<()> {
    match command {
        ExperimentCommand::Create { name } => {
            let e = hub
                .training
                .create_experiment(pb::CreateExperimentRequest {
                    workspace: ws.into(),
                    name,
                })
                .await?
                .into_inner();
            print_one(out, &json!({"id": e.id, "name": e.name}));
        }
        ExperimentCommand::List => {
            let list = hub
                .training
                .list_experiments(pb::ListExperimentsRequest {
                    workspace: ws.into(),
                })
                .await?
                .into_inner();
            let rows: Vec<Value> = list
                .experiments
                .iter()
                .map(|e| json!({"id": e.id, "name": e.name, "runs": e.runs, "age": age(e.created_at_ms)}))
                .collect();
            print_list(
                out,
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("RUNS", "runs"),
                    ("AGE", "age"),
                ],
                &rows,
            );
        }
    }
    Ok(())
}
