//! Launcher of shaders/activation.wgsl: element-wise activation forward and backward, one
//! invocation per element, the activation chosen at run time by `Activation::code()`.

use super::launch::{check_buffer, check_count, check_distinct, grid_1d};
use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::ops::Activation;

/// Workgroup size of activation.wgsl (its `WG` constant).
pub const WG: u32 = 256;

/// The WGSL struct `Params` of activation.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    code: u32,
    param: f32,
    _pad: u32,
}

fn params(op: &str, act: Activation, len: usize) -> Result<Params> {
    Ok(Params {
        len: check_count(op, "len", len)?,
        code: act.code(),
        param: act.param(),
        _pad: 0,
    })
}

/// y(len) = f(x(len)): one invocation per element.
pub fn activation_forward(
    ctx: &GpuContext,
    act: Activation,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: usize,
) -> Result<Dispatch> {
    const OP: &str = "activation_forward";
    let p = params(OP, act, len)?;
    check_buffer(OP, "x", x, len)?;
    check_buffer(OP, "y", y, len)?;
    check_distinct(OP, &[("x", x), ("y", y)])?;
    let u = ctx.uniform("activation_forward.params", &p)?;
    ctx.dispatch(
        "activation",
        "activation_forward",
        &[&u, x, y],
        grid_1d(ctx, len, WG),
    )
}

/// dx(len) = dy(len) ⊙ f'(x): one invocation per element, reading the pre-activation x
/// and the output y = f(x) (whichever the derivative is cheaper or more exact from).
/// Overwrites dx (an activation gradient).
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
    const OP: &str = "activation_backward";
    let p = params(OP, act, len)?;
    for (name, b) in [("x", x), ("y", y), ("dy", dy), ("dx", dx)] {
        check_buffer(OP, name, b, len)?;
    }
    check_distinct(OP, &[("x", x), ("y", y), ("dy", dy), ("dx", dx)])?;
    let u = ctx.uniform("activation_backward.params", &p)?;
    ctx.dispatch(
        "activation",
        "activation_backward",
        &[&u, x, y, dy, dx],
        grid_1d(ctx, len, WG),
    )
}
