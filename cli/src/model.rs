//! `shoal model`: the model registry, with the aliases and drift baselines of its versions.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use shoal_client::{download_model, register_model, upload_baseline, HubClient};
use shoal_proto::registry as rpb;

use crate::args::{parse_key_value, split_reference};
use crate::error::CliResult;
use crate::output::{print_list, print_one, Format};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Uploads an ONNX file as the next version of a model.
    Register(RegisterArgs),
    List,
    /// Shows a model (NAME) or one version (NAME@VERSION or NAME@ALIAS).
    Show {
        reference: String,
    },
    /// Lists the versions of a model.
    Versions {
        name: String,
    },
    #[command(subcommand)]
    Alias(AliasCommand),
    /// The drift baseline of a version.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Downloads a version's ONNX file.
    Download {
        reference: String,
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct RegisterArgs {
    /// The ONNX file; with --from-run, the path of a run's artifact (outputs/model.onnx).
    file: PathBuf,
    /// Register an ONNX file a run wrote, keeping the run as the version's lineage.
    #[arg(long, conflicts_with = "baseline")]
    from_run: Option<String>,
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "")]
    description: String,
    /// KEY=VALUE, repeatable.
    #[arg(long = "tag", value_parser = parse_key_value)]
    tags: Vec<(String, String)>,
    /// Training data (CSV with a header) to profile as the drift baseline.
    #[arg(long, requires = "features")]
    baseline: Option<PathBuf>,
    /// CSV columns in the order of the model input's last axis.
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// The model input the features feed (default: the first).
    #[arg(long, default_value = "")]
    input: String,
}

#[derive(Subcommand)]
pub enum BaselineCommand {
    /// Profiles a CSV as the drift baseline of NAME[@VERSION].
    Set {
        reference: String,
        csv: PathBuf,
        /// CSV columns in the order of the model input's last axis.
        #[arg(long, value_delimiter = ',', required = true)]
        features: Vec<String>,
        #[arg(long, default_value = "")]
        input: String,
    },
}

#[derive(Subcommand)]
pub enum AliasCommand {
    /// Points ALIAS at VERSION (moving it if it pointed elsewhere).
    Set {
        name: String,
        alias: String,
        version: u32,
    },
    Delete {
        name: String,
        alias: String,
    },
}

