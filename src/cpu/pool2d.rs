//! CPU twin of shaders/pool2d.wgsl: max pooling (with its arg-max), average pooling
//! (count_include_pad = True) and global average pooling on NCHW tensors.
//!
//! Every loop runs in the shader's order (window rows, then columns; covering outputs by
//! row, then column), so the f32 results round as the GPU's do. The backward passes gather
//! per input element: each input sums the contributions of the outputs whose window covers
//! it, which is deterministic on the GPU without atomics. dx is an activation gradient and
//! is overwritten. Shapes are validated by the plan (`Pool2dShape::validate`); here a
//! wrong size is a bug and panics.

use crate::cpu::Element;
use crate::ops::Pool2dShape;

/// The range of outputs (along one axis) whose window covers input index `i`:
/// oy·s − p ≤ i ≤ oy·s − p + k − 1, i.e. oy ∈ [⌈(i + p − k + 1)/s⌉, ⌊(i + p)/s⌋] ∩ [0, out).
fn covering(i: usize, k: usize, s: usize, p: usize, out: usize) -> std::ops::Range<usize> {
    let hi = i + p + 1;
    let first = if hi <= k { 0 } else { (hi - k).div_ceil(s) };
    let last = ((i + p) / s).min(out - 1);
    first..last + 1
}

/// The real input indices (along one axis) of output `o`'s window, in increasing order: the
/// padded positions o·s .. o·s + k, shifted by −p, those outside [0, size) (padding) left
/// out.
fn window(o: usize, k: usize, s: usize, p: usize, size: usize) -> impl Iterator<Item = usize> {
    (o * s..o * s + k).filter_map(move |q| q.checked_sub(p).filter(|&i| i < size))
}

fn check(op: &str, s: &Pool2dShape, input: usize, output: usize) {
    assert!(
        s.validate(op).is_ok(),
        "{op}: invalid geometry {s:?}: {}",
        s.validate(op)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    );
    assert!(
        input >= s.input_len() && output >= s.output_len(),
        "{op}: input side has {input} elements, output side {output}, for {s:?}"
    );
}

/// y [n,c,oh,ow] = max over each window of x [n,c,h,w]; argmax = the in-plane index
/// iy·w + ix of the first maximum in scan order (padding is −∞ and never wins; a NaN wins,
/// as in PyTorch, so NaNs propagate).
pub fn max_pool2d_forward<T: Element>(s: &Pool2dShape, x: &[T], y: &mut [T], argmax: &mut [u32]) {
    check("max_pool2d_forward", s, x.len(), y.len().min(argmax.len()));
    let (oh, ow) = s.out_hw();
    let plane = s.h * s.w;
    for b in 0..s.n * s.c {
        let xp = &x[b * plane..(b + 1) * plane];
        for oy in 0..oh {
            for ox in 0..ow {
                let o = (b * oh + oy) * ow + ox;
                let iy0 = (oy * s.stride[0]).saturating_sub(s.pad[0]);
                let ix0 = (ox * s.stride[1]).saturating_sub(s.pad[1]);
                let mut best = T::neg_infinity();
                let mut best_i = iy0 * s.w + ix0;
                for iy in window(oy, s.kh, s.stride[0], s.pad[0], s.h) {
                    for ix in window(ox, s.kw, s.stride[1], s.pad[1], s.w) {
                        let i = iy * s.w + ix;
                        let v = xp[i];
                        if v > best || v.is_nan() {
                            best = v;
                            best_i = i;
                        }
                    }
                }
                y[o] = best;
                argmax[o] = best_i as u32;
            }
        }
    }
}

