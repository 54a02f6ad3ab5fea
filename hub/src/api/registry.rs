use std::pin::Pin;

use futures::{Stream, StreamExt};
use shoal_proto::registry::{self as pb, registry_service_server::RegistryService};
use tonic::{Request, Response, Status, Streaming};

use super::{authorize_in, receive_chunks, receive_header, status, workspace_or_default};
use shoal_registry::registry::{signature_to_wire, Model, ModelVersion, NewVersion, Registry};
use shoal_registry::RegistryError;
use shoal_store::IoError;

/// Bytes per message when streaming a model back to a client.
const DOWNLOAD_CHUNK_BYTES: usize = 256 * 1024;

pub struct RegistryApi {
    pub registry: Registry,
    /// Uploads larger than this are refused while streaming.
    pub max_model_bytes: u64,
    /// Tells devices already running a version about its new baseline.
    pub deployments: shoal_fleet::deployment::Deployments,
}

fn model_to_wire(m: Model) -> pb::Model {
    pb::Model {
        workspace: m.workspace,
        name: m.name,
        description: m.description,
        latest_version: m.latest_version,
        aliases: m.aliases.into_iter().collect(),
        created_at_ms: m.created_at_ms,
    }
}

fn baseline_to_wire(b: &shoal_registry::registry::VersionBaseline) -> pb::BaselineSummary {
    use shoal_drift::FeatureKind;
    let features = b
        .baseline
        .features
        .iter()
        .enumerate()
        .map(|(column, f)| match &f.kind {
            FeatureKind::Numeric(n) => pb::BaselineFeature {
                name: f.name.clone(),
                kind: "numeric".into(),
                column: column as u32,
                nulls: n.nulls,
                edges: n.edges.clone(),
                vocabulary: Vec::new(),
                mean: n.moments.mean().unwrap_or(0.0),
                std: n.moments.std().unwrap_or(0.0),
            },
            FeatureKind::Categorical(c) => pb::BaselineFeature {
                name: f.name.clone(),
                kind: "categorical".into(),
                column: column as u32,
                nulls: c.nulls,
                edges: Vec::new(),
                vocabulary: c.vocabulary.clone(),
                mean: 0.0,
                std: 0.0,
            },
        });
    pb::BaselineSummary {
        rows: b.baseline.rows,
        features: features.collect(),
        outputs: b.baseline.outputs.iter().map(|o| o.name.clone()).collect(),
    }
}

fn version_to_wire(v: ModelVersion, model: Option<&Model>) -> pb::ModelVersion {
    let aliases = model
        .map(|m| Registry::aliases_of(m, v.version))
        .unwrap_or_default();
    pb::ModelVersion {
        baseline: v.baseline.as_ref().map(baseline_to_wire),
        signature: Some(signature_to_wire(&v.signature)),
        workspace: v.workspace,
        model: v.model,
        version: v.version,
        digest: v.digest,
        size_bytes: v.size_bytes,
        tags: v.tags.into_iter().collect(),
        description: v.description,
        created_at_ms: v.created_at_ms,
        aliases,
    }
}

impl RegistryApi {
    fn version_with_aliases(&self, v: ModelVersion) -> pb::ModelVersion {
        let model = self.registry.model(&v.workspace, &v.model).ok();
        version_to_wire(v, model.as_ref())
    }
}

