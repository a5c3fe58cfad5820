//! CPU twin of shaders/bias.wgsl: the bias add of a dense layer and its gradient.
//!
//! The gradient sums every column over the rows in increasing row order, the order the
//! GPU kernel uses, so both executors round the same way. db is a parameter gradient:
//! `accumulate` adds the column sum to it instead of overwriting it.

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
    // Rows outer for contiguous reads, a block of columns at a time in a stack array (no
    // allocation); each column's sum still runs over rows 0, 1, … in order, then is added
    // to db once, exactly as the shader does.
    const BLOCK: usize = 64;
    let mut sum = [T::zero(); BLOCK];
    for c0 in (0..cols).step_by(BLOCK) {
        let width = BLOCK.min(cols - c0);
        let sum = &mut sum[..width];
        sum.fill(T::zero());
        for row in dy[..rows * cols].chunks_exact(cols) {
            for (s, &g) in sum.iter_mut().zip(&row[c0..c0 + width]) {
                *s = *s + g;
            }
        }
        for (d, &s) in db[c0..c0 + width].iter_mut().zip(sum.iter()) {
            *d = if accumulate { *d + s } else { s };
        }
    }
}
