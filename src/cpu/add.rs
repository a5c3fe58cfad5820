//! CPU twin of shaders/add.wgsl: the element-wise sum of a shortcut connection and the
//! accumulation of a gradient from a tensor's further consumers.
//!
//! add's backward is a pass-through (∂(a + b)/∂a = ∂(a + b)/∂b = 1): the plan hands dy to
//! both operands, and where one tensor feeds several consumers it sums their gradients
//! with `accumulate_grad`, first consumer written, later ones added in a fixed order.

use rayon::prelude::*;

use crate::cpu::Element;

/// Passes over more elements than this split into chunks of this size across rayon's
/// threads (each element on its own, so the split changes no result); below it the hand-off
/// costs more than the work.
const PAR_CHUNK: usize = 1 << 15;

/// y = a + b, element-wise over `y.len()` elements.
pub fn add_forward<T: Element>(a: &[T], b: &[T], y: &mut [T]) {
    assert!(
        a.len() >= y.len() && b.len() >= y.len(),
        "add_forward: a has {} elements, b {}, y {}",
        a.len(),
        b.len(),
        y.len()
    );
    let n = y.len();
    let run = |y: &mut [T], a: &[T], b: &[T]| {
        for ((v, &p), &q) in y.iter_mut().zip(a).zip(b) {
            *v = p + q;
        }
    };
    if n > PAR_CHUNK {
        y.par_chunks_mut(PAR_CHUNK)
            .zip(a[..n].par_chunks(PAR_CHUNK))
            .zip(b[..n].par_chunks(PAR_CHUNK))
            .for_each(|((y, a), b)| run(y, a, b));
    } else {
        run(y, a, b);
    }
}

/// dst += src, element-wise over `dst.len()` elements.
pub fn accumulate_grad<T: Element>(src: &[T], dst: &mut [T]) {
    assert!(
        src.len() >= dst.len(),
        "accumulate_grad: src has {} elements, dst {}",
        src.len(),
        dst.len()
    );
    let n = dst.len();
    let run = |dst: &mut [T], src: &[T]| {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = *d + s;
        }
    };
    if n > PAR_CHUNK {
        dst.par_chunks_mut(PAR_CHUNK)
            .zip(src[..n].par_chunks(PAR_CHUNK))
            .for_each(|(d, s)| run(d, s));
    } else {
        run(dst, src);
    }
}

/// dst = src (the CPU twin of `copy_tensor`).
pub fn copy_tensor<T: Element>(src: &[T], dst: &mut [T]) {
    let n = dst.len();
    dst.copy_from_slice(&src[..n]);
}
