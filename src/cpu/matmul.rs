//! CPU twin of shaders/matmul.wgsl. (Stub: the kernel-family owner fills this in.)

use crate::cpu::Element;
use crate::error::Result;
use crate::ops::{MatmulLayout, MatmulShape};

/// C(M,N) = op(A)·op(B), or C += op(A)·op(B) when `accumulate`.
/// A is (M,K) for NN/NT and (K,M) for TN; B is (K,N) for NN/TN and (N,K) for NT.
pub fn matmul<T: Element>(
    layout: MatmulLayout,
    shape: MatmulShape,
    a: &[T],
    b: &[T],
    c: &mut [T],
    accumulate: bool,
) -> Result<()> {
    let _ = (layout, shape, a, b, c, accumulate);
    unimplemented!("cpu::matmul")
}
