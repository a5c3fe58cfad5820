//! Launcher of shaders/layernorm.wgsl: nn.LayerNorm over the last d features of each of
//! `rows` rows, with an elementwise affine γ, β of size d.
//!
//! The forward is one dispatch (one workgroup per row). The backward is two: dx reduces
//! along each row (one workgroup per row) while dγ and dβ reduce down the columns (eight
//! row lanes per column, each over a contiguous range of rows in order), so
//! `layernorm_backward` returns both, to be recorded in order (they are independent: both only read x, dy and the saved statistics).

use super::launch::{check_buffer, check_count, check_distinct, grid_1d};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext};

/// Workgroup size of layernorm.wgsl (its `WG` constant, and `cpu::batchnorm::WG`).
pub const WG: u32 = 256;
/// Columns per workgroup of layernorm_backward_params (`P_COLS` in layernorm.wgsl).
const PARAM_COLS: u32 = 32;
/// torch.nn.LayerNorm's default eps.
pub const DEFAULT_EPS: f32 = 1e-5;

/// The WGSL struct `Shape` of layernorm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    rows: u32,
    d: u32,
    accumulate: u32,
    eps: f32,
}

fn shape(op: &str, rows: usize, d: usize, accumulate: bool, eps: f32) -> Result<Shape> {
    if rows == 0 || d == 0 {
        return Err(Error::shape(
            op,
            format!("rows {rows}, d {d}: both must be at least 1"),
        ));
    }
    check_count(op, "rows·d", rows.saturating_mul(d))?;
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::shape(
            op,
            format!("eps {eps} must be finite and ≥ 0"),
        ));
    }
    Ok(Shape {
        rows: rows as u32,
        d: d as u32,
        accumulate: accumulate as u32,
        eps,
    })
}

/// x, y: [rows, d]; gamma, beta: [d]; save_mean, save_invstd: [rows]. Writes y and the
/// saved statistics. One workgroup per row.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    y: &wgpu::Buffer,
    save_mean: &wgpu::Buffer,
    save_invstd: &wgpu::Buffer,
    rows: usize,
    d: usize,
    eps: f32,
) -> Result<Dispatch> {
    const OP: &str = "layernorm_forward";
    let sh = shape(OP, rows, d, false, eps)?;
    check_buffer(OP, "x", x, rows * d)?;
    check_buffer(OP, "y", y, rows * d)?;
    check_buffer(OP, "gamma", gamma, d)?;
    check_buffer(OP, "beta", beta, d)?;
    check_buffer(OP, "save_mean", save_mean, rows)?;
    check_buffer(OP, "save_invstd", save_invstd, rows)?;
    check_distinct(
        OP,
        &[
            ("x", x),
            ("gamma", gamma),
            ("beta", beta),
            ("y", y),
            ("save_mean", save_mean),
            ("save_invstd", save_invstd),
        ],
    )?;
    let u = ctx.uniform("layernorm_forward.shape", &sh)?;
    ctx.dispatch_reduction(
        "layernorm",
        "layernorm_subgroup",
        "layernorm_forward",
        &[&u, x, gamma, beta, y, save_mean, save_invstd],
        grid_1d(ctx, rows * WG as usize, WG),
    )
}

/// dx(rows, d) from x, γ, dy and the saved statistics (overwritten). One workgroup per row.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward_input(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    save_mean: &wgpu::Buffer,
    save_invstd: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    rows: usize,
    d: usize,
) -> Result<Dispatch> {
    const OP: &str = "layernorm_backward_input";
    let sh = shape(OP, rows, d, false, DEFAULT_EPS)?;
    check_buffer(OP, "x", x, rows * d)?;
    check_buffer(OP, "dy", dy, rows * d)?;
    check_buffer(OP, "dx", dx, rows * d)?;
    check_buffer(OP, "gamma", gamma, d)?;
    check_buffer(OP, "save_mean", save_mean, rows)?;
    check_buffer(OP, "save_invstd", save_invstd, rows)?;
    check_distinct(
        OP,
        &[
            ("x", x),
            ("gamma", gamma),
            ("dy", dy),
            ("save_mean", save_mean),
            ("save_invstd", save_invstd),
            ("dx", dx),
        ],
    )?;
    let u = ctx.uniform("layernorm_backward_input.shape", &sh)?;
    ctx.dispatch_reduction(
        "layernorm",
        "layernorm_subgroup",
        "layernorm_backward_input",
        &[&u, x, gamma, dy, save_mean, save_invstd, dx],
        grid_1d(ctx, rows * WG as usize, WG),
    )
}

/// dγ(d) = Σ_rows dy·x̂ and dβ(d) = Σ_rows dy, overwritten or added to when `accumulate`.
/// One invocation per column.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward_params(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    save_mean: &wgpu::Buffer,
    save_invstd: &wgpu::Buffer,
    dgamma: &wgpu::Buffer,
    dbeta: &wgpu::Buffer,
    rows: usize,
    d: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "layernorm_backward_params";
    let sh = shape(OP, rows, d, accumulate, DEFAULT_EPS)?;
    check_buffer(OP, "x", x, rows * d)?;
    check_buffer(OP, "dy", dy, rows * d)?;
    check_buffer(OP, "save_mean", save_mean, rows)?;
    check_buffer(OP, "save_invstd", save_invstd, rows)?;
    check_buffer(OP, "dgamma", dgamma, d)?;
    check_buffer(OP, "dbeta", dbeta, d)?;
    check_distinct(
        OP,
        &[
            ("x", x),
            ("dy", dy),
            ("save_mean", save_mean),
            ("save_invstd", save_invstd),
            ("dgamma", dgamma),
            ("dbeta", dbeta),
        ],
    )?;
    let u = ctx.uniform("layernorm_backward_params.shape", &sh)?;
    ctx.dispatch_reduction(
        "layernorm",
        "layernorm_subgroup",
        "layernorm_backward_params",
        &[&u, x, dy, save_mean, save_invstd, dgamma, dbeta],
        grid_1d(ctx, d, PARAM_COLS),
    )
}

/// The whole backward: [layernorm_backward_input, layernorm_backward_params], two
/// dispatches to record in that order (see the module comment). Shapes as in those two.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    save_mean: &wgpu::Buffer,
    save_invstd: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    dgamma: &wgpu::Buffer,
    dbeta: &wgpu::Buffer,
    rows: usize,
    d: usize,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    check_distinct(
        "layernorm_backward",
        &[
            ("x", x),
            ("gamma", gamma),
            ("dy", dy),
            ("save_mean", save_mean),
            ("save_invstd", save_invstd),
            ("dx", dx),
            ("dgamma", dgamma),
            ("dbeta", dbeta),
        ],
    )?;
    Ok(vec![
        layernorm_backward_input(ctx, x, gamma, dy, save_mean, save_invstd, dx, rows, d)?,
        layernorm_backward_params(
            ctx,
            x,
            dy,
            save_mean,
            save_invstd,
            dgamma,
            dbeta,
            rows,
            d,
            accumulate,
        )?,
    ])
}
