//! What a study compares, read back from each finished run directory (metrics.jsonl and
//! summary.json through `report::History`): the per-layer gradient norms at the first step
//! (the gradient at initialization: step 1's statistics are taken before its update) and
//! at the last, the first-to-last layer ratio, loss, accuracy, time per step, diagnosis.
//!
//! Only layers with a weight matrix (Linear, Conv2d) enter the profiles and ratios: a
//! BatchNorm's γ gradient is a different quantity, and mixing them would make "first
//! layer / last layer" mean different things in the runs being compared.
//!
//! Layers are compared by the root mean square of their gradient's elements,
//! ‖∇W‖/√(elements), not by the norm itself: a first layer reading 784 pixels has a weight
//! matrix 25 times the size of a 32-wide hidden layer's, and its norm would count that size
//! as gradient. For ∇W = δ·aᵀ the RMS is rms(δ)·rms(a), so a ratio of RMS values is the
//! ratio of the backpropagated signals (times that of the layers' inputs), which is what
//! vanishing and exploding are about.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::grid::RunPlan;
use crate::error::{Error, Result};
use crate::model::ModelSpec;
use crate::model::spec::NodeOp;
use crate::report::History;

/// One run, as the study report and its summary sentences read it.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub id: String,
    /// (axis, level) pairs.
    pub labels: Vec<(String, String)>,
    pub dir: PathBuf,
    /// The weight layers, input side first.
    pub layers: Vec<String>,
    /// RMS of each weight layer's gradient elements at the first step (initialization).
    pub init_grad_rms: Vec<f64>,
    /// The same at the last step with statistics.
    pub end_grad_rms: Vec<f64>,
    /// RMS of ∂L/∂a over each weight layer's output (after its activation) at
    /// initialization: the backpropagated gradient, which a ReLU net with too small weights
    /// lets vanish even where ∇W = δ·aᵀ stays level (the forward signal shrinks as much).
    pub init_backprop_rms: Vec<f64>,
    /// First weight layer's gradient RMS over the last one's, at initialization and at the
    /// end.
    pub init_ratio: f64,
    pub end_ratio: f64,
    /// Largest over smallest gradient RMS across the weight layers at initialization.
    pub init_spread: f64,
    /// First over last of `init_backprop_rms`, and its largest over smallest.
    pub init_backprop_ratio: f64,
    pub init_backprop_spread: f64,
    /// (step, loss) and (step, batch accuracy) of every logged step.
    pub losses: Vec<(u64, f64)>,
    pub accuracies: Vec<(u64, f64)>,
    pub first_loss: f64,
    /// Mean loss over the last tenth of the logged steps (at least one).
    pub final_loss: f64,
    pub val_accuracy: Option<f64>,
    /// The task is a regression (the adding problem): accuracy means nothing, the loss is
    /// an MSE.
    pub regression: bool,
    /// Validation loss at the end (the MSE of a regression task, where accuracy means
    /// nothing).
    pub val_loss: Option<f64>,
    /// ‖∂L/∂h_t‖ over the batch at each time step t of the first recurrent layer, at the
    /// first and at the last step that logged them (empty for a network without one).
    pub init_hidden_norms: Vec<f64>,
    pub end_hidden_norms: Vec<f64>,
    /// ‖∂L/∂h_0‖ / ‖∂L/∂h_{T−1}‖ of those: how much of the gradient at the last time step
    /// survives back to the first (NaN without a recurrent layer).
    pub init_hidden_ratio: f64,
    pub end_hidden_ratio: f64,
    /// Milliseconds per training step (evaluation excluded), from summary.json.
    pub ms_per_step: Option<f64>,
    /// Largest total gradient norm of any step (∞ when a step's was not finite).
    pub max_grad_norm: f64,
    /// Every logged loss and gradient norm was finite, and the run did not stop early.
    pub finite: bool,
    /// Diagnosis findings, "kind: layers".
    pub findings: Vec<String>,
    /// Why the run stopped early, if it did (e.g. the first NaN under `--on-nonfinite halt`).
    pub error: Option<String>,
    pub steps: u64,
}

