//! Non-finite tracing: where a NaN or Inf first appeared in a step, in execution order.
//!
//! Every statistics record counts the NaN and Inf of one tensor: a layer's output
//! activation (forward), the gradient of its output, its weight and bias gradients
//! (backward), its parameters (before the step) and its updates (optimizer). Ordering the
//! records by the position in the op list of the op that produced their tensor, the first
//! non-finite record is the origin; every later one is downstream of it. On a step that
//! took only the gradient records (`--stats-every` > 1), forward tensors were not measured
//! and the origin is the earliest gradient, which the result says (`complete` = false).

use serde::Serialize;

use super::{Evidence, Finding, FindingKind, RemedyFamily as F, remedy};
use crate::executor::{StatsLevel, StepReport};
use crate::plan::{BufId, Op, Plan};

/// Which part of a step produced a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    /// The parameters as the step found them.
    Parameters,
    Forward,
    Backward,
    /// The optimizer's update.
    Update,
}

impl Pass {
    pub fn name(self) -> &'static str {
        match self {
            Pass::Parameters => "parameters",
            Pass::Forward => "forward",
            Pass::Backward => "backward",
            Pass::Update => "update",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NonFiniteOrigin {
    pub step: u64,
    /// The layer's index and name ("loss" for a loss that is non-finite with every
    /// measured tensor finite).
    pub layer: Option<usize>,
    pub layer_name: String,
    pub pass: Pass,
    /// weight, bias, output, output_grad, weight_grad, bias_grad, weight_update,
    /// bias_update, or loss.
    pub tensor: String,
    pub nan: u64,
    pub inf: u64,
    /// Every tensor of the step was measured (a full-statistics step).
    pub complete: bool,
}

impl NonFiniteOrigin {
    pub fn describe(&self) -> String {
        format!(
            "first non-finite value at step {}: {} pass, layer `{}`, tensor {} ({} NaN, {} Inf){}",
            self.step,
            self.pass.name(),
            self.layer_name,
            self.tensor,
            self.nan,
            self.inf,
            if self.complete {
                ""
            } else {
                " — only gradients were measured on this step; set --stats-every 1 to trace forward tensors"
            }
        )
    }

    pub fn finding(&self) -> Finding {
        Finding {
            kind: FindingKind::NonFinite,
            step: self.step,
            layers: self
                .layer
                .map(|_| vec![self.layer_name.clone()])
                .unwrap_or_default(),
            message: self.describe(),
            evidence: vec![
                Evidence::new(
                    format!("NaN in {}", self.tensor),
                    Some(&self.layer_name),
                    self.nan as f64,
                ),
                Evidence::new(
                    format!("Inf in {}", self.tensor),
                    Some(&self.layer_name),
                    self.inf as f64,
                ),
            ],
            remedies: vec![
                remedy(
                    F::TrainingMethod,
                    "lower the learning rate, clip gradients (--clip-norm), or use --on-nonfinite skip to drop bad steps",
                ),
                remedy(
                    F::NodeOperations,
                    "bound activations (normalization) so outputs cannot overflow; check inputs for NaN",
                ),
                remedy(
                    F::Structure,
                    "initialize with Xavier/He variance; very large initial weights overflow in the forward pass",
                ),
            ],
        }
    }
}

/// The ops that write `buf`, as positions in the op list (clipping excluded: it rescales
/// gradients that already exist).
fn writes(op: &Op, buf: BufId, plan: &Plan) -> bool {
    match *op {
        Op::Matmul { c, .. } => c == buf,
        Op::BiasForward { y, .. } => y == buf,
        Op::BiasBackward { db, .. } => db == buf,
        Op::ActivationForward { y, .. } => y == buf,
        Op::ActivationBackward { dx, .. } => dx == buf,
        Op::Loss { dlogits, .. } => dlogits == buf,
        Op::Optimizer { param } => {
            let p = &plan.params[param];
            p.value == buf || p.update == buf || p.state.contains(&buf)
        }
        Op::Conv2dForward { y, .. }
        | Op::Conv2dBiasForward { y, .. }
        | Op::BatchNormForward { y, .. }
        | Op::LayerNormForward { y, .. }
        | Op::MaxPoolForward { y, .. }
        | Op::AvgPoolForward { y, .. }
        | Op::GlobalAvgPoolForward { y, .. }
        | Op::DropoutForward { y, .. }
        | Op::AddForward { y, .. } => y == buf,
        Op::Conv2dBackwardInput { dx, .. }
        | Op::MaxPoolBackward { dx, .. }
        | Op::AvgPoolBackward { dx, .. }
        | Op::GlobalAvgPoolBackward { dx, .. }
        | Op::DropoutBackward { dx, .. } => dx == buf,
        Op::Conv2dBackwardWeight { dw, .. } => dw == buf,
        Op::Conv2dBackwardBias { db, .. } => db == buf,
        Op::BatchNormBackward {
            dx, dgamma, dbeta, ..
        }
        | Op::LayerNormBackward {
            dx, dgamma, dbeta, ..
        } => dx == buf || dgamma == buf || dbeta == buf,
        Op::AccumulateGrad { dst, .. } | Op::CopyTensor { dst, .. } => dst == buf,
        Op::RecurrentForward {
            w_hh_t,
            gates,
            h,
            hprev,
            aux,
            ..
        } => [w_hh_t, gates, h, hprev, aux].contains(&buf),
        Op::RecurrentBackward {
            dh,
            dgi,
            dgh,
            carry,
            ..
        } => [dh, dgi, carry].contains(&buf) || dgh == Some(buf),
        Op::EmbeddingForward { y, .. } | Op::LastStepForward { y, .. } => y == buf,
        Op::EmbeddingBackward { dw, .. } => dw == buf,
        Op::LastStepBackward { dx, .. } => dx == buf,
        Op::HiddenGradNorms { norms, .. } => norms == buf,
        Op::Stats { .. } | Op::DeadUnits { .. } | Op::ClipNorm { .. } | Op::ClipValue { .. } => {
            false
        }
    }
}

/// For every statistics job, the position of the op that produced what it measured: the
/// last writer of its buffer before the job's own statistics op, or 0 for a tensor no op
/// of the step wrote before it was measured (the parameters). Positions are op index + 1.
pub fn production_order(plan: &Plan) -> Vec<usize> {
    let stats_pos: Vec<usize> = (0..plan.stats_jobs.len())
        .map(|j| {
            plan.ops
                .iter()
                .position(|o| matches!(o, Op::Stats { job } if *job == j))
                .unwrap_or(plan.ops.len())
        })
        .collect();
    plan.stats_jobs
        .iter()
        .enumerate()
        .map(|(j, job)| {
            plan.ops[..stats_pos[j]]
                .iter()
                .rposition(|o| writes(o, job.buffer, plan))
                .map_or(0, |p| p + 1)
        })
        .collect()
}

fn pass_of(plan: &Plan, pos: usize) -> Pass {
    if pos == 0 {
        Pass::Parameters
    } else if pos <= plan.forward_end {
        Pass::Forward
    } else if pos <= plan.backward_end {
        Pass::Backward
    } else {
        Pass::Update
    }
}

/// Where the first NaN or Inf of this step came from, or None when every measured tensor
/// and the loss are finite. `order` is `production_order(plan)`.
pub fn trace(plan: &Plan, order: &[usize], report: &StepReport) -> Option<NonFiniteOrigin> {
    let first = plan
        .stats_jobs
        .iter()
        .zip(&report.records)
        .zip(order)
        .filter(|((job, r), _)| report.stats.runs(job.class) && r.nan + r.inf > 0)
        .min_by_key(|((job, _), pos)| (**pos, job.layer))
        .map(|((job, r), &pos)| (job, r, pos));
    let complete = report.stats == StatsLevel::Full;
    match first {
        Some((job, r, pos)) => Some(NonFiniteOrigin {
            step: report.step,
            layer: Some(job.layer),
            layer_name: plan.layers[job.layer].name.clone(),
            pass: pass_of(plan, pos),
            tensor: job.kind.name().to_string(),
            nan: r.nan as u64,
            inf: r.inf as u64,
            complete,
        }),
        None if !report.loss.is_finite() => Some(NonFiniteOrigin {
            step: report.step,
            layer: None,
            layer_name: "loss".into(),
            pass: Pass::Forward,
            tensor: "loss".into(),
            nan: report.loss.is_nan() as u64,
            inf: report.loss.is_infinite() as u64,
            complete,
        }),
        None => None,
    }
}
