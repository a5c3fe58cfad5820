//! CPU twin of the embedding kernels in shaders/embedding.wgsl: a lookup table
//! `weight [V, E]` (nn.Embedding's layout) indexed by token ids, and its gradient.
//!
//! Token ids arrive as f32 values in the input batch (exact up to 2^24). An id that is not
//! an integer in 0..V selects no row: its output is zero and it contributes no gradient,
//! on both executors (the loader checks ids before they reach the device).
//!
//! The gradient is a scatter-add, dW[v] = Σ_{r : id_r = v} dy[r], written without atomics:
//! each (v, e) sums its rows in increasing r, so both executors add in the same order and
//! the result is reproducible bit for bit.

use crate::cpu::Element;

/// The row of `id` in a table of `vocab` rows, or None.
pub fn token_row<T: Element>(id: T, vocab: usize) -> Option<usize> {
    let v = id.to_f64();
    (v >= 0.0 && v.fract() == 0.0 && v < vocab as f64).then_some(v as usize)
}

/// out[r, :] = weight[ids[r], :] for r < rows.
pub fn embedding_forward<T: Element>(
    ids: &[T],
    weight: &[T],
    out: &mut [T],
    rows: usize,
    vocab: usize,
    dim: usize,
) {
    for r in 0..rows {
        let dst = &mut out[r * dim..(r + 1) * dim];
        match token_row(ids[r], vocab) {
            Some(v) => dst.copy_from_slice(&weight[v * dim..(v + 1) * dim]),
            None => dst.iter_mut().for_each(|x| *x = T::zero()),
        }
    }
}

/// dW[v, :] (+)= Σ_{r : ids[r] = v} dy[r, :], rows in increasing order; `accumulate` adds to
/// the existing gradient (a table shared by several nodes).
#[allow(clippy::too_many_arguments)]
pub fn embedding_backward<T: Element>(
    ids: &[T],
    dy: &[T],
    dw: &mut [T],
    rows: usize,
    vocab: usize,
    dim: usize,
    accumulate: bool,
) {
    let mut sum = vec![T::zero(); vocab * dim];
    for r in 0..rows {
        if let Some(v) = token_row(ids[r], vocab) {
            for e in 0..dim {
                sum[v * dim + e] = sum[v * dim + e] + dy[r * dim + e];
            }
        }
    }
    for (d, s) in dw[..vocab * dim].iter_mut().zip(sum) {
        *d = if accumulate { *d + s } else { s };
    }
}
