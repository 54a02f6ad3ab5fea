//! IO signatures read straight from the ONNX graph, with symbolic dimensions kept by name.

use serde::{Deserialize, Serialize};
use tract_onnx::pb;

use crate::{ModelError, ModelResult};

/// Element types Shoal can feed to and read from a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F64,
    I32,
    I64,
    U8,
    Bool,
}

impl DType {
    /// Maps an ONNX `TensorProto.DataType` number.
    pub fn from_onnx(elem_type: i32) -> Option<DType> {
        use pb::tensor_proto::DataType as D;
        match D::try_from(elem_type).ok()? {
            D::Float => Some(DType::F32),
            D::Double => Some(DType::F64),
            D::Int32 => Some(DType::I32),
            D::Int64 => Some(DType::I64),
            D::Uint8 => Some(DType::U8),
            D::Bool => Some(DType::Bool),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::Bool => "bool",
        }
    }

    pub fn parse(s: &str) -> Option<DType> {
        Some(match s {
            "f32" | "float32" | "float" => DType::F32,
            "f64" | "float64" | "double" => DType::F64,
            "i32" | "int32" => DType::I32,
            "i64" | "int64" => DType::I64,
            "u8" | "uint8" => DType::U8,
            "bool" => DType::Bool,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One dimension: a fixed size, or a symbol (such as a batch size) fixed only at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(u64),
    Symbol(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    /// The shape as people write it: `[N,4]`.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        format!("[{}]", dims.join(","))
    }

    /// Whether a concrete shape fits this spec (symbols match any size).
    pub fn accepts_shape(&self, shape: &[usize]) -> bool {
        shape.len() == self.shape.len()
            && self.shape.iter().zip(shape).all(|(dim, &n)| match dim {
                Dim::Fixed(f) => *f == n as u64,
                Dim::Symbol(_) => true,
            })
    }

    /// A concrete shape for a smoke test: every symbol becomes 1.
    pub fn smoke_shape(&self) -> Vec<usize> {
        self.shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n as usize,
                Dim::Symbol(_) => 1,
            })
            .collect()
    }
}

/// What a model takes and returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IoSignature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl IoSignature {
    /// Reads the signature from a parsed ONNX model. Graph inputs that are initializers (an
    /// older exporter habit) are weights, not inputs, and are left out.
    ///
    /// # Errors
    /// `Invalid` when the graph is missing, or an input or output has no tensor type, or a
    /// dtype Shoal cannot feed.
    pub fn from_onnx(model: &pb::ModelProto) -> ModelResult<IoSignature> {
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| ModelError::Invalid("the model has no graph".into()))?;
        let initializers: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let mut inputs = Vec::new();
        for value in &graph.input {
            if initializers.contains(value.name.as_str()) {
                continue;
            }
            inputs.push(tensor_spec(value)?);
        }
        let mut outputs = Vec::new();
        for value in &graph.output {
            outputs.push(tensor_spec(value)?);
        }
        if inputs.is_empty() {
            return Err(ModelError::Invalid("the model has no inputs".into()));
        }
        if outputs.is_empty() {
            return Err(ModelError::Invalid("the model has no outputs".into()));
        }
        Ok(IoSignature { inputs, outputs })
    }

    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|spec| spec.name == name)
    }
}

fn tensor_spec(value: &pb::ValueInfoProto) -> ModelResult<TensorSpec> {
    let Some(pb::type_proto::Value::TensorType(tensor)) =
        value.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(ModelError::Invalid(format!(
            "'{}' is not a tensor",
            value.name
        )));
    };
    let dtype = DType::from_onnx(tensor.elem_type).ok_or_else(|| {
        ModelError::Invalid(format!(
            "'{}' has element type {} which Shoal cannot feed (f32, f64, i32, i64, u8, bool)",
            value.name,
            pb::tensor_proto::DataType::try_from(tensor.elem_type)
                .map(|d| d.as_str_name().to_string())
                .unwrap_or_else(|_| tensor.elem_type.to_string())
        ))
    })?;
    let mut shape = Vec::new();
    if let Some(proto_shape) = &tensor.shape {
        for (axis, dim) in proto_shape.dim.iter().enumerate() {
            use pb::tensor_shape_proto::dimension::Value;
            shape.push(match &dim.value {
                Some(Value::DimValue(n)) if *n >= 0 => Dim::Fixed(*n as u64),
                Some(Value::DimParam(s)) if !s.is_empty() => Dim::Symbol(s.clone()),
                // An unnamed or negative dimension is dynamic: give it a stable name.
                _ => Dim::Symbol(format!("{}_dim{axis}", value.name)),
            });
        }
    }
    Ok(TensorSpec {
        name: value.name.clone(),
        dtype,
        shape,
    })
}
