//! Launcher of shaders/activation.wgsl. (Stub: the kernel-family owner fills this in.)

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::ops::Activation;

pub fn activation_forward(
    ctx: &GpuContext,
    act: Activation,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: usize,
) -> Result<Dispatch> {
    let _ = (ctx, act, x, y, len);
    unimplemented!()
}

#[allow(clippy::too_many_arguments)]
pub fn activation_backward(
    ctx: &GpuContext,
    act: Activation,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    len: usize,
) -> Result<Dispatch> {
    let _ = (ctx, act, x, y, dy, dx, len);
    unimplemented!()
}
