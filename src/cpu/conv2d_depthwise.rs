//! Depthwise convolutions (one input channel per group: MobileNet's 3×3 per-channel
//! filters, with any channel multiplier), convolved plane by plane on a wide grid.
//!
//! Through im2col + GEMM a depthwise convolution is, per image and channel, a patch matrix
//! of kh·kw rows and a product with a single output row: the copy costs as much as the
//! arithmetic, and the GEMM's packing dwarfs both. Walked output row by output row, the
//! rows of the small planes (28, 14, 7 columns) leave most of a vector idle and every tap
//! works out its valid columns again (1–4 multiply-adds per nanosecond).
//!
//! Here an input plane is first copied, zero-padded, into `sy·sx` phase planes (phase
//! (py, px) holds the padded rows ≡ py mod sy and columns ≡ px mod sx), each `wq` columns
//! wide. Output (oy, ox) then reads tap (ki, kj) at phase (ki·dy mod sy, kj·dx mod sx),
//! row oy + ⌊ki·dy/sy⌋, column ox + ⌊kj·dx/sx⌋: with the output laid on the same `wq`-wide
//! grid, every tap is one contiguous run of (oh − 1)·wq + ow values over the whole plane,
//! whatever the stride; the grid's columns past ow are computed and dropped.
//! - forward: a block of 64 sums of the wide output stays in registers while every tap's
//!   run adds its products, taps in (ki, kj) order, then the valid columns are copied out
//!   (in parallel over output planes);
//! - input gradient: with one channel per group, each phase plane's gradient is pulled the
//!   same way from the output gradient laid on the wide grid (zeros past ow and around
//!   it); with a channel multiplier, each tap's run of each output channel of the group is
//!   pushed into the phase planes; then the gradient is copied back without its padding
//!   (in parallel over input planes);
//! - weight gradient: each tap's products in 16 lanes (element i of a run in lane i mod
//!   16), the lanes then summed in order; a range of output channels per task walks the
//!   images in order and their planes in memory order.
//!
//! In f32, blocks of 16 channels on strided or small planes go to
//! conv2d_depthwise_lanes.rs instead (the channels across the vector lanes).
//!
//! Every sum's order is fixed by the shape, so the result depends neither on the thread
//! count nor on the instruction set (no fused multiply-add; the lanes are explicit, and
//! wider vectors only run more of them side by side).

use std::any::TypeId;

use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::conv2d_depthwise_lanes as lanes;
use crate::cpu::conv2d_direct::{as_f32, as_f32_mut};
use crate::cpu::rows::copy_row;
use crate::ops::Conv2dShape;

/// Whether the depthwise kernels run shape `s`: grouped, one input channel per group, at
/// most `MAX_TAPS` taps (7×7).
pub(super) fn applies(s: &Conv2dShape) -> bool {
    s.groups > 1 && s.cin_per_group() == 1 && s.kh * s.kw <= MAX_TAPS
}

/// Taps whose runs' starts a pass works out once (a stack array): four divisions each,
/// which per plane cost more than a 7×7 plane's arithmetic (conv2d_depthwise_lanes.rs holds
/// a block's weights in as many vectors).
pub(super) const MAX_TAPS: usize = 64;

/// Lanes of the weight gradient's sums.
const LANES: usize = 16;

/// Tasks per thread: planes (or output channels) go in this many contiguous ranges per
/// thread, each with its own scratch, so that uneven ranges still balance.
const PARTS_PER_THREAD: usize = 4;

/// The number of ranges `count` planes or channels (or, in conv2d_depthwise_lanes.rs,
/// blocks of them) are cut into.
pub(super) fn parts(count: usize) -> usize {
    count
        .min(PARTS_PER_THREAD * rayon::current_num_threads())
        .max(1)
}

