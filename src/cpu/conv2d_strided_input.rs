//! The input gradient of a strided convolution in f32, computed directly, one stride phase
//! at a time, on conv2d_direct.rs's wide grid (its forward register block, `forward`).
//!
//! Why: with stride s, the input pixels of one phase (row ≡ p, column ≡ q, mod s) all
//! receive the output gradient through the same taps, kernel rows ki ≡ p + pad (mod s) and
//! columns likewise, each at a fixed shift. So a phase's gradient is a stride-1 correlation
//! of dy (whose channels are the forward's output channels) with a sub-kernel of about
//! kh/s × kw/s taps, whose outputs are the phase's pixels: the transposed (fractionally
//! strided) convolution, taken apart. The im2col path (conv2d.rs) forms the patch gradient
//! W_gᵀ·dy_g instead, a GEMM that sums over c_out/groups only, and then adds each of its
//! kh·kw rows back into the image (conv2d_phases.rs). On resnet-20's stride-2 3×3 input
//! gradients at batch 128 on the bundled data's 28×28 inputs (dy planes of 14×14 and 7×7),
//! that took 1.55–1.77 ms (16→32) and 1.48–1.78 ms (32→64), this way 1.16–1.46 ms, where
//! PyTorch's oneDNN takes 1.5 and 1.1–1.3 (two threads, BENCHMARKS.md). On 32×32 inputs
//! (planes of 16×16 and 8×8, whole vectors) the im2col path ran 5 % (16→32) and 15 %
//! (32→64) faster than this one, so it keeps the shapes whose dy planes are whole
//! vectors.
//!
//! Method, per image: dy is copied once into zero-padded planes (`conv2d_direct::pad_image`),
//! padded so that every phase's taps stay inside them. For each phase, the wide grid runs a
//! stride-1 correlation over "wide" positions: every column of the padded rows the phase's
//! pixels start from, so that the positions of a block are consecutive in memory, and those
//! past the phase's columns (one or two a row) are computed and never read. A register block
//! holds CB input channels × PV vectors of positions; each (output channel, tap) step loads
//! PV vectors of dy and broadcasts each channel's weight into them. Its results lie
//! [channel][wide position], the layout of dx's planes, so no transpose follows; the
//! phases' rows are then interleaved into dx (`join`), written or added.
//!
//! Summation order: every pixel of dx sums its products in (output channel, tap row, tap
//! column) order from zero, in one lane, then is added to dx where the pass accumulates:
//! the result depends neither on the thread count nor on the block. It is not the im2col
//! path's order (the GEMM's, then the taps in scatter order), so the two differ by
//! rounding. Taps that reach past dy's edges read the padding's zeros; a finite weight adds
//! nothing by them, as in the stride-1 input gradient (conv2d.rs `transposed`).
//!
//! Where: f32, one group, stride up to `MAX_STRIDE` along each axis (not 1 × 1), no
//! dilation, a kernel at least as large as the stride along each axis (so that every phase
//! has taps: a 1×1 kernel at stride 2 reaches a quarter of the pixels, which the im2col
//! path's scatter leaves alone), input channels that fill the blocks of CB but for a
//! quarter of the last (a 3-channel image would compute 8 channels for 3), and dy planes
//! that are not whole vectors (above).
//! `GRADSCOPE_CONV_CHANNELS=off` turns it off with the other channel-block paths, to
//! compare on one machine.

use std::any::TypeId;

use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::conv2d_channels;
use crate::cpu::conv2d_direct::{self, as_f32, as_f32_mut, pad_image};
use crate::cpu::conv2d_direct_kernels::{self as kernels, Block, Isa};
use crate::cpu::conv2d_phases::MAX_STRIDE;
use crate::ops::Conv2dShape;

/// Products per input pixel, summed over the phases, below which the im2col path stays:
/// resnet-20's 3×3 kernels at stride 2 sum 32 or 64 output channels × 9 taps.
const MIN_PRODUCTS: usize = 64;

/// One stride phase along one axis: the input indices i = phase + stride·a, `len` of them,
/// and the `taps` kernel indices that reach them, k = first + stride·(taps − 1 − t) for t in
/// 0..taps, tap t of index a reading dy at a + shift + t (ascending in t, so that the taps
/// are the steps of a stride-1 correlation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct AxisPhase {
    len: usize,
    taps: usize,
    first: usize,
    shift: isize,
}

