//! The log2|x| histogram of one statistics chunk on the CPU (`cpu::stats`), from the
//! exponent byte of each element that the chunk's first sweep kept: the bytes turned into
//! bins in place, the range of occupied bins found, and the bins counted.
//!
//! Counting is by whole-register byte compares (a table of counters, incremented per
//! element, was twice as slow: each increment waits on the one before to the same slot).
//! Most of a dense tensor's values lie in its top few bins (each bin down from the top
//! holds about a quarter of the one above in normal or uniform data), so those, and the
//! first bin (±0, which ReLU outputs and sparse inputs fill), are counted by compares in
//! one pass over the bytes; where the instruction set moves a compare into a bit mask
//! cheaply (AVX-512, AVX2), the same pass marks the scattered values of the bins below,
//! which are then counted one by one. Where those are many, each of their bins gets a
//! pass of its own.

use crate::stats::{HIST_BIN_WIDTH, HIST_BINS, HIST_LOG2_LO};

use super::stats::CHUNK;

/// The exponent field of NaN and ±∞.
pub(super) const NONFINITE_EXPONENT: u8 = 255;
/// What the padding after a chunk's last bin becomes: above every bin, so counted nowhere.
pub(super) const PAD: u8 = u8::MAX;
/// Bytes per counting vector: 64 bytes, one AVX-512 register (two AVX2, four SSE ones).
pub(super) const COUNT_LANES: usize = 64;
// A counter counts at most one byte in COUNT_LANES of a chunk, and must not wrap.
const _: () = assert!(CHUNK / COUNT_LANES <= u8::MAX as usize);
// The AVX2 counters count one byte in 32.
const _: () = assert!(CHUNK / 32 <= u8::MAX as usize);

/// Bins counted by compares at the top of a chunk's range.
const DENSE_BINS: u8 = 4;
/// Below the top bins, up to this many values per bin of the range are counted one by one
/// (a few cycles each) rather than by a pass per bin (a few hundred cycles a chunk).
const SCATTERED_PER_BIN: u32 = 32;

/// One bit mask per COUNT_LANES bytes of a chunk.
pub(super) type Masks = [u64; CHUNK / COUNT_LANES];

/// The byte passes as one instruction set runs them. A value of an implementing type
/// stands for that instruction set being there (only its `detect` makes one), so the
/// passes may use its intrinsics. Every `bytes` is a multiple of COUNT_LANES long and at
/// most CHUNK.
pub(super) trait BytePasses: Copy {
    /// How many of `bytes` equal `b`.
    fn count_equal(self, bytes: &[u8], b: u8) -> u32;

    /// For each COUNT_LANES bytes of `bytes`, the bit mask of those in from..from + span,
    /// and how many there are; None where the instruction set has no cheap way from a
    /// compare to a bit mask.
    fn masks_between(self, bytes: &[u8], from: u8, span: u8, masks: &mut Masks) -> Option<u32>;

    /// [min b, max (b + 1), min (b − 1)] over `bytes`, wrapping: what `bin_range` folds.
    /// By default a loop over lanes for the compiler to vectorize. (On x86-64 it kept the
    /// lanes in memory, a store and a load per vector: that pass cost as much as all the
    /// counting, so AVX2 writes it out, and AVX-512 takes it inside `bins_and_extremes`.)
    #[inline(always)]
    fn extremes(self, bytes: &[u8]) -> [u8; 3] {
        let mut lowest = [u8::MAX; COUNT_LANES];
        let mut above = [0u8; COUNT_LANES];
        let mut below = [u8::MAX; COUNT_LANES];
        for g in bytes.chunks_exact(COUNT_LANES) {
            for j in 0..COUNT_LANES {
                lowest[j] = lowest[j].min(g[j]);
                above[j] = above[j].max(g[j].wrapping_add(1));
                below[j] = below[j].min(g[j].wrapping_sub(1));
            }
        }
        fold_extremes(&[lowest, above, below])
    }

