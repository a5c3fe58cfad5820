//! CPU twin of shaders/stats.wgsl: per-tensor statistics records and the dead-unit count.
//!
//! Each element is converted to f32 first (the record is f32, as on the device). The tensor
//! is cut into chunks of `CHUNK` elements; each chunk gives one record, computed without a
//! single division per element, from sweeps over the chunk (16 KiB, in L1):
//! - the first sweep, branch-free over interleaved accumulators (which the compiler turns
//!   into SIMD code), gathers min, max, the saturated count (only where bounds are given),
//!   Σx and Σx², and keeps each element's exponent field, one byte, four groups' bytes
//!   packed into one word per lane (one store, not a narrowing store per group). The sums
//!   run in f32 for `F32_RUN` quads per lane (at most 15 roundings each) and then in f64,
//!   so they keep about 1e-6 relative at worst. The sweep takes every element as finite:
//!   ±∞ would show in min or max and NaN in Σx, and a chunk that shows either has its
//!   non-finite counted from the exponent bytes and is swept again with each of them
//!   replaced by a finite element of the chunk (which moves neither min nor max and adds
//!   nothing), so finite chunks, nearly all of them, pay nothing for the check;
//! - the sums hold as they are while max_abs lies within 2^±40 (no square overflows, and
//!   those that underflow are nothing beside max_abs²); elsewhere they are taken again of
//!   y = x·s, s the power of two that brings max_abs into [1, 4): exact, and no square
//!   overflows or underflows in f32 however large or small the tensor. M2 = Σy² − (Σy)²/n
//!   loses digits only where the mean dwarfs the spread; there (M2 < Σy²/2, rare in
//!   weights and gradients) the sums are taken again about the mean rounded to f32, the
//!   two-pass formula, where each y − c near the mean is exact;
//! - the histogram, from the exponent bytes (`stats_histogram`); ±0 are counted apart only
//!   where its first bin is occupied.
//!
//! The sweeps are compiled for AVX-512 + FMA and AVX2 + FMA too, chosen at run time; on
//! aarch64 the baseline build adds squares by a fused multiply-add (every aarch64 core has
//! one).
//!
//! The record's mean is Σy/n/s, its sums of squares divided by max_abs² in f64.
//!
//! While a chunk is swept, each run of the sweep asks for the same lines of the next chunk
//! (a prefetch), which the same thread most likely reduces next: a resnet-20 step's records
//! took 20.2–22.0 ms with it and 22.7–24.1 without (two threads, BENCHMARKS.md), since a
//! chunk's histogram passes otherwise leave the memory idle.
//!
//! Chunks are reduced in parallel (rayon), and their records merged by `RawStats::merge`
//! in chunk order, so the result is the same bits for any number of threads. It is not
//! bit-identical to the device's (a different order of summation in f32 there): counts,
//! histogram, min, max and max_abs agree exactly, the moments to f32 rounding.

use std::any::TypeId;

use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::prefetch::prefetch_lines;
use crate::stats::{HIST_BINS, RawStats};

use super::stats_histogram::{
    BytePasses, COUNT_LANES, NONFINITE_EXPONENT, Portable, bins_and_range, count_bins,
};

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

