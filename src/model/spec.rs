//! The model description: nodes, parameters, and the MLP builder.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::init::{Init, activation_gain};
use crate::ops::Activation;

pub type NodeId = usize;
pub type ParamId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Softmax cross-entropy over integer labels.
    Xent,
    /// Mean squared error against one-hot targets.
    Mse,
}

impl LossKind {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "xent" | "cross_entropy" | "cross-entropy" | "ce" => Some(LossKind::Xent),
            "mse" => Some(LossKind::Mse),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LossKind::Xent => "xent",
            LossKind::Mse => "mse",
        }
    }
}

/// A learnable tensor. `name` follows PyTorch's state-dict naming (`layers.0.weight`).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    /// Row-major shape; Linear weights are [out, in] as nn.Linear stores them.
    pub shape: Vec<usize>,
    pub init: Init,
    /// Gain for the initializer (torch.nn.init.calculate_gain of the following activation).
    pub gain: f64,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeOp {
    /// The batch of input features.
    Input,
    /// y = x·Wᵀ + b, W [out, in].
    Linear {
        weight: ParamId,
        bias: Option<ParamId>,
    },
    Activation(Activation),
    /// 2-D convolution over NCHW, weight [c_out, c_in/groups, kh, kw] as nn.Conv2d.
    Conv2d {
        weight: ParamId,
        bias: Option<ParamId>,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    },
    /// Batch normalization per channel (per feature for dense inputs), with running
    /// statistics for evaluation; gamma and beta as nn.BatchNorm's weight and bias.
    BatchNorm {
        gamma: ParamId,
        beta: ParamId,
        eps: f32,
        momentum: f32,
    },
    /// Layer normalization over the features of each sample.
    LayerNorm {
        gamma: ParamId,
        beta: ParamId,
        eps: f32,
    },
    MaxPool2d {
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
    },
    /// Average pooling, padding counted in the divisor (PyTorch's default).
    AvgPool2d {
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
    },
    /// [C, H, W] → [C].
    GlobalAvgPool,
    /// Zeroes each element with probability p during training (scaled by 1/(1−p)).
    Dropout {
        p: f32,
    },
    /// The element-wise sum of two inputs of the same shape (shortcut connections).
    Add,
    /// A view of the input as a flat feature vector: no copy.
    Flatten,
    /// Consumes the logits; the labels come from the batch.
    Loss(LossKind),
    /// A recurrent layer over a `[T, I]` sequence giving `[T, H]`, its parameters shared
    /// across the T steps (PyTorch's `weight_ih_l{k}` `[G·H, I]`, `weight_hh_l{k}`
    /// `[G·H, H]`, `bias_ih_l{k}`, `bias_hh_l{k}`; see `model::recurrent`).
    Recurrent(RecurrentOp),
    /// A lookup table `weight [V, E]` (nn.Embedding) over a `[T]` sequence of token ids.
    Embedding {
        weight: ParamId,
        vocab: usize,
    },
    /// The last step of a `[T, F]` sequence, `[F]`: a read-out at the last step follows it.
    LastStep,
    /// y_t = x_t·Wᵀ + b at every step of a `[T, F]` sequence, `[T, out]`: the read-out at
    /// every step (the loss then has one label per step).
    StepLinear {
        weight: ParamId,
        bias: Option<ParamId>,
    },
}

/// The parameters and options of a recurrent layer node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecurrentOp {
    pub cell: crate::ops::CellKind,
    pub weight_ih: ParamId,
    pub weight_hh: ParamId,
    pub bias_ih: ParamId,
    pub bias_hh: ParamId,
    /// Truncated BPTT: no gradient flows across multiples of this many steps (0: none cut).
    pub truncate: usize,
    /// The LSTM's forget-gate bias at initialization (Gers et al. 2000; Jozefowicz et al.
    /// 2015 recommend 1): b_ih's forget rows are set to it and b_hh's to 0. None: drawn as
    /// every other bias.
    pub forget_bias: Option<f32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The name a user sees in the statistics table (`hidden3`, `hidden3.act`, `output`).
    pub name: String,
    pub op: NodeOp,
    pub inputs: Vec<NodeId>,
    /// Features per sample of this node's output (the product of `shape`).
    pub features: usize,
    /// Shape per sample: [features] for dense tensors, [C, H, W] for images.
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub nodes: Vec<Node>,
    pub params: Vec<ParamSpec>,
}

impl ModelSpec {
    /// A multi-layer perceptron: `input` features, one hidden layer per entry of `hidden`
    /// (each Linear followed by `act`), a Linear read-out to `classes` logits, and the loss.
    pub fn mlp(
        input: usize,
        hidden: &[usize],
        classes: usize,
        act: Activation,
        init: Init,
        loss: LossKind,
    ) -> Result<Self> {
        let layers: Vec<(usize, Activation)> = hidden.iter().map(|&w| (w, act)).collect();
        Self::mlp_layers(input, &layers, classes, init, loss)
    }

