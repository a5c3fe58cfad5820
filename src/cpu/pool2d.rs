//! CPU twin of shaders/pool2d.wgsl: max pooling (with its arg-max), average pooling
//! (count_include_pad = True) and global average pooling on NCHW tensors.
//!
//! Every sum runs in the shader's order (window rows, then columns; covering outputs by
//! row, then column), so the f32 results round as the GPU's do. The shader's backward
//! passes gather per input element (each input sums the contributions of the outputs whose
//! window covers it, deterministic without atomics); the twin scatters each output's
//! gradient, outputs in that same order, which gives every element the same terms in the
//! same order for a fraction of the work. dx is an activation gradient and is
//! overwritten. Shapes are validated by the plan (`Pool2dShape::validate`); here a
//! wrong size is a bug and panics.

use std::ops::Range;

use rayon::prelude::*;

use crate::cpu::Element;
use crate::ops::Pool2dShape;

/// The real input indices (along one axis) of output `o`'s window: the padded positions
/// o·s .. o·s + k shifted by −p, clipped to [0, size) (the padding left out).
#[inline(always)]
fn window(o: usize, k: usize, s: usize, p: usize, size: usize) -> Range<usize> {
    let hi = (o * s + k).saturating_sub(p).min(size);
    let lo = (o * s).saturating_sub(p).min(hi);
    lo..hi
}

/// Every output (oy, ox) of a plane in order (rows, then columns), with its in-plane index
/// oy·ow + ox and its window's real input rows and columns.
fn windows(s: &Pool2dShape) -> impl Iterator<Item = (usize, Range<usize>, Range<usize>)> + '_ {
    let (oh, ow) = s.out_hw();
    (0..oh).flat_map(move |oy| {
        let rows = window(oy, s.kh, s.stride[0], s.pad[0], s.h);
        (0..ow).map(move |ox| {
            let cols = window(ox, s.kw, s.stride[1], s.pad[1], s.w);
            (oy * ow + ox, rows.clone(), cols)
        })
    })
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
/// as in PyTorch, so NaNs propagate). Planes in parallel.
pub fn max_pool2d_forward<T: Element>(s: &Pool2dShape, x: &[T], y: &mut [T], argmax: &mut [u32]) {
    check("max_pool2d_forward", s, x.len(), y.len().min(argmax.len()));
    let (oh, ow) = s.out_hw();
    let (plane, out) = (s.h * s.w, oh * ow);
    let len = s.output_len();
    let inner = inner_columns(s);
    y[..len]
        .par_chunks_mut(out)
        .zip(argmax[..len].par_chunks_mut(out))
        .enumerate()
        .for_each(|(b, (yp, ap))| {
            let xp = &x[b * plane..(b + 1) * plane];
            for oy in 0..oh {
                let rows = window(oy, s.kh, s.stride[0], s.pad[0], s.h);
                let (yr, ar) = (&mut yp[oy * ow..], &mut ap[oy * ow..]);
                for ox in (0..inner.start).chain(inner.end..ow) {
                    let cols = window(ox, s.kw, s.stride[1], s.pad[1], s.w);
                    (yr[ox], ar[ox]) = window_max(s, xp, rows.clone(), cols);
                }
                inner_row_max(s, xp, rows, inner.clone(), yr, ar);
            }
        });
}

/// The maximum of one window and the in-plane index of its first maximum in scan order,
/// window by window: for the windows that reach into the padding, a few per row.
#[inline(always)]
fn window_max<T: Element>(
    s: &Pool2dShape,
    xp: &[T],
    rows: Range<usize>,
    cols: Range<usize>,
) -> (T, u32) {
    let mut best = T::neg_infinity();
    let mut best_i = rows.start * s.w + cols.start;
    for iy in rows {
        let first = iy * s.w + cols.start;
        for (i, &v) in (first..).zip(&xp[first..iy * s.w + cols.end]) {
            let take = v > best || v.is_nan();
            best = if take { v } else { best };
            best_i = if take { i } else { best_i };
        }
    }
    (best, best_i as u32)
}

/// The output columns whose windows hold no padding column: ox·stride ≥ pad and
/// ox·stride − pad + kw ≤ w. Empty where every window reaches into the padding.
fn inner_columns(s: &Pool2dShape) -> Range<usize> {
    let (_, ow) = s.out_hw();
    let (stride, pad) = (s.stride[1], s.pad[1]);
    let first = pad.div_ceil(stride).min(ow);
    let end = match (s.w + pad).checked_sub(s.kw) {
        Some(last_start) => (last_start / stride + 1).min(ow),
        None => 0,
    };
    first..end.max(first)
}

