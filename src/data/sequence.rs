//! Built-in sequence tasks with a controllable length, seeded and deterministic:
//!
//! - **adding** (Hochreiter & Schmidhuber 1997, experiment 4; the form of Le et al. 2015):
//!   each step carries a value uniform in [0, 1) and a marker; exactly two steps are
//!   marked, one in each half of the sequence, and the target is the sum of their values.
//!   Predicting the mean (1) gives an MSE equal to the variance of the sum of two uniforms,
//!   1/6 ≈ 0.167: the trivial baseline a model must beat by carrying information across the
//!   sequence.
//! - **memory** (the long-time-lag recall of Hochreiter & Schmidhuber 1997, experiment 2):
//!   the first token is one of `symbols` payload symbols, the next T − 2 are random
//!   distractors, the last is a recall marker, and the label is the first token: the model
//!   must hold one symbol for T steps. Chance accuracy is 1/symbols. Tokens go through an
//!   embedding.
//! - **rows**: the bundled Fashion-MNIST images read as a sequence of T steps of 784/T
//!   pixels (T = 28: row by row; T = 784: pixel by pixel).
//!
//! Every record is drawn from a ChaCha8 stream keyed by (task, seed, split), so a seed gives
//! the same data on every machine.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::dataset::Dataset;
use crate::{Error, Result};

/// Pixels of a Fashion-MNIST image.
const IMAGE_PIXELS: usize = 784;

/// Distractor symbols of the memory task.
pub const MEMORY_DISTRACTORS: usize = 8;

/// A built-in sequence task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqTask {
    Adding,
    /// Recall the first of `symbols` payload symbols.
    Memory {
        symbols: usize,
    },
    /// Fashion-MNIST as a sequence.
    Rows,
}

impl SeqTask {
    pub const NAMES: [&'static str; 3] = ["adding", "memory", "rows"];

    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "adding" => Some(SeqTask::Adding),
            "memory" | "copy" => Some(SeqTask::Memory { symbols: 4 }),
            "rows" | "sequential-fashion" | "fashion-rows" => Some(SeqTask::Rows),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SeqTask::Adding => "adding",
            SeqTask::Memory { .. } => "memory",
            SeqTask::Rows => "rows",
        }
    }

    /// Features per step (token ids count as one).
    pub fn features(self, steps: usize) -> usize {
        match self {
            SeqTask::Adding => 2,
            SeqTask::Memory { .. } => 1,
            SeqTask::Rows => IMAGE_PIXELS / steps.max(1),
        }
    }

    /// The vocabulary of a token task (None for real-valued steps).
    pub fn vocab(self) -> Option<usize> {
        match self {
            SeqTask::Memory { symbols } => Some(symbols + MEMORY_DISTRACTORS + 1),
            _ => None,
        }
    }

    /// Outputs of the read-out: one value, or the classes.
    pub fn outputs(self) -> usize {
        match self {
            SeqTask::Adding => 1,
            SeqTask::Memory { symbols } => symbols,
            SeqTask::Rows => 10,
        }
    }

    /// Whether the task is a regression (MSE on real targets).
    pub fn regression(self) -> bool {
        self == SeqTask::Adding
    }

    /// Refuses a length the task cannot have, before any data is made.
    pub fn check_steps(self, steps: usize) -> Result<()> {
        if steps == 0 {
            return Err(Error::config(
                "the sequence length is 0; it must be at least 1",
            ));
        }
        match self {
            SeqTask::Adding | SeqTask::Memory { .. } if steps < 2 => Err(Error::config(format!(
                "the {} task needs a sequence length of at least 2, got {steps}",
                self.name()
            ))),
            SeqTask::Rows if !IMAGE_PIXELS.is_multiple_of(steps) => Err(Error::config(format!(
                "row-by-row Fashion-MNIST reads a 28×28 image in T steps of 784/T pixels, so T \
                 must divide 784 (28 for rows, 784 for pixels, or 1, 2, 4, 7, 14, 16, 49, 56, \
                 98, 112, 196, 392); got {steps}"
            ))),
            _ => Ok(()),
        }
    }
}