    /// `bytes[..len]` (exponent fields) turned into bins (`to_bins`), the rest (less than
    /// COUNT_LANES) set to PAD, and the `extremes` of the result: by default those three
    /// steps; AVX-512 takes the bins and the extremes in one pass.
    #[inline(always)]
    fn bins_and_extremes(self, bytes: &mut [u8], len: usize) -> [u8; 3] {
        to_bins(bytes);
        bytes[len..].fill(PAD);
        self.extremes(bytes)
    }

    /// The counts of the DENSE_BINS bins from `window` up, of bin 0 where ZERO (the window
    /// then lies above it), and where MASKS `masks_between(bytes, from, window − from)`:
    /// by default a pass for each; AVX-512 takes them all in one pass, loading each vector
    /// of bytes once.
    #[inline(always)]
    fn count_window<const ZERO: bool, const MASKS: bool>(
        self,
        bytes: &[u8],
        window: u8,
        from: u8,
        masks: &mut Masks,
    ) -> WindowCounts {
        WindowCounts {
            dense: std::array::from_fn(|k| self.count_equal(bytes, window + k as u8)),
            zeros: if ZERO { self.count_equal(bytes, 0) } else { 0 },
            scattered: if MASKS {
                self.masks_between(bytes, from, window - from, masks)
            } else {
                None
            },
        }
    }
}

/// What `count_window` counts.
pub(super) struct WindowCounts {
    /// Bins window .. window + DENSE_BINS.
    dense: [u32; DENSE_BINS as usize],
    /// Bin 0, where asked for.
    zeros: u32,
    /// How many bytes the masks hold, where asked for and the instruction set makes them.
    scattered: Option<u32>,
}

/// Any CPU: the compiler's vectorization of plain loops.
#[derive(Clone, Copy)]
pub(super) struct Portable;

impl BytePasses for Portable {
    #[inline(always)]
    fn count_equal(self, bytes: &[u8], b: u8) -> u32 {
        let mut acc = [0u8; COUNT_LANES];
        for g in bytes.chunks_exact(COUNT_LANES) {
            for (a, &v) in acc.iter_mut().zip(g) {
                *a = a.wrapping_add((v == b) as u8);
            }
        }
        acc.iter().map(|&c| c as u32).sum()
    }

    #[inline(always)]
    fn masks_between(self, _: &[u8], _: u8, _: u8, _: &mut Masks) -> Option<u32> {
        None
    }
}

/// AVX-512BW with POPCNT: compares into mask registers.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Avx512(());

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    pub(super) fn detect() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("popcnt"))
        .then_some(Avx512(()))
    }
}

/// The sum of the 64 byte counters of `acc`: eight at a time into u64 words, then the
/// words. Compiled with the features it needs, so that its intrinsics inline wherever it
/// does (a helper without them kept them as calls, even inlined into a caller with them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
#[inline]
fn sum_counters_avx512(acc: std::arch::x86_64::__m512i) -> u32 {
    use std::arch::x86_64::*;
    _mm512_reduce_add_epi64(_mm512_sad_epu8(acc, _mm512_setzero_si512())) as u32
}

#[cfg(target_arch = "x86_64")]
impl BytePasses for Avx512 {
    /// A compare into a mask and a masked add per 64 bytes, written out: left to the
    /// vectorizer, a pass inside a loop over bins was once compiled to compares of
    /// bytes widened to 64 bits, eight times the work.
    #[inline(always)]
    fn count_equal(self, bytes: &[u8], b: u8) -> u32 {
        use std::arch::x86_64::*;
        // SAFETY: self exists only where the CPU has AVX-512BW (`detect`); every load reads
        // 64 bytes of a chunk of exactly 64.
        unsafe {
            let want = _mm512_set1_epi8(b as i8);
            let one = _mm512_set1_epi8(1);
            let mut acc = _mm512_setzero_si512();
            for g in bytes.chunks_exact(COUNT_LANES) {
                let hit = _mm512_cmpeq_epi8_mask(_mm512_loadu_si512(g.as_ptr().cast()), want);
                acc = _mm512_mask_add_epi8(acc, hit, acc, one);
            }
            sum_counters_avx512(acc)
        }
    }

