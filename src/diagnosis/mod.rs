//! Diagnosis: rules over the history of per-layer statistics that turn numbers into
//! answers — what is wrong with the gradient flow, in which layers, the evidence, and what
//! to do about it. One rule per file; each sees the recent full-statistics steps
//! (`History`) and returns the findings that hold now. `Diagnoser` keeps the history,
//! fires each finding once (the first step it holds), and keeps every fired finding for
//! the end of the run and summary.json.
//!
//! Remedies come from three families (`RemedyFamily`): the training method (optimizer,
//! learning rate, clipping), the node operations (activation functions, normalization) and
//! the structure (initialization, depth, shortcut connections).

pub mod dead_units;
pub mod exploding;
pub mod learning_rate;
pub mod nonfinite;
pub mod saturation;
pub mod vanishing;
pub mod watch;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::stats::LayerStats;
pub use nonfinite::{NonFiniteOrigin, Pass, trace};
pub use watch::{StepVerdict, Watch};

/// Thresholds of every rule: the `[diagnosis]` table of a config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnosisConfig {
    /// Run the rules at all.
    pub enabled: bool,
    /// Full-statistics steps a condition must hold in a row before it fires.
    pub patience: usize,
    /// Full-statistics steps of history the rules look back over.
    pub window: usize,
    /// Vanishing: the first layer's gradient norm below this fraction of the last one's.
    pub vanishing_ratio: f64,
    /// Vanishing/exploding: a layer's gradient norm this many times below (above) both of
    /// its neighbours'.
    pub neighbour_gap: f64,
    /// Exploding: the first layer's gradient norm above this multiple of the last one's.
    pub exploding_ratio: f64,
    /// Exploding: the total gradient norm grew by this factor over the window, rising at
    /// every step of the patience.
    pub exploding_growth: f64,
    /// Dead units: fraction of a layer's units that output zero for the whole batch.
    pub dead_fraction: f64,
    /// Saturation: fraction of sigmoid/tanh outputs pinned near their bounds.
    pub saturated_fraction: f64,
    /// Learning rate too high: ‖ΔW‖/‖W‖ above this (healthy is about 1e-3).
    pub update_ratio_high: f64,
    /// Learning rate too low: ‖ΔW‖/‖W‖ below this.
    pub update_ratio_low: f64,
}

impl Default for DiagnosisConfig {
    fn default() -> Self {
        DiagnosisConfig {
            enabled: true,
            patience: 3,
            window: 20,
            vanishing_ratio: 1e-3,
            neighbour_gap: 1e3,
            exploding_ratio: 1e3,
            exploding_growth: 1e2,
            dead_fraction: 0.5,
            saturated_fraction: 0.5,
            update_ratio_high: 1e-1,
            update_ratio_low: 1e-5,
        }
    }
}

impl DiagnosisConfig {
    /// Refuses thresholds no rule can use, naming the key.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |k: &str, v: f64| {
            crate::Error::config(format!(
                "`diagnosis.{k}` must be a finite number > 0, got {v}"
            ))
        };
        for (k, v) in [
            ("vanishing_ratio", self.vanishing_ratio),
            ("neighbour_gap", self.neighbour_gap),
            ("exploding_ratio", self.exploding_ratio),
            ("exploding_growth", self.exploding_growth),
            ("dead_fraction", self.dead_fraction),
            ("saturated_fraction", self.saturated_fraction),
            ("update_ratio_high", self.update_ratio_high),
            ("update_ratio_low", self.update_ratio_low),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(k, v));
            }
        }
        if self.patience == 0 || self.window < self.patience {
            return Err(crate::Error::config(format!(
                "`diagnosis.patience` must be at least 1 and at most `diagnosis.window` ({} and {})",
                self.patience, self.window
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    VanishingGradients,
    ExplodingGradients,
    DeadUnits,
    Saturation,
    LearningRateTooHigh,
    LearningRateTooLow,
    NonFinite,
}

impl FindingKind {
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::VanishingGradients => "vanishing gradients",
            FindingKind::ExplodingGradients => "exploding gradients",
            FindingKind::DeadUnits => "dead units",
            FindingKind::Saturation => "saturation",
            FindingKind::LearningRateTooHigh => "learning rate too high",
            FindingKind::LearningRateTooLow => "learning rate too low",
            FindingKind::NonFinite => "non-finite values",
        }
    }

    /// The one-letter mark of the console table.
    pub fn mark(self) -> char {
        match self {
            FindingKind::VanishingGradients => 'V',
            FindingKind::ExplodingGradients => 'E',
            FindingKind::DeadUnits => 'D',
            FindingKind::Saturation => 'S',
            FindingKind::LearningRateTooHigh => 'H',
            FindingKind::LearningRateTooLow => 'L',
            FindingKind::NonFinite => 'N',
        }
    }
}

/// The three families of remedies for gradient-flow problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemedyFamily {
    /// Optimizer, learning rate, schedule, clipping.
    TrainingMethod,
    /// Activation functions, normalization.
    NodeOperations,
    /// Initialization, depth, width, shortcut connections.
    Structure,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Remedy {
    pub family: RemedyFamily,
    pub text: &'static str,
}

pub(crate) const fn remedy(family: RemedyFamily, text: &'static str) -> Remedy {
    Remedy { family, text }
}

/// One number behind a finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evidence {
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    pub value: f64,
}

