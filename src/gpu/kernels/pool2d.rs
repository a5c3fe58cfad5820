//! Launcher of shaders/pool2d.wgsl: max pooling (saving the arg-max), average pooling
//! (count_include_pad = True) and global average pooling on NCHW tensors, forward and
//! backward. The backward passes gather per input element in a fixed order, so they are
//! deterministic without atomics; dx is an activation gradient and is overwritten.

use super::launch::{check_buffer, check_count, check_distinct, grid_1d};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext};
use crate::ops::Pool2dShape;

/// Workgroup size of pool2d.wgsl (its `WG` constant).
pub const WG: u32 = 256;

/// The WGSL struct `Shape` of pool2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    oh: u32,
    ow: u32,
}

/// Validates the geometry (as an op error) and the index range, and builds the uniform.
fn shape(op: &str, s: &Pool2dShape) -> Result<Shape> {
    s.validate(op)
        .map_err(|e| Error::shape(op, e.to_string()))?;
    check_count(op, "n·c·h·w", s.input_len())?;
    check_count(op, "n·c·out_h·out_w", s.output_len())?;
    check_count(op, "kh·kw", s.kh.saturating_mul(s.kw))?;
    let (oh, ow) = s.out_hw();
    Ok(Shape {
        n: s.n as u32,
        c: s.c as u32,
        h: s.h as u32,
        w: s.w as u32,
        kh: s.kh as u32,
        kw: s.kw as u32,
        sh: s.stride[0] as u32,
        sw: s.stride[1] as u32,
        ph: s.pad[0] as u32,
        pw: s.pad[1] as u32,
        oh: oh as u32,
        ow: ow as u32,
    })
}

/// y [n,c,oh,ow] = max over each window of x [n,c,h,w]; argmax [n,c,oh,ow] (u32) = the
/// in-plane index iy·w + ix of the first maximum in scan order. One invocation per output.
pub fn max_pool2d_forward(
    ctx: &GpuContext,
    s: &Pool2dShape,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    argmax: &wgpu::Buffer,
) -> Result<Dispatch> {
    const OP: &str = "max_pool2d_forward";
    let u = shape(OP, s)?;
    check_buffer(OP, "x", x, s.input_len())?;
    check_buffer(OP, "y", y, s.output_len())?;
    check_buffer(OP, "argmax", argmax, s.output_len())?;
    check_distinct(OP, &[("x", x), ("y", y), ("argmax", argmax)])?;
    let ub = ctx.uniform("max_pool2d_forward.shape", &u)?;
    ctx.dispatch(
        "pool2d",
        "max_pool2d_forward",
        &[&ub, x, y, argmax],
        grid_1d(ctx, s.output_len(), WG),
    )
}

/// dx [n,c,h,w] = Σ dy over the outputs whose window covers the element and whose saved
/// arg-max is it (overwrites dx). One invocation per input element.
pub fn max_pool2d_backward(
    ctx: &GpuContext,
    s: &Pool2dShape,
    dy: &wgpu::Buffer,
    argmax: &wgpu::Buffer,
    dx: &wgpu::Buffer,
) -> Result<Dispatch> {
    const OP: &str = "max_pool2d_backward";
    let u = shape(OP, s)?;
    check_buffer(OP, "dy", dy, s.output_len())?;
    check_buffer(OP, "argmax", argmax, s.output_len())?;
    check_buffer(OP, "dx", dx, s.input_len())?;
    check_distinct(OP, &[("dy", dy), ("argmax", argmax), ("dx", dx)])?;
    let ub = ctx.uniform("max_pool2d_backward.shape", &u)?;
    ctx.dispatch(
        "pool2d",
        "max_pool2d_backward",
        &[&ub, dy, argmax, dx],
        grid_1d(ctx, s.input_len(), WG),
    )
}

/// y [n,c,oh,ow] = (Σ of each window's real elements of x) / (kh·kw). One invocation per
/// output.
pub fn avg_pool2d_forward(
    ctx: &GpuContext,
    s: &Pool2dShape,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Dispatch> {
    const OP: &str = "avg_pool2d_forward";
    let u = shape(OP, s)?;
    check_buffer(OP, "x", x, s.input_len())?;
    check_buffer(OP, "y", y, s.output_len())?;
    check_distinct(OP, &[("x", x), ("y", y)])?;
    let ub = ctx.uniform("avg_pool2d_forward.shape", &u)?;
    ctx.dispatch(
        "pool2d",
        "avg_pool2d_forward",
        &[&ub, x, y],
        grid_1d(ctx, s.output_len(), WG),
    )
}

/// dx [n,c,h,w] = (Σ dy over the covering outputs) / (kh·kw) (overwrites dx). One
/// invocation per input element.
pub fn avg_pool2d_backward(
    ctx: &GpuContext,
    s: &Pool2dShape,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
) -> Result<Dispatch> {
    const OP: &str = "avg_pool2d_backward";
    let u = shape(OP, s)?;
    check_buffer(OP, "dy", dy, s.output_len())?;
    check_buffer(OP, "dx", dx, s.input_len())?;
    check_distinct(OP, &[("dy", dy), ("dx", dx)])?;
    let ub = ctx.uniform("avg_pool2d_backward.shape", &u)?;
    ctx.dispatch(
        "pool2d",
        "avg_pool2d_backward",
        &[&ub, dy, dx],
        grid_1d(ctx, s.input_len(), WG),
    )
}

/// The uniform of the global pools: a window covering the whole plane.
fn global_shape(op: &str, n: usize, c: usize, h: usize, w: usize) -> Result<Shape> {
    if n == 0 || c == 0 || h == 0 || w == 0 {
        return Err(Error::shape(
            op,
            format!("input [{n}, {c}, {h}, {w}] is empty"),
        ));
    }
    let s = Pool2dShape {
        n,
        c,
        h,
        w,
        kh: h,
        kw: w,
        stride: [1, 1],
        pad: [0, 0],
    };
    shape(op, &s)
}

/// y [n,c] = mean over h·w of x [n,c,h,w]. One invocation per (n, c) plane.
pub fn global_avg_pool_forward(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
) -> Result<Dispatch> {
    const OP: &str = "global_avg_pool_forward";
    let u = global_shape(OP, n, c, h, w)?;
    check_buffer(OP, "x", x, n * c * h * w)?;
    check_buffer(OP, "y", y, n * c)?;
    check_distinct(OP, &[("x", x), ("y", y)])?;
    let ub = ctx.uniform("global_avg_pool_forward.shape", &u)?;
    ctx.dispatch(
        "pool2d",
        "global_avg_pool_forward",
        &[&ub, x, y],
        grid_1d(ctx, n * c, WG),
    )
}

/// dx [n,c,h,w] = dy [n,c] / (h·w), broadcast over the plane (overwrites dx). One
/// invocation per input element.
pub fn global_avg_pool_backward(
    ctx: &GpuContext,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
) -> Result<Dispatch> {
    const OP: &str = "global_avg_pool_backward";
    let u = global_shape(OP, n, c, h, w)?;
    check_buffer(OP, "dy", dy, n * c)?;
    check_buffer(OP, "dx", dx, n * c * h * w)?;
    check_distinct(OP, &[("dy", dy), ("dx", dx)])?;
    let ub = ctx.uniform("global_avg_pool_backward.shape", &u)?;
    ctx.dispatch(
        "pool2d",
        "global_avg_pool_backward",
        &[&ub, dy, dx],
        grid_1d(ctx, n * c * h * w, WG),
    )
}