    #[inline(always)]
    fn masks_between(self, bytes: &[u8], from: u8, span: u8, masks: &mut Masks) -> Option<u32> {
        use std::arch::x86_64::*;
        let mut found = 0;
        // SAFETY: self exists only where the CPU has AVX-512BW (`detect`); every load reads
        // 64 bytes of a chunk of exactly 64.
        unsafe {
            let (from, span) = (_mm512_set1_epi8(from as i8), _mm512_set1_epi8(span as i8));
            for (g, m) in bytes.chunks_exact(COUNT_LANES).zip(masks.iter_mut()) {
                let v = _mm512_loadu_si512(g.as_ptr().cast());
                *m = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(v, from), span);
                found += m.count_ones();
            }
        }
        Some(found)
    }

    #[inline(always)]
    fn bins_and_extremes(self, bytes: &mut [u8], len: usize) -> [u8; 3] {
        use std::arch::x86_64::*;
        // The byte arithmetic of `to_bins`, with its division by the bin width as a shift.
        const _: () = assert!(HIST_BIN_WIDTH == 2);
        // SAFETY: self exists only where the CPU has AVX-512BW (`detect`); every load and
        // store touches 64 bytes of a chunk of exactly 64.
        unsafe {
            let lowest_field = _mm512_set1_epi8((127 + HIST_LOG2_LO) as i8);
            let seven_bits = _mm512_set1_epi8(0x7f);
            let last_bin = _mm512_set1_epi8(HIST_BINS as i8 - 1);
            let pad = _mm512_set1_epi8(PAD as i8);
            let one = _mm512_set1_epi8(1);
            let mut lowest = _mm512_set1_epi8(-1);
            let mut above = _mm512_setzero_si512();
            let mut below = _mm512_set1_epi8(-1);
            for (i, g) in bytes.chunks_exact_mut(COUNT_LANES).enumerate() {
                let e = _mm512_loadu_si512(g.as_ptr().cast());
                let over = _mm512_subs_epu8(e, lowest_field);
                let halved = _mm512_and_si512(_mm512_srli_epi16(over, 1), seven_bits);
                let mut v = _mm512_min_epu8(halved, last_bin);
                // Only the last vector can hold padding.
                let real = len.saturating_sub(i * COUNT_LANES);
                if real < COUNT_LANES {
                    v = _mm512_mask_blend_epi8(!0u64 << real, v, pad);
                }
                _mm512_storeu_si512(g.as_mut_ptr().cast(), v);
                lowest = _mm512_min_epu8(lowest, v);
                above = _mm512_max_epu8(above, _mm512_add_epi8(v, one));
                below = _mm512_min_epu8(below, _mm512_sub_epi8(v, one));
            }
            let mut lanes = [[0u8; COUNT_LANES]; 3];
            for (l, v) in lanes.iter_mut().zip([lowest, above, below]) {
                _mm512_storeu_si512(l.as_mut_ptr().cast(), v);
            }
            fold_extremes(&lanes)
        }
    }

    /// Every count and the masks from one load of each 64 bytes: as separate passes they
    /// cost a loop each, most of a chunk's histogram.
    #[inline(always)]
    fn count_window<const ZERO: bool, const MASKS: bool>(
        self,
        bytes: &[u8],
        window: u8,
        from: u8,
        masks: &mut Masks,
    ) -> WindowCounts {
        use std::arch::x86_64::*;
        let mut found = 0;
        // SAFETY: self exists only where the CPU has AVX-512BW (`detect`); every load reads
        // 64 bytes of a chunk of exactly 64.
        unsafe {
            let one = _mm512_set1_epi8(1);
            let zero = _mm512_setzero_si512();
            let mut want = [zero; DENSE_BINS as usize];
            for (k, w) in (window..).zip(want.iter_mut()) {
                *w = _mm512_set1_epi8(k as i8);
            }
            let mut acc = [zero; DENSE_BINS as usize];
            let mut zeros = zero;
            let from_v = _mm512_set1_epi8(from as i8);
            let span = _mm512_set1_epi8(window.wrapping_sub(from) as i8);
            for (g, m) in bytes.chunks_exact(COUNT_LANES).zip(masks.iter_mut()) {
                let v = _mm512_loadu_si512(g.as_ptr().cast());
                for (a, &w) in acc.iter_mut().zip(&want) {
                    *a = _mm512_mask_add_epi8(*a, _mm512_cmpeq_epi8_mask(v, w), *a, one);
                }
                if ZERO {
                    let hit = _mm512_cmpeq_epi8_mask(v, zero);
                    zeros = _mm512_mask_add_epi8(zeros, hit, zeros, one);
                }
                if MASKS {
                    *m = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(v, from_v), span);
                    found += m.count_ones();
                }
            }
            let mut dense = [0; DENSE_BINS as usize];
            for (d, &a) in dense.iter_mut().zip(&acc) {
                *d = sum_counters_avx512(a);
            }
            WindowCounts {
                dense,
                zeros: sum_counters_avx512(zeros),
                scattered: MASKS.then_some(found),
            }
        }
    }
}

