//! What a study is: a base configuration and axes whose levels are laid over it, one run
//! per combination of levels. Built-in studies and user TOML files both produce this.
//!
//! A level is a small TOML table of `gradscope train` settings (its keys are the flags,
//! with underscores), so an axis can be one setting (`activation = sigmoid, relu, …`) or
//! several that only make sense together (clipping: none / `clip_norm = 1` /
//! `clip_value = 0.01`). Keys are checked against `TrainConfig` when the grid is expanded
//! (`grid.rs`), never here.

use serde::Deserialize;

use crate::error::{Error, Result};

/// One value of an axis: a label for tables and legends, and the settings it lays over
/// the base.
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    pub label: String,
    pub settings: toml::Table,
}

/// One dimension of the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub name: String,
    pub levels: Vec<Level>,
}

impl Axis {
    /// An axis over one setting: each value becomes a level labelled by its text.
    pub fn over(key: &str, values: impl IntoIterator<Item = toml::Value>) -> Axis {
        Axis {
            name: key.to_string(),
            levels: values
                .into_iter()
                .map(|v| {
                    let mut settings = toml::Table::new();
                    let label = label_of(&v);
                    settings.insert(key.to_string(), v);
                    Level { label, settings }
                })
                .collect(),
        }
    }
}

/// A value as a short label: strings without quotes, numbers as written.
pub fn label_of(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The size a built-in study is run at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// A few steps of small networks: seconds on a CPU (what the tests run).
    Quick,
    /// The study as the issue describes it: deeper and wider nets, hundreds of steps.
    Full,
}

/// A grid of runs on one task, and how to read it.
#[derive(Clone, Debug, PartialEq)]
pub struct StudySpec {
    /// Short name: the directory and the command's argument (`depth-and-activation`).
    pub name: String,
    pub title: String,
    /// One paragraph on what the study shows, at the top of the report.
    pub question: String,
    /// Settings for every run (any `gradscope train` key, and `preset`).
    pub base: toml::Table,
    pub axes: Vec<Axis>,
    /// A numeric axis to draw the first/last gradient ratio against (depth), if any.
    pub x_axis: Option<String>,
}

/// A user's study file, as written:
///
/// ```toml
/// name = "my-study"
/// title = "Sigmoid against ReLU"          # optional
/// x_axis = "depth"                        # optional
/// [base]
/// preset = "deep-sigmoid"
/// max_steps = 50
/// [[axis]]
/// key = "activation"
/// values = ["sigmoid", "relu"]
/// [[axis]]
/// name = "clipping"
/// levels = [{ label = "none" }, { label = "norm 1", clip_norm = 1.0 }]
/// ```
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StudyFile {
    name: String,
    title: Option<String>,
    question: Option<String>,
    #[serde(default)]
    base: toml::Table,
    #[serde(default)]
    axis: Vec<AxisFile>,
    x_axis: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AxisFile {
    /// One setting with a list of values…
    key: Option<String>,
    values: Option<Vec<toml::Value>>,
    /// …or named levels, each a table of settings with a `label`.
    name: Option<String>,
    levels: Option<Vec<toml::Table>>,
}

impl StudySpec {
    /// Parses a study file; `path` names it in errors.
    pub fn from_toml(text: &str, path: &std::path::Path) -> Result<StudySpec> {
        let bad = |msg: String| Error::config(format!("{}: {msg}", path.display()));
        let file: StudyFile = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        if file.axis.is_empty() {
            return Err(bad(
                "a study needs at least one [[axis]] (key = \"…\", values = [...])".into(),
            ));
        }
        let mut axes = Vec::new();
        for (i, a) in file.axis.into_iter().enumerate() {
            let axis = match (a.key, a.values, a.name, a.levels) {
                (Some(key), Some(values), None, None) => Axis::over(&key, values),
                (None, None, Some(name), Some(levels)) => {
                    let levels = levels
                        .into_iter()
                        .enumerate()
                        .map(|(j, mut t)| {
                            let label = match t.remove("label") {
                                Some(toml::Value::String(s)) => s,
                                _ => {
                                    return Err(bad(format!(
                                        "axis `{name}`, level {}: needs a `label = \"…\"`",
                                        j + 1
                                    )));
                                }
                            };
                            Ok(Level { label, settings: t })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Axis { name, levels }
                }
                _ => {
                    return Err(bad(format!(
                        "axis {}: give either `key` and `values`, or `name` and `levels`",
                        i + 1
                    )));
                }
            };
            if axis.levels.is_empty() {
                return Err(bad(format!("axis `{}` has no values", axis.name)));
            }
            axes.push(axis);
        }
        let spec = StudySpec {
            title: file.title.unwrap_or_else(|| file.name.clone()),
            question: file.question.unwrap_or_default(),
            name: file.name,
            base: file.base,
            axes,
            x_axis: file.x_axis,
        };
        if let Some(x) = &spec.x_axis
            && !spec.axes.iter().any(|a| &a.name == x)
        {
            return Err(bad(format!("x_axis `{x}` is not one of the axes")));
        }
        Ok(spec)
    }
}
