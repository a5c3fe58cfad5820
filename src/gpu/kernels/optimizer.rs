//! Launcher of shaders/optimizer.wgsl: one element-wise optimizer step on one parameter
//! tensor, for every `OptimizerKind` (the shader switches on `OptimizerKind::code()`);
//! and of shaders/optimizer_multi.wgsl, the same step on up to `MULTI` tensors in one
//! dispatch (the executor groups a plan's optimizer ops with it where the device allows
//! its 40 storage buffers per stage).
//!
//! Two uniforms feed the kernel: `step` (an `ops::StepUniform`: lr, t and Adam's bias
//! corrections), owned and rewritten by the executor each step, and the run's fixed
//! hyper-parameters (`OptimizerHyper`), created here once at plan time. Where the optimizer
//! keeps fewer than two state tensors the launcher binds small dummy buffers in their place,
//! since every binding the shader declares must be bound, and one buffer may not be bound
//! twice in a dispatch.

use super::launch::{GROUPED, check_buffer, check_distinct, grid_1d, grouped_table};
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

/// Parameter tensors one `optimizer_update_multi` dispatch steps at most.
pub const MULTI: usize = GROUPED;

/// Storage buffers per tensor of a multi dispatch: param, grad, two state slots, update.
const MULTI_BUFFERS_PER_TENSOR: usize = 5;

/// One tensor of a multi dispatch: what `optimizer_update` takes for it.
#[derive(Clone, Copy)]
pub struct OptimizerTensor<'a> {
    pub param: &'a wgpu::Buffer,
    pub grad: &'a wgpu::Buffer,
    pub state1: Option<&'a wgpu::Buffer>,
    pub state2: Option<&'a wgpu::Buffer>,
    pub update: &'a wgpu::Buffer,
    pub len: usize,
}

/// How many tensors one multi dispatch may take on this device (0: the device has too few
/// storage buffers per stage, every tensor gets its own dispatch).
pub fn multi_capacity(ctx: &GpuContext) -> usize {
    if ctx.limits.max_storage_buffers_per_shader_stage as usize >= MULTI * MULTI_BUFFERS_PER_TENSOR
    {
        MULTI
    } else {
        0
    }
}

/// The checks every launcher makes of one tensor: sizes, the kind's state slots, the step
/// uniform. Returns the element count as u32.
fn check_tensor(
    op: &str,
    ctx: &GpuContext,
    p: &OptimizerParams,
    step: &wgpu::Buffer,
    t: &OptimizerTensor<'_>,
) -> Result<u32> {
    let len32 = u32::try_from(t.len)
        .map_err(|_| Error::shape(op, format!("{} elements exceed the u32 index range", t.len)))?;
    ctx.check_size(&format!("{op} param"), t.len as u64 * 4)?;
    let step_bytes = std::mem::size_of::<StepUniform>() as u64;
    if step.size() < step_bytes {
        return Err(Error::shape(
            op,
            format!(
                "step uniform holds {} bytes, needs {step_bytes}",
                step.size()
            ),
        ));
    }
    let need = |name: &str, b: &wgpu::Buffer| check_buffer(op, name, b, t.len);
    need("param", t.param)?;
    need("grad", t.grad)?;
    need("update", t.update)?;
    // State slots: the kind's own must be present and full-sized; the rest become dummies
    // (auto layout keeps every binding the shader declares, so each needs a buffer).
    let slots = p.kind.state_slots();
    for (slot, buf) in [t.state1, t.state2].into_iter().enumerate() {
        let name = format!("state{}", slot + 1);
        match buf {
            Some(b) => need(&name, b)?,
            None if slot < slots => {
                return Err(Error::shape(
                    op,
                    format!(
                        "{} keeps {slots} state tensor(s) but {name} is missing",
                        p.kind.name()
                    ),
                ));
            }
            None => {}
        }
    }
    Ok(len32)
}

fn hyper(p: &OptimizerParams, len: u32, row: u32) -> OptimizerHyper {
    OptimizerHyper {
        kind: p.kind.code(),
        len,
        row,
        momentum: p.momentum,
        beta1: p.beta1,
        beta2: p.beta2,
        eps: p.eps,
        weight_decay: p.weight_decay,
    }
}

/// The step of up to `MULTI` tensors in one dispatch, element for element what
/// `optimizer_update` computes for each. Slots without a tensor, and state slots the kind
/// does not keep, are bound to small dummy buffers (no buffer may be bound twice).
pub fn optimizer_update_multi(
    ctx: &GpuContext,
    p: &OptimizerParams,
    step: &wgpu::Buffer,
    tensors: &[OptimizerTensor<'_>],
) -> Result<Dispatch> {
    let op = format!("optimizer_update_multi ({})", p.kind.name());
    if multi_capacity(ctx) == 0 {
        return Err(Error::config(format!(
            "{op}: the device allows {} storage buffers per shader stage, {} needed",
            ctx.limits.max_storage_buffers_per_shader_stage,
            MULTI * MULTI_BUFFERS_PER_TENSOR
        )));
    }
    let lens = tensors
        .iter()
        .map(|t| check_tensor(&op, ctx, p, step, t))
        .collect::<Result<Vec<u32>>>()?;
    let (table, grid) = grouped_table(ctx, &op, &lens, WG)?;
    let hyper_buf = ctx.uniform("optimizer.hyper", &hyper(p, 0, 0))?;
    let params_buf = ctx.uniform("optimizer_update_multi.table", &table)?;
    // Every binding after the uniforms, in the shader's order: the tensor's buffer, or
    // None for an empty slot or a state slot the kind does not keep.
    let mut slots: Vec<Option<(String, &wgpu::Buffer)>> = Vec::new();
    for kind in ["param", "grad", "state1", "state2", "update"] {
        for j in 0..MULTI {
            let b = tensors.get(j).and_then(|t| match kind {
                "param" => Some(t.param),
                "grad" => Some(t.grad),
                "state1" => t.state1,
                "state2" => t.state2,
                _ => Some(t.update),
            });
            slots.push(b.map(|b| (format!("tensor {j} {kind}"), b)));
        }
    }
    // A 4-byte dummy for each None (no buffer may be bound twice as writable).
    let dummies: Vec<wgpu::Buffer> = (0..slots.iter().filter(|s| s.is_none()).count())
        .map(|_| ctx.storage_buffer("optimizer_multi.unused", 4))
        .collect::<Result<_>>()?;
    let mut dummy = dummies.iter();
    let mut bindings: Vec<&wgpu::Buffer> = vec![step, &hyper_buf, &params_buf];
    let mut named: Vec<(String, &wgpu::Buffer)> = Vec::new();
    for slot in slots {
        match slot {
            Some((name, b)) => {
                bindings.push(b);
                named.push((name, b));
            }
            None => bindings.push(dummy.next().expect("one dummy per empty slot")),
        }
    }
    let named: Vec<(&str, &wgpu::Buffer)> = named.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    check_distinct(&op, &named)?;
    ctx.dispatch("optimizer_multi", "optimizer_update_multi", &bindings, grid)
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
    let tensor = OptimizerTensor {
        param,
        grad,
        state1,
        state2,
        update,
        len,
    };
    let len32 = check_tensor(&op, ctx, p, step, &tensor)?;
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
    let hyper_buf = ctx.uniform("optimizer.hyper", &hyper(p, len32, gx * WG))?;
    ctx.dispatch(
        "optimizer",
        "optimizer_update",
        &[
            step, &hyper_buf, param, grad, state1_buf, state2_buf, update,
        ],
        [gx, gy, 1],
    )
}
