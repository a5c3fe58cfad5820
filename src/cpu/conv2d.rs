//! CPU twin of shaders/conv2d.wgsl: 2-D convolution (NCHW, PyTorch weight layout) with
//! stride, padding, dilation and groups, forward and backward, plus the per-channel bias.
//!
//! Design: im2col + GEMM, per batch element and per group. The patch matrix of one image
//! and group, `col[k, r]` with k = (ci, ki, kj) over c_in/groups·kh·kw and r = (oh, ow),
//! turns every pass into one `T::gemm` (the `gemm` crate, one thread per GEMM):
//! - forward         y_g (cpg_out × ohw)  = W_g (cpg_out × K) · col (K × ohw)
//! - backward input  dcol (K × ohw)       = W_gᵀ · dy_g, then col2im adds dcol back into
//!   dx (the transpose of the gather: every input pixel receives the gradient of every
//!   output it fed); at stride 1 with enough input channels, instead the forward
//!   convolution of dy with the turned kernel (`transposed`), whose GEMM sums over more;
//! - backward weight dW_gᵀ (K × cpg_out) += col · dy_gᵀ (dy_g transposed into scratch, the
//!   sum transposed back once), summed over the batch in fixed chunks of images (in
//!   parallel, each in order) whose partials are added in order, so the result is
//!   reproducible whatever the thread count.
//!
//! Depthwise shapes (one input channel per group) skip it too: conv2d_depthwise.rs convolves
//! each plane on a wide grid of zero-padded phase planes.
//!
//! In f32 on AVX-512, stride-1 shapes skip the patch matrix: conv2d_direct.rs convolves
//! zero-padded planes directly (the forward, and so the transposed input gradient, and the
//! weight gradient); `runs_direct` says which passes of a shape take that path. Strided
//! input gradients go by stride phase on the same kernels (conv2d_strided_input.rs) where
//! dy's planes are not whole vectors; `runs_input_gradient_direct` says which.
//!
//! Images of the batch run in parallel with rayon for the forward and input gradient; each
//! writes its own slice of the output, so the result does not depend on scheduling.
//!
//! No pass allocates once warm: the `_with` variants take a scratch `Vec` held by the caller
//! (the executor keeps one for all its convolutions) and only grow it when a shape needs
//! more than it has; the plain variants allocate one for a single call. The batch is cut
//! into one contiguous range of images per thread, each with its own patch matrix in the
//! scratch. A 1×1 convolution with stride 1 and no padding needs no patch matrix at all:
//! the image itself is the (c_in × h·w) matrix.
//!
//! Gradient convention: dx is an activation gradient and is overwritten; dw and db are
//! parameter gradients and `accumulate` adds to them instead of overwriting.
//!
//! The twins take a shape that `Conv2dShape::validate` accepted and panic (like the other
//! twins) on slices shorter than the shape needs.

use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::aligned::AlignedBuf;
use crate::cpu::conv2d_channels;
use crate::cpu::conv2d_depthwise;
use crate::cpu::conv2d_direct;
use crate::cpu::conv2d_phases;
use crate::cpu::conv2d_strided_input;
use crate::cpu::conv2d_weight_nhwc;
use crate::cpu::element::GemmThreads;
use crate::ops::Conv2dShape;

/// Threads of the GPU bias-gradient workgroup; the CPU twin reduces in the same tree so the
/// two executors add in the same order.
pub const BIAS_REDUCE_THREADS: usize = 256;

fn check(op: &str, s: &Conv2dShape, lens: &[(&str, usize, usize)]) {
    if let Err(e) = s.validate(op) {
        panic!("{op}: {e}");
    }
    for &(name, have, need) in lens {
        assert!(
            have >= need,
            "{op}: `{name}` has {have} elements but shape {s:?} needs {need}"
        );
    }
}

/// Output columns `ox` whose input column `ox·stride + off − pad` lies inside [0, w):
/// the range [lo, hi) (empty when none does).
pub(crate) fn valid_range(
    out: usize,
    stride: usize,
    off: usize,
    pad: usize,
    w: usize,
) -> (usize, usize) {
    // ix = ox·stride + off − pad ≥ 0  ⇔  ox ≥ ceil((pad − off) / stride) when pad > off.
    let lo = if pad > off {
        (pad - off).div_ceil(stride)
    } else {
        0
    };
    // ix < w  ⇔  ox·stride < w + pad − off.
    let hi = if w + pad > off {
        (w + pad - off).div_ceil(stride)
    } else {
        0
    };
    (lo.min(out), hi.min(out).max(lo.min(out)))
}

/// Which ends of an output row kernel column `kj` reads in the padding: `[first, last]`,
/// where its inside columns (`valid_range`) leave out at most the row's first and last
/// position; None where they leave out more (the direct weight gradients then take every
/// product of that tap, the padding's zeros too), or the row is a single position.
pub(crate) fn edge_columns(s: &Conv2dShape, kj: usize) -> Option<[bool; 2]> {
    let [_, ow] = s.out_hw();
    let (lo, hi) = valid_range(ow, s.stride[1], kj * s.dilation[1], s.pad[1], s.w);
    (ow >= 2 && lo <= 1 && hi + 1 >= ow).then_some([lo == 1, hi + 1 == ow])
}

