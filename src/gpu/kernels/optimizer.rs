//! Launcher of shaders/optimizer.wgsl: one element-wise optimizer step on one parameter
//! tensor, for every `OptimizerKind` (the shader switches on `OptimizerKind::code()`).
//!
//! Two uniforms feed the kernel: `step` (an `ops::StepUniform`: lr, t and Adam's bias
//! corrections), owned and rewritten by the executor each step, and the run's fixed
//! hyper-parameters (`OptimizerHyper`), created here once at plan time. Where the optimizer
//! keeps fewer than two state tensors the launcher binds small dummy buffers in their place,
//! since every binding the shader declares must be bound, and one buffer may not be bound
//! twice in a dispatch.

use super::launch::{check_buffer, check_distinct, grid_1d};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext};
use crate::ops::{OptimizerParams, StepUniform};

/// Invocations per workgroup (`WG` in optimizer.wgsl).
const WG: u32 = 256;

/// The fixed hyper-parameters (WGSL struct `Hyper` in optimizer.wgsl), 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OptimizerHyper {
    pub kind: u32,
    pub len: u32,
    /// Invocations per row of the 2-D grid: workgroups in x · WG.
    pub row: u32,
    pub momentum: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// param, grad, update (and state1/state2 where the kind keeps them) are [len] f32 buffers;
/// one invocation updates one element, on a 2-D grid of 256-wide workgroups so that tensors
/// past 65535·256 elements still fit the per-dimension workgroup limit.
#[allow(clippy::too_many_arguments)]
pub fn optimizer_update(
    ctx: &GpuContext,
    p: &OptimizerParams,
    step: &wgpu::Buffer,
    param: &wgpu::Buffer,
    grad: &wgpu::Buffer,
    state1: Option<&wgpu::Buffer>,
    state2: Option<&wgpu::Buffer>,
    update: &wgpu::Buffer,
    len: usize,
) -> Result<Dispatch> {
    let op = format!("optimizer_update ({})", p.kind.name());
    let len32 = u32::try_from(len)
        .map_err(|_| Error::shape(&op, format!("{len} elements exceed the u32 index range")))?;
    let bytes = len as u64 * 4;
    ctx.check_size(&format!("{op} param"), bytes)?;

    let step_bytes = std::mem::size_of::<StepUniform>() as u64;
    if step.size() < step_bytes {
        return Err(Error::shape(
            &op,
            format!(
                "step uniform holds {} bytes, needs {step_bytes}",
                step.size()
            ),
        ));
    }
    let need = |name: &str, b: &wgpu::Buffer| check_buffer(&op, name, b, len);
    need("param", param)?;
    need("grad", grad)?;
    need("update", update)?;

    // State slots: the kind's own must be present and full-sized; the rest become dummies
    // (auto layout keeps every binding the shader declares, so each needs a buffer).
    let slots = p.kind.state_slots();
    for (slot, buf) in [state1, state2].into_iter().enumerate() {
        let name = format!("state{}", slot + 1);
        match buf {
            Some(b) => need(&name, b)?,
            None if slot < slots => {
                return Err(Error::shape(
                    &op,
                    format!(
                        "{} keeps {slots} state tensor(s) but {name} is missing",
                        p.kind.name()
                    ),
                ));
            }
            None => {}
        }
    }
    let dummy1;
    let state1_buf = match state1 {
        Some(b) => b,
        None => {
            dummy1 = ctx.storage_buffer("optimizer.state1.unused", 4)?;
            &dummy1
        }
    };
    let dummy2;
    let state2_buf = match state2 {
        Some(b) => b,
        None => {
            dummy2 = ctx.storage_buffer("optimizer.state2.unused", 4)?;
            &dummy2
        }
    };

    check_distinct(
        &op,
        &[
            ("step", step),
            ("param", param),
            ("grad", grad),
            ("state1", state1_buf),
            ("state2", state2_buf),
            ("update", update),
        ],
    )?;

    let [gx, gy, _] = grid_1d(ctx, len.max(1), WG);
    let hyper = OptimizerHyper {
        kind: p.kind.code(),
        len: len32,
        row: gx * WG,
        momentum: p.momentum,
        beta1: p.beta1,
        beta2: p.beta2,
        eps: p.eps,
        weight_decay: p.weight_decay,
    };
    let hyper_buf = ctx.uniform("optimizer.hyper", &hyper)?;
    ctx.dispatch(
        "optimizer",
        "optimizer_update",
        &[
            step, &hyper_buf, param, grad, state1_buf, state2_buf, update,
        ],
        [gx, gy, 1],
    )
}
