//! The model being served: loaded and smoke-tested once, shared as an `Arc`, swapped atomically.
//!
//! A [`ServedModel`] only exists for bytes whose sha256 and size match a verified manifest and
//! that tract loaded and ran once. [`ModelSlot`] holds the current one; readers clone the `Arc`
//! under a short read lock and run without any lock held, so a switch never waits for inference
//! and inference never sees half a switch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use sha2::{Digest, Sha256};
use shoal_model::{InferResponse, JsonTensor, LoadedModel, ModelError};
use thiserror::Error;

use shoal_proto::device::DriftBaseline;

use crate::manifest::VerifiedManifest;

/// Why a model file cannot be served.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("digest mismatch: expected {expected}, got {got}")]
    DigestMismatch { expected: String, got: String },
    #[error("size mismatch: expected {expected} bytes, got {got}")]
    SizeMismatch { expected: u64, got: u64 },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the model loading task failed: {0}")]
    Task(String),
}

/// Why an inference request failed.
#[derive(Debug, Error)]
pub enum InferError {
    /// Bad input (a 4xx) or a tract failure (a 5xx); the model error says which.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The blocking task panicked or was cancelled: the agent survives, the request fails.
    #[error("inference task failed: {0}")]
    Task(String),
}

/// A model ready to serve, with the manifest it was verified against.
#[derive(Debug)]
pub struct ServedModel {
    pub verified: VerifiedManifest,
    pub model: LoadedModel,
    /// The drift baseline the manifest refers to, once read and checked; `None` when it has
    /// none, or when it could not be read (the updater then fetches it again).
    pub baseline: Option<DriftBaseline>,
}

impl ServedModel {
    /// Reads a model file, checks it against its manifest (sha256, size), loads it with tract and
    /// runs the smoke inference; all on the blocking pool.
    ///
    /// # Errors
    /// `Read`, `DigestMismatch`, `SizeMismatch`, `Model` (does not load or does not run), or
    /// `Task` if the blocking task panicked.
    pub async fn load(path: &Path, verified: VerifiedManifest) -> Result<ServedModel, LoadError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || ServedModel::load_blocking(&path, verified))
            .await
            .map_err(|e| LoadError::Task(e.to_string()))?
    }

    /// The same model with its drift baseline.
    pub fn with_baseline(mut self, baseline: Option<DriftBaseline>) -> ServedModel {
        self.baseline = baseline;
        self
    }

    /// Whether the manifest's drift baseline (if it names one) is the one loaded.
    pub fn has_its_baseline(&self) -> bool {
        self.verified.baseline().is_none() || self.baseline.is_some()
    }

    fn load_blocking(path: &Path, verified: VerifiedManifest) -> Result<ServedModel, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let got = hex::encode(Sha256::digest(&bytes));
        if got != verified.manifest.digest {
            return Err(LoadError::DigestMismatch {
                expected: verified.manifest.digest.clone(),
                got,
            });
        }
        if bytes.len() as u64 != verified.manifest.size_bytes {
            return Err(LoadError::SizeMismatch {
                expected: verified.manifest.size_bytes,
                got: bytes.len() as u64,
            });
        }
        let model = LoadedModel::from_bytes(&bytes)?;
        model.smoke_test()?;
        Ok(ServedModel {
            verified,
            model,
            baseline: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.verified.manifest.model
    }

    pub fn version(&self) -> u32 {
        self.verified.manifest.version
    }

    pub fn digest(&self) -> &str {
        self.verified.digest()
    }
}

/// Runs one inference on the blocking pool. The inputs are shared so that the caller can
/// still read them afterwards (telemetry summarises them).
///
/// # Errors
/// `Model(BadInput)` for inputs the model refuses, `Model(Inference)` when tract fails, `Task`
/// when the task panicked.
pub async fn infer(
    served: Arc<ServedModel>,
    inputs: Arc<BTreeMap<String, JsonTensor>>,
) -> Result<InferResponse, InferError> {
    tokio::task::spawn_blocking(move || {
        let outputs = served.model.run_json(&inputs)?;
        Ok(InferResponse {
            model: served.name().to_string(),
            version: served.version(),
            outputs,
        })
    })
    .await
    .map_err(|e| InferError::Task(e.to_string()))?
}

/// The model currently served, if any.
#[derive(Debug, Clone, Default)]
pub struct ModelSlot {
    current: Arc<RwLock<Option<Arc<ServedModel>>>>,
}

impl ModelSlot {
    pub fn new(initial: Option<Arc<ServedModel>>) -> ModelSlot {
        ModelSlot {
            current: Arc::new(RwLock::new(initial)),
        }
    }

    /// The served model; the lock is held only to clone the `Arc`.
    pub fn current(&self) -> Option<Arc<ServedModel>> {
        // A poisoned lock still holds a whole `Option<Arc<_>>`: writes are single assignments.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Switches to `next` and returns what was served before.
    pub fn replace(&self, next: Option<Arc<ServedModel>>) -> Option<Arc<ServedModel>> {
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *guard, next)
    }
}
