//! The log2|x| histogram of one statistics chunk on the CPU (`cpu::stats`), from the
//! exponent byte of each element that the chunk's first sweep kept: the bytes turned into
//! bins in place, the range of occupied bins found, and the bins counted.
//!
//! Counting is by whole-register byte compares, one pass over the chunk's bytes per bin (a
//! table of counters, incremented per element, was twice as slow: each increment waits on
//! the one before to the same slot). Most of a dense tensor's values lie in its top few
//! bins (each bin down from the top holds about a quarter of the one above in normal or
//! uniform data), so only those, and the first bin (±0, which ReLU outputs and sparse
//! inputs fill), get a pass each; the scattered values of the bins between are found by one
//! pass of compares into bit masks, where the instruction set moves a compare into a mask
//! cheaply (AVX-512, AVX2), and counted one by one.

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

/// Bins counted by a pass each at the top of a chunk's range.
const DENSE_BINS: u8 = 4;
/// Below the top bins, up to this many values per bin of the range are counted one by one
/// (a few cycles each) rather than by a pass per bin (a few hundred cycles a chunk).
const SCATTERED_PER_BIN: u32 = 32;

/// One bit mask per COUNT_LANES bytes of a chunk.
pub(super) type Masks = [u64; CHUNK / COUNT_LANES];

