//! CPU twin of shaders/add.wgsl: the element-wise sum of a shortcut connection and the
//! accumulation of a gradient from a tensor's further consumers.
//!
//! add's backward is a pass-through (∂(a + b)/∂a = ∂(a + b)/∂b = 1): the plan hands dy to
//! both operands, and where one tensor feeds several consumers it sums their gradients
//! with `accumulate_grad`, first consumer written, later ones added in a fixed order.

use crate::cpu::Element;

/// y = a + b, element-wise over `y.len()` elements.
pub fn add_forward<T: Element>(a: &[T], b: &[T], y: &mut [T]) {
    assert!(
        a.len() >= y.len() && b.len() >= y.len(),
        "add_forward: a has {} elements, b {}, y {}",
        a.len(),
        b.len(),
        y.len()
    );
    for ((v, &p), &q) in y.iter_mut().zip(a).zip(b) {
        *v = p + q;
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
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = *d + s;
    }
}

/// dst = src (the CPU twin of `copy_tensor`).
pub fn copy_tensor<T: Element>(src: &[T], dst: &mut [T]) {
    let n = dst.len();
    dst.copy_from_slice(&src[..n]);
}
