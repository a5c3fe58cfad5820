//! Sequence models: an optional embedding, a stack of recurrent layers (Elman RNN, LSTM,
//! GRU) and a linear read-out at the last step or at every step, named as a PyTorch module
//! `embedding` / `rnn` (nn.RNN, nn.LSTM or nn.GRU with `batch_first=True`) / `fc` would name
//! them: `rnn.weight_ih_l0`, `rnn.bias_hh_l1`, `fc.weight`. Shapes are per sample:
//! a sequence is `[T, features]`, token ids `[T]`.

use super::spec::{ModelSpec, Node, NodeOp, RecurrentOp};
use crate::error::{Error, Result};
use crate::init::Init;
use crate::model::LossKind;
use crate::ops::CellKind;

/// The statistics show a recurrent layer as two layers: its input side (W_ih, b_ih) and
/// its recurrent side (W_hh, b_hh). Their names, `node.ih` and `node.hh`.
pub fn side_layer_names(node: &str) -> [String; 2] {
    [format!("{node}.ih"), format!("{node}.hh")]
}

/// What a sequence model reads at each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SeqInput {
    /// `features` real values per step.
    Features(usize),
    /// One token id per step, looked up in a `[vocab, dim]` embedding.
    Tokens { vocab: usize, dim: usize },
}

/// Where the read-out looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readout {
    /// One prediction per sequence, from the last step's hidden state.
    Last,
    /// One prediction per step (one label per step).
    EveryStep,
}

/// A stack of `layers` recurrent layers of `hidden` units over sequences of `steps`.
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceModel {
    pub cell: CellKind,
    pub input: SeqInput,
    pub steps: usize,
    pub hidden: usize,
    pub layers: usize,
    /// Classes (cross-entropy) or outputs (MSE) of the read-out.
    pub outputs: usize,
    pub readout: Readout,
    pub loss: LossKind,
    /// Truncated BPTT length (0: through the whole sequence).
    pub truncate: usize,
    /// The LSTM's forget-gate bias at initialization (None: drawn like the other biases).
    pub forget_bias: Option<f32>,
}

impl SequenceModel {
    /// Builds the model, refusing a sequence length, hidden size, depth, input or output
    /// size of 0 with an error that names the setting.
    pub fn build(&self) -> Result<ModelSpec> {
        for (what, v) in [
            ("sequence length", self.steps),
            ("hidden size", self.hidden),
            ("number of recurrent layers", self.layers),
            ("number of outputs", self.outputs),
        ] {
            if v == 0 {
                return Err(Error::config(format!(
                    "the {what} of a recurrent model is 0; it must be at least 1"
                )));
            }
        }
        let (t, h) = (self.steps, self.hidden);
        let mut m = ModelSpec {
            name: self.cell.name().to_string(),
            nodes: Vec::new(),
            params: Vec::new(),
        };
        let mut prev;
        let mut width;
        match self.input {
            SeqInput::Features(f) => {
                if f == 0 {
                    return Err(Error::config(
                        "a sequence needs at least 1 feature per step",
                    ));
                }
                prev = m.push_shaped("input", NodeOp::Input, vec![], vec![t, f]);
                width = f;
            }
            SeqInput::Tokens { vocab, dim } => {
                if vocab == 0 || dim == 0 {
                    return Err(Error::config(format!(
                        "an embedding needs a vocabulary and a width of at least 1 (got {vocab} and {dim})"
                    )));
                }
                let input = m.push_shaped("input", NodeOp::Input, vec![], vec![t]);
                let weight = m.param(
                    "embedding.weight".into(),
                    vec![vocab, dim],
                    Init::Normal { std: 1.0 },
                    1.0,
                );
                prev = m.push_shaped(
                    "embedding",
                    NodeOp::Embedding { weight, vocab },
                    vec![input],
                    vec![t, dim],
                );
                width = dim;
            }
        }
        // PyTorch's RNN init: every weight and bias U(−1/√H, 1/√H).
        let k = 1.0 / (h as f64).sqrt();
        let gh = self.cell.gates() * h;
        for l in 0..self.layers {
            let mut p = |name: &str, shape: Vec<usize>| {
                m.param(
                    format!("rnn.{name}_l{l}"),
                    shape,
                    Init::Uniform { limit: k },
                    1.0,
                )
            };
            let op = RecurrentOp {
                cell: self.cell,
                weight_ih: p("weight_ih", vec![gh, width]),
                weight_hh: p("weight_hh", vec![gh, h]),
                bias_ih: p("bias_ih", vec![gh]),
                bias_hh: p("bias_hh", vec![gh]),
                truncate: self.truncate,
                forget_bias: self.forget_bias.filter(|_| self.cell == CellKind::Lstm),
            };
            prev = m.push_shaped(
                &format!("rnn.l{l}"),
                NodeOp::Recurrent(op),
                vec![prev],
                vec![t, h],
            );
            width = h;
        }
        // nn.Linear's init: U(−1/√fan_in, 1/√fan_in) for weight (LeCun uniform with gain
        // 1/√3) and bias.
        let weight = m.param(
            "fc.weight".into(),
            vec![self.outputs, h],
            Init::LecunUniform,
            1.0 / 3f64.sqrt(),
        );
        let bias = m.param(
            "fc.bias".into(),
            vec![self.outputs],
            Init::Uniform { limit: k },
            1.0,
        );
        let logits = match self.readout {
            Readout::Last => {
                let last = m.push_shaped("last", NodeOp::LastStep, vec![prev], vec![h]);
                m.push_shaped(
                    "fc",
                    NodeOp::Linear {
                        weight,
                        bias: Some(bias),
                    },
                    vec![last],
                    vec![self.outputs],
                )
            }
            Readout::EveryStep => m.push_shaped(
                "fc",
                NodeOp::StepLinear {
                    weight,
                    bias: Some(bias),
                },
                vec![prev],
                vec![t, self.outputs],
            ),
        };
        m.push_shaped("loss", NodeOp::Loss(self.loss), vec![logits], vec![1]);
        m.validate()?;
        Ok(m)
    }
}

