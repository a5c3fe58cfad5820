//! Launcher of shaders/stats.wgsl. (Stub: the kernel-family owner fills this in.)
//!
//! Two passes, both fixed-order (no float atomics), so results are bit-reproducible:
//! `stats_partial` reduces a tensor into `partial_count(len)` partial records written at
//! `partials[partial_base..]`; one `stats_finalize` dispatch then reduces every job's
//! partials (one workgroup per job) into `records[job.record]`.

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};

/// One entry of the finalize job table (WGSL struct `Job`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StatsJob {
    pub partial_base: u32,
    pub partial_count: u32,
    pub record: u32,
    pub _pad: u32,
}

/// How many partial records a tensor of `len` elements produces (0 for an empty tensor).
pub fn partial_count(len: usize) -> usize {
    let _ = len;
    unimplemented!()
}

pub fn stats_partial(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    len: usize,
    saturation: Option<(f32, f32)>,
    partials: &wgpu::Buffer,
    partial_base: usize,
) -> Result<Dispatch> {
    let _ = (ctx, x, len, saturation, partials, partial_base);
    unimplemented!()
}

pub fn stats_finalize(
    ctx: &GpuContext,
    partials: &wgpu::Buffer,
    jobs: &wgpu::Buffer,
    records: &wgpu::Buffer,
    n_jobs: usize,
) -> Result<Dispatch> {
    let _ = (ctx, partials, jobs, records, n_jobs);
    unimplemented!()
}

/// Writes into out[index] (u32) the number of columns of y (rows, cols) that are zero in
/// every row.
pub fn dead_units(
    ctx: &GpuContext,
    y: &wgpu::Buffer,
    rows: usize,
    cols: usize,
    out: &wgpu::Buffer,
    index: usize,
) -> Result<Dispatch> {
    let _ = (ctx, y, rows, cols, out, index);
    unimplemented!()
}