/// The phases of one axis (input length `n_in`, output length `n_out`, kernel `k`, stride,
/// padding), and the zeros dy needs before and after its `n_out` values so that every tap
/// of every phase reads inside them.
fn axis_phases(
    n_in: usize,
    n_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> ([AxisPhase; MAX_STRIDE], [usize; 2]) {
    let mut phases = [AxisPhase::default(); MAX_STRIDE];
    let (mut before, mut after) = (0isize, 0isize);
    for (p, phase) in phases.iter_mut().enumerate().take(stride) {
        let len = if p < n_in {
            (n_in - p).div_ceil(stride)
        } else {
            0
        };
        // The forward reads input index o·stride − pad + k: index p + stride·a meets output
        // o = (p + pad − k) / stride wherever that divides, so k ≡ p + pad (mod stride).
        let first = (p + pad) % stride;
        let taps = if first < k {
            (k - first).div_ceil(stride)
        } else {
            0
        };
        let reach = ((p + pad - first) / stride) as isize;
        let shift = reach - taps as isize + 1;
        *phase = AxisPhase {
            len,
            taps,
            first,
            shift,
        };
        if len > 0 && taps > 0 {
            before = before.max(-shift);
            after = after.max((len - 1) as isize + shift + taps as isize - n_out as isize);
        }
    }
    (phases, [before.max(0) as usize, after.max(0) as usize])
}

/// Where the pass runs on one shape, for one instruction set.
#[derive(Clone, Copy, Debug)]
struct Layout {
    isa: Isa,
    /// Input channels per register block (`Isa::forward_channels`), and register blocks of
    /// them (the last one partly past c_in: its weights there are zeros, its results unread).
    cb: usize,
    ci_blocks: usize,
    /// Vectors of wide positions per register block.
    pv: usize,
    stride: [usize; 2],
    rows: [AxisPhase; MAX_STRIDE],
    cols: [AxisPhase; MAX_STRIDE],
    /// The padded dy planes: zeros before the first row and column, row length, plane, and
    /// one image's length with the slack the last block reads past.
    before: [usize; 2],
    wp: usize,
    plane: usize,
    dyp_len: usize,
    /// Per phase (p·stride[1] + q): where its gradients ([block channel][wide position])
    /// start in the per-image buffer, and where its packed weights start.
    grads_at: [usize; MAX_STRIDE * MAX_STRIDE],
    weights_at: [usize; MAX_STRIDE * MAX_STRIDE],
    grads_len: usize,
    packed_len: usize,
}

impl Layout {
    fn new(s: &Conv2dShape, isa: Isa) -> Self {
        let [oh, ow] = s.out_hw();
        let (rows, [top, bottom]) = axis_phases(s.h, oh, s.kh, s.stride[0], s.pad[0]);
        let (cols, [left, right]) = axis_phases(s.w, ow, s.kw, s.stride[1], s.pad[1]);
        let (lanes, cb) = (isa.lanes(), isa.forward_channels());
        let wp = left + ow + right;
        let plane = (top + oh + bottom) * wp;
        let every_phase =
            || (0..s.stride[0]).flat_map(move |pr| (0..s.stride[1]).map(move |pc| (pr, pc)));
        // The vectors per block that cost the least: a block of PV vectors makes CB·PV FMAs
        // for PV + CB loads a step, so one vector waits on its loads (CB + 1 for CB FMAs)
        // where two or more wait on their FMAs; the blocks round each phase's positions up.
        // On 28×28 inputs (phases of 14 rows of 15, and 7 of 8) two vectors ran 10–20 %
        // faster than one or three, as this cost says.
        let cost = |pv: usize| -> usize {
            let positions: usize = every_phase()
                .map(|(pr, _)| (rows[pr].len * wp).next_multiple_of(pv * lanes))
                .sum();
            positions * (cb * pv).max(pv + cb) / pv
        };
        let pv = (1..=isa.max_vectors())
            .rev()
            .min_by_key(|&pv| cost(pv))
            .unwrap_or(1);
        let mut l = Layout {
            isa,
            cb,
            ci_blocks: s.c_in.div_ceil(cb),
            pv,
            stride: s.stride,
            rows,
            cols,
            before: [top, left],
            wp,
            plane,
            dyp_len: s.c_out * plane,
            grads_at: [0; MAX_STRIDE * MAX_STRIDE],
            weights_at: [0; MAX_STRIDE * MAX_STRIDE],
            grads_len: 0,
            packed_len: 0,
        };
        for (pr, pc) in every_phase() {
            let (r, c) = (rows[pr], cols[pc]);
            let at = pr * s.stride[1] + pc;
            l.grads_at[at] = l.grads_len;
            l.weights_at[at] = l.packed_len;
            l.grads_len += l.ci_blocks * cb * l.wide(r);
            l.packed_len += l.ci_blocks * cb * s.c_out * r.taps * c.taps;
            let end = (s.c_out - 1) * plane + l.base(r, c) + l.wide(r) + l.reach(r, c);
            l.dyp_len = l.dyp_len.max(end);
        }
        l
    }

    /// The wide positions of a phase whose rows are `r`: its rows of the padded dy, rounded
    /// up to whole blocks.
    fn wide(&self, r: AxisPhase) -> usize {
        (r.len * self.wp).next_multiple_of(self.pv * self.isa.lanes())
    }

    /// Where in the padded dy planes the phase's first pixel reads its first tap.
    fn base(&self, r: AxisPhase, c: AxisPhase) -> usize {
        let row = r.shift + self.before[0] as isize;
        let col = c.shift + self.before[1] as isize;
        row as usize * self.wp + col as usize
    }

    /// From a position's first tap to its last.
    fn reach(&self, r: AxisPhase, c: AxisPhase) -> usize {
        (r.taps.max(1) - 1) * self.wp + c.taps.max(1) - 1
    }

    /// Per part of the batch: the padded dy planes and one image's gradient by phase.
    fn part_len(&self) -> usize {
        self.dyp_len + self.grads_len
    }

    /// The phases' (row phase, column phase, index), every one of them.
    fn phases(&self) -> impl Iterator<Item = (AxisPhase, AxisPhase, usize)> + '_ {
        (0..self.stride[0]).flat_map(move |pr| {
            (0..self.stride[1])
                .map(move |pc| (self.rows[pr], self.cols[pc], pr * self.stride[1] + pc))
        })
    }
}