/// Outputs taken together by `inner_row_max`: their running maxima stay on the stack.
const ROW_BLOCK: usize = 64;

/// The maxima of one output row's inner columns (`inner_columns`), each window's real rows
/// `rows`. Window by window, each comparison waited for the one before and picked its
/// winner by a branch the data decides (about one mispredict per window); here each tap
/// (window row, then column: scan order) is compared across a block of outputs at once,
/// which compiles to vector selects. Every output sees its values in the same order, so
/// the maxima and arg-maxes are those of `window_max`. y and argmax start at the row.
/// Strides 1 and 2 (nearly every pooling layer) are compiled for their stride, which is
/// what lets the compiler turn the strided loads and the selects into vector code.
fn inner_row_max<T: Element>(
    s: &Pool2dShape,
    xp: &[T],
    rows: Range<usize>,
    inner: Range<usize>,
    y: &mut [T],
    argmax: &mut [u32],
) {
    match s.stride[1] {
        1 => inner_row_max_strided::<T, 1>(s, xp, rows, inner, y, argmax),
        2 => inner_row_max_strided::<T, 2>(s, xp, rows, inner, y, argmax),
        _ => inner_row_max_strided::<T, 0>(s, xp, rows, inner, y, argmax),
    }
}

/// `inner_row_max` for column stride STRIDE, or the shape's where STRIDE is 0.
#[inline(always)]
fn inner_row_max_strided<T: Element, const STRIDE: usize>(
    s: &Pool2dShape,
    xp: &[T],
    rows: Range<usize>,
    inner: Range<usize>,
    y: &mut [T],
    argmax: &mut [u32],
) {
    let stride = if STRIDE == 0 { s.stride[1] } else { STRIDE };
    let pad = s.pad[1];
    let mut start = inner.start;
    while start < inner.end {
        let count = (inner.end - start).min(ROW_BLOCK);
        let mut best = [T::neg_infinity(); ROW_BLOCK];
        let mut best_i = [0u32; ROW_BLOCK];
        // The first real element of each window, as `window_max` starts.
        for (j, i) in best_i[..count].iter_mut().enumerate() {
            *i = (rows.start * s.w + (start + j) * stride - pad) as u32;
        }
        for iy in rows.clone() {
            for kx in 0..s.kw {
                // Output start + j reads column (start + j)·stride − pad + kx of row iy.
                let first = iy * s.w + start * stride - pad + kx;
                let taps = xp[first..first + (count - 1) * stride + 1]
                    .iter()
                    .step_by(stride);
                let mut i = first as u32;
                for ((&v, b), bi) in taps.zip(&mut best[..count]).zip(&mut best_i[..count]) {
                    // `|`, not `||`: both sides are cheap, and no branch is wanted.
                    let take = (v > *b) | v.is_nan();
                    let m = (take as u32).wrapping_neg();
                    *b = T::select_bits(take, v, *b);
                    *bi = (i & m) | (*bi & !m);
                    i += stride as u32;
                }
            }
        }
        y[start..start + count].copy_from_slice(&best[..count]);
        argmax[start..start + count].copy_from_slice(&best_i[..count]);
        start += count;
    }
}

/// dx [n,c,h,w] = Σ dy over the outputs whose window covers the element and whose arg-max
/// is it, outputs by row then column (overwrites dx). Each output's gradient goes to its
/// arg-max, outputs taken in that order, so every element sums its terms in the order of
/// the shader's gather. Planes in parallel.
pub fn max_pool2d_backward<T: Element>(s: &Pool2dShape, dy: &[T], argmax: &[u32], dx: &mut [T]) {
    check(
        "max_pool2d_backward",
        s,
        dx.len(),
        dy.len().min(argmax.len()),
    );
    let (oh, ow) = s.out_hw();
    let (plane, out) = (s.h * s.w, oh * ow);
    dx[..s.input_len()]
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(b, dxp)| {
            dxp.fill(T::zero());
            let outputs = b * out..(b + 1) * out;
            for (&i, &g) in argmax[outputs.clone()].iter().zip(&dy[outputs]) {
                dxp[i as usize] = dxp[i as usize] + g;
            }
        });
}

