//! Learning rate per layer: the update-to-weight ratio ‖ΔW‖/‖W‖, whose healthy value is
//! about 1e-3 (Karpathy's rule of thumb), above `update_ratio_high` (the step rewrites a
//! large part of the weights each step) or below `update_ratio_low` (the layer barely
//! learns), in each of the last `patience` full-statistics steps.

use super::{
    DiagnosisConfig, Evidence, Finding, FindingKind, History, RemedyFamily as F, names, remedy,
};

pub fn check(c: &DiagnosisConfig, h: &History) -> Vec<Finding> {
    let Some(latest) = h.latest() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (kind, layers, bound) in [
        (
            FindingKind::LearningRateTooHigh,
            h.sustained(c.patience, |l| {
                l.update_ratio.is_some_and(|u| u > c.update_ratio_high)
            }),
            c.update_ratio_high,
        ),
        (
            FindingKind::LearningRateTooLow,
            h.sustained(c.patience, |l| {
                l.update_ratio.is_some_and(|u| u < c.update_ratio_low)
            }),
            c.update_ratio_low,
        ),
    ] {
        if layers.is_empty() {
            continue;
        }
        let evidence: Vec<Evidence> = layers
            .iter()
            .map(|&i| {
                let l = &latest.layers[i];
                Evidence::new(
                    "update-to-weight ratio",
                    Some(&l.name),
                    l.update_ratio.unwrap_or(f64::NAN),
                )
            })
            .collect();
        let high = kind == FindingKind::LearningRateTooHigh;
        let remedies = if high {
            vec![
                remedy(
                    F::TrainingMethod,
                    "lower the learning rate for these layers (or overall), add warm-up, or clip gradients",
                ),
                remedy(
                    F::NodeOperations,
                    "normalize layer inputs (batch/layer norm) so one step size suits every layer",
                ),
                remedy(
                    F::Structure,
                    "check the initialization: weights far smaller than He/Xavier make every update relatively large",
                ),
            ]
        } else {
            vec![
                remedy(
                    F::TrainingMethod,
                    "raise the learning rate, or use an adaptive optimizer (Adam) that scales each layer's step",
                ),
                remedy(
                    F::NodeOperations,
                    "if the layer's gradient is also vanishing, use non-saturating activations",
                ),
                remedy(
                    F::Structure,
                    "shortcut connections or fewer layers give early layers a larger gradient",
                ),
            ]
        };
        out.push(Finding {
            kind,
            step: latest.step,
            layers: names(latest, &layers),
            message: format!(
                "‖ΔW‖/‖W‖ of {} is {:.1e}, {} {bound:.0e} (healthy ≈ 1e-3)",
                latest.layers[layers[0]].name,
                latest.layers[layers[0]].update_ratio.unwrap_or(f64::NAN),
                if high { "above" } else { "below" }
            ),
            evidence,
            remedies,
        });
    }
    out
}
