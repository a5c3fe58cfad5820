//! Mini-batches from a [`Dataset`] in a seeded shuffled order, written into buffers the
//! caller allocated once (the step loop allocates nothing).
//!
//! Each epoch visits every record at most once, in the order of a permutation drawn from
//! a ChaCha8 stream keyed by `(seed, epoch)`: the same seed gives the same order on every
//! machine, each epoch's order differs, and the order of epoch `e` can be rebuilt from
//! `(seed, e)` alone. That is what makes a [`Cursor`] (epoch, position) enough to resume a
//! run exactly where a checkpoint left it.
//!
//! **The last partial batch of an epoch is dropped**: with `n` records and batch size `b`
//! an epoch has `n / b` batches and the `n % b` records left at the end of that epoch's
//! permutation are skipped (they are other records in the next epoch). Every batch then
//! has the same shape, which the precompiled GPU plan needs, and the gradient scale does
//! not jump on a small last batch.

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};

use super::dataset::{Dataset, seeded_rng, shuffle};
use crate::{Error, Result};

/// Where a loader stands: `position` records of epoch `epoch` have been handed out.
/// Saved in checkpoints; [`BatchLoader::set_cursor`] resumes from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub epoch: u64,
    pub position: usize,
}

/// Hands out batches of `batch_size` records. `D` is anything that borrows a [`Dataset`]:
/// `&Dataset`, `Arc<Dataset>` or an owned `Dataset`.
#[derive(Debug)]
pub struct BatchLoader<D: Borrow<Dataset>> {
    data: D,
    batch_size: usize,
    seed: u64,
    epoch: u64,
    position: usize,
    /// This epoch's order; rebuilt in place at each epoch, never reallocated.
    order: Vec<u32>,
}

impl<D: Borrow<Dataset>> BatchLoader<D> {
    /// A loader at the start of epoch 0.
    pub fn new(data: D, batch_size: usize, seed: u64) -> Result<Self> {
        let ds = data.borrow();
        if batch_size == 0 {
            return Err(Error::config("the batch size must be at least 1"));
        }
        if batch_size > ds.n {
            return Err(Error::config(format!(
                "batch size {batch_size} is larger than data set `{}` ({} records); \
                 partial batches are dropped, so there would be no batch at all",
                ds.name, ds.n
            )));
        }
        if u32::try_from(ds.n).is_err() {
            return Err(Error::config(format!(
                "data set `{}` has {} records, more than the loader's limit of {}",
                ds.name,
                ds.n,
                u32::MAX
            )));
        }
        let mut loader = BatchLoader {
            order: Vec::with_capacity(ds.n),
            data,
            batch_size,
            seed,
            epoch: 0,
            position: 0,
        };
        loader.build_order();
        Ok(loader)
    }