/// The lanes of `extremes`' three accumulators folded: [min, max, min].
#[inline(always)]
fn fold_extremes<const N: usize>(lanes: &[[u8; N]; 3]) -> [u8; 3] {
    [
        lanes[0].iter().fold(u8::MAX, |m, &b| m.min(b)),
        lanes[1].iter().fold(0, |m, &b| m.max(b)),
        lanes[2].iter().fold(u8::MAX, |m, &b| m.min(b)),
    ]
}

/// AVX2 with POPCNT: masks by byte moves of the compares' sign bits.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    pub(super) fn detect() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("popcnt"))
        .then_some(Avx2(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl BytePasses for Avx2 {
    /// A compare and a subtract per 32 bytes, written out for the reason given for AVX-512.
    #[inline(always)]
    fn count_equal(self, bytes: &[u8], b: u8) -> u32 {
        use std::arch::x86_64::*;
        // SAFETY: self exists only where the CPU has AVX2 (`detect`); every load reads 32
        // bytes of a chunk of exactly 64.
        unsafe {
            let want = _mm256_set1_epi8(b as i8);
            let mut acc = _mm256_setzero_si256();
            for g in bytes.chunks_exact(32) {
                let hit = _mm256_cmpeq_epi8(_mm256_loadu_si256(g.as_ptr().cast()), want);
                // A hit is −1: subtracting it counts one.
                acc = _mm256_sub_epi8(acc, hit);
            }
            let words = _mm256_sad_epu8(acc, _mm256_setzero_si256());
            let mut lanes = [0u64; 4];
            _mm256_storeu_si256(lanes.as_mut_ptr().cast(), words);
            lanes.iter().sum::<u64>() as u32
        }
    }

    #[inline(always)]
    fn masks_between(self, bytes: &[u8], from: u8, span: u8, masks: &mut Masks) -> Option<u32> {
        use std::arch::x86_64::*;
        if span == 0 {
            masks.fill(0);
            return Some(0);
        }
        let mut found = 0;
        // SAFETY: self exists only where the CPU has AVX2 (`detect`); every load reads 32
        // bytes of a chunk of exactly 64.
        unsafe {
            // d < span, unsigned: d = min(d, span − 1) (AVX2 has no unsigned compare).
            let lo = _mm256_set1_epi8(from as i8);
            let last = _mm256_set1_epi8(span.wrapping_sub(1) as i8);
            let half = |p: *const u8| {
                let d = _mm256_sub_epi8(_mm256_loadu_si256(p.cast()), lo);
                _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(d, last), d)) as u32
            };
            for (g, m) in bytes.chunks_exact(COUNT_LANES).zip(masks.iter_mut()) {
                *m = half(g.as_ptr()) as u64 | (half(g.as_ptr().add(32)) as u64) << 32;
                found += m.count_ones();
            }
        }
        Some(found)
    }

    #[inline(always)]
    fn extremes(self, bytes: &[u8]) -> [u8; 3] {
        use std::arch::x86_64::*;
        // SAFETY: self exists only where the CPU has AVX2 (`detect`); every load reads 32
        // bytes of a chunk of exactly 64.
        unsafe {
            let one = _mm256_set1_epi8(1);
            let mut lowest = _mm256_set1_epi8(-1);
            let mut above = _mm256_setzero_si256();
            let mut below = _mm256_set1_epi8(-1);
            for g in bytes.chunks_exact(32) {
                let v = _mm256_loadu_si256(g.as_ptr().cast());
                lowest = _mm256_min_epu8(lowest, v);
                above = _mm256_max_epu8(above, _mm256_add_epi8(v, one));
                below = _mm256_min_epu8(below, _mm256_sub_epi8(v, one));
            }
            let mut lanes = [[0u8; 32]; 3];
            for (l, v) in lanes.iter_mut().zip([lowest, above, below]) {
                _mm256_storeu_si256(l.as_mut_ptr().cast(), v);
            }
            fold_extremes(&lanes)
        }
    }
}

