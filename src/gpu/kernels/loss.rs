//! Launcher of shaders/loss.wgsl. (Stub: the kernel-family owner fills this in.)
//! Semantics as in cpu::loss; `row_correct` is a u32 buffer, `out` holds two f32:
//! [Σ row_loss, Σ row_correct].

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};

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
    let _ = (
        ctx,
        logits,
        labels,
        dlogits,
        row_loss,
        row_correct,
        rows,
        classes,
    );
    unimplemented!()
}

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
    let _ = (
        ctx,
        pred,
        targets,
        labels,
        dpred,
        row_loss,
        row_correct,
        rows,
        cols,
    );
    unimplemented!()
}

pub fn loss_reduce(
    ctx: &GpuContext,
    row_loss: &wgpu::Buffer,
    row_correct: &wgpu::Buffer,
    out: &wgpu::Buffer,
    rows: usize,
) -> Result<Dispatch> {
    let _ = (ctx, row_loss, row_correct, out, rows);
    unimplemented!()
}
