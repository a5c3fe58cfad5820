//! CPU twin of shaders/stats.wgsl: per-tensor statistics records and the dead-unit count.
//!
//! Each element is converted to f32 first (the record is f32, as on the device). The tensor
//! is cut into chunks of `CHUNK` elements; each chunk gives one record, computed without a
//! single division per element:
//! - one branch-free pass over interleaved accumulators (which the compiler turns
//!   into SIMD code) gathers min, max, the zeros, the saturated count (only where bounds
//!   are given) and the shifted sums S1 = Σd and S2 = Σd² of d = x − K in f64 (d² added
//!   by a fused multiply-add where the CPU has one), where K is the chunk's first finite
//!   element; max |x| is max(|min|, |max|). It also keeps each element's exponent field,
//!   one byte. It takes every element as finite; a chunk whose exponent bytes show NaN
//!   or ±∞ is taken again with each of them replaced by K (which moves neither min nor
//!   max and adds d = 0), so finite chunks, nearly all of them, pay nothing for the check;
//! - one pass over those bytes, after counting the non-finite (field 255), turns each
//!   field into its histogram bin and counts the bins between the chunk's lowest and
//!   highest, by byte compares in whole SIMD registers (a table of counters, incremented
//!   per element, was twice as slow: each increment waits on the one before to the same
//!   slot).
//!
//! Both passes are compiled for AVX-512 + FMA and AVX2 + FMA too, chosen at run time; on
//! aarch64 the baseline build adds d² by a fused multiply-add (every aarch64 core has one).
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
use crate::stats::{HIST_BIN_WIDTH, HIST_BINS, HIST_LOG2_LO, RawStats};

/// Elements reduced into one chunk record on the CPU (16 KiB of f32: the passes over a chunk
/// run from L1). Unrelated to the device's chunk size.
pub const CHUNK: usize = 4096;
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

/// The record of one chunk of at most CHUNK elements, through the widest SIMD the CPU has:
/// as many interleaved lanes as its registers hold without spilling (16 for AVX-512, 8 for
/// AVX2, 4 for the baseline). The lanes change the order of the f64 sums, so the moments'
/// last bits depend on the build (as the GEMM's do); counts, min and max do not.
fn chunk_record(x: &[f32], lo: f32, hi: f32) -> RawStats {
    #[cfg(target_arch = "x86_64")]
    {
        let fma = std::arch::is_x86_feature_detected!("fma");
        if fma && std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512F and BW and FMA, checked just above.
            return unsafe { chunk_record_avx512(x, lo, hi) };
        }
        if fma && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { chunk_record_avx2(x, lo, hi) };
        }
    }
    // aarch64 has fused multiply-add in every core (`mul_add` is one instruction there).
    chunk_record_kernel::<4, { cfg!(target_arch = "aarch64") }>(x, lo, hi)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,fma")]
