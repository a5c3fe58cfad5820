//! Exploding gradients: across depth, early layers whose weight-gradient norm, or whose
//! output-gradient norm ‖∂L/∂h‖, is many times the last layer's (`exploding_ratio`), or a
//! weight gradient far above both neighbours' (`neighbour_gap`); over time, a layer's
//! gradient norm rising at each of the last `patience` full-statistics steps and grown by
//! `exploding_growth` over the window, unless it is still below `vanishing_ratio` of the
//! last layer's. Large weights make each layer's Jacobian expand, and the product grows
//! geometrically with depth.

use crate::plan::TensorKind;

/// The evidence of a spike: a layer's weight-gradient norm over its larger neighbour's.
const SPIKE: &str = "weight-gradient norm over its larger neighbour's";

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
        // A spike: a layer far above both of its neighbours.
        let gap = h.sustained_gap(c.patience, |g, nb| {
            g.is_finite() && nb.iter().all(|&n| n * c.neighbour_gap < g)
        });
        for &i in &gap {
            let [before, after] = latest
                .neighbour_norms(i)
                .expect("a spike has two neighbours");
            evidence.push(Evidence::new(
                SPIKE,
                Some(&latest.layers[i].name),
                latest.layers[i].grad_norm / before.max(after),
            ));
        }
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
        // Grown from nearly nothing to still far below the last layer (a BatchNorm's γ
        // before a depthwise convolution and another BatchNorm, whose gradient starts at
        // zero) is not an explosion: the layer is still vanishing by the ratio rule.
        let ratio = latest.layers[i].grad_ratio_to_last;
        let vanishing = ratio.is_finite() && ratio < c.vanishing_ratio;
        if rising && growth.is_finite() && growth > c.exploding_growth && !vanishing {
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
        // The largest ratio to the last layer among the evidence (weight or output
        // gradient) past its threshold, else the largest spike over its neighbours.
        let worst = |what: &dyn Fn(&str) -> bool, threshold: f64| {
            evidence
                .iter()
                .filter(|e| what(&e.what) && e.value > threshold)
                .max_by(|a, b| a.value.total_cmp(&b.value))
        };
        let by_ratio = worst(&|w| w.contains("ratio to last layer"), c.exploding_ratio);
        let spike = worst(&|w| w == SPIKE, c.neighbour_gap);
        let name = |e: &Evidence| e.layer.clone().unwrap_or_else(|| "?".into());
        match (by_ratio, spike) {
            (Some(e), _) => format!(
                "gradients grow towards the input: the {} of {} is {:.1e} (threshold {:.0e}, held {} statistics steps)",
                e.what,
                name(e),
                e.value,
                c.exploding_ratio,
                c.patience
            ),
            (None, Some(e)) => format!(
                "the weight gradient of {} is {:.1e}× its neighbours' (threshold {:.0e}×, held {} statistics steps)",
                name(e),
                e.value,
                c.neighbour_gap,
                c.patience
            ),
            (None, None) => format!(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::test_history::{assert_one, history};

    #[test]
    fn a_first_layer_above_its_only_neighbour_is_not_a_spike() {
        // A convolution (0.1) before a BatchNorm whose γ gets almost no gradient (1e-5):
        // the dip is the BatchNorm's, for the vanishing rule.
        let h = history(&[0.1, 1e-5, 0.08, 0.2]);
        assert!(check(&DiagnosisConfig::default(), &h).is_empty());
    }

    #[test]
    fn a_spike_names_its_gap_over_the_neighbours() {
        let h = history(&[0.1, 500.0, 0.2, 1.0]);
        let found = check(&DiagnosisConfig::default(), &h);
        assert_one(
            &found,
            Some(&["layer1"]),
            "layer1 is 2.5e3× its neighbours'",
        );
    }

    /// Five steps in which layer 0's gradient norm is multiplied by `growth` each step.
    fn rising(start: f64, growth: f64) -> History {
        let mut h = history(&[start, 1.0]);
        let template = h.steps[0].clone();
        h.steps = (0..5)
            .map(|k| {
                let mut o = template.clone();
                o.step = k + 1;
                o.layers[0].grad_norm = start * growth.powi(k as i32);
                o.layers[0].grad_ratio_to_last = o.layers[0].grad_norm;
                o
            })
            .collect();
        h
    }

    #[test]
    fn growth_over_time_counts_unless_the_layer_is_still_vanishing() {
        let c = DiagnosisConfig::default();
        // 1e-2 → 2.56 of the last layer's: exploding.
        assert_one(&check(&c, &rising(1e-2, 4.0)), None, "grew more than");
        // 1e-9 → 2.6e-7 of the last layer's: grown 256×, still vanishing.
        assert!(check(&c, &rising(1e-9, 4.0)).is_empty());
    }

    #[test]
    fn growth_towards_the_input_names_the_ratio_past_its_threshold() {
        let h = history(&[5e3, 50.0, 1.0]);
        let found = check(&DiagnosisConfig::default(), &h);
        assert_one(&found, None, "ratio to last layer of layer0 is 5.0e3");
    }
}
