//! One picture, two files: every chart draws itself onto any plotters backend, and is saved
//! as PNG (bitmap backend) and SVG (for the HTML page, which inlines it).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};

/// A drawing error as text (plotters' error types differ per backend).
pub type DrawResult = std::result::Result<(), String>;

/// Turns any displayable error into the text a `DrawResult` carries.
pub fn e<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

pub trait Picture {
    /// Pixels (PNG) and user units (SVG).
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult;
}

/// The two files of a saved picture.
#[derive(Clone, Debug)]
pub struct Saved {
    pub stem: String,
    pub png: PathBuf,
    pub svg: PathBuf,
}

/// Draws `pic` into `dir/<stem>.png` and `dir/<stem>.svg`.
pub fn save(pic: &impl Picture, dir: &Path, stem: &str) -> Result<Saved> {
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let fail = |path: &Path, msg: String| Error::data(path, format!("drawing failed: {msg}"));
    {
        let root = BitMapBackend::new(&png, pic.size()).into_drawing_area();
        root.fill(&WHITE).map_err(|x| fail(&png, e(x)))?;
        pic.draw(&root).map_err(|m| fail(&png, m))?;
        root.present().map_err(|x| fail(&png, e(x)))?;
    }
    {
        let root = SVGBackend::new(&svg, pic.size()).into_drawing_area();
        root.fill(&WHITE).map_err(|x| fail(&svg, e(x)))?;
        pic.draw(&root).map_err(|m| fail(&svg, m))?;
        root.present().map_err(|x| fail(&svg, e(x)))?;
    }
    Ok(Saved {
        stem: stem.to_string(),
        png,
        svg,
    })
}

/// An axis number without needless decimals: 20 not 20.0, 0.25 not 0.250.
/// Tick values for a log axis over [lo, hi] (both powers of ten): every k-th decade, k the
/// smallest step that keeps at most `MAX_DECADE_TICKS` labels. plotters' own log key points
/// thin out and stop short of the range's ends on axes spanning a few dozen decades (a
/// recurrent net's gradient through 100 steps), so the charts pass these instead.
pub fn decade_ticks(lo: f64, hi: f64) -> Vec<f64> {
    const MAX_DECADE_TICKS: i32 = 12;
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    if b <= a {
        return vec![lo];
    }
    let step = ((b - a) + MAX_DECADE_TICKS - 1) / MAX_DECADE_TICKS;
    // Ticks on multiples of the step, so that 1e0 is one whenever it is in range.
    let first = a.div_euclid(step) * step + if a.rem_euclid(step) == 0 { 0 } else { step };
    (first..=b)
        .step_by(step as usize)
        .map(|k| format!("1e{k}").parse::<f64>().unwrap_or(10f64.powi(k)))
        .collect()
}

pub fn number(x: &f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}
