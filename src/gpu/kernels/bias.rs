//! Launcher of shaders/bias.wgsl. (Stub: the kernel-family owner fills this in.)

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};

pub fn bias_forward(
    ctx: &GpuContext,
    y: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    rows: usize,
    cols: usize,
) -> Result<Dispatch> {
    let _ = (ctx, y, bias, rows, cols);
    unimplemented!()
}

pub fn bias_backward(
    ctx: &GpuContext,
    dy: &wgpu::Buffer,
    db: &wgpu::Buffer,
    rows: usize,
    cols: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    let _ = (ctx, dy, db, rows, cols, accumulate);
    unimplemented!()
}
