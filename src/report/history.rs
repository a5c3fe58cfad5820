//! A run directory read back for the report: metrics.jsonl (steps, per-layer statistics,
//! evaluations) and, when present, summary.json and its diagnosis findings. Every error
//! names the file and, for metrics.jsonl, the line.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// One training step's scalars.
#[derive(Clone, Debug)]
pub struct StepPoint {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub accuracy: f64,
    pub lr: f64,
    pub grad_norm: f64,
}

/// A layer as the report names it.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerInfo {
    pub name: String,
    pub units: usize,
    pub activation: Option<String>,
}

impl LayerInfo {
    /// "hidden3 (64, sigmoid)".
    pub fn label(&self) -> String {
        match &self.activation {
            Some(a) => format!("{} ({}, {a})", self.name, self.units),
            None => format!("{} ({})", self.name, self.units),
        }
    }
}

/// One layer at one step with full statistics.
#[derive(Clone, Debug, Default)]
pub struct LayerPoint {
    /// ‖∇W‖ (NaN when not finite or missing).
    pub grad_norm: f64,
    /// ‖ΔW‖ / ‖W‖.
    pub update_ratio: Option<f64>,
    /// The 40-bin log2|∇W| histogram.
    pub grad_hist: Option<Vec<u32>>,
}

/// The per-layer statistics of one step, in layer order.
#[derive(Clone, Debug)]
pub struct StatsPoint {
    pub step: u64,
    pub layers: Vec<LayerPoint>,
}

#[derive(Clone, Debug)]
pub struct EvalPoint {
    pub split: String,
    pub epoch: u64,
    pub step: u64,
    pub loss: f64,
    pub accuracy: f64,
}

/// A diagnosis finding from summary.json, shown as written there.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: String,
    pub layers: Vec<String>,
    pub evidence: String,
    pub remedy: String,
}

/// Everything the report draws.
#[derive(Clone, Debug)]
pub struct History {
    pub run_dir: PathBuf,
    pub steps: Vec<StepPoint>,
    pub layers: Vec<LayerInfo>,
    pub stats: Vec<StatsPoint>,
    pub evals: Vec<EvalPoint>,
    pub findings: Vec<Finding>,
    /// summary.json as written, when present.
    pub summary: Option<Value>,
    /// ‖∂L/∂h_t‖ per time step of each recurrent layer, at every step that logged them:
    /// (training step, [(layer, norms by time step)]).
    pub hidden_norms: Vec<HiddenNormsPoint>,
}

/// One step's ‖∂L/∂h_t‖ curves: (training step, [(recurrent layer, norm at each t)]).
pub type HiddenNormsPoint = (u64, Vec<(String, Vec<f64>)>);

#[derive(Deserialize)]
struct Line {
    kind: String,
    step: u64,
    #[serde(default)]
    epoch: u64,
    loss: Option<f64>,
    accuracy: Option<f64>,
    lr: Option<f64>,
    grad_norm: Option<f64>,
    layers: Option<Vec<LayerLine>>,
    split: Option<String>,
    hidden_grad_norms: Option<Vec<HiddenNormsLine>>,
}

#[derive(Deserialize)]
struct HiddenNormsLine {
    layer: String,
    norms: Vec<Option<f64>>,
}

#[derive(Deserialize)]
struct LayerLine {
    name: String,
    units: usize,
    activation: Option<String>,
    tensors: Vec<(String, TensorLine)>,
    grad_norm: Option<f64>,
    update_ratio: Option<f64>,
}

#[derive(Deserialize)]
struct TensorLine {
    hist: Vec<u32>,
}

/// NaN stands for a value JSON could not hold (serde_json writes NaN and ±Inf as null).
fn num(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

/// Text of a JSON value: strings as they are, anything else as compact JSON.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| text(Some(x)))
            .collect::<Vec<_>>()
            .join("; "),
        Some(other) => other.to_string(),
    }
}