/// The record of one chunk of at most CHUNK elements, through the widest SIMD the CPU has.
/// The extremes, counts and exponent bytes run in as many interleaved lanes as one
/// register holds (16 for AVX-512, 8 for AVX2, 4 for the baseline); the sums in four
/// registers' worth, so that four chains of additions hide the adder's latency. The lanes
/// change the order of the sums, so the moments' last bits depend on the build (as the
/// GEMM's do); counts, min and max do not.
fn chunk_record(x: &[f32], lo: f32, hi: f32) -> RawStats {
    #[cfg(target_arch = "x86_64")]
    {
        use super::stats_histogram::{Avx2, Avx512};
        if std::arch::is_x86_feature_detected!("fma") {
            if let Some(isa) = Avx512::detect() {
                // SAFETY: the CPU has AVX-512F, BW, FMA and POPCNT (checked by `detect`
                // and just above; AVX-512BW implies F).
                return unsafe { chunk_record_avx512(x, lo, hi, isa) };
            }
            if let Some(isa) = Avx2::detect() {
                // SAFETY: the CPU has AVX2, FMA and POPCNT, checked by `detect` and just
                // above.
                return unsafe { chunk_record_avx2(x, lo, hi, isa) };
            }
        }
    }
    // aarch64 has fused multiply-add in every core (`mul_add` is one instruction there).
    chunk_record_kernel::<4, 16, { cfg!(target_arch = "aarch64") }, _>(x, lo, hi, Portable)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,fma,popcnt")]
fn chunk_record_avx512(
    x: &[f32],
    lo: f32,
    hi: f32,
    isa: super::stats_histogram::Avx512,
) -> RawStats {
    chunk_record_kernel::<16, 64, true, _>(x, lo, hi, isa)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,popcnt")]
fn chunk_record_avx2(x: &[f32], lo: f32, hi: f32, isa: super::stats_histogram::Avx2) -> RawStats {
    chunk_record_kernel::<8, 32, true, _>(x, lo, hi, isa)
}

thread_local! {
    /// Each thread's exponent bytes of the chunk it is reducing (`chunk_record_kernel`):
    /// a fresh zeroed array per chunk cost 6 % of the record.
    static EXPONENTS: std::cell::UnsafeCell<[u8; CHUNK]> =
        const { std::cell::UnsafeCell::new([0; CHUNK]) };
}

/// L: lanes of the first sweep; S: lanes of the sums taken again (`shifted_sums`). FMA: whether squares are added by
/// a fused multiply-add (builds for CPUs that have it; elsewhere `mul_add` would be a slow
/// library call).
#[inline(always)]
fn chunk_record_kernel<const L: usize, const S: usize, const FMA: bool, B: BytePasses>(
    x: &[f32],
    lo: f32,
    hi: f32,
    isa: B,
) -> RawStats {
    let mut r = RawStats::empty();
    let Some(&k) = x.iter().find(|v| v.is_finite()) else {
        // Nothing finite: only the NaN and ±Inf counts.
        r.nan = x.iter().filter(|v| v.is_nan()).count() as u32;
        r.inf = x.len() as u32 - r.nan;
        return r;
    };
    let saturating = lo > f32::NEG_INFINITY || hi < f32::INFINITY;
    // The exponent bytes, rounded up to whole counting vectors by zeros: the first sweep
    // writes the first x.len(), and nothing reads past `counted`.
    // SAFETY: the buffer is this thread's, and nothing between here and the return can
    // reach this function again on this thread (no rayon call, no recursion), so this is
    // the only reference to it.
    let bytes = unsafe { &mut *EXPONENTS.with(|b| b.get()) };
    let counted = x.len().next_multiple_of(COUNT_LANES);
    bytes[x.len()..counted].fill(0);
    // The first sweep takes every element as finite; a chunk that holds NaN or ±∞ is taken
    // again with each non-finite element replaced by k.
    let mut b = first_sweep_with::<false, L, FMA>(saturating, x, k, lo, hi, bytes);
    // ±∞ would be the minimum or the maximum, and a NaN would make Σx NaN: without either,
    // the chunk is finite, and its exponent bytes need no pass to count the non-finite
    // (a sum that overflowed to ±∞ only sends the chunk to that pass). The tail after the
    // last whole run of 4·L, always taken checked, is looked at alone.
    let finite = b.mn.iter().all(|&v| v > f32::NEG_INFINITY)
        && b.mx.iter().all(|&v| v < f32::INFINITY)
        && b.s1.iter().sum::<f64>().is_finite()
        && x[x.len() / (4 * L) * (4 * L)..]
            .iter()
            .all(|v| v.is_finite());
    let nonfinite = if finite {
        0
    } else {
        isa.count_equal(&bytes[..counted], NONFINITE_EXPONENT)
    };
    if nonfinite > 0 {
        // The same bytes again, and the accumulators without the non-finite.
        b = first_sweep_with::<true, L, FMA>(saturating, x, k, lo, hi, bytes);
    }

    // Pass 2, over the bytes: every byte turned into its bin and the bins counted, the
    // padding set apart first.
    let bytes = &mut bytes[..counted];
    // Only the bins between the chunk's lowest and highest are counted: a chunk's values
    // usually span a few of the 40.
    let range = bins_and_range(isa, bytes, x.len());
    count_bins(isa, bytes, range, &mut r.hist);
    // ±0 (exponent field 0) fell into the first bin and the non-finite into the last. Only
    // where the first bin holds something can there be zeros to count apart.
    if range.lowest == 0 {
        r.zeros = count_zeros(x);
        r.hist[0] -= r.zeros;
    }
    r.hist[HIST_BINS - 1] -= nonfinite;

    // Lanes in fixed order.
    r.saturated = b.sat.iter().sum();
    r.min =
        b.mn.iter()
            .fold(f32::INFINITY, |m, &v| if v < m { v } else { m });
    r.max =
        b.mx.iter()
            .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    // Over finite values, the largest |x| is at one end.
    let abs = |v: f32| f32::from_bits(v.to_bits() & 0x7fff_ffff);
    r.max_abs = if abs(r.min) > abs(r.max) {
        abs(r.min)
    } else {
        abs(r.max)
    };
    if nonfinite > 0 {
        r.nan = x.iter().filter(|v| v.is_nan()).count() as u32;
        r.inf = nonfinite - r.nan;
    }
    r.finite = x.len() as u32 - nonfinite;
    if r.max_abs == 0.0 {
        // Only zeros: the record's convention is mean and both sums 0 while max_abs is 0.
        return r;
    }

    // The moments. The first sweep's sums of x and x² hold wherever max_abs lies within
    // 2^±40: no square overflows, and the squares that underflow are nothing beside
    // max_abs². Elsewhere the sums are taken again, of y = x·s, with s the power of two that
    // brings max_abs into [1, 4): exact, and no square overflows or underflows in f32
    // however large or small the tensor.
    let checked = nonfinite > 0;
    let field = (r.max_abs.to_bits() >> 23) as i32;
    let (s, (s1, s2)) = if (127 - SUMS_IN_PLACE..=127 + SUMS_IN_PLACE).contains(&field) {
        (1.0, (b.s1.iter().sum(), b.s2.iter().sum()))
    } else {
        let s = unit_scale(r.max_abs);
        (s, shifted_sums_with::<S, FMA>(checked, x, s, 0.0))
    };
    let n = r.finite as f64;
    let mut mean_y = s1 / n;
    let mut m2 = s2 - s1 * s1 / n;
    if m2 < 0.5 * s2 {
        // A mean larger than the spread: Σy² − (Σy)²/n would cancel more than half its
        // digits, so the sums are taken again about c, the mean rounded to f32 (each
        // y − c exact near the mean), where the same formula cancels nothing that matters.
        let c = mean_y as f32;
        let (d1, d2) = shifted_sums_with::<S, FMA>(checked, x, s, c);
        mean_y = c as f64 + d1 / n;
        m2 = d2 - d1 * d1 / n;
    }
    let sd = s as f64;
    let scale = r.max_abs as f64 * sd;
    let inv2 = 1.0 / (scale * scale);
    r.mean = (mean_y / sd) as f32;
    r.m2_scaled = (m2.max(0.0) * inv2) as f32;
    r.norm_ssq = (s2 * inv2) as f32;
    r
}

/// The first sweep's own sums are used where max_abs lies within 2^±SUMS_IN_PLACE (see
/// `chunk_record_kernel`).
const SUMS_IN_PLACE: i32 = 40;

/// The power of two s with max_abs·s in [1, 2), kept a normal f32 (2⁻¹²⁶ to 2¹²⁶), so
/// that max_abs·s lies in [1, 4) at the ends of f32's range and in (0, 1) for a subnormal
/// max_abs.
fn unit_scale(max_abs: f32) -> f32 {
    let field = ((max_abs.to_bits() >> 23) & 0xff) as i32;
    let p = (127 - field).clamp(-126, 126);
    f32::from_bits(((127 + p) as u32) << 23)
}

/// Terms each f32 lane adds before its sum moves to f64 (one per group in `shifted_sums`,
/// one per quad in the first sweep): a relative error of 15 units of f32 rounding at worst,
/// and the long sums run in f64.
const F32_RUN: usize = 16;

/// `shifted_sums`, checked or not. (A function, not a closure: a closure would be compiled
/// without its caller's target features.)
#[inline(always)]
fn shifted_sums_with<const S: usize, const FMA: bool>(
    checked: bool,
    x: &[f32],
    s: f32,
    c: f32,
) -> (f64, f64) {
    if checked {
        shifted_sums::<true, S, FMA>(x, s, c)
    } else {
        shifted_sums::<false, S, FMA>(x, s, c)
    }
}

/// Σd and Σd² over the finite elements, d = x·s − c (one rounding: x·s is exact), in S
/// interleaved lanes. CHECKED: a non-finite element adds nothing (unchecked, every element
/// is taken as finite).
#[inline(always)]
fn shifted_sums<const CHECKED: bool, const S: usize, const FMA: bool>(
    x: &[f32],
    s: f32,
    c: f32,
) -> (f64, f64) {
    let mut sum1 = [0f64; S];
    let mut sum2 = [0f64; S];
    let (groups, rest) = x.as_chunks::<S>();
    let mut tail = [f32::NAN; S];
    tail[..rest.len()].copy_from_slice(rest);
    for run in groups.chunks(F32_RUN) {
        let (mut run1, mut run2) = ([0f32; S], [0f32; S]);
        for g in run {
            fold_sums::<CHECKED, S, FMA>(g, s, c, &mut run1, &mut run2);
        }
        for j in 0..S {
            sum1[j] += run1[j] as f64;
            sum2[j] += run2[j] as f64;
        }
    }
    // The tail, padded by NaN: always checked.
    let (mut run1, mut run2) = ([0f32; S], [0f32; S]);
    fold_sums::<true, S, FMA>(&tail, s, c, &mut run1, &mut run2);
    for j in 0..S {
        sum1[j] += run1[j] as f64;
        sum2[j] += run2[j] as f64;
    }
    (sum1.iter().sum(), sum2.iter().sum())
}

/// One group of `shifted_sums`: d = x·s − c added to run1 and d² to run2, lane by lane.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn fold_sums<const CHECKED: bool, const S: usize, const FMA: bool>(
    g: &[f32; S],
    s: f32,
    c: f32,
    run1: &mut [f32; S],
    run2: &mut [f32; S],
) {
    for j in 0..S {
        let d = if FMA {
            g[j].mul_add(s, -c)
        } else {
            g[j] * s - c
        };
        let d = if CHECKED && !g[j].is_finite() { 0.0 } else { d };
        run1[j] += d;
        run2[j] = if FMA {
            d.mul_add(d, run2[j])
        } else {
            run2[j] + d * d
        };
    }
}

/// Interleaved accumulators of the first sweep: element i of a chunk goes to lane i mod L.
struct Sweep<const L: usize> {
    sat: [u32; L],
    mn: [f32; L],
    mx: [f32; L],
    /// Σx and Σx² of the finite elements, in f64; f32 runs of `F32_RUN` quads (four
    /// groups, each group its own f32 accumulator) are added in as they end.
    s1: [f64; L],
    s2: [f64; L],
}

impl<const L: usize> Sweep<L> {
    fn new() -> Self {
        Sweep {
            sat: [0; L],
            mn: [f32::INFINITY; L],
            mx: [f32::NEG_INFINITY; L],
            s1: [0.0; L],
            s2: [0.0; L],
        }
    }

    /// Folds four groups of L elements without a branch, adds them and their squares to
    /// the f32 runs (group i to run i) and returns their exponent fields, four to a word:
    /// group i's in byte i of each lane's word (one store per four groups; the byte order
    /// of a chunk does not matter to the histogram, which only counts them). CHECKED: a
    /// non-finite element is replaced by k, a finite element of the same chunk, which
    /// changes neither min nor max, and adds 0 to the sums; unchecked, every element is
    /// taken as finite (the caller takes the chunk again, checked, if one was not).
    /// Straight-line integer and float code over arrays, so that the compiler keeps the
    /// accumulators in SIMD registers. SAT: whether saturation bounds are given (without
    /// them nothing saturates). FMA: squares are added by a fused multiply-add.
    // Indexing every per-lane array by j in one loop is what vectorizes; iterators over
    // six zipped arrays would not read better.
    #[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
    #[inline(always)]
    fn push4<const SAT: bool, const CHECKED: bool, const FMA: bool>(
        &mut self,
        groups: &[[f32; L]; 4],
        k: f32,
        lo: f32,
        hi: f32,
        run1: &mut [[f32; L]; 4],
        run2: &mut [[f32; L]; 4],
    ) -> [u32; L] {
        let kbits = k.to_bits();
        let mut words = [0u32; L];
        for i in 0..4 {
            let g = &groups[i];
            for j in 0..L {
                let bits = g[j].to_bits();
                let a = bits & 0x7fff_ffff;
                let fin = (a < 0x7f80_0000) as u32;
                let (v, y) = if CHECKED {
                    let m = fin.wrapping_neg();
                    (
                        f32::from_bits((bits & m) | (kbits & !m)),
                        f32::from_bits(bits & m),
                    )
                } else {
                    (g[j], g[j])
                };
                if SAT {
                    let out = ((v <= lo) | (v >= hi)) as u32;
                    // Checked, a non-finite element became k, which must not count.
                    self.sat[j] += if CHECKED { fin & out } else { out };
                }
                self.mn[j] = if v < self.mn[j] { v } else { self.mn[j] };
                self.mx[j] = if v > self.mx[j] { v } else { self.mx[j] };
                run1[i][j] += y;
                run2[i][j] = if FMA {
                    y.mul_add(y, run2[i][j])
                } else {
                    run2[i][j] + y * y
                };
                words[j] |= (a >> 23) << (8 * i);
            }
        }
        words
    }

    /// Adds the f32 runs into the f64 sums and empties them.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn end_runs(&mut self, run1: &mut [[f32; L]; 4], run2: &mut [[f32; L]; 4]) {
        for j in 0..L {
            self.s1[j] +=
                (run1[0][j] as f64 + run1[1][j] as f64) + (run1[2][j] as f64 + run1[3][j] as f64);
            self.s2[j] +=
                (run2[0][j] as f64 + run2[1][j] as f64) + (run2[2][j] as f64 + run2[3][j] as f64);
        }
        *run1 = [[0.0; L]; 4];
        *run2 = [[0.0; L]; 4];
    }
}

