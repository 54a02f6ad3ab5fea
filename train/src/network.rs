//! The network being trained: dense layers over f32 minibatches, their gradients, and the
//! optimizer state.
//!
//! Matrices are row-major with weights `[inputs, outputs]` (the ONNX Gemm layout the exporter
//! writes), so every inner loop walks one contiguous row of weights or gradients and the
//! compiler vectorizes it. Everything runs on one thread in a fixed order: the same seed gives
//! the same bits.

use shoal_model::build::{Activation, Dense, Mlp, SplitMix64};

use crate::config::Optimizer;

const ADAM_BETA1: f32 = 0.9;
const ADAM_BETA2: f32 = 0.999;
const ADAM_EPSILON: f32 = 1e-8;

/// One dense layer: `outputs = relu?(inputs · weights + bias)`.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    /// `[inputs, outputs]`, row-major.
    pub(crate) weights: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    /// ReLU after this layer; the last layer has none (softmax or identity is applied by the
    /// loss, which needs the raw values).
    pub(crate) relu: bool,
}

/// Dense layers, the first reading the (standardized) features.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub(crate) layers: Vec<Layer>,
}

/// Buffers reused across minibatches, so an epoch allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    /// Per layer, its outputs for the batch (`rows × outputs`): after ReLU for hidden layers,
    /// the raw values for the last.
    pub(crate) outputs: Vec<Vec<f32>>,
    /// Per layer, the loss gradient with respect to its pre-activation outputs.
    deltas: Vec<Vec<f32>>,
}

/// Gradients of one minibatch, shaped like the network.
#[derive(Debug, Clone)]
pub(crate) struct Gradients {
    weights: Vec<Vec<f32>>,
    bias: Vec<Vec<f32>>,
}

/// Optimizer state: Adam's moment estimates (unused by SGD) and the step count.
#[derive(Debug, Clone)]
pub(crate) struct OptimizerState {
    optimizer: Optimizer,
    first_moments: Gradients,
    second_moments: Gradients,
    steps: i32,
}

// === impl Network ===

impl Network {
    /// Layers of the given widths with seeded initialization: He-uniform for layers followed
    /// by ReLU, Xavier/Glorot-uniform for the output layer; biases start at zero.
    ///
    /// A single layer (logistic or linear regression) starts at zero instead: its loss is
    /// convex, so nothing needs breaking, and zero predicts the uniform distribution (loss
    /// ln k) rather than a random confident guess that takes epochs to unlearn.
    pub(crate) fn seeded(sizes: &[usize], rng: &mut SplitMix64) -> Network {
        let mut layers = Vec::with_capacity(sizes.len().saturating_sub(1));
        for (index, pair) in sizes.windows(2).enumerate() {
            let (inputs, outputs) = (pair[0], pair[1]);
            let relu = index + 2 < sizes.len();
            let limit = if sizes.len() == 2 {
                0.0
            } else if relu {
                (6.0 / inputs as f64).sqrt()
            } else {
                (6.0 / (inputs + outputs) as f64).sqrt()
            };
            let weights = (0..inputs * outputs)
                .map(|_| (rng.unit() * limit) as f32)
                .collect();
            layers.push(Layer {
                inputs,
                outputs,
                weights,
                bias: vec![0.0; outputs],
                relu,
            });
        }
        Network { layers }
    }

