//! `gradscope study`: a grid of short training runs on one task, compared side by side.
//!
//! ```text
//! spec (built-in or TOML) ──► grid ──► runner ──────────► measure ──► summary sentences
//!  base + axes of levels      one TrainConfig    ordinary run dirs,   per-layer norms,      + report::study
//!                             per combination    shared data/device,  ratios, loss, time     (pictures, page)
//!                                                finished runs skipped
//! ```
//!
//! A study's directory holds one ordinary run directory per run (config.toml,
//! metrics.jsonl, checkpoints, summary.json, report/), `study.json` (the results the report
//! was drawn from) and `report/` (the study's page).

pub mod builtin;
pub mod generic;
pub mod grid;
pub mod measure;
pub mod registry;
pub mod runner;
pub mod sentences;
pub mod spec;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::report::study::{StudyPage, StudyReport};
pub use grid::RunPlan;
pub use measure::RunResult;
pub use registry::{BUILTINS, Builtin, Context};
pub use runner::{Resources, RunOptions, RunStatus, StudyObserver};
pub use spec::{Axis, Level, Size, StudySpec};

/// A study ready to run: its grid and how its results are put into words.
pub struct Study {
    pub spec: StudySpec,
    pub summarize: fn(&StudySpec, &[RunResult]) -> Vec<String>,
}

impl Study {
    /// The built-in study `name` at `size`.
    pub fn builtin(name: &str, size: Size, ctx: &Context) -> Result<Study> {
        let b = registry::find(name).ok_or_else(|| {
            Error::config(format!(
                "unknown study `{name}`; use one of {} (or --file STUDY.toml)",
                registry::names().join(", ")
            ))
        })?;
        Ok(Study {
            spec: (b.build)(size, ctx)?,
            summarize: b.summarize,
        })
    }

    /// A user's study file.
    pub fn from_file(path: &Path) -> Result<Study> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Ok(Study {
            spec: StudySpec::from_toml(&text, path)?,
            summarize: generic::summarize,
        })
    }
}

/// What a study invocation produced.
pub struct Outcome {
    pub dir: PathBuf,
    pub plans: Vec<RunPlan>,
    /// Finished runs (all of them unless the invocation stopped early), in grid order.
    pub results: Vec<(RunResult, RunStatus)>,
    pub summary: Vec<String>,
    pub report: StudyReport,
    /// Times data was loaded and a device opened during this invocation.
    pub data_loads: usize,
    pub device_opens: usize,
}

#[derive(Serialize)]
struct StudyFile<'a> {
    name: &'a str,
    title: &'a str,
    planned: Vec<&'a str>,
    summary: &'a [String],
    runs: Vec<&'a RunResult>,
}

/// Runs `study` in `dir` (continuing an earlier invocation there), with `overrides` (any
/// `gradscope train` settings) laid over every run, and writes its report.
pub fn run(
    study: &Study,
    dir: &Path,
    overrides: &toml::Table,
    options: &RunOptions,
    observer: &mut dyn StudyObserver,
) -> Result<Outcome> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let plans = grid::expand(&study.spec, dir, overrides)?;
    let mut resources = Resources::default();
    let results = runner::run_all(&plans, &mut resources, options, observer)?;
    // Each run's own report, whose heat map the study page shows. A run that stopped before
    // its first step has nothing to draw.
    for (r, status) in &results {
        let missing = !r.dir.join("report").join("report.html").is_file();
        if (missing || *status != RunStatus::Skipped) && r.steps > 0 {
            crate::report::generate(&r.dir)?;
        }
    }
    let runs: Vec<RunResult> = results.iter().map(|(r, _)| r.clone()).collect();
    let summary = (study.summarize)(&study.spec, &runs);
    let (data, executor) = provenance(&runs);
    let page = StudyPage {
        spec: &study.spec,
        summary: &summary,
        runs: &runs,
        data,
        executor,
        planned: plans.len(),
    };
    let report = crate::report::study::generate(dir, &page)?;
    let file = StudyFile {
        name: &study.spec.name,
        title: &study.spec.title,
        planned: plans.iter().map(|p| p.id.as_str()).collect(),
        summary: &summary,
        runs: runs.iter().collect(),
    };
    let path = dir.join("study.json");
    let json = serde_json::to_string_pretty(&file).map_err(|e| Error::config(e.to_string()))?;
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
    Ok(Outcome {
        dir: dir.to_path_buf(),
        plans,
        results,
        summary,
        report,
        data_loads: resources.data_loads,
        device_opens: resources.device_opens,
    })
}

/// The data source and executor the runs name in their summary.json (the distinct ones).
fn provenance(runs: &[RunResult]) -> (String, String) {
    let mut data: Vec<String> = Vec::new();
    let mut exec: Vec<String> = Vec::new();
    for r in runs {
        let path = r.dir.join("summary.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        for (key, list) in [("data", &mut data), ("executor", &mut exec)] {
            if let Some(s) = v.get(key).and_then(|x| x.as_str())
                && !list.iter().any(|x| x == s)
            {
                list.push(s.to_string());
            }
        }
    }
    let or = |v: Vec<String>, none: &str| {
        if v.is_empty() {
            none.to_string()
        } else {
            v.join("; ")
        }
    };
    (or(data, "unknown"), or(exec, "executor unknown"))
}
