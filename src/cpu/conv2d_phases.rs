//! col2im for strided convolutions by stride phase: the input gradient's scatter of the
//! patch matrix back into the image, for strides above 1.
//!
//! Why: with stride s, tap (ki, kj)'s patch row adds output position (oy, ox) into input
//! pixel (oy·s + ki·d − pad, ox·s + kj·d − pad), every s-th column of an input row, one
//! value at a time. On resnet-20's stride-2 3×3 convolutions those scattered adds took
//! about half of the input gradient (16→32 on 28×28 inputs at batch 128, one core: 4.5 ms,
//! the GEMM 1.5 of it; BENCHMARKS.md). The pixels one tap reaches all share a phase (their
//! row mod s and column mod s), so with an input plane laid out phase by phase (each phase
//! (p, q) its own compact block of rows), each tap's adds are contiguous runs, shifted by a
//! constant within the phase's block. Each input channel's plane goes into phase blocks
//! once, takes every tap's adds there, and goes back.
//!
//! The sums are those of the direct scatter, term for term and in the same order: every
//! pixel starts from the same value (zero, or the gradient it accumulates onto) and
//! receives its taps in (ki, kj) order, only at another address.

use crate::cpu::Element;
use crate::ops::Conv2dShape;

/// Strides up to this along each axis go by phase (fixed arrays: no allocation per call);
/// larger ones keep the direct scatter.
pub(super) const MAX_STRIDE: usize = 4;

/// Where the phase blocks of one input plane lie: block (p, q) holds the pixels (r, c) with
/// r ≡ p (mod stride[0]) and c ≡ q (mod stride[1]), row-major, rows[p] × cols[q] of them.
struct Phases {
    stride: [usize; 2],
    /// Rows of each row phase and columns of each column phase.
    rows: [usize; MAX_STRIDE],
    cols: [usize; MAX_STRIDE],
    /// Start of each block in the buffer, [p·stride[1] + q].
    start: [usize; MAX_STRIDE * MAX_STRIDE],
}

impl Phases {
    fn new(s: &Conv2dShape) -> Self {
        assert!(s.stride[0] <= MAX_STRIDE && s.stride[1] <= MAX_STRIDE);
        let count = |len: usize, stride: usize| {
            let mut n = [0; MAX_STRIDE];
            for (p, n) in n.iter_mut().enumerate().take(stride) {
                *n = if p < len {
                    (len - p).div_ceil(stride)
                } else {
                    0
                };
            }
            n
        };
        let rows = count(s.h, s.stride[0]);
        let cols = count(s.w, s.stride[1]);
        let mut start = [0; MAX_STRIDE * MAX_STRIDE];
        let mut at = 0;
        for (p, &r) in rows.iter().enumerate().take(s.stride[0]) {
            for (q, &c) in cols.iter().enumerate().take(s.stride[1]) {
                start[p * s.stride[1] + q] = at;
                at += r * c;
            }
        }
        debug_assert_eq!(at, s.h * s.w);
        Phases {
            stride: s.stride,
            rows,
            cols,
            start,
        }
    }

    /// Where plane row `r`'s pixels of column phase `q` lie in the blocks.
    #[inline(always)]
    fn row_start(&self, r: usize, q: usize) -> usize {
        let (p, a) = (r % self.stride[0], r / self.stride[0]);
        self.start[p * self.stride[1] + q] + a * self.cols[q]
    }

    /// The plane's pixels into their phase blocks.
    #[inline(always)]
    fn split<T: Element>(&self, plane: &[T], w: usize, blocks: &mut [T]) {
        for (r, row) in plane.chunks(w).enumerate() {
            for q in 0..self.stride[1] {
                let at = self.row_start(r, q);
                for (b, d) in blocks[at..at + self.cols[q]].iter_mut().enumerate() {
                    *d = row[b * self.stride[1] + q];
                }
            }
        }
    }