impl RunResult {
    pub fn label(&self) -> String {
        self.labels
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn level(&self, axis: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(a, _)| a == axis)
            .map(|(_, l)| l.as_str())
    }
}

/// Names of the statistics layers with a weight matrix, in order, with the weight's
/// element count. A recurrent layer counts twice, as the statistics show it: its input
/// side (`name.ih`, W_ih) and its recurrent side (`name.hh`, W_hh).
pub fn weight_layers(model: &ModelSpec) -> Vec<(String, usize)> {
    let size = |p: usize| model.params[p].shape.iter().product::<usize>();
    model
        .nodes
        .iter()
        .flat_map(|n| match n.op {
            NodeOp::Linear { weight, .. }
            | NodeOp::Conv2d { weight, .. }
            | NodeOp::StepLinear { weight, .. } => vec![(n.name.clone(), size(weight))],
            NodeOp::Recurrent(r) => {
                let [ih, hh] = crate::model::recurrent::side_layer_names(&n.name);
                vec![(ih, size(r.weight_ih)), (hh, size(r.weight_hh))]
            }
            _ => Vec::new(),
        })
        .collect()
}

/// The first recurrent layer's ‖∂L/∂h_t‖ curve at the first and at the last step that
/// logged one.
fn hidden_norms(h: &History) -> (Vec<f64>, Vec<f64>) {
    let first_layer = |p: &crate::report::history::HiddenNormsPoint| {
        p.1.first().map(|(_, n)| n.clone()).unwrap_or_default()
    };
    match (h.hidden_norms.first(), h.hidden_norms.last()) {
        (Some(a), Some(b)) => (first_layer(a), first_layer(b)),
        _ => (Vec::new(), Vec::new()),
    }
}

/// Largest over smallest positive finite value (∞ when one is zero or not finite).
fn spread(values: &[f64]) -> f64 {
    if values.iter().any(|v| !v.is_finite() || *v <= 0.0) {
        return f64::INFINITY;
    }
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    hi / lo
}

/// RMS of ∂L/∂a of the named layers on the first line of metrics.jsonl with per-layer
/// statistics.
fn first_output_grads(dir: &Path, layers: &[String]) -> Result<Vec<f64>> {
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let Some(line) = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("layers").is_some_and(Value::is_array))
    else {
        return Ok(Vec::new());
    };
    let all = line["layers"].as_array().cloned().unwrap_or_default();
    Ok(layers
        .iter()
        .map(|name| {
            all.iter()
                .find(|l| l["name"].as_str() == Some(name))
                .and_then(|l| l["tensors"].as_array())
                .and_then(|ts| {
                    ts.iter()
                        .find(|t| t[0].as_str() == Some("output_grad"))
                        .and_then(|t| Some(t[1]["norm"].as_f64()? / t[1]["count"].as_f64()?.sqrt()))
                })
                .unwrap_or(f64::NAN)
        })
        .collect())
}

fn is_regression(plan: &RunPlan) -> bool {
    plan.config
        .seq_task()
        .ok()
        .flatten()
        .is_some_and(|t| t.regression())
}

