//! Streaming uploads and downloads: files go to the hub as a header message followed by
//! 256 KiB chunks, and come back the same way. One helper does the streaming for every
//! upload (models, baselines, datasets, run sources).

use std::collections::HashMap;
use std::path::Path;

use futures::StreamExt;
use shoal_proto::registry as rpb;
use shoal_proto::training as tpb;
use tokio::io::AsyncReadExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::connect::HubClient;
use crate::error::{ClientError, ClientResult};

/// Bytes per upload message.
const CHUNK_BYTES: usize = 256 * 1024;

/// Streams a file as upload messages: `header` first, then its bytes in 256 KiB pieces
/// wrapped by `chunk`, with a progress line on stderr when the total size is given. The task
/// ends with the error of a failed read.
pub fn stream_file<M: Send + 'static>(
    mut reader: tokio::fs::File,
    path: &Path,
    header: M,
    chunk: fn(Vec<u8>) -> M,
    progress: Option<u64>,
) -> (ReceiverStream<M>, tokio::task::JoinHandle<ClientResult<()>>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let path = path.display().to_string();
    let reading = tokio::spawn(async move {
        if tx.send(header).await.is_err() {
            return Ok(());
        }
        let mut sent = 0u64;
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|source| ClientError::Read {
                    path: path.clone(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            sent += n as u64;
            if tx.send(chunk(buf[..n].to_vec())).await.is_err() {
                break;
            }
            if let Some(size) = progress {
                eprint!(
                    "\ruploading {path}: {:>3}% ({sent}/{size} bytes)",
                    sent * 100 / size.max(1)
                );
            }
        }
        if progress.is_some() {
            eprintln!();
        }
        Ok(())
    });
    (ReceiverStream::new(rx), reading)
}

/// Opens a file to upload and reads its size.
///
/// # Errors
/// [`ClientError::Read`] naming the file.
pub async fn open_upload(file: &Path) -> ClientResult<(tokio::fs::File, u64)> {
    let read_error = |source| ClientError::Read {
        path: file.display().to_string(),
        source,
    };
    let reader = tokio::fs::File::open(file).await.map_err(read_error)?;
    let size = reader.metadata().await.map_err(read_error)?.len();
    Ok((reader, size))
}

/// The answer of an upload call, or the read error that cut the upload short.
///
/// # Errors
/// The hub's refusal, or the file's read error.
pub async fn finish_upload<T>(
    result: Result<tonic::Response<T>, tonic::Status>,
    reading: tokio::task::JoinHandle<ClientResult<()>>,
) -> ClientResult<T> {
    let read = reading
        .await
        .map_err(|e| ClientError::Protocol(format!("upload task: {e}")))?;
    let answer = result?.into_inner();
    read?;
    Ok(answer)
}

/// Streams an ONNX file to the hub, with a progress line on a terminal.
///
/// # Errors
/// An unreadable file or a refused upload.
pub async fn register_model(
    hub: &mut HubClient,
    workspace: &str,
    file: &Path,
    name: &str,
    description: &str,
    tags: HashMap<String, String>,
    progress: bool,
) -> ClientResult<rpb::ModelVersion> {
    let (reader, size) = open_upload(file).await?;
    let header = rpb::UploadModelRequest {
        part: Some(rpb::upload_model_request::Part::Header(
            rpb::UploadModelHeader {
                workspace: workspace.into(),
                name: name.into(),
                description: description.into(),
                tags,
                size_bytes: size,
            },
        )),
    };
    let chunk = |bytes| rpb::UploadModelRequest {
        part: Some(rpb::upload_model_request::Part::Chunk(bytes)),
    };
    let progress = progress.then_some(size);
    let (stream, reading) = stream_file(reader, file, header, chunk, progress);
    let result = hub.registry.upload_model(stream).await;
    finish_upload(result, reading).await
}

/// Streams a CSV to the hub as the drift baseline of `name@reference`.
///
/// # Errors
/// An unreadable file or a refused baseline.
pub async fn upload_baseline(
    hub: &mut HubClient,
    workspace: &str,
    name: &str,
    reference: &str,
    csv: &Path,
    features: Vec<String>,
    input: &str,
) -> ClientResult<rpb::ModelVersion> {
    let (reader, _) = open_upload(csv).await?;
    let header = rpb::UploadBaselineRequest {
        part: Some(rpb::upload_baseline_request::Part::Header(
            rpb::UploadBaselineHeader {
                workspace: workspace.into(),
                name: name.into(),
                reference: reference.into(),
                features,
                input: input.into(),
            },
        )),
    };
    let chunk = |bytes| rpb::UploadBaselineRequest {
        part: Some(rpb::upload_baseline_request::Part::Chunk(bytes)),
    };
    let (stream, reading) = stream_file(reader, csv, header, chunk, None);
    let result = hub.registry.set_baseline(stream).await;
    finish_upload(result, reading).await
}

/// Streams a CSV to the hub as the next version of dataset `name`.
///
/// # Errors
/// An unreadable file or a refused CSV.
pub async fn upload_dataset(
    hub: &mut HubClient,
    workspace: &str,
    file: &Path,
    name: &str,
    description: &str,
) -> ClientResult<tpb::DatasetVersion> {
    let (reader, size) = open_upload(file).await?;
    let header = tpb::UploadDatasetRequest {
        part: Some(tpb::upload_dataset_request::Part::Header(
            tpb::UploadDatasetHeader {
                workspace: workspace.into(),
                name: name.into(),
                description: description.into(),
                size_bytes: size,
            },
        )),
    };
    let chunk = |bytes| tpb::UploadDatasetRequest {
        part: Some(tpb::upload_dataset_request::Part::Chunk(bytes)),
    };
    let (stream, reading) = stream_file(reader, file, header, chunk, None);
    let result = hub.training.upload_dataset(stream).await;
    finish_upload(result, reading).await
}

/// Downloads a version's bytes.
///
/// # Errors
/// When the hub refuses or the stream breaks.
pub async fn download_model(
    hub: &mut HubClient,
    workspace: &str,
    name: &str,
    reference: &str,
) -> ClientResult<(rpb::ModelVersion, Vec<u8>)> {
    let mut stream = hub
        .registry
        .download_model_version(rpb::GetModelVersionRequest {
            workspace: workspace.into(),
            name: name.into(),
            reference: reference.into(),
        })
        .await?
        .into_inner();
    let mut info = None;
    let mut bytes = Vec::new();
    while let Some(message) = stream.next().await {
        match message?.part {
            Some(rpb::download_model_version_response::Part::Version(v)) => info = Some(v),
            Some(rpb::download_model_version_response::Part::Chunk(c)) => {
                bytes.extend_from_slice(&c)
            }
            None => {}
        }
    }
    let info =
        info.ok_or_else(|| ClientError::Protocol("the hub sent no version header".into()))?;
    Ok((info, bytes))
}