    /// An MLP whose hidden layers each name their width and activation.
    pub fn mlp_layers(
        input: usize,
        hidden: &[(usize, Activation)],
        classes: usize,
        init: Init,
        loss: LossKind,
    ) -> Result<Self> {
        if input == 0 || classes == 0 {
            return Err(Error::config(format!(
                "an MLP needs at least one input feature and one class (got {input} and {classes})"
            )));
        }
        if let Some(i) = hidden.iter().position(|&(w, _)| w == 0) {
            return Err(Error::config(format!(
                "hidden layer {} has width 0; widths must be at least 1",
                i + 1
            )));
        }
        let mut m = ModelSpec {
            name: "mlp".into(),
            nodes: Vec::new(),
            params: Vec::new(),
        };
        let mut prev = m.push("input", NodeOp::Input, vec![], input);
        let mut fan_in = input;
        let layers: Vec<(usize, Option<Activation>)> = hidden
            .iter()
            .map(|&(w, a)| (w, Some(a)))
            .chain([(classes, None)])
            .collect();
        for (i, &(out, act)) in layers.iter().enumerate() {
            // The gain of the activation that consumes this layer's output (none after the
            // read-out), as torch.nn.init.calculate_gain gives it.
            let gain = act.map_or(1.0, |a| activation_gain(&a));
            let weight = m.param(format!("layers.{i}.weight"), vec![out, fan_in], init, gain);
            let bias = m.param(format!("layers.{i}.bias"), vec![out], Init::Zeros, 1.0);
            let name = if act.is_none() {
                "output".to_string()
            } else {
                format!("hidden{}", i + 1)
            };
            prev = m.push(
                &name,
                NodeOp::Linear {
                    weight,
                    bias: Some(bias),
                },
                vec![prev],
                out,
            );
            if let Some(a) = act {
                prev = m.push(
                    &format!("{name}.act"),
                    NodeOp::Activation(a),
                    vec![prev],
                    out,
                );
            }
            fan_in = out;
        }
        m.push("loss", NodeOp::Loss(loss), vec![prev], 1);
        Ok(m)
    }

    fn push(&mut self, name: &str, op: NodeOp, inputs: Vec<NodeId>, features: usize) -> NodeId {
        self.push_shaped(name, op, inputs, vec![features])
    }

    pub(crate) fn push_shaped(
        &mut self,
        name: &str,
        op: NodeOp,
        inputs: Vec<NodeId>,
        shape: Vec<usize>,
    ) -> NodeId {
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs,
            features: shape.iter().product(),
            shape,
        });
        self.nodes.len() - 1
    }

    pub(crate) fn param(
        &mut self,
        name: String,
        shape: Vec<usize>,
        init: Init,
        gain: f64,
    ) -> ParamId {
        self.params.push(ParamSpec {
            name,
            shape,
            init,
            gain,
        });
        self.params.len() - 1
    }

    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.numel()).sum()
    }

    /// The input node's feature count.
    pub fn input_features(&self) -> usize {
        self.nodes
            .iter()
            .find(|n| n.op == NodeOp::Input)
            .map_or(0, |n| n.features)
    }

    /// Checks the DAG: inputs exist and come earlier (a topological order), arities and
    /// feature counts agree, one input node, exactly one loss node at the end.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |node: &Node, why: String| Error::config(format!("model node `{}`: {why}", node.name));
        let mut inputs = 0;
        let mut losses = 0;
        for (id, node) in self.nodes.iter().enumerate() {
            if let Some(&i) = node.inputs.iter().find(|&&i| i >= id) {
                return Err(bad(node, format!("input {i} is not an earlier node")));
            }
            if node.features == 0 {
                return Err(bad(node, "has 0 features".into()));
            }
            let arity = match node.op {
                NodeOp::Input => {
                    inputs += 1;
                    0
                }
                NodeOp::Loss(_) => {
                    losses += 1;
                    1
                }
                NodeOp::Add => 2,
                _ => 1,
            };
            if node.inputs.len() != arity {
                return Err(bad(
                    node,
                    format!("takes {arity} input(s), has {}", node.inputs.len()),
                ));
            }
            let fin = node.inputs.first().map(|&i| self.nodes[i].features);
            match &node.op {
                NodeOp::Linear { weight, bias } => {
                    let w = self
                        .params
                        .get(*weight)
                        .ok_or_else(|| bad(node, "weight does not exist".into()))?;
                    if w.shape != vec![node.features, fin.unwrap_or(0)] {
                        return Err(bad(
                            node,
                            format!(
                                "weight `{}` has shape {:?}, expected [{}, {}]",
                                w.name,
                                w.shape,
                                node.features,
                                fin.unwrap_or(0)
                            ),
                        ));
                    }
                    if let Some(b) = bias {
                        let b = self
                            .params
                            .get(*b)
                            .ok_or_else(|| bad(node, "bias does not exist".into()))?;
                        if b.shape != vec![node.features] {
                            return Err(bad(
                                node,
                                format!("bias `{}` has shape {:?}", b.name, b.shape),
                            ));
                        }
                    }
                }
                NodeOp::Activation(_)
                | NodeOp::Dropout { .. }
                | NodeOp::BatchNorm { .. }
                | NodeOp::LayerNorm { .. }
                    if fin != Some(node.features) =>
                {
                    return Err(bad(node, "this op keeps its input's shape".into()));
                }
                NodeOp::Add
                    if node
                        .inputs
                        .iter()
                        .any(|&i| self.nodes[i].shape != node.shape) =>
                {
                    let shapes: Vec<_> = node
                        .inputs
                        .iter()
                        .map(|&i| self.nodes[i].shape.clone())
                        .collect();
                    return Err(bad(
                        node,
                        format!("adds tensors of different shapes {shapes:?}"),
                    ));
                }
                NodeOp::Flatten if fin != Some(node.features) => {
                    return Err(bad(node, "a flatten keeps the element count".into()));
                }
                NodeOp::Recurrent(_)
                | NodeOp::Embedding { .. }
                | NodeOp::LastStep
                | NodeOp::StepLinear { .. } => {
                    crate::model::recurrent::validate_node(self, node).map_err(|e| bad(node, e))?;
                }
                _ => {}
            }
        }
        if inputs != 1
            || losses != 1
            || !matches!(self.nodes.last().map(|n| &n.op), Some(NodeOp::Loss(_)))
        {
            return Err(Error::config(
                "a model needs one input node and one loss node, last".to_string(),
            ));
        }
        Ok(())
    }
}
