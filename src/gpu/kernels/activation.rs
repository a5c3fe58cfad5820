//! Launcher of shaders/activation.wgsl: element-wise activation forward and backward, one
//! invocation per element, the activation chosen at run time by `Activation::code()`.
//!
//! Also home of the small helpers that every element-wise launcher of this family uses
//! (bias and loss too): the 2-D grid that keeps 1-D kernels under the 65535-workgroups-per-
//! dimension limit, and the buffer-size and aliasing checks.

use crate::error::{Error, Result};
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

/// The grid for a 1-D kernel of `invocations` threads in workgroups of `wg`: one row of
/// workgroups while it fits the device's per-dimension limit, else a 2-D grid of
/// `max × ⌈groups / max⌉` whose flat index the shader recomputes as
/// `gid.y · (num_workgroups.x · wg) + gid.x` (and bounds-checks, as the last row is partial).
pub fn grid_1d(ctx: &GpuContext, invocations: usize, wg: u32) -> [u32; 3] {
    let groups = invocations.div_ceil(wg as usize);
    let max = ctx.limits.max_compute_workgroups_per_dimension.max(1) as usize;
    if groups <= max {
        [groups as u32, 1, 1]
    } else {
        // A y extent past the limit is refused by `ctx.dispatch` with a TooLarge error.
        let gy = groups.div_ceil(max);
        [max as u32, gy.min(u32::MAX as usize) as u32, 1]
    }
}

/// Refuses element counts whose indices would not fit the shaders' u32 arithmetic (the
/// padded grid may run up to one row of workgroups past `len`, hence the headroom).
pub(crate) fn check_count(op: &str, what: &str, count: usize) -> Result<u32> {
    if count > (i32::MAX as usize) {
        return Err(Error::shape(
            op,
            format!("{what} = {count} exceeds the 2^31 − 1 elements a kernel can index"),
        ));
    }
    Ok(count as u32)
}

/// Checks that `buffer` holds at least `elems` 4-byte elements.
pub(crate) fn check_buffer(
    op: &str,
    name: &str,
    buffer: &wgpu::Buffer,
    elems: usize,
) -> Result<()> {
    let need = elems as u64 * 4;
    if buffer.size() < need {
        return Err(Error::shape(
            op,
            format!(
                "buffer `{name}` holds {} bytes but the shape needs {elems} elements ({need} bytes)",
                buffer.size()
            ),
        ));
    }
    Ok(())
}

/// Refuses a buffer bound twice in one dispatch: wgpu forbids one bound read-write and
/// read-only together, and the kernels are not written for in-place use.
pub(crate) fn check_distinct(op: &str, buffers: &[(&str, &wgpu::Buffer)]) -> Result<()> {
    for (i, (a, ba)) in buffers.iter().enumerate() {
        for (b, bb) in &buffers[i + 1..] {
            if ba == bb {
                return Err(Error::shape(
                    op,
                    format!(
                        "`{a}` and `{b}` are the same buffer; this kernel does not run in place"
                    ),
                ));
            }
        }
    }
    Ok(())
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