impl Evidence {
    pub fn new(what: impl Into<String>, layer: Option<&str>, value: f64) -> Self {
        Evidence {
            what: what.into(),
            layer: layer.map(str::to_string),
            value,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The step at which it first held.
    pub step: u64,
    /// The layers it concerns, input side first.
    pub layers: Vec<String>,
    /// One line a user reads.
    pub message: String,
    pub evidence: Vec<Evidence>,
    pub remedies: Vec<Remedy>,
}

impl Finding {
    /// "step 12: vanishing gradients in hidden1, hidden2: … (remedies: …)" on a few lines.
    pub fn render(&self) -> String {
        let mut s = format!(
            "step {}: {} in {}: {}",
            self.step,
            self.kind.name(),
            if self.layers.is_empty() {
                "the network".to_string()
            } else {
                self.layers.join(", ")
            },
            self.message
        );
        for r in &self.remedies {
            let fam = match r.family {
                RemedyFamily::TrainingMethod => "training method",
                RemedyFamily::NodeOperations => "node operations",
                RemedyFamily::Structure => "structure",
            };
            s.push_str(&format!("\n    - {fam}: {}", r.text));
        }
        s
    }
}

/// One full-statistics step as the rules see it.
#[derive(Clone, Debug)]
pub struct Observation {
    pub step: u64,
    pub layers: Vec<LayerStats>,
    /// √(Σ‖g‖²) over every parameter gradient.
    pub grad_norm: f64,
}

impl Observation {
    /// The weight-gradient norms of layer i's two neighbours, or None at either end of the
    /// network. A gap to neighbours is judged on both sides only: at an end the one
    /// comparison cannot tell a dip in this layer from a spike next door, or the reverse
    /// (a convolution whose BatchNorm's γ gets almost no gradient, as before a depthwise
    /// convolution and another BatchNorm, would be called exploding).
    pub fn neighbour_norms(&self, i: usize) -> Option<[f64; 2]> {
        let n = self.layers.len();
        (i > 0 && i + 1 < n).then(|| [self.layers[i - 1].grad_norm, self.layers[i + 1].grad_norm])
    }
}

/// The recent observations, oldest first, at most `window` of them.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub steps: VecDeque<Observation>,
}

impl History {
    /// The last `n` observations, or None while fewer exist.
    pub fn last(&self, n: usize) -> Option<impl Iterator<Item = &Observation>> {
        (self.steps.len() >= n && n > 0).then(|| self.steps.iter().skip(self.steps.len() - n))
    }

    pub fn latest(&self) -> Option<&Observation> {
        self.steps.back()
    }

    /// Indices of the layers with a neighbour on both sides for which `cond(norm,
    /// neighbours' norms)` holds in each of the last `n` observations (a spike or a dip:
    /// `Observation::neighbour_norms`).
    pub fn sustained_gap(&self, n: usize, cond: impl Fn(f64, [f64; 2]) -> bool) -> Vec<usize> {
        let Some(latest) = self.latest() else {
            return Vec::new();
        };
        (0..latest.layers.len())
            .filter(|&i| {
                self.last(n).is_some_and(|mut it| {
                    it.all(|o| {
                        o.neighbour_norms(i)
                            .is_some_and(|nb| cond(o.layers[i].grad_norm, nb))
                    })
                })
            })
            .collect()
    }