/// The phase planes and the wide grid of a shape.
#[derive(Clone, Copy)]
struct Grid {
    /// Output rows and columns.
    oh: usize,
    ow: usize,
    /// Rows and columns of each phase plane (the wide grid's columns too).
    hq: usize,
    wq: usize,
    /// Values each tap's run covers: (oh − 1)·wq + ow.
    run: usize,
    /// Where each tap's run starts in the phase planes, taps in (ki, kj) order.
    starts: [usize; MAX_TAPS],
    /// Each tap's phase plane.
    tap_phase: [usize; MAX_TAPS],
    /// The input gradient's pull: the largest offset of a tap's run within its phase
    /// plane (`lead`), and lead minus each tap's offset.
    lead: usize,
    pulls: [usize; MAX_TAPS],
}

impl Grid {
    fn new(s: &Conv2dShape) -> Grid {
        let [oh, ow] = s.out_hw();
        let hq = (s.h + 2 * s.pad[0]).div_ceil(s.stride[0]);
        let wq = (s.w + 2 * s.pad[1]).div_ceil(s.stride[1]);
        let run = if oh == 0 || ow == 0 {
            0
        } else {
            (oh - 1) * wq + ow
        };
        let (mut starts, mut tap_phase, mut offsets) =
            ([0; MAX_TAPS], [0; MAX_TAPS], [0; MAX_TAPS]);
        let (sy, sx) = (s.stride[0], s.stride[1]);
        let taps = s.kh * s.kw;
        for t in 0..taps {
            let (a, b) = ((t / s.kw) * s.dilation[0], (t % s.kw) * s.dilation[1]);
            tap_phase[t] = (a % sy) * sx + b % sx;
            offsets[t] = (a / sy) * wq + b / sx;
            starts[t] = tap_phase[t] * hq * wq + offsets[t];
        }
        let lead = offsets[..taps].iter().copied().max().unwrap_or(0);
        let mut pulls = [0; MAX_TAPS];
        for (pull, &offset) in pulls.iter_mut().zip(&offsets[..taps]) {
            *pull = lead - offset;
        }
        Grid {
            oh,
            ow,
            hq,
            wq,
            run,
            starts,
            tap_phase,
            lead,
            pulls,
        }
    }

    /// Values of all the phase planes of one input plane.
    fn phases_len(&self, s: &Conv2dShape) -> usize {
        s.stride[0] * s.stride[1] * self.hq * self.wq
    }

    /// Values of one plane on the wide grid.
    fn wide_len(&self) -> usize {
        self.oh * self.wq
    }

    /// Values of one padded input row, dealt out to the column phases.
    fn row_len(&self, s: &Conv2dShape) -> usize {
        s.stride[1] * self.wq
    }

    /// The scratch of one range of planes: the phase planes, the wide grid, a padded row.
    fn part_len(&self, s: &Conv2dShape) -> usize {
        self.phases_len(s) + self.wide_len() + self.row_len(s)
    }
}

/// Phase plane (py, px)'s row r: the padded input row r·sy + py, or None in the padding.
fn phase_row(s: &Conv2dShape, r: usize, py: usize) -> Option<usize> {
    let iy = (r * s.stride[0] + py).checked_sub(s.pad[0])?;
    (iy < s.h).then_some(iy)
}

