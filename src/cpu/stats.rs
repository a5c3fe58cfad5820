//! CPU twin of shaders/stats.wgsl: per-tensor statistics records and the dead-unit count.
//!
//! Each element is converted to f32 first (the record is f32, as on the device). The tensor
//! is cut into chunks of `CHUNK` elements; each chunk gives one record, computed without a
//! single division per element:
//! - one branch-free pass over `LANES` interleaved accumulators (which the compiler turns
//!   into SIMD code) gathers min, max, the saturated count (only where bounds are given)
//!   and the shifted sums S1 = Σd and S2 = Σd² of d = x − K in f64, where K is the chunk's
//!   first finite element; max |x| is max(|min|, |max|). Few accumulators, so they stay in
//!   registers (with more, the baseline's sixteen SSE registers spilled to the stack every
//!   element);
//! - one pass counts the raw IEEE exponent fields, zeros apart (four interleaved tables, so
//!   consecutive increments do not wait on each other), which gives the histogram, the
//!   zeros, the subnormals and the non-finite total.
//!
//! Then mean = K + S1/n, M2 = S2 − S1²/n and Σx² = S2 + 2K·S1 + n·K², divided by max_abs² in
//! f64. f64 holds every f32 squared (1e30² and 1e-30² alike), so no scaling is needed per
//! element. Shifting by an element of the chunk bounds the cancellation in M2 (and in Σx²)
//! by a factor n: with n ≤ 4096 and f64's 1e-16, the results keep far more than f32's
//! digits, even for data like 1e30·(1 ± 1e-3).
//!
//! Chunks are reduced in parallel (rayon), and their records merged by `RawStats::merge`
//! in chunk order, so the result is the same bits for any number of threads. It is not
//! bit-identical to the device's (a different order of summation in f32 there): counts,
//! histogram, min, max and max_abs agree exactly, the moments to f32 rounding.

use std::any::TypeId;

use rayon::prelude::*;

use crate::cpu::Element;
use crate::stats::{HIST_BINS, RawStats};

/// Elements reduced into one chunk record on the CPU (16 KiB of f32: the passes over a chunk
/// run from L1). Unrelated to the device's chunk size.
pub const CHUNK: usize = 4096;
/// Interleaved accumulators of the vectorizable pass.
const LANES: usize = 4;
/// Tensors of up to this many chunks are reduced on the calling thread: for them, rayon's
/// hand-off costs more than it saves.
const SERIAL_CHUNKS: usize = 2;

/// The statistics record of one tensor. `saturation` (lo, hi) counts finite elements with
/// x ≤ lo or x ≥ hi as saturated; None counts none. NaN and ±Inf are counted apart and
/// take no part in anything else.
pub fn stats_reduce<T: Element>(x: &[T], saturation: Option<(f32, f32)>) -> RawStats {
    stats_reduce_with(x, saturation, &mut Vec::new())
}

/// `stats_reduce` with the chunk records of a parallel reduction kept in `partials` (resized
/// as needed; its contents on entry do not matter), so a caller that keeps it allocates
/// only while it grows.
pub fn stats_reduce_with<T: Element>(
    x: &[T],
    saturation: Option<(f32, f32)>,
    partials: &mut Vec<RawStats>,
) -> RawStats {
    // No bounds: ±∞ saturate no finite value.
    let (lo, hi) = saturation.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let record = |c: &[T]| -> RawStats {
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            // SAFETY: T is f32 (checked just above), so the slice is a slice of f32.
            let c = unsafe { std::slice::from_raw_parts(c.as_ptr() as *const f32, c.len()) };
            chunk_record(c, lo, hi)
        } else {
            let mut buf = [0f32; CHUNK];
            for (b, &v) in buf.iter_mut().zip(c) {
                *b = v.to_f64() as f32;
            }
            chunk_record(&buf[..c.len()], lo, hi)
        }
    };
    if x.len() <= SERIAL_CHUNKS * CHUNK {
        // The same left-to-right merge as `finalize`, without a list of records.
        let mut r = RawStats::empty();
        for c in x.chunks(CHUNK) {
            r.merge(&record(c));
        }
        return r;
    }
    partials.clear();
    partials.resize(x.len().div_ceil(CHUNK), RawStats::empty());
    partials
        .par_iter_mut()
        .zip(x.par_chunks(CHUNK))
        .for_each(|(p, c)| *p = record(c));
    finalize(partials)
}