/// Each exponent field turned into its histogram bin, `RawStats::hist_bin` in byte
/// arithmetic (so it vectorizes): the field less that of 2^HIST_LOG2_LO, clamped at 0,
/// over the bin width, clamped at the last bin. ±0 (field 0) lands in the first bin and
/// NaN and ±∞ (field 255) in the last; the caller takes them out.
#[inline(always)]
pub(super) fn to_bins(bytes: &mut [u8]) {
    const LOWEST: u8 = (127 + HIST_LOG2_LO) as u8;
    for e in bytes {
        *e = (e.saturating_sub(LOWEST) / HIST_BIN_WIDTH as u8).min(HIST_BINS as u8 - 1);
    }
}

/// Where a chunk's bins lie (`bin_range`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct BinRange {
    /// The lowest bin, and the highest; lowest > highest where there is none.
    pub lowest: u8,
    pub highest: u8,
    /// The lowest bin above the first (bin 0); 255 where there is none.
    pub above_first: u8,
}

/// The lowest bin, the highest, and the lowest above the first among `bytes` (bins and
/// PAD), in one pass of byte minima and maxima (`BytePasses::extremes`): b + 1 (wrapping)
/// takes PAD below every bin for the highest, and b − 1 (wrapping) takes the first bin
/// above every other for the lowest above it.
#[cfg(test)]
pub(super) fn bin_range<B: BytePasses>(isa: B, bytes: &[u8]) -> BinRange {
    range_of(isa.extremes(bytes))
}

/// `BinRange` from `extremes`' [min b, max (b + 1), min (b − 1)].
#[inline(always)]
fn range_of([lowest, above, below]: [u8; 3]) -> BinRange {
    if above == 0 {
        // Only padding.
        return BinRange {
            lowest: u8::MAX,
            highest: 0,
            above_first: u8::MAX,
        };
    }
    BinRange {
        lowest,
        highest: above - 1,
        // PAD became 254 and bin 0 255, above every other bin: either minimum means there
        // is none.
        above_first: if below >= PAD - 1 { u8::MAX } else { below + 1 },
    }
}

/// `bytes[..len]` (exponent fields, `bytes` a multiple of COUNT_LANES long) turned into
/// bins, the rest into PAD, and where the bins lie: `to_bins` and `bin_range` in one pass
/// where the instruction set allows.
#[inline(always)]
pub(super) fn bins_and_range<B: BytePasses>(isa: B, bytes: &mut [u8], len: usize) -> BinRange {
    range_of(isa.bins_and_extremes(bytes, len))
}