/// Copies input plane `xp` into the interior of its phase planes `q`, whose padding is
/// zero already (the caller zeroes `q` and `row` once for a range of planes: the padding's
/// places depend only on the shape). At a column stride of 2 the input row's pairs go
/// straight to the two column phases (`pair_rows`) in one pass the compiler vectorizes (a
/// gather per phase ran a value at a time); at larger strides a row goes through `row`
/// (sx·wq values: the padded input row).
#[inline(always)]
fn split<T: Element>(s: &Conv2dShape, g: &Grid, xp: &[T], q: &mut [T], row: &mut [T]) {
    let (sy, sx) = (s.stride[0], s.stride[1]);
    let plane = g.hq * g.wq;
    let pad = s.pad[1];
    for py in 0..sy {
        let phases = &mut q[py * sx * plane..(py + 1) * sx * plane];
        for r in 0..g.hq {
            let Some(iy) = phase_row(s, r, py) else {
                continue;
            };
            let (at, xrow) = (r * g.wq, &xp[iy * s.w..][..s.w]);
            if sx == 1 {
                copy_row(&mut phases[at + pad..at + pad + s.w], xrow);
                continue;
            }
            if sx == 2 {
                let (even, odd) = phases.split_at_mut(plane);
                let [first, second] = pair_rows(pad, [&mut even[at..], &mut odd[at..]]);
                let pairs = xrow.chunks_exact(2);
                if let [last] = pairs.remainder() {
                    first[s.w / 2] = *last;
                }
                for ((a, b), pair) in first.iter_mut().zip(second.iter_mut()).zip(pairs) {
                    *a = pair[0];
                    *b = pair[1];
                }
                continue;
            }
            copy_row(&mut row[pad..pad + s.w], xrow);
            for (px, phase) in phases.chunks_exact_mut(plane).enumerate() {
                let src = row[px..].iter().step_by(sx);
                for (v, &x) in phase[at..at + g.wq].iter_mut().zip(src) {
                    *v = x;
                }
            }
        }
    }
}

/// At a column stride of 2, where the input row's pairs (x[2k], x[2k + 1]) lie in the two
/// column phases' rows `[even, odd]`: padded column 2k + pad holds x[2k], so with an even
/// pad the pair is (even, odd) from column k + pad/2, with an odd pad (odd from k + (pad −
/// 1)/2, even from k + (pad + 1)/2). Returns the rows of the pair's first and second
/// values, each from the column of k = 0. Reading the input row directly, in pairs, takes
/// no copy through a padded row (whose overlapping stores the pairs' loads then waited
/// for).
fn pair_rows<T>(pad: usize, [even, odd]: [&mut [T]; 2]) -> [&mut [T]; 2] {
    if pad.is_multiple_of(2) {
        [&mut even[pad / 2..], &mut odd[pad / 2..]]
    } else {
        [&mut odd[(pad - 1) / 2..], &mut even[pad.div_ceil(2)..]]
    }
}

/// Copies the gradient of the phase planes `q` back into input plane `dxp` without the
/// padding (overwriting it, or adding to it with `accumulate`), through `row` as `split`.
#[inline(always)]
fn merge<T: Element>(
    s: &Conv2dShape,
    g: &Grid,
    q: &[T],
    dxp: &mut [T],
    row: &mut [T],
    accumulate: bool,
) {
    let (sy, sx) = (s.stride[0], s.stride[1]);
    let plane = g.hq * g.wq;
    let pad = s.pad[1];
    for py in 0..sy {
        let phases = &q[py * sx * plane..(py + 1) * sx * plane];
        for r in 0..g.hq {
            let Some(iy) = phase_row(s, r, py) else {
                continue;
            };
            let at = r * g.wq;
            let values: &[T] = match sx {
                1 => &phases[at + pad..at + pad + s.w],
                2 => {
                    // Through the padded row: pairs stored straight into dx went a value
                    // at a time into lines not yet in cache, at twice the time.
                    let (even, odd) = phases.split_at(plane);
                    let src = even[at..at + g.wq].iter().zip(&odd[at..at + g.wq]);
                    for (pair, (&e, &o)) in row.chunks_exact_mut(2).zip(src) {
                        pair[0] = e;
                        pair[1] = o;
                    }
                    &row[pad..pad + s.w]
                }
                _ => {
                    for (px, phase) in phases.chunks_exact(plane).enumerate() {
                        let dst = row[px..].iter_mut().step_by(sx);
                        for (v, &x) in dst.zip(&phase[at..at + g.wq]) {
                            *v = x;
                        }
                    }
                    &row[pad..pad + s.w]
                }
            };
            let dxrow = &mut dxp[iy * s.w..][..s.w];
            if accumulate {
                for (d, &v) in dxrow.iter_mut().zip(values) {
                    *d = *d + v;
                }
            } else {
                copy_row(dxrow, values);
            }
        }
    }
}

