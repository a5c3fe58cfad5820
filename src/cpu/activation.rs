//! CPU twin of shaders/activation.wgsl. (Stub: the kernel-family owner fills this in.)

use crate::cpu::Element;
use crate::ops::Activation;

/// y = f(x), element-wise.
pub fn activation_forward<T: Element>(act: Activation, x: &[T], y: &mut [T]) {
    let _ = (act, x, y);
    unimplemented!()
}

/// dx = dy ⊙ f'(x), given the input x and the output y = f(x). Overwrites dx.
pub fn activation_backward<T: Element>(act: Activation, x: &[T], y: &[T], dy: &[T], dx: &mut [T]) {
    let _ = (act, x, y, dy, dx);
    unimplemented!()
}
