//! The `mlflow-artifacts` proxy: clients PUT and GET run files at
//! `/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/{path}`, and the files of
//! MLflow 3 logged models at `.../artifacts/{experiment}/models/{model id}/artifacts/{path}`,
//! and list folders with `?path=`. Bytes go to the content-addressed [`ArtifactStore`](shoal_store::artifacts::ArtifactStore);
//! the tracking index maps each path to its blob.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::MlflowState;
use super::{Call, MlflowError, MlflowResult};
use shoal_tracking::tracking::{check_artifact_path, ArtifactEntry, Lifecycle, LoggedModel, Run};

/// Bytes read from disk per chunk of a download.
const DOWNLOAD_CHUNK_BYTES: usize = 256 * 1024;

/// What an artifact path belongs to: a run (`{experiment}/{run}/artifacts/...`) or an MLflow 3
/// logged model (`{experiment}/models/{model id}/artifacts/...`).
enum Owner {
    Run(Box<Run>),
    Model(Box<LoggedModel>),
}

impl Owner {
    fn id(&self) -> &str {
        match self {
            Owner::Run(run) => &run.id,
            Owner::Model(model) => &model.id,
        }
    }

    fn artifact_root(&self) -> String {
        match self {
            Owner::Run(run) => run.artifact_root(),
            Owner::Model(model) => model.artifact_root(),
        }
    }
}

/// The run or logged model an artifact path belongs to, checked to be of the workspace, and
/// the path below its artifact root.
fn owner_of(state: &MlflowState, workspace: &str, path: &str) -> MlflowResult<(Owner, String)> {
    check_artifact_path(path)?;
    let parts: Vec<&str> = path.splitn(5, '/').collect();
    match parts.as_slice() {
        [experiment, "models", model_id, "artifacts", rest @ ..] => {
            let missing = || {
                MlflowError::NotFound(format!(
                    "logged model '{model_id}' not found in experiment '{experiment}'"
                ))
            };
            let model = match state.tracking.logged_model(model_id) {
                Ok(model) => model,
                Err(shoal_tracking::TrackingError::NotFound { .. }) => return Err(missing()),
                Err(other) => return Err(other.into()),
            };
            if model.workspace != workspace
                || model.experiment_id != *experiment
                || model.lifecycle == Lifecycle::Deleted
            {
                return Err(missing());
            }
            let below = rest.first().copied().unwrap_or("").to_string();
            Ok((Owner::Model(Box::new(model)), below))
        }
        [experiment, run_id, "artifacts", rest @ ..] => {
            let run = state.tracking.run(run_id)?;
            if run.workspace != workspace || run.experiment_id != *experiment {
                return Err(MlflowError::NotFound(format!(
                    "run '{run_id}' not found in experiment '{experiment}'"
                )));
            }
            let below = rest.join("/");
            Ok((Owner::Run(Box::new(run)), below))
        }
        _ => Err(MlflowError::NotFound(format!(
            "artifact path '{path}' is not under a run's artifact root \
             ('<experiment>/<run>/artifacts/...') or a logged model's \
             ('<experiment>/models/<model id>/artifacts/...')"
        ))),
    }
}

/// `PUT artifacts/{path}`: streams the body into the artifact store, within the hub's size
/// limit, then indexes it under the path.
pub(crate) async fn upload(
    state: &MlflowState,
    workspace: &str,
    path: &str,
    body: Body,
) -> MlflowResult<Value> {
    let (owner, below) = owner_of(state, workspace, path)?;
    if below.is_empty() {
        return Err(MlflowError::InvalidParameter(format!(
            "artifact path '{path}' names an artifact root, not a file"
        )));
    }
    let limit = state.max_artifact_bytes;
    let mut writer = state.artifacts.writer().await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                writer.abort().await;
                return Err(MlflowError::InvalidParameter(format!(
                    "upload of '{path}' broke off: {e}"
                )));
            }
        };
        if writer.written() + chunk.len() as u64 > limit {
            writer.abort().await;
            return Err(MlflowError::InvalidParameter(format!(
                "artifact '{path}' is larger than this hub's limit of {limit} bytes"
            )));
        }
        if let Err(e) = writer.write(&chunk).await {
            writer.abort().await;
            return Err(e.into());
        }
    }
    let (digest, size_bytes) = writer.finish().await?;
    state
        .tracking
        .put_artifact(path, &ArtifactEntry { digest, size_bytes })?;
    tracing::debug!(owner = %owner.id(), path = %below, size_bytes, "mlflow artifact stored");
    Ok(json!({}))
}

/// `GET artifacts/{path}`: streams the file's bytes.
pub(crate) async fn download(
    state: &MlflowState,
    workspace: &str,
    path: &str,
) -> MlflowResult<Response> {
    owner_of(state, workspace, path)?;
    let entry = state.tracking.artifact(path)?;
    if !shoal_store::artifacts::is_valid_digest(&entry.digest) {
        return Err(MlflowError::Internal(format!(
            "artifact '{path}' is indexed under an invalid digest"
        )));
    }
    let blob = state.artifacts.local_path(&entry.digest).await?;
    let file = tokio::fs::File::open(blob)
        .await
        .map_err(|e| MlflowError::Internal(format!("artifact '{path}' blob unreadable: {e}")))?;
    let chunks = futures::stream::try_unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; DOWNLOAD_CHUNK_BYTES];
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buffer.truncate(n);
        Ok(Some((axum::body::Bytes::from(buffer), file)))
    });
    Ok((
        StatusCode::OK,
        [
            ("content-type", "application/octet-stream".to_string()),
            ("content-length", entry.size_bytes.to_string()),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

/// `GET artifacts?path=`: the direct children of a folder, with paths relative to it.
pub(crate) fn list(call: Call) -> MlflowResult<Value> {
    let path = call.fields.opt_str("path")?.unwrap_or_default();
    let path = path.trim_matches('/');
    let (owner, below) = owner_of(&call.state, &call.workspace, path)?;
    let files = call
        .state
        .tracking
        .list_artifact_folder(&owner.artifact_root(), &below)?
        .into_iter()
        .map(|entry| {
            let name = entry
                .path
                .rsplit('/')
                .next()
                .unwrap_or(&entry.path)
                .to_string();
            super::file_json(&name, entry.is_dir, entry.size_bytes)
        })
        .collect::<Vec<_>>();
    Ok(json!({ "files": files }))
}

/// `GET /api/2.0/mlflow/artifacts/list?run_id=&path=`: a run's folder, paths relative to the
/// run's artifact root.
pub(crate) fn list_for_run(call: Call) -> MlflowResult<Value> {
    let run = call.run(&call.fields.run_id()?)?;
    let folder = call.fields.opt_str("path")?.unwrap_or_default();
    let folder = folder.trim_matches('/');
    if !folder.is_empty() {
        check_artifact_path(folder)?;
    }
    let files = call
        .state
        .tracking
        .list_artifact_folder(&run.artifact_root(), folder)?
        .into_iter()
        .map(|entry| super::file_json(&entry.path, entry.is_dir, entry.size_bytes))
        .collect::<Vec<_>>();
    Ok(json!({ "root_uri": run.artifact_uri(), "files": files }))
}
