//! Launcher of shaders/dropout.wgsl: inverted dropout whose mask is a counter-based hash of
//! (seed, step, element index), identical to the CPU twin's, recomputed by the backward
//! pass (no mask buffer).
//!
//! Two uniforms feed the kernel: the op's fixed parameters (seed, threshold, scale, length),
//! created here at plan time, and `step`, a `DropoutStep` owned by the executor and
//! rewritten before each step (as the optimizer's `StepUniform` is), so the mask changes
//! from step to step without rebuilding any bind group.

use super::launch::{check_buffer, check_count, check_distinct, grid_1d};
use crate::cpu::dropout::{keep_scale, keep_threshold, validate_p};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext};

/// Workgroup size of dropout.wgsl (its `WG` constant).
pub const WG: u32 = 256;

/// The per-step uniform of dropout.wgsl (WGSL struct `Step`): the step index that, with
/// the seed, selects the mask. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropoutStep {
    pub step: u32,
    pub _pad: [u32; 3],
}

impl DropoutStep {
    pub fn new(step: u32) -> Self {
        DropoutStep { step, _pad: [0; 3] }
    }
}

/// The WGSL struct `Params` of dropout.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    seed: u32,
    threshold: u32,
    scale: f32,
    len: u32,
}

#[allow(clippy::too_many_arguments)]
fn launch(
    ctx: &GpuContext,
    op: &'static str,
    names: [&str; 2],
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
    len: usize,
    p: f32,
    seed: u32,
    step: &wgpu::Buffer,
) -> Result<Dispatch> {
    validate_p(op, p).map_err(|e| Error::shape(op, e.to_string()))?;
    let len32 = check_count(op, "len", len)?;
    check_buffer(op, names[0], input, len)?;
    check_buffer(op, names[1], output, len)?;
    check_distinct(op, &[(names[0], input), (names[1], output)])?;
    let step_bytes = std::mem::size_of::<DropoutStep>() as u64;
    if step.size() < step_bytes {
        return Err(Error::shape(
            op,
            format!(
                "step uniform holds {} bytes, needs {step_bytes}",
                step.size()
            ),
        ));
    }
    let params = Params {
        seed,
        threshold: keep_threshold(p),
        scale: keep_scale(p) as f32,
        len: len32,
    };
    let u = ctx.uniform(&format!("{op}.params"), &params)?;
    ctx.dispatch(
        "dropout",
        op,
        &[&u, step, input, output],
        grid_1d(ctx, len, WG),
    )
}

/// y(len) = x·m/(1 − p), m_i = [dropout_hash(seed, step, i) ≥ ⌊p·2³²⌋], the step read from
/// the `step` uniform (a `DropoutStep`) when the dispatch runs. One invocation per element.
pub fn dropout_forward(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: usize,
    p: f32,
    seed: u32,
    step: &wgpu::Buffer,
) -> Result<Dispatch> {
    launch(ctx, "dropout_forward", ["x", "y"], x, y, len, p, seed, step)
}

/// dx(len) = dy·m/(1 − p) with the forward's mask recomputed (same seed and step);
/// overwrites dx. One invocation per element.
pub fn dropout_backward(
    ctx: &GpuContext,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    len: usize,
    p: f32,
    seed: u32,
    step: &wgpu::Buffer,
) -> Result<Dispatch> {
    launch(
        ctx,
        "dropout_backward",
        ["dy", "dx"],
        dy,
        dx,
        len,
        p,
        seed,
        step,
    )
}