/// The output rows whose inputs kernel row `ki` finds inside the image, None where it finds
/// none. The direct weight gradients leave the other rows out: they add only the padding's
/// zeros, which changes no finite sum, and a non-finite output gradient there meets no input,
/// as in the mathematical definition.
pub(crate) fn rows_inside(s: &Conv2dShape, ki: usize) -> Option<std::ops::Range<usize>> {
    let [oh, _] = s.out_hw();
    let (lo, hi) = valid_range(oh, s.stride[0], ki * s.dilation[0], s.pad[0], s.h);
    (lo < hi).then_some(lo..hi)
}

/// The masks `[first, last]` of the taps whose input at an output row's first and at its
/// last position is padding: bit i for the i-th kernel column of `columns` (a register
/// block's taps, in its order). None set where some tap's padding reaches further than one
/// position (`edge_columns`): the block then takes every product.
pub(crate) fn edge_masks(s: &Conv2dShape, columns: impl IntoIterator<Item = usize>) -> [u32; 2] {
    let mut masks = [0u32; 2];
    for (i, kj) in columns.into_iter().enumerate() {
        let Some(ends) = edge_columns(s, kj) else {
            return [0, 0];
        };
        for (mask, end) in masks.iter_mut().zip(ends) {
            *mask |= u32::from(end) << i;
        }
    }
    masks
}

/// Whether the patch matrix of image and group is the input itself: a 1×1 kernel with stride
/// 1 and no padding (dilation is then irrelevant) reads every pixel once, in order.
fn is_pointwise(s: &Conv2dShape) -> bool {
    s.kh == 1 && s.kw == 1 && s.stride == [1, 1] && s.pad == [0, 0]
}

