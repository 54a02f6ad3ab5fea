//! Tensors as the local inference API speaks them, and their checks against a signature.
//!
//! The JSON shape is the contract of `POST /v1/infer`:
//! `{"inputs":{"x":{"shape":[1,4],"data":[1,2,3,4]}}}`, with an optional `"dtype"` per input.
//! Data is flat, in row-major order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::signature::{DType, TensorSpec};
use crate::{ModelError, ModelResult};

/// The body of `POST /v1/infer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferRequest {
    pub inputs: BTreeMap<String, JsonTensor>,
}

/// The answer of `POST /v1/infer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferResponse {
    pub model: String,
    pub version: u32,
    pub outputs: BTreeMap<String, JsonTensor>,
}

/// A tensor in JSON: its shape, flat row-major data, and optionally its element type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JsonTensor {
    pub shape: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    pub data: Vec<serde_json::Value>,
}

impl JsonTensor {
    /// The data as f64 numbers (non-numbers, such as a NaN sent back as null, become NaN).
    pub fn numbers(&self) -> Vec<f64> {
        self.data
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN))
            .collect()
    }
}

/// Typed tensor data.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::U8(_) => DType::U8,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    fn to_json_values(&self) -> Vec<serde_json::Value> {
        use serde_json::Value;
        match self {
            TensorData::F32(v) => v.iter().map(|x| Value::from(*x as f64)).collect(),
            TensorData::F64(v) => v.iter().map(|x| Value::from(*x)).collect(),
            TensorData::I32(v) => v.iter().map(|x| Value::from(*x)).collect(),
            TensorData::I64(v) => v.iter().map(|x| Value::from(*x)).collect(),
            TensorData::U8(v) => v.iter().map(|x| Value::from(*x)).collect(),
            TensorData::Bool(v) => v.iter().map(|x| Value::from(*x)).collect(),
        }
    }
}

/// A typed tensor with a concrete shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        Tensor {
            shape,
            data: TensorData::F32(data),
        }
    }

    /// Zeros of the spec's dtype in the given shape.
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        let data = match dtype {
            DType::F32 => TensorData::F32(vec![0.0; n]),
            DType::F64 => TensorData::F64(vec![0.0; n]),
            DType::I32 => TensorData::I32(vec![0; n]),
            DType::I64 => TensorData::I64(vec![0; n]),
            DType::U8 => TensorData::U8(vec![0; n]),
            DType::Bool => TensorData::Bool(vec![false; n]),
        };
        Tensor { shape, data }
    }

    /// Checks a JSON tensor against the model's spec for that input and converts it.
    ///
    /// # Errors
    /// `BadInput` naming the input and what is wrong: a dtype other than the model's, a shape
    /// the model does not accept, a data length that does not match the shape, or an element
    /// that is not a value of the dtype.
    pub fn from_json(spec: &TensorSpec, json: &JsonTensor) -> ModelResult<Tensor> {
        let name = &spec.name;
        if let Some(dtype) = &json.dtype {
            match DType::parse(dtype) {
                None => {
                    return Err(ModelError::BadInput(format!(
                        "input '{name}': unknown dtype '{dtype}' (f32, f64, i32, i64, u8, bool)"
                    )))
                }
                Some(given) if given != spec.dtype => {
                    return Err(ModelError::BadInput(format!(
                        "input '{name}': the model takes {}, got dtype {given}",
                        spec.dtype
                    )))
                }
                Some(_) => {}
            }
        }
        if !spec.accepts_shape(&json.shape) {
            return Err(ModelError::BadInput(format!(
                "input '{name}': the model takes shape {}, got {:?}",
                spec.shape_string(),
                json.shape
            )));
        }
        let expected = json
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                ModelError::BadInput(format!(
                    "input '{name}': shape {:?} is too large",
                    json.shape
                ))
            })?;
        if expected != json.data.len() {
            return Err(ModelError::BadInput(format!(
                "input '{name}': shape {:?} holds {expected} values, got {}",
                json.shape,
                json.data.len()
            )));
        }
        let data = convert(spec, &json.data)?;
        Ok(Tensor {
            shape: json.shape.clone(),
            data,
        })
    }

    pub fn to_json(&self) -> JsonTensor {
        JsonTensor {
            shape: self.shape.clone(),
            dtype: Some(self.data.dtype().as_str().to_string()),
            data: self.data.to_json_values(),
        }
    }
}