    /// The phase blocks back into the plane.
    #[inline(always)]
    fn join<T: Element>(&self, blocks: &[T], w: usize, plane: &mut [T]) {
        for (r, row) in plane.chunks_mut(w).enumerate() {
            if self.stride[1] == 2 {
                // Two column phases interleaved: pairs, which the compiler turns into
                // shuffles, where a store every second value goes one at a time.
                let (at0, at1) = (self.row_start(r, 0), self.row_start(r, 1));
                let (even, odd) = (&blocks[at0..][..self.cols[0]], &blocks[at1..]);
                for (pair, (&e, &o)) in row.chunks_exact_mut(2).zip(even.iter().zip(odd)) {
                    pair[0] = e;
                    pair[1] = o;
                }
                if w % 2 == 1 {
                    row[w - 1] = even[w / 2];
                }
                continue;
            }
            for q in 0..self.stride[1] {
                let at = self.row_start(r, q);
                for (b, &v) in blocks[at..at + self.cols[q]].iter().enumerate() {
                    row[b * self.stride[1] + q] = v;
                }
            }
        }
    }
}

/// Where tap offset `off` (ki·dilation − pad, along one axis) lands: the phase of its
/// pixels and the shift from output index to index within the phase's block
/// (pixel = o·stride + off = (o + shift)·stride + phase).
#[inline(always)]
fn phase_and_shift(off: isize, stride: usize) -> (usize, isize) {
    let s = stride as isize;
    (off.rem_euclid(s) as usize, off.div_euclid(s))
}

/// Output indices o in [0, out) whose phase-block index o + shift lies in [0, len): the
/// range [lo, hi), empty when none does.
#[inline(always)]
fn valid(out: usize, shift: isize, len: usize) -> (usize, usize) {
    let lo = (-shift).clamp(0, out as isize) as usize;
    let hi = (len as isize - shift).clamp(0, out as isize) as usize;
    (lo, hi.max(lo))
}

/// Scratch elements `col2im_add` needs: one input plane's phase blocks.
pub(super) fn scratch_len(s: &Conv2dShape) -> usize {
    s.h * s.w
}

/// Adds `col` (K × oh·ow, the patch matrix of group `g`) back into image gradient `dxb`
/// ([c_in, h, w]), as conv2d.rs's direct scatter does, for a stride above 1 along either
/// axis. `blocks` holds at least `scratch_len` elements. With `zero`, the sums start from
/// zero instead: the group's planes of `dxb` are not read (whatever they hold) and are
/// written whole.
pub(super) fn col2im_add<T: Element>(
    s: &Conv2dShape,
    col: &[T],
    g: usize,
    dxb: &mut [T],
    blocks: &mut [T],
    zero: bool,
) {
    // The runs of adds and the block copies are loops the compiler vectorizes: compiled
    // for AVX-512 where the CPU has it, they take whole rows of 16 at a time (the crate's
    // baseline has 4-wide SSE).
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        unsafe { col2im_add_avx512(s, col, g, dxb, blocks, zero) };
        return;
    }
    col2im_add_body(s, col, g, dxb, blocks, zero);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn col2im_add_avx512<T: Element>(
    s: &Conv2dShape,
    col: &[T],
    g: usize,
    dxb: &mut [T],
    blocks: &mut [T],
    zero: bool,
) {
    col2im_add_body(s, col, g, dxb, blocks, zero);
}