/// dx [n,c,h,w] = Σ dy over the outputs whose window covers the element and whose arg-max
/// is it, outputs by row then column (overwrites dx).
pub fn max_pool2d_backward<T: Element>(s: &Pool2dShape, dy: &[T], argmax: &[u32], dx: &mut [T]) {
    check(
        "max_pool2d_backward",
        s,
        dx.len(),
        dy.len().min(argmax.len()),
    );
    let (oh, ow) = s.out_hw();
    for b in 0..s.n * s.c {
        for iy in 0..s.h {
            for ix in 0..s.w {
                let me = (iy * s.w + ix) as u32;
                let mut sum = T::zero();
                for oy in covering(iy, s.kh, s.stride[0], s.pad[0], oh) {
                    for ox in covering(ix, s.kw, s.stride[1], s.pad[1], ow) {
                        let o = (b * oh + oy) * ow + ox;
                        if argmax[o] == me {
                            sum = sum + dy[o];
                        }
                    }
                }
                dx[(b * s.h + iy) * s.w + ix] = sum;
            }
        }
    }
}

/// y [n,c,oh,ow] = (Σ of each window's real elements) / (kh·kw): padding counts in the
/// divisor (count_include_pad = True, PyTorch's default).
pub fn avg_pool2d_forward<T: Element>(s: &Pool2dShape, x: &[T], y: &mut [T]) {
    check("avg_pool2d_forward", s, x.len(), y.len());
    let (oh, ow) = s.out_hw();
    let plane = s.h * s.w;
    let count = T::from_f64((s.kh * s.kw) as f64);
    for b in 0..s.n * s.c {
        let xp = &x[b * plane..(b + 1) * plane];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut sum = T::zero();
                for iy in window(oy, s.kh, s.stride[0], s.pad[0], s.h) {
                    for ix in window(ox, s.kw, s.stride[1], s.pad[1], s.w) {
                        sum = sum + xp[iy * s.w + ix];
                    }
                }
                y[(b * oh + oy) * ow + ox] = sum / count;
            }
        }
    }
}

/// Forward was y = Σ_window x / (kh·kw), so dx = (Σ dy over the covering outputs) / (kh·kw)
/// (overwrites dx).
pub fn avg_pool2d_backward<T: Element>(s: &Pool2dShape, dy: &[T], dx: &mut [T]) {
    check("avg_pool2d_backward", s, dx.len(), dy.len());
    let (oh, ow) = s.out_hw();
    let count = T::from_f64((s.kh * s.kw) as f64);
    for b in 0..s.n * s.c {
        for iy in 0..s.h {
            for ix in 0..s.w {
                let mut sum = T::zero();
                for oy in covering(iy, s.kh, s.stride[0], s.pad[0], oh) {
                    for ox in covering(ix, s.kw, s.stride[1], s.pad[1], ow) {
                        sum = sum + dy[(b * oh + oy) * ow + ox];
                    }
                }
                dx[(b * s.h + iy) * s.w + ix] = sum / count;
            }
        }
    }
}

/// y [n,c] = mean over the h·w plane of x [n,c,h,w], summed in order.
pub fn global_avg_pool_forward<T: Element>(
    x: &[T],
    y: &mut [T],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
) {
    let hw = h * w;
    assert!(
        hw > 0 && x.len() >= n * c * hw && y.len() >= n * c,
        "global_avg_pool_forward: x has {} elements, y {}, for [{n}, {c}, {h}, {w}]",
        x.len(),
        y.len()
    );
    let count = T::from_f64(hw as f64);
    for (yb, xb) in y[..n * c].iter_mut().zip(x.chunks_exact(hw)) {
        let mut sum = T::zero();
        for &v in xb {
            sum = sum + v;
        }
        *yb = sum / count;
    }
}

/// Forward was y[b] = Σ x[b, ·] / (h·w), so dx[b, i] = dy[b] / (h·w) (overwrites dx).
pub fn global_avg_pool_backward<T: Element>(
    dy: &[T],
    dx: &mut [T],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
) {
    let hw = h * w;
    assert!(
        hw > 0 && dx.len() >= n * c * hw && dy.len() >= n * c,
        "global_avg_pool_backward: dy has {} elements, dx {}, for [{n}, {c}, {h}, {w}]",
        dy.len(),
        dx.len()
    );
    let count = T::from_f64(hw as f64);
    for (dxb, &g) in dx[..n * c * hw].chunks_exact_mut(hw).zip(&dy[..n * c]) {
        let v = g / count;
        dxb.fill(v);
    }
}