/// y [n,c,oh,ow] = (Σ of each window's real elements) / (kh·kw): padding counts in the
/// divisor (count_include_pad = True, PyTorch's default). Planes in parallel.
pub fn avg_pool2d_forward<T: Element>(s: &Pool2dShape, x: &[T], y: &mut [T]) {
    check("avg_pool2d_forward", s, x.len(), y.len());
    let (oh, ow) = s.out_hw();
    let (plane, out) = (s.h * s.w, oh * ow);
    let count = T::from_f64((s.kh * s.kw) as f64);
    y[..s.output_len()]
        .par_chunks_mut(out)
        .enumerate()
        .for_each(|(b, yp)| {
            let xp = &x[b * plane..(b + 1) * plane];
            for (o, rows, cols) in windows(s) {
                let mut sum = T::zero();
                for iy in rows {
                    for &v in &xp[iy * s.w + cols.start..iy * s.w + cols.end] {
                        sum = sum + v;
                    }
                }
                yp[o] = sum / count;
            }
        });
}

/// Forward was y = Σ_window x / (kh·kw), so dx = (Σ dy over the covering outputs) / (kh·kw)
/// (overwrites dx). Each output's gradient is added to its window's elements, outputs by
/// row then column (the order of the shader's gather for every element), then every sum
/// is divided once. Planes in parallel.
pub fn avg_pool2d_backward<T: Element>(s: &Pool2dShape, dy: &[T], dx: &mut [T]) {
    check("avg_pool2d_backward", s, dx.len(), dy.len());
    let (oh, ow) = s.out_hw();
    let (plane, out) = (s.h * s.w, oh * ow);
    let count = T::from_f64((s.kh * s.kw) as f64);
    dx[..s.input_len()]
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(b, dxp)| {
            dxp.fill(T::zero());
            let dyp = &dy[b * out..(b + 1) * out];
            for (o, rows, cols) in windows(s) {
                let g = dyp[o];
                for iy in rows {
                    for d in &mut dxp[iy * s.w + cols.start..iy * s.w + cols.end] {
                        *d = *d + g;
                    }
                }
            }
            for d in dxp.iter_mut() {
                *d = *d / count;
            }
        });
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

#[cfg(test)]
mod tests {
    //! The twin as first written (a gather per input element, one plane after another),
    //! kept as the reference that the scattering, parallel twin must reproduce bit for bit.
    use super::*;

    /// The range of outputs (along one axis) whose window covers input index `i`:
    /// oy·s − p ≤ i ≤ oy·s − p + k − 1, i.e. oy ∈ [⌈(i + p − k + 1)/s⌉, ⌊(i + p)/s⌋] ∩ [0, out).
    fn reference_covering(
        i: usize,
        k: usize,
        s: usize,
        p: usize,
        out: usize,
    ) -> std::ops::Range<usize> {
        let hi = i + p + 1;
        let first = if hi <= k { 0 } else { (hi - k).div_ceil(s) };
        let last = ((i + p) / s).min(out - 1);
        first..last + 1
    }

    /// The real input indices (along one axis) of output `o`'s window, in increasing order: the
    /// padded positions o·s .. o·s + k, shifted by −p, those outside [0, size) (padding) left
    /// out.
    fn reference_window(
        o: usize,
        k: usize,
        s: usize,
        p: usize,
        size: usize,
    ) -> impl Iterator<Item = usize> {
        (o * s..o * s + k).filter_map(move |q| q.checked_sub(p).filter(|&i| i < size))
    }