/// Lays output plane `yp` (oh × ow) on the wide grid `wide` (oh × wq), whose columns past
/// ow are zero already (the caller zeroes `wide` once for a range of planes).
#[inline(always)]
fn widen<T: Element>(g: &Grid, yp: &[T], wide: &mut [T]) {
    for (row, src) in wide.chunks_exact_mut(g.wq).zip(yp.chunks_exact(g.ow)) {
        copy_row(&mut row[..g.ow], src);
    }
}

/// Whether the f32 kernels with the channels across the lanes take shape `s`.
fn in_lanes<T: Element>(s: &Conv2dShape) -> bool {
    TypeId::of::<T>() == TypeId::of::<f32>() && lanes::applies(s)
}

/// Scratch elements `forward` needs.
pub(super) fn forward_scratch_len<T: Element>(s: &Conv2dShape) -> usize {
    if in_lanes::<T>(s) {
        return lanes::scratch_len(s);
    }
    let g = Grid::new(s);
    parts(s.n * s.c_out) * g.part_len(s)
}

/// y = conv(x, w), or y += conv(x, w) with `accumulate`, for a checked shape where
/// `applies` holds; `scratch` holds at least `forward_scratch_len` elements.
pub(super) fn forward<T: Element>(
    s: &Conv2dShape,
    x: &[T],
    w: &[T],
    y: &mut [T],
    scratch: &mut [T],
    accumulate: bool,
) {
    if in_lanes::<T>(s) {
        let (x, w, y, scratch) = (as_f32(x), as_f32(w), as_f32_mut(y), as_f32_mut(scratch));
        lanes::forward(s, x, w, y, scratch, accumulate);
        return;
    }
    let g = Grid::new(s);
    let planes = s.n * s.c_out;
    if g.run == 0 || planes == 0 {
        return;
    }
    let per = planes.div_ceil(parts(planes));
    let (ohw, hw, cpg_out) = (g.oh * g.ow, s.h * s.w, s.cout_per_group());
    let part_len = g.part_len(s);
    y[..s.y_len()]
        .par_chunks_mut(per * ohw)
        .zip(scratch.par_chunks_mut(part_len))
        .enumerate()
        .for_each(|(part, (yp, part_scratch))| {
            let (q, rest) = part_scratch.split_at_mut(g.phases_len(s));
            let (wide, row) = rest.split_at_mut(g.wide_len());
            q.fill(T::zero());
            row.fill(T::zero());
            for (i, yplane) in yp.chunks_exact_mut(ohw).enumerate() {
                let plane = part * per + i;
                let (n, co) = (plane / s.c_out, plane % s.c_out);
                let xp = &x[(n * s.c_in + co / cpg_out) * hw..][..hw];
                let wk = &w[co * s.kh * s.kw..][..s.kh * s.kw];
                forward_plane(s, &g, xp, wk, yplane, [q, wide, row], accumulate);
            }
        });
}

/// Values of the wide grid summed together in registers: every tap's run is read a block
/// at a time and the block's sums written once (a pass per tap loaded and stored the sums
/// at every tap: 3 multiply-adds per nanosecond).
const BLOCK: usize = 64;