    /// The data set this loader reads.
    pub fn dataset(&self) -> &Dataset {
        self.data.borrow()
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The epoch the next [`fill`](Self::fill) reads from, counted from 0.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// `n / batch_size`: full batches only, see the module comment.
    pub fn batches_per_epoch(&self) -> usize {
        self.dataset().n / self.batch_size
    }

    /// Where the loader stands, for a checkpoint.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            epoch: self.epoch,
            position: self.position,
        }
    }

    /// Jumps to a saved cursor; the following batches are those that followed it when it
    /// was saved (same data set, batch size and seed assumed).
    pub fn set_cursor(&mut self, cursor: Cursor) -> Result<()> {
        let end = self.batches_per_epoch() * self.batch_size;
        if !cursor.position.is_multiple_of(self.batch_size) || cursor.position > end {
            return Err(Error::config(format!(
                "cannot resume data set `{}` at record {} of epoch {}: with batch size {} a \
                 position must be a multiple of it and at most {end}; was the checkpoint \
                 written with another batch size or data set?",
                self.dataset().name,
                cursor.position,
                cursor.epoch,
                self.batch_size
            )));
        }
        if cursor.epoch != self.epoch {
            self.epoch = cursor.epoch;
            self.build_order();
        }
        self.position = cursor.position;
        Ok(())
    }

    /// The record indices of the next batch, without advancing (for tests and debugging).
    pub fn peek_indices(&self) -> Option<&[u32]> {
        let end = self.position + self.batch_size;
        (end <= self.batches_per_epoch() * self.batch_size).then(|| &self.order[self.position..end])
    }

    /// Writes the next batch: `inputs` gets `batch_size × dim` values (row-major), `labels`
    /// `batch_size` labels. Returns `false`, writing nothing, when the epoch has no full
    /// batch left; the loader has then moved to the start of the next epoch, so the next
    /// call returns its first batch.
    ///
    /// # Panics
    /// If the buffers do not have exactly `batch_size × dim` and `batch_size` elements:
    /// they are allocated once by the caller from [`batch_size`](Self::batch_size), so a
    /// mismatch is a bug in the caller, not bad input.
    pub fn fill(&mut self, inputs: &mut [f32], labels: &mut [u32]) -> bool {
        let (b, dim) = (self.batch_size, self.dataset().dim);
        assert_eq!(
            inputs.len(),
            b * dim,
            "BatchLoader::fill: inputs buffer must hold batch_size × dim = {b} × {dim}"
        );
        assert_eq!(
            labels.len(),
            b,
            "BatchLoader::fill: labels buffer must hold batch_size = {b}"
        );
        if self.position + b > self.batches_per_epoch() * b {
            self.epoch += 1;
            self.position = 0;
            self.build_order();
            return false;
        }
        let ds: &Dataset = self.data.borrow();
        let rows = &self.order[self.position..self.position + b];
        for ((&r, dst), label) in rows.iter().zip(inputs.chunks_exact_mut(dim)).zip(labels) {
            dst.copy_from_slice(ds.record(r as usize));
            *label = ds.labels[r as usize];
        }
        self.position += b;
        true
    }

    /// The regression targets (see [`Dataset::targets`]) of the records the last successful
    /// [`fill`](Self::fill) handed out, in batch order, into `out` (batch × targets per
    /// record). Writes nothing for classification data.
    pub fn fill_targets(&self, out: &mut [f32]) {
        let ds: &Dataset = self.data.borrow();
        let per = ds.targets_per_record();
        let b = self.batch_size;
        if per == 0 || self.position < b {
            return;
        }
        let rows = &self.order[self.position - b..self.position];
        for (&r, dst) in rows.iter().zip(out.chunks_exact_mut(per)) {
            let r = r as usize;
            dst.copy_from_slice(&ds.targets[r * per..(r + 1) * per]);
        }
    }

    /// Rebuilds `order` for `self.epoch` in place: identity, then the epoch's shuffle.
    fn build_order(&mut self) {
        let n = self.data.borrow().n as u32;
        self.order.clear();
        self.order.extend(0..n);
        shuffle(
            &mut self.order,
            &mut seeded_rng(b"gs-epoch", self.seed, self.epoch),
        );
    }
}

/// Writes one-hot targets for a mean-squared-error loss: row `i` of `out` (length
/// `classes`) is 1 at `labels[i]` and 0 elsewhere.
pub fn one_hot(labels: &[u32], classes: usize, out: &mut [f32]) -> Result<()> {
    if out.len() != labels.len() * classes {
        return Err(Error::shape(
            "one_hot",
            format!(
                "out has {} values, expected {} labels × {classes} classes",
                out.len(),
                labels.len()
            ),
        ));
    }
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= classes)
    {
        return Err(Error::shape(
            "one_hot",
            format!("label {l} at batch row {i} is not below {classes} classes"),
        ));
    }
    out.fill(0.0);
    for (row, &l) in out.chunks_exact_mut(classes.max(1)).zip(labels) {
        row[l as usize] = 1.0;
    }
    Ok(())
}