/// The histogram of `bytes` (bins and PAD) over the bins of `range`, the others left as
/// they are (see the module's header).
#[inline(always)]
pub(super) fn count_bins<B: BytePasses>(
    isa: B,
    bytes: &[u8],
    range: BinRange,
    hist: &mut [u32; HIST_BINS],
) {
    let BinRange {
        lowest,
        highest,
        above_first,
    } = range;
    if lowest > highest {
        return;
    }
    // The first bin apart, and the range again from the lowest occupied bin above it (the
    // first bin's zeros would otherwise have every empty bin between them and the values
    // counted).
    let zero = lowest == 0;
    if zero && highest == 0 {
        hist[0] = isa.count_equal(bytes, 0);
        return;
    }
    let from = if zero { above_first } else { lowest };
    let mut masks = [0u64; CHUNK / COUNT_LANES];
    if highest - from < DENSE_BINS {
        // The whole range in one window (bins above `highest` count nothing).
        let counts = window_pass(isa, zero, false, bytes, from, from, &mut masks);
        let bins = (highest - from + 1) as usize;
        hist[from as usize..=highest as usize].copy_from_slice(&counts.dense[..bins]);
        if zero {
            hist[0] = counts.zeros;
        }
        return;
    }
    // The top bins, and the marks of the scattered values below them.
    let window = highest + 1 - DENSE_BINS;
    let counts = window_pass(isa, zero, true, bytes, window, from, &mut masks);
    let w = window as usize;
    hist[w..w + DENSE_BINS as usize].copy_from_slice(&counts.dense);
    if zero {
        hist[0] = counts.zeros;
    }
    match counts.scattered {
        Some(found) if found <= SCATTERED_PER_BIN * (window - from) as u32 => {
            for (g, &m) in bytes.chunks_exact(COUNT_LANES).zip(&masks) {
                let mut m = m;
                while m != 0 {
                    hist[g[m.trailing_zeros() as usize] as usize] += 1;
                    m &= m - 1;
                }
            }
        }
        _ => {
            for b in from..window {
                hist[b as usize] = isa.count_equal(bytes, b);
            }
        }
    }
}

