//! Histograms of log2|∇W| over time, one small heat map per layer: x the training step, y
//! the log2 magnitude bin, colour the fraction of the layer's weight-gradient elements in
//! that bin (white: none). A vanishing gradient shows as the band sliding down, layer after
//! layer; underflow as mass piling into the lowest bin.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::canvas::{DrawResult, Picture, e, number};
use super::colour::viridis;
use super::font::FAMILY;
use super::heatmap::{colour_bar, step_edges};
use super::history::History;
use crate::stats::record::{HIST_BIN_WIDTH, HIST_LOG2_LO};

pub struct GradHistograms<'a> {
    pub history: &'a History,
}

const COLS: usize = 3;

impl GradHistograms<'_> {
    /// The bins any layer ever used, padded by one on each side: (first, last) inclusive.
    fn bin_range(&self) -> (usize, usize) {
        let mut lo = usize::MAX;
        let mut hi = 0;
        for p in &self.history.stats {
            for l in &p.layers {
                for (i, &c) in l.grad_hist.iter().flatten().enumerate() {
                    if c > 0 {
                        lo = lo.min(i);
                        hi = hi.max(i);
                    }
                }
            }
        }
        if lo == usize::MAX {
            (0, 1)
        } else {
            (lo.saturating_sub(1), hi + 1)
        }
    }

    fn max_fraction(&self) -> f64 {
        let mut m: f64 = 0.0;
        for p in &self.history.stats {
            for l in &p.layers {
                if let Some(h) = &l.grad_hist {
                    let total: u64 = h.iter().map(|&c| c as u64).sum();
                    for &c in h {
                        if total > 0 {
                            m = m.max(c as f64 / total as f64);
                        }
                    }
                }
            }
        }
        if m > 0.0 { m } else { 1.0 }
    }
}

fn edge(bin: usize) -> f64 {
    (HIST_LOG2_LO + HIST_BIN_WIDTH * bin as i32) as f64
}

impl Picture for GradHistograms<'_> {
    fn size(&self) -> (u32, u32) {
        let rows = self.history.layers.len().div_ceil(COLS).max(1) as u32;
        (1300, 60 + 260 * rows)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let h = self.history;
        let n = h.layers.len();
        let (b0, b1) = self.bin_range();
        let fmax = self.max_fraction();
        let steps: Vec<u64> = h.stats.iter().map(|p| p.step).collect();
        let edges = step_edges(&steps);
        let root = root
            .titled(
                "Histograms of log2 |∇W| over training, per layer (colour: fraction of the layer's elements)",
                (FAMILY, 20),
            )
            .map_err(e)?;
        let (grid, bar) = root.split_horizontally(root.dim_in_pixel().0 - 150);
        let panels = grid.split_evenly((n.div_ceil(COLS).max(1), COLS));
        for (l, panel) in panels.iter().enumerate().take(n) {
            let mut chart = ChartBuilder::on(panel)
                .caption(h.layers[l].label(), (FAMILY, 15))
                .margin(6)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(edges[0]..edges[edges.len() - 1], edge(b0)..edge(b1 + 1))
                .map_err(e)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("step")
                .x_label_formatter(&number)
                .y_desc("log2 |∇W|")
                .y_label_formatter(&number)
                .x_labels(5)
                .y_labels(6)
                .label_style((FAMILY, 12))
                .axis_desc_style((FAMILY, 13))
                .draw()
                .map_err(e)?;
            let mut cells = Vec::new();
            for (j, p) in h.stats.iter().enumerate() {
                let Some(hist) = p.layers.get(l).and_then(|x| x.grad_hist.as_ref()) else {
                    continue;
                };
                let total: u64 = hist.iter().map(|&c| c as u64).sum();
                if total == 0 {
                    continue;
                }
                for (b, &c) in hist.iter().enumerate().take(b1 + 1).skip(b0) {
                    if c == 0 {
                        continue;
                    }
                    let f = c as f64 / total as f64;
                    cells.push(Rectangle::new(
                        [(edges[j], edge(b)), (edges[j + 1], edge(b + 1))],
                        viridis(f / fmax).filled(),
                    ));
                }
            }
            chart.draw_series(cells).map_err(e)?;
        }
        colour_bar(&bar, 0.0, fmax, "fraction of elements in the bin")
    }
}
