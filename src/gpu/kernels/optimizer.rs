//! Launcher of shaders/optimizer.wgsl. (Stub: the kernel-family owner fills this in.)
//! `step` is a uniform buffer holding an ops::StepUniform, rewritten by the executor each
//! step; `state1`/`state2` are None where the optimizer keeps fewer state slots.

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::ops::OptimizerParams;

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
    let _ = (ctx, p, step, param, grad, state1, state2, update, len);
    unimplemented!()
}
