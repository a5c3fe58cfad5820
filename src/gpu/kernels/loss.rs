//! Launcher of shaders/loss.wgsl: softmax cross-entropy and MSE, each fused with its
//! gradient (one invocation per row), and the fixed-order batch reduction.
//! Semantics as in cpu::loss; `row_correct` is a u32 buffer, `out` holds two f32:
//! [Σ row_loss, Σ row_correct]. Labels are u32; one ≥ classes is never used as an index
//! (see the shader's header for what such a row yields).

use super::launch::{check_buffer, check_count, check_distinct, grid_1d};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext};

/// Workgroup size of the per-row kernels (loss.wgsl's `WG`).
pub const WG: u32 = 64;

/// The WGSL struct `Shape` of loss.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

fn shape(op: &str, rows: usize, cols: usize, cols_name: &str) -> Result<Shape> {
    if cols == 0 {
        return Err(Error::shape(op, format!("{cols_name} must be at least 1")));
    }
    check_count(op, &format!("rows·{cols_name}"), rows.saturating_mul(cols))?;
    Ok(Shape {
        rows: rows as u32,
        cols: cols as u32,
        _pad0: 0,
        _pad1: 0,
    })
}

/// logits (rows, classes), labels (rows) → dlogits (rows, classes), row_loss (rows),
/// row_correct (rows): one invocation per row.
#[allow(clippy::too_many_arguments)]
pub fn softmax_xent_forward_backward(
    ctx: &GpuContext,
    logits: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    dlogits: &wgpu::Buffer,
    row_loss: &wgpu::Buffer,
    row_correct: &wgpu::Buffer,
    rows: usize,
    classes: usize,
) -> Result<Dispatch> {
    const OP: &str = "softmax_xent_forward_backward";
    let s = shape(OP, rows, classes, "classes")?;
    check_buffer(OP, "logits", logits, rows * classes)?;
    check_buffer(OP, "labels", labels, rows)?;
    check_buffer(OP, "dlogits", dlogits, rows * classes)?;
    check_buffer(OP, "row_loss", row_loss, rows)?;
    check_buffer(OP, "row_correct", row_correct, rows)?;
    check_distinct(
        OP,
        &[
            ("logits", logits),
            ("labels", labels),
            ("dlogits", dlogits),
            ("row_loss", row_loss),
            ("row_correct", row_correct),
        ],
    )?;
    let u = ctx.uniform("softmax_xent.shape", &s)?;
    ctx.dispatch(
        "loss",
        "softmax_xent_forward_backward",
        &[&u, logits, labels, dlogits, row_loss, row_correct],
        grid_1d(ctx, rows, WG),
    )
}

/// pred, targets (rows, cols), labels (rows) → dpred (rows, cols), row_loss (rows),
/// row_correct (rows): one invocation per row.
#[allow(clippy::too_many_arguments)]
pub fn mse_forward_backward(
    ctx: &GpuContext,
    pred: &wgpu::Buffer,
    targets: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    dpred: &wgpu::Buffer,
    row_loss: &wgpu::Buffer,
    row_correct: &wgpu::Buffer,
    rows: usize,
    cols: usize,
) -> Result<Dispatch> {
    const OP: &str = "mse_forward_backward";
    let s = shape(OP, rows, cols, "cols")?;
    check_buffer(OP, "pred", pred, rows * cols)?;
    check_buffer(OP, "targets", targets, rows * cols)?;
    check_buffer(OP, "labels", labels, rows)?;
    check_buffer(OP, "dpred", dpred, rows * cols)?;
    check_buffer(OP, "row_loss", row_loss, rows)?;
    check_buffer(OP, "row_correct", row_correct, rows)?;
    check_distinct(
        OP,
        &[
            ("pred", pred),
            ("targets", targets),
            ("labels", labels),
            ("dpred", dpred),
            ("row_loss", row_loss),
            ("row_correct", row_correct),
        ],
    )?;
    let u = ctx.uniform("mse.shape", &s)?;
    ctx.dispatch(
        "loss",
        "mse_forward_backward",
        &[&u, pred, targets, labels, dpred, row_loss, row_correct],
        grid_1d(ctx, rows, WG),
    )
}

/// row_loss (rows), row_correct (rows) → out = [Σ row_loss, Σ row_correct as f32]: one
/// workgroup, in the fixed order of `cpu::loss::loss_reduce`.
pub fn loss_reduce(
    ctx: &GpuContext,
    row_loss: &wgpu::Buffer,
    row_correct: &wgpu::Buffer,
    out: &wgpu::Buffer,
    rows: usize,
) -> Result<Dispatch> {
    const OP: &str = "loss_reduce";
    let rows32 = check_count(OP, "rows", rows)?;
    check_buffer(OP, "row_loss", row_loss, rows)?;
    check_buffer(OP, "row_correct", row_correct, rows)?;
    check_buffer(OP, "out", out, 2)?;
    check_distinct(
        OP,
        &[
            ("row_loss", row_loss),
            ("row_correct", row_correct),
            ("out", out),
        ],
    )?;
    let s = Shape {
        rows: rows32,
        cols: 0,
        _pad0: 0,
        _pad1: 0,
    };
    let u = ctx.uniform("loss_reduce.shape", &s)?;
    ctx.dispatch(
        "loss",
        "loss_reduce",
        &[&u, row_loss, row_correct, out],
        [1, 1, 1],
    )
}
