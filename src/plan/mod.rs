//! The plan: a model compiled once for a batch size into every buffer a step touches and the
//! ordered op list forward → loss → backward → stats → optimizer. Both executors run the
//! same plan; nothing about a step is decided later.

pub mod buffers;
pub mod compile;
pub mod fusion;
pub mod op;
pub mod recurrent;
pub mod share;

pub use buffers::{BufId, BufferRole, BufferSpec};
pub use compile::{StepOptions, compile, compile_with};
pub use op::{Guard, Op, StatsClass, StatsJobSpec, TensorKind};

use crate::model::{LossKind, ModelSpec};
use crate::ops::{Activation, OptimizerParams};
use crate::tensor::DType;

/// A parameter's buffers.
#[derive(Clone, Debug)]
pub struct ParamSlot {
    pub name: String,
    pub shape: Vec<usize>,
    pub numel: usize,
    pub value: BufId,
    pub grad: BufId,
    /// The optimizer's state tensors (none, one or two, by optimizer).
    pub state: Vec<BufId>,
    /// What the last optimizer step added to the value (its statistics are the update's).
    pub update: BufId,
}

/// A layer as a user sees it in the statistics: a Linear and the activation after it.
#[derive(Clone, Debug)]
pub struct LayerInfo {
    pub name: String,
    /// Index into `Plan::params`.
    pub weight: usize,
    pub bias: Option<usize>,
    /// Output features (units) of a dense layer, channels of a convolution.
    pub units: usize,
    /// Whether the output is [batch, units] (dead units are counted per column there).
    pub dense: bool,
    pub activation: Option<Activation>,
    /// The layer's output activation (after the activation function) and its gradient.
    pub output: BufId,
    pub output_grad: BufId,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub model: ModelSpec,
    pub batch: usize,
    pub optimizer: OptimizerParams,
    pub loss: LossKind,
    pub classes: usize,
    pub input_features: usize,
    pub buffers: Vec<BufferSpec>,
    pub params: Vec<ParamSlot>,
    pub layers: Vec<LayerInfo>,
    /// What a training step runs, in order.
    pub ops: Vec<Op>,
    /// What evaluation runs: the forward pass in evaluation mode (BatchNorm with running
    /// statistics, no dropout) and the loss.
    pub eval: Vec<Op>,
    /// The prefix of `ops` that is the forward pass and the loss.
    pub forward_end: usize,
    /// The prefix of `ops` that computes every gradient (forward, loss, backward).
    pub backward_end: usize,
    /// Buffers that are state but not parameters (BatchNorm's running statistics), with
    /// their initial value; checkpoints save them.
    pub running: Vec<(String, BufId, f32)>,
    /// One job per statistics record, in record order.
    pub stats_jobs: Vec<StatsJobSpec>,
    /// Layers whose dead units are counted, in the order of the dead-unit counters.
    pub dead_unit_layers: Vec<usize>,
    pub input: BufId,
    pub labels: BufId,
    /// One-hot targets (MSE only).
    pub targets: Option<BufId>,
    pub row_loss: BufId,
    pub row_correct: BufId,
    /// Two f32: [mean loss of the batch, number correct].
    pub loss_out: BufId,
    /// Clipping and the non-finite guard this plan runs between statistics and optimizer.
    pub step_options: StepOptions,
    /// Labels (loss rows) per sample: 1, or T for a read-out at every step.
    pub label_rows: usize,
    /// The recurrent layers, in node order, and where their per-step hidden-gradient norms
    /// lie in `hidden_norms`.
    pub recurrent_layers: Vec<recurrent::RecurrentLayer>,
    /// Σ T over the recurrent layers: ‖dL/dh_t‖ for every layer and step (on full-statistics
    /// steps), read back with the step's records.
    pub hidden_norms: Option<BufId>,
}

impl Plan {
    pub fn buffer(&self, id: BufId) -> &BufferSpec {
        &self.buffers[id.0]
    }

    pub fn param(&self, name: &str) -> Option<&ParamSlot> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Bytes the plan allocates, by role.
    pub fn bytes_by_role(&self) -> Vec<(BufferRole, u64)> {
        let mut out: Vec<(BufferRole, u64)> = Vec::new();
        for b in self.buffers.iter().filter(|b| b.alias_of.is_none()) {
            let bytes = b.bytes();
            match out.iter_mut().find(|(r, _)| *r == b.role) {
                Some((_, total)) => *total += bytes,
                None => out.push((b.role, bytes)),
            }
        }
        out
    }

    pub fn total_bytes(&self) -> u64 {
        self.buffers
            .iter()
            .filter(|b| b.alias_of.is_none())
            .map(|b| b.bytes())
            .sum()
    }

    /// The statistics jobs of every parameter gradient, in record order: what the global
    /// gradient norm merges.
    pub fn grad_jobs(&self) -> Vec<usize> {
        self.stats_jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| matches!(j.kind, TensorKind::WeightGrad | TensorKind::BiasGrad))
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether the plan has a global-norm op (clipping or the skip guard), which reads the
    /// gradient records and so needs them every step.
    pub fn has_clip_norm(&self) -> bool {
        self.ops.iter().any(|o| matches!(o, Op::ClipNorm { .. }))
    }

    /// The dtype every float tensor of this plan uses.
    pub fn float_dtype(&self) -> DType {
        DType::F32
    }
}
