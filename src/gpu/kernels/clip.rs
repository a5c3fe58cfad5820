//! Launchers of shaders/clip.wgsl: gradient clipping by global norm (from the gradient
//! statistics records, so no norm is recomputed) and by value, and the gate that turns the
//! optimizer's dispatches off on a step whose gradients are non-finite under `skip`.
//!
//! The clip op's state is four f32 (`STATE_WORDS`): the global norm before clipping, the
//! scale applied, 1.0 when the step was skipped, and the norm after clipping. The executor
//! copies them into the step's readback slot.

use super::launch::{GROUPED, GroupedTable, grouped_table};
use crate::error::{Error, Result};
use crate::gpu::buffer::STORAGE;
use crate::gpu::{Dispatch, GpuContext};
use crate::plan::Guard;
use crate::stats::RECORD_WORDS;

/// Invocations per workgroup of the element-wise entries (`WG` in clip.wgsl).
const WG: u32 = 256;
/// Words of the clip state: [norm, scale, skipped, norm after].
pub const STATE_WORDS: usize = 4;

/// WGSL `NormParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    max_norm: f32,
    guard: u32,
    jobs: u32,
    _pad: u32,
}

/// WGSL `GateParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct GateParams {
    words: u32,
    _pad: [u32; 3],
}

/// WGSL `ElemParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct ElemParams {
    len: u32,
    row: u32,
    value: f32,
    _pad: u32,
}

/// The clip state buffer (read back every step, hence COPY_SRC as every tensor).
pub fn state_buffer(ctx: &GpuContext) -> Result<wgpu::Buffer> {
    ctx.storage_buffer("clip.state", (STATE_WORDS * 4) as u64)
}

/// A buffer of `words` u32 usable both as storage (written by `clip_gate`) and as the
/// arguments of indirect dispatches (3 words per dispatch).
pub fn indirect_args_buffer(ctx: &GpuContext, words: usize) -> Result<wgpu::Buffer> {
    let bytes = (words.max(3) * 4) as u64;
    ctx.check_size("clip.indirect_args", bytes)?;
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("clip.indirect_args"),
        size: bytes,
        usage: STORAGE | wgpu::BufferUsages::INDIRECT,
        mapped_at_creation: false,
    });
    ctx.check("allocating clip.indirect_args")?;
    Ok(buffer)
}

/// records holds `RECORD_WORDS`-word statistics records; `grad_records` names the records of
/// every parameter gradient, merged in that order. One invocation writes `state`
/// ([norm, scale, skipped, norm after]); `max_norm` = +inf computes the norm and the
/// non-finite guard without clipping. Under `Guard::Halt` the skipped flag already in
/// `state` (the previous step's) is kept.
pub fn clip_norm_scale(
    ctx: &GpuContext,
    records: &wgpu::Buffer,
    grad_records: &[u32],
    state: &wgpu::Buffer,
    max_norm: f32,
    guard: Guard,
) -> Result<Dispatch> {
    let op = "clip_norm_scale";
    if grad_records.is_empty() {
        return Err(Error::shape(op, "no gradient records to take the norm of"));
    }
    if max_norm.is_nan() || max_norm <= 0.0 {
        return Err(Error::config(format!(
            "clip norm must be a positive number, got {max_norm}"
        )));
    }
    let need = (*grad_records.iter().max().unwrap_or(&0) as u64 + 1) * RECORD_WORDS as u64 * 4;
    if records.size() < need {
        return Err(Error::shape(
            op,
            format!(
                "records buffer holds {} bytes, record {} needs {need}",
                records.size(),
                grad_records.iter().max().unwrap_or(&0)
            ),
        ));
    }
    if state.size() < (STATE_WORDS * 4) as u64 {
        return Err(Error::shape(op, "state buffer holds fewer than 4 f32"));
    }
    let params = ctx.uniform(
        "clip.norm.params",
        &NormParams {
            max_norm,
            guard: guard.code(),
            jobs: grad_records.len() as u32,
            _pad: 0,
        },
    )?;
    let table = ctx.upload("clip.grad_records", grad_records)?;
    ctx.dispatch(
        "clip",
        "clip_norm_scale",
        &[&params, records, &table, state],
        [1, 1, 1],
    )
}

/// base_args and args are [words] u32 (3 per optimizer dispatch): one invocation per word
/// copies base_args into args, or writes 0 when `state` says the step is skipped.
pub fn clip_gate(
    ctx: &GpuContext,
    state: &wgpu::Buffer,
    base_args: &[u32],
    args: &wgpu::Buffer,
) -> Result<Dispatch> {
    let op = "clip_gate";
    let words = base_args.len();
    if words == 0 || !words.is_multiple_of(3) || args.size() < (words * 4) as u64 {
        return Err(Error::shape(
            op,
            format!(
                "{words} argument words (need a positive multiple of 3) into a buffer of {} bytes",
                args.size()
            ),
        ));
    }
    let params = ctx.uniform(
        "clip.gate.params",
        &GateParams {
            words: words as u32,
            _pad: [0; 3],
        },
    )?;
    let base = ctx.upload("clip.base_args", base_args)?;
    ctx.dispatch(
        "clip",
        "clip_gate",
        &[&params, state, &base, args],
        [(words as u32).div_ceil(64), 1, 1],
    )
}

/// The 2-D grid of an element-wise entry over `len` elements: (x, y, invocations per row).
fn grid(ctx: &GpuContext, op: &str, len: usize) -> Result<(u32, u32, u32)> {
    let len32 = u32::try_from(len)
        .map_err(|_| Error::shape(op, format!("{len} elements exceed the u32 index range")))?;
    let groups = len32.div_ceil(WG);
    let max = ctx.limits.max_compute_workgroups_per_dimension;
    let gx = groups.clamp(1, max);
    Ok((gx, groups.div_ceil(gx), gx * WG))
}