/// out[i] = Σ_taps w[t]·src[starts[t] + i − shift] in tap order, from zero: the forward's
/// wide grid (shift 0). A block of `BLOCK` sums stays in registers through the taps.
#[inline(always)]
fn correlate<T: Element>(out: &mut [T], src: &[T], w: &[T], starts: &[usize], shift: usize) {
    let whole = out.len() / BLOCK * BLOCK;
    let (blocks, tail) = out.split_at_mut(whole);
    for (b, chunk) in blocks.chunks_exact_mut(BLOCK).enumerate() {
        let at = b * BLOCK - shift;
        let mut acc = [T::zero(); BLOCK];
        for (&wv, &start) in w.iter().zip(starts) {
            let values: &[T; BLOCK] = src[start + at..][..BLOCK].try_into().expect("a block");
            for (a, &v) in acc.iter_mut().zip(values) {
                *a = *a + wv * v;
            }
        }
        let chunk: &mut [T; BLOCK] = chunk.try_into().expect("a block");
        *chunk = acc;
    }
    let at = whole - shift;
    let mut acc = [T::zero(); BLOCK];
    let acc = &mut acc[..tail.len()];
    for (&wv, &start) in w.iter().zip(starts) {
        for (a, &v) in acc.iter_mut().zip(&src[start + at..]) {
            *a = *a + wv * v;
        }
    }
    tail.copy_from_slice(acc);
}

