//! CPU twin of shaders/bias.wgsl. (Stub: the kernel-family owner fills this in.)

use crate::cpu::Element;

/// y(rows, cols) += bias(cols), broadcast over rows.
pub fn bias_forward<T: Element>(y: &mut [T], bias: &[T], rows: usize, cols: usize) {
    let _ = (y, bias, rows, cols);
    unimplemented!()
}

/// db(cols) = Σ_rows dy(rows, cols), or db += that sum when `accumulate`.
pub fn bias_backward<T: Element>(
    dy: &[T],
    db: &mut [T],
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    let _ = (dy, db, rows, cols, accumulate);
    unimplemented!()
}