#[inline(always)]
fn col2im_add_body<T: Element>(
    s: &Conv2dShape,
    col: &[T],
    g: usize,
    dxb: &mut [T],
    blocks: &mut [T],
    zero: bool,
) {
    let [oh, ow] = s.out_hw();
    let cpg = s.cin_per_group();
    let ohw = oh * ow;
    let phases = Phases::new(s);
    let blocks = &mut blocks[..s.h * s.w];
    for ci in 0..cpg {
        let plane = &mut dxb[(g * cpg + ci) * s.h * s.w..][..s.h * s.w];
        if zero {
            blocks.fill(T::zero());
        } else {
            phases.split(plane, s.w, blocks);
        }
        for ki in 0..s.kh {
            let off = (ki * s.dilation[0]) as isize - s.pad[0] as isize;
            let (p, row_shift) = phase_and_shift(off, s.stride[0]);
            let (oy_lo, oy_hi) = valid(oh, row_shift, phases.rows[p]);
            for kj in 0..s.kw {
                let off = (kj * s.dilation[1]) as isize - s.pad[1] as isize;
                let (q, col_shift) = phase_and_shift(off, s.stride[1]);
                let cols = phases.cols[q];
                let (ox_lo, ox_hi) = valid(ow, col_shift, cols);
                if oy_hi <= oy_lo || ox_hi <= ox_lo {
                    continue;
                }
                let k = (ci * s.kh + ki) * s.kw + kj;
                let patch = &col[k * ohw..][..ohw];
                let block = &mut blocks[phases.start[p * s.stride[1] + q]..];
                if cols == ow {
                    // Block rows as wide as the patch's: one contiguous run of adds.
                    let shift = row_shift * cols as isize + col_shift;
                    add_run(patch, block, shift, [oy_lo, oy_hi], [ox_lo, ox_hi], ow);
                    continue;
                }
                for oy in oy_lo..oy_hi {
                    let a = (oy as isize + row_shift) as usize;
                    let b = (ox_lo as isize + col_shift) as usize;
                    let dst = &mut block[a * cols + b..][..ox_hi - ox_lo];
                    let src = &patch[oy * ow + ox_lo..oy * ow + ox_hi];
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = *d + v;
                    }
                }
            }
        }
        phases.join(blocks, s.w, plane);
    }
}

/// Wrapped positions `add_run` keeps on the stack, at most; a run with more goes row by row.
const MAX_WRAPPED: usize = 64;

