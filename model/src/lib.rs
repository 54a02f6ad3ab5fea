//! ONNX models for Shoal: checked and run with tract, described by their IO signature, fed and
//! read as JSON tensors, and written from Rust for tests and demos.
//!
//! Both the hub (which validates a model at registration) and the agent (which serves it) go
//! through [`LoadedModel::from_bytes`], so a model the hub accepts is one the agent can run.
//!
//! # Layout
//! - [`signature`]: IO signatures read from the ONNX graph (names, dtypes, symbolic shapes).
//! - [`loaded`]: parse, check operators, optimize once, run many times.
//! - [`tensor`]: the JSON tensor shape of the inference API and its validation.
//! - [`build`]: writes small real ONNX models (linear, MLP) and evaluates them independently.
//! - `error` (private): [`ModelError`], what loading and running can refuse.

pub mod build;
pub mod loaded;
pub mod signature;
pub mod tensor;

mod error;

pub use error::{ModelError, ModelResult};
pub use loaded::LoadedModel;
pub use signature::{DType, Dim, IoSignature, TensorSpec};
pub use tensor::{InferRequest, InferResponse, JsonTensor, Tensor, TensorData};
