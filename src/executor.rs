//! What both executors offer the training loop: load a batch, run a step, collect the
//! reports of finished steps, evaluate, and read or write any tensor of the plan.

use crate::error::Result;
use crate::ops::StepScalars;
use crate::plan::{BufId, Plan};
use crate::stats::RawStats;

/// How much statistics a step takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsLevel {
    /// None at all (for measuring what statistics cost).
    None,
    /// The gradient records only: the per-step total gradient norm.
    Gradients,
    /// Every record of every layer.
    Full,
}

impl StatsLevel {
    /// Whether a statistics op of `class` runs at this level.
    pub fn runs(self, class: crate::plan::StatsClass) -> bool {
        match class {
            crate::plan::StatsClass::EveryStep => self != StatsLevel::None,
            crate::plan::StatsClass::StatsSteps => self == StatsLevel::Full,
        }
    }
}

/// What one finished training step reports.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub step: u64,
    /// Mean loss of the batch (before the update).
    pub loss: f32,
    /// Correct predictions in the batch.
    pub correct: u32,
    /// The statistics this step took; records of ops that did not run are stale.
    pub stats: StatsLevel,
    /// One record per `Plan::stats_jobs` entry.
    pub records: Vec<RawStats>,
    /// Dead units per `Plan::dead_unit_layers` entry (current on full-stats steps).
    pub dead_units: Vec<u32>,
    /// The global gradient norm before and after clipping, and whether the update was
    /// discarded, on plans with a global-norm op (`Op::ClipNorm`).
    pub clip: Option<crate::cpu::clip::ClipDecision>,
    /// ‖dL/dh_t‖ for every step of every recurrent layer, laid out as
    /// `Plan::recurrent_layers` says (current on full-stats steps; empty without such layers).
    pub hidden_norms: Vec<f32>,
}

pub trait Executor {
    /// Which executor and device, in one line ("gpu: NVIDIA H200 (vulkan, …)").
    fn describe(&self) -> String;

    fn plan(&self) -> &Plan;

    /// Writes a batch: `inputs` is batch × features, `labels` batch class indices.
    fn load_batch(&mut self, inputs: &[f32], labels: &[u32]) -> Result<()>;

    /// Overwrites the MSE targets of the loaded batch with real values (batch × outputs),
    /// for regression data such as the adding problem; call after `load_batch`, which
    /// fills them with the labels' one-hot vectors.
    fn load_targets(&mut self, targets: &[f32]) -> Result<()> {
        let buf = self.plan().targets.ok_or_else(|| {
            crate::Error::config("real-valued targets need a model trained with the MSE loss")
        })?;
        self.write(buf, targets)
    }

    /// Runs one training step on the loaded batch. The GPU executor only submits; the
    /// step's report arrives through `finished`.
    fn train_step(&mut self, step: u64, scalars: StepScalars, stats: StatsLevel) -> Result<()>;

    /// Reports of the steps finished so far, in step order; with `wait`, of every step run.
    fn finished(&mut self, wait: bool) -> Result<Vec<StepReport>>;

    /// Forward and loss on the loaded batch, counting only its first `valid` rows: returns
    /// (sum of the per-sample losses, correct predictions) over those rows.
    fn evaluate(&mut self, valid: usize) -> Result<(f64, u32)>;

    /// Reads a float tensor of the plan (waits for the device).
    fn read(&mut self, buf: BufId) -> Result<Vec<f32>>;

    /// Overwrites a float tensor of the plan.
    fn write(&mut self, buf: BufId, data: &[f32]) -> Result<()>;

    /// Bytes the executor holds for the plan (the plan's own buffers, and on the GPU the
    /// statistics and readback buffers).
    fn allocated_bytes(&self) -> u64 {
        self.plan().total_bytes()
    }

    /// Times every op of every later step (`gradscope train --profile`). The ops, their
    /// order and their results are those of an unprofiled step; only timing is added (and
    /// the GPU executor then waits for each step).
    fn enable_profiling(&mut self) -> Result<()> {
        Err(crate::Error::config(format!(
            "{} cannot profile its steps",
            self.describe()
        )))
    }

    /// The profile of the steps run since profiling was enabled (None if none ran).
    fn take_profile(&mut self) -> Option<crate::profile::Profile> {
        None
    }
}

/// Checks a batch against the plan's sizes.
pub fn check_batch(plan: &Plan, inputs: &[f32], labels: &[u32]) -> Result<()> {
    let want_in = plan.batch * plan.input_features;
    let want_labels = plan.batch * plan.label_rows;
    if inputs.len() != want_in || labels.len() != want_labels {
        return Err(crate::Error::shape(
            "load_batch",
            format!(
                "plan expects {} inputs ({} × {}) and {} labels, got {} and {}",
                want_in,
                plan.batch,
                plan.input_features,
                want_labels,
                inputs.len(),
                labels.len()
            ),
        ));
    }
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= plan.classes)
    {
        return Err(crate::Error::shape(
            "load_batch",
            format!(
                "label {l} at batch row {i} is not below the {} classes",
                plan.classes
            ),
        ));
    }
    Ok(())
}