    /// Indices of the layers for which `cond` holds in each of the last `n` observations.
    pub fn sustained(&self, n: usize, cond: impl Fn(&LayerStats) -> bool) -> Vec<usize> {
        let Some(latest) = self.latest() else {
            return Vec::new();
        };
        (0..latest.layers.len())
            .filter(|&l| {
                self.last(n)
                    .is_some_and(|mut it| it.all(|o| o.layers.get(l).is_some_and(&cond)))
            })
            .collect()
    }
}

/// Keeps the history, runs every rule on each full-statistics step and fires each finding
/// the first time it holds.
pub struct Diagnoser {
    pub config: DiagnosisConfig,
    history: History,
    findings: Vec<Finding>,
}

impl Diagnoser {
    pub fn new(config: DiagnosisConfig) -> Self {
        Diagnoser {
            config,
            history: History::default(),
            findings: Vec::new(),
        }
    }

    /// Every finding fired so far, in firing order.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Adds a full-statistics step; returns the findings that fire for the first time.
    pub fn observe(&mut self, step: u64, layers: &[LayerStats], grad_norm: f64) -> Vec<Finding> {
        if !self.config.enabled {
            return Vec::new();
        }
        self.history.steps.push_back(Observation {
            step,
            layers: layers.to_vec(),
            grad_norm,
        });
        while self.history.steps.len() > self.config.window.max(1) {
            self.history.steps.pop_front();
        }
        let c = &self.config;
        let h = &self.history;
        let mut candidates = Vec::new();
        candidates.extend(vanishing::check(c, h));
        candidates.extend(exploding::check(c, h));
        candidates.extend(dead_units::check(c, h));
        candidates.extend(saturation::check(c, h));
        candidates.extend(learning_rate::check(c, h));
        candidates
            .into_iter()
            .filter_map(|f| self.fire(f))
            .collect()
    }

    /// Records a finding found outside the rules (the non-finite tracer); returns it when
    /// it fires for the first time.
    pub fn add(&mut self, finding: Finding) -> Option<Finding> {
        self.fire(finding)
    }

    /// A finding fires unless one of the same kind already covers all of its layers.
    fn fire(&mut self, f: Finding) -> Option<Finding> {
        // The first non-finite origin is the one that matters; later ones are downstream.
        let covered = self.findings.iter().any(|old| {
            old.kind == f.kind
                && (f.kind == FindingKind::NonFinite
                    || f.layers.iter().all(|l| old.layers.contains(l)))
        });
        if covered {
            return None;
        }
        self.findings.push(f.clone());
        Some(f)
    }
}

/// The layer names of `indices`.
pub(crate) fn names(obs: &Observation, indices: &[usize]) -> Vec<String> {
    indices
        .iter()
        .map(|&i| obs.layers[i].name.clone())
        .collect()
}

/// Histories for the rules' unit tests, and a check of what a rule found.
#[cfg(test)]
pub(crate) mod test_history {
    use super::{Finding, History, Observation};
    use crate::stats::LayerStats;

    /// Exactly one finding, naming these layers (when given) and saying `text`.
    pub fn assert_one(found: &[Finding], layers: Option<&[&str]>, text: &str) {
        assert_eq!(found.len(), 1, "{found:?}");
        if let Some(layers) = layers {
            assert_eq!(found[0].layers, layers, "{}", found[0].message);
        }
        assert!(found[0].message.contains(text), "{}", found[0].message);
    }

    /// Three steps of layers with these weight-gradient norms (the last is the reference).
    pub fn history(norms: &[f64]) -> History {
        let last = *norms.last().expect("at least one layer");
        let layers: Vec<LayerStats> = norms
            .iter()
            .enumerate()
            .map(|(i, &g)| LayerStats {
                name: format!("layer{i}"),
                units: 4,
                activation: None,
                tensors: Vec::new(),
                grad_norm: g,
                grad_ratio_to_last: g / last,
                update_ratio: None,
                saturated_fraction: None,
                dead_fraction: None,
                nonfinite: 0,
            })
            .collect();
        History {
            steps: (1..=3)
                .map(|step| Observation {
                    step,
                    layers: layers.clone(),
                    grad_norm: 1.0,
                })
                .collect(),
        }
    }
}
