//! Launcher of shaders/bias.wgsl: the bias add of a dense layer (y += bias, broadcast over
//! rows) and its gradient, a column sum in a fixed order (each column's rows split between
//! eight row lanes, merged in a fixed tree), so results are reproducible and match the CPU
//! twin's order.

use super::launch::{check_buffer, check_count, check_distinct, grid_1d};
use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};

/// Workgroup size of bias.wgsl's forward (its `WG` constant).
pub const WG: u32 = 256;
/// Columns per workgroup of bias.wgsl's backward (its `COLS` constant).
const BACKWARD_COLS: u32 = 32;

/// The WGSL struct `Shape` of bias.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    rows: u32,
    cols: u32,
    accumulate: u32,
    _pad: u32,
}

fn shape(op: &str, rows: usize, cols: usize, accumulate: bool) -> Result<Shape> {
    check_count(op, "rows·cols", rows.saturating_mul(cols))?;
    Ok(Shape {
        rows: rows as u32,
        cols: cols as u32,
        accumulate: accumulate as u32,
        _pad: 0,
    })
}

/// y(rows, cols) += bias(cols): one invocation per element of y.
pub fn bias_forward(
    ctx: &GpuContext,
    y: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    rows: usize,
    cols: usize,
) -> Result<Dispatch> {
    const OP: &str = "bias_forward";
    let s = shape(OP, rows, cols, false)?;
    check_buffer(OP, "y", y, rows * cols)?;
    check_buffer(OP, "bias", bias, cols)?;
    check_distinct(OP, &[("y", y), ("bias", bias)])?;
    let u = ctx.uniform("bias_forward.shape", &s)?;
    ctx.dispatch(
        "bias",
        "bias_forward",
        &[&u, y, bias],
        grid_1d(ctx, rows * cols, WG),
    )
}

/// db(cols) = Σ_rows dy(rows, cols), or db += that sum when `accumulate`: one invocation
/// per column.
pub fn bias_backward(
    ctx: &GpuContext,
    dy: &wgpu::Buffer,
    db: &wgpu::Buffer,
    rows: usize,
    cols: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "bias_backward";
    let s = shape(OP, rows, cols, accumulate)?;
    check_buffer(OP, "dy", dy, rows * cols)?;
    check_buffer(OP, "db", db, cols)?;
    check_distinct(OP, &[("dy", dy), ("db", db)])?;
    let u = ctx.uniform("bias_backward.shape", &s)?;
    ctx.dispatch(
        "bias",
        "bias_backward",
        &[&u, dy, db],
        grid_1d(ctx, cols, BACKWARD_COLS),
    )
}
