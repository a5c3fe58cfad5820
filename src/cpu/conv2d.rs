//! CPU twin of shaders/conv2d.wgsl: 2-D convolution (NCHW, PyTorch weight layout) with
//! stride, padding, dilation and groups, forward and backward, plus the per-channel bias.
//!
//! Design: im2col + GEMM, per batch element and per group. The patch matrix of one image
//! and group, `col[k, r]` with k = (ci, ki, kj) over c_in/groups·kh·kw and r = (oh, ow),
//! turns every pass into one `T::gemm` (matrixmultiply):
//! - forward         y_g (cpg_out × ohw)  = W_g (cpg_out × K) · col (K × ohw)
//! - backward input  dcol (K × ohw)       = W_gᵀ · dy_g, then col2im adds dcol back into
//!   dx (the transpose of the gather: every input pixel receives the gradient of every
//!   output it fed);
//! - backward weight dW_g (cpg_out × K)  += dy_g · colᵀ, summed over the batch in fixed
//!   chunks of images (in parallel, each in order) whose partials are added in order, so
//!   the result is reproducible whatever the thread count.
//!
//! Images of the batch run in parallel with rayon for the forward and input gradient; each
//! writes its own slice of the output, so the result does not depend on scheduling.
//!
//! Gradient convention: dx is an activation gradient and is overwritten; dw and db are
//! parameter gradients and `accumulate` adds to them instead of overwriting.
//!
//! The twins take a shape that `Conv2dShape::validate` accepted and panic (like the other
//! twins) on slices shorter than the shape needs.

use rayon::prelude::*;

use crate::cpu::Element;
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
                for oy in 0..oh {
                    let iy = (oy * s.stride[0] + ki * s.dilation[0]) as isize - s.pad[0] as isize;
                    let out = &mut row[oy * ow..][..ow];
                    if iy < 0 || iy >= s.h as isize {
                        out.fill(T::zero());
                        continue;
                    }
                    let src = &plane[iy as usize * s.w..][..s.w];
                    for (ox, o) in out.iter_mut().enumerate() {
                        let ix =
                            (ox * s.stride[1] + kj * s.dilation[1]) as isize - s.pad[1] as isize;
                        *o = if ix < 0 || ix >= s.w as isize {
                            T::zero()
                        } else {
                            src[ix as usize]
                        };
                    }
                }
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
                for oy in 0..oh {
                    let iy = (oy * s.stride[0] + ki * s.dilation[0]) as isize - s.pad[0] as isize;
                    if iy < 0 || iy >= s.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * s.w..][..s.w];
                    for (ox, &v) in row[oy * ow..][..ow].iter().enumerate() {
                        let ix =
                            (ox * s.stride[1] + kj * s.dilation[1]) as isize - s.pad[1] as isize;
                        if ix >= 0 && ix < s.w as isize {
                            dst[ix as usize] = dst[ix as usize] + v;
                        }
                    }
                }
            }
        }
    }
}

/// y[n, c_out, oh, ow] = conv(x[n, c_in, h, w], w[c_out, c_in/groups, kh, kw]) (overwrite;
/// the bias is a separate pass, `conv2d_bias_forward`).
pub fn conv2d_forward<T: Element>(s: &Conv2dShape, x: &[T], w: &[T], y: &mut [T]) {
    check(
        "conv2d_forward",
        s,
        &[
            ("x", x.len(), s.x_len()),
            ("w", w.len(), s.w_len()),
            ("y", y.len(), s.y_len()),
        ],
    );
    let [oh, ow] = s.out_hw();
    let (ohw, k, cpg_out) = (oh * ow, s.patch_len(), s.cout_per_group());
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * ohw;
    y[..s.y_len()]
        .par_chunks_mut(y_img)
        .enumerate()
        .for_each(|(b, yb)| {
            let xb = &x[b * x_img..][..x_img];
            let mut col = vec![T::zero(); k * ohw];
            for g in 0..s.groups {
                im2col(s, xb, g, &mut col);
                let wg = &w[g * cpg_out * k..][..cpg_out * k];
                let yg = &mut yb[g * cpg_out * ohw..][..cpg_out * ohw];
                // (cpg_out × K) · (K × ohw), all row-major and contiguous.
                T::gemm(
                    cpg_out,
                    k,
                    ohw,
                    T::one(),
                    wg,
                    k as isize,
                    1,
                    &col,
                    ohw as isize,
                    1,
                    T::zero(),
                    yg,
                    ohw as isize,
                    1,
                );
            }
        });
}

