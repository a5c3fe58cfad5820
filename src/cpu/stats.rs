//! CPU twin of shaders/stats.wgsl. (Stub: the kernel-family owner fills this in.)

use crate::cpu::Element;
use crate::stats::RawStats;

/// The statistics record of one tensor. `saturation` (lo, hi) counts elements with
/// x ≤ lo or x ≥ hi as saturated; None counts none.
pub fn stats_reduce<T: Element>(x: &[T], saturation: Option<(f32, f32)>) -> RawStats {
    let _ = (x, saturation);
    unimplemented!()
}

/// Number of columns (units) of y (rows, cols) that are exactly zero in every row.
pub fn dead_units<T: Element>(y: &[T], rows: usize, cols: usize) -> u32 {
    let _ = (y, rows, cols);
    unimplemented!()
}
