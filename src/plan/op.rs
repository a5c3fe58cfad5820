//! The op vocabulary of a plan. Each variant names its buffers and sizes; the GPU executor
//! turns it into a `Dispatch` at plan time, the CPU executor calls the twin of the same name.

use super::BufId;
use crate::model::LossKind;
use crate::ops::conv2d::Conv2dShape;
use crate::ops::pool2d::Pool2dShape;
use crate::ops::{Activation, MatmulLayout, MatmulShape, RecurrentShape};

/// Which tensor of a layer a statistics record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorKind {
    Weight,
    Bias,
    WeightGrad,
    BiasGrad,
    /// The layer's output activation.
    Output,
    /// The gradient of the loss with respect to the output activation.
    OutputGrad,
    /// The change the optimizer applied to the weight.
    WeightUpdate,
    /// The change the optimizer applied to the bias.
    BiasUpdate,
}

impl TensorKind {
    pub const ALL: [TensorKind; 8] = [
        TensorKind::Weight,
        TensorKind::Bias,
        TensorKind::WeightGrad,
        TensorKind::BiasGrad,
        TensorKind::Output,
        TensorKind::OutputGrad,
        TensorKind::WeightUpdate,
        TensorKind::BiasUpdate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TensorKind::Weight => "weight",
            TensorKind::Bias => "bias",
            TensorKind::WeightGrad => "weight_grad",
            TensorKind::BiasGrad => "bias_grad",
            TensorKind::Output => "output",
            TensorKind::OutputGrad => "output_grad",
            TensorKind::WeightUpdate => "weight_update",
            TensorKind::BiasUpdate => "bias_update",
        }
    }
}

/// What the device does, before the optimizer, with a step whose gradients hold a NaN or
/// an Inf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Guard {
    /// Nothing: the values reach the parameters.
    #[default]
    Off,
    /// That step's optimizer ops do not run (no parameter, no moment changes).
    Skip,
    /// That step's and every later step's optimizer ops do not run: the parameters stay
    /// the last good ones while the host, a few steps behind, catches up and stops.
    Halt,
}

impl Guard {
    /// The code of the WGSL `NormParams::guard`.
    pub fn code(self) -> u32 {
        match self {
            Guard::Off => 0,
            Guard::Skip => 1,
            Guard::Halt => 2,
        }
    }
}

/// When a statistics op runs: gradient records every step (they give the total gradient
/// norm logged each step), the rest only on steps that take statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsClass {
    EveryStep,
    StatsSteps,
}

/// One statistics record: which layer's which tensor.
#[derive(Clone, Debug)]
pub struct StatsJobSpec {
    pub layer: usize,
    pub kind: TensorKind,
    pub buffer: BufId,
    pub len: usize,
    pub saturation: Option<(f32, f32)>,
    pub class: StatsClass,
    /// The earlier job whose record this one is: the same tensor measured at the same
    /// point of the step, for a second layer (two layers whose output gradient is one
    /// buffer, as the branch's last BatchNorm and a projection shortcut's at a residual
    /// merge). No op computes it; the executors give it that job's record.
    pub same_as: Option<usize>,
}