/// The byte passes as one instruction set runs them. A value of an implementing type
/// stands for that instruction set being there (only its `detect` makes one), so the
/// passes may use its intrinsics.
pub(super) trait BytePasses: Copy {
    /// How many of `bytes` (a multiple of COUNT_LANES long, at most CHUNK) equal `b`.
    fn count_equal(self, bytes: &[u8], b: u8) -> u32;
    /// For each COUNT_LANES bytes of `bytes`, the bit mask of those in from..from + span
    /// but not in skip..skip + skip_span, and how many there are; None where the
    /// instruction set has no cheap way from a compare to a bit mask.
    fn masks_between(
        self,
        bytes: &[u8],
        from: u8,
        span: u8,
        skip: u8,
        skip_span: u8,
        masks: &mut Masks,
    ) -> Option<u32>;
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
    fn masks_between(self, _: &[u8], _: u8, _: u8, _: u8, _: u8, _: &mut Masks) -> Option<u32> {
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
            // The byte counters summed eight at a time into u64 words, then the words.
            _mm512_reduce_add_epi64(_mm512_sad_epu8(acc, _mm512_setzero_si512())) as u32
        }
    }

    #[inline(always)]
    fn masks_between(
        self,
        bytes: &[u8],
        from: u8,
        span: u8,
        skip: u8,
        skip_span: u8,
        masks: &mut Masks,
    ) -> Option<u32> {
        use std::arch::x86_64::*;
        let mut found = 0;
        // SAFETY: self exists only where the CPU has AVX-512BW (`detect`); every load reads
        // 64 bytes of a chunk of exactly 64.
        unsafe {
            let (from, span) = (_mm512_set1_epi8(from as i8), _mm512_set1_epi8(span as i8));
            let (skip, skip_span) = (
                _mm512_set1_epi8(skip as i8),
                _mm512_set1_epi8(skip_span as i8),
            );
            for (g, m) in bytes.chunks_exact(COUNT_LANES).zip(masks.iter_mut()) {
                let v = _mm512_loadu_si512(g.as_ptr().cast());
                let inside = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(v, from), span);
                let skipped = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(v, skip), skip_span);
                *m = inside & !skipped;
                found += m.count_ones();
            }
        }
        Some(found)
    }
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
    fn masks_between(
        self,
        bytes: &[u8],
        from: u8,
        span: u8,
        skip: u8,
        skip_span: u8,
        masks: &mut Masks,
    ) -> Option<u32> {
        use std::arch::x86_64::*;
        let mut found = 0;
        // SAFETY: self exists only where the CPU has AVX2 (`detect`); every load reads 32
        // bytes of a chunk of exactly 64.
        unsafe {
            // d < span, unsigned: d = min(d, span − 1) (AVX2 has no unsigned compare).
            let below = |v: __m256i, lo: u8, span: u8| {
                let d = _mm256_sub_epi8(v, _mm256_set1_epi8(lo as i8));
                let last = _mm256_set1_epi8(span.wrapping_sub(1) as i8);
                _mm256_cmpeq_epi8(_mm256_min_epu8(d, last), d)
            };
            let half = |p: *const u8| {
                let v = _mm256_loadu_si256(p.cast());
                let keep = _mm256_andnot_si256(below(v, skip, skip_span), below(v, from, span));
                _mm256_movemask_epi8(keep) as u32
            };
            for (g, m) in bytes.chunks_exact(COUNT_LANES).zip(masks.iter_mut()) {
                *m = half(g.as_ptr()) as u64 | (half(g.as_ptr().add(32)) as u64) << 32;
                found += m.count_ones();
            }
        }
        Some(found)
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

/// The lowest and the highest bin among `bytes` (bins and PAD, a multiple of COUNT_LANES
/// long), in lanes so that it compiles to SIMD. Without any bin, lowest > highest.
#[inline(always)]
pub(super) fn bin_range(bytes: &[u8]) -> (u8, u8) {
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

/// The histogram of `bytes` (bins and PAD, a multiple of COUNT_LANES long) over the bins
/// lowest..=highest, the others left as they are (see the module's header).
#[inline(always)]
pub(super) fn count_bins<B: BytePasses>(
    isa: B,
    bytes: &[u8],
    lowest: u8,
    highest: u8,
    hist: &mut [u32; HIST_BINS],
) {
    if lowest > highest {
        return;
    }
    // The first bin alone, and the range again from the lowest occupied bin above it (the
    // first bin's zeros would otherwise have every empty bin between them and the values
    // counted).
    let from = if lowest == 0 {
        hist[0] = isa.count_equal(bytes, 0);
        if highest == 0 {
            return;
        }
        lowest_above_first(bytes)
    } else {
        lowest
    };
    let bins = highest - from + 1;
    if bins <= DENSE_BINS {
        for b in from..=highest {
            hist[b as usize] = isa.count_equal(bytes, b);
        }
        return;
    }
    // Where the values lie: one byte of every COUNT_LANES, and the window of DENSE_BINS
    // bins that holds the most of them.
    let mut sample = [0u32; HIST_BINS];
    for g in bytes.chunks_exact(COUNT_LANES) {
        if let Some(n) = sample.get_mut(g[0] as usize) {
            *n += 1;
        }
    }
    let in_window =
        |lo: u8| -> u32 { sample[lo as usize..(lo + DENSE_BINS) as usize].iter().sum() };
    let window = (from..=highest + 1 - DENSE_BINS)
        .max_by_key(|&lo| (in_window(lo), std::cmp::Reverse(lo)))
        .unwrap_or(from);
    for b in window..window + DENSE_BINS {
        hist[b as usize] = isa.count_equal(bytes, b);
    }
    // The rest of the range, one by one if the sample says they are few.
    let sampled: u32 = sample[from as usize..=highest as usize].iter().sum();
    let rest_bins = (bins - DENSE_BINS) as u32;
    let expected = (sampled - in_window(window)) * COUNT_LANES as u32;
    let few = SCATTERED_PER_BIN * rest_bins;
    let mut masks = [0u64; CHUNK / COUNT_LANES];
    // The sample's estimate for the whole chunk, allowed half again for its error.
    let scattered = if expected <= few + few / 2 {
        isa.masks_between(bytes, from, bins, window, DENSE_BINS, &mut masks)
    } else {
        None
    };
    match scattered {
        Some(found) if found <= few => {
            for (g, &m) in bytes.chunks_exact(COUNT_LANES).zip(&masks) {
                let mut m = m;
                while m != 0 {
                    hist[g[m.trailing_zeros() as usize] as usize] += 1;
                    m &= m - 1;
                }
            }
        }
        _ => {
            for b in (from..window).chain(window + DENSE_BINS..=highest) {
                hist[b as usize] = isa.count_equal(bytes, b);
            }
        }
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

    /// `count_bins` gives the element-by-element histogram on every path: a range narrow
    /// enough for a pass per bin, scattered values counted one by one, a sample that
    /// promises few scattered values where there are many, many everywhere, and zeros
    /// beside all of them; with every instruction set this CPU has.
    #[test]
    fn count_bins_matches_counting_each_byte() {
        let mut rng = crate::rng::Rng::new(5);
        let mut r = move |n: u64| (rng.next_u64() % n) as u8;
        type Make = Box<dyn FnMut(usize) -> u8>;
        let cases: Vec<(&str, Make)> = vec![
            ("narrow", Box::new(|i| 20 + (i % 3) as u8)),
            ("dense top, scattered below", {
                let mut r = r.clone();
                Box::new(move |_| if r(50) == 0 { 1 + r(30) } else { 31 + r(4) })
            }),
            ("the sample misleads", {
                let mut r = r.clone();
                Box::new(move |i| if i % COUNT_LANES == 0 { 30 } else { 1 + r(38) })
            }),
            (
                "zeros and a spread",
                Box::new(move |_| if r(2) == 0 { 0 } else { r(40) }),
            ),
        ];
        for (name, mut make) in cases {
            for len in [CHUNK, 1000] {
                let counted = len.next_multiple_of(COUNT_LANES);
                let mut bytes = vec![PAD; counted];
                for (i, b) in bytes.iter_mut().take(len).enumerate() {
                    *b = make(i);
                }
                let mut want = [0u32; HIST_BINS];
                for &b in &bytes[..len] {
                    want[b as usize] += 1;
                }
                let (lowest, highest) = bin_range(&bytes);
                let mut got: Vec<(&str, [u32; HIST_BINS])> = Vec::new();
                let mut run = |isa_name, f: &dyn Fn(&mut [u32; HIST_BINS])| {
                    let mut h = [0u32; HIST_BINS];
                    f(&mut h);
                    got.push((isa_name, h));
                };
                run("portable", &|h| {
                    count_bins(Portable, &bytes, lowest, highest, h)
                });
                #[cfg(target_arch = "x86_64")]
                {
                    if let Some(isa) = Avx512::detect() {
                        run("avx512", &|h| count_bins(isa, &bytes, lowest, highest, h));
                    }
                    if let Some(isa) = Avx2::detect() {
                        run("avx2", &|h| count_bins(isa, &bytes, lowest, highest, h));
                    }
                }
                for (isa, h) in got {
                    assert_eq!(h, want, "{name}, len {len}, {isa}");
                }
            }
        }
    }

    /// Every instruction set's passes count what the plain loops count: each bin of a
    /// chunk whose bins are spread from dense to empty, and the masks of several ranges,
    /// each with three bins skipped.
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
        let check = |name: &str, isa: &dyn Fn(&[u8], u8) -> u32| {
            for b in 0..HIST_BINS as u8 {
                assert_eq!(isa(&bytes, b), want[b as usize], "{name}: bin {b}");
            }
        };
        check("portable", &|x, b| Portable.count_equal(x, b));
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(isa) = Avx512::detect() {
                check("avx512", &|x, b| isa.count_equal(x, b));
            }
            type MasksOf = Box<dyn Fn(u8, u8, &mut Masks) -> Option<u32>>;
            let mut masks_of: Vec<(&str, MasksOf)> = Vec::new();
            if let Some(isa) = Avx512::detect() {
                masks_of.push((
                    "avx512",
                    Box::new(move |f, s, m| isa.masks_between(&bytes, f, s, f + 2, 3, m)),
                ));
            }
            if let Some(isa) = Avx2::detect() {
                masks_of.push((
                    "avx2",
                    Box::new(move |f, s, m| isa.masks_between(&bytes, f, s, f + 2, 3, m)),
                ));
            }
            for (name, masks_between) in &masks_of {
                for (from, span) in [(0u8, 1u8), (1, 30), (20, 16), (36, 4), (0, 40)] {
                    let mut masks = [0u64; CHUNK / COUNT_LANES];
                    let found = masks_between(from, span, &mut masks).expect("masks");
                    // The test skips from + 2 .. from + 5.
                    let inside =
                        |b: u8| b >= from && b < from + span && !(from + 2..from + 5).contains(&b);
                    assert_eq!(
                        found as usize,
                        bytes.iter().filter(|&&b| inside(b)).count(),
                        "{name}: {from}+{span}"
                    );
                    for (i, &b) in bytes.iter().enumerate() {
                        let bit = masks[i / COUNT_LANES] >> (i % COUNT_LANES) & 1;
                        assert_eq!(bit == 1, inside(b), "{name}: byte {i}, {from}+{span}");
                    }
                }
            }
        }
    }
}
