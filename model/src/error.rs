use thiserror::Error;

/// Why a model could not be read, checked, or run, or why an input was refused.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The bytes are not an ONNX model at all.
    #[error("not an ONNX model: {0}")]
    NotOnnx(String),
    /// The model is ONNX but uses operators tract cannot run.
    #[error("unsupported operator{} {}", if .0.len() == 1 { "" } else { "s" }, .0.join(", "))]
    UnsupportedOperators(Vec<String>),
    /// The model is ONNX but malformed, or tract cannot type or optimize it.
    #[error("invalid model: {0}")]
    Invalid(String),
    /// An inference input does not match the model's signature.
    #[error("{0}")]
    BadInput(String),
    /// tract failed while running a model it had accepted.
    #[error("inference failed: {0}")]
    Inference(String),
}

pub type ModelResult<T> = Result<T, ModelError>;
