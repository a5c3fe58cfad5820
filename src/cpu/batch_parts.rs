//! The batch cut into a fixed number of contiguous parts, for the passes that sum over its
//! images (the convolutions' weight gradients): each part is summed apart, by whichever
//! thread takes it, and the parts' sums are added in part order, so the result depends on
//! the batch alone, never on the thread count. Each thread takes a run of parts through
//! buffers of its own, so that it lays out each of its images once, in its own core's
//! cache (conv2d_channels.rs, conv2d_direct.rs and conv2d_weight_nhwc.rs say what was
//! measured against the alternatives).

use std::ops::Range;

/// Parts of the batch, at most: enough for the threads of a workstation CPU to share, few
/// enough that the parts' accumulators (a copy of dw each) stay small.
const MAX_PARTS: usize = 8;

/// How a batch of images is cut into parts, and the parts shared among the threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BatchParts {
    /// Images per part (the last part may hold fewer), and parts (`MAX_PARTS` at most).
    pub per_part: usize,
    pub parts: usize,
    /// Workers, one per rayon thread and at most one per part, each taking a run of
    /// `per_worker()` parts.
    pub workers: usize,
}

impl BatchParts {
    /// The parts of a batch of `n` images (one empty part for an empty batch).
    pub(super) fn new(n: usize) -> Self {
        let per_part = n.div_ceil(MAX_PARTS).max(1);
        let parts = n.div_ceil(per_part).max(1);
        BatchParts {
            per_part,
            parts,
            workers: rayon::current_num_threads().clamp(1, parts),
        }
    }

    /// Parts per worker: worker w takes parts w·per_worker() and on.
    pub(super) fn per_worker(&self) -> usize {
        self.parts.div_ceil(self.workers)
    }

    /// The images of `part` in a batch of `n`.
    pub(super) fn images(&self, part: usize, n: usize) -> Range<usize> {
        (part * self.per_part).min(n)..((part + 1) * self.per_part).min(n)
    }
}

/// Adds parts 1.. of `accs` (each `part_len` values) into part 0, in part order, and returns
/// part 0.
pub(super) fn add_parts_in_order(accs: &mut [f32], part_len: usize) -> &mut [f32] {
    let (first, rest) = accs.split_at_mut(part_len);
    for part in rest.chunks(part_len) {
        for (a, &b) in first.iter_mut().zip(part) {
            *a += b;
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every image of the batch in exactly one part, in order, for batches around the
    /// part count.
    #[test]
    fn parts_cover_the_batch_once_in_order() {
        for n in 0..40 {
            let b = BatchParts::new(n);
            assert!(b.parts >= 1 && b.parts <= MAX_PARTS && b.workers >= 1);
            assert!(b.workers <= b.parts && b.per_worker() * b.workers >= b.parts);
            let covered: Vec<usize> = (0..b.parts).flat_map(|p| b.images(p, n)).collect();
            assert_eq!(covered, (0..n).collect::<Vec<_>>(), "batch of {n}");
        }
    }

    #[test]
    fn parts_are_added_in_order_into_the_first() {
        let mut accs = vec![1.0, 2.0, 10.0, 20.0, 100.0, 200.0];
        assert_eq!(add_parts_in_order(&mut accs, 2), &[111.0, 222.0]);
    }
}
