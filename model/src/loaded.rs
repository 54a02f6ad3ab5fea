//! A model parsed, checked and optimized by tract once, then run many times.
//!
//! Loading is the expensive step (parse, type, declutter, optimize); the result is an immutable
//! plan that any number of threads run concurrently.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::signature::{DType, IoSignature};
use crate::tensor::{JsonTensor, Tensor, TensorData};
use crate::{ModelError, ModelResult};

/// A model ready to run.
#[derive(Clone)]
pub struct LoadedModel {
    /// The optimized plan, shared by every concurrent run.
    plan: Arc<TypedRunnableModel>,
    /// Read from the ONNX graph, so names and symbolic dims are the exporter's.
    signature: IoSignature,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("signature", &self.signature)
            .finish()
    }
}

impl LoadedModel {
    /// Parses ONNX bytes, refuses operators tract does not know, and optimizes the model.
    ///
    /// # Errors
    /// `NotOnnx` for bytes that do not decode (garbage, truncated), `UnsupportedOperators`
    /// naming each unknown operator, `Invalid` when tract cannot type or optimize the graph.
    pub fn from_bytes(bytes: &[u8]) -> ModelResult<LoadedModel> {
        let onnx = tract_onnx::onnx();
        let mut proto = decode(bytes)?;
        name_unknown_input_dims(&mut proto);
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| ModelError::NotOnnx("the file decodes but holds no graph".into()))?;
        if graph.node.is_empty() {
            return Err(ModelError::Invalid("the graph has no nodes".into()));
        }
        let mut unknown = BTreeSet::new();
        collect_unknown_operators(graph, &onnx, &mut unknown);
        if !unknown.is_empty() {
            return Err(ModelError::UnsupportedOperators(
                unknown.into_iter().collect(),
            ));
        }
        let signature = IoSignature::from_onnx(&proto)?;
        let model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| ModelError::Invalid(format!("{e:#}")))?;
        let optimized = model
            .into_optimized()
            .map_err(|e| ModelError::Invalid(format!("{e:#}")))?;
        let plan = optimized
            .into_runnable()
            .map_err(|e| ModelError::Invalid(format!("{e:#}")))?;
        Ok(LoadedModel { plan, signature })
    }

    pub fn signature(&self) -> &IoSignature {
        &self.signature
    }

    /// Runs the model on tensors given in the order of the signature's inputs.
    ///
    /// # Errors
    /// `BadInput` for a wrong count or dtype, `Inference` when tract fails.
    pub fn run(&self, inputs: Vec<Tensor>) -> ModelResult<Vec<Tensor>> {
        if inputs.len() != self.signature.inputs.len() {
            return Err(ModelError::BadInput(format!(
                "the model takes {} inputs, got {}",
                self.signature.inputs.len(),
                inputs.len()
            )));
        }
        let mut values = TVec::new();
        for (spec, input) in self.signature.inputs.iter().zip(inputs) {
            if input.data.dtype() != spec.dtype {
                return Err(ModelError::BadInput(format!(
                    "input '{}': the model takes {}, got {}",
                    spec.name,
                    spec.dtype,
                    input.data.dtype()
                )));
            }
            values.push(to_tract(input)?.into());
        }
        let outputs = self
            .plan
            .run(values)
            .map_err(|e| ModelError::Inference(format!("{e:#}")))?;
        let mut result = Vec::with_capacity(outputs.len());
        for value in outputs {
            result.push(from_tract(value.into_tensor())?);
        }
        Ok(result)
    }

    /// Checks JSON inputs against the signature, runs, and names the outputs.
    ///
    /// # Errors
    /// `BadInput` for an unknown or missing input name or any input the signature refuses.
    pub fn run_json(
        &self,
        inputs: &BTreeMap<String, JsonTensor>,
    ) -> ModelResult<BTreeMap<String, JsonTensor>> {
        for name in inputs.keys() {
            if self.signature.input(name).is_none() {
                return Err(ModelError::BadInput(format!(
                    "unknown input '{name}'; the model's inputs are: {}",
                    self.input_names()
                )));
            }
        }
        let mut tensors = Vec::with_capacity(self.signature.inputs.len());
        for spec in &self.signature.inputs {
            let json = inputs.get(&spec.name).ok_or_else(|| {
                ModelError::BadInput(format!(
                    "missing input '{}' ({} {})",
                    spec.name,
                    spec.dtype,
                    spec.shape_string()
                ))
            })?;
            tensors.push(Tensor::from_json(spec, json)?);
        }
        let outputs = self.run(tensors)?;
        let mut named = BTreeMap::new();
        for (spec, tensor) in self.signature.outputs.iter().zip(outputs) {
            named.insert(spec.name.clone(), tensor.to_json());
        }
        Ok(named)
    }

    /// Runs once on zeros (symbolic dims set to 1), to prove the model runs here.
    ///
    /// # Errors
    /// `Inference` when tract fails on the smoke input.
    pub fn smoke_test(&self) -> ModelResult<()> {
        let inputs = self
            .signature
            .inputs
            .iter()
            .map(|spec| Tensor::zeros(spec.dtype, spec.smoke_shape()))
            .collect();
        self.run(inputs).map(|_| ())
    }

    fn input_names(&self) -> String {
        let names: Vec<&str> = self
            .signature
            .inputs
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        names.join(", ")
    }
}

