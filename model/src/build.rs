//! Writes small, real ONNX models from Rust, and evaluates them without tract.
//!
//! Tests and the demo use these instead of downloading models. [`Mlp::forward`] computes the
//! same function in plain Rust (f64 accumulation), so a test can check tract's answers against
//! values it derived itself.

use prost::Message;
use tract_onnx::pb;

/// What follows a dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    Softmax,
}

/// `y = activation(x · W + b)` with `W` of shape `[inputs, outputs]`, row-major.
#[derive(Debug, Clone)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub activation: Activation,
}

/// A multilayer perceptron over one input `[N, features]` and one output `[N, classes]`.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub input_name: String,
    pub output_name: String,
    pub layers: Vec<Dense>,
}

impl Mlp {
    /// A single dense layer: `y = x · W + b`.
    pub fn linear(inputs: usize, outputs: usize, weights: Vec<f32>, bias: Vec<f32>) -> Mlp {
        assert_eq!(
            weights.len(),
            inputs * outputs,
            "weights are inputs × outputs"
        );
        assert_eq!(bias.len(), outputs, "one bias per output");
        Mlp {
            input_name: "x".into(),
            output_name: "y".into(),
            layers: vec![Dense {
                inputs,
                outputs,
                weights,
                bias,
                activation: Activation::None,
            }],
        }
    }

    /// Layers of the given sizes (`[4, 16, 2]`: 4 inputs, one hidden layer of 16, 2 outputs)
    /// with deterministic pseudo-random weights; ReLU between layers, none on the last.
    pub fn seeded(sizes: &[usize], seed: u64) -> Mlp {
        assert!(
            sizes.len() >= 2,
            "an MLP has at least an input and an output size"
        );
        let mut rng = SplitMix64(seed);
        let mut layers = Vec::new();
        for (i, pair) in sizes.windows(2).enumerate() {
            let (inputs, outputs) = (pair[0], pair[1]);
            let scale = 1.0 / (inputs as f64).sqrt();
            let weights = (0..inputs * outputs)
                .map(|_| (rng.unit() * scale) as f32)
                .collect();
            let bias = (0..outputs).map(|_| (rng.unit() * 0.1) as f32).collect();
            let last = i == sizes.len() - 2;
            let activation = if last {
                Activation::None
            } else {
                Activation::Relu
            };
            layers.push(Dense {
                inputs,
                outputs,
                weights,
                bias,
                activation,
            });
        }
        Mlp {
            input_name: "x".into(),
            output_name: "y".into(),
            layers,
        }
    }

    /// Ends the network with a softmax, so outputs are class probabilities.
    pub fn with_softmax(mut self) -> Mlp {
        if let Some(last) = self.layers.last_mut() {
            last.activation = Activation::Softmax;
        }
        self
    }

    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }

    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// Evaluates one row in plain Rust.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        assert_eq!(x.len(), self.inputs(), "one row of the input width");
        let mut current: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for layer in &self.layers {
            let mut next = vec![0.0f64; layer.outputs];
            for (o, out) in next.iter_mut().enumerate() {
                let mut acc = layer.bias[o] as f64;
                for (i, value) in current.iter().enumerate() {
                    acc += value * layer.weights[i * layer.outputs + o] as f64;
                }
                *out = acc;
            }
            match layer.activation {
                Activation::None => {}
                Activation::Relu => next.iter_mut().for_each(|v| *v = v.max(0.0)),
                Activation::Softmax => {
                    let max = next.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = next.iter().map(|v| (v - max).exp()).sum();
                    next.iter_mut().for_each(|v| *v = (*v - max).exp() / sum);
                }
            }
            current = next;
        }
        current.into_iter().map(|v| v as f32).collect()
    }

    /// Writes the network as an ONNX model (opset 13) with a symbolic batch dimension `N`.
    pub fn to_onnx(&self) -> Vec<u8> {
        let mut nodes = Vec::new();
        let mut initializers = Vec::new();
        let mut current = self.input_name.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let w = format!("layer{i}.weight");
            let b = format!("layer{i}.bias");
            initializers.push(f32_tensor(
                &w,
                &[layer.inputs, layer.outputs],
                &layer.weights,
            ));
            initializers.push(f32_tensor(&b, &[layer.outputs], &layer.bias));
            let last = i == self.layers.len() - 1;
            let gemm_out = if last && layer.activation == Activation::None {
                self.output_name.clone()
            } else {
                format!("layer{i}.gemm")
            };
            nodes.push(node(
                "Gemm",
                &format!("layer{i}.Gemm"),
                &[&current, &w, &b],
                &gemm_out,
                vec![],
            ));
            current = gemm_out;
            let activation_out = if last {
                self.output_name.clone()
            } else {
                format!("layer{i}.act")
            };
            match layer.activation {
                Activation::None => {}
                Activation::Relu => {
                    nodes.push(node(
                        "Relu",
                        &format!("layer{i}.Relu"),
                        &[&current],
                        &activation_out,
                        vec![],
                    ));
                    current = activation_out;
                }
                Activation::Softmax => {
                    let axis = int_attribute("axis", 1);
                    nodes.push(node(
                        "Softmax",
                        &format!("layer{i}.Softmax"),
                        &[&current],
                        &activation_out,
                        vec![axis],
                    ));
                    current = activation_out;
                }
            }
        }
        let graph = pb::GraphProto {
            name: "shoal-mlp".into(),
            node: nodes,
            initializer: initializers,
            input: vec![value_info(&self.input_name, self.inputs())],
            output: vec![value_info(&self.output_name, self.outputs())],
            ..Default::default()
        };
        model(graph)
    }
}

