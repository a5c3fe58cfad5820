//! Horizontal bars with a label each: the time per training step of every run, side by
//! side. Drawn in pixels (one row per run) so that long run labels fit on the left.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::chart::colour;
use crate::report::canvas::{DrawResult, Picture, e};
use crate::report::font::FAMILY;
use crate::study::sentences::num;

pub struct Bars {
    pub title: String,
    /// Unit shown after each value ("ms").
    pub unit: String,
    /// (label, value); a missing value draws no bar.
    pub rows: Vec<(String, Option<f64>)>,
}

const ROW: i32 = 24;
const TOP: i32 = 50;
const LABELS: i32 = 300;

impl Picture for Bars {
    fn size(&self) -> (u32, u32) {
        (
            1000,
            (TOP + ROW * self.rows.len() as i32 + 30).max(120) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        root.draw(&Text::new(
            self.title.clone(),
            (20, 12),
            (FAMILY, 20).into_font(),
        ))
        .map_err(e)?;
        let max = self
            .rows
            .iter()
            .filter_map(|r| r.1)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let width = root.dim_in_pixel().0 as i32 - LABELS - 120;
        for (i, (label, value)) in self.rows.iter().enumerate() {
            let y = TOP + ROW * i as i32;
            root.draw(&Text::new(
                label.clone(),
                (12, y + 4),
                (FAMILY, 13).into_font(),
            ))
            .map_err(e)?;
            let Some(v) = value.filter(|v| v.is_finite() && max > 0.0) else {
                root.draw(&Text::new("—", (LABELS, y + 4), (FAMILY, 13).into_font()))
                    .map_err(e)?;
                continue;
            };
            let w = ((v / max) * width as f64).round().max(1.0) as i32;
            root.draw(&Rectangle::new(
                [(LABELS, y + 3), (LABELS + w, y + ROW - 3)],
                colour(i).filled(),
            ))
            .map_err(e)?;
            root.draw(&Text::new(
                format!("{} {}", num(v), self.unit),
                (LABELS + w + 8, y + 4),
                (FAMILY, 13).into_font(),
            ))
            .map_err(e)?;
        }
        Ok(())
    }
}
