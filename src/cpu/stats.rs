//! CPU twin of shaders/stats.wgsl: per-tensor statistics records and the dead-unit count.
//!
//! Each element is converted to f32 first (the record is f32, as on the device), and the
//! reduction follows the device's order exactly: chunks of `CHUNK` elements; inside a chunk,
//! lane t folds elements t, t + WG, … sequentially (Welford, nrm2), then the lanes merge in
//! the fixed binary tree (lane t absorbs lane t + s for s = WG/2, …, 1); the chunk records
//! are then merged the same way as `stats_finalize` does (lane t absorbs chunks t, t + WG, …
//! in turn, then the tree). Counts and histograms therefore agree exactly with the device,
//! and the floats agree to within the rounding freedom a shader compiler has (fused
//! multiply-adds, division accuracy).

use crate::cpu::Element;
use crate::stats::RawStats;

/// Invocations per workgroup in shaders/stats.wgsl (`WG`).
pub const WG: usize = 256;
/// Elements reduced into one partial record (`CHUNK` = WG · PER in shaders/stats.wgsl).
pub const CHUNK: usize = 2048;

/// The statistics record of one tensor. `saturation` (lo, hi) counts finite elements with
/// x ≤ lo or x ≥ hi as saturated; None counts none. NaN and ±Inf are counted apart and
/// take no part in anything else.
pub fn stats_reduce<T: Element>(x: &[T], saturation: Option<(f32, f32)>) -> RawStats {
    let partials: Vec<RawStats> = x
        .chunks(CHUNK)
        .map(|chunk| chunk_record(chunk, saturation))
        .collect();
    finalize(&partials)
}

/// The record of one chunk (≤ CHUNK elements), as one workgroup of `stats_partial` does.
fn chunk_record<T: Element>(chunk: &[T], saturation: Option<(f32, f32)>) -> RawStats {
    let mut lanes = vec![RawStats::empty(); WG];
    for (t, lane) in lanes.iter_mut().enumerate() {
        for &v in chunk.iter().skip(t).step_by(WG) {
            push(lane, v.to_f64() as f32, saturation);
        }
    }
    tree(&mut lanes)
}

/// Merges partial records in `stats_finalize`'s order: strided sequential, then the tree.
pub fn finalize(partials: &[RawStats]) -> RawStats {
    let mut lanes = vec![RawStats::empty(); WG];
    for (t, lane) in lanes.iter_mut().enumerate() {
        for p in partials.iter().skip(t).step_by(WG) {
            lane.merge(p);
        }
    }
    tree(&mut lanes)
}

/// The workgroup's fixed tree: lane t absorbs lane t + s for s = WG/2, …, 1.
fn tree(lanes: &mut [RawStats]) -> RawStats {
    let mut s = lanes.len() / 2;
    while s > 0 {
        for t in 0..s {
            let other = lanes[t + s];
            lanes[t].merge(&other);
        }
        s /= 2;
    }
    lanes[0]
}

/// Folds one element into a lane: `acc_push` in shaders/stats.wgsl, operation by operation.
fn push(a: &mut RawStats, x: f32, saturation: Option<(f32, f32)>) {
    let bits = x.to_bits();
    if bits & 0x7f80_0000 == 0x7f80_0000 {
        if bits & 0x007f_ffff != 0 {
            a.nan += 1;
        } else {
            a.inf += 1;
        }
        return;
    }
    let abs_bits = bits & 0x7fff_ffff;
    if abs_bits == 0 {
        a.zeros += 1;
    } else {
        a.hist[RawStats::hist_bin(x)] += 1;
    }
    if let Some((lo, hi)) = saturation
        && (x <= lo || x >= hi)
    {
        a.saturated += 1;
    }
    // nrm2: norm_ssq holds Σ(x/max_abs)²; a larger |x| becomes the scale and rescales it.
    // m2_scaled is relative to the same scale, so it is rescaled by the same factor r²
    // (done before the Welford step, which then divides by the new scale).
    let ax = f32::from_bits(abs_bits);
    if ax > a.max_abs {
        let r = a.max_abs / ax;
        let rr = r * r;
        a.norm_ssq = 1.0 + a.norm_ssq * rr;
        a.m2_scaled *= rr;
        a.max_abs = ax;
    } else if ax > 0.0 {
        let r = ax / a.max_abs;
        a.norm_ssq += r * r;
    }
    a.finite += 1;
    if a.finite == 1 {
        a.mean = x;
        a.m2_scaled = 0.0;
        a.min = x;
        a.max = x;
    } else {
        // Welford: mean_n = mean_{n-1} + (x − mean_{n-1})/n, M2 += (x − mean_{n-1})(x − mean_n),
        // here divided by s² = max_abs² factor by factor. s = 0 means every value so far,
        // x included, is zero: M2 stays 0 (and 0/0 must not be formed).
        let delta = x - a.mean;
        a.mean += delta / a.finite as f32;
        let s = a.max_abs;
        if s > 0.0 {
            a.m2_scaled += (delta / s) * ((x - a.mean) / s);
        }
        if x < a.min {
            a.min = x;
        }
        if x > a.max {
            a.max = x;
        }
    }
}

/// Number of columns (units) of y (rows, cols) that are exactly zero (+0 or −0) in every
/// row. y is (rows, cols) row-major and holds rows·cols elements (the plan's activation
/// buffer); a NaN is not zero, nor is a subnormal.
pub fn dead_units<T: Element>(y: &[T], rows: usize, cols: usize) -> u32 {
    (0..cols)
        .filter(|&c| (0..rows).all(|r| y[r * cols + c] == T::zero()))
        .count() as u32
}