    pub(crate) fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |layer| layer.outputs)
    }

    /// Runs `rows` rows of `input` (row-major) through the network; the last layer's raw
    /// outputs end up in `workspace.outputs.last()`.
    pub(crate) fn forward(&self, input: &[f32], rows: usize, workspace: &mut Workspace) {
        workspace.outputs.resize_with(self.layers.len(), Vec::new);
        for (index, layer) in self.layers.iter().enumerate() {
            let (before, after) = workspace.outputs.split_at_mut(index);
            let layer_input: &[f32] = if index == 0 {
                input
            } else {
                &before[index - 1]
            };
            let output = &mut after[0];
            output.clear();
            output.resize(rows * layer.outputs, 0.0);
            layer.forward(layer_input, rows, output);
        }
    }

    /// Backpropagates `output_delta` (the loss gradient with respect to the last layer's raw
    /// outputs, already divided by the batch size) through the activations `forward` left in
    /// `workspace`, writing the gradients into `gradients`.
    pub(crate) fn backward(
        &self,
        input: &[f32],
        rows: usize,
        workspace: &mut Workspace,
        gradients: &mut Gradients,
    ) {
        let last = self.layers.len() - 1;
        workspace.deltas.resize_with(self.layers.len(), Vec::new);
        for index in (0..=last).rev() {
            let layer = &self.layers[index];
            let layer_input: &[f32] = if index == 0 {
                input
            } else {
                &workspace.outputs[index - 1]
            };
            let delta = &workspace.deltas[index];
            let weight_gradient = &mut gradients.weights[index];
            let bias_gradient = &mut gradients.bias[index];
            weight_gradient.fill(0.0);
            bias_gradient.fill(0.0);
            for row in 0..rows {
                let delta_row = &delta[row * layer.outputs..(row + 1) * layer.outputs];
                for (sum, value) in bias_gradient.iter_mut().zip(delta_row) {
                    *sum += value;
                }
                let input_row = &layer_input[row * layer.inputs..(row + 1) * layer.inputs];
                for (input_index, &x) in input_row.iter().enumerate() {
                    if x == 0.0 {
                        continue;
                    }
                    let gradient_row = &mut weight_gradient
                        [input_index * layer.outputs..(input_index + 1) * layer.outputs];
                    for (gradient, value) in gradient_row.iter_mut().zip(delta_row) {
                        *gradient += x * value;
                    }
                }
            }
            if index == 0 {
                break;
            }
            // The previous layer's delta: this delta through the weights, gated by its ReLU.
            let (before, after) = workspace.deltas.split_at_mut(index);
            let previous_delta = &mut before[index - 1];
            let delta = &after[0];
            previous_delta.clear();
            previous_delta.resize(rows * layer.inputs, 0.0);
            for row in 0..rows {
                let delta_row = &delta[row * layer.outputs..(row + 1) * layer.outputs];
                for input_index in 0..layer.inputs {
                    let position = row * layer.inputs + input_index;
                    if layer_input[position] <= 0.0 {
                        continue;
                    }
                    let weight_row = &layer.weights
                        [input_index * layer.outputs..(input_index + 1) * layer.outputs];
                    let mut sum = 0.0f32;
                    for (weight, value) in weight_row.iter().zip(delta_row) {
                        sum += weight * value;
                    }
                    previous_delta[position] = sum;
                }
            }
        }
    }

    /// Where the caller writes the last layer's delta before calling `backward`.
    pub(crate) fn output_delta_mut<'w>(
        &self,
        workspace: &'w mut Workspace,
        rows: usize,
    ) -> &'w mut Vec<f32> {
        workspace.deltas.resize_with(self.layers.len(), Vec::new);
        let delta = workspace
            .deltas
            .last_mut()
            .expect("a network has at least one layer");
        delta.clear();
        delta.resize(rows * self.outputs(), 0.0);
        delta
    }

    /// Applies one optimizer step, with the L2 penalty's gradient `l2 · w` added to weights.
    pub(crate) fn step(
        &mut self,
        gradients: &Gradients,
        state: &mut OptimizerState,
        learning_rate: f32,
        l2: f32,
    ) {
        state.steps += 1;
        let bias_correction1 = 1.0 - ADAM_BETA1.powi(state.steps);
        let bias_correction2 = 1.0 - ADAM_BETA2.powi(state.steps);
        for (index, layer) in self.layers.iter_mut().enumerate() {
            let parameters = [
                (
                    &mut layer.weights,
                    &gradients.weights[index],
                    &mut state.first_moments.weights[index],
                    &mut state.second_moments.weights[index],
                    l2,
                ),
                (
                    &mut layer.bias,
                    &gradients.bias[index],
                    &mut state.first_moments.bias[index],
                    &mut state.second_moments.bias[index],
                    0.0,
                ),
            ];
            for (values, gradient, first, second, penalty) in parameters {
                match state.optimizer {
                    Optimizer::Sgd => {
                        for (value, gradient) in values.iter_mut().zip(gradient.iter()) {
                            *value -= learning_rate * (gradient + penalty * *value);
                        }
                    }
                    Optimizer::Adam => {
                        let step_size = learning_rate / bias_correction1;
                        let iter = values
                            .iter_mut()
                            .zip(gradient.iter())
                            .zip(first.iter_mut())
                            .zip(second.iter_mut());
                        for (((value, gradient), first), second) in iter {
                            let gradient = gradient + penalty * *value;
                            *first = ADAM_BETA1 * *first + (1.0 - ADAM_BETA1) * gradient;
                            *second =
                                ADAM_BETA2 * *second + (1.0 - ADAM_BETA2) * gradient * gradient;
                            let denominator = (*second / bias_correction2).sqrt() + ADAM_EPSILON;
                            *value -= step_size * *first / denominator;
                        }
                    }
                }
            }
        }
    }

    /// `Σ w²` over every weight (biases excluded), for the penalty term of the loss.
    #[cfg(test)]
    pub(crate) fn squared_weights(&self) -> f64 {
        self.layers
            .iter()
            .flat_map(|layer| layer.weights.iter())
            .map(|w| (*w as f64) * (*w as f64))
            .sum()
    }

    /// The network as the ONNX writer's model, with `last_activation` after the last layer.
    pub(crate) fn to_mlp(&self, last_activation: Activation) -> Mlp {
        let last = self.layers.len() - 1;
        Mlp {
            input_name: crate::INPUT_NAME.into(),
            output_name: crate::OUTPUT_NAME.into(),
            layers: self
                .layers
                .iter()
                .enumerate()
                .map(|(index, layer)| Dense {
                    inputs: layer.inputs,
                    outputs: layer.outputs,
                    weights: layer.weights.clone(),
                    bias: layer.bias.clone(),
                    activation: if index == last {
                        last_activation
                    } else if layer.relu {
                        Activation::Relu
                    } else {
                        Activation::None
                    },
                })
                .collect(),
        }
    }

    /// The inverse of `to_mlp`, for predicting with an exported model (the last activation is
    /// the caller's to apply).
    pub(crate) fn from_mlp(mlp: &Mlp) -> Network {
        Network {
            layers: mlp
                .layers
                .iter()
                .map(|dense| Layer {
                    inputs: dense.inputs,
                    outputs: dense.outputs,
                    weights: dense.weights.clone(),
                    bias: dense.bias.clone(),
                    relu: dense.activation == Activation::Relu,
                })
                .collect(),
        }
    }
}

