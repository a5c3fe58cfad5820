//! Vanishing gradients: early layers whose weight-gradient norm is a tiny fraction of the
//! last layer's (`vanishing_ratio`), or a layer orders of magnitude (`neighbour_gap`) below
//! both its neighbours, in each of the last `patience` full-statistics steps. Backpropagation
//! multiplies the gradient by each layer's Jacobian; with saturating activations (σ' ≤ 1/4)
//! or small weights the product shrinks geometrically with depth.

use super::{
    DiagnosisConfig, Evidence, Finding, FindingKind, History, RemedyFamily as F, names, remedy,
};

/// The evidence of a dip: a layer's weight-gradient norm over its smaller neighbour's.
const DIP: &str = "weight-gradient norm over its smaller neighbour's";

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
    // A dip: a layer far below both of its neighbours.
    let gap = h.sustained_gap(c.patience, |g, nb| {
        g.is_finite() && nb.iter().all(|&n| n.is_finite() && g * c.neighbour_gap < n)
    });
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
    for &i in &gap {
        let [before, after] = latest.neighbour_norms(i).expect("a dip has two neighbours");
        evidence.push(Evidence::new(
            DIP,
            Some(&latest.layers[i].name),
            latest.layers[i].grad_norm / before.min(after),
        ));
    }
    // The layer furthest below the last one past the threshold, else the deepest dip.
    let by_ratio = by_depth
        .iter()
        .map(|&i| &latest.layers[i])
        .min_by(|a, b| a.grad_ratio_to_last.total_cmp(&b.grad_ratio_to_last));
    let dip = evidence
        .iter()
        .filter(|e| e.what == DIP)
        .min_by(|a, b| a.value.total_cmp(&b.value));
    let message = match (by_ratio, dip) {
        (Some(worst), _) => format!(
            "the weight gradient of {} is {:.1e} of the last layer's (threshold {:.0e}, held {} statistics steps)",
            worst.name, worst.grad_ratio_to_last, c.vanishing_ratio, c.patience
        ),
        (None, Some(e)) => format!(
            "the weight gradient of {} is {:.1e} of its neighbours' (threshold {:.0e}, held {} statistics steps)",
            e.layer.as_deref().unwrap_or("?"),
            e.value,
            1.0 / c.neighbour_gap,
            c.patience
        ),
        (None, None) => format!(
            "vanishing gradients in {}",
            names(latest, &layers).join(", ")
        ),
    };
    vec![Finding {
        kind: FindingKind::VanishingGradients,
        step: latest.step,
        layers: names(latest, &layers),
        message,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::test_history::{assert_one, history};

    #[test]
    fn a_dip_between_two_neighbours_names_its_gap() {
        // Layer 1 is 1e-4 of both neighbours but 1e-2 of the last layer: past the gap, not
        // the ratio, and the message says which.
        let h = history(&[1.0, 1e-4, 1.0, 0.01]);
        let found = check(&DiagnosisConfig::default(), &h);
        assert_one(
            &found,
            Some(&["layer1"]),
            "layer1 is 1.0e-4 of its neighbours'",
        );
    }

    #[test]
    fn a_layer_below_its_only_neighbour_is_not_a_dip() {
        // The last layer far below the one before it: a spike there or a dip here.
        let h = history(&[0.5, 1.0, 1e-5]);
        let found = check(&DiagnosisConfig::default(), &h);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_ratio_past_its_threshold_is_what_the_message_names() {
        let h = history(&[1e-5, 1e-2, 1.0]);
        let found = check(&DiagnosisConfig::default(), &h);
        assert_one(&found, None, "layer0 is 1.0e-5 of the last layer's");
    }
}