/// dx[n, c_in, h, w] = ∂L/∂x given dy = ∂L/∂y (overwrite). Forward was y_g = W_g·col(x), so
/// dcol = W_gᵀ·dy_g and dx = col2im(dcol).
pub fn conv2d_backward_input<T: Element>(s: &Conv2dShape, dy: &[T], w: &[T], dx: &mut [T]) {
    check(
        "conv2d_backward_input",
        s,
        &[
            ("dy", dy.len(), s.y_len()),
            ("w", w.len(), s.w_len()),
            ("dx", dx.len(), s.x_len()),
        ],
    );
    let [oh, ow] = s.out_hw();
    let (ohw, k, cpg_out) = (oh * ow, s.patch_len(), s.cout_per_group());
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * ohw;
    dx[..s.x_len()]
        .par_chunks_mut(x_img)
        .enumerate()
        .for_each(|(b, dxb)| {
            dxb.fill(T::zero());
            let dyb = &dy[b * y_img..][..y_img];
            let mut dcol = vec![T::zero(); k * ohw];
            for g in 0..s.groups {
                let wg = &w[g * cpg_out * k..][..cpg_out * k];
                let dyg = &dyb[g * cpg_out * ohw..][..cpg_out * ohw];
                // (K × cpg_out) · (cpg_out × ohw): W_g read transposed through its strides.
                T::gemm(
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
                    T::zero(),
                    &mut dcol,
                    ohw as isize,
                    1,
                );
                col2im_add(s, &dcol, g, dxb);
            }
        });
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
    check(
        "conv2d_backward_weight",
        s,
        &[
            ("x", x.len(), s.x_len()),
            ("dy", dy.len(), s.y_len()),
            ("dw", dw.len(), s.w_len()),
        ],
    );
    let [oh, ow] = s.out_hw();
    let (ohw, k, cpg_out) = (oh * ow, s.patch_len(), s.cout_per_group());
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * ohw;
    let chunks: Vec<Vec<T>> = (0..s.n.div_ceil(WEIGHT_GRAD_CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let mut sum = vec![T::zero(); s.w_len()];
            let mut col = vec![T::zero(); k * ohw];
            let images = chunk * WEIGHT_GRAD_CHUNK..((chunk + 1) * WEIGHT_GRAD_CHUNK).min(s.n);
            for b in images {
                let xb = &x[b * x_img..][..x_img];
                let dyb = &dy[b * y_img..][..y_img];
                for g in 0..s.groups {
                    im2col(s, xb, g, &mut col);
                    let dyg = &dyb[g * cpg_out * ohw..][..cpg_out * ohw];
                    // (cpg_out × ohw) · (ohw × K): col read transposed through its strides.
                    T::gemm(
                        cpg_out,
                        ohw,
                        k,
                        T::one(),
                        dyg,
                        ohw as isize,
                        1,
                        &col,
                        1,
                        ohw as isize,
                        T::one(),
                        &mut sum[g * cpg_out * k..][..cpg_out * k],
                        k as isize,
                        1,
                    );
                }
            }
            sum
        })
        .collect();
    let mut total = vec![T::zero(); s.w_len()];
    for partial in chunks {
        for (t, v) in total.iter_mut().zip(partial) {
            *t = *t + v;
        }
    }
    for (d, v) in dw[..s.w_len()].iter_mut().zip(total) {
        *d = if accumulate { *d + v } else { v };
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
    for (i, plane) in y[..s.y_len()].chunks_exact_mut(ohw).enumerate() {
        let b = bias[i % s.c_out];
        for v in plane {
            *v = *v + b;
        }
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
    let count = s.n * ohw;
    for (c, d) in db[..s.c_out].iter_mut().enumerate() {
        let mut lanes = [T::zero(); BIAS_REDUCE_THREADS];
        for i in 0..count {
            let (b, r) = (i / ohw, i % ohw);
            let lane = &mut lanes[i % BIAS_REDUCE_THREADS];
            *lane = *lane + dy[(b * s.c_out + c) * ohw + r];
        }
        let mut half = BIAS_REDUCE_THREADS / 2;
        while half > 0 {
            for t in 0..half {
                lanes[t] = lanes[t] + lanes[t + half];
            }
            half /= 2;
        }
        *d = if accumulate { *d + lanes[0] } else { lanes[0] };
    }
}