fn chunk_record_avx512(x: &[f32], lo: f32, hi: f32) -> RawStats {
    chunk_record_kernel::<16, true>(x, lo, hi)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn chunk_record_avx2(x: &[f32], lo: f32, hi: f32) -> RawStats {
    chunk_record_kernel::<8, true>(x, lo, hi)
}

/// FMA: whether Σd² takes each d·d in one fused multiply-add (builds for CPUs that have
/// it; elsewhere `mul_add` would be a slow library call).
#[inline(always)]
fn chunk_record_kernel<const L: usize, const FMA: bool>(x: &[f32], lo: f32, hi: f32) -> RawStats {
    let mut r = RawStats::empty();
    let Some(&k) = x.iter().find(|v| v.is_finite()) else {
        // Nothing finite: only the NaN and ±Inf counts.
        r.nan = x.iter().filter(|v| v.is_nan()).count() as u32;
        r.inf = x.len() as u32 - r.nan;
        return r;
    };
    let kd = k as f64;
    let saturating = lo > f32::NEG_INFINITY || hi < f32::INFINITY;
    // The exponent bytes, rounded up to whole counting vectors by zeros.
    let mut bytes = [0u8; CHUNK];
    // Pass 1 takes every element as finite; a chunk that holds NaN or ±∞ (seen in its
    // exponent bytes) is taken again with each non-finite element replaced by k.
    let mut p = pass1_bounded::<false, L, FMA>(saturating, x, k, lo, hi, &mut bytes);
    let counted = x.len().next_multiple_of(COUNT_LANES);
    let nonfinite = count_equal(&bytes[..counted], NONFINITE_EXPONENT);
    if nonfinite > 0 {
        // The same bytes again, and the accumulators without the non-finite.
        p = pass1_bounded::<true, L, FMA>(saturating, x, k, lo, hi, &mut bytes);
    }

    // Pass 2, over the bytes: every byte turned into its bin and the bins counted, the
    // padding set apart first.
    let bytes = &mut bytes[..counted];
    to_bins(bytes);
    bytes[x.len()..].fill(PAD);
    // Only the bins between the chunk's lowest and highest are counted: a chunk's values
    // usually span a few of the 40. Where the first bin (which holds the zeros) is among
    // them, it is counted alone and the range starts again at the lowest bin above it:
    // ReLU outputs and sparse inputs would otherwise have every bin between their zeros
    // and their values counted.
    let (lowest, highest) = bin_range(bytes);
    let mut from = lowest;
    if lowest == 0 {
        r.hist[0] = count_equal(bytes, 0);
        from = if highest > 0 {
            lowest_above_first(bytes)
        } else {
            1
        };
    }
    for b in from..=highest {
        r.hist[b as usize] = count_equal(bytes, b);
    }
    // ±0 (exponent field 0) fell into the first bin and the non-finite into the last.
    r.zeros = p.zeros.iter().sum();
    r.hist[0] -= r.zeros;
    r.hist[HIST_BINS - 1] -= nonfinite;

    // Lanes in fixed order.
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

/// The exponent field of NaN and ±∞.
const NONFINITE_EXPONENT: u8 = 255;
/// What the padding after a chunk's last bin becomes: above every bin, so counted nowhere.
const PAD: u8 = u8::MAX;
/// Byte counters per counting vector: 64 bytes, one AVX-512 register (four SSE ones).
const COUNT_LANES: usize = 64;
// A counter counts at most one byte in COUNT_LANES of a chunk, and must not wrap.
const _: () = assert!(CHUNK / COUNT_LANES <= u8::MAX as usize);

/// How many of `bytes` (a multiple of COUNT_LANES long, at most CHUNK) equal `b`: a byte
/// compare and subtract per byte, which compiles to whole-register SIMD.
#[inline(always)]
fn count_equal(bytes: &[u8], b: u8) -> u32 {
    let mut acc = [0u8; COUNT_LANES];
    for g in bytes.chunks_exact(COUNT_LANES) {
        for (a, &v) in acc.iter_mut().zip(g) {
            *a = a.wrapping_add((v == b) as u8);
        }
    }
    acc.iter().map(|&c| c as u32).sum()
}

/// Each exponent field turned into its histogram bin, `RawStats::hist_bin` in byte
/// arithmetic (so it vectorizes): the field less that of 2^HIST_LOG2_LO, clamped at 0,
/// over the bin width, clamped at the last bin. ±0 (field 0) lands in the first bin and
/// NaN and ±∞ (field 255) in the last; the caller takes them out.
#[inline(always)]
fn to_bins(bytes: &mut [u8]) {
    const LOWEST: u8 = (127 + HIST_LOG2_LO) as u8;
    for e in bytes {
        *e = (e.saturating_sub(LOWEST) / HIST_BIN_WIDTH as u8).min(HIST_BINS as u8 - 1);
    }
}

/// The lowest and the highest bin among `bytes` (bins and PAD, a multiple of COUNT_LANES
/// long), in lanes so that it compiles to SIMD. Without any bin, lowest > highest.
#[inline(always)]
fn bin_range(bytes: &[u8]) -> (u8, u8) {
    let mut lowest = [u8::MAX; COUNT_LANES];
    let mut highest = [0u8; COUNT_LANES];
    for g in bytes.chunks_exact(COUNT_LANES) {
        for ((l, h), &b) in lowest.iter_mut().zip(&mut highest).zip(g) {
            *l = (*l).min(b);
            *h = (*h).max(if b == PAD { 0 } else { b });
        }
    }
    (
        lowest.iter().fold(u8::MAX, |m, &b| m.min(b)),
        highest.iter().fold(0, |m, &b| m.max(b)),
    )
}

/// The lowest bin above the first among `bytes` (bins and PAD, a multiple of COUNT_LANES
/// long, with at least one such bin): the lowest b − 1, wrapping, so that the first bin
/// becomes 255 and PAD 254, above every other bin.
#[inline(always)]
fn lowest_above_first(bytes: &[u8]) -> u8 {
    let mut below = [u8::MAX; COUNT_LANES];
    for g in bytes.chunks_exact(COUNT_LANES) {
        for (l, &b) in below.iter_mut().zip(g) {
            *l = (*l).min(b.wrapping_sub(1));
        }
    }
    below.iter().fold(u8::MAX, |m, &b| m.min(b)) + 1
}

/// Interleaved accumulators of pass 1: element i of a chunk goes to lane i mod L.
struct Lanes<const L: usize> {
    sat: [u32; L],
    zeros: [u32; L],
    mn: [f32; L],
    mx: [f32; L],
    /// Σd and Σd² of d = x − k, in f64.
    s1: [f64; L],
    s2: [f64; L],
}

impl<const L: usize> Lanes<L> {
    fn new() -> Self {
        Lanes {
            sat: [0; L],
            zeros: [0; L],
            mn: [f32::INFINITY; L],
            mx: [f32::NEG_INFINITY; L],
            s1: [0.0; L],
            s2: [0.0; L],
        }
    }

    /// Folds one group of L elements without a branch and writes their exponent
    /// fields. CHECKED: a non-finite element is replaced by k, a finite element of the same
    /// chunk, which changes neither min nor max, and adds d = 0 to the sums; unchecked,
    /// every element is taken as finite (the caller takes the chunk again, checked, if
    /// one was not). Straight-line integer and float code over arrays, so that the compiler
    /// keeps the accumulators in SIMD registers. SAT: whether saturation bounds are given
    /// (without them nothing saturates). FMA: d² is added by a fused multiply-add.
    // Indexing every per-lane array by j in one loop is what vectorizes; iterators over
    // seven zipped arrays would not read better.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn push<const SAT: bool, const CHECKED: bool, const FMA: bool>(
        &mut self,
        g: &[f32; L],
        k: f32,
        lo: f32,
        hi: f32,
        exponents: &mut [u8; L],
    ) {
        let kbits = k.to_bits();
        for j in 0..L {
            let bits = g[j].to_bits();
            let a = bits & 0x7fff_ffff;
            let fin = (a < 0x7f80_0000) as u32;
            let v = if CHECKED {
                let m = fin.wrapping_neg();
                f32::from_bits((bits & m) | (kbits & !m))
            } else {
                g[j]
            };
            if SAT {
                let out = ((v <= lo) | (v >= hi)) as u32;
                // Checked, a non-finite element became k, which must not count.
                self.sat[j] += if CHECKED { fin & out } else { out };
            }
            self.zeros[j] += (a == 0) as u32;
            self.mn[j] = if v < self.mn[j] { v } else { self.mn[j] };
            self.mx[j] = if v > self.mx[j] { v } else { self.mx[j] };
            let d = v as f64 - k as f64;
            self.s1[j] += d;
            self.s2[j] = if FMA {
                d.mul_add(d, self.s2[j])
            } else {
                self.s2[j] + d * d
            };
            exponents[j] = (a >> 23) as u8;
        }
    }
}

/// `pass1` with saturation counted only where bounds are given. (A function, not a
/// closure: a closure would be compiled without its caller's target features.)
#[inline(always)]
fn pass1_bounded<const CHECKED: bool, const L: usize, const FMA: bool>(
    saturating: bool,
    x: &[f32],
    k: f32,
    lo: f32,
    hi: f32,
    exponents: &mut [u8; CHUNK],
) -> Lanes<L> {
    if saturating {
        pass1::<true, CHECKED, L, FMA>(x, k, lo, hi, exponents)
    } else {
        pass1::<false, CHECKED, L, FMA>(x, k, lo, hi, exponents)
    }
}

/// Pass 1 over a chunk: the accumulators, and each element's exponent field in
/// `exponents`. The tail is padded by NaN and always checked (replaced by k, the padding
/// counts nowhere in the sums and saturates nothing); its exponents are not kept.
#[inline(always)]
fn pass1<const SAT: bool, const CHECKED: bool, const L: usize, const FMA: bool>(
    x: &[f32],
    k: f32,
    lo: f32,
    hi: f32,
    exponents: &mut [u8; CHUNK],
) -> Lanes<L> {
    let mut acc = Lanes::new();
    let groups = x.chunks_exact(L);
    let rest = groups.remainder().len();
    let mut tail = [f32::NAN; L];
    tail[..rest].copy_from_slice(groups.remainder());
    let whole = x.len() - rest;
    for (g, e) in groups.zip(exponents.chunks_exact_mut(L)) {
        let g = g.try_into().expect("groups of L elements");
        acc.push::<SAT, CHECKED, FMA>(g, k, lo, hi, e.try_into().expect("L exponents"));
    }
    let mut tail_exponents = [0u8; L];
    acc.push::<SAT, true, FMA>(&tail, k, lo, hi, &mut tail_exponents);
    exponents[whole..whole + rest].copy_from_slice(&tail_exponents[..rest]);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Random bit patterns (every exponent, NaN, ±∞, subnormals), zeros and ordinary values.
    fn awkward(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n)
            .map(|_| {
                let r = rng.next_u64();
                match r % 8 {
                    0 => f32::from_bits((r >> 32) as u32),
                    1 => 0.0,
                    2 => -0.0,
                    _ => (rng.uniform() as f32 - 0.5) * 1e-3,
                }
            })
            .collect()
    }

    /// Every SIMD build this CPU runs agrees with the baseline build on every tail length
    /// of a chunk: the counts, histogram and extremes exactly, the moments (summed in
    /// another order) to a few f32 ulps.
    /// A chunk-record build: (chunk, lo, hi) -> record.
    type ChunkRecord = fn(&[f32], f32, f32) -> RawStats;

    #[test]
    fn every_simd_build_agrees_with_the_baseline() {
        let builds: Vec<(&str, ChunkRecord)> = vec![
            ("dispatched", chunk_record),
            ("4 lanes", chunk_record_kernel::<4, false>),
            ("8 lanes", chunk_record_kernel::<8, false>),
            ("16 lanes", chunk_record_kernel::<16, false>),
        ];
        let lengths = [1, 15, 16, 17, 63, 64, 65, 1000, 4095, 4096];
        // Awkward chunks (most hold NaN or ±∞, taken twice), and finite ones (taken once).
        let chunks = lengths.iter().enumerate().flat_map(|(seed, &n)| {
            let finite: Vec<f32> = awkward(seed as u64 + 100, n)
                .into_iter()
                .map(|v| if v.is_finite() { v } else { 1.5 })
                .collect();
            [awkward(seed as u64, n), finite]
        });
        for x in chunks {
            let n = x.len();
            for (lo, hi) in [(f32::NEG_INFINITY, f32::INFINITY), (-1e-4, 1e-4)] {
                let want = chunk_record_kernel::<4, false>(&x, lo, hi);
                #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
                let mut got: Vec<(&str, RawStats)> = builds
                    .iter()
                    .map(|(name, f)| (*name, f(&x, lo, hi)))
                    .collect();
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA, checked just above.
                    got.push(("avx2", unsafe { chunk_record_avx2(&x, lo, hi) }));
                }
                for (name, r) in got {
                    let what = format!("{name}, len {n}");
                    let counts = |r: &RawStats| (r.finite, r.nan, r.inf, r.zeros, r.saturated);
                    assert_eq!(counts(&r), counts(&want), "{what}");
                    assert_eq!(r.hist, want.hist, "{what}");
                    assert_eq!(
                        (r.min, r.max, r.max_abs),
                        (want.min, want.max, want.max_abs)
                    );
                    for (field, a, b) in [
                        ("mean", r.mean, want.mean),
                        ("m2", r.m2_scaled, want.m2_scaled),
                        ("ssq", r.norm_ssq, want.norm_ssq),
                    ] {
                        let scale = b.abs().max(r.max_abs * 1e-3);
                        assert!(
                            (a - b).abs() <= 4.0 * f32::EPSILON * scale,
                            "{what}: {field}"
                        );
                    }
                }
            }
        }
    }

    /// The byte arithmetic of `to_bins` is `RawStats::hist_bin` for every exponent field.
    #[test]
    fn byte_bins_are_the_record_bins() {
        let mut bytes: Vec<u8> = (0..=255).collect();
        to_bins(&mut bytes);
        for (e, &b) in bytes.iter().enumerate() {
            let x = f32::from_bits((e as u32) << 23);
            assert_eq!(b as usize, RawStats::hist_bin(x), "exponent field {e}");
        }
    }

    /// The histogram of a chunk is the element-by-element one, whatever bins its values
    /// leave empty: zeros beside large values (the gap the counting skips), only zeros,
    /// only tiny values, values in the first and last bins, NaN and ±∞, on lengths that
    /// end inside and at the edge of a counting vector.
    #[test]
    fn histogram_counts_every_bin_however_sparse() {
        let mut rng = crate::rng::Rng::new(7);
        // (name, element i of a chunk)
        type Pattern = (&'static str, fn(&mut crate::rng::Rng, usize) -> f32);
        let patterns: Vec<Pattern> = vec![
            ("zeros and ReLU outputs", |r, _| {
                let v = r.normal() as f32;
                if v < 0.0 { 0.0 } else { v }
            }),
            ("only zeros", |_, i| if i % 2 == 0 { 0.0 } else { -0.0 }),
            ("tiny and zeros", |r, i| {
                if i % 3 == 0 {
                    0.0
                } else {
                    1e-30 * r.uniform() as f32
                }
            }),
            ("first and last bins", |r, i| match i % 4 {
                0 => 1e-25,
                1 => 1e9,
                2 => 0.0,
                _ => r.normal() as f32,
            }),
            ("non-finite and zeros", |r, i| match i % 5 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => 0.0,
                _ => r.normal() as f32 * 1e-3,
            }),
            ("random bits", |r, _| f32::from_bits(r.next_u64() as u32)),
        ];
        for (name, make) in &patterns {
            for n in [1, 2, 63, 64, 65, 127, 1000, 4095, 4096] {
                let x: Vec<f32> = (0..n).map(|i| make(&mut rng, i)).collect();
                let mut want = [0u32; HIST_BINS];
                for v in x.iter().filter(|v| v.is_finite() && **v != 0.0) {
                    want[RawStats::hist_bin(*v)] += 1;
                }
                for (build, r) in [
                    (
                        "dispatched",
                        chunk_record(&x, f32::NEG_INFINITY, f32::INFINITY),
                    ),
                    (
                        "baseline",
                        chunk_record_kernel::<4, false>(&x, f32::NEG_INFINITY, f32::INFINITY),
                    ),
                ] {
                    assert_eq!(r.hist, want, "{name}, len {n}, {build}");
                }
            }
        }
    }
}
