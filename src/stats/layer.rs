//! Per-layer statistics as a user reads them: a step's records grouped by layer, with the
//! derived numbers that show gradient flow (each layer's gradient norm against the last
//! layer's, the update-to-weight ratio, saturation and dead units).

use serde::Serialize;

use super::TensorStats;
use crate::executor::{StatsLevel, StepReport};
use crate::plan::{Plan, TensorKind};

#[derive(Clone, Debug, Serialize)]
pub struct LayerStats {
    pub name: String,
    pub units: usize,
    pub activation: Option<&'static str>,
    /// Records of this layer, by tensor kind (only the current ones).
    pub tensors: Vec<(TensorKind, TensorStats)>,
    /// L2 norm of the weight gradient.
    pub grad_norm: f64,
    /// grad_norm divided by the last layer's: ≪ 1 in early layers means vanishing,
    /// ≫ 1 exploding.
    pub grad_ratio_to_last: f64,
    /// ‖ΔW‖ / ‖W‖ of this step's update; around 1e-3 is the classic healthy value.
    pub update_ratio: Option<f64>,
    /// Fraction of outputs pinned near the bounds of a sigmoid or tanh.
    pub saturated_fraction: Option<f64>,
    /// Fraction of ReLU units that output zero for the whole batch.
    pub dead_fraction: Option<f64>,
    /// NaN and Inf values across every tensor of this layer.
    pub nonfinite: u64,
}

impl LayerStats {
    pub fn get(&self, kind: TensorKind) -> Option<&TensorStats> {
        self.tensors
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| s)
    }
}

/// Groups the records of one step by layer. On steps without full statistics only the
/// gradient records are current, and only they are included.
pub fn layer_stats(plan: &Plan, report: &StepReport) -> Vec<LayerStats> {
    let mut layers: Vec<LayerStats> = plan
        .layers
        .iter()
        .map(|l| LayerStats {
            name: l.name.clone(),
            units: l.units,
            activation: l.activation.map(|a| a.name()),
            tensors: Vec::new(),
            grad_norm: 0.0,
            grad_ratio_to_last: f64::NAN,
            update_ratio: None,
            saturated_fraction: None,
            dead_fraction: None,
            nonfinite: 0,
        })
        .collect();
    for (job, raw) in plan.stats_jobs.iter().zip(&report.records) {
        if !report.stats.runs(job.class) {
            continue;
        }
        let s = raw.summary();
        let layer = &mut layers[job.layer];
        layer.nonfinite += s.nan + s.inf;
        if job.kind == TensorKind::WeightGrad {
            layer.grad_norm = s.norm;
        }
        if job.kind == TensorKind::Output && job.saturation.is_some() {
            layer.saturated_fraction = Some(s.saturated_fraction);
        }
        layer.tensors.push((job.kind, s));
    }
    if report.stats == StatsLevel::Full {
        for (counter, &l) in plan.dead_unit_layers.iter().enumerate() {
            let units = plan.layers[l].units.max(1) as f64;
            layers[l].dead_fraction = report.dead_units.get(counter).map(|&d| d as f64 / units);
        }
        for layer in &mut layers {
            if let (Some(u), Some(w)) = (
                layer.get(TensorKind::WeightUpdate),
                layer.get(TensorKind::Weight),
            ) {
                layer.update_ratio = Some(if w.norm > 0.0 {
                    u.norm / w.norm
                } else {
                    f64::INFINITY
                });
            }
        }
    }
    let last = layers.last().map_or(f64::NAN, |l| l.grad_norm);
    for layer in &mut layers {
        layer.grad_ratio_to_last = layer.grad_norm / last;
    }
    layers
}

/// The L2 norm of the gradient over every parameter: √(Σ ‖g‖²) over the gradient records.
pub fn total_grad_norm(plan: &Plan, report: &StepReport) -> f64 {
    plan.stats_jobs
        .iter()
        .zip(&report.records)
        .filter(|(j, _)| matches!(j.kind, TensorKind::WeightGrad | TensorKind::BiasGrad))
        .map(|(_, r)| {
            let n = r.summary().norm;
            n * n
        })
        .sum::<f64>()
        .sqrt()
}
