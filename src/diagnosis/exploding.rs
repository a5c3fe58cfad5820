//! Exploding gradients: across depth, early layers whose weight-gradient norm, or whose
//! output-gradient norm ‖∂L/∂h‖, is many times the last layer's (`exploding_ratio`), or a
//! weight gradient far above every neighbour's (`neighbour_gap`); over
//! time, the total gradient norm rising at each of the last `patience` full-statistics
//! steps and grown by `exploding_growth` over the window. Large weights make each layer's
//! Jacobian expand, and the product grows geometrically with depth.

use crate::plan::TensorKind;

use super::{
    DiagnosisConfig, Evidence, Finding, FindingKind, History, RemedyFamily as F, names, remedy,
};

pub fn check(c: &DiagnosisConfig, h: &History) -> Vec<Finding> {
    let Some(latest) = h.latest() else {
        return Vec::new();
    };
    let nl = latest.layers.len();
    let mut evidence = Vec::new();
    let mut layers: Vec<usize> = Vec::new();
    if nl >= 2 {
        layers = h.sustained(c.patience, |l| {
            l.grad_ratio_to_last.is_finite() && l.grad_ratio_to_last > c.exploding_ratio
        });
        let gap = (0..nl).filter(|&i| {
            h.last(c.patience).is_some_and(|mut it| {
                it.all(|o| {
                    let g = |j: usize| o.layers[j].grad_norm;
                    let nb: Vec<f64> = [i.checked_sub(1), (i + 1 < nl).then_some(i + 1)]
                        .into_iter()
                        .flatten()
                        .map(g)
                        .collect();
                    g(i).is_finite() && nb.iter().all(|&n| n * c.neighbour_gap < g(i))
                })
            })
        });
        layers.extend(gap);
        // The gradient w.r.t. each layer's output (∂L/∂h): it is what backpropagation
        // multiplies by every Jacobian, so it grows towards the input when the weights are
        // large, even where the weight gradients ∂L/∂h_l · h_{l−1}ᵀ stay level (the
        // forward activations shrink by the same factor going back).
        let og = |o: &super::Observation, j: usize| {
            o.layers[j]
                .get(TensorKind::OutputGrad)
                .map_or(f64::NAN, |s| s.norm)
        };
        let by_output_grad: Vec<usize> = (0..nl - 1)
            .filter(|&i| {
                h.last(c.patience).is_some_and(|mut it| {
                    it.all(|o| {
                        let r = og(o, i) / og(o, nl - 1);
                        r.is_finite() && r > c.exploding_ratio
                    })
                })
            })
            .collect();
        for &i in &by_output_grad {
            evidence.push(Evidence::new(
                "output-gradient norm ratio to last layer",
                Some(&latest.layers[i].name),
                og(latest, i) / og(latest, nl - 1),
            ));
        }
        layers.extend(by_output_grad);
        layers.sort_unstable();
        layers.dedup();
        for &i in &layers {
            let l = &latest.layers[i];
            evidence.push(Evidence::new("gradient norm", Some(&l.name), l.grad_norm));
            evidence.push(Evidence::new(
                "ratio to last layer",
                Some(&l.name),
                l.grad_ratio_to_last,
            ));
        }
    }
    // Over time: a layer's gradient norm rising at every step of the patience and grown by
    // the factor over the window.
    let mut over_time = Vec::new();
    for i in 0..nl {
        let norms: Vec<f64> = h
            .steps
            .iter()
            .map(|o| o.layers.get(i).map_or(f64::NAN, |l| l.grad_norm))
            .collect();
        let rising = norms.len() > c.patience
            && norms[norms.len() - c.patience - 1..]
                .windows(2)
                .all(|w| w[1] > w[0]);
        let min = norms
            .iter()
            .copied()
            .filter(|n| n.is_finite() && *n > 0.0)
            .fold(f64::INFINITY, f64::min);
        let growth = norms.last().copied().unwrap_or(f64::NAN) / min;
        if rising && growth.is_finite() && growth > c.exploding_growth {
            over_time.push(i);
            evidence.push(Evidence::new(
                "gradient norm growth over the window",
                Some(&latest.layers[i].name),
                growth,
            ));
        }
    }
    if !over_time.is_empty() {
        evidence.push(Evidence::new("total gradient norm", None, latest.grad_norm));
    }
    let by_depth = !layers.is_empty();
    layers.extend(&over_time);
    layers.sort_unstable();
    layers.dedup();
    let over_time = !over_time.is_empty();
    if layers.is_empty() {
        return Vec::new();
    }
    let message = if !by_depth && over_time {
        format!(
            "the gradient norms of {} grew more than {:.0e}× over the last {} statistics steps, rising at each of the last {}",
            names(latest, &layers).join(", "),
            c.exploding_growth,
            h.steps.len(),
            c.patience
        )
    } else {
        // The largest ratio to the last layer among the evidence (weight or output gradient).
        let worst = evidence
            .iter()
            .filter(|e| e.what.contains("ratio"))
            .max_by(|a, b| a.value.total_cmp(&b.value));
        match worst {
            Some(e) => format!(
                "gradients grow towards the input: the {} of {} is {:.1e} (threshold {:.0e}, held {} statistics steps)",
                e.what,
                e.layer.as_deref().unwrap_or("?"),
                e.value,
                c.exploding_ratio,
                c.patience
            ),
            None => format!(
                "gradients grow towards the input in {}",
                names(latest, &layers).join(", ")
            ),
        }
    };
    vec![Finding {
        kind: FindingKind::ExplodingGradients,
        step: latest.step,
        layers: names(latest, &layers),
        message,
        evidence,
        remedies: vec![
            remedy(
                F::TrainingMethod,
                "clip gradients (--clip-norm 1.0), lower the learning rate, or warm it up",
            ),
            remedy(
                F::NodeOperations,
                "add normalization (batch or layer norm) so each layer's output scale stays near 1",
            ),
            remedy(
                F::Structure,
                "initialize with Xavier/He variance (gain matched to the activation) instead of a large fixed one",
            ),
        ],
    }]
}
