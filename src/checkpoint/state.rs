//! What a checkpoint holds and how it maps onto a plan's buffers: capture from an executor,
//! restore into one (checking every name, shape and dtype), and load weights only.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::Dtype;
use serde::{Deserialize, Serialize};

use super::format::{StoredTensor, TensorFile};
use crate::config::TrainConfig;
use crate::data::loader::Cursor;
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::plan::Plan;

/// The value of the `format` metadata entry.
pub const FORMAT: &str = "gradscope-checkpoint";
/// The value of the `format_version` metadata entry; bumped on any incompatible change.
pub const FORMAT_VERSION: &str = "1";
/// Optimizer state tensors are named `optimizer.<param>.state<i>`.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// Where the training loop stands after a step: everything besides the tensors that a
/// resumed run needs to continue as if it had never stopped.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer steps taken (the step index of the last one; Adam's t).
    pub step: u64,
    /// The data loader's position after that step.
    pub cursor: Cursor,
    /// The running sums of the current epoch's training loss, correct predictions and
    /// steps (for the epoch's mean in the summary). The f64 is kept as its bits, so that it
    /// round-trips exactly through JSON.
    pub epoch_loss_bits: u64,
    pub epoch_correct: u64,
    pub epoch_steps: u64,
    /// Steps whose update was discarded (`--on-nonfinite skip`): the schedule and Adam's
    /// step count run `skipped_steps` behind the step index.
    #[serde(default)]
    pub skipped_steps: u64,
}

impl Progress {
    /// The start of a fresh run.
    pub fn start() -> Self {
        Progress {
            step: 0,
            cursor: Cursor {
                epoch: 0,
                position: 0,
            },
            epoch_loss_bits: 0f64.to_bits(),
            epoch_correct: 0,
            epoch_steps: 0,
            skipped_steps: 0,
        }
    }

    /// (sum of losses, correct, steps) of the current epoch.
    pub fn epoch_loss(&self) -> (f64, u64, u64) {
        (
            f64::from_bits(self.epoch_loss_bits),
            self.epoch_correct,
            self.epoch_steps,
        )
    }

    pub fn with_epoch_loss(mut self, (sum, correct, steps): (f64, u64, u64)) -> Self {
        self.epoch_loss_bits = sum.to_bits();
        self.epoch_correct = correct;
        self.epoch_steps = steps;
        self
    }
}

/// The name of state slot `slot` of parameter `param`.
pub fn state_name(param: &str, slot: usize) -> String {
    format!("{OPTIMIZER_PREFIX}{param}.state{slot}")
}

/// Every tensor of a checkpoint of `exec`'s plan, in a fixed order: the parameters in plan
/// order, BatchNorm's running statistics, then the optimizer state.
pub fn capture(exec: &mut dyn Executor) -> Result<Vec<StoredTensor>> {
    let slots = exec.plan().params.clone();
    let mut out = Vec::with_capacity(slots.len() * 3);
    for p in &slots {
        let values = exec.read(p.value)?;
        out.push(StoredTensor::from_f32(&p.name, p.shape.clone(), &values));
    }
    // BatchNorm's running statistics, under PyTorch's state-dict names.
    for (name, buf, _) in exec.plan().running.clone() {
        let values = exec.read(buf)?;
        out.push(StoredTensor::from_f32(name, vec![values.len()], &values));
    }
    for p in &slots {
        for (i, &id) in p.state.iter().enumerate() {
            let values = exec.read(id)?;
            out.push(StoredTensor::from_f32(
                state_name(&p.name, i),
                p.shape.clone(),
                &values,
            ));
        }
    }
    Ok(out)
}

/// The metadata of a checkpoint (all strings, as safetensors requires).
pub fn metadata(
    plan: &Plan,
    config: &TrainConfig,
    progress: &Progress,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("format".into(), FORMAT.into());
    m.insert("format_version".into(), FORMAT_VERSION.into());
    m.insert("step".into(), progress.step.to_string());
    m.insert(
        "progress".into(),
        serde_json::to_string(progress).unwrap_or_default(),
    );
    m.insert(
        "cursor".into(),
        serde_json::to_string(&progress.cursor).unwrap_or_default(),
    );
    m.insert("seed".into(), config.seed.to_string());
    m.insert(
        "rng".into(),
        "no generator state is consumed during training: parameter init is ChaCha8 seeded \
         by `seed` (sub-stream i for parameter i), and epoch e's data order is ChaCha8 keyed \
         by (seed, e), so `seed` and `cursor` restore both"
            .into(),
    );
    m.insert("optimizer".into(), plan.optimizer.kind.name().into());
    m.insert(
        "optimizer_state".into(),
        "optimizer.<param>.state<i>: state slot i of the optimizer for <param> (momentum/\
         adagrad/rmsprop: state0 = the one accumulator; adam/adamw: state0 = first moment \
         m, state1 = second moment v); the step counter t is `step`"
            .into(),
    );
    m.insert("config".into(), config.to_toml());
    m
}