#[derive(Clone, Debug)]
pub enum Op {
    Matmul {
        layout: MatmulLayout,
        shape: MatmulShape,
        a: BufId,
        b: BufId,
        c: BufId,
        accumulate: bool,
    },
    BiasForward {
        y: BufId,
        bias: BufId,
        rows: usize,
        cols: usize,
    },
    BiasBackward {
        dy: BufId,
        db: BufId,
        rows: usize,
        cols: usize,
        accumulate: bool,
    },
    ActivationForward {
        act: Activation,
        x: BufId,
        y: BufId,
        len: usize,
    },
    ActivationBackward {
        act: Activation,
        x: BufId,
        y: BufId,
        dy: BufId,
        dx: BufId,
        len: usize,
    },
    /// Loss forward and backward fused, then the fixed-order reduction into `loss_out`.
    Loss {
        kind: LossKind,
        logits: BufId,
        dlogits: BufId,
        rows: usize,
        classes: usize,
    },
    /// y = conv(x, w) over NCHW.
    Conv2dForward {
        shape: Conv2dShape,
        x: BufId,
        w: BufId,
        y: BufId,
    },
    /// y[n, c, :, :] += bias[c].
    Conv2dBiasForward {
        shape: Conv2dShape,
        y: BufId,
        bias: BufId,
    },
    /// dx = the transposed convolution of dy (overwrites dx).
    /// dx = ∂L/∂x, or dx += ∂L/∂x when `accumulate` (x is read by several nodes and this
    /// is not the first gradient it receives).
    Conv2dBackwardInput {
        shape: Conv2dShape,
        dy: BufId,
        w: BufId,
        dx: BufId,
        accumulate: bool,
    },
    Conv2dBackwardWeight {
        shape: Conv2dShape,
        x: BufId,
        dy: BufId,
        dw: BufId,
        accumulate: bool,
    },
    Conv2dBackwardBias {
        shape: Conv2dShape,
        dy: BufId,
        db: BufId,
        accumulate: bool,
    },
    /// BatchNorm over (n, c, s): training mode normalizes with the batch statistics,
    /// saves mean and 1/std, and updates the running statistics; evaluation mode uses them.
    BatchNormForward {
        train: bool,
        n: usize,
        c: usize,
        s: usize,
        x: BufId,
        y: BufId,
        gamma: BufId,
        beta: BufId,
        mean: BufId,
        inv_std: BufId,
        running_mean: BufId,
        running_var: BufId,
        eps: f32,
        momentum: f32,
    },
    BatchNormBackward {
        n: usize,
        c: usize,
        s: usize,
        x: BufId,
        dy: BufId,
        gamma: BufId,
        mean: BufId,
        inv_std: BufId,
        dx: BufId,
        dgamma: BufId,
        dbeta: BufId,
        acc_gamma: bool,
        acc_beta: bool,
    },
    LayerNormForward {
        rows: usize,
        d: usize,
        x: BufId,
        y: BufId,
        gamma: BufId,
        beta: BufId,
        mean: BufId,
        inv_std: BufId,
        eps: f32,
    },
    LayerNormBackward {
        rows: usize,
        d: usize,
        x: BufId,
        dy: BufId,
        gamma: BufId,
        mean: BufId,
        inv_std: BufId,
        dx: BufId,
        dgamma: BufId,
        dbeta: BufId,
        acc_gamma: bool,
        acc_beta: bool,
    },
    MaxPoolForward {
        shape: Pool2dShape,
        x: BufId,
        y: BufId,
        argmax: BufId,
    },
    MaxPoolBackward {
        shape: Pool2dShape,
        dy: BufId,
        argmax: BufId,
        dx: BufId,
    },
    AvgPoolForward {
        shape: Pool2dShape,
        x: BufId,
        y: BufId,
    },
    AvgPoolBackward {
        shape: Pool2dShape,
        dy: BufId,
        dx: BufId,
    },
    GlobalAvgPoolForward {
        n: usize,
        c: usize,
        hw: usize,
        x: BufId,
        y: BufId,
    },
    GlobalAvgPoolBackward {
        n: usize,
        c: usize,
        hw: usize,
        dy: BufId,
        dx: BufId,
    },
    /// Dropout with a mask hashed from (seed, step, index), the same on both executors.
    DropoutForward {
        p: f32,
        seed: u32,
        x: BufId,
        y: BufId,
        len: usize,
    },
    DropoutBackward {
        p: f32,
        seed: u32,
        dy: BufId,
        dx: BufId,
        len: usize,
    },
    AddForward {
        a: BufId,
        b: BufId,
        y: BufId,
        len: usize,
    },
    /// dst += src: sums the gradients a tensor receives from several consumers.
    AccumulateGrad { dst: BufId, src: BufId, len: usize },
    /// dst = src.
    CopyTensor { src: BufId, dst: BufId, len: usize },
    /// The statistics record `job` (index into `Plan::stats_jobs`).
    Stats { job: usize },
    /// Dead-unit count of layer `layer` into counter `counter`.
    DeadUnits { layer: usize, counter: usize },
    /// Optimizer step of parameter `param` (index into `Plan::params`); its update goes to
    /// the parameter's update buffer.
    Optimizer { param: usize },
    /// The global L2 norm of every parameter gradient, from the gradient statistics records,
    /// and the scale min(1, max_norm / (norm + 1e-6)) applied to every gradient (PyTorch's
    /// clip_grad_norm_); `max_norm` = +inf only measures. `guard` decides on the device
    /// whether the optimizer ops run when a gradient holds a NaN or Inf.
    ClipNorm { max_norm: f32, guard: Guard },
    /// Every parameter gradient clamped to [−value, value] (PyTorch's clip_grad_value_).
    ClipValue { value: f32 },
    /// The time loop of a recurrent layer (see `plan::recurrent`): `gates` holds the input
    /// projection on entry and the activated gates after; writes h, hprev, aux.
    RecurrentForward {
        shape: RecurrentShape,
        w_hh: BufId,
        /// [H, G·H] scratch for W_hhᵀ (the GPU's step kernel reads it; the CPU's GEMM
        /// takes the transpose as strides and leaves it unused).
        w_hh_t: BufId,
        b_hh: BufId,
        gates: BufId,
        h: BufId,
        hprev: BufId,
        aux: BufId,
    },
    /// Backpropagation through time of a recurrent layer: from dy (gradient w.r.t. every
    /// h_t from above) to dh, dgi and (GRU) dgh; `carry` is the LSTM's dc between steps.
    RecurrentBackward {
        shape: RecurrentShape,
        w_hh: BufId,
        gates: BufId,
        h: BufId,
        hprev: BufId,
        aux: BufId,
        dy: BufId,
        dh: BufId,
        dgi: BufId,
        dgh: Option<BufId>,
        carry: BufId,
    },
    /// ‖dh[:, t, :]‖₂ for every step t into `norms[offset + t]` (a statistics op).
    HiddenGradNorms {
        dh: BufId,
        batch: usize,
        steps: usize,
        hidden: usize,
        norms: BufId,
        offset: usize,
    },
    /// y[r] = weight[ids[r]] for the B·T token ids.
    EmbeddingForward {
        ids: BufId,
        weight: BufId,
        y: BufId,
        rows: usize,
        vocab: usize,
        dim: usize,
    },
    /// dW[v] (+)= Σ_{r : ids[r] = v} dy[r], rows in order (no atomics).
    EmbeddingBackward {
        ids: BufId,
        dy: BufId,
        dw: BufId,
        rows: usize,
        vocab: usize,
        dim: usize,
        accumulate: bool,
    },
    /// y[b] = x[b, T − 1] of a `[B, T, F]` sequence.
    LastStepForward {
        x: BufId,
        y: BufId,
        batch: usize,
        steps: usize,
        features: usize,
    },
    /// dx[b, T − 1] = dy[b], zero at the other steps.
    LastStepBackward {
        dy: BufId,
        dx: BufId,
        batch: usize,
        steps: usize,
        features: usize,
    },
}

