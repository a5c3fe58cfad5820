//! The report of a study (`gradscope study`): the runs side by side, in
//! STUDY_DIR/report/. Per-layer weight gradients (RMS of the elements, see
//! `study::measure`) at initialization and at the end (layers on x, one line per run, log
//! y), the backpropagated gradient ∂L/∂a at initialization, the
//! first/last ratio against a numeric axis (depth), loss and accuracy curves, and a page
//! (`html.rs`) with the summary sentences on top, a table of every run (ratios, loss,
//! accuracy, time per step, diagnosis) and each run's own gradient-flow heat map (from its
//! ordinary run report, `report::generate`).
//!
//! Grids with many runs are drawn in panels, one per level of the first axis, so that no
//! picture holds more lines than a reader can tell apart.

pub mod bars;
pub mod chart;
pub mod html;

use std::path::{Path, PathBuf};

use chart::{Chart, colour};

use super::canvas::{self, Saved};
use super::font;
use super::lines::Series;
use crate::error::{Error, Result};
use crate::study::measure::RunResult;
use crate::study::spec::StudySpec;

/// What the page says besides the runs.
pub struct StudyPage<'a> {
    pub spec: &'a StudySpec,
    pub summary: &'a [String],
    pub runs: &'a [RunResult],
    /// Where the data came from and which executor ran (from the runs' summary.json).
    pub data: String,
    pub executor: String,
    /// Runs planned (some may not be finished yet).
    pub planned: usize,
}

/// A picture in a section of the page.
pub struct Figure {
    pub section: &'static str,
    pub saved: Saved,
}

/// What `generate` wrote.
pub struct StudyReport {
    pub html: PathBuf,
    pub figures: Vec<Figure>,
}

/// Runs grouped into panels: all together when few, else by the first axis's levels.
fn panels<'a>(spec: &StudySpec, runs: &'a [RunResult]) -> Vec<(String, Vec<&'a RunResult>)> {
    const MAX_LINES: usize = 8;
    let first = spec.axes.first().map(|a| a.name.as_str());
    match first {
        Some(axis) if runs.len() > MAX_LINES && spec.axes.len() > 1 => {
            let mut out: Vec<(String, Vec<&RunResult>)> = Vec::new();
            for r in runs {
                let key = r.level(axis).unwrap_or("").to_string();
                match out.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => v.push(r),
                    None => out.push((key, vec![r])),
                }
            }
            out.into_iter()
                .map(|(k, v)| (format!("{axis} {k}"), v))
                .collect()
        }
        _ => vec![(String::new(), runs.iter().collect())],
    }
}

/// The label of a run inside a panel: its levels other than the panel's axis.
fn short_label(spec: &StudySpec, r: &RunResult, panelled: bool) -> String {
    let skip = if panelled {
        spec.axes.first().map(|a| a.name.as_str())
    } else {
        None
    };
    let parts: Vec<&str> = r
        .labels
        .iter()
        .filter(|(a, _)| Some(a.as_str()) != skip)
        .map(|(_, l)| l.as_str())
        .collect();
    if parts.is_empty() {
        r.id.clone()
    } else {
        parts.join(", ")
    }
}

fn series(name: String, i: usize, points: Vec<(f64, f64)>) -> Series {
    Series {
        name,
        colour: colour(i),
        width: 2,
        dashed: false,
        points,
    }
}

/// Per-layer values as points (layer 1 = input side).
fn by_layer(values: &[f64]) -> Vec<(f64, f64)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| ((i + 1) as f64, *v))
        .collect()
}

fn stem(base: &str, panel: &str) -> String {
    if panel.is_empty() {
        return base.to_string();
    }
    let slug: String = panel
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{base}_{slug}")
}

fn suffix(panel: &str) -> String {
    if panel.is_empty() {
        String::new()
    } else {
        format!(" — {panel}")
    }
}