    /// y [n,c,oh,ow] = max over each window of x [n,c,h,w]; argmax = the in-plane index
    /// iy·w + ix of the first maximum in scan order (padding is −∞ and never wins; a NaN wins,
    /// as in PyTorch, so NaNs propagate).
    fn reference_max_pool2d_forward<T: Element>(
        s: &Pool2dShape,
        x: &[T],
        y: &mut [T],
        argmax: &mut [u32],
    ) {
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
                    for iy in reference_window(oy, s.kh, s.stride[0], s.pad[0], s.h) {
                        for ix in reference_window(ox, s.kw, s.stride[1], s.pad[1], s.w) {
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
    fn reference_max_pool2d_backward<T: Element>(
        s: &Pool2dShape,
        dy: &[T],
        argmax: &[u32],
        dx: &mut [T],
    ) {
        let (oh, ow) = s.out_hw();
        for b in 0..s.n * s.c {
            for iy in 0..s.h {
                for ix in 0..s.w {
                    let me = (iy * s.w + ix) as u32;
                    let mut sum = T::zero();
                    for oy in reference_covering(iy, s.kh, s.stride[0], s.pad[0], oh) {
                        for ox in reference_covering(ix, s.kw, s.stride[1], s.pad[1], ow) {
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
    fn reference_avg_pool2d_forward<T: Element>(s: &Pool2dShape, x: &[T], y: &mut [T]) {
        let (oh, ow) = s.out_hw();
        let plane = s.h * s.w;
        let count = T::from_f64((s.kh * s.kw) as f64);
        for b in 0..s.n * s.c {
            let xp = &x[b * plane..(b + 1) * plane];
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = T::zero();
                    for iy in reference_window(oy, s.kh, s.stride[0], s.pad[0], s.h) {
                        for ix in reference_window(ox, s.kw, s.stride[1], s.pad[1], s.w) {
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
    fn reference_avg_pool2d_backward<T: Element>(s: &Pool2dShape, dy: &[T], dx: &mut [T]) {
        let (oh, ow) = s.out_hw();
        let count = T::from_f64((s.kh * s.kw) as f64);
        for b in 0..s.n * s.c {
            for iy in 0..s.h {
                for ix in 0..s.w {
                    let mut sum = T::zero();
                    for oy in reference_covering(iy, s.kh, s.stride[0], s.pad[0], oh) {
                        for ox in reference_covering(ix, s.kw, s.stride[1], s.pad[1], ow) {
                            sum = sum + dy[(b * oh + oy) * ow + ox];
                        }
                    }
                    dx[(b * s.h + iy) * s.w + ix] = sum / count;
                }
            }
        }
    }

    fn shape(
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        k: [usize; 2],
        st: [usize; 2],
        p: [usize; 2],
    ) -> Pool2dShape {
        Pool2dShape {
            n,
            c,
            h,
            w,
            kh: k[0],
            kw: k[1],
            stride: st,
            pad: p,
        }
    }

    fn same_bits<T: Element>(what: &str, got: &[T], want: &[T]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                Element::to_f64(*g).to_bits() == Element::to_f64(*w).to_bits(),
                "{what}[{i}]: {g:?}, want {w:?}"
            );
        }
    }

    /// Overlapping and disjoint windows, padding, strides above the kernel, ties, NaN and −∞:
    /// forward values and arg-maxes, and both backwards, equal the gathering twin's bits.
    #[test]
    fn scattering_twin_gives_the_bits_of_the_gathering_twin() {
        let shapes = [
            shape(2, 3, 8, 8, [2, 2], [2, 2], [0, 0]),
            shape(1, 2, 7, 9, [3, 3], [2, 2], [1, 1]),
            shape(2, 1, 5, 6, [3, 2], [1, 1], [1, 0]),
            shape(1, 2, 9, 7, [2, 3], [3, 2], [1, 1]),
            shape(3, 2, 4, 4, [4, 4], [1, 1], [2, 2]),
            // Rows of more than one block of inner outputs (`ROW_BLOCK`).
            shape(1, 2, 3, 150, [2, 2], [2, 2], [0, 0]),
            shape(1, 1, 5, 141, [3, 3], [2, 2], [1, 1]),
            shape(1, 1, 4, 70, [1, 3], [1, 1], [0, 1]),
        ];
        let mut rng = crate::rng::Rng::new(5);
        for s in shapes {
            let x: Vec<f32> = (0..s.input_len())
                .map(|i| match i % 13 {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    2 | 3 => 0.5, // ties
                    _ => rng.uniform() as f32 - 0.5,
                })
                .collect();
            let dy: Vec<f32> = (0..s.output_len())
                .map(|_| rng.uniform() as f32 - 0.5)
                .collect();
            let what = format!("{s:?}");
            let (mut y, mut am) = (vec![0f32; s.output_len()], vec![0u32; s.output_len()]);
            let (mut ry, mut ram) = (y.clone(), am.clone());
            max_pool2d_forward(&s, &x, &mut y, &mut am);
            reference_max_pool2d_forward(&s, &x, &mut ry, &mut ram);
            same_bits(&format!("max y {what}"), &y, &ry);
            assert_eq!(am, ram, "argmax {what}");
            let (mut dx, mut rdx) = (vec![1f32; s.input_len()], vec![1f32; s.input_len()]);
            max_pool2d_backward(&s, &dy, &am, &mut dx);
            reference_max_pool2d_backward(&s, &dy, &am, &mut rdx);
            same_bits(&format!("max dx {what}"), &dx, &rdx);
            avg_pool2d_forward(&s, &x, &mut y);
            reference_avg_pool2d_forward(&s, &x, &mut ry);
            same_bits(&format!("avg y {what}"), &y, &ry);
            avg_pool2d_backward(&s, &dy, &mut dx);
            reference_avg_pool2d_backward(&s, &dy, &mut rdx);
            same_bits(&format!("avg dx {what}"), &dx, &rdx);
        }
    }
}