/// Merges chunk records in their order (a sequential fold), whatever thread made them.
pub fn finalize(partials: &[RawStats]) -> RawStats {
    let mut r = RawStats::empty();
    for p in partials {
        r.merge(p);
    }
    r
}

/// The record of one chunk of at most CHUNK elements.
fn chunk_record(x: &[f32], lo: f32, hi: f32) -> RawStats {
    let mut r = RawStats::empty();
    let Some(&k) = x.iter().find(|v| v.is_finite()) else {
        // Nothing finite: only the NaN and ±Inf counts.
        r.nan = x.iter().filter(|v| v.is_nan()).count() as u32;
        r.inf = x.len() as u32 - r.nan;
        return r;
    };
    let kd = k as f64;
    let saturating = lo > f32::NEG_INFINITY || hi < f32::INFINITY;
    let p = if saturating {
        pass1::<true>(x, k, lo, hi)
    } else {
        pass1::<false>(x, k, lo, hi)
    };

    // Pass 2: each element's histogram bin (from its exponent field, through a table),
    // ±0 and the non-finite apart, counted in four tables used in turn. Small tables: a
    // chunk of a bias vector should not pay for zeroing and summing 256 slots.
    let bins = exponent_slots();
    let slot = |v: f32| {
        let a = v.to_bits() & 0x7fff_ffff;
        if a == 0 {
            ZERO_SLOT
        } else {
            bins[(a >> 23) as usize] as usize
        }
    };
    let mut ex = [[0u32; SLOTS]; 4];
    let quads = x.chunks_exact(4);
    let tail = quads.remainder();
    for q in quads {
        for (t, &v) in ex.iter_mut().zip(q) {
            t[slot(v)] += 1;
        }
    }
    for (t, &v) in ex.iter_mut().zip(tail) {
        t[slot(v)] += 1;
    }
    let count = |e: usize| -> u32 { ex.iter().map(|t| t[e]).sum() };

    // Lanes in fixed order.
    let nonfinite = count(NONFINITE_SLOT);
    r.zeros = count(ZERO_SLOT);
    r.saturated = p.sat.iter().sum();
    r.min =
        p.mn.iter()
            .fold(f32::INFINITY, |m, &v| if v < m { v } else { m });
    r.max =
        p.mx.iter()
            .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    // Over finite values, the largest |x| is at one end.
    let abs = |v: f32| f32::from_bits(v.to_bits() & 0x7fff_ffff);
    r.max_abs = if abs(r.min) > abs(r.max) {
        abs(r.min)
    } else {
        abs(r.max)
    };
    let s1: f64 = p.s1.iter().sum();
    let s2: f64 = p.s2.iter().sum();
    for (b, h) in r.hist.iter_mut().enumerate() {
        *h = count(b);
    }
    if nonfinite > 0 {
        r.nan = x.iter().filter(|v| v.is_nan()).count() as u32;
        r.inf = nonfinite - r.nan;
    }

    let n = (x.len() as u32 - nonfinite) as f64;
    r.finite = x.len() as u32 - nonfinite;
    r.mean = (kd + s1 / n) as f32;
    if r.max_abs > 0.0 {
        // Both sums of squares divided by max_abs², as the record stores them; in f64 none
        // of them overflows or underflows.
        let inv2 = 1.0 / (r.max_abs as f64 * r.max_abs as f64);
        let m2 = (s2 - s1 * s1 / n).max(0.0);
        let ssq = (s2 + 2.0 * kd * s1 + n * kd * kd).max(0.0);
        r.m2_scaled = (m2 * inv2) as f32;
        r.norm_ssq = (ssq * inv2) as f32;
    } else {
        // Only zeros: the record's convention is both sums 0 while max_abs is 0.
        r.mean = 0.0;
    }
    r
}