// === impl Layer ===

impl Layer {
    fn forward(&self, input: &[f32], rows: usize, output: &mut [f32]) {
        for row in 0..rows {
            let output_row = &mut output[row * self.outputs..(row + 1) * self.outputs];
            output_row.copy_from_slice(&self.bias);
            let input_row = &input[row * self.inputs..(row + 1) * self.inputs];
            for (input_index, &x) in input_row.iter().enumerate() {
                if x == 0.0 {
                    continue;
                }
                let weight_row =
                    &self.weights[input_index * self.outputs..(input_index + 1) * self.outputs];
                for (out, weight) in output_row.iter_mut().zip(weight_row) {
                    *out += x * weight;
                }
            }
            if self.relu {
                output_row
                    .iter_mut()
                    .for_each(|value| *value = value.max(0.0));
            }
        }
    }
}

// === impl Gradients ===

impl Gradients {
    pub(crate) fn zeros_like(network: &Network) -> Gradients {
        Gradients {
            weights: network
                .layers
                .iter()
                .map(|layer| vec![0.0; layer.weights.len()])
                .collect(),
            bias: network
                .layers
                .iter()
                .map(|layer| vec![0.0; layer.bias.len()])
                .collect(),
        }
    }
}

// === impl OptimizerState ===

impl OptimizerState {
    pub(crate) fn new(optimizer: Optimizer, network: &Network) -> OptimizerState {
        OptimizerState {
            optimizer,
            first_moments: Gradients::zeros_like(network),
            second_moments: Gradients::zeros_like(network),
            steps: 0,
        }
    }
}

