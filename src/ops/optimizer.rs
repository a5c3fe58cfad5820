//! Optimizers and their hyper-parameters, with PyTorch's semantics (torch.optim), so that a
//! user's known-good settings carry over. Sorted in order of increasing complexity.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    /// Heavy-ball momentum (torch.optim.SGD with momentum, dampening 0).
    Momentum,
    /// Nesterov momentum (torch.optim.SGD with nesterov=True).
    Nesterov,
    Adagrad,
    Rmsprop,
    Adam,
    /// Adam with decoupled weight decay (Loshchilov & Hutter 2019).
    Adamw,
}

impl OptimizerKind {
    pub fn code(self) -> u32 {
        self as u32
    }

    /// How many parameter-sized state tensors the optimizer keeps (0, 1 or 2).
    pub fn state_slots(self) -> usize {
        match self {
            OptimizerKind::Sgd => 0,
            OptimizerKind::Momentum
            | OptimizerKind::Nesterov
            | OptimizerKind::Adagrad
            | OptimizerKind::Rmsprop => 1,
            OptimizerKind::Adam | OptimizerKind::Adamw => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Momentum => "momentum",
            OptimizerKind::Nesterov => "nesterov",
            OptimizerKind::Adagrad => "adagrad",
            OptimizerKind::Rmsprop => "rmsprop",
            OptimizerKind::Adam => "adam",
            OptimizerKind::Adamw => "adamw",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "sgd" => OptimizerKind::Sgd,
            "momentum" => OptimizerKind::Momentum,
            "nesterov" => OptimizerKind::Nesterov,
            "adagrad" => OptimizerKind::Adagrad,
            "rmsprop" => OptimizerKind::Rmsprop,
            "adam" => OptimizerKind::Adam,
            "adamw" => OptimizerKind::Adamw,
            _ => return None,
        })
    }

    pub const ALL_NAMES: &'static [&'static str] = &[
        "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw",
    ];
}

/// Hyper-parameters that stay fixed for a run. Defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerParams {
    pub kind: OptimizerKind,
    /// Momentum coefficient μ (momentum, nesterov).
    pub momentum: f32,
    /// β₁ (adam, adamw).
    pub beta1: f32,
    /// β₂ (adam, adamw) and the smoothing constant α (rmsprop).
    pub beta2: f32,
    /// Added to the denominator (adagrad, rmsprop, adam, adamw).
    pub eps: f32,
    /// L2 penalty added to the gradient, or decoupled decay for adamw.
    pub weight_decay: f32,
}

impl OptimizerParams {
    pub fn new(kind: OptimizerKind) -> Self {
        let (beta2, eps, weight_decay) = match kind {
            OptimizerKind::Adagrad => (0.0, 1e-10, 0.0),
            OptimizerKind::Rmsprop => (0.99, 1e-8, 0.0),
            OptimizerKind::Adamw => (0.999, 1e-8, 0.01),
            _ => (0.999, 1e-8, 0.0),
        };
        OptimizerParams {
            kind,
            momentum: 0.9,
            beta1: 0.9,
            beta2,
            eps,
            weight_decay,
        }
    }
}

/// Values that change every step and are written once per step (a uniform on the GPU):
/// the learning rate from the schedule and the 1-based step count for bias correction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepScalars {
    pub lr: f32,
    /// 1-based number of this optimizer step.
    pub t: u32,
}

impl StepScalars {
    /// Adam's bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ, computed on the host in f64 so both
    /// executors use the same rounded f32 values.
    pub fn bias_corrections(&self, p: &OptimizerParams) -> (f32, f32) {
        let t = self.t as i32;
        (
            (1.0 - (p.beta1 as f64).powi(t)) as f32,
            (1.0 - (p.beta2 as f64).powi(t)) as f32,
        )
    }
}

/// The per-step uniform of the GPU optimizer kernel (WGSL struct `Step` in optimizer.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepUniform {
    pub lr: f32,
    pub t: u32,
    /// 1 − β₁ᵗ
    pub bias_correction1: f32,
    /// 1 − β₂ᵗ
    pub bias_correction2: f32,
}

impl StepUniform {
    pub fn new(s: &StepScalars, p: &OptimizerParams) -> Self {
        let (bias_correction1, bias_correction2) = s.bias_corrections(p);
        StepUniform {
            lr: s.lr,
            t: s.t,
            bias_correction1,
            bias_correction2,
        }
    }
}