/// `shoal model …`.
///
/// # Errors
/// One line for the user.
pub async fn run(
    hub: &mut HubClient,
    ws: &str,
    out: Format,
    command: ModelCommand,
) -> CliResult<()> {
    match command {
        ModelCommand::Register(args) if args.from_run.is_some() => {
            let registered = hub
                .training
                .register_from_run(shoal_proto::training::RegisterFromRunRequest {
                    run_id: args.from_run.unwrap_or_default(),
                    path: args.file.display().to_string(),
                    model: args.name,
                    description: args.description,
                })
                .await?
                .into_inner();
            println!("{}@{}", registered.model, registered.version);
        }
        ModelCommand::Register(args) => {
            let mut version = register_model(
                hub,
                ws,
                &args.file,
                &args.name,
                &args.description,
                args.tags.into_iter().collect(),
                std::io::stderr().is_terminal(),
            )
            .await?;
            if let Some(csv) = &args.baseline {
                let reference = version.version.to_string();
                version = upload_baseline(
                    hub,
                    ws,
                    &args.name,
                    &reference,
                    csv,
                    args.features,
                    &args.input,
                )
                .await
                .map_err(|e| {
                    format!(
                        "{}@{} is registered, but its baseline was refused: {e}",
                        args.name, reference
                    )
                })?;
            }
            match out {
                Format::Json => print_one(out, &version_json(&version)),
                Format::Table => println!("{}@{}", version.model, version.version),
            }
        }
        ModelCommand::List => {
            let list = hub
                .registry
                .list_models(rpb::ListModelsRequest {
                    workspace: ws.into(),
                })
                .await?;
            let rows: Vec<Value> = list.into_inner().models.iter().map(model_json).collect();
            print_list(
                out,
                &[
                    ("NAME", "name"),
                    ("LATEST", "latest_version"),
                    ("ALIASES", "aliases"),
                    ("DESCRIPTION", "description"),
                ],
                &rows,
            );
        }
        ModelCommand::Show { reference } => {
            let (name, version) = split_reference(&reference);
            if reference.contains('@') {
                let v = hub
                    .registry
                    .get_model_version(rpb::GetModelVersionRequest {
                        workspace: ws.into(),
                        name: name.into(),
                        reference: version.into(),
                    })
                    .await?;
                print_one(out, &version_json(&v.into_inner()));
            } else {
                let m = hub
                    .registry
                    .get_model(rpb::GetModelRequest {
                        workspace: ws.into(),
                        name: name.into(),
                    })
                    .await?;
                print_one(out, &model_json(&m.into_inner()));
            }
        }
        ModelCommand::Versions { name } => {
            let list = hub
                .registry
                .list_model_versions(rpb::ListModelVersionsRequest {
                    workspace: ws.into(),
                    name,
                })
                .await?;
            let rows: Vec<Value> = list
                .into_inner()
                .versions
                .iter()
                .map(version_json)
                .collect();
            print_list(
                out,
                &[
                    ("VERSION", "version"),
                    ("ALIASES", "aliases"),
                    ("SIZE", "size_bytes"),
                    ("INPUTS", "inputs"),
                    ("OUTPUTS", "outputs"),
                    ("DIGEST", "digest"),
                ],
                &rows,
            );
        }
        ModelCommand::Alias(AliasCommand::Set {
            name,
            alias,
            version,
        }) => {
            let m = hub
                .registry
                .set_alias(rpb::SetAliasRequest {
                    workspace: ws.into(),
                    name: name.clone(),
                    alias: alias.clone(),
                    version,
                })
                .await?;
            match out {
                Format::Json => print_one(out, &model_json(&m.into_inner())),
                Format::Table => println!("{name}@{alias} -> {version}"),
            }
        }
        ModelCommand::Alias(AliasCommand::Delete { name, alias }) => {
            hub.registry
                .delete_alias(rpb::DeleteAliasRequest {
                    workspace: ws.into(),
                    name: name.clone(),
                    alias: alias.clone(),
                })
                .await?;
            eprintln!("deleted alias {name}@{alias}");
        }
        ModelCommand::Baseline(BaselineCommand::Set {
            reference,
            csv,
            features,
            input,
        }) => {
            let (name, version) = split_reference(&reference);
            let v = upload_baseline(hub, ws, name, version, &csv, features, &input).await?;
            match out {
                Format::Json => print_one(out, &version_json(&v)),
                Format::Table => {
                    let rows = v.baseline.as_ref().map_or(0, |b| b.rows);
                    println!("{}@{}: baseline of {rows} rows set", v.model, v.version);
                }
            }
        }
        ModelCommand::Download { reference, output } => {
            let (name, version) = split_reference(&reference);
            let (info, bytes) = download_model(hub, ws, name, version).await?;
            let path = output
                .unwrap_or_else(|| PathBuf::from(format!("{}-{}.onnx", info.model, info.version)));
            std::fs::write(&path, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            eprintln!(
                "wrote {} ({} bytes, sha256 {})",
                path.display(),
                bytes.len(),
                info.digest
            );
        }
    }
    Ok(())
}

fn model_json(m: &rpb::Model) -> Value {
    let aliases: std::collections::BTreeMap<_, _> = m.aliases.iter().collect();
    json!({"workspace": m.workspace, "name": m.name, "description": m.description, "latest_version": m.latest_version, "aliases": aliases, "created_at_ms": m.created_at_ms})
}

fn specs_text(specs: &[shoal_proto::device::TensorSpec]) -> Vec<String> {
    use shoal_proto::device::{dim::Value as D, DataType};
    specs
        .iter()
        .map(|s| {
            let dims: Vec<String> = s
                .shape
                .iter()
                .map(|d| match &d.value {
                    Some(D::Fixed(n)) => n.to_string(),
                    Some(D::Symbol(s)) => s.clone(),
                    None => "?".into(),
                })
                .collect();
            let dtype = DataType::try_from(s.dtype)
                .map(|d| {
                    d.as_str_name()
                        .trim_start_matches("DATA_TYPE_")
                        .to_lowercase()
                })
                .unwrap_or_default();
            format!("{}:{}[{}]", s.name, dtype, dims.join(","))
        })
        .collect()
}

fn version_json(v: &rpb::ModelVersion) -> Value {
    let signature = v.signature.clone().unwrap_or_default();
    let tags: std::collections::BTreeMap<_, _> = v.tags.iter().collect();
    json!({
        "workspace": v.workspace, "model": v.model, "version": v.version, "reference": format!("{}@{}", v.model, v.version),
        "digest": v.digest, "size_bytes": v.size_bytes, "aliases": v.aliases, "tags": tags, "description": v.description,
        "inputs": specs_text(&signature.inputs), "outputs": specs_text(&signature.outputs), "created_at_ms": v.created_at_ms,
        "baseline": v.baseline.as_ref().map(|b| json!({
            "rows": b.rows,
            "features": b.features.iter().map(|f| format!("{}:{}", f.name, f.kind)).collect::<Vec<_>>(),
            "outputs": b.outputs,
        })),
    })
}