/// grad is [len] f32; one invocation multiplies one element by the state's scale.
pub fn clip_scale(
    ctx: &GpuContext,
    state: &wgpu::Buffer,
    grad: &wgpu::Buffer,
    len: usize,
) -> Result<Dispatch> {
    let op = "clip_scale";
    if grad.size() < len as u64 * 4 {
        return Err(Error::shape(
            op,
            format!("grad buffer holds {} bytes, needs {len} f32", grad.size()),
        ));
    }
    if state == grad {
        return Err(Error::shape(op, "state and grad must be distinct buffers"));
    }
    let (gx, gy, row) = grid(ctx, op, len)?;
    let params = ctx.uniform(
        "clip.scale.params",
        &ElemParams {
            len: len as u32,
            row,
            value: 0.0,
            _pad: 0,
        },
    )?;
    ctx.dispatch("clip", "clip_scale", &[&params, state, grad], [gx, gy, 1])
}

/// grad is [len] f32; one invocation clamps one element to [−value, value] (NaN kept).
pub fn clip_value(
    ctx: &GpuContext,
    grad: &wgpu::Buffer,
    len: usize,
    value: f32,
) -> Result<Dispatch> {
    let op = "clip_value";
    if value.is_nan() || value <= 0.0 {
        return Err(Error::config(format!(
            "clip value must be a positive number, got {value}"
        )));
    }
    if grad.size() < len as u64 * 4 {
        return Err(Error::shape(
            op,
            format!("grad buffer holds {} bytes, needs {len} f32", grad.size()),
        ));
    }
    let (gx, gy, row) = grid(ctx, op, len)?;
    let params = ctx.uniform(
        "clip.value.params",
        &ElemParams {
            len: len as u32,
            row,
            value,
            _pad: 0,
        },
    )?;
    ctx.dispatch("clip", "clip_value", &[&params, grad], [gx, gy, 1])
}

/// Gradients one `clip_multi` dispatch takes at most.
pub const MULTI: usize = GROUPED;

/// How many gradients one multi dispatch may take on this device (0: too few storage
/// buffers per stage; every gradient gets its own dispatch).
pub fn multi_capacity(ctx: &GpuContext) -> usize {
    if ctx.limits.max_storage_buffers_per_shader_stage as usize > MULTI {
        MULTI
    } else {
        0
    }
}

/// What `clip_multi` does to each gradient.
#[derive(Clone, Copy, Debug)]
pub enum ClipMode<'a> {
    /// `clip_scale`: multiply by the clip state's scale.
    Scale { state: &'a wgpu::Buffer },
    /// `clip_value`: clamp to [−value, value].
    Value(f32),
}

/// The WGSL `MultiParams` of clip_multi: the job table, then the mode.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct MultiParams {
    table: GroupedTable,
    mode: u32,
    value: f32,
    _pad: [u32; 2],
}

/// `clip_scale` or `clip_value` on up to `MULTI` gradients (buffer, length) in one
/// dispatch, element for element the same arithmetic.
pub fn clip_multi(
    ctx: &GpuContext,
    mode: ClipMode<'_>,
    grads: &[(&wgpu::Buffer, usize)],
) -> Result<Dispatch> {
    let op = "clip_multi";
    if multi_capacity(ctx) == 0 {
        return Err(Error::config(format!(
            "{op}: the device allows {} storage buffers per shader stage, {} needed",
            ctx.limits.max_storage_buffers_per_shader_stage,
            MULTI + 1
        )));
    }
    let (mode_code, value) = match mode {
        ClipMode::Scale { .. } => (0, 0.0),
        ClipMode::Value(v) if v.is_nan() || v <= 0.0 => {
            return Err(Error::config(format!(
                "clip value must be a positive number, got {v}"
            )));
        }
        ClipMode::Value(v) => (1, v),
    };
    let mut lens = Vec::with_capacity(grads.len());
    for &(g, len) in grads {
        if g.size() < len as u64 * 4 {
            return Err(Error::shape(
                op,
                format!("grad buffer holds {} bytes, needs {len} f32", g.size()),
            ));
        }
        lens.push(
            u32::try_from(len).map_err(|_| {
                Error::shape(op, format!("{len} elements exceed the u32 index range"))
            })?,
        );
    }
    let (table, grid) = grouped_table(ctx, op, &lens, WG)?;
    let params = ctx.uniform(
        "clip.multi.params",
        &MultiParams {
            table,
            mode: mode_code,
            value,
            _pad: [0; 2],
        },
    )?;
    let dummy_state;
    let state = match mode {
        ClipMode::Scale { state } => state,
        ClipMode::Value(_) => {
            dummy_state = ctx.storage_buffer("clip.multi.unused_state", 16)?;
            &dummy_state
        }
    };
    // Slots without a gradient: small dummies (no buffer may be bound twice as writable).
    let dummies: Vec<wgpu::Buffer> = (grads.len()..MULTI)
        .map(|_| ctx.storage_buffer("clip.multi.unused", 4))
        .collect::<Result<_>>()?;
    let mut bindings: Vec<&wgpu::Buffer> = vec![&params, state];
    bindings.extend(grads.iter().map(|(g, _)| *g));
    bindings.extend(dummies.iter());
    for (i, a) in bindings[1..].iter().enumerate() {
        if bindings[i + 2..].contains(a) {
            return Err(Error::shape(
                op,
                "a gradient is bound twice (or is the clip state); this kernel does not alias",
            ));
        }
    }
    ctx.dispatch("clip", "clip_multi", &bindings, grid)
}