fn rng(task: &[u8; 8], seed: u64, split: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(task);
    key[8..16].copy_from_slice(&seed.to_le_bytes());
    key[16..24].copy_from_slice(&split.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// `n` adding-problem sequences of `steps`: inputs [n, steps, 2] (value, marker), label 0,
/// target the sum of the two marked values.
pub fn adding(n: usize, steps: usize, seed: u64, split: u64) -> Result<Dataset> {
    SeqTask::Adding.check_steps(steps)?;
    let mut r = rng(b"gs-addng", seed, split);
    let mut inputs = Vec::with_capacity(n * steps * 2);
    let mut targets = Vec::with_capacity(n);
    let half = steps / 2;
    for _ in 0..n {
        let first = r.random_range(0..half);
        let second = half + r.random_range(0..steps - half);
        let mut sum = 0.0f32;
        for t in 0..steps {
            let v: f32 = r.random_range(0.0..1.0);
            let mark = t == first || t == second;
            if mark {
                sum += v;
            }
            inputs.extend([v, mark as u32 as f32]);
        }
        targets.push(sum);
    }
    let mut ds = Dataset::from_parts(
        inputs,
        vec![0; n],
        steps * 2,
        1,
        None,
        format!("adding/T={steps}"),
    )?;
    ds.targets = targets;
    Ok(ds)
}

/// `n` memory-task sequences of `steps` token ids: the payload symbol (0..symbols), T − 2
/// distractors (symbols..symbols + MEMORY_DISTRACTORS), the recall marker; label the payload.
pub fn memory(n: usize, steps: usize, symbols: usize, seed: u64, split: u64) -> Result<Dataset> {
    SeqTask::Memory { symbols }.check_steps(steps)?;
    if symbols < 2 {
        return Err(Error::config("the memory task needs at least 2 symbols"));
    }
    let mut r = rng(b"gs-memry", seed, split);
    let marker = (symbols + MEMORY_DISTRACTORS) as f32;
    let mut inputs = Vec::with_capacity(n * steps);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let payload = r.random_range(0..symbols);
        labels.push(payload as u32);
        inputs.push(payload as f32);
        for _ in 1..steps - 1 {
            inputs.push((symbols + r.random_range(0..MEMORY_DISTRACTORS)) as f32);
        }
        inputs.push(marker);
    }
    Dataset::from_parts(
        inputs,
        labels,
        steps,
        symbols,
        None,
        format!("memory/T={steps}"),
    )
}

/// The bundled Fashion-MNIST images as sequences of `steps` steps (the records are the
/// same, read in row-major order; only the model sees them as [steps, 784/steps]).
pub fn rows(steps: usize) -> Result<Dataset> {
    SeqTask::Rows.check_steps(steps)?;
    let mut ds = super::bundled_fashion_mnist()?;
    ds.image = None;
    ds.name = format!(
        "fashion-mnist/test as {steps} steps of {}",
        IMAGE_PIXELS / steps
    );
    Ok(ds)
}

/// The (train, validation) data of a synthetic task: `n_train` and `n_train / 8` records
/// from independent streams of one seed. (`rows` is split from the bundled set instead.)
pub fn synthetic(
    task: SeqTask,
    steps: usize,
    n_train: usize,
    seed: u64,
) -> Result<(Dataset, Dataset)> {
    let n_val = (n_train / 8).max(1);
    match task {
        SeqTask::Adding => Ok((
            adding(n_train, steps, seed, 0)?,
            adding(n_val, steps, seed, 1)?,
        )),
        SeqTask::Memory { symbols } => Ok((
            memory(n_train, steps, symbols, seed, 0)?,
            memory(n_val, steps, symbols, seed, 1)?,
        )),
        SeqTask::Rows => Err(Error::config(
            "the rows task reads the bundled images; use `rows`",
        )),
    }
}
