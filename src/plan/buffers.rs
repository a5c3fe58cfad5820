//! The buffers of a plan: each named, typed and sized once at compile time.

use crate::tensor::DType;

/// Index of a buffer in `Plan::buffers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufId(pub usize);

/// What a buffer holds, for the memory report and for readers of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferRole {
    Param,
    Grad,
    OptimizerState,
    /// BatchNorm's running mean and variance (used in evaluation, saved in checkpoints).
    RunningStats,
    /// Saved activations (pre- and post-activation outputs of each layer).
    Activation,
    /// Gradients with respect to activations.
    ActivationGrad,
    /// The batch: inputs, labels, targets.
    Batch,
    /// What each parameter's last optimizer step changed it by (for its statistics).
    Update,
    /// Per-row loss terms, the reduced loss, the recurrent cells' scratch.
    Scratch,
}

#[derive(Clone, Debug)]
pub struct BufferSpec {
    pub name: String,
    /// Another buffer of the same size whose storage this one shares: their lifetimes in
    /// the step do not overlap (see `plan::share`).
    pub alias_of: Option<BufId>,
    pub dtype: DType,
    pub numel: usize,
    pub role: BufferRole,
}

impl BufferSpec {
    pub fn bytes(&self) -> u64 {
        (self.numel * self.dtype.size_bytes()) as u64
    }
}