/// Decodes ONNX protobuf bytes.
///
/// # Errors
/// `NotOnnx` when the bytes are not a protobuf `ModelProto`.
/// Gives every input dimension that has neither a size nor a name (`None` in exporters such
/// as skl2onnx, `?` in Netron) a symbol of its own, `{input}_dim{axis}`, the name the IO
/// signature shows for it. tract cannot analyse a graph whose sources have unknown
/// dimensions, but handles symbolic ones; distinct names keep two such dimensions from being
/// forced equal.
pub fn name_unknown_input_dims(proto: &mut pb::ModelProto) {
    use pb::tensor_shape_proto::dimension::Value;
    use pb::type_proto::Value as TypeValue;
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    for input in graph.input.iter_mut() {
        let name = input.name.clone();
        let Some(TypeValue::TensorType(tensor)) =
            input.r#type.as_mut().and_then(|t| t.value.as_mut())
        else {
            continue;
        };
        let Some(shape) = tensor.shape.as_mut() else {
            continue;
        };
        for (axis, dim) in shape.dim.iter_mut().enumerate() {
            let unknown = match &dim.value {
                None => true,
                Some(Value::DimParam(name)) => name.is_empty(),
                Some(Value::DimValue(n)) => *n < 0,
            };
            if unknown {
                dim.value = Some(Value::DimParam(format!("{name}_dim{axis}")));
            }
        }
    }
}

pub fn decode(bytes: &[u8]) -> ModelResult<pb::ModelProto> {
    use prost::Message;
    if bytes.is_empty() {
        return Err(ModelError::NotOnnx("the file is empty".into()));
    }
    let proto = pb::ModelProto::decode(bytes)
        .map_err(|e| ModelError::NotOnnx(format!("truncated or corrupt protobuf ({e})")))?;
    if proto.opset_import.is_empty() && proto.graph.is_none() {
        return Err(ModelError::NotOnnx("no opset and no graph".into()));
    }
    Ok(proto)
}

fn collect_unknown_operators(
    graph: &pb::GraphProto,
    onnx: &tract_onnx::Onnx,
    unknown: &mut BTreeSet<String>,
) {
    for node in &graph.node {
        if !onnx.op_register.0.contains_key(&node.op_type) {
            unknown.insert(node.op_type.clone());
        }
        for attribute in &node.attribute {
            if let Some(sub) = &attribute.g {
                collect_unknown_operators(sub, onnx, unknown);
            }
            for sub in &attribute.graphs {
                collect_unknown_operators(sub, onnx, unknown);
            }
        }
    }
}

fn to_tract(input: Tensor) -> ModelResult<tract_onnx::prelude::Tensor> {
    let shape = input.shape;
    let result = match input.data {
        TensorData::F32(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::F64(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::I32(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::I64(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::U8(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::Bool(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
    };
    result.map_err(|e| ModelError::BadInput(format!("{e:#}")))
}

fn from_tract(tensor: tract_onnx::prelude::Tensor) -> ModelResult<Tensor> {
    let shape = tensor.shape().to_vec();
    let fail = |e: TractError| ModelError::Inference(format!("reading an output: {e:#}"));
    let data = match tensor.datum_type() {
        DatumType::F64 => TensorData::F64(values::<f64>(&tensor).map_err(fail)?),
        DatumType::I32 => TensorData::I32(values::<i32>(&tensor).map_err(fail)?),
        DatumType::I64 => TensorData::I64(values::<i64>(&tensor).map_err(fail)?),
        DatumType::U8 => TensorData::U8(values::<u8>(&tensor).map_err(fail)?),
        DatumType::Bool => TensorData::Bool(values::<bool>(&tensor).map_err(fail)?),
        DatumType::F32 => TensorData::F32(values::<f32>(&tensor).map_err(fail)?),
        _ => {
            let cast = tensor.cast_to::<f32>().map_err(fail)?;
            TensorData::F32(values::<f32>(&cast).map_err(fail)?)
        }
    };
    Ok(Tensor { shape, data })
}

fn values<D: Datum + Copy>(tensor: &tract_onnx::prelude::Tensor) -> TractResult<Vec<D>> {
    Ok(tensor.to_plain_array_view::<D>()?.iter().copied().collect())
}

/// The datum type tract uses for a Shoal dtype.
pub fn tract_datum_type(dtype: DType) -> DatumType {
    match dtype {
        DType::F32 => DatumType::F32,
        DType::F64 => DatumType::F64,
        DType::I32 => DatumType::I32,
        DType::I64 => DatumType::I64,
        DType::U8 => DatumType::U8,
        DType::Bool => DatumType::Bool,
    }
}