/// The layout of shape `s` where `backward_input` runs it in element type `T` on this CPU.
fn layout<T: Element>(s: &Conv2dShape) -> Option<Layout> {
    if TypeId::of::<T>() != TypeId::of::<f32>() || !conv2d_channels::enabled() {
        return None;
    }
    let isa = conv2d_direct::isa()?;
    let [oh, ow] = s.out_hw();
    let strided = s.stride != [1, 1] && s.stride[0].max(s.stride[1]) <= MAX_STRIDE;
    let every_phase = s.kh >= s.stride[0] && s.kw >= s.stride[1];
    let filled = 4 * s.c_in.next_multiple_of(isa.forward_channels()) <= 5 * s.c_in;
    let whole_vectors = (oh * ow).is_multiple_of(isa.lanes());
    if !strided
        || !every_phase
        || !filled
        || whole_vectors
        || s.groups != 1
        || s.dilation != [1, 1]
        || s.n == 0
        || oh * ow == 0
        || s.c_out * s.kh * s.kw < MIN_PRODUCTS
    {
        return None;
    }
    Some(Layout::new(s, isa))
}

/// Whether `backward_input` runs shape `s` in element type `T` on this CPU.
pub(super) fn applies<T: Element>(s: &Conv2dShape) -> bool {
    layout::<T>(s).is_some()
}

/// Scratch elements `backward_input` needs with the batch cut into `parts` ranges, for a
/// shape where `applies` holds: the packed weights, then each part's buffers.
pub(super) fn scratch_len(s: &Conv2dShape, parts: usize) -> usize {
    let l = layout::<f32>(s).expect("the strided input gradient applies");
    l.packed_len + parts * l.part_len()
}

/// dx = ∂L/∂x from dy and w, or dx += ∂L/∂x with `accumulate`, for a checked shape where
/// `applies::<T>` holds; the batch in ranges of `per` images, in parallel.
pub(super) fn backward_input<T: Element>(
    s: &Conv2dShape,
    dy: &[T],
    w: &[T],
    dx: &mut [T],
    scratch: &mut [T],
    per: usize,
    accumulate: bool,
) {
    let l = layout::<T>(s).expect("the strided input gradient applies");
    backward_input_f32(
        s,
        &l,
        as_f32(dy),
        as_f32(w),
        as_f32_mut(dx),
        as_f32_mut(scratch),
        per,
        accumulate,
    );
}