/// `first_sweep` with saturation counted only where bounds are given. (A function, not a
/// closure: a closure would be compiled without its caller's target features.)
#[inline(always)]
fn first_sweep_with<const CHECKED: bool, const L: usize, const FMA: bool>(
    saturating: bool,
    x: &[f32],
    k: f32,
    lo: f32,
    hi: f32,
    exponents: &mut [u8; CHUNK],
) -> Sweep<L> {
    if saturating {
        first_sweep::<true, CHECKED, L, FMA>(x, k, lo, hi, exponents)
    } else {
        first_sweep::<false, CHECKED, L, FMA>(x, k, lo, hi, exponents)
    }
}

/// The first sweep over a chunk: the accumulators, and each element's exponent field in
/// `exponents`, in an order of their own within each run of 4·L elements (`push4`). The
/// tail after the last whole run is padded by NaN and always checked (the padding moves
/// no bound, adds nothing and saturates nothing); its exponents are written in order, one
/// by one, and the padding's not at all.
#[inline(always)]
fn first_sweep<const SAT: bool, const CHECKED: bool, const L: usize, const FMA: bool>(
    x: &[f32],
    k: f32,
    lo: f32,
    hi: f32,
    exponents: &mut [u8; CHUNK],
) -> Sweep<L> {
    let mut acc = Sweep::new();
    let (mut run1, mut run2) = ([[0f32; L]; 4], [[0f32; L]; 4]);
    let (groups, _) = x.as_chunks::<L>();
    let whole = groups.len() / 4 * 4 * L;
    // The next chunk, which this thread most likely reduces next (rayon hands each thread
    // a contiguous range of chunks): each run asks for the same lines of it, so that they
    // arrive while this chunk is swept and its histogram counted.
    let next = x.as_ptr().wrapping_add(CHUNK);
    let mut at = 0;
    for (runs, e) in groups[..whole / L]
        .chunks(4 * F32_RUN)
        .zip(exponents.chunks_mut(4 * L * F32_RUN))
    {
        for (q, e) in runs.chunks_exact(4).zip(e.chunks_exact_mut(4 * L)) {
            if x.len() == CHUNK {
                prefetch_lines(next.wrapping_add(at), 4 * L);
            }
            at += 4 * L;
            let q: &[[f32; L]; 4] = q.try_into().expect("four groups");
            let words = acc.push4::<SAT, CHECKED, FMA>(q, k, lo, hi, &mut run1, &mut run2);
            e.copy_from_slice(bytemuck::cast_slice(&words));
        }
        acc.end_runs(&mut run1, &mut run2);
    }
    let tail = &x[whole..];
    let mut padded = [[f32::NAN; L]; 4];
    for (p, &v) in padded.as_flattened_mut().iter_mut().zip(tail) {
        *p = v;
    }
    acc.push4::<SAT, true, FMA>(&padded, k, lo, hi, &mut run1, &mut run2);
    acc.end_runs(&mut run1, &mut run2);
    for (e, &v) in exponents[whole..].iter_mut().zip(tail) {
        *e = ((v.to_bits() & 0x7fff_ffff) >> 23) as u8;
    }
    acc
}