/// Shape checks of the sequence nodes (called by `ModelSpec::validate`).
pub(crate) fn validate_node(model: &ModelSpec, node: &Node) -> std::result::Result<(), String> {
    let xs = &model.nodes[node.inputs[0]].shape;
    let pshape = |id: usize| -> std::result::Result<&Vec<usize>, String> {
        model
            .params
            .get(id)
            .map(|p| &p.shape)
            .ok_or_else(|| format!("parameter {id} does not exist"))
    };
    let want = |id: usize, shape: Vec<usize>| -> std::result::Result<(), String> {
        let have = pshape(id)?;
        if *have != shape {
            return Err(format!(
                "parameter `{}` has shape {have:?}, expected {shape:?}",
                model.params[id].name
            ));
        }
        Ok(())
    };
    match &node.op {
        NodeOp::Recurrent(r) => {
            let [t, i] = xs[..] else {
                return Err(format!(
                    "reads a sequence [steps, features], got shape {xs:?}"
                ));
            };
            let [t2, h] = node.shape[..] else {
                return Err(format!(
                    "gives a sequence [steps, hidden], has shape {:?}",
                    node.shape
                ));
            };
            if t != t2 || t == 0 || h == 0 {
                return Err(format!(
                    "input {xs:?} and output {:?} need the same non-zero length and a hidden size of at least 1",
                    node.shape
                ));
            }
            let gh = r.cell.gates() * h;
            want(r.weight_ih, vec![gh, i])?;
            want(r.weight_hh, vec![gh, h])?;
            want(r.bias_ih, vec![gh])?;
            want(r.bias_hh, vec![gh])?;
        }
        NodeOp::Embedding { weight, vocab } => {
            let [t] = xs[..] else {
                return Err(format!("reads token ids [steps], got shape {xs:?}"));
            };
            let dim = node.shape.get(1).copied().unwrap_or(0);
            if node.shape != vec![t, dim] {
                return Err(format!("gives [steps, dim], has shape {:?}", node.shape));
            }
            want(*weight, vec![*vocab, dim])?;
        }
        NodeOp::LastStep if xs.len() != 2 || node.shape != vec![xs[1]] => {
            return Err(format!(
                "takes the last step of a [steps, features] sequence; input {xs:?}, output {:?}",
                node.shape
            ));
        }
        NodeOp::StepLinear { weight, bias } => {
            let [t, f] = xs[..] else {
                return Err(format!(
                    "reads a sequence [steps, features], got shape {xs:?}"
                ));
            };
            let out = node.shape.get(1).copied().unwrap_or(0);
            if node.shape != vec![t, out] {
                return Err(format!(
                    "gives [steps, outputs], has shape {:?}",
                    node.shape
                ));
            }
            want(*weight, vec![out, f])?;
            if let Some(b) = bias {
                want(*b, vec![out])?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The initial bias values an LSTM's forget-gate option asks for: for every recurrent node
/// with `forget_bias`, (bias_ih param, bias_hh param, hidden, value).
pub fn forget_bias_inits(model: &ModelSpec) -> Vec<(usize, usize, usize, f32)> {
    model
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            NodeOp::Recurrent(r) if r.cell == CellKind::Lstm => {
                r.forget_bias.map(|v| (r.bias_ih, r.bias_hh, n.shape[1], v))
            }
            _ => None,
        })
        .collect()
}