/// Softmax of each `width`-wide row, in place.
pub(crate) fn softmax_rows(values: &mut [f32], width: usize) {
    for row in values.chunks_exact_mut(width) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for value in row.iter_mut() {
            *value = (*value - max).exp();
            sum += *value;
        }
        for value in row.iter_mut() {
            *value /= sum;
        }
    }
}

/// Index of the largest value; the first one on ties.
pub(crate) fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (index, value) in values.iter().enumerate() {
        if *value > values[best] {
            best = index;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean squared output of a tiny network, as a function of its parameters: the gradient
    /// check below compares backprop with finite differences of it.
    fn loss(network: &Network, input: &[f32], rows: usize) -> f64 {
        let mut workspace = Workspace::default();
        network.forward(input, rows, &mut workspace);
        let out = workspace.outputs.last().unwrap();
        out.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / rows as f64
    }

    #[test]
    fn backprop_matches_finite_differences() {
        let mut rng = SplitMix64(3);
        let mut network = Network::seeded(&[3, 5, 4, 2], &mut rng);
        for layer in &mut network.layers {
            layer
                .bias
                .iter_mut()
                .for_each(|b| *b = (rng.unit() * 0.3) as f32);
        }
        let rows = 4;
        let input: Vec<f32> = (0..rows * 3).map(|_| rng.unit() as f32).collect();
        let mut workspace = Workspace::default();
        network.forward(&input, rows, &mut workspace);
        let out = workspace.outputs.last().unwrap().clone();
        let delta = network.output_delta_mut(&mut workspace, rows);
        for (d, o) in delta.iter_mut().zip(&out) {
            *d = 2.0 * o / rows as f32;
        }
        let mut gradients = Gradients::zeros_like(&network);
        network.backward(&input, rows, &mut workspace, &mut gradients);
        let h = 1e-3f32;
        for layer in 0..network.layers.len() {
            for index in 0..network.layers[layer].weights.len() {
                let mut plus = network.clone();
                plus.layers[layer].weights[index] += h;
                let mut minus = network.clone();
                minus.layers[layer].weights[index] -= h;
                let numeric =
                    (loss(&plus, &input, rows) - loss(&minus, &input, rows)) / (2.0 * h as f64);
                let analytic = gradients.weights[layer][index] as f64;
                assert!(
                    (numeric - analytic).abs() < 2e-3 * (1.0 + numeric.abs()),
                    "layer {layer} weight {index}: numeric {numeric}, backprop {analytic}"
                );
            }
            for index in 0..network.layers[layer].bias.len() {
                let mut plus = network.clone();
                plus.layers[layer].bias[index] += h;
                let mut minus = network.clone();
                minus.layers[layer].bias[index] -= h;
                let numeric =
                    (loss(&plus, &input, rows) - loss(&minus, &input, rows)) / (2.0 * h as f64);
                let analytic = gradients.bias[layer][index] as f64;
                assert!(
                    (numeric - analytic).abs() < 2e-3 * (1.0 + numeric.abs()),
                    "layer {layer} bias {index}: numeric {numeric}, backprop {analytic}"
                );
            }
        }
        assert!(network.squared_weights() > 0.0);
    }
}
