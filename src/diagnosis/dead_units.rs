//! Dead units: ReLU-like layers in which more than `dead_fraction` of the units output zero
//! for every sample of the batch, in each of the last `patience` full-statistics steps. A
//! dead ReLU has zero gradient for every input, so nothing revives it.

use super::{
    DiagnosisConfig, Evidence, Finding, FindingKind, History, RemedyFamily as F, names, remedy,
};

pub fn check(c: &DiagnosisConfig, h: &History) -> Vec<Finding> {
    let Some(latest) = h.latest() else {
        return Vec::new();
    };
    let layers = h.sustained(c.patience, |l| {
        l.dead_fraction.is_some_and(|d| d > c.dead_fraction)
    });
    if layers.is_empty() {
        return Vec::new();
    }
    let evidence = layers
        .iter()
        .map(|&i| {
            let l = &latest.layers[i];
            Evidence::new(
                "dead unit fraction",
                Some(&l.name),
                l.dead_fraction.unwrap_or(0.0),
            )
        })
        .collect();
    let worst = layers
        .iter()
        .map(|&i| &latest.layers[i])
        .max_by(|a, b| {
            a.dead_fraction
                .unwrap_or(0.0)
                .total_cmp(&b.dead_fraction.unwrap_or(0.0))
        })
        .unwrap_or(&latest.layers[0]);
    vec![Finding {
        kind: FindingKind::DeadUnits,
        step: latest.step,
        layers: names(latest, &layers),
        message: format!(
            "{:.0}% of the units of {} output zero for the whole batch (threshold {:.0}%, held {} statistics steps)",
            100.0 * worst.dead_fraction.unwrap_or(0.0),
            worst.name,
            100.0 * c.dead_fraction,
            c.patience
        ),
        evidence,
        remedies: vec![
            remedy(
                F::TrainingMethod,
                "lower the learning rate (a large step can push biases far negative) or clip gradients",
            ),
            remedy(
                F::NodeOperations,
                "use leaky ReLU, ELU or GELU, whose gradient is non-zero for negative inputs",
            ),
            remedy(
                F::Structure,
                "initialize biases at zero (or slightly positive) and weights with He variance",
            ),
        ],
    }]
}