/// block[i + shift] += patch[i] over the patch positions (r, c) with r in [rows[0], rows[1])
/// and c in [cols[0], cols[1]), rows `ow` wide in both. Where few positions between them
/// fall outside the columns (one or two a row, at the padding), it adds the whole run from
/// the first to the last in one contiguous loop the compiler vectorizes (rows of 14 values
/// went mostly one at a time): the block values the outside positions reach (the
/// neighbouring block row's end) are kept before the loop and put back after it, so every
/// sum is the row-by-row one, bit for bit.
#[inline(always)]
fn add_run<T: Element>(
    patch: &[T],
    block: &mut [T],
    shift: isize,
    rows: [usize; 2],
    cols: [usize; 2],
    ow: usize,
) {
    let len = cols[1] - cols[0];
    let gap = ow - len;
    let wrapped_count = (rows[1] - rows[0] - 1) * gap;
    let to_block = |position: usize| (position as isize + shift) as usize;
    if wrapped_count > MAX_WRAPPED {
        for r in rows[0]..rows[1] {
            let from = r * ow + cols[0];
            let to = to_block(from);
            for (d, &v) in block[to..to + len].iter_mut().zip(&patch[from..from + len]) {
                *d = *d + v;
            }
        }
        return;
    }
    // The i-th outside position: row rows[0] + i / gap's columns from cols[1] on, wrapping
    // into the next row's first columns.
    let wrapped = |i: usize| to_block((rows[0] + i / gap) * ow + cols[1] + i % gap);
    let mut kept = [T::zero(); MAX_WRAPPED];
    for (i, k) in kept.iter_mut().enumerate().take(wrapped_count) {
        *k = block[wrapped(i)];
    }
    let start = rows[0] * ow + cols[0];
    let end = (rows[1] - 1) * ow + cols[1];
    let at = to_block(start);
    for (d, &v) in block[at..at + end - start]
        .iter_mut()
        .zip(&patch[start..end])
    {
        *d = *d + v;
    }
    for (i, &k) in kept.iter().enumerate().take(wrapped_count) {
        block[wrapped(i)] = k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// conv2d.rs's direct scatter, one value at a time: the reference.
    fn scatter(s: &Conv2dShape, col: &[f32], g: usize, dxb: &mut [f32]) {
        let [oh, ow] = s.out_hw();
        let cpg = s.cin_per_group();
        for ci in 0..cpg {
            for ki in 0..s.kh {
                for kj in 0..s.kw {
                    let k = (ci * s.kh + ki) * s.kw + kj;
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let r = (oy * s.stride[0] + ki * s.dilation[0]) as isize
                                - s.pad[0] as isize;
                            let c = (ox * s.stride[1] + kj * s.dilation[1]) as isize
                                - s.pad[1] as isize;
                            if r < 0 || c < 0 || r >= s.h as isize || c >= s.w as isize {
                                continue;
                            }
                            let at = ((g * cpg + ci) * s.h + r as usize) * s.w + c as usize;
                            dxb[at] += col[k * oh * ow + oy * ow + ox];
                        }
                    }
                }
            }
        }
    }

    /// The same bits as the direct scatter, starting from a non-zero gradient and from
    /// zero: strides 2 and 3, unequal strides, odd and even planes, padding 0 to 2, dilation, groups.
    #[test]
    fn gives_the_bits_of_the_direct_scatter() {
        let shape =
            |c_in, hw: [usize; 2], k: [usize; 2], stride, pad, dilation, groups| Conv2dShape {
                n: 1,
                c_in,
                h: hw[0],
                w: hw[1],
                c_out: 2 * groups,
                kh: k[0],
                kw: k[1],
                stride,
                pad,
                dilation,
                groups,
            };
        let shapes = [
            shape(3, [28, 28], [3, 3], [2, 2], [1, 1], [1, 1], 1),
            shape(2, [9, 7], [3, 3], [2, 2], [1, 1], [1, 1], 1),
            shape(2, [10, 11], [3, 3], [3, 3], [0, 0], [1, 1], 1),
            shape(1, [8, 9], [5, 3], [2, 1], [2, 1], [1, 1], 1),
            shape(2, [12, 10], [3, 3], [2, 3], [2, 2], [2, 2], 1),
            shape(4, [6, 6], [1, 1], [2, 2], [0, 0], [1, 1], 2),
            shape(1, [5, 5], [2, 2], [2, 2], [0, 0], [1, 1], 1),
            // 100 output rows: more wrapped positions than `add_run` keeps, row by row.
            shape(1, [200, 20], [3, 3], [2, 2], [1, 1], [1, 1], 1),
        ];
        for s in &shapes {
            let [oh, ow] = s.out_hw();
            let k = s.patch_len();
            let col: Vec<f32> = (0..k * oh * ow)
                .map(|i| ((i * 7919) % 1009) as f32 / 1009.0 - 0.5)
                .collect();
            let dx0: Vec<f32> = (0..s.x_len())
                .map(|i| ((i * 104_729) % 1013) as f32 / 1013.0 - 0.5)
                .collect();
            for g in 0..s.groups {
                let mut want = dx0.clone();
                scatter(s, &col, g, &mut want);
                let mut got = dx0.clone();
                let mut blocks = vec![f32::NAN; scratch_len(s)];
                col2im_add(s, &col, g, &mut got, &mut blocks, false);
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{s:?}, group {g}");
                // From zero: the group's planes hold NaN, which must be neither read nor
                // left behind; the other groups' planes stay as they were.
                let cpg = s.cin_per_group() * s.h * s.w;
                let mut want = dx0.clone();
                want[g * cpg..(g + 1) * cpg].fill(0.0);
                scatter(s, &col, g, &mut want);
                let mut got = dx0.clone();
                got[g * cpg..(g + 1) * cpg].fill(f32::NAN);
                col2im_add(s, &col, g, &mut got, &mut blocks, true);
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{s:?}, group {g}, from zero");
            }
        }
    }
}
