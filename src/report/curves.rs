//! Loss and accuracy curves: training per step (the batch's value), validation per epoch
//! (and the test set, when the run had one, as a single marker at the end). Legends sit
//! where the curves usually are not: top right for the falling loss, bottom right for the
//! rising accuracy.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::canvas::{DrawResult, Picture, e, number};
use super::font::FAMILY;
use super::history::History;

pub struct Curves<'a> {
    pub history: &'a History,
}

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(214, 39, 40);
const TEST: RGBColor = RGBColor(44, 160, 44);

fn finite(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    points.filter(|p| p.1.is_finite()).collect()
}

fn range(vals: impl Iterator<Item = f64> + Clone, floor_zero: bool) -> (f64, f64) {
    let lo = vals.clone().fold(f64::INFINITY, f64::min);
    let hi = vals.fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let lo = if floor_zero { lo.min(0.0) } else { lo };
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - if floor_zero { 0.0 } else { pad }, hi + pad)
}

impl Curves<'_> {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        title: &str,
        y_desc: &str,
        pick: fn(f64, f64) -> f64,
        floor_zero: bool,
        legend_at: SeriesLabelPosition,
    ) -> DrawResult {
        let h = self.history;
        let train = finite(
            h.steps
                .iter()
                .map(|s| (s.step as f64, pick(s.loss, s.accuracy))),
        );
        let split = |name: &str| {
            finite(
                h.evals
                    .iter()
                    .filter(|v| v.split == name)
                    .map(|v| (v.step as f64, pick(v.loss, v.accuracy))),
            )
        };
        let (val, test) = (split("val"), split("test"));
        let all = train.iter().chain(&val).chain(&test);
        let (x0, x1) = range(all.clone().map(|p| p.0), false);
        let (y0, y1) = range(all.map(|p| p.1), floor_zero);
        let mut chart = ChartBuilder::on(area)
            .caption(title, (FAMILY, 20))
            .margin(10)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("training step")
            .x_label_formatter(&number)
            .y_desc(y_desc)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        chart
            .draw_series(LineSeries::new(train, TRAIN.stroke_width(1)))
            .map_err(e)?
            .label("train (per step, batch)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], TRAIN.stroke_width(2)));
        if !val.is_empty() {
            chart
                .draw_series(LineSeries::new(val.clone(), VAL.stroke_width(2)))
                .map_err(e)?
                .label("validation (per epoch)")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], VAL.stroke_width(2)));
            chart
                .draw_series(val.into_iter().map(|p| Circle::new(p, 4, VAL.filled())))
                .map_err(e)?;
        }
        if !test.is_empty() {
            chart
                .draw_series(
                    test.into_iter()
                        .map(|p| Cross::new(p, 6, TEST.stroke_width(2))),
                )
                .map_err(e)?
                .label("test (end of run)")
                .legend(|(x, y)| Cross::new((x + 10, y), 5, TEST.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(legend_at)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 14))
            .draw()
            .map_err(e)?;
        Ok(())
    }
}

impl Picture for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        (1300, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let panels = root.split_evenly((1, 2));
        self.panel(
            &panels[0],
            "Loss",
            "loss (mean over the batch)",
            |l, _| l,
            false,
            SeriesLabelPosition::UpperRight,
        )?;
        self.panel(
            &panels[1],
            "Accuracy",
            "accuracy (fraction correct)",
            |_, a| a,
            true,
            SeriesLabelPosition::LowerRight,
        )
    }
}
