//! Launcher of shaders/embedding.wgsl: the lookup of B·T token ids in a `[V, E]` table and
//! its deterministic scatter-add gradient. CPU twin: `cpu::embedding`.

use super::launch::{check_buffer, check_count, check_distinct, grid_1d};
use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};

/// Workgroup size of embedding.wgsl (its `WG` constant).
pub const WG: u32 = 256;

/// The WGSL struct `EmbShape`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct EmbShape {
    rows: u32,
    vocab: u32,
    dim: u32,
    accumulate: u32,
}

fn shape(op: &str, rows: usize, vocab: usize, dim: usize, accumulate: bool) -> Result<EmbShape> {
    check_count(op, "rows·dim", rows.saturating_mul(dim))?;
    check_count(op, "vocab·dim", vocab.saturating_mul(dim))?;
    Ok(EmbShape {
        rows: rows as u32,
        vocab: vocab as u32,
        dim: dim as u32,
        accumulate: accumulate as u32,
    })
}

/// y[r, :] = weight[ids[r], :]: one invocation per element of y [rows, dim].
pub fn embedding_forward(
    ctx: &GpuContext,
    ids: &wgpu::Buffer,
    weight: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: usize,
    vocab: usize,
    dim: usize,
) -> Result<Dispatch> {
    const OP: &str = "embedding_forward";
    let s = shape(OP, rows, vocab, dim, false)?;
    check_buffer(OP, "ids", ids, rows)?;
    check_buffer(OP, "weight", weight, vocab * dim)?;
    check_buffer(OP, "y", y, rows * dim)?;
    check_distinct(OP, &[("ids", ids), ("weight", weight), ("y", y)])?;
    let u = ctx.uniform("embedding_forward.shape", &s)?;
    ctx.dispatch(
        "embedding",
        "embedding_forward",
        &[&u, ids, weight, y],
        grid_1d(ctx, rows * dim, WG),
    )
}

/// dW[v, :] (+)= Σ_{r : ids[r] = v} dy[r, :]: one invocation per element of dW [vocab, dim].
#[allow(clippy::too_many_arguments)]
pub fn embedding_backward(
    ctx: &GpuContext,
    ids: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dw: &wgpu::Buffer,
    rows: usize,
    vocab: usize,
    dim: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "embedding_backward";
    let s = shape(OP, rows, vocab, dim, accumulate)?;
    check_buffer(OP, "ids", ids, rows)?;
    check_buffer(OP, "dy", dy, rows * dim)?;
    check_buffer(OP, "dw", dw, vocab * dim)?;
    check_distinct(OP, &[("ids", ids), ("dy", dy), ("dw", dw)])?;
    let u = ctx.uniform("embedding_backward.shape", &s)?;
    ctx.dispatch(
        "embedding",
        "embedding_backward",
        &[&u, ids, dy, dw],
        grid_1d(ctx, vocab * dim, WG),
    )
}