fn convert(spec: &TensorSpec, values: &[serde_json::Value]) -> ModelResult<TensorData> {
    let bad = |index: usize, value: &serde_json::Value| {
        ModelError::BadInput(format!(
            "input '{}': element {index} is {value}, which is not a {} value",
            spec.name, spec.dtype
        ))
    };
    fn ints<T: TryFrom<i64>>(
        values: &[serde_json::Value],
        bad: impl Fn(usize, &serde_json::Value) -> ModelError,
    ) -> ModelResult<Vec<T>> {
        let mut out = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let n = v.as_i64().ok_or_else(|| bad(i, v))?;
            out.push(T::try_from(n).map_err(|_| bad(i, v))?);
        }
        Ok(out)
    }
    Ok(match spec.dtype {
        DType::F32 | DType::F64 => {
            let mut out = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                out.push(v.as_f64().ok_or_else(|| bad(i, v))?);
            }
            if spec.dtype == DType::F32 {
                TensorData::F32(out.into_iter().map(|x| x as f32).collect())
            } else {
                TensorData::F64(out)
            }
        }
        DType::I32 => TensorData::I32(ints(values, bad)?),
        DType::I64 => TensorData::I64(ints(values, bad)?),
        DType::U8 => TensorData::U8(ints(values, bad)?),
        DType::Bool => {
            let mut out = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                out.push(v.as_bool().ok_or_else(|| bad(i, v))?);
            }
            TensorData::Bool(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::Dim;

    fn spec() -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            dtype: DType::F32,
            shape: vec![Dim::Symbol("N".into()), Dim::Fixed(4)],
        }
    }

    fn json(shape: Vec<usize>, data: serde_json::Value) -> JsonTensor {
        JsonTensor {
            shape,
            dtype: None,
            data: data.as_array().unwrap().clone(),
        }
    }

    #[test]
    fn accepts_a_batch_of_rows() {
        let t = Tensor::from_json(
            &spec(),
            &json(vec![2, 4], serde_json::json!([1, 2, 3, 4, 5, 6, 7, 8])),
        )
        .unwrap();
        assert_eq!(t.shape, vec![2, 4]);
        assert_eq!(
            t.data,
            TensorData::F32(vec![1., 2., 3., 4., 5., 6., 7., 8.])
        );
    }

    #[test]
    fn refuses_with_a_message_naming_the_problem() {
        let wrong_shape = Tensor::from_json(
            &spec(),
            &json(vec![1, 5], serde_json::json!([1, 2, 3, 4, 5])),
        )
        .unwrap_err();
        assert_eq!(
            wrong_shape.to_string(),
            "input 'x': the model takes shape [N,4], got [1, 5]"
        );
        let short =
            Tensor::from_json(&spec(), &json(vec![1, 4], serde_json::json!([1, 2]))).unwrap_err();
        assert_eq!(
            short.to_string(),
            "input 'x': shape [1, 4] holds 4 values, got 2"
        );
        let text = Tensor::from_json(
            &spec(),
            &json(vec![1, 4], serde_json::json!([1, "a", 3, 4])),
        )
        .unwrap_err();
        assert_eq!(
            text.to_string(),
            "input 'x': element 1 is \"a\", which is not a f32 value"
        );
        let mut typed = json(vec![1, 4], serde_json::json!([1, 2, 3, 4]));
        typed.dtype = Some("i64".into());
        let dtype = Tensor::from_json(&spec(), &typed).unwrap_err();
        assert_eq!(
            dtype.to_string(),
            "input 'x': the model takes f32, got dtype i64"
        );
        let huge = Tensor::from_json(
            &spec(),
            &json(vec![usize::MAX / 2, 4], serde_json::json!([1])),
        )
        .unwrap_err();
        assert!(huge.to_string().contains("too large"), "{huge}");
    }
}
