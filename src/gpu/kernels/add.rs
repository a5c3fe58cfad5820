//! Launcher of shaders/add.wgsl: y = a + b for shortcut connections, and dst += src to sum
//! the gradients of a tensor with several consumers (add's own backward is a
//! pass-through and needs no kernel).

use super::launch::{check_buffer, check_count, check_distinct, grid_1d};
use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::ops::Activation;

/// Workgroup size of add.wgsl (its `WG` constant).
pub const WG: u32 = 256;

/// The WGSL struct `Shape` of add.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    len: u32,
    act_code: u32,
    act_param: f32,
    _pad: u32,
}

impl Shape {
    fn new(len: u32) -> Shape {
        Shape {
            len,
            act_code: 0,
            act_param: 0.0,
            _pad: 0,
        }
    }
}

/// y(len) = a(len) + b(len): one invocation per element. With `act` = (f, z), also
/// z = f(y) (the activation after the Add, one dispatch fewer).
pub fn add_forward(
    ctx: &GpuContext,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: usize,
    act: Option<(Activation, &wgpu::Buffer)>,
) -> Result<Dispatch> {
    const OP: &str = "add_forward";
    let len32 = check_count(OP, "len", len)?;
    check_buffer(OP, "a", a, len)?;
    check_buffer(OP, "b", b, len)?;
    check_buffer(OP, "y", y, len)?;
    // a and b may be one buffer (both read-only); y (and z) must differ from each.
    check_distinct(OP, &[("a", a), ("y", y)])?;
    check_distinct(OP, &[("b", b), ("y", y)])?;
    let mut shape = Shape::new(len32);
    let Some((f, z)) = act else {
        let u = ctx.uniform("add_forward.shape", &shape)?;
        return ctx.dispatch("add", "add_forward", &[&u, a, b, y], grid_1d(ctx, len, WG));
    };
    check_buffer(OP, "z (the fused activation's output)", z, len)?;
    check_distinct(OP, &[("a", a), ("y", y), ("z", z)])?;
    check_distinct(OP, &[("b", b), ("z", z)])?;
    shape.act_code = f.code();
    shape.act_param = f.param();
    let u = ctx.uniform("add_forward.shape", &shape)?;
    ctx.dispatch(
        "add",
        "add_forward_act",
        &[&u, a, b, y, z],
        grid_1d(ctx, len, WG),
    )
}

/// dst(len) += src(len): one invocation per element.
pub fn accumulate_grad(
    ctx: &GpuContext,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    len: usize,
) -> Result<Dispatch> {
    const OP: &str = "accumulate_grad";
    let len32 = check_count(OP, "len", len)?;
    check_buffer(OP, "src", src, len)?;
    check_buffer(OP, "dst", dst, len)?;
    check_distinct(OP, &[("src", src), ("dst", dst)])?;
    let u = ctx.uniform("accumulate_grad.shape", &Shape::new(len32))?;
    ctx.dispatch(
        "add",
        "accumulate_grad",
        &[&u, src, dst],
        grid_1d(ctx, len, WG),
    )
}

/// dst(len) = src: one invocation per element.
pub fn copy_tensor(
    ctx: &GpuContext,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    len: usize,
) -> Result<Dispatch> {
    const OP: &str = "copy_tensor";
    let len32 = check_count(OP, "len", len)?;
    check_buffer(OP, "src", src, len)?;
    check_buffer(OP, "dst", dst, len)?;
    check_distinct(OP, &[("src", src), ("dst", dst)])?;
    let u = ctx.uniform("copy_tensor.shape", &Shape::new(len32))?;
    ctx.dispatch("add", "copy_tensor", &[&u, src, dst], grid_1d(ctx, len, WG))
}
