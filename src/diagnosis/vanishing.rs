//! Vanishing gradients: early layers whose weight-gradient norm is a tiny fraction of the
//! last layer's (`vanishing_ratio`), or a layer orders of magnitude (`neighbour_gap`) below
//! its neighbours, in each of the last `patience` full-statistics steps. Backpropagation
//! multiplies the gradient by each layer's Jacobian; with saturating activations (σ' ≤ 1/4)
//! or small weights the product shrinks geometrically with depth.

use super::{
    DiagnosisConfig, Evidence, Finding, FindingKind, History, RemedyFamily as F, names, remedy,
};

pub fn check(c: &DiagnosisConfig, h: &History) -> Vec<Finding> {
    let Some(latest) = h.latest() else {
        return Vec::new();
    };
    let nl = latest.layers.len();
    if nl < 2 {
        return Vec::new();
    }
    let by_depth = h.sustained(c.patience, |l| {
        l.grad_ratio_to_last.is_finite() && l.grad_ratio_to_last < c.vanishing_ratio
    });
    // A layer far below every neighbour it has.
    let gap: Vec<usize> = (0..nl)
        .filter(|&i| {
            h.last(c.patience).is_some_and(|mut it| {
                it.all(|o| {
                    let g = |j: usize| o.layers[j].grad_norm;
                    let nb: Vec<f64> = [i.checked_sub(1), (i + 1 < nl).then_some(i + 1)]
                        .into_iter()
                        .flatten()
                        .map(g)
                        .collect();
                    g(i).is_finite()
                        && nb
                            .iter()
                            .all(|&n| n.is_finite() && g(i) * c.neighbour_gap < n)
                })
            })
        })
        .collect();
    let mut layers: Vec<usize> = by_depth.iter().chain(&gap).copied().collect();
    layers.sort_unstable();
    layers.dedup();
    if layers.is_empty() {
        return Vec::new();
    }
    let first = &latest.layers[0];
    let mut evidence = vec![Evidence::new(
        "first-to-last gradient norm ratio",
        None,
        first.grad_ratio_to_last,
    )];
    for &i in &layers {
        let l = &latest.layers[i];
        evidence.push(Evidence::new("gradient norm", Some(&l.name), l.grad_norm));
        evidence.push(Evidence::new(
            "ratio to last layer",
            Some(&l.name),
            l.grad_ratio_to_last,
        ));
    }
    let worst = layers
        .iter()
        .map(|&i| &latest.layers[i])
        .min_by(|a, b| a.grad_ratio_to_last.total_cmp(&b.grad_ratio_to_last))
        .unwrap_or(first);
    vec![Finding {
        kind: FindingKind::VanishingGradients,
        step: latest.step,
        layers: names(latest, &layers),
        message: format!(
            "the weight gradient of {} is {:.1e} of the last layer's (threshold {:.0e}, held {} statistics steps)",
            worst.name, worst.grad_ratio_to_last, c.vanishing_ratio, c.patience
        ),
        evidence,
        remedies: vec![
            remedy(
                F::TrainingMethod,
                "use an adaptive optimizer (Adam/RMSprop) that rescales each layer's step, or a larger learning rate for early layers",
            ),
            remedy(
                F::NodeOperations,
                "replace sigmoid/tanh by ReLU-family activations (ReLU, leaky ReLU, GELU), or add batch normalization",
            ),
            remedy(
                F::Structure,
                "initialize with Xavier/He variance instead of a small fixed one, use fewer layers, or add shortcut (residual) connections",
            ),
        ],
    }]
}
