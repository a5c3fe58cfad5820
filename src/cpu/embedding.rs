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
use crate::cpu::aligned::AlignedBuf;

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
    embedding_backward_with(
        ids,
        dy,
        dw,
        rows,
        vocab,
        dim,
        accumulate,
        &mut AlignedBuf::default(),
    );
}

/// `embedding_backward` with the sums of an accumulating pass in `scratch` (grown if too
/// small, never shrunk: the executor's, so a warm step allocates nothing). Each sum starts
/// at zero and adds its rows in order, as the shader's invocation does; an accumulating
/// pass then adds the sum to the gradient, an overwriting one is the sum.
#[allow(clippy::too_many_arguments)]
pub fn embedding_backward_with<T: Element>(
    ids: &[T],
    dy: &[T],
    dw: &mut [T],
    rows: usize,
    vocab: usize,
    dim: usize,
    accumulate: bool,
    scratch: &mut AlignedBuf<T>,
) {
    let len = vocab * dim;
    let sum: &mut [T] = if accumulate {
        scratch.grow(len);
        &mut scratch[..len]
    } else {
        &mut dw[..len]
    };
    sum.fill(T::zero());
    for r in 0..rows {
        if let Some(v) = token_row(ids[r], vocab) {
            let row = &mut sum[v * dim..(v + 1) * dim];
            for (s, &g) in row.iter_mut().zip(&dy[r * dim..(r + 1) * dim]) {
                *s = *s + g;
            }
        }
    }
    if accumulate {
        for (d, &s) in dw[..len].iter_mut().zip(&scratch[..len]) {
            *d = *d + s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sums taken apart in a fresh vector, as the twin first did: the reference.
    fn reference(ids: &[f32], dy: &[f32], dw: &mut [f32], vocab: usize, dim: usize, acc: bool) {
        let mut sum = vec![0f32; vocab * dim];
        for (r, &id) in ids.iter().enumerate() {
            if let Some(v) = token_row(id, vocab) {
                for e in 0..dim {
                    sum[v * dim + e] += dy[r * dim + e];
                }
            }
        }
        for (d, s) in dw.iter_mut().zip(sum) {
            *d = if acc { *d + s } else { s };
        }
    }

    /// Repeated ids, ids outside the table, and a dirty scratch longer than needed.
    #[test]
    fn scratch_sums_give_the_bits_of_fresh_ones() {
        let (vocab, dim) = (5, 3);
        let ids = [1.0, 4.0, 1.0, -1.0, 2.5, 1.0, 0.0, 7.0];
        let dy: Vec<f32> = (0..ids.len() * dim)
            .map(|i| (i as f32 * 0.731).sin())
            .collect();
        for accumulate in [false, true] {
            let mut dw: Vec<f32> = (0..vocab * dim).map(|i| i as f32 * 0.1 - 0.5).collect();
            let mut want = dw.clone();
            let mut scratch = AlignedBuf::from_slice(&[f32::NAN; 100]);
            embedding_backward_with(
                &ids,
                &dy,
                &mut dw,
                ids.len(),
                vocab,
                dim,
                accumulate,
                &mut scratch,
            );
            reference(&ids, &dy, &mut want, vocab, dim, accumulate);
            for (i, (g, w)) in dw.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "accumulate {accumulate}, dw[{i}]");
            }
        }
    }
}
