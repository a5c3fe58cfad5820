//! Line charts over training steps with a log y axis: each layer's gradient norm (with the
//! total over all parameters), and each layer's update-to-weight ratio against the ~1e-3
//! rule of thumb.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::canvas::{DrawResult, Picture, decade_ticks, e, number};
use super::colour::layer as layer_colour;
use super::font::FAMILY;
use super::history::History;

/// One named line.
pub struct Series {
    pub name: String,
    pub colour: RGBColor,
    pub width: u32,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// A log-y line chart.
pub struct LogLines {
    pub title: String,
    /// What the x axis counts ("training step", "time step t").
    pub x_desc: &'static str,
    pub y_desc: String,
    pub series: Vec<Series>,
}

impl LogLines {
    /// The y range in whole decades around every positive finite value.
    fn y_range(&self) -> (f64, f64) {
        let vals = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite() && *v > 0.0);
        let lo = vals.clone().fold(f64::INFINITY, f64::min);
        let hi = vals.fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return (1e-3, 1.0);
        }
        let (lo, hi) = (
            10f64.powf(lo.log10().floor()),
            10f64.powf(hi.log10().ceil()),
        );
        (lo, if hi > lo { hi } else { lo * 10.0 })
    }

    fn x_range(&self) -> (f64, f64) {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let lo = xs.clone().fold(f64::INFINITY, f64::min);
        let hi = xs.fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi > lo {
            (lo, hi)
        } else {
            (lo - 0.5, lo + 0.5)
        }
    }
}

impl Picture for LogLines {
    fn size(&self) -> (u32, u32) {
        (1100, 600)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let (x0, x1) = self.x_range();
        let (y0, y1) = self.y_range();
        let (plot, legend) = root.split_horizontally(root.dim_in_pixel().0 - 210);
        let mut chart = ChartBuilder::on(&plot)
            .caption(&self.title, (FAMILY, 20))
            .margin(10)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(
                x0..x1,
                (y0..y1).log_scale().with_key_points(decade_ticks(y0, y1)),
            )
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc)
            .x_label_formatter(&number)
            .y_desc(self.y_desc.as_str())
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        for s in &self.series {
            let style = s.colour.stroke_width(s.width);
            // Non-positive and non-finite values cannot sit on a log axis: they break the line.
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for &(x, y) in &s.points {
                if y.is_finite() && y > 0.0 {
                    if let Some(r) = runs.last_mut() {
                        r.push((x, y));
                    }
                } else if !runs.last().is_some_and(|r| r.is_empty()) {
                    runs.push(Vec::new());
                }
            }
            for run in runs.into_iter().filter(|r| !r.is_empty()) {
                if s.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(run, 8, 5, style))
                        .map_err(e)?;
                } else if run.len() == 1 {
                    chart
                        .draw_series(run.into_iter().map(|p| Circle::new(p, 3, style.filled())))
                        .map_err(e)?;
                } else {
                    chart.draw_series(LineSeries::new(run, style)).map_err(e)?;
                }
            }
        }
        // The legend is drawn beside the plot, where it never hides a line.
        let row = 22i32;
        legend
            .draw(&Text::new("legend", (10, 40), (FAMILY, 15).into_font()))
            .map_err(e)?;
        for (i, s) in self.series.iter().enumerate() {
            let y = 70 + row * i as i32;
            let style = s.colour.stroke_width(s.width.max(2));
            legend
                .draw(&PathElement::new(vec![(10, y), (40, y)], style))
                .map_err(e)?;
            legend
                .draw(&Text::new(
                    s.name.clone(),
                    (48, y - 8),
                    (FAMILY, 14).into_font(),
                ))
                .map_err(e)?;
        }
        Ok(())
    }
}

/// ‖∇W‖ of every layer over the steps with full statistics, and the total gradient norm
/// over every parameter at every step.
pub fn grad_norms(h: &History) -> LogLines {
    let n = h.layers.len();
    let mut series: Vec<Series> = h
        .layers
        .iter()
        .enumerate()
        .map(|(l, info)| Series {
            name: info.name.clone(),
            colour: layer_colour(l, n),
            width: 2,
            dashed: false,
            points: h
                .stats
                .iter()
                .map(|p| {
                    let g = p.layers.get(l).map_or(f64::NAN, |x| x.grad_norm);
                    (p.step as f64, g)
                })
                .collect(),
        })
        .collect();
    series.push(Series {
        name: "total (all params)".into(),
        colour: RGBColor(0, 0, 0),
        width: 1,
        dashed: true,
        points: h
            .steps
            .iter()
            .map(|s| (s.step as f64, s.grad_norm))
            .collect(),
    });
    LogLines {
        title: "Gradient norm per layer ‖∇W‖ (log scale)".into(),
        x_desc: "training step",
        y_desc: "‖∇W‖ (L2 norm of the weight gradient)".into(),
        series,
    }
}

/// ‖ΔW‖/‖W‖ of every layer, with the 1e-3 reference line.
pub fn update_ratios(h: &History) -> LogLines {
    let n = h.layers.len();
    let mut series: Vec<Series> = h
        .layers
        .iter()
        .enumerate()
        .map(|(l, info)| Series {
            name: info.name.clone(),
            colour: layer_colour(l, n),
            width: 2,
            dashed: false,
            points: h
                .stats
                .iter()
                .filter_map(|p| {
                    let r = p.layers.get(l)?.update_ratio?;
                    Some((p.step as f64, r))
                })
                .collect(),
        })
        .collect();
    let (first, last) = (
        h.steps.first().map_or(0.0, |s| s.step as f64),
        h.steps.last().map_or(1.0, |s| s.step as f64),
    );
    series.push(Series {
        name: "1e-3 (rule of thumb)".into(),
        colour: RGBColor(200, 30, 30),
        width: 1,
        dashed: true,
        points: vec![(first, 1e-3), (last, 1e-3)],
    });
    LogLines {
        title: "Update-to-weight ratio ‖ΔW‖/‖W‖ per layer (log scale)".into(),
        x_desc: "training step",
        y_desc: "‖ΔW‖ / ‖W‖ per step".into(),
        series,
    }
}