multiversion! {
    /// One output plane of the forward.
    fn forward_plane<T> = forward_plane_kernel(
        s: &Conv2dShape,
        g: &Grid,
        xp: &[T],
        wk: &[T],
        yp: &mut [T],
        scratch: [&mut [T]; 3],
        accumulate: bool,
    ) -> ();
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_plane_kernel<T: Element>(
    s: &Conv2dShape,
    g: &Grid,
    xp: &[T],
    wk: &[T],
    yp: &mut [T],
    [q, wide, row]: [&mut [T]; 3],
    accumulate: bool,
) {
    split(s, g, xp, q, row);
    correlate(&mut wide[..g.run], q, wk, &g.starts, 0);
    for (yrow, row) in yp.chunks_exact_mut(g.ow).zip(wide.chunks(g.wq)) {
        if accumulate {
            for (y, &v) in yrow.iter_mut().zip(row) {
                *y = *y + v;
            }
        } else {
            copy_row(yrow, &row[..g.ow]);
        }
    }
}

/// Scratch elements `backward_input` needs.
pub(super) fn input_scratch_len<T: Element>(s: &Conv2dShape) -> usize {
    if in_lanes::<T>(s) {
        return lanes::scratch_len(s);
    }
    parts(s.n * s.c_in) * Grid::new(s).input_part_len(s)
}

impl Grid {
    /// The input gradient's scratch of one range of planes: the phase planes' gradient,
    /// the output gradient on the wide grid with `lead` zeros before it and a plane's worth
    /// of room after, and a padded row.
    fn input_part_len(&self, s: &Conv2dShape) -> usize {
        self.phases_len(s)
            + self.lead
            + self.hq * self.wq.max(1)
            + self.wide_len()
            + self.row_len(s)
    }
}

/// dx = ∂L/∂x (overwrite), or dx += it with `accumulate`, for a checked shape where
/// `applies` holds; `scratch` holds at least `input_scratch_len` elements.
pub(super) fn backward_input<T: Element>(
    s: &Conv2dShape,
    dy: &[T],
    w: &[T],
    dx: &mut [T],
    scratch: &mut [T],
    accumulate: bool,
) {
    if in_lanes::<T>(s) {
        let (dy, w, dx, scratch) = (as_f32(dy), as_f32(w), as_f32_mut(dx), as_f32_mut(scratch));
        lanes::backward_input(s, dy, w, dx, scratch, accumulate);
        return;
    }
    let g = Grid::new(s);
    let planes = s.n * s.c_in;
    let hw = s.h * s.w;
    if hw == 0 || planes == 0 {
        return;
    }
    let per = planes.div_ceil(parts(planes));
    let (ohw, cpg_out, taps) = (g.oh * g.ow, s.cout_per_group(), s.kh * s.kw);
    let part_len = g.input_part_len(s);
    dx[..s.x_len()]
        .par_chunks_mut(per * hw)
        .zip(scratch.par_chunks_mut(part_len))
        .enumerate()
        .for_each(|(part, (dxp, part_scratch))| {
            let (dq, rest) = part_scratch.split_at_mut(g.phases_len(s));
            let (wide, row) = rest.split_at_mut(part_len - g.phases_len(s) - g.row_len(s));
            wide.fill(T::zero());
            row.fill(T::zero());
            for (i, dxplane) in dxp.chunks_exact_mut(hw).enumerate() {
                let plane = part * per + i;
                let (n, ci) = (plane / s.c_in, plane % s.c_in);
                let group = ci * cpg_out..(ci + 1) * cpg_out;
                let dyp = &dy[(n * s.c_out + group.start) * ohw..][..cpg_out * ohw];
                let wk = &w[group.start * taps..][..cpg_out * taps];
                input_gradient_plane(s, &g, dyp, wk, dxplane, [dq, wide, row], accumulate);
            }
        });
}

multiversion! {
    /// One input plane's gradient from the `cpg_out` output planes of its group.
    fn input_gradient_plane<T> = input_gradient_plane_kernel(
        s: &Conv2dShape,
        g: &Grid,
        dyp: &[T],
        wk: &[T],
        dxp: &mut [T],
        scratch: [&mut [T]; 3],
        accumulate: bool,
    ) -> ();
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_gradient_plane_kernel<T: Element>(
    s: &Conv2dShape,
    g: &Grid,
    dyp: &[T],
    wk: &[T],
    dxp: &mut [T],
    [dq, wide, row]: [&mut [T]; 3],
    accumulate: bool,
) {
    let taps = s.kh * s.kw;
    if g.run == 0 {
        dq.fill(T::zero());
    } else if s.cout_per_group() == 1 {
        // Pulled: each phase plane's gradient is a correlation of the output gradient with
        // that phase's taps, dq[j] = Σ w[t]·dy_wide[j − offset(t)], a block of sums in
        // registers through the taps as in the forward (`wide` holds the output gradient
        // from `lead` on, zeros around it).
        widen(g, dyp, &mut wide[g.lead..]);
        let plane = g.hq * g.wq;
        for (phase, dq_phase) in dq.chunks_exact_mut(plane).enumerate() {
            let (mut weights, mut pulls) = ([T::zero(); MAX_TAPS], [0; MAX_TAPS]);
            let mut count = 0;
            for t in (0..taps).filter(|&t| g.tap_phase[t] == phase) {
                (weights[count], pulls[count]) = (wk[t], g.pulls[t]);
                count += 1;
            }
            correlate(dq_phase, wide, &weights[..count], &pulls[..count], 0);
        }
    } else {
        // Pushed, output channel by output channel of the group: dq[start(t) + i] +=
        // w[t]·dy_wide[i].
        dq.fill(T::zero());
        for (dyplane, wc) in dyp.chunks_exact(g.oh * g.ow).zip(wk.chunks_exact(taps)) {
            widen(g, dyplane, wide);
            let grads = &wide[..g.run];
            for (&wv, &start) in wc.iter().zip(&g.starts) {
                for (d, &v) in dq[start..start + g.run].iter_mut().zip(grads) {
                    *d = *d + wv * v;
                }
            }
        }
    }
    merge(s, g, dq, dxp, row, accumulate);
}

/// Scratch elements `backward_weight` needs.
pub(super) fn weight_scratch_len<T: Element>(s: &Conv2dShape) -> usize {
    if in_lanes::<T>(s) {
        return lanes::weight_scratch_len(s);
    }
    let g = Grid::new(s);
    let per = s.c_out.div_ceil(parts(s.c_out));
    parts(s.c_out) * (g.part_len(s) + per * s.kh * s.kw * LANES)
}

/// dw = Σ_n dy[n] ⋆ x[n], or dw += that with `accumulate`, for a checked shape where
/// `applies` holds; `scratch` holds at least `weight_scratch_len` elements. Each range of
/// output channels walks the images in order and, within an image, its channels' planes
/// in memory order (one channel's planes across the batch, a plane every c·h·w values,
/// came cold from memory one by one).
pub(super) fn backward_weight<T: Element>(
    s: &Conv2dShape,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    accumulate: bool,
    scratch: &mut [T],
) {
    if in_lanes::<T>(s) {
        let (x, dy, dw, scratch) = (as_f32(x), as_f32(dy), as_f32_mut(dw), as_f32_mut(scratch));
        lanes::backward_weight(s, x, dy, dw, accumulate, scratch);
        return;
    }
    let g = Grid::new(s);
    let taps = s.kh * s.kw;
    if taps == 0 || s.c_out == 0 {
        return;
    }
    let per = s.c_out.div_ceil(parts(s.c_out));
    let part_len = g.part_len(s) + per * taps * LANES;
    let (hw, ohw, cpg_out) = (s.h * s.w, g.oh * g.ow, s.cout_per_group());
    dw[..s.w_len()]
        .par_chunks_mut(per * taps)
        .zip(scratch.par_chunks_mut(part_len))
        .enumerate()
        .for_each(|(part, (dwp, part_scratch))| {
            let (q, rest) = part_scratch.split_at_mut(g.phases_len(s));
            let (wide, rest) = rest.split_at_mut(g.wide_len());
            let (row, lanes) = rest.split_at_mut(g.row_len(s));
            q.fill(T::zero());
            wide.fill(T::zero());
            row.fill(T::zero());
            let channels = part * per..part * per + dwp.len() / taps;
            let lanes = &mut lanes[..channels.len() * taps * LANES];
            lanes.fill(T::zero());
            if g.run > 0 {
                for n in 0..s.n {
                    let channel_lanes = lanes.chunks_exact_mut(taps * LANES);
                    for (co, co_lanes) in channels.clone().zip(channel_lanes) {
                        let xp = &x[(n * s.c_in + co / cpg_out) * hw..][..hw];
                        let dyp = &dy[(n * s.c_out + co) * ohw..][..ohw];
                        weight_gradient_plane(s, &g, xp, dyp, [q, wide, row], co_lanes);
                    }
                }
            }
            for (d, tap_lanes) in dwp.iter_mut().zip(lanes.chunks_exact(LANES)) {
                let total = tap_lanes.iter().fold(T::zero(), |a, &v| a + v);
                *d = if accumulate { *d + total } else { total };
            }
        });
}

multiversion! {
    /// Adds one image's products for one output channel to its `lanes` (LANES per tap, in
    /// (ki, kj) order).
    fn weight_gradient_plane<T> = weight_gradient_plane_kernel(
        s: &Conv2dShape,
        g: &Grid,
        xp: &[T],
        dyp: &[T],
        scratch: [&mut [T]; 3],
        lanes: &mut [T],
    ) -> ();
}

#[inline(always)]
fn weight_gradient_plane_kernel<T: Element>(
    s: &Conv2dShape,
    g: &Grid,
    xp: &[T],
    dyp: &[T],
    [q, wide, row]: [&mut [T]; 3],
    lanes: &mut [T],
) {
    split(s, g, xp, q, row);
    widen(g, dyp, wide);
    let grads = &wide[..g.run];
    for (tap_lanes, &start) in lanes.chunks_exact_mut(LANES).zip(&g.starts) {
        let inputs = &q[start..start + g.run];
        let mut acc: [T; LANES] = tap_lanes.try_into().expect("LANES values");
        let (gc, ic) = (grads.chunks_exact(LANES), inputs.chunks_exact(LANES));
        let (g_tail, i_tail) = (gc.remainder(), ic.remainder());
        for (gs, is) in gc.zip(ic) {
            for ((a, &gv), &iv) in acc.iter_mut().zip(gs).zip(is) {
                *a = *a + gv * iv;
            }
        }
        for ((a, &gv), &iv) in acc.iter_mut().zip(g_tail).zip(i_tail) {
            *a = *a + gv * iv;
        }
        tap_lanes.copy_from_slice(&acc);
    }
}