/// Pass 2's slots: the histogram's bins, then ±0, then NaN and ±∞.
const ZERO_SLOT: usize = HIST_BINS;
const NONFINITE_SLOT: usize = HIST_BINS + 1;
const SLOTS: usize = HIST_BINS + 2;

/// The slot of each exponent field: `RawStats::hist_bin` of the finite ones (the
/// subnormals' field 0 included), NONFINITE_SLOT for 255.
fn exponent_slots() -> &'static [u8; 256] {
    static TABLE: std::sync::OnceLock<[u8; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u8; 256];
        for (e, slot) in t.iter_mut().enumerate() {
            *slot = if e == 255 {
                NONFINITE_SLOT as u8
            } else {
                RawStats::hist_bin(f32::from_bits((e as u32) << 23)) as u8
            };
        }
        t
    })
}

/// Interleaved accumulators of pass 1: element i of a chunk goes to lane i mod LANES.
struct Lanes {
    sat: [u32; LANES],
    mn: [f32; LANES],
    mx: [f32; LANES],
    /// Σd and Σd² of d = x − k, in f64.
    s1: [f64; LANES],
    s2: [f64; LANES],
}

impl Lanes {
    fn new() -> Self {
        Lanes {
            sat: [0; LANES],
            mn: [f32::INFINITY; LANES],
            mx: [f32::NEG_INFINITY; LANES],
            s1: [0.0; LANES],
            s2: [0.0; LANES],
        }
    }

    /// Folds one group of LANES elements without a branch: a non-finite element is
    /// replaced by k, a finite element of the same chunk, which changes neither min nor
    /// max, and adds d = 0 to the sums. Straight-line integer and float code over arrays,
    /// so that the compiler keeps the accumulators in SIMD registers. SAT: whether
    /// saturation bounds are given (without them nothing saturates).
    // Indexing every per-lane array by j in one loop is what vectorizes; iterators over
    // seven zipped arrays would not read better.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn push<const SAT: bool>(&mut self, g: &[f32; LANES], k: f32, lo: f32, hi: f32) {
        let kbits = k.to_bits();
        for j in 0..LANES {
            let bits = g[j].to_bits();
            let a = bits & 0x7fff_ffff;
            let fin = (a < 0x7f80_0000) as u32;
            let m = fin.wrapping_neg();
            let v = f32::from_bits((bits & m) | (kbits & !m));
            if SAT {
                self.sat[j] += fin & ((v <= lo) | (v >= hi)) as u32;
            }
            self.mn[j] = if v < self.mn[j] { v } else { self.mn[j] };
            self.mx[j] = if v > self.mx[j] { v } else { self.mx[j] };
            let d = v as f64 - k as f64;
            self.s1[j] += d;
            self.s2[j] += d * d;
        }
    }
}

/// Pass 1 over a chunk, with the tail padded by NaN (which counts nowhere: it is replaced
/// by k and saturates nothing).
#[inline(never)]
fn pass1<const SAT: bool>(x: &[f32], k: f32, lo: f32, hi: f32) -> Lanes {
    let mut acc = Lanes::new();
    let groups = x.chunks_exact(LANES);
    let rest = groups.remainder().len();
    let mut tail = [f32::NAN; LANES];
    tail[..rest].copy_from_slice(groups.remainder());
    for g in groups {
        acc.push::<SAT>(g.try_into().expect("groups of LANES elements"), k, lo, hi);
    }
    acc.push::<SAT>(&tail, k, lo, hi);
    acc
}

/// Number of columns (units) of y (rows, cols) that are exactly zero (+0 or −0) in every
/// row. y is (rows, cols) row-major and holds rows·cols elements (the plan's activation
/// buffer); a NaN is not zero, nor is a subnormal.
pub fn dead_units<T: Element>(y: &[T], rows: usize, cols: usize) -> u32 {
    (0..cols)
        .filter(|&c| (0..rows).all(|r| y[r * cols + c] == T::zero()))
        .count() as u32
}