/// Reads the progress entry of a checkpoint and checks its format version.
pub fn progress_of(file: &TensorFile) -> Result<Progress> {
    let format = file.meta("format")?;
    let version = file.meta("format_version")?;
    if format != FORMAT || version != FORMAT_VERSION {
        return Err(Error::checkpoint(
            &file.path,
            format!(
                "format `{format}` version `{version}`; this build reads `{FORMAT}` version \
                 `{FORMAT_VERSION}`"
            ),
        ));
    }
    let progress: Progress = serde_json::from_str(file.meta("progress")?).map_err(|e| {
        Error::checkpoint(&file.path, format!("metadata `progress` is malformed: {e}"))
    })?;
    let step: u64 = file.meta("step")?.parse().map_err(|e| {
        Error::checkpoint(&file.path, format!("metadata `step` is not a number: {e}"))
    })?;
    if step != progress.step {
        return Err(Error::checkpoint(
            &file.path,
            format!(
                "metadata disagrees: `step` is {step} but `progress` says {}",
                progress.step
            ),
        ));
    }
    Ok(progress)
}

/// One expected tensor: its name, the buffer it goes to, its shape.
struct Expected {
    name: String,
    buf: crate::plan::BufId,
    shape: Vec<usize>,
}

fn expected(plan: &Plan, with_state: bool) -> Vec<Expected> {
    let mut out = Vec::new();
    for p in &plan.params {
        out.push(Expected {
            name: p.name.clone(),
            buf: p.value,
            shape: p.shape.clone(),
        });
    }
    for (name, buf, _) in &plan.running {
        out.push(Expected {
            name: name.clone(),
            buf: *buf,
            shape: vec![plan.buffer(*buf).numel],
        });
    }
    if with_state {
        for p in &plan.params {
            for (i, &id) in p.state.iter().enumerate() {
                out.push(Expected {
                    name: state_name(&p.name, i),
                    buf: id,
                    shape: p.shape.clone(),
                });
            }
        }
    }
    out
}

/// Checks `file` against what the plan expects and lists every mismatch: missing tensors,
/// wrong shape or dtype (expected vs found), and tensors the model does not have (unless
/// `ignore_extra` says which may be ignored).
fn check(
    file: &TensorFile,
    want: &[Expected],
    ignore_extra: impl Fn(&str) -> bool,
) -> Result<Vec<Vec<f32>>> {
    let mut faults = Vec::new();
    let mut values = Vec::with_capacity(want.len());
    for e in want {
        match file.get(&e.name) {
            None => faults.push(format!(
                "`{}` is missing (expected F32 {:?})",
                e.name, e.shape
            )),
            Some(t) => {
                if t.dtype != Dtype::F32 {
                    faults.push(format!(
                        "`{}` has dtype {:?}, expected F32",
                        e.name, t.dtype
                    ));
                } else if t.shape != e.shape {
                    faults.push(format!(
                        "`{}` has shape {:?}, expected {:?}",
                        e.name, t.shape, e.shape
                    ));
                } else if let Some(v) = t.to_f32() {
                    values.push(v);
                }
            }
        }
    }
    for t in &file.tensors {
        if !want.iter().any(|e| e.name == t.name) && !ignore_extra(&t.name) {
            faults.push(format!(
                "`{}` ({:?} {:?}) is not a tensor of this model",
                t.name, t.dtype, t.shape
            ));
        }
    }
    if faults.is_empty() {
        Ok(values)
    } else {
        Err(Error::checkpoint(
            &file.path,
            format!(
                "does not match the model ({} problem{}): {}",
                faults.len(),
                if faults.len() == 1 { "" } else { "s" },
                faults.join("; ")
            ),
        ))
    }
}

/// Writes a checkpoint's parameters and optimizer state into `exec`, after checking every
/// tensor against the plan; returns the checkpoint's progress.
pub fn restore(exec: &mut dyn Executor, file: &TensorFile) -> Result<Progress> {
    let progress = progress_of(file)?;
    let want = expected(exec.plan(), true);
    let values = check(file, &want, |_| false)?;
    for (e, v) in want.iter().zip(&values) {
        exec.write(e.buf, v)?;
    }
    Ok(progress)
}

/// Loads the parameters (only) from a safetensors file, e.g. weights saved by PyTorch for a
/// model of the same shape. Every parameter must be present with its exact shape and F32;
/// optimizer entries of a gradscope checkpoint are ignored; anything else is a mismatch.
pub fn init_from(exec: &mut dyn Executor, path: &Path) -> Result<()> {
    let file = super::format::read(path)?;
    let want = expected(exec.plan(), false);
    let values = check(&file, &want, |n| n.starts_with(OPTIMIZER_PREFIX))?;
    for (e, v) in want.iter().zip(&values) {
        exec.write(e.buf, v)?;
    }
    Ok(())
}
