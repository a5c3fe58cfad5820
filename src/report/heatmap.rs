//! Heat maps: the gradient flow (log10 ‖∇W‖, layers × steps, input layer at the top), and
//! the shared pieces of every heat map (cell edges along the steps, the colour bar).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::canvas::{DrawResult, Picture, e, number};
use super::colour::{MISSING, viridis};
use super::font::FAMILY;
use super::history::History;

/// Edges of the cells centred on `steps`: midpoints between neighbours, and half a gap
/// (at least half a step) beyond the first and last.
pub fn step_edges(steps: &[u64]) -> Vec<f64> {
    let s: Vec<f64> = steps.iter().map(|&x| x as f64).collect();
    let gap = |a: f64, b: f64| ((b - a) / 2.0).max(0.5);
    let mut edges = Vec::with_capacity(s.len() + 1);
    match s.len() {
        0 => return vec![0.0, 1.0],
        1 => return vec![s[0] - 0.5, s[0] + 0.5],
        n => {
            edges.push(s[0] - gap(s[0], s[1]));
            for w in s.windows(2) {
                edges.push((w[0] + w[1]) / 2.0);
            }
            edges.push(s[n - 1] + gap(s[n - 2], s[n - 1]));
        }
    }
    edges
}

/// A vertical colour bar for values in `lo..hi`, labelled `desc`.
pub fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lo: f64,
    hi: f64,
    desc: &str,
) -> DrawResult {
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin_top(40)
        .margin_bottom(50)
        .margin_right(5)
        .y_label_area_size(95)
        .build_cartesian_2d(0f64..1f64, lo..hi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(desc)
        .y_labels(8)
        .y_label_formatter(&number)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(e)?;
    let slices = 100;
    chart
        .draw_series((0..slices).map(|i| {
            let a = lo + (hi - lo) * i as f64 / slices as f64;
            let b = lo + (hi - lo) * (i + 1) as f64 / slices as f64;
            let t = (i as f64 + 0.5) / slices as f64;
            Rectangle::new([(0.0, a), (1.0, b)], viridis(t).filled())
        }))
        .map_err(e)?;
    Ok(())
}

/// log10 ‖∇W‖ of every layer at every step with full statistics.
pub struct GradientFlow<'a> {
    pub history: &'a History,
}

impl GradientFlow<'_> {
    /// (rows by layer, each a value per stats step; colour range).
    fn cells(&self) -> (Vec<Vec<Option<f64>>>, f64, f64) {
        let h = self.history;
        let rows: Vec<Vec<Option<f64>>> = (0..h.layers.len())
            .map(|l| {
                h.stats
                    .iter()
                    .map(|p| {
                        let n = p.layers.get(l).map_or(f64::NAN, |x| x.grad_norm);
                        (n.is_finite() && n > 0.0).then(|| n.log10())
                    })
                    .collect()
            })
            .collect();
        let vals = rows.iter().flatten().flatten();
        let lo = vals.clone().fold(f64::INFINITY, |a, &b| a.min(b));
        let hi = vals.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        if lo.is_finite() {
            (rows, lo.floor(), hi.ceil().max(lo.floor() + 1.0))
        } else {
            (rows, -1.0, 0.0)
        }
    }
}

impl Picture for GradientFlow<'_> {
    fn size(&self) -> (u32, u32) {
        let rows = self.history.layers.len() as u32;
        (1100, (160 + 36 * rows).clamp(320, 1400))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let h = self.history;
        let n = h.layers.len();
        let (rows, lo, hi) = self.cells();
        let steps: Vec<u64> = h.stats.iter().map(|p| p.step).collect();
        let edges = step_edges(&steps);
        let (main, bar) = root.split_horizontally(root.dim_in_pixel().0 - 150);
        // Layers named by a diagnosis finding are marked, so the page's findings point here.
        let labels: Vec<String> = h
            .layers
            .iter()
            .map(|l| {
                let flagged = h.findings.iter().any(|f| f.layers.contains(&l.name));
                if flagged {
                    format!("⚠ {}", l.label())
                } else {
                    l.label()
                }
            })
            .collect();
        let x_range = edges[0]..edges[edges.len() - 1];
        let mut chart = ChartBuilder::on(&main)
            .caption(
                "Gradient flow: log10 ‖∇W‖ per layer and step (input layer at the top; ⚠: a finding)",
                (FAMILY, 20),
            )
            .margin(10)
            .x_label_area_size(50)
            .y_label_area_size(190)
            .build_cartesian_2d(x_range, -0.5f64..n.max(1) as f64 - 0.5)
            .map_err(e)?;
        // Row r (from the bottom) is layer n−1−r, so the input layer is drawn on top. Rows
        // are centred on integers, where the axis puts its ticks when asked for n labels.
        let label_of = |y: &f64| {
            let r = y.round();
            if (y - r).abs() > 1e-6 || r < 0.0 {
                return String::new();
            }
            labels
                .get(n.wrapping_sub(1).wrapping_sub(r as usize))
                .cloned()
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("training step")
            .x_label_formatter(&number)
            .y_desc("layer (units, activation)")
            .y_labels(n.max(1))
            .y_label_formatter(&label_of)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .draw()
            .map_err(e)?;
        let mut cells = Vec::new();
        for (l, row) in rows.iter().enumerate() {
            let r = (n - 1 - l) as f64 - 0.5;
            for (j, v) in row.iter().enumerate() {
                let colour = match v {
                    Some(v) => viridis((v - lo) / (hi - lo)),
                    None => MISSING,
                };
                cells.push(Rectangle::new(
                    [(edges[j], r), (edges[j + 1], r + 1.0)],
                    colour.filled(),
                ));
            }
        }
        chart.draw_series(cells).map_err(e)?;
        colour_bar(&bar, lo, hi, "log10 ‖∇W‖ (grey: zero or non-finite)")
    }
}