/// Fills `col` (K × ohw, row-major) with the patches of image `xb` ([c_in, h, w]) for group
/// `g`; positions in the padding read as 0.
fn im2col<T: Element>(s: &Conv2dShape, xb: &[T], g: usize, col: &mut [T]) {
    let [oh, ow] = s.out_hw();
    let cpg = s.cin_per_group();
    let ohw = oh * ow;
    for ci in 0..cpg {
        let plane = &xb[(g * cpg + ci) * s.h * s.w..][..s.h * s.w];
        for ki in 0..s.kh {
            for kj in 0..s.kw {
                let k = (ci * s.kh + ki) * s.kw + kj;
                let row = &mut col[k * ohw..][..ohw];
                let off = kj * s.dilation[1];
                let (lo, hi) = valid_range(ow, s.stride[1], off, s.pad[1], s.w);
                if let Some(span) = PlaneShift::new(s, ki, kj, lo, hi) {
                    span.copy(plane, row);
                    continue;
                }
                for oy in 0..oh {
                    let iy = (oy * s.stride[0] + ki * s.dilation[0]) as isize - s.pad[0] as isize;
                    let out = &mut row[oy * ow..][..ow];
                    if iy < 0 || iy >= s.h as isize {
                        out.fill(T::zero());
                        continue;
                    }
                    let src = &plane[iy as usize * s.w..][..s.w];
                    // Rows are short (8 to 32 values in a ResNet): skip the calls that fill
                    // nothing, which are most of them.
                    if lo > 0 {
                        out[..lo].fill(T::zero());
                    }
                    if hi < ow {
                        out[hi..].fill(T::zero());
                    }
                    if hi > lo {
                        // First input column read: lo·stride + off − pad ≥ 0 by `valid_range`.
                        let ix0 = lo * s.stride[1] + off - s.pad[1];
                        if s.stride[1] == 1 {
                            out[lo..hi].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
                        } else {
                            // Every stride-th value, by index (`step_by` and `chunks` each
                            // cost a division or more per row or value).
                            let st = s.stride[1];
                            for (j, o) in out[lo..hi].iter_mut().enumerate() {
                                *o = src[ix0 + j * st];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One kernel tap (ki, kj) of a stride-1 convolution whose output rows are as wide as its
/// input rows: output position i = oy·ow + ox reads input position i + shift of the plane,
/// so the tap's patch row is the plane shifted by a constant, one contiguous run from the
/// first valid output to the last. Inside the run, the positions of an invalid column
/// (ox < lo or ox ≥ hi, whose shifted index wraps into the neighbouring row) are zero in
/// the patch row and take no part in the gradient.
struct PlaneShift {
    /// Input index minus output index.
    shift: isize,
    /// Output rows whose input row is inside the image: [oy_lo, oy_hi).
    oy_lo: usize,
    oy_hi: usize,
    /// Valid output columns [lo, hi) (every valid row has the same).
    lo: usize,
    hi: usize,
    ow: usize,
}

impl PlaneShift {
    /// The shift of tap (ki, kj), or None where the shape is not a stride-1 convolution
    /// with ow = w, or no output of the tap is valid.
    fn new(s: &Conv2dShape, ki: usize, kj: usize, lo: usize, hi: usize) -> Option<Self> {
        let [oh, ow] = s.out_hw();
        if s.stride != [1, 1] || ow != s.w || hi <= lo {
            return None;
        }
        let dy = (ki * s.dilation[0]) as isize - s.pad[0] as isize;
        let dx = (kj * s.dilation[1]) as isize - s.pad[1] as isize;
        // Valid output rows: 0 ≤ oy + dy < h.
        let oy_lo = (-dy).clamp(0, oh as isize) as usize;
        let oy_hi = (s.h as isize - dy).clamp(0, oh as isize) as usize;
        (oy_lo < oy_hi).then_some(PlaneShift {
            shift: dy * s.w as isize + dx,
            oy_lo,
            oy_hi,
            lo,
            hi,
            ow,
        })
    }

    /// The run of output positions from the first valid one to the last.
    fn run(&self) -> std::ops::Range<usize> {
        self.oy_lo * self.ow + self.lo..(self.oy_hi - 1) * self.ow + self.hi
    }

    /// The input positions of `run`, which lie inside the plane (its ends are valid).
    fn source(&self) -> std::ops::Range<usize> {
        let run = self.run();
        (run.start as isize + self.shift) as usize..(run.end as isize + self.shift) as usize
    }

    /// row[i] = plane[i + shift] at valid positions, 0 elsewhere: one copy of the run, then
    /// zeros outside it and over the wrapped columns inside it.
    fn copy<T: Element>(&self, plane: &[T], row: &mut [T]) {
        let run = self.run();
        row[..run.start].fill(T::zero());
        row[run.clone()].copy_from_slice(&plane[self.source()]);
        row[run.end..].fill(T::zero());
        // Between each row's last valid column and the next row's first: as many values as
        // the padding is wide, one or two, each row. Stored one by one; `fill` would call
        // `memset` for every row, which cost more than the copy of the run.
        let gap = self.ow - self.hi + self.lo;
        if gap == 0 {
            return;
        }
        for oy in self.oy_lo..self.oy_hi - 1 {
            let start = oy * self.ow + self.hi;
            for v in &mut row[start..start + gap] {
                *v = T::zero();
            }
        }
    }

    /// plane[i + shift] += row[i] at valid positions, row by row of valid columns (each
    /// plane element receives at most one value of the tap, so the order of the sums over
    /// taps is kept).
    fn add<T: Element>(&self, row: &[T], plane: &mut [T]) {
        for oy in self.oy_lo..self.oy_hi {
            let out = oy * self.ow + self.lo..oy * self.ow + self.hi;
            let at = (out.start as isize + self.shift) as usize;
            for (d, &v) in plane[at..at + out.len()].iter_mut().zip(&row[out]) {
                *d = *d + v;
            }
        }
    }
}

/// Adds `col` (K × ohw) back into image gradient `dxb` ([c_in, h, w]) for group `g`: the
/// transpose of `im2col`. Sums run in ascending (ci, ki, kj, oh, ow) order.
fn col2im_add<T: Element>(s: &Conv2dShape, col: &[T], g: usize, dxb: &mut [T]) {
    let [oh, ow] = s.out_hw();
    let cpg = s.cin_per_group();
    let ohw = oh * ow;
    for ci in 0..cpg {
        let plane = &mut dxb[(g * cpg + ci) * s.h * s.w..][..s.h * s.w];
        for ki in 0..s.kh {
            for kj in 0..s.kw {
                let k = (ci * s.kh + ki) * s.kw + kj;
                let row = &col[k * ohw..][..ohw];
                let off = kj * s.dilation[1];
                let (lo, hi) = valid_range(ow, s.stride[1], off, s.pad[1], s.w);
                if hi <= lo {
                    continue;
                }
                if let Some(span) = PlaneShift::new(s, ki, kj, lo, hi) {
                    span.add(row, plane);
                    continue;
                }
                let ix0 = lo * s.stride[1] + off - s.pad[1];
                for oy in 0..oh {
                    let iy = (oy * s.stride[0] + ki * s.dilation[0]) as isize - s.pad[0] as isize;
                    if iy < 0 || iy >= s.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * s.w..][..s.w];
                    let src = &row[oy * ow + lo..oy * ow + hi];
                    if s.stride[1] == 1 {
                        // Contiguous: a loop the compiler vectorizes (`step_by` is not).
                        for (d, &v) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                            *d = *d + v;
                        }
                    } else {
                        let st = s.stride[1];
                        for (j, &v) in src.iter().enumerate() {
                            dst[ix0 + j * st] = dst[ix0 + j * st] + v;
                        }
                    }
                }
            }
        }
    }
}

/// Images per thread's range: the batch cut into at most one contiguous range per thread.
fn images_per_part(n: usize) -> usize {
    n.div_ceil(rayon::current_num_threads().clamp(1, n.max(1)))
}

/// The instruction set the direct kernels run on in this process (`avx512`, `avx2`,
/// `neon`; the best the CPU has, or the one `GRADSCOPE_CONV_DIRECT` names), or None where
/// every convolution goes through im2col + GEMM (another CPU, or `GRADSCOPE_CONV_DIRECT=off`).
pub fn direct_isa() -> Option<&'static str> {
    conv2d_direct::isa_name()
}

/// Which passes of shape `s` in `T` this CPU runs through direct kernels rather than
/// im2col + GEMM: `[forward, weight gradient]`. The forward's are conv2d_channels.rs (f32
/// on AVX-512, AVX2 or NEON, any stride, output channels in whole blocks) and
/// conv2d_direct.rs (stride 1, a wide grid that wastes little); the weight gradient's are
/// those two files' and conv2d_weight_nhwc.rs's (channel-last copies: one vector of output
/// channels, or a 1×1 kernel); conv2d_depthwise.rs takes every pass of a depthwise shape,
/// in any element type. The input gradient: `runs_input_gradient_direct`.
pub fn runs_direct<T: Element>(s: &Conv2dShape) -> [bool; 2] {
    let depthwise = conv2d_depthwise::applies(s);
    [
        depthwise || conv2d_channels::applies::<T>(s) || conv2d_direct::applies::<T>(s),
        depthwise
            || conv2d_channels::applies_to_weight_gradient::<T>(s)
            || conv2d_weight_nhwc::applies::<T>(s)
            || conv2d_direct::applies_to_weight_gradient::<T>(s),
    ]
}

/// y[n, c_out, oh, ow] = conv(x[n, c_in, h, w], w[c_out, c_in/groups, kh, kw]) (overwrite;
/// the bias is a separate pass, `conv2d_bias_forward`).
pub fn conv2d_forward<T: Element>(s: &Conv2dShape, x: &[T], w: &[T], y: &mut [T]) {
    conv2d_forward_with(s, x, w, y, &mut AlignedBuf::default());
}

/// `conv2d_forward` with its patch matrices in `scratch` (grown if too small).
pub fn conv2d_forward_with<T: Element>(
    s: &Conv2dShape,
    x: &[T],
    w: &[T],
    y: &mut [T],
    scratch: &mut AlignedBuf<T>,
) {
    check(
        "conv2d_forward",
        s,
        &[
            ("x", x.len(), s.x_len()),
            ("w", w.len(), s.w_len()),
            ("y", y.len(), s.y_len()),
        ],
    );
    scratch.grow(forward_scratch_len::<T>(s));
    forward_into(s, x, w, y, scratch, false);
}

/// A patch matrix per part of the batch; none (one element, so that the parts still zip)
/// when the input is its own patch matrix.
fn forward_col_len(s: &Conv2dShape) -> usize {
    let [oh, ow] = s.out_hw();
    if is_pointwise(s) {
        1
    } else {
        s.patch_len() * oh * ow
    }
}

/// The scratch elements `forward_into` needs.
fn forward_scratch_len<T: Element>(s: &Conv2dShape) -> usize {
    let parts = s.n.div_ceil(images_per_part(s.n));
    if conv2d_depthwise::applies(s) {
        conv2d_depthwise::forward_scratch_len::<T>(s)
    } else if conv2d_channels::applies::<T>(s) {
        conv2d_channels::scratch_len(s, parts)
    } else if conv2d_direct::applies::<T>(s) {
        conv2d_direct::scratch_len(s, parts)
    } else {
        parts * forward_col_len(s)
    }
}

/// The forward's im2col + GEMM for a checked shape: y = conv(x, w), or y += conv(x, w)
/// when `accumulate`. `scratch` holds at least `forward_scratch_len` elements.
fn forward_into<T: Element>(
    s: &Conv2dShape,
    x: &[T],
    w: &[T],
    y: &mut [T],
    scratch: &mut [T],
    accumulate: bool,
) {
    if conv2d_depthwise::applies(s) {
        conv2d_depthwise::forward(s, x, w, y, scratch, accumulate);
        return;
    }
    let per = images_per_part(s.n);
    if conv2d_channels::applies::<T>(s) {
        conv2d_channels::forward(s, x, w, y, scratch, per, accumulate);
        return;
    }
    if conv2d_direct::applies::<T>(s) {
        conv2d_direct::forward(s, x, w, y, scratch, per, accumulate);
        return;
    }
    let [oh, ow] = s.out_hw();
    let (ohw, k, cpg_out) = (oh * ow, s.patch_len(), s.cout_per_group());
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * ohw;
    let pointwise = is_pointwise(s);
    let col_len = forward_col_len(s);
    y[..s.y_len()]
        .par_chunks_mut(per * y_img)
        .zip(scratch.par_chunks_mut(col_len))
        .enumerate()
        .for_each(|(part, (yp, col))| {
            for (i, yb) in yp.chunks_mut(y_img).enumerate() {
                let xb = &x[(part * per + i) * x_img..][..x_img];
                for g in 0..s.groups {
                    let cols: &[T] = if pointwise {
                        &xb[g * k * ohw..][..k * ohw]
                    } else {
                        im2col(s, xb, g, col);
                        col
                    };
                    let wg = &w[g * cpg_out * k..][..cpg_out * k];
                    let yg = &mut yb[g * cpg_out * ohw..][..cpg_out * ohw];
                    // (cpg_out × K) · (K × ohw), all row-major and contiguous.
                    // SAFETY: wg, cols and yg are exactly those sizes.
                    unsafe {
                        T::gemm(
                            GemmThreads::Serial,
                            cpg_out,
                            k,
                            ohw,
                            T::one(),
                            wg,
                            k as isize,
                            1,
                            cols,
                            ohw as isize,
                            1,
                            if accumulate { T::one() } else { T::zero() },
                            yg,
                            ohw as isize,
                            1,
                        );
                    }
                }
            }
        });
}

/// dx[n, c_in, h, w] = ∂L/∂x given dy = ∂L/∂y (overwrite). Forward was y_g = W_g·col(x), so
/// dcol = W_gᵀ·dy_g and dx = col2im(dcol).
pub fn conv2d_backward_input<T: Element>(s: &Conv2dShape, dy: &[T], w: &[T], dx: &mut [T]) {
    conv2d_backward_input_with(s, dy, w, dx, &mut AlignedBuf::default(), false);
}

/// `conv2d_backward_input` with its patch-gradient matrices in `scratch` (grown if too
/// small); with `accumulate`, dx += ∂L/∂x (a tensor read by several nodes sums their
/// gradients).
pub fn conv2d_backward_input_with<T: Element>(
    s: &Conv2dShape,
    dy: &[T],
    w: &[T],
    dx: &mut [T],
    scratch: &mut AlignedBuf<T>,
    accumulate: bool,
) {
    check(
        "conv2d_backward_input",
        s,
        &[
            ("dy", dy.len(), s.y_len()),
            ("w", w.len(), s.w_len()),
            ("dx", dx.len(), s.x_len()),
        ],
    );
    if conv2d_depthwise::applies(s) {
        scratch.grow(conv2d_depthwise::input_scratch_len::<T>(s));
        conv2d_depthwise::backward_input(s, dy, w, dx, scratch, accumulate);
        return;
    }
    if let Some(t) = transposed(s) {
        // W's rearranged copy at the front of the scratch, the patch matrices after it.
        let w_len = s.w_len();
        scratch.grow(w_len + forward_scratch_len::<T>(&t));
        let (wt, cols) = scratch.split_at_mut(w_len);
        transposed_weights(s, w, wt);
        forward_into(&t, dy, wt, dx, cols, accumulate);
        return;
    }
    if conv2d_strided_input::applies::<T>(s) {
        let per = images_per_part(s.n);
        scratch.grow(conv2d_strided_input::scratch_len(s, s.n.div_ceil(per)));
        conv2d_strided_input::backward_input(s, dy, w, dx, scratch, per, accumulate);
        return;
    }
    let [oh, ow] = s.out_hw();
    let (ohw, k, cpg_out) = (oh * ow, s.patch_len(), s.cout_per_group());
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * ohw;
    let per = images_per_part(s.n);
    let pointwise = is_pointwise(s);
    // Strided convolutions whose taps cover every stride phase scatter their patch
    // matrices by phase (conv2d_phases.rs), through one input plane's phase blocks after the
    // part's patch matrix. A kernel with fewer taps than phases (1×1 at stride 2) leaves
    // most pixels untouched, which the direct scatter skips and the phase blocks would
    // write (0.87 against 1.15 ms, 16→32 1×1 stride 2, BENCHMARKS.md).
    let strided = s.stride != [1, 1]
        && s.kh * s.kw >= s.stride[0] * s.stride[1]
        && s.stride[0].max(s.stride[1]) <= conv2d_phases::MAX_STRIDE;
    let blocks_len = if strided && !pointwise {
        conv2d_phases::scratch_len(s)
    } else {
        0
    };
    let col_len = if pointwise { 1 } else { k * ohw };
    scratch.grow(s.n.div_ceil(per) * (col_len + blocks_len));
    dx[..s.x_len()]
        .par_chunks_mut(per * x_img)
        .zip(scratch.par_chunks_mut(col_len + blocks_len))
        .enumerate()
        .for_each(|(part, (dxp, part_scratch))| {
            let (dcol, blocks) = part_scratch.split_at_mut(col_len);
            for (i, dxb) in dxp.chunks_mut(x_img).enumerate() {
                let dyb = &dy[(part * per + i) * y_img..][..y_img];
                for g in 0..s.groups {
                    let wg = &w[g * cpg_out * k..][..cpg_out * k];
                    let dyg = &dyb[g * cpg_out * ohw..][..cpg_out * ohw];
                    // The pointwise case writes dcol straight into dx (or adds it): col2im is
                    // the identity.
                    let out: &mut [T] = if pointwise {
                        &mut dxb[g * k * ohw..][..k * ohw]
                    } else {
                        dcol
                    };
                    // (K × cpg_out) · (cpg_out × ohw): W_g read transposed through its strides.
                    // SAFETY: wg, dyg and out are exactly those sizes.
                    unsafe {
                        T::gemm(
                            GemmThreads::Serial,
                            k,
                            cpg_out,
                            ohw,
                            T::one(),
                            wg,
                            1,
                            k as isize,
                            dyg,
                            ohw as isize,
                            1,
                            if pointwise && accumulate {
                                T::one()
                            } else {
                                T::zero()
                            },
                            out,
                            ohw as isize,
                            1,
                        );
                    }
                    if !pointwise {
                        if strided {
                            // Each group's planes go through the phase blocks whole.
                            conv2d_phases::col2im_add(s, dcol, g, dxb, blocks, !accumulate);
                            continue;
                        }
                        if g == 0 && !accumulate {
                            dxb.fill(T::zero());
                        }
                        col2im_add(s, dcol, g, dxb);
                    }
                }
            }
        });
}

/// Whether this CPU runs the input gradient of shape `s` in `T` through direct kernels:
/// a depthwise shape's own, at stride 1 the forward kernel where its transposed
/// convolution takes one, and strided shapes by stride phase (conv2d_strided_input.rs).
pub fn runs_input_gradient_direct<T: Element>(s: &Conv2dShape) -> bool {
    conv2d_depthwise::applies(s)
        || transposed(s).is_some_and(|t| runs_direct::<T>(&t)[0])
        || conv2d_strided_input::applies::<T>(s)
}

/// Input channels per group from which `transposed` applies: the smallest count measured
/// faster that way (16→16 3×3; the 3→16 stem was slower).
const TRANSPOSED_MIN_ROWS: usize = 16;

/// The input gradient of a stride-1 convolution as a forward convolution: dx = conv(dy, W')
/// with W' the kernel turned by 180° and its two channel axes swapped (within each group),
/// padded by dilation·(k − 1) − pad. Its patch matrix has K = c_out/groups·kh·kw rows, so
/// its GEMM is the forward's shape, where W_gᵀ·dy_g had only c_out/groups to sum over and
/// its col2im scattered every patch row back (one core, 16→16 3×3 at batch 128: 52 GFLOP/s
/// that way, 64–70 this way). None where the form does not apply: strides above 1 (their
/// transposed convolution is a fractionally strided one), a 1×1 kernel with stride 1 and no
/// padding (already one GEMM), padding beyond dilation·(k − 1), and fewer than
/// `TRANSPOSED_MIN_ROWS` input channels per group, where the transposed GEMM would have that
/// few rows (the 3→16 stem: 50 GFLOP/s the direct way, 30 transposed).
pub fn transposed(s: &Conv2dShape) -> Option<Conv2dShape> {
    if s.stride != [1, 1] || is_pointwise(s) || s.cin_per_group() < TRANSPOSED_MIN_ROWS {
        return None;
    }
    let span = |k: usize, d: usize| d * (k - 1);
    let pad_h = span(s.kh, s.dilation[0]).checked_sub(s.pad[0])?;
    let pad_w = span(s.kw, s.dilation[1]).checked_sub(s.pad[1])?;
    let [oh, ow] = s.out_hw();
    Some(Conv2dShape {
        n: s.n,
        c_in: s.c_out,
        h: oh,
        w: ow,
        c_out: s.c_in,
        kh: s.kh,
        kw: s.kw,
        stride: [1, 1],
        pad: [pad_h, pad_w],
        dilation: s.dilation,
        groups: s.groups,
    })
}

/// W' of `transposed`: W'[g·cpg_in + ci, co, ky, kx] = W[g·cpg_out + co, ci, kh−1−ky,
/// kw−1−kx], the layout [c_in, c_out/groups, kh, kw] of the transposed convolution's kernel.
fn transposed_weights<T: Element>(s: &Conv2dShape, w: &[T], out: &mut [T]) {
    let (cpg_in, cpg_out) = (s.cin_per_group(), s.cout_per_group());
    let taps = s.kh * s.kw;
    for g in 0..s.groups {
        for ci in 0..cpg_in {
            for co in 0..cpg_out {
                let src = &w[((g * cpg_out + co) * cpg_in + ci) * taps..][..taps];
                let dst = &mut out[((g * cpg_in + ci) * cpg_out + co) * taps..][..taps];
                // Turning the kernel by 180° reverses its taps in row-major order.
                for (d, &v) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = v;
                }
            }
        }
    }
}

/// Images per chunk of the weight gradient's batch sum: chunks run in parallel, each summing
/// its images in order into its own partial gradient, and the partials are added in chunk
/// order. The chunking depends only on n, so the result does not depend on the thread count.
const WEIGHT_GRAD_CHUNK: usize = 4;

/// dw[c_out, c_in/groups, kh, kw] = Σ_b dy_g[b]·col(x[b])ᵀ, or dw += that when `accumulate`.
/// The batch is summed in chunks of `WEIGHT_GRAD_CHUNK` images (in order within a chunk,
/// chunks added in order), then added to (or written over) dw, so `accumulate` adds the
/// whole gradient once.
pub fn conv2d_backward_weight<T: Element>(
    s: &Conv2dShape,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    accumulate: bool,
) {
    conv2d_backward_weight_with(s, x, dy, dw, accumulate, &mut AlignedBuf::default());
}

/// `conv2d_backward_weight` with its partial sums and patch matrices in `scratch` (grown if
/// too small).
pub fn conv2d_backward_weight_with<T: Element>(
    s: &Conv2dShape,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    accumulate: bool,
    scratch: &mut AlignedBuf<T>,
) {
    check(
        "conv2d_backward_weight",
        s,
        &[
            ("x", x.len(), s.x_len()),
            ("dy", dy.len(), s.y_len()),
            ("dw", dw.len(), s.w_len()),
        ],
    );
    if conv2d_depthwise::applies(s) {
        scratch.grow(conv2d_depthwise::weight_scratch_len::<T>(s));
        conv2d_depthwise::backward_weight(s, x, dy, dw, accumulate, scratch);
        return;
    }
    if conv2d_channels::applies_to_weight_gradient::<T>(s) {
        scratch.grow(conv2d_channels::weight_scratch_len(s));
        conv2d_channels::backward_weight(s, x, dy, dw, accumulate, scratch);
        return;
    }
    if conv2d_weight_nhwc::applies::<T>(s) {
        scratch.grow(conv2d_weight_nhwc::scratch_len(s));
        conv2d_weight_nhwc::backward_weight(s, x, dy, dw, accumulate, scratch);
        return;
    }
    if conv2d_direct::applies_to_weight_gradient::<T>(s) {
        scratch.grow(conv2d_direct::weight_scratch_len(s));
        conv2d_direct::backward_weight(s, x, dy, dw, accumulate, scratch);
        return;
    }
    let [oh, ow] = s.out_hw();
    let (ohw, k, cpg_out) = (oh * ow, s.patch_len(), s.cout_per_group());
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * ohw;
    let w_len = s.w_len();
    let chunks = s.n.div_ceil(WEIGHT_GRAD_CHUNK);
    // Chunks per thread's range (contiguous), each range with one patch matrix and one
    // transposed output gradient.
    let per = chunks.div_ceil(rayon::current_num_threads().clamp(1, chunks.max(1)));
    let parts = chunks.div_ceil(per);
    let pointwise = is_pointwise(s);
    let col_len = if pointwise { 1 } else { k * ohw };
    let dyt_len = cpg_out * ohw;
    scratch.grow(chunks * w_len + parts * (col_len + dyt_len));
    let (partials, rest) = scratch.split_at_mut(chunks * w_len);
    let (cols, dyts) = rest.split_at_mut(parts * col_len);
    // Each partial holds every group's gradient transposed, dW_gᵀ (K × cpg_out), so that the
    // product is col (K × ohw) · dy_gᵀ (ohw × cpg_out) with every operand's rows
    // contiguous. The direct form dy_g · colᵀ reads both operands along the contracted
    // dimension, which the GEMM packs about ten times slower (BENCHMARKS.md, CPU
    // convolution); transposing dy_g (cpg_out·ohw values) and, once, the sum costs little.
    partials
        .par_chunks_mut(per * w_len)
        .zip(cols.par_chunks_mut(col_len))
        .zip(dyts.par_chunks_mut(dyt_len))
        .enumerate()
        .for_each(|(part, ((sums, col), dyt))| {
            for (j, sum) in sums.chunks_mut(w_len).enumerate() {
                let chunk = part * per + j;
                let images = chunk * WEIGHT_GRAD_CHUNK..((chunk + 1) * WEIGHT_GRAD_CHUNK).min(s.n);
                let first = images.start;
                for b in images {
                    let xb = &x[b * x_img..][..x_img];
                    let dyb = &dy[b * y_img..][..y_img];
                    for g in 0..s.groups {
                        let cols: &[T] = if pointwise {
                            &xb[g * k * ohw..][..k * ohw]
                        } else {
                            im2col(s, xb, g, col);
                            col
                        };
                        transpose(
                            &dyb[g * cpg_out * ohw..][..cpg_out * ohw],
                            cpg_out,
                            ohw,
                            dyt,
                        );
                        // The chunk's first image writes its partial, the others add to it.
                        let beta = if b == first { T::zero() } else { T::one() };
                        // (K × ohw) · (ohw × cpg_out), all row-major and contiguous.
                        // SAFETY: cols, dyt and the partial's group slice are those sizes.
                        unsafe {
                            T::gemm(
                                GemmThreads::Serial,
                                k,
                                ohw,
                                cpg_out,
                                T::one(),
                                cols,
                                ohw as isize,
                                1,
                                dyt,
                                cpg_out as isize,
                                1,
                                beta,
                                &mut sum[g * cpg_out * k..][..cpg_out * k],
                                cpg_out as isize,
                                1,
                            );
                        }
                    }
                }
            }
        });
    // Partials added in chunk order, then transposed back and written over or added to dw
    // once.
    let dw = &mut dw[..w_len];
    let (first, rest) = partials.split_at_mut(w_len);
    for partial in rest.chunks(w_len) {
        for (t, &v) in first.iter_mut().zip(partial) {
            *t = *t + v;
        }
    }
    let group = cpg_out * k;
    for (dwg, sum) in dw.chunks_mut(group).zip(first.chunks(group)) {
        for (co, row) in dwg.chunks_mut(k).enumerate() {
            for (kk, d) in row.iter_mut().enumerate() {
                let v = sum[kk * cpg_out + co];
                *d = if accumulate { *d + v } else { v };
            }
        }
    }
}

/// dst (cols × rows, row-major) = srcᵀ for src (rows × cols, row-major), in square tiles so
/// that both sides are read and written a cache line at a time.
fn transpose<T: Copy>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    const TILE: usize = 16;
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            for r in r0..r1 {
                for c in c0..c1 {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// y[b, c, :, :] += bias[c].
pub fn conv2d_bias_forward<T: Element>(s: &Conv2dShape, y: &mut [T], bias: &[T]) {
    check(
        "conv2d_bias_forward",
        s,
        &[("y", y.len(), s.y_len()), ("bias", bias.len(), s.c_out)],
    );
    let [oh, ow] = s.out_hw();
    let ohw = oh * ow;
    let add = |(i, plane): (usize, &mut [T])| {
        let b = bias[i % s.c_out];
        for v in plane {
            *v = *v + b;
        }
    };
    // Planes in parallel when there is enough work (each plane on its own: no order).
    if s.y_len() > 1 << 15 {
        y[..s.y_len()].par_chunks_mut(ohw).enumerate().for_each(add);
    } else {
        y[..s.y_len()].chunks_mut(ohw).enumerate().for_each(add);
    }
}

/// db[c] = Σ_{b, oh, ow} dy[b, c, oh, ow], or db += that when `accumulate`.
///
/// Summation order, the GPU's: the n·oh·ow values of channel c, in (b, oh, ow) order, are
/// dealt round-robin to 256 lanes; lane t sums values t, t + 256, … in order; the lanes
/// are then combined by a halving tree (lane t += lane t + s for s = 128, 64, …, 1).
pub fn conv2d_backward_bias<T: Element>(s: &Conv2dShape, dy: &[T], db: &mut [T], accumulate: bool) {
    check(
        "conv2d_backward_bias",
        s,
        &[("dy", dy.len(), s.y_len()), ("db", db.len(), s.c_out)],
    );
    let [oh, ow] = s.out_hw();
    let ohw = oh * ow;
    // Channels in parallel, each summed alone.
    db[..s.c_out].par_iter_mut().enumerate().for_each(|(c, d)| {
        let mut lanes = [T::zero(); BIAS_REDUCE_THREADS];
        // Value i = b·ohw + r goes to lane i mod 256: the lane index runs on with i. Whole
        // rounds of 256 values starting at lane 0 are added lane by lane in one loop (which
        // vectorizes); the values before and after them one at a time.
        let mut lane = 0;
        for b in 0..s.n {
            let mut plane = &dy[(b * s.c_out + c) * ohw..][..ohw];
            while lane != 0 && !plane.is_empty() {
                lanes[lane] = lanes[lane] + plane[0];
                lane = (lane + 1) % BIAS_REDUCE_THREADS;
                plane = &plane[1..];
            }
            let rounds = plane.chunks_exact(BIAS_REDUCE_THREADS);
            let rest = rounds.remainder();
            for round in rounds {
                for (l, &v) in lanes.iter_mut().zip(round) {
                    *l = *l + v;
                }
            }
            for &v in rest {
                lanes[lane] = lanes[lane] + v;
                lane += 1;
            }
        }
        let mut half = BIAS_REDUCE_THREADS / 2;
        while half > 0 {
            for t in 0..half {
                lanes[t] = lanes[t] + lanes[t + half];
            }
            half /= 2;
        }
        *d = if accumulate { *d + lanes[0] } else { lanes[0] };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ends of a row each kernel column reads in the padding, against a walk over every
    /// output column; None where a tap's padding reaches past a row's first or last
    /// position, or the row is one position.
    #[test]
    fn edge_columns_are_the_ends_a_walk_finds_in_the_padding() {
        let shape = |w, kw, stride, pad, dilation| Conv2dShape {
            n: 1,
            c_in: 1,
            h: 3,
            w,
            c_out: 1,
            kh: 1,
            kw,
            stride: [1, stride],
            pad: [0, pad],
            dilation: [1, dilation],
            groups: 1,
        };
        let cases = [
            shape(7, 3, 1, 1, 1),
            shape(14, 3, 2, 1, 1),
            shape(9, 3, 2, 1, 1),
            shape(9, 5, 1, 2, 1),
            shape(9, 3, 1, 2, 2),
            shape(9, 3, 1, 0, 1),
            shape(3, 3, 2, 1, 1),
            shape(1, 3, 1, 1, 1),
        ];
        for s in cases {
            let [_, ow] = s.out_hw();
            for kj in 0..s.kw {
                let outside = |ox: usize| {
                    let ix = (ox * s.stride[1] + kj * s.dilation[1]) as isize - s.pad[1] as isize;
                    ix < 0 || ix >= s.w as isize
                };
                let inner_outside = (1..ow.saturating_sub(1)).any(outside);
                let want = (ow >= 2 && !inner_outside).then(|| [outside(0), outside(ow - 1)]);
                assert_eq!(edge_columns(&s, kj), want, "{s:?}, kernel column {kj}");
            }
        }
    }

    /// The bias gradient's whole rounds give the bits of the value-by-value loop, for planes
    /// shorter and longer than a round and not dividing it.
    #[test]
    fn bias_gradient_rounds_give_the_bits_of_the_value_by_value_sum() {
        let mut rng = crate::rng::Rng::new(3);
        for (n, c_out, hw) in [(1, 1, 1), (3, 2, 7), (5, 3, 100), (2, 4, 256), (7, 2, 300)] {
            let s = Conv2dShape {
                n,
                c_in: 1,
                h: hw,
                w: 1,
                c_out,
                kh: 1,
                kw: 1,
                stride: [1, 1],
                pad: [0, 0],
                dilation: [1, 1],
                groups: 1,
            };
            let dy: Vec<f32> = (0..s.y_len()).map(|_| rng.uniform() as f32 - 0.5).collect();
            let mut want = vec![0.5f32; c_out];
            for (c, d) in want.iter_mut().enumerate() {
                let mut lanes = [0f32; BIAS_REDUCE_THREADS];
                let mut lane = 0;
                for b in 0..n {
                    for &v in &dy[(b * c_out + c) * hw..][..hw] {
                        lanes[lane] += v;
                        lane = (lane + 1) % BIAS_REDUCE_THREADS;
                    }
                }
                let mut half = BIAS_REDUCE_THREADS / 2;
                while half > 0 {
                    for t in 0..half {
                        lanes[t] += lanes[t + half];
                    }
                    half /= 2;
                }
                *d += lanes[0];
            }
            let mut got = vec![0.5f32; c_out];
            conv2d_backward_bias(&s, &dy, &mut got, true);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "n {n} c_out {c_out} plane {hw}");
        }
    }
}
