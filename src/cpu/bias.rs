//! CPU twin of shaders/bias.wgsl: the bias add of a dense layer and its gradient.
//!
//! The gradient sums every column in the GPU kernel's order, so both executors round the
//! same way: row lane l (of BIAS_LANES) sums the rows r ≡ l (mod BIAS_LANES) in increasing
//! order, then lane l absorbs lane l + 4, then l + 2, then l + 1. db is a parameter gradient:
//! `accumulate` adds the column sum to it instead of overwriting it.

use rayon::prelude::*;

use crate::cpu::Element;

/// y(rows, cols) += bias(cols), broadcast over rows.
pub fn bias_forward<T: Element>(y: &mut [T], bias: &[T], rows: usize, cols: usize) {
    assert!(
        y.len() >= rows * cols && bias.len() >= cols,
        "bias_forward: y has {} elements, bias {}, for rows {rows} × cols {cols}",
        y.len(),
        bias.len()
    );
    if cols == 0 {
        return;
    }
    for row in y[..rows * cols].chunks_exact_mut(cols) {
        for (v, &b) in row.iter_mut().zip(&bias[..cols]) {
            *v = *v + b;
        }
    }
}

/// db(cols) = Σ_rows dy(rows, cols), or db += that sum when `accumulate`.
pub fn bias_backward<T: Element>(
    dy: &[T],
    db: &mut [T],
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    assert!(
        dy.len() >= rows * cols && db.len() >= cols,
        "bias_backward: dy has {} elements, db {}, for rows {rows} × cols {cols}",
        dy.len(),
        db.len()
    );
    if cols == 0 {
        return;
    }
    // Rows outer for contiguous reads, a block of columns at a time in stack arrays (no
    // allocation), one per row lane; blocks in parallel when the matrix is large enough.
    let dy = &dy[..rows * cols];
    let block_sum = |block: usize, out: &mut [T]| {
        let c0 = block * BLOCK;
        let sums = column_block_sums(dy, cols, c0..c0 + out.len());
        for (d, &s) in out.iter_mut().zip(sums.iter()) {
            *d = if accumulate { *d + s } else { s };
        }
    };
    let db = &mut db[..cols];
    if rows * cols >= PAR_ELEMENTS && cols > BLOCK {
        db.par_chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(block, out)| block_sum(block, out));
    } else {
        for (block, out) in db.chunks_mut(BLOCK).enumerate() {
            block_sum(block, out);
        }
    }
}

/// Columns summed together (one task's stack arrays).
const BLOCK: usize = 64;

multiversion! {
    /// The column sums of dy(·, cols) over `columns` (at most BLOCK) in the device's order.
    fn column_block_sums<T> = column_block_sums_kernel(dy: &[T], cols: usize, columns: std::ops::Range<usize>) -> [T; BLOCK];
}

#[inline(always)]
fn column_block_sums_kernel<T: Element>(
    dy: &[T],
    cols: usize,
    columns: std::ops::Range<usize>,
) -> [T; BLOCK] {
    let width = columns.len();
    let mut lanes = [[T::zero(); BLOCK]; BIAS_LANES];
    for (r, row) in dy.chunks_exact(cols).enumerate() {
        let sum = &mut lanes[r % BIAS_LANES][..width];
        for (s, &g) in sum.iter_mut().zip(&row[columns.clone()]) {
            *s = *s + g;
        }
    }
    merge_row_lanes(&mut lanes, width, |a, b| a + b);
    lanes[0]
}

/// Elements of dy below which the column sums stay on one thread.
const PAR_ELEMENTS: usize = 1 << 16;

/// Row lanes of the bias gradient's column sums (`LANES` in shaders/bias.wgsl).
pub const BIAS_LANES: usize = 8;

/// The fixed tree of the bias gradient's column sums' row lanes:
/// lane l absorbs lane l + half for half = lanes/2, …, 1, over the first `width` columns,
/// leaving the sums in lane 0. The lane count is a power of two.
fn merge_row_lanes<V: Copy, const W: usize>(
    lanes: &mut [[V; W]],
    width: usize,
    add: impl Fn(V, V) -> V,
) {
    let mut half = lanes.len() / 2;
    while half > 0 {
        let (low, high) = lanes.split_at_mut(half);
        for (a, b) in low.iter_mut().zip(high.iter()) {
            for (x, &y) in a[..width].iter_mut().zip(&b[..width]) {
                *x = add(*x, y);
            }
        }
        half /= 2;
    }
}