/// Findings from summary.json's optional "findings" list; each entry's kind, layers,
/// evidence and remedy are read leniently (a number or an object is shown as JSON).
fn findings(summary: &Value) -> Vec<Finding> {
    let Some(list) = summary.get("findings").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|f| Finding {
            kind: text(f.get("kind")),
            layers: match f.get("layers") {
                Some(Value::Array(a)) => a.iter().map(|x| text(Some(x))).collect(),
                Some(v) => vec![text(Some(v))],
                None => Vec::new(),
            },
            evidence: text(f.get("evidence")),
            remedy: text(f.get("remedy")),
        })
        .collect()
}

impl History {
    /// Reads `run_dir/metrics.jsonl` (required) and `run_dir/summary.json` (optional).
    pub fn load(run_dir: &Path) -> Result<History> {
        let path = run_dir.join("metrics.jsonl");
        let content = std::fs::read_to_string(&path)
            .map_err(|e| Error::run_dir_file(run_dir, "metrics.jsonl", e))?;
        let mut h = History {
            run_dir: run_dir.to_path_buf(),
            steps: Vec::new(),
            layers: Vec::new(),
            stats: Vec::new(),
            evals: Vec::new(),
            findings: Vec::new(),
            summary: None,
            hidden_norms: Vec::new(),
        };
        for (i, raw) in content.lines().enumerate() {
            let n = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(raw).map_err(|e| {
                // serde_json counts lines within the one line it was given: keep its column.
                let msg = e.to_string();
                let msg = msg.rfind(" at line ").map_or(msg.as_str(), |i| &msg[..i]);
                Error::data(&path, format!("line {n}, column {}: {msg}", e.column()))
            })?;
            match line.kind.as_str() {
                "step" => h.add_step(line, &path, n)?,
                "eval" => h.evals.push(EvalPoint {
                    split: line.split.unwrap_or_else(|| "val".into()),
                    epoch: line.epoch,
                    step: line.step,
                    loss: num(line.loss),
                    accuracy: num(line.accuracy),
                }),
                // Other kinds (added by later versions) are not drawn.
                _ => {}
            }
        }
        if h.steps.is_empty() {
            return Err(Error::data(
                &path,
                "no training steps logged (no \"step\" lines)",
            ));
        }
        let spath = run_dir.join("summary.json");
        if spath.exists() {
            let s = std::fs::read_to_string(&spath).map_err(|e| Error::io(&spath, e))?;
            let v: Value =
                serde_json::from_str(&s).map_err(|e| Error::data(&spath, e.to_string()))?;
            h.findings = findings(&v);
            h.summary = Some(v);
        }
        Ok(h)
    }

    fn add_step(&mut self, line: Line, path: &Path, n: usize) -> Result<()> {
        self.steps.push(StepPoint {
            step: line.step,
            epoch: line.epoch,
            loss: num(line.loss),
            accuracy: num(line.accuracy),
            lr: num(line.lr),
            grad_norm: num(line.grad_norm),
        });
        if let Some(h) = line.hidden_grad_norms {
            self.hidden_norms.push((
                line.step,
                h.into_iter()
                    .map(|l| (l.layer, l.norms.into_iter().map(num).collect()))
                    .collect(),
            ));
        }
        let Some(layers) = line.layers else {
            return Ok(());
        };
        let infos: Vec<LayerInfo> = layers
            .iter()
            .map(|l| LayerInfo {
                name: l.name.clone(),
                units: l.units,
                activation: l.activation.clone(),
            })
            .collect();
        if self.layers.is_empty() {
            self.layers = infos;
        } else if self.layers != infos {
            return Err(Error::data(
                path,
                format!("line {n}: the layers differ from those of earlier lines"),
            ));
        }
        self.stats.push(StatsPoint {
            step: line.step,
            layers: layers
                .into_iter()
                .map(|l| LayerPoint {
                    grad_norm: num(l.grad_norm),
                    update_ratio: l.update_ratio,
                    grad_hist: l
                        .tensors
                        .into_iter()
                        .find(|(k, _)| k == "weight_grad")
                        .map(|(_, t)| t.hist),
                })
                .collect(),
        });
        Ok(())
    }

    /// The run's name for titles: the directory's last component.
    pub fn name(&self) -> String {
        self.run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.run_dir.display().to_string())
    }
}
