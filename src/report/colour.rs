//! Colours: the viridis map (perceptually uniform, readable in grey and by most colour-blind
//! readers) for heat maps, and a depth ramp for per-layer lines so that input-side layers
//! are dark and output-side layers light, matching the heat map's reading order.

use plotters::style::RGBColor;

/// Nine samples of matplotlib's viridis, at t = 0, 1/8, …, 1.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

/// viridis(t) for t in [0, 1] (clamped), linearly interpolated between the samples.
pub fn viridis(t: f64) -> RGBColor {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The line colour of layer `i` of `n`: viridis from 0 to 0.85 (the last yellow is too
/// pale on white).
pub fn layer(i: usize, n: usize) -> RGBColor {
    let t = if n > 1 {
        i as f64 / (n - 1) as f64
    } else {
        0.0
    };
    viridis(0.85 * t)
}

/// Cells without a value (zero or non-finite norms).
pub const MISSING: RGBColor = RGBColor(200, 200, 200);