#[allow(clippy::too_many_arguments)]
fn backward_input_f32(
    s: &Conv2dShape,
    l: &Layout,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
    per: usize,
    accumulate: bool,
) {
    let [oh, ow] = s.out_hw();
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * oh * ow;
    let (packed, parts) = scratch.split_at_mut(l.packed_len);
    pack_weights(s, l, w, packed);
    let packed = &*packed;
    // dy's planes as pad_image's input: c_out planes of oh × ow, zeros before them.
    let dy_planes = Conv2dShape {
        n: 1,
        c_in: s.c_out,
        h: oh,
        w: ow,
        pad: l.before,
        ..*s
    };
    dx[..s.x_len()]
        .par_chunks_mut(per * x_img)
        .zip(parts.par_chunks_mut(l.part_len()))
        .enumerate()
        .for_each(|(part, (dxp, buf))| {
            let (dyp, grads) = buf.split_at_mut(l.dyp_len);
            // The padding stays zero; each image overwrites the interior only.
            dyp.fill(0.0);
            for (i, dxb) in dxp.chunks_mut(x_img).enumerate() {
                let image = part * per + i;
                pad_image(
                    &dy_planes,
                    l.wp,
                    l.plane,
                    &dy[image * y_img..][..y_img],
                    dyp,
                );
                for (r, c, at) in l.phases() {
                    if r.len * c.len > 0 {
                        let weights = &packed[l.weights_at[at]..];
                        phase(s, l, (r, c), dyp, weights, &mut grads[l.grads_at[at]..]);
                    }
                }
                join(s, l, grads, dxb, accumulate);
            }
        });
}

/// packed[phase][b][co][t][u][c] = w[co][b·CB + c][ki][kj], (ki, kj) the phase's tap
/// (t, u), zero for the channels past c_in: each block's weights of one (output channel,
/// tap) step side by side, as `kernels::forward` reads them.
fn pack_weights(s: &Conv2dShape, l: &Layout, w: &[f32], packed: &mut [f32]) {
    for (r, c, at) in l.phases() {
        let mut dst = l.weights_at[at];
        for b in 0..l.ci_blocks {
            for co in 0..s.c_out {
                for t in 0..r.taps {
                    let ki = r.first + s.stride[0] * (r.taps - 1 - t);
                    for u in 0..c.taps {
                        let kj = c.first + s.stride[1] * (c.taps - 1 - u);
                        for lane in 0..l.cb {
                            let ci = b * l.cb + lane;
                            packed[dst] = if ci < s.c_in {
                                w[((co * s.c_in + ci) * s.kh + ki) * s.kw + kj]
                            } else {
                                0.0
                            };
                            dst += 1;
                        }
                    }
                }
            }
        }
    }
}

/// One phase: every block of CB input channels × PV vectors of wide positions, from the
/// padded dy planes `dyp` and the phase's packed weights, into its gradients
/// [block channel][wide position].
fn phase(
    s: &Conv2dShape,
    l: &Layout,
    (r, c): (AxisPhase, AxisPhase),
    dyp: &[f32],
    weights: &[f32],
    grads: &mut [f32],
) {
    let wide = l.wide(r);
    let base = l.base(r, c);
    let block_weights = s.c_out * r.taps * c.taps * l.cb;
    // Bounds the unchecked reads and writes of the kernel below: the last block's.
    assert!(dyp.len() >= (s.c_out - 1) * l.plane + base + wide + l.reach(r, c));
    assert!(weights.len() >= l.ci_blocks * block_weights);
    assert!(grads.len() >= l.ci_blocks * l.cb * wide);
    for b in 0..l.ci_blocks {
        for j0 in (0..wide).step_by(l.pv * l.isa.lanes()) {
            let args = Block {
                x: dyp[base + j0..].as_ptr(),
                plane: l.plane,
                cin: s.c_out,
                taps: [r.taps, c.taps],
                steps: [l.wp, 1],
                w: weights[b * block_weights..].as_ptr(),
                out: grads[b * l.cb * wide + j0..].as_mut_ptr(),
                out_stride: wide,
            };
            // SAFETY: `conv2d_direct::isa` found the instruction set present and
            // `Layout::new` took PV from 1 to its `max_vectors`; the asserts above bound
            // every access.
            unsafe { kernels::forward(l.isa, l.pv, &args) };
        }
    }
}

