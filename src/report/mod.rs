//! The gradient-flow report: `gradscope report RUN_DIR` reads a run directory back
//! (`history.rs`) and writes into RUN_DIR/report/ a PNG and an SVG of each picture
//! (`canvas.rs`): the gradient-flow heat map (`heatmap.rs`), per-layer gradient norms and
//! update-to-weight ratios (`lines.rs`), log2|∇W| histograms over time (`histograms.rs`),
//! loss and accuracy (`curves.rs`), and one self-contained report.html with the SVGs
//! inlined and the diagnosis findings beside them (`html.rs`). Text is drawn with the
//! bundled font (`font.rs`).

pub mod canvas;
pub mod colour;
pub mod curves;
pub mod font;
pub mod heatmap;
pub mod histograms;
pub mod history;
pub mod html;
pub mod lines;
pub mod study;
pub mod time_norms;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
pub use canvas::Saved;
pub use history::{Finding, History};

/// What `generate` wrote.
#[derive(Clone, Debug)]
pub struct Report {
    pub dir: PathBuf,
    pub html: PathBuf,
    pub pictures: Vec<Saved>,
    pub findings: usize,
}

/// Reads `run_dir` and writes `run_dir/report/`.
pub fn generate(run_dir: &Path) -> Result<Report> {
    font::register()?;
    let history = History::load(run_dir)?;
    let dir = run_dir.join("report");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut pictures = Vec::new();
    if !history.stats.is_empty() && !history.layers.is_empty() {
        pictures.push(canvas::save(
            &heatmap::GradientFlow { history: &history },
            &dir,
            "gradient_flow",
        )?);
        pictures.push(canvas::save(
            &lines::grad_norms(&history),
            &dir,
            "grad_norms",
        )?);
        pictures.push(canvas::save(
            &lines::update_ratios(&history),
            &dir,
            "update_ratios",
        )?);
        pictures.push(canvas::save(
            &histograms::GradHistograms { history: &history },
            &dir,
            "grad_histograms",
        )?);
    }
    if !history.hidden_norms.is_empty() {
        pictures.push(canvas::save(
            &time_norms::hidden_grad_over_time(&history),
            &dir,
            "hidden_grad_over_time",
        )?);
    }
    pictures.push(canvas::save(
        &curves::Curves { history: &history },
        &dir,
        "loss_accuracy",
    )?);
    let html = dir.join("report.html");
    let page = html::page(&history, &pictures)?;
    std::fs::write(&html, page).map_err(|e| Error::io(&html, e))?;
    Ok(Report {
        dir,
        html,
        pictures,
        findings: history.findings.len(),
    })
}
