//! Launcher of shaders/matmul.wgsl. (Stub: the kernel-family owner fills this in.)

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::ops::{MatmulLayout, MatmulShape};

/// C(M,N) = op(A)·op(B), or C += op(A)·op(B) when `accumulate`; layouts as in cpu::matmul.
pub fn matmul(
    ctx: &GpuContext,
    layout: MatmulLayout,
    shape: MatmulShape,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Dispatch> {
    let _ = (ctx, layout, shape, a, b, c, accumulate);
    unimplemented!()
}