/// The image's gradient by phase (`grads`, each phase's [channel][wide position] at
/// `grads_at`) into its planes `dxb` ([c_in, h, w]), written, or added with `accumulate`.
fn join(s: &Conv2dShape, l: &Layout, grads: &[f32], dxb: &mut [f32], accumulate: bool) {
    // Compiled for AVX-512 where the CPU has it: the interleaving of two column phases
    // then takes whole vectors (the crate's baseline has 4-wide SSE).
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        unsafe { join_avx512(s, l, grads, dxb, accumulate) };
        return;
    }
    join_body(s, l, grads, dxb, accumulate);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn join_avx512(s: &Conv2dShape, l: &Layout, grads: &[f32], dxb: &mut [f32], acc: bool) {
    join_body(s, l, grads, dxb, acc);
}

#[inline(always)]
fn join_body(s: &Conv2dShape, l: &Layout, grads: &[f32], dxb: &mut [f32], accumulate: bool) {
    let [sr, sc] = s.stride;
    let put = |d: &mut f32, v: f32| *d = if accumulate { *d + v } else { v };
    for (ci, plane) in dxb[..s.c_in * s.h * s.w]
        .chunks_exact_mut(s.h * s.w)
        .enumerate()
    {
        for (y, row) in plane.chunks_exact_mut(s.w).enumerate() {
            let (pr, a) = (y % sr, y / sr);
            // Row a of the channel's gradients of column phase pc.
            let src = |pc: usize| {
                let at = pr * sc + pc;
                let start = l.grads_at[at] + ci * l.wide(l.rows[pr]) + a * l.wp;
                &grads[start..][..l.cols[pc].len]
            };
            if sc == 2 && s.w >= 2 {
                // Two column phases interleaved in pairs, which the compiler turns into
                // shuffles.
                let (even, odd) = (src(0), src(1));
                for (pair, (&e, &o)) in row.chunks_exact_mut(2).zip(even.iter().zip(odd)) {
                    put(&mut pair[0], e);
                    put(&mut pair[1], o);
                }
                if s.w % 2 == 1 {
                    put(&mut row[s.w - 1], even[s.w / 2]);
                }
                continue;
            }
            for pc in 0..sc.min(s.w) {
                for (b, &v) in src(pc).iter().enumerate() {
                    put(&mut row[b * sc + pc], v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (input index, kernel index) pair the forward connects is one tap of one phase,
    /// reading the dy index the forward wrote, inside the padded extent.
    #[test]
    fn axis_phases_cover_every_tap_once() {
        for n_in in 1..12 {
            for k in 1..6 {
                for stride in 2..=MAX_STRIDE {
                    for pad in 0..4 {
                        if k < stride || n_in + 2 * pad < k {
                            continue;
                        }
                        let n_out = (n_in + 2 * pad - k) / stride + 1;
                        let (phases, [before, after]) = axis_phases(n_in, n_out, k, stride, pad);
                        let mut seen = vec![0; n_in * k];
                        for (p, ph) in phases.iter().enumerate().take(stride) {
                            assert!(ph.taps > 0, "phase {p} of k {k} stride {stride}");
                            for a in 0..ph.len {
                                let i = p + stride * a;
                                for t in 0..ph.taps {
                                    let ki = ph.first + stride * (ph.taps - 1 - t);
                                    let o = a as isize + ph.shift + t as isize;
                                    assert!(o >= -(before as isize));
                                    assert!(o < (n_out + after) as isize);
                                    let connected = o >= 0
                                        && (o as usize) < n_out
                                        && o as usize * stride + ki == i + pad;
                                    let outside = !(0..n_out as isize).contains(&o);
                                    assert!(
                                        connected || outside,
                                        "n_in {n_in} k {k} stride {stride} pad {pad}: i {i} ki {ki} o {o}"
                                    );
                                    if connected {
                                        seen[i * k + ki] += 1;
                                    }
                                }
                            }
                        }
                        // Every connection of the forward, once.
                        for i in 0..n_in {
                            for ki in 0..k {
                                let o = (i + pad) as isize - ki as isize;
                                let want = (o >= 0
                                    && (o as usize).is_multiple_of(stride)
                                    && (o as usize / stride) < n_out)
                                    as usize;
                                assert_eq!(
                                    seen[i * k + ki],
                                    want,
                                    "n_in {n_in} k {k} stride {stride} pad {pad}: i {i} ki {ki}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
