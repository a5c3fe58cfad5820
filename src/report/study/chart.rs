//! The study report's line chart: one line per run (or per group of runs) over any x axis
//! (layer index, depth, training step), with a log or linear y axis, and a legend beside
//! the plot. Lines get a qualitative palette, since runs are categories, not an order.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::canvas::{DrawResult, Picture, decade_ticks, e, number};
use crate::report::font::FAMILY;
use crate::report::lines::Series;

/// Tableau's ten colours, then the same darker: distinct on white and to most
/// colour-blind readers for the first several.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The colour of series `i`.
pub fn colour(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    if i < PALETTE.len() {
        RGBColor(r, g, b)
    } else {
        RGBColor(r / 2, g / 2, b / 2)
    }
}

/// A line chart of several series.
pub struct Chart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub log_y: bool,
    /// Only whole numbers on the x axis (layer index, depth).
    pub integer_x: bool,
    /// Mark every point (few points per line).
    pub markers: bool,
    pub series: Vec<Series>,
}

impl Chart {
    fn points(&self) -> impl Iterator<Item = &(f64, f64)> {
        self.series.iter().flat_map(|s| s.points.iter())
    }

    fn x_range(&self) -> (f64, f64) {
        let xs: Vec<f64> = self
            .points()
            .map(|p| p.0)
            .filter(|x| x.is_finite())
            .collect();
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        match (lo.is_finite(), hi > lo) {
            (false, _) => (0.0, 1.0),
            (true, true) if self.integer_x => (lo - 0.3, hi + 0.3),
            (true, true) => (lo, hi),
            (true, false) => (lo - 0.5, lo + 0.5),
        }
    }

    /// Whole decades around every positive finite value (log), or 0..max (linear).
    fn y_range(&self) -> (f64, f64) {
        let ok = |v: &f64| v.is_finite() && (!self.log_y || *v > 0.0);
        let ys: Vec<f64> = self.points().map(|p| p.1).filter(ok).collect();
        let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return if self.log_y { (1e-3, 1.0) } else { (0.0, 1.0) };
        }
        if self.log_y {
            let (lo, hi) = (
                10f64.powf(lo.log10().floor()),
                10f64.powf(hi.log10().ceil()),
            );
            (lo, if hi > lo { hi } else { lo * 10.0 })
        } else {
            let lo = lo.min(0.0);
            (lo, if hi > lo { hi * 1.05 } else { lo + 1.0 })
        }
    }

    fn draw_lines<DB: DrawingBackend, C>(&self, chart: &mut ChartContext<DB, C>) -> DrawResult
    where
        C: CoordTranslate<From = (f64, f64)>,
    {
        for s in &self.series {
            let style = s.colour.stroke_width(s.width);
            // Values a log axis cannot hold (and non-finite ones) break the line.
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for &(x, y) in &s.points {
                if y.is_finite() && (!self.log_y || y > 0.0) {
                    if let Some(r) = runs.last_mut() {
                        r.push((x, y));
                    }
                } else if !runs.last().is_some_and(|r| r.is_empty()) {
                    runs.push(Vec::new());
                }
            }
            for run in runs.into_iter().filter(|r| !r.is_empty()) {
                if self.markers || run.len() == 1 {
                    chart
                        .draw_series(run.iter().map(|p| Circle::new(*p, 3, style.filled())))
                        .map_err(e)?;
                }
                if s.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(run, 8, 5, style))
                        .map_err(e)?;
                } else {
                    chart.draw_series(LineSeries::new(run, style)).map_err(e)?;
                }
            }
        }
        Ok(())
    }
}

impl Picture for Chart {
    fn size(&self) -> (u32, u32) {
        (1000, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let (x0, x1) = self.x_range();
        let (y0, y1) = self.y_range();
        let (plot, legend) = root.split_horizontally(root.dim_in_pixel().0 - 260);
        let x_fmt = |x: &f64| {
            if self.integer_x {
                if (x - x.round()).abs() < 1e-9 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            } else {
                number(x)
            }
        };
        let mut builder = ChartBuilder::on(&plot);
        builder
            .caption(&self.title, (FAMILY, 20))
            .margin(10)
            .x_label_area_size(50)
            .y_label_area_size(80);
        if self.log_y {
            let mut chart = builder
                .build_cartesian_2d(
                    x0..x1,
                    (y0..y1).log_scale().with_key_points(decade_ticks(y0, y1)),
                )
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_desc(self.x_desc.as_str())
                .x_label_formatter(&x_fmt)
                .y_desc(self.y_desc.as_str())
                .y_label_formatter(&|v| format!("{v:.0e}"))
                .label_style((FAMILY, 14))
                .axis_desc_style((FAMILY, 15))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(e)?;
            self.draw_lines(&mut chart)?;
        } else {
            let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(e)?;
            chart
                .configure_mesh()
                .x_desc(self.x_desc.as_str())
                .x_label_formatter(&x_fmt)
                .y_desc(self.y_desc.as_str())
                .y_label_formatter(&number)
                .label_style((FAMILY, 14))
                .axis_desc_style((FAMILY, 15))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(e)?;
            self.draw_lines(&mut chart)?;
        }
        // The legend sits beside the plot, where it never hides a line.
        let row = 20i32;
        legend
            .draw(&Text::new("legend", (10, 40), (FAMILY, 15).into_font()))
            .map_err(e)?;
        for (i, s) in self.series.iter().enumerate() {
            let y = 68 + row * i as i32;
            let style = s.colour.stroke_width(s.width.max(2));
            legend
                .draw(&PathElement::new(vec![(10, y), (36, y)], style))
                .map_err(e)?;
            legend
                .draw(&Text::new(
                    s.name.clone(),
                    (44, y - 8),
                    (FAMILY, 13).into_font(),
                ))
                .map_err(e)?;
        }
        Ok(())
    }
}