/// A one-node model `y = op_type(x)` over `[N, 4]` floats: for testing how an operator tract
/// does not know is refused.
pub fn single_operator_model(op_type: &str) -> Vec<u8> {
    let graph = pb::GraphProto {
        name: "shoal-single-op".into(),
        node: vec![node(op_type, "op", &["x"], "y", vec![])],
        input: vec![value_info("x", 4)],
        output: vec![value_info("y", 4)],
        ..Default::default()
    };
    model(graph)
}

fn model(graph: pb::GraphProto) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "shoal".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn node(
    op_type: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op_type.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn int_attribute(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

fn f32_tensor(name: &str, dims: &[usize], values: &[f32]) -> pb::TensorProto {
    let mut raw = Vec::with_capacity(values.len() * 4);
    for v in values {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: raw,
        ..Default::default()
    }
}

fn value_info(name: &str, width: usize) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dims = vec![
        Dimension {
            value: Some(Value::DimParam("N".into())),
            ..Default::default()
        },
        Dimension {
            value: Some(Value::DimValue(width as i64)),
            ..Default::default()
        },
    ];
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A small deterministic generator (SplitMix64), so seeded models are the same everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LoadedModel, ModelError, Tensor, TensorData};

    #[test]
    fn inputs_with_unnamed_dynamic_dims_load_and_run() {
        use prost::Message;
        let mlp = Mlp::seeded(&[4, 3, 2], 9);
        let mut proto = crate::loaded::decode(&mlp.to_onnx()).expect("decodes");
        let graph = proto.graph.as_mut().expect("a graph");
        let Some(tract_onnx::pb::type_proto::Value::TensorType(tensor)) = graph.input[0]
            .r#type
            .as_mut()
            .and_then(|t| t.value.as_mut())
        else {
            panic!("a tensor input");
        };
        // What skl2onnx writes for a `None` batch dimension: no value at all.
        tensor.shape.as_mut().expect("a shape").dim[0].value = None;
        let bytes = proto.encode_to_vec();
        let loaded = LoadedModel::from_bytes(&bytes).expect("loads");
        assert_eq!(loaded.signature().inputs[0].shape_string(), "[x_dim0,4]");
        let row = [0.5f32, -1.0, 2.0, 0.25];
        let out = loaded
            .run(vec![Tensor {
                shape: vec![1, 4],
                data: TensorData::F32(row.to_vec()),
            }])
            .expect("runs");
        let TensorData::F32(values) = &out[0].data else {
            panic!("f32 output");
        };
        let expected = mlp.forward(&row);
        for (a, b) in values.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{values:?} vs {expected:?}");
        }
    }

    #[test]
    fn tract_runs_the_written_mlp_like_plain_rust() {
        let mlp = Mlp::seeded(&[4, 16, 3], 7).with_softmax();
        let model = LoadedModel::from_bytes(&mlp.to_onnx()).unwrap();
        let sig = model.signature();
        assert_eq!(sig.inputs[0].shape_string(), "[N,4]");
        assert_eq!(sig.outputs[0].shape_string(), "[N,3]");
        let rows = [[1.0f32, 2.0, 3.0, 4.0], [-0.5, 0.25, 8.0, -3.0]];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let out = model.run(vec![Tensor::f32(vec![2, 4], flat)]).unwrap();
        let TensorData::F32(values) = &out[0].data else {
            panic!("f32 output")
        };
        for (r, row) in rows.iter().enumerate() {
            let expected = mlp.forward(row);
            for (o, e) in expected.iter().enumerate() {
                assert!((values[r * 3 + o] - e).abs() < 1e-5, "row {r} output {o}");
            }
        }
        model.smoke_test().unwrap();
    }

    #[test]
    fn refuses_garbage_truncation_and_unknown_operators() {
        let garbage =
            LoadedModel::from_bytes(b"this is not a model at all, just some text").unwrap_err();
        assert!(matches!(garbage, ModelError::NotOnnx(_)), "{garbage}");
        let bytes = Mlp::seeded(&[4, 8, 2], 1).to_onnx();
        let truncated = LoadedModel::from_bytes(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(matches!(truncated, ModelError::NotOnnx(_)), "{truncated}");
        let unknown = LoadedModel::from_bytes(&single_operator_model("ShoalFancyOp")).unwrap_err();
        assert_eq!(unknown.to_string(), "unsupported operator ShoalFancyOp");
    }
}