impl Op {
    /// Every buffer this op names directly (not the ones reached through a job, layer or
    /// parameter index: statistics, dead units, optimizer and clipping ops).
    pub fn buffers(&self) -> Vec<BufId> {
        match *self {
            Op::Matmul { a, b, c, .. } => vec![a, b, c],
            Op::BiasForward { y, bias, .. } => vec![y, bias],
            Op::BiasBackward { dy, db, .. } => vec![dy, db],
            Op::ActivationForward { x, y, .. } => vec![x, y],
            Op::ActivationBackward { x, y, dy, dx, .. } => vec![x, y, dy, dx],
            Op::Loss {
                logits, dlogits, ..
            } => vec![logits, dlogits],
            Op::Conv2dForward { x, w, y, .. } => vec![x, w, y],
            Op::Conv2dBiasForward { y, bias, .. } => vec![y, bias],
            Op::Conv2dBackwardInput { dy, w, dx, .. } => vec![dy, w, dx],
            Op::Conv2dBackwardWeight { x, dy, dw, .. } => vec![x, dy, dw],
            Op::Conv2dBackwardBias { dy, db, .. } => vec![dy, db],
            Op::BatchNormForward {
                x,
                y,
                gamma,
                beta,
                mean,
                inv_std,
                running_mean,
                running_var,
                ..
            } => {
                vec![x, y, gamma, beta, mean, inv_std, running_mean, running_var]
            }
            Op::BatchNormBackward {
                x,
                dy,
                gamma,
                mean,
                inv_std,
                dx,
                dgamma,
                dbeta,
                ..
            }
            | Op::LayerNormBackward {
                x,
                dy,
                gamma,
                mean,
                inv_std,
                dx,
                dgamma,
                dbeta,
                ..
            } => {
                vec![x, dy, gamma, mean, inv_std, dx, dgamma, dbeta]
            }
            Op::LayerNormForward {
                x,
                y,
                gamma,
                beta,
                mean,
                inv_std,
                ..
            } => vec![x, y, gamma, beta, mean, inv_std],
            Op::MaxPoolForward { x, y, argmax, .. } => vec![x, y, argmax],
            Op::MaxPoolBackward { dy, argmax, dx, .. } => vec![dy, argmax, dx],
            Op::AvgPoolForward { x, y, .. }
            | Op::GlobalAvgPoolForward { x, y, .. }
            | Op::DropoutForward { x, y, .. } => {
                vec![x, y]
            }
            Op::AvgPoolBackward { dy, dx, .. }
            | Op::GlobalAvgPoolBackward { dy, dx, .. }
            | Op::DropoutBackward { dy, dx, .. } => {
                vec![dy, dx]
            }
            Op::AddForward { a, b, y, .. } => vec![a, b, y],
            Op::AccumulateGrad { dst, src, .. } | Op::CopyTensor { src, dst, .. } => vec![dst, src],
            Op::RecurrentForward {
                w_hh,
                w_hh_t,
                b_hh,
                gates,
                h,
                hprev,
                aux,
                ..
            } => vec![w_hh, w_hh_t, b_hh, gates, h, hprev, aux],
            Op::RecurrentBackward {
                w_hh,
                gates,
                h,
                hprev,
                aux,
                dy,
                dh,
                dgi,
                dgh,
                carry,
                ..
            } => {
                let mut v = vec![w_hh, gates, h, hprev, aux, dy, dh, dgi, carry];
                v.extend(dgh);
                v
            }
            Op::HiddenGradNorms { dh, norms, .. } => vec![dh, norms],
            Op::EmbeddingForward { ids, weight, y, .. } => vec![ids, weight, y],
            Op::EmbeddingBackward { ids, dy, dw, .. } => vec![ids, dy, dw],
            Op::LastStepForward { x, y, .. } => vec![x, y],
            Op::LastStepBackward { dy, dx, .. } => vec![dy, dx],
            Op::Stats { .. }
            | Op::DeadUnits { .. }
            | Op::Optimizer { .. }
            | Op::ClipNorm { .. }
            | Op::ClipValue { .. } => Vec::new(),
        }
    }

    /// The statistics class of a statistics op, None for every other op.
    pub fn stats_class(&self, jobs: &[super::StatsJobSpec]) -> Option<StatsClass> {
        match self {
            Op::Stats { job } => Some(jobs[*job].class),
            Op::DeadUnits { .. } | Op::HiddenGradNorms { .. } => Some(StatsClass::StatsSteps),
            _ => None,
        }
    }
}