/// Reads `dir` (a run of `plan` whose weight layers are `layers`); `error` is the message
/// of a run that stopped early.
pub fn measure(
    plan: &RunPlan,
    dir: &Path,
    layers: &[(String, usize)],
    error: Option<String>,
) -> Result<RunResult> {
    let h = History::load(dir)?;
    let index: Vec<(usize, f64)> = layers
        .iter()
        .filter_map(|(name, n)| {
            let i = h.layers.iter().position(|l| &l.name == name)?;
            Some((i, (*n).max(1) as f64))
        })
        .collect();
    let rms_at = |k: usize| -> Vec<f64> {
        h.stats.get(k).map_or_else(Vec::new, |p| {
            index
                .iter()
                .map(|&(i, n)| p.layers.get(i).map_or(f64::NAN, |l| l.grad_norm / n.sqrt()))
                .collect()
        })
    };
    let init_grad_rms = rms_at(0);
    let names: Vec<String> = index
        .iter()
        .map(|&(i, _)| h.layers[i].name.clone())
        .collect();
    let init_backprop_rms = first_output_grads(dir, &names)?;
    let end_grad_rms = rms_at(h.stats.len().saturating_sub(1));
    let ratio = |n: &[f64]| match (n.first(), n.last()) {
        (Some(a), Some(b)) if n.len() > 1 => a / b,
        _ => f64::NAN,
    };
    let losses: Vec<(u64, f64)> = h.steps.iter().map(|s| (s.step, s.loss)).collect();
    let accuracies: Vec<(u64, f64)> = h.steps.iter().map(|s| (s.step, s.accuracy)).collect();
    let tail = (losses.len() / 10).max(1);
    let final_loss = losses[losses.len() - tail..]
        .iter()
        .map(|l| l.1)
        .sum::<f64>()
        / tail as f64;
    let max_grad_norm = h
        .steps
        .iter()
        .map(|s| {
            if s.grad_norm.is_finite() {
                s.grad_norm
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max);
    let finite = error.is_none()
        && h.steps
            .iter()
            .all(|s| s.loss.is_finite() && s.grad_norm.is_finite());
    let summary = h.summary.as_ref();
    let num = |key: &str| summary.and_then(|s| s.get(key)).and_then(|v| v.as_f64());
    let (init_hidden_norms, end_hidden_norms) = hidden_norms(&h);
    let regression = is_regression(plan);
    let ms_per_step = num("samples_per_second")
        .filter(|s| *s > 0.0)
        .map(|sps| 1000.0 * plan.config.batch_size as f64 / sps);
    Ok(RunResult {
        id: plan.id.clone(),
        labels: plan.labels.clone(),
        dir: dir.to_path_buf(),
        layers: names,
        init_ratio: ratio(&init_grad_rms),
        init_backprop_ratio: ratio(&init_backprop_rms),
        init_backprop_spread: spread(&init_backprop_rms),
        init_backprop_rms,
        end_ratio: ratio(&end_grad_rms),
        init_spread: spread(&init_grad_rms),
        init_grad_rms,
        end_grad_rms,
        first_loss: losses.first().map_or(f64::NAN, |l| l.1),
        final_loss,
        losses,
        accuracies,
        val_accuracy: num("final_val_accuracy")
            .filter(|a| a.is_finite())
            .filter(|_| !regression),
        val_loss: num("final_val_loss").filter(|l| l.is_finite()),
        regression,
        init_hidden_ratio: ratio(&init_hidden_norms),
        end_hidden_ratio: ratio(&end_hidden_norms),
        init_hidden_norms,
        end_hidden_norms,
        ms_per_step,
        max_grad_norm,
        finite,
        findings: h
            .findings
            .iter()
            .map(|f| format!("{}: {}", f.kind, f.layers.join(", ")))
            .collect(),
        error,
        steps: h.steps.last().map_or(0, |s| s.step),
    })
}

impl RunResult {
    /// A run that stopped before logging any step (a NaN at its first step).
    pub fn stopped(plan: &RunPlan, dir: &Path, error: String) -> RunResult {
        RunResult {
            id: plan.id.clone(),
            labels: plan.labels.clone(),
            dir: dir.to_path_buf(),
            layers: Vec::new(),
            init_grad_rms: Vec::new(),
            end_grad_rms: Vec::new(),
            init_backprop_rms: Vec::new(),
            init_ratio: f64::NAN,
            end_ratio: f64::NAN,
            init_spread: f64::NAN,
            init_backprop_ratio: f64::NAN,
            init_backprop_spread: f64::NAN,
            losses: Vec::new(),
            accuracies: Vec::new(),
            first_loss: f64::NAN,
            final_loss: f64::NAN,
            val_accuracy: None,
            val_loss: None,
            regression: is_regression(plan),
            init_hidden_norms: Vec::new(),
            end_hidden_norms: Vec::new(),
            init_hidden_ratio: f64::NAN,
            end_hidden_ratio: f64::NAN,
            ms_per_step: None,
            max_grad_norm: f64::INFINITY,
            finite: false,
            findings: Vec::new(),
            error: Some(error),
            steps: 0,
        }
    }
}