/// Draws every picture and writes `dir/report/report.html`.
pub fn generate(dir: &Path, page: &StudyPage) -> Result<StudyReport> {
    font::register()?;
    let out = dir.join("report");
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let mut figures = Vec::new();
    let groups = panels(page.spec, page.runs);
    let panelled = groups.len() > 1;
    type Pick = fn(&RunResult) -> &[f64];
    let profiles: [(&str, &str, &str, &str, Pick); 3] = [
        (
            "Gradient at initialization",
            "profile_init",
            "Weight gradient per layer at initialization",
            "RMS of ∇W elements (step 1)",
            |r| &r.init_grad_rms,
        ),
        (
            "Gradient at initialization",
            "backprop_init",
            "Backpropagated gradient ∂L/∂a per layer at initialization",
            "RMS of ∂L/∂a (w.r.t. the layer's output)",
            |r| &r.init_backprop_rms,
        ),
        (
            "Gradient after training",
            "profile_end",
            "Weight gradient per layer at the last step",
            "RMS of ∇W elements (last step)",
            |r| &r.end_grad_rms,
        ),
    ];
    for (panel, runs) in &groups {
        for (section, base, title, y, pick) in profiles {
            let chart = Chart {
                title: format!("{title}{}", suffix(panel)),
                x_desc: "layer (1 = input side)".into(),
                y_desc: y.into(),
                log_y: true,
                integer_x: true,
                markers: true,
                series: runs
                    .iter()
                    .enumerate()
                    .map(|(i, r)| series(short_label(page.spec, r, panelled), i, by_layer(pick(r))))
                    .collect(),
            };
            let saved = canvas::save(&chart, &out, &stem(base, panel))?;
            figures.push(Figure { section, saved });
        }
    }
    if page.runs.iter().any(|r| !r.init_hidden_norms.is_empty()) {
        type Pick = fn(&RunResult) -> &[f64];
        let over_time: [(&str, &str, Pick); 2] = [
            ("hidden_time_init", "at initialization", |r| {
                &r.init_hidden_norms
            }),
            ("hidden_time_end", "at the last logged step", |r| {
                &r.end_hidden_norms
            }),
        ];
        for (base, when, pick) in over_time {
            let chart = Chart {
                title: format!("Hidden-state gradient ‖∂L/∂h_t‖ against time step, {when}"),
                x_desc: "time step t (0 = first input)".into(),
                y_desc: "‖∂L/∂h_t‖ over the batch (first recurrent layer)".into(),
                log_y: true,
                integer_x: true,
                markers: false,
                series: page
                    .runs
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let points = pick(r)
                            .iter()
                            .enumerate()
                            .map(|(t, &v)| (t as f64, v))
                            .collect();
                        series(r.label(), i, points)
                    })
                    .collect(),
            };
            figures.push(Figure {
                section: "Gradient through time",
                saved: canvas::save(&chart, &out, base)?,
            });
        }
    }
    if let Some(x_axis) = &page.spec.x_axis {
        figures.push(Figure {
            section: "Gradient at initialization",
            saved: canvas::save(&ratio_chart(page, x_axis), &out, "ratio_vs_x")?,
        });
    }
    for (panel, runs) in &groups {
        type Curve = fn(&RunResult) -> &[(u64, f64)];
        let curves: [(&str, &str, bool, Curve); 2] = [
            ("loss", "training loss (per batch)", true, |r| &r.losses),
            ("accuracy", "training accuracy (per batch)", false, |r| {
                &r.accuracies
            }),
        ];
        // A regression's accuracy means nothing: its curve is not drawn.
        let regression = runs.iter().all(|r| r.regression);
        for (base, y, log_y, pick) in curves {
            if regression && base == "accuracy" {
                continue;
            }
            let chart = Chart {
                title: format!("Training {base}{}", suffix(panel)),
                x_desc: "training step".into(),
                y_desc: y.into(),
                log_y,
                integer_x: false,
                markers: false,
                series: runs
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let points = pick(r).iter().map(|&(s, v)| (s as f64, v)).collect();
                        series(short_label(page.spec, r, panelled), i, points)
                    })
                    .collect(),
            };
            let saved = canvas::save(&chart, &out, &stem(base, panel))?;
            figures.push(Figure {
                section: "Training",
                saved,
            });
        }
    }
    let bars = bars::Bars {
        title: "Time per training step (evaluation excluded)".into(),
        unit: "ms".into(),
        rows: page
            .runs
            .iter()
            .map(|r| (r.label(), r.ms_per_step))
            .collect(),
    };
    figures.push(Figure {
        section: "Training",
        saved: canvas::save(&bars, &out, "time_per_step")?,
    });
    let html_path = out.join("report.html");
    let text = html::page(page, &figures, &out)?;
    std::fs::write(&html_path, text).map_err(|e| Error::io(&html_path, e))?;
    Ok(StudyReport {
        html: html_path,
        figures,
    })
}

/// First/last ratio at initialization against the numeric `x_axis`, one line per
/// combination of the other axes.
fn ratio_chart(page: &StudyPage, x_axis: &str) -> Chart {
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in page.runs {
        let Some(x) = r.level(x_axis).and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let name: Vec<&str> = r
            .labels
            .iter()
            .filter(|(a, _)| a != x_axis)
            .map(|(_, l)| l.as_str())
            .collect();
        let name = name.join(", ");
        match lines.iter_mut().find(|(n, _)| *n == name) {
            Some((_, p)) => p.push((x, r.init_ratio)),
            None => lines.push((name, vec![(x, r.init_ratio)])),
        }
    }
    for (_, p) in &mut lines {
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Chart {
        title: format!("First/last layer gradient ratio at initialization against {x_axis}"),
        x_desc: x_axis.to_string(),
        y_desc: "RMS ∇W, first layer / last layer".into(),
        log_y: true,
        integer_x: true,
        markers: true,
        series: lines
            .into_iter()
            .enumerate()
            .map(|(i, (n, p))| series(n, i, p))
            .collect(),
    }
}
