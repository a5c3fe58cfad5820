//! The per-layer table printed at the end of a run: gradient flow through depth at a glance.
//! The bar is log-scaled: a full bar is the largest layer gradient norm, each character one
//! decade less, so a vanishing gradient shows as bars shrinking towards the input.

use super::LayerStats;

const BAR: usize = 16;

fn bar(norm: f64, max: f64) -> String {
    if !(norm > 0.0) || !(max > 0.0) || !norm.is_finite() {
        return String::new();
    }
    // One character per half decade below the maximum.
    let decades = (max / norm).log10();
    let len = (BAR as f64 - 2.0 * decades).round().clamp(1.0, BAR as f64) as usize;
    "█".repeat(len)
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v))
}

fn sci(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.2e}"))
}

/// Renders the table for the layers of one step, first layer at the top.
pub fn render(layers: &[LayerStats]) -> String {
    use crate::plan::TensorKind as K;
    let max = layers
        .iter()
        .map(|l| l.grad_norm)
        .filter(|n| n.is_finite())
        .fold(0.0, f64::max);
    let mut out = String::new();
    out.push_str(&format!(
        "{:<10} {:>5} {:<10} {:>9} {:>9}  {:<width$} {:>9} {:>9} {:>7} {:>6} {:>5}\n",
        "layer",
        "units",
        "act",
        "‖∇W‖",
        "÷ last",
        "gradient flow (log)",
        "‖W‖",
        "‖ΔW‖/‖W‖",
        "satur.",
        "dead",
        "nan",
        width = BAR
    ));
    for l in layers {
        let wnorm = l.get(K::Weight).map(|s| s.norm);
        out.push_str(&format!(
            "{:<10} {:>5} {:<10} {:>9.2e} {:>9.2e}  {:<width$} {:>9} {:>9} {:>7} {:>6} {:>5}\n",
            l.name,
            l.units,
            l.activation.unwrap_or("-"),
            l.grad_norm,
            l.grad_ratio_to_last,
            bar(l.grad_norm, max),
            sci(wnorm),
            sci(l.update_ratio),
            pct(l.saturated_fraction),
            pct(l.dead_fraction),
            l.nonfinite,
            width = BAR
        ));
    }
    out
}