/// `count_window` with its switches chosen at run time.
#[inline(always)]
fn window_pass<B: BytePasses>(
    isa: B,
    zero: bool,
    scatter: bool,
    bytes: &[u8],
    window: u8,
    from: u8,
    masks: &mut Masks,
) -> WindowCounts {
    match (zero, scatter) {
        (false, false) => isa.count_window::<false, false>(bytes, window, from, masks),
        (false, true) => isa.count_window::<false, true>(bytes, window, from, masks),
        (true, false) => isa.count_window::<true, false>(bytes, window, from, masks),
        (true, true) => isa.count_window::<true, true>(bytes, window, from, masks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::RawStats;

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

    /// Every instruction set this CPU has, as a name and a closure over its passes.
    fn each_isa(mut f: impl FnMut(&str, &dyn Fn(&[u8]) -> (BinRange, [u32; HIST_BINS]))) {
        fn run<B: BytePasses>(isa: B, bytes: &[u8]) -> (BinRange, [u32; HIST_BINS]) {
            let range = bin_range(isa, bytes);
            let mut h = [0u32; HIST_BINS];
            count_bins(isa, bytes, range, &mut h);
            (range, h)
        }
        f("portable", &|b| run(Portable, b));
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(isa) = Avx512::detect() {
                f("avx512", &|b| run(isa, b));
            }
            if let Some(isa) = Avx2::detect() {
                f("avx2", &|b| run(isa, b));
            }
        }
    }

    /// `bin_range` and `count_bins` give the element-by-element range and histogram on
    /// every path: a range narrow enough for one window, with zeros beside it or not;
    /// scattered values below the top bins counted one by one, with zeros or not; too
    /// many below the top to count one by one; zeros beside a spread; zeros alone; padding
    /// alone; with every instruction set this CPU has.
    #[test]
    fn count_bins_matches_counting_each_byte() {
        let mut rng = crate::rng::Rng::new(5);
        let r = move |n: u64| (rng.next_u64() % n) as u8;
        type Make = Box<dyn FnMut(usize) -> u8>;
        let cases: Vec<(&str, Make)> = vec![
            ("narrow", Box::new(|i| 20 + (i % 3) as u8)),
            ("narrow at the top", Box::new(|i| 36 + (i % 4) as u8)),
            ("zeros beside a narrow range", {
                let mut r = r.clone();
                Box::new(move |i| if r(3) == 0 { 0 } else { 5 + (i % 4) as u8 })
            }),
            ("dense top, scattered below", {
                let mut r = r.clone();
                Box::new(move |_| if r(50) == 0 { 1 + r(30) } else { 31 + r(4) })
            }),
            ("zeros, a dense top, scattered below", {
                let mut r = r.clone();
                Box::new(move |_| match r(60) {
                    0 => 2 + r(20),
                    1..=20 => 0,
                    _ => 25 + r(4),
                })
            }),
            ("many below the top", {
                let mut r = r.clone();
                Box::new(move |i| if i % COUNT_LANES == 0 { 30 } else { 1 + r(38) })
            }),
            ("zeros and a spread", {
                let mut r = r.clone();
                Box::new(move |_| if r(2) == 0 { 0 } else { r(40) })
            }),
            ("zeros alone", Box::new(|_| 0)),
            (
                "one outlier above zeros",
                Box::new(|i| if i == 77 { 39 } else { 0 }),
            ),
        ];
        for (name, mut make) in cases {
            for len in [CHUNK, 1000, 0] {
                let counted = len.next_multiple_of(COUNT_LANES).max(COUNT_LANES);
                let mut bytes = vec![PAD; counted];
                for (i, b) in bytes.iter_mut().take(len).enumerate() {
                    *b = make(i);
                }
                let mut want = [0u32; HIST_BINS];
                for &b in &bytes[..len] {
                    want[b as usize] += 1;
                }
                let occupied: Vec<u8> = (0..HIST_BINS as u8)
                    .filter(|&b| want[b as usize] > 0)
                    .collect();
                each_isa(|isa, run| {
                    let (range, got) = run(&bytes);
                    assert_eq!(got, want, "{name}, len {len}, {isa}");
                    match (occupied.first(), occupied.last()) {
                        (Some(&lo), Some(&hi)) => {
                            assert_eq!((range.lowest, range.highest), (lo, hi), "{name}, {isa}");
                            let above = occupied.iter().find(|&&b| b > 0).copied();
                            assert_eq!(
                                range.above_first,
                                above.unwrap_or(u8::MAX),
                                "{name}, {isa}"
                            );
                        }
                        _ => assert!(range.lowest > range.highest, "{name}, len {len}, {isa}"),
                    }
                });
            }
        }
    }

    /// Every instruction set's bins and range of exponent fields are those of `to_bins`, the
    /// padding and `bin_range` one after the other: every field value, whole chunks and
    /// chunks with padding, and chunks of one repeated field.
    #[test]
    fn bins_and_range_are_to_bins_then_bin_range() {
        let mut rng = crate::rng::Rng::new(11);
        for len in [CHUNK, 4000, 1000, 64, 63, 1] {
            let counted = len.next_multiple_of(COUNT_LANES);
            let fields: Vec<Vec<u8>> = vec![
                (0..counted).map(|_| rng.next_u64() as u8).collect(),
                (0..counted).map(|i| (i % 256) as u8).collect(),
                vec![0; counted],
                vec![255; counted],
                vec![120; counted],
            ];
            for f in fields {
                let mut want = f.clone();
                to_bins(&mut want);
                want[len..].fill(PAD);
                let want_range = bin_range(Portable, &want);
                let check = |name: &str, got: &[u8], range: BinRange| {
                    assert_eq!(got, &want[..], "{name}: len {len}");
                    assert_eq!(range, want_range, "{name}: len {len}");
                };
                let mut got = f.clone();
                let range = bins_and_range(Portable, &mut got, len);
                check("portable", &got, range);
                #[cfg(target_arch = "x86_64")]
                {
                    if let Some(isa) = Avx512::detect() {
                        let mut got = f.clone();
                        let range = bins_and_range(isa, &mut got, len);
                        check("avx512", &got, range);
                    }
                    if let Some(isa) = Avx2::detect() {
                        let mut got = f.clone();
                        let range = bins_and_range(isa, &mut got, len);
                        check("avx2", &got, range);
                    }
                }
            }
        }
    }

    /// Every instruction set's passes count what the plain loops count: each bin of a
    /// chunk whose bins are spread from dense to empty, the masks of several ranges, and
    /// the windows of four bins with and without bin 0 and the masks below them.
    #[test]
    fn every_instruction_set_counts_alike() {
        let mut rng = crate::rng::Rng::new(3);
        let mut bytes = [PAD; CHUNK];
        for b in bytes.iter_mut().take(CHUNK - 37) {
            // Bin 39 − k with probability about 2^-(k+1): dense at the top, scattered below.
            *b = 39 - (rng.next_u64() | 1 << 39).trailing_zeros() as u8;
        }
        let mut want = [0u32; HIST_BINS];
        for &b in bytes.iter().filter(|&&b| b != PAD) {
            want[b as usize] += 1;
        }
        let inside = |b: u8, from: u8, span: u8| b >= from && b < from + span;
        fn check<B: BytePasses>(
            name: &str,
            isa: B,
            bytes: &[u8],
            want: &[u32; HIST_BINS],
            inside: &dyn Fn(u8, u8, u8) -> bool,
        ) {
            for b in 0..HIST_BINS as u8 {
                assert_eq!(
                    isa.count_equal(bytes, b),
                    want[b as usize],
                    "{name}: bin {b}"
                );
            }
            for (from, span) in [(0u8, 1u8), (1, 30), (20, 16), (36, 4), (0, 40)] {
                let mut masks = [0u64; CHUNK / COUNT_LANES];
                let Some(found) = isa.masks_between(bytes, from, span, &mut masks) else {
                    continue;
                };
                let count = bytes.iter().filter(|&&b| inside(b, from, span)).count();
                assert_eq!(found as usize, count, "{name}: {from}+{span}");
                for (i, &b) in bytes.iter().enumerate() {
                    let bit = masks[i / COUNT_LANES] >> (i % COUNT_LANES) & 1;
                    assert_eq!(bit == 1, inside(b, from, span), "{name}: byte {i}");
                }
            }
            for (window, from) in [(36u8, 1u8), (20, 3), (1, 1), (30, 29)] {
                let mut masks = [0u64; CHUNK / COUNT_LANES];
                let mut plain = [0u64; CHUNK / COUNT_LANES];
                let c = isa.count_window::<true, true>(bytes, window, from, &mut masks);
                let p = Portable.count_window::<true, false>(bytes, window, from, &mut plain);
                assert_eq!(c.dense, p.dense, "{name}: window {window}");
                assert_eq!(c.zeros, want[0], "{name}: window {window}, zeros");
                let c2 = isa.count_window::<false, false>(bytes, window, from, &mut plain);
                assert_eq!(c2.dense, p.dense, "{name}: window {window}, without zeros");
                let expect: [u32; 4] =
                    std::array::from_fn(|k| want.get(window as usize + k).copied().unwrap_or(0));
                assert_eq!(c.dense, expect, "{name}: window {window}");
                if let Some(found) = c.scattered {
                    let span = window - from;
                    let count = bytes.iter().filter(|&&b| inside(b, from, span)).count();
                    assert_eq!(found as usize, count, "{name}: below window {window}");
                    for (i, &b) in bytes.iter().enumerate() {
                        let bit = masks[i / COUNT_LANES] >> (i % COUNT_LANES) & 1;
                        assert_eq!(bit == 1, inside(b, from, span), "{name}: byte {i}");
                    }
                }
            }
            let e = isa.extremes(bytes);
            assert_eq!(e, Portable.extremes(bytes), "{name}: extremes");
        }
        check("portable", Portable, &bytes, &want, &inside);
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(isa) = Avx512::detect() {
                check("avx512", isa, &bytes, &want, &inside);
            }
            if let Some(isa) = Avx2::detect() {
                check("avx2", isa, &bytes, &want, &inside);
            }
        }
    }
}
