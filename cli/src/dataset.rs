//! `shoal dataset`: versioned CSV datasets with their profiles.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};
use shoal_client::{upload_dataset, HubClient};
use shoal_proto::training as pb;

use crate::error::CliResult;
use crate::output::{age, print_list, print_one, Format};

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// Uploads a CSV as the next version of a dataset and prints its profile.
    Register {
        /// The CSV; with --from-run, the path of a run's artifact (outputs/features.csv).
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Register a CSV a run wrote, with the run as the version's source.
        #[arg(long)]
        from_run: Option<String>,
    },
    List,
    /// A version's profile: NAME@VERSION, NAME (latest).
    Show {
        reference: String,
    },
}

/// `shoal dataset …`.
///
/// # Errors
/// One line for the user.
pub async fn run(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: DatasetCommand,
) -> CliResult<()> {
    match command {
        DatasetCommand::Register {
            file,
            name,
            description,
            from_run,
        } => {
            let version = match from_run {
                Some(run_id) => hub
                    .training
                    .register_dataset_from_run(pb::RegisterDatasetFromRunRequest {
                        run_id,
                        path: file.display().to_string(),
                        name,
                        description,
                    })
                    .await?
                    .into_inner(),
                None => upload_dataset(hub, ws, &file, &name, &description).await?,
            };
            print_dataset(out, &version);
        }
        DatasetCommand::List => {
            let list = hub
                .training
                .list_datasets(pb::ListDatasetsRequest {
                    workspace: ws.into(),
                })
                .await?
                .into_inner();
            let rows: Vec<Value> = list.versions.iter().map(dataset_json).collect();
            print_list(
                out,
                &[
                    ("DATASET", "reference"),
                    ("ROWS", "rows"),
                    ("BYTES", "size_bytes"),
                    ("AGE", "age"),
                    ("DESCRIPTION", "description"),
                ],
                &rows,
            );
        }
        DatasetCommand::Show { reference } => {
            let version = hub
                .training
                .get_dataset(pb::GetDatasetRequest {
                    workspace: ws.into(),
                    reference,
                })
                .await?
                .into_inner();
            print_dataset(out, &version);
        }
    }
    Ok(())
}

fn dataset_json(d: &pb::DatasetVersion) -> Value {
    let columns: Vec<Value> = d
        .columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "kind": c.kind, "count": c.count, "nulls": c.nulls,
                "distinct": c.distinct, "min": c.min, "max": c.max, "mean": c.mean, "std": c.std,
                "edges": c.edges, "bin_counts": c.bin_counts,
                "top_values": c.top_values, "top_counts": c.top_counts,
            })
        })
        .collect();
    json!({
        "name": d.name, "version": d.version, "reference": format!("{}@{}", d.name, d.version),
        "rows": d.rows, "size_bytes": d.size_bytes, "digest": d.digest,
        "description": d.description, "age": age(d.created_at_ms), "source_run": d.source_run,
        "columns": columns,
    })
}

fn print_dataset(format: Format, d: &pb::DatasetVersion) {
    match format {
        Format::Json => print_one(format, &dataset_json(d)),
        Format::Table => {
            println!(
                "{}@{}: {} rows, {} columns, {} bytes",
                d.name,
                d.version,
                d.rows,
                d.columns.len(),
                d.size_bytes
            );
            let fmt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
            let rows: Vec<Value> = d
                .columns
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name, "kind": c.kind, "count": c.count, "nulls": c.nulls,
                        "min": fmt(c.min), "max": fmt(c.max), "mean": fmt(c.mean), "std": fmt(c.std),
                        "top": c.top_values.iter().take(3).cloned().collect::<Vec<_>>().join(","),
                    })
                })
                .collect();
            print_list(
                Format::Table,
                &[
                    ("COLUMN", "name"),
                    ("KIND", "kind"),
                    ("COUNT", "count"),
                    ("NULLS", "nulls"),
                    ("MIN", "min"),
                    ("MAX", "max"),
                    ("MEAN", "mean"),
                    ("STD", "std"),
                    ("TOP", "top"),
                ],
                &rows,
            );
        }
    }
}