type DownloadStream =
    Pin<Box<dyn Stream<Item = Result<pb::DownloadModelVersionResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn upload_model(
        &self,
        request: Request<Streaming<pb::UploadModelRequest>>,
    ) -> Result<Response<pb::ModelVersion>, Status> {
        let (_, extensions, mut stream) = request.into_parts();
        let header = receive_header(
            &mut stream,
            "an upload starts with a header naming the model",
            |m| match m.part {
                Some(pb::upload_model_request::Part::Header(h)) => Some(h),
                _ => None,
            },
        )
        .await?;
        authorize_in(&extensions, &header.workspace)?;
        let new = NewVersion {
            workspace: workspace_or_default(&header.workspace).to_string(),
            name: header.name,
            description: header.description,
            tags: header.tags.into_iter().collect(),
        };
        self.registry.check_new_version(&new).map_err(status)?;
        if header.size_bytes > self.max_model_bytes {
            return Err(status(too_large(header.size_bytes, self.max_model_bytes)));
        }
        let (digest, size) = receive_chunks(
            &mut stream,
            self.registry.artifacts(),
            self.max_model_bytes,
            "model",
            "--max-model-bytes",
            |m| match m.part {
                Some(pb::upload_model_request::Part::Chunk(c)) => Some(c),
                _ => None,
            },
        )
        .await?;
        let version = self
            .registry
            .register(new, digest, size)
            .await
            .map_err(status)?;
        Ok(Response::new(self.version_with_aliases(version)))
    }

    async fn get_model(
        &self,
        request: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let model = self
            .registry
            .model(workspace_or_default(&r.workspace), &r.name)
            .map_err(status)?;
        Ok(Response::new(model_to_wire(model)))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let models = self
            .registry
            .models(workspace_or_default(&r.workspace))
            .map_err(status)?;
        Ok(Response::new(pb::ListModelsResponse {
            models: models.into_iter().map(model_to_wire).collect(),
        }))
    }

    async fn get_model_version(
        &self,
        request: Request<pb::GetModelVersionRequest>,
    ) -> Result<Response<pb::ModelVersion>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let v = self
            .registry
            .resolve(workspace_or_default(&r.workspace), &r.name, &r.reference)
            .map_err(status)?;
        Ok(Response::new(self.version_with_aliases(v)))
    }

    async fn list_model_versions(
        &self,
        request: Request<pb::ListModelVersionsRequest>,
    ) -> Result<Response<pb::ListModelVersionsResponse>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let workspace = workspace_or_default(&r.workspace);
        let model = self.registry.model(workspace, &r.name).map_err(status)?;
        let versions = self.registry.versions(workspace, &r.name).map_err(status)?;
        Ok(Response::new(pb::ListModelVersionsResponse {
            versions: versions
                .into_iter()
                .map(|v| version_to_wire(v, Some(&model)))
                .collect(),
        }))
    }

    async fn set_alias(
        &self,
        request: Request<pb::SetAliasRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let model = self
            .registry
            .set_alias(
                workspace_or_default(&r.workspace),
                &r.name,
                &r.alias,
                r.version,
            )
            .map_err(status)?;
        Ok(Response::new(model_to_wire(model)))
    }

    async fn delete_alias(
        &self,
        request: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let model = self
            .registry
            .delete_alias(workspace_or_default(&r.workspace), &r.name, &r.alias)
            .map_err(status)?;
        Ok(Response::new(model_to_wire(model)))
    }

    async fn set_baseline(
        &self,
        request: Request<Streaming<pb::UploadBaselineRequest>>,
    ) -> Result<Response<pb::ModelVersion>, Status> {
        use std::io::Write;
        let (_, extensions, mut stream) = request.into_parts();
        let header = receive_header(
            &mut stream,
            "a baseline upload starts with a header naming the version",
            |m| match m.part {
                Some(pb::upload_baseline_request::Part::Header(h)) => Some(h),
                _ => None,
            },
        )
        .await?;
        authorize_in(&extensions, &header.workspace)?;
        let workspace = workspace_or_default(&header.workspace).to_string();
        // Fail before accepting bytes if the version does not exist.
        self.registry
            .resolve(&workspace, &header.name, &header.reference)
            .map_err(status)?;
        let mut file = tempfile::NamedTempFile::new()
            .map_err(|e| status(IoError::with("create a temporary baseline file")(e)))?;
        let mut written = 0u64;
        while let Some(message) = stream.next().await {
            let chunk = match message? {
                pb::UploadBaselineRequest {
                    part: Some(pb::upload_baseline_request::Part::Chunk(c)),
                } => c,
                _ => {
                    return Err(Status::invalid_argument(
                        "only the first baseline message may be a header",
                    ))
                }
            };
            written += chunk.len() as u64;
            if written > self.max_model_bytes {
                return Err(status(RegistryError::ResourceExhausted(format!(
                    "baseline CSV is over the hub's limit of {} bytes",
                    self.max_model_bytes
                ))));
            }
            file.write_all(&chunk)
                .map_err(|e| status(IoError::with("write the temporary baseline file")(e)))?;
        }
        file.flush()
            .map_err(|e| status(IoError::with("write the temporary baseline file")(e)))?;
        let path = file.path().to_path_buf();
        let version = self
            .deployments
            .set_baseline(
                &workspace,
                &header.name,
                &header.reference,
                &header.input,
                header.features,
                path,
            )
            .await
            .map_err(status)?;
        drop(file);
        Ok(Response::new(self.version_with_aliases(version)))
    }

    type DownloadModelVersionStream = DownloadStream;

    async fn download_model_version(
        &self,
        request: Request<pb::GetModelVersionRequest>,
    ) -> Result<Response<DownloadStream>, Status> {
        authorize_in(request.extensions(), &request.get_ref().workspace)?;
        let r = request.into_inner();
        let version = self
            .registry
            .resolve(workspace_or_default(&r.workspace), &r.name, &r.reference)
            .map_err(status)?;
        let bytes = self
            .registry
            .artifacts()
            .read(&version.digest)
            .await
            .map_err(status)?;
        let header = pb::DownloadModelVersionResponse {
            part: Some(pb::download_model_version_response::Part::Version(
                self.version_with_aliases(version),
            )),
        };
        let chunks: Vec<Result<pb::DownloadModelVersionResponse, Status>> =
            std::iter::once(Ok(header))
                .chain(bytes.chunks(DOWNLOAD_CHUNK_BYTES).map(|c| {
                    Ok(pb::DownloadModelVersionResponse {
                        part: Some(pb::download_model_version_response::Part::Chunk(c.to_vec())),
                    })
                }))
                .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
}

fn too_large(size: u64, limit: u64) -> RegistryError {
    RegistryError::ResourceExhausted(format!(
        "model is {size} bytes, over the hub's limit of {limit} bytes (--max-model-bytes)"
    ))
}
