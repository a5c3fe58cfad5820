//! Saturation: sigmoid/tanh layers with more than `saturated_fraction` of their outputs
//! pinned near the bounds, in each of the last `patience` full-statistics steps. There the
//! derivative (σ' = σ(1−σ), tanh' = 1−tanh²) is nearly zero and the gradient stops.

use super::{
    DiagnosisConfig, Evidence, Finding, FindingKind, History, RemedyFamily as F, names, remedy,
};

pub fn check(c: &DiagnosisConfig, h: &History) -> Vec<Finding> {
    let Some(latest) = h.latest() else {
        return Vec::new();
    };
    let layers = h.sustained(c.patience, |l| {
        l.saturated_fraction
            .is_some_and(|s| s > c.saturated_fraction)
    });
    if layers.is_empty() {
        return Vec::new();
    }
    let evidence = layers
        .iter()
        .map(|&i| {
            let l = &latest.layers[i];
            Evidence::new(
                "saturated output fraction",
                Some(&l.name),
                l.saturated_fraction.unwrap_or(0.0),
            )
        })
        .collect();
    let worst = layers
        .iter()
        .map(|&i| &latest.layers[i])
        .max_by(|a, b| {
            a.saturated_fraction
                .unwrap_or(0.0)
                .total_cmp(&b.saturated_fraction.unwrap_or(0.0))
        })
        .unwrap_or(&latest.layers[0]);
    vec![Finding {
        kind: FindingKind::Saturation,
        step: latest.step,
        layers: names(latest, &layers),
        message: format!(
            "{:.0}% of the outputs of {} are pinned near the activation's bounds (threshold {:.0}%)",
            100.0 * worst.saturated_fraction.unwrap_or(0.0),
            worst.name,
            100.0 * c.saturated_fraction
        ),
        evidence,
        remedies: vec![
            remedy(
                F::TrainingMethod,
                "lower the learning rate, and standardize the inputs",
            ),
            remedy(
                F::NodeOperations,
                "use ReLU-family activations, or normalize pre-activations (batch norm) to keep them in the linear range",
            ),
            remedy(
                F::Structure,
                "initialize with Xavier variance so pre-activations start near unit scale",
            ),
        ],
    }]
}
