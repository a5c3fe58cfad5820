//! The per-layer table printed at the end of a run: gradient flow through depth at a glance.
//! The bar is log-scaled: a full bar is the largest layer gradient norm, each character one
//! decade less, so a vanishing gradient shows as bars shrinking towards the input.

use super::LayerStats;
use crate::diagnosis::Finding;

const BAR: usize = 20;
/// The narrowest the layer-name column gets.
const NAME_WIDTH: usize = 10;

fn bar(norm: f64, max: f64) -> String {
    if norm.is_nan() || max.is_nan() || norm <= 0.0 || max <= 0.0 || !norm.is_finite() {
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

/// Scientific notation with a signed two-digit exponent (1.23e-04), so columns align.
pub fn sci(v: f64) -> String {
    let s = format!("{v:.2e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => match exp.parse::<i32>() {
            Ok(e) => format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()),
            Err(_) => s,
        },
        None => s,
    }
}

fn sci_opt(x: Option<f64>) -> String {
    x.map_or("-".into(), sci)
}

/// Renders the table for the layers of one step, first layer at the top.
pub fn render(layers: &[LayerStats]) -> String {
    render_with_findings(layers, &[])
}

/// The marks of the findings that name layer `name` (V vanishing, E exploding, D dead
/// units, S saturation, H/L learning rate too high/low, N non-finite).
fn marks(name: &str, findings: &[Finding]) -> String {
    let mut m: Vec<char> = findings
        .iter()
        .filter(|f| f.layers.iter().any(|l| l == name))
        .map(|f| f.kind.mark())
        .collect();
    m.dedup();
    m.into_iter().collect()
}

/// The table with a last column marking each layer's diagnosis findings.
pub fn render_with_findings(layers: &[LayerStats], findings: &[Finding]) -> String {
    use crate::plan::TensorKind as K;
    let max = layers
        .iter()
        .map(|l| l.grad_norm)
        .filter(|n| n.is_finite())
        .fold(0.0, f64::max);
    // The name column fits the longest name (resnet-20's "stage2.block1.shortcut_bn" is
    // 25 characters), so every row's columns stay under their headers.
    let name_width = layers
        .iter()
        .map(|l| l.name.chars().count())
        .fold(NAME_WIDTH, usize::max);
    let mut out = String::new();
    out.push_str(&format!(
        "{:<name_width$} {:>5} {:<10} {:>9} {:>9}  {:<width$} {:>9} {:>9} {:>7} {:>6} {:>5}{}\n",
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
        if findings.is_empty() {
            ""
        } else {
            "  findings"
        },
        width = BAR
    ));
    for l in layers {
        let wnorm = l.get(K::Weight).map(|s| s.norm);
        out.push_str(&format!(
            "{:<name_width$} {:>5} {:<10} {:>9} {:>9}  {:<width$} {:>9} {:>9} {:>7} {:>6} {:>5}{}\n",
            l.name,
            l.units,
            l.activation.unwrap_or("-"),
            sci(l.grad_norm),
            sci(l.grad_ratio_to_last),
            bar(l.grad_norm, max),
            sci_opt(wnorm),
            sci_opt(l.update_ratio),
            pct(l.saturated_fraction),
            pct(l.dead_fraction),
            l.nonfinite,
            if findings.is_empty() {
                String::new()
            } else {
                format!("  {}", marks(&l.name, findings))
            },
            width = BAR
        ));
    }
    if !findings.is_empty() {
        out.push_str("findings: V vanishing, E exploding, D dead units, S saturation, H/L learning rate too high/low, N non-finite\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, grad_norm: f64) -> LayerStats {
        LayerStats {
            name: name.into(),
            units: 16,
            activation: Some("relu"),
            tensors: Vec::new(),
            grad_norm,
            grad_ratio_to_last: 1.0,
            update_ratio: None,
            saturated_fraction: None,
            dead_fraction: None,
            nonfinite: 0,
        }
    }

    /// Short and long names alike, every row's units column ends where its header's does.
    #[test]
    fn long_layer_names_keep_the_columns_aligned() {
        let layers = [layer("fc1", 1.0), layer("stage2.block1.shortcut_bn", 0.1)];
        let table = render(&layers);
        let units_end = |line: &str| {
            let chars: Vec<char> = line.chars().collect();
            let name_end = chars.iter().position(|c| *c == ' ').unwrap();
            let units_start = name_end + chars[name_end..].iter().position(|c| *c != ' ').unwrap();
            units_start + chars[units_start..].iter().position(|c| *c == ' ').unwrap()
        };
        let ends: Vec<usize> = table.lines().map(units_end).collect();
        assert_eq!(ends.len(), 3, "{table}");
        assert!(ends.iter().all(|&e| e == ends[0]), "{ends:?}\n{table}");
    }
}