/// How many of x are ±0 (a plain count, which the compiler vectorizes).
#[inline(always)]
fn count_zeros(x: &[f32]) -> u32 {
    x.iter().map(|&v| (v == 0.0) as u32).sum()
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
            ("4 lanes", |x, lo, hi| {
                chunk_record_kernel::<4, 16, false, _>(x, lo, hi, Portable)
            }),
            ("8 lanes", |x, lo, hi| {
                chunk_record_kernel::<8, 32, false, _>(x, lo, hi, Portable)
            }),
            ("16 lanes", |x, lo, hi| {
                chunk_record_kernel::<16, 64, false, _>(x, lo, hi, Portable)
            }),
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
                let want = chunk_record_kernel::<4, 16, false, _>(&x, lo, hi, Portable);
                #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
                let mut got: Vec<(&str, RawStats)> = builds
                    .iter()
                    .map(|(name, f)| (*name, f(&x, lo, hi)))
                    .collect();
                #[cfg(target_arch = "x86_64")]
                if let (Some(isa), true) = (
                    super::super::stats_histogram::Avx2::detect(),
                    std::arch::is_x86_feature_detected!("fma"),
                ) {
                    // SAFETY: the CPU has AVX2, POPCNT and FMA, checked just above.
                    got.push(("avx2", unsafe { chunk_record_avx2(&x, lo, hi, isa) }));
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

    /// Mean, spread and norm against f64 two-pass sums, where one-pass sums of squares
    /// would cancel: a mean a million times the spread, an outlier first, values at both
    /// ends of f32's range, and ordinary data; on every build, at 2e-6 relative (the
    /// f32 runs' bound, with margin), M2 against M2 itself.
    #[test]
    fn moments_hold_where_the_mean_dwarfs_the_spread() {
        let mut rng = crate::rng::Rng::new(11);
        let mut noise = |n: usize, centre: f64, spread: f64| -> Vec<f32> {
            (0..n)
                .map(|_| (centre + spread * (rng.uniform() - 0.5)) as f32)
                .collect()
        };
        let mut outlier_first = noise(4096, 0.0, 1.0);
        outlier_first[0] = 3e6;
        let cases: Vec<(&str, Vec<f32>)> = vec![
            ("1e4 ± 1e-2", noise(4096, 1e4, 2e-2)),
            ("-7e30 ± 1e25", noise(3001, -7e30, 2e25)),
            ("3e-33 ± 1e-36", noise(4096, 3e-33, 2e-36)),
            ("an outlier first", outlier_first),
            ("ordinary", noise(777, 0.1, 1.0)),
        ];
        let builds: Vec<(&str, ChunkRecord)> = vec![
            ("dispatched", chunk_record),
            ("4 lanes", |x, lo, hi| {
                chunk_record_kernel::<4, 16, false, _>(x, lo, hi, Portable)
            }),
            ("16 lanes", |x, lo, hi| {
                chunk_record_kernel::<16, 64, false, _>(x, lo, hi, Portable)
            }),
        ];
        for (name, x) in &cases {
            let n = x.len() as f64;
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
            let m2: f64 = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum();
            let ssq: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
            for (build, f) in &builds {
                let r = f(x, f32::NEG_INFINITY, f32::INFINITY);
                let a2 = (r.max_abs as f64).powi(2);
                let what = format!("{name}, {build}");
                let rel = |got: f64, want: f64| (got - want).abs() / want.abs();
                assert!(
                    rel(r.mean as f64, mean) < 2e-6,
                    "{what}: mean {} {mean}",
                    r.mean
                );
                assert!(
                    rel(r.m2_scaled as f64 * a2, m2) < 2e-6,
                    "{what}: M2 {} {m2}",
                    r.m2_scaled as f64 * a2
                );
                assert!(rel(r.norm_ssq as f64 * a2, ssq) < 2e-6, "{what}: Σx²");
            }
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
                        chunk_record_kernel::<4, 16, false, _>(
                            &x,
                            f32::NEG_INFINITY,
                            f32::INFINITY,
                            Portable,
                        ),
                    ),
                ] {
                    assert_eq!(r.hist, want, "{name}, len {n}, {build}");
                }
            }
        }
    }
}
