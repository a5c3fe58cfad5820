//! Launcher of shaders/stats.wgsl: per-tensor statistics records and the dead-unit count.
//!
//! Two passes, both fixed-order (no float atomics), so results are bit-reproducible:
//! `stats_partial` reduces a tensor into `partial_count(len)` partial records written at
//! `partials[partial_base..]`; one `stats_finalize` dispatch then reduces every job's
//! partials (one workgroup per job) into `records[job.record]`. The CPU twin
//! (`cpu::stats::stats_reduce`) computes the same record with its own chunking and order of
//! summation (see shaders/stats.wgsl for the device's).

use bytemuck::Zeroable;

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext, stats_multi};
use crate::stats::{RECORD_WORDS, RawStats};

/// Invocations per workgroup (`WG` in shaders/stats.wgsl).
pub const WG: usize = 256;
/// Elements per partial record (`CHUNK` = WG · PER in shaders/stats.wgsl).
pub const CHUNK: usize = 8192;
/// Bytes of one record in a partials or records buffer.
pub const RECORD_BYTES: u64 = (RECORD_WORDS * 4) as u64;

const _: () = assert!(std::mem::size_of::<RawStats>() as u64 == RECORD_BYTES);

/// One entry of the finalize job table (WGSL struct `Job`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StatsJob {
    pub partial_base: u32,
    pub partial_count: u32,
    pub record: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PartialParams {
    len: u32,
    partial_base: u32,
    saturate: u32,
    _pad0: u32,
    lo: f32,
    hi: f32,
    _pad1: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FinalizeParams {
    n_jobs: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DeadParams {
    rows: u32,
    cols: u32,
    index: u32,
    _pad: u32,
}

/// How many partial records a tensor of `len` elements produces (0 for an empty tensor).
pub fn partial_count(len: usize) -> usize {
    len.div_ceil(CHUNK)
}

/// A grid of `n` workgroups, 2-D when n exceeds the per-dimension limit; the shader
/// flattens it as x + y·nx and skips the workgroups past n.
fn grid(ctx: &GpuContext, n: usize) -> [u32; 3] {
    grid_for(n, ctx.limits.max_compute_workgroups_per_dimension)
}

fn grid_for(n: usize, max_per_dim: u32) -> [u32; 3] {
    let max = max_per_dim.max(1) as usize;
    if n <= max {
        [n as u32, 1, 1]
    } else {
        [max as u32, n.div_ceil(max) as u32, 1]
    }
}

fn to_u32(op: &str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::shape(op, format!("{what} = {v} exceeds u32")))
}

/// A dispatch of a reduction entry of the statistics shader: the subgroup-tree build where
/// the context has one (`GpuContext::subgroup_size`), else the workgroup-memory one. The
/// two give the same bits.
fn reduction(
    ctx: &GpuContext,
    entry: &'static str,
    bindings: &[&wgpu::Buffer],
    grid: [u32; 3],
) -> Result<Dispatch> {
    ctx.dispatch_reduction("stats", "stats_subgroup", entry, bindings, grid)
}

fn need_bytes(op: &str, what: &str, buffer: &wgpu::Buffer, bytes: u64) -> Result<()> {
    if buffer.size() < bytes {
        return Err(Error::shape(
            op,
            format!("{what} buffer holds {} bytes, needs {bytes}", buffer.size()),
        ));
    }
    Ok(())
}

/// x is (len,) f32 → partials[partial_base .. partial_base + partial_count(len)]. One
/// workgroup of 256 reduces one CHUNK of 8192 elements. `saturation` (lo, hi) counts finite
/// x ≤ lo or x ≥ hi. An empty tensor gives an empty (no-op) dispatch.
pub fn stats_partial(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    len: usize,
    saturation: Option<(f32, f32)>,
    partials: &wgpu::Buffer,
    partial_base: usize,
) -> Result<Dispatch> {
    let op = "stats_partial";
    let count = partial_count(len);
    let len32 = to_u32(op, "len", len)?;
    let base32 = to_u32(op, "partial_base", partial_base)?;
    to_u32(op, "partial_base + partial_count", partial_base + count)?;
    need_bytes(op, "x", x, len as u64 * 4)?;
    // At least one record even for an empty tensor: wgpu refuses to bind an array of
    // records to a buffer smaller than one element.
    need_bytes(
        op,
        "partials",
        partials,
        (partial_base + count).max(1) as u64 * RECORD_BYTES,
    )?;
    let (saturate, lo, hi) = saturation_params(op, saturation)?;
    let params = ctx.uniform(
        "stats_partial.params",
        &PartialParams {
            len: len32,
            partial_base: base32,
            saturate,
            _pad0: 0,
            lo,
            hi,
            _pad1: [0; 2],
        },
    )?;
    reduction(
        ctx,
        "stats_partial",
        &[x, partials, &params],
        grid(ctx, count),
    )
}

/// The widest `stats_partial_multi` (`gpu::stats_multi`): the job table's length.
const MAX_MULTI: usize = stats_multi::MAX_WIDTH;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MultiJob {
    len: u32,
    partial_base: u32,
    saturate: u32,
    first_chunk: u32,
    lo: f32,
    hi: f32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MultiParams {
    n_jobs: u32,
    total_chunks: u32,
    _pad: [u32; 2],
    /// The first `multi_capacity` entries are the WGSL struct's `jobs`; the rest pad the
    /// uniform, which the shader never reads past its width.
    jobs: [MultiJob; MAX_MULTI],
}

/// One tensor of a `stats_partial_multi` dispatch: what `stats_partial` takes for it.
pub struct PartialJob<'a> {
    pub x: &'a wgpu::Buffer,
    pub len: usize,
    pub saturation: Option<(f32, f32)>,
    pub partial_base: usize,
}

/// The environment variable that caps the tensors of a `stats_partial_multi` dispatch
/// (`GRADSCOPE_STATS_GROUP=16` gives the width before 2026-12-08, 1 a dispatch per tensor),
/// to compare widths on one device. A value that is no whole number is ignored, as the
/// other `GRADSCOPE_*` switches ignore what they do not know.
pub const STATS_GROUP_ENV: &str = "GRADSCOPE_STATS_GROUP";

/// How many tensors one `stats_partial_multi` dispatch takes on this device: it binds each
/// input and the partials as storage buffers and its parameters as a uniform, so as many
/// as the device's storage buffers per stage less one (and its bindings per group less
/// two), at most `stats_multi::MAX_WIDTH` and `GRADSCOPE_STATS_GROUP`. 0 where that is
/// under two (then every tensor takes its own dispatch).
pub fn multi_capacity(ctx: &GpuContext) -> usize {
    static CAP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let asked = *CAP.get_or_init(|| {
        std::env::var(STATS_GROUP_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(MAX_MULTI)
    });
    let storage = ctx.limits.max_storage_buffers_per_shader_stage as usize;
    let bindings = ctx.limits.max_bindings_per_bind_group as usize;
    let width = MAX_MULTI
        .min(asked)
        .min(storage.saturating_sub(1))
        .min(bindings.saturating_sub(2));
    if width >= 2 { width } else { 0 }
}

fn saturation_params(op: &str, saturation: Option<(f32, f32)>) -> Result<(u32, f32, f32)> {
    match saturation {
        Some((lo, hi)) if !(lo.is_finite() && hi.is_finite()) => Err(Error::config(format!(
            "{op}: saturation bounds must be finite, got ({lo}, {hi})"
        ))),
        Some((lo, hi)) => Ok((1, lo, hi)),
        None => Ok((0, 0.0, 0.0)),
    }
}

/// The partial records of up to `multi_capacity` tensors in one dispatch: each tensor's
/// partials[partial_base .. + partial_count(len)] come out bit for bit as `stats_partial`
/// writes them. The kernel is compiled for the device's width (`gpu::stats_multi`); fewer
/// jobs bind the first tensor in the unused slots.
pub fn stats_partial_multi(
    ctx: &GpuContext,
    jobs: &[PartialJob<'_>],
    partials: &wgpu::Buffer,
) -> Result<Dispatch> {
    let op = "stats_partial_multi";
    let width = multi_capacity(ctx);
    if width == 0 {
        return Err(Error::config(format!(
            "{op}: no grouped dispatch here: the device binds {} storage buffers per shader \
             stage (3 needed), or {STATS_GROUP_ENV} is below 2",
            ctx.limits.max_storage_buffers_per_shader_stage,
        )));
    }
    if jobs.is_empty() || jobs.len() > width {
        return Err(Error::shape(
            op,
            format!(
                "takes 1 to {width} tensors on this device, got {}",
                jobs.len()
            ),
        ));
    }
    let mut params = MultiParams {
        n_jobs: jobs.len() as u32,
        total_chunks: 0,
        _pad: [0; 2],
        jobs: [MultiJob::zeroed(); MAX_MULTI],
    };
    let mut total = 0usize;
    let mut end = 0usize;
    for (slot, job) in params.jobs.iter_mut().zip(jobs) {
        let count = partial_count(job.len);
        need_bytes(op, "x", job.x, job.len as u64 * 4)?;
        let (saturate, lo, hi) = saturation_params(op, job.saturation)?;
        *slot = MultiJob {
            len: to_u32(op, "len", job.len)?,
            partial_base: to_u32(op, "partial_base", job.partial_base)?,
            saturate,
            first_chunk: to_u32(op, "first chunk", total)?,
            lo,
            hi,
            _pad: [0; 2],
        };
        total += count;
        end = end.max(job.partial_base + count);
    }
    params.total_chunks = to_u32(op, "chunks", total)?;
    to_u32(op, "partial_base + partial_count", end)?;
    need_bytes(op, "partials", partials, end.max(1) as u64 * RECORD_BYTES)?;
    let params = ctx.uniform("stats_partial_multi.params", &params)?;
    let mut bindings: Vec<&wgpu::Buffer> = (0..width)
        .map(|i| jobs.get(i).unwrap_or(&jobs[0]).x)
        .collect();
    bindings.push(partials);
    bindings.push(&params);
    // Only the module this device runs is written (`dispatch_reduction` picks the subgroup
    // one by the same test).
    let stem = stats_multi::stem(width, ctx.subgroup_size.is_some());
    ctx.dispatch_reduction(
        stem,
        stem,
        "stats_partial_multi",
        &bindings,
        grid(ctx, total),
    )
}

/// jobs is (n_jobs,) StatsJob → records[job.record] for each job: one workgroup per job
/// merges partials[job.partial_base .. + job.partial_count]; a job without partials writes
/// the empty record. `partials` and `records` must hold at least one record each (wgpu's
/// minimum binding size). The job table lives on the device, so its contents are not
/// checked here: the caller (the plan) keeps every job's ranges inside its buffers.
pub fn stats_finalize(
    ctx: &GpuContext,
    partials: &wgpu::Buffer,
    jobs: &wgpu::Buffer,
    records: &wgpu::Buffer,
    n_jobs: usize,
) -> Result<Dispatch> {
    let op = "stats_finalize";
    let n32 = to_u32(op, "n_jobs", n_jobs)?;
    need_bytes(
        op,
        "jobs",
        jobs,
        (n_jobs * std::mem::size_of::<StatsJob>()) as u64,
    )?;
    need_bytes(op, "partials", partials, RECORD_BYTES)?;
    need_bytes(op, "records", records, RECORD_BYTES)?;
    let params = ctx.uniform(
        "stats_finalize.params",
        &FinalizeParams {
            n_jobs: n32,
            _pad: [0; 3],
        },
    )?;
    reduction(
        ctx,
        "stats_finalize",
        &[partials, jobs, records, &params],
        grid(ctx, n_jobs),
    )
}

/// Writes into out[index] (u32) the number of columns of y (rows, cols) that are zero in
/// every row. One workgroup; invocation t checks columns t, t + 256, …
pub fn dead_units(
    ctx: &GpuContext,
    y: &wgpu::Buffer,
    rows: usize,
    cols: usize,
    out: &wgpu::Buffer,
    index: usize,
) -> Result<Dispatch> {
    let op = "dead_units";
    let rows32 = to_u32(op, "rows", rows)?;
    let cols32 = to_u32(op, "cols", cols)?;
    to_u32(op, "rows·cols", rows * cols)?;
    let index32 = to_u32(op, "index", index)?;
    need_bytes(op, "y", y, (rows * cols) as u64 * 4)?;
    need_bytes(op, "out", out, (index as u64 + 1) * 4)?;
    let params = ctx.uniform(
        "dead_units.params",
        &DeadParams {
            rows: rows32,
            cols: cols32,
            index: index32,
            _pad: 0,
        },
    )?;
    ctx.dispatch("stats", "dead_units", &[y, out, &params], [1, 1, 1])
}

#[cfg(test)]
mod tests {
    use super::grid_for;

    /// The 2-D grid covers every chunk once the 1-D limit is passed (a tensor that large,
    /// over 134M elements, is too slow to test on a software device).
    #[test]
    fn grid_covers_every_workgroup() {
        assert_eq!(grid_for(0, 65535), [0, 1, 1]);
        assert_eq!(grid_for(65535, 65535), [65535, 1, 1]);
        assert_eq!(grid_for(65536, 65535), [65535, 2, 1]);
        for n in [65536usize, 131_070, 131_071, 1 << 24] {
            let [x, y, _] = grid_for(n, 65535);
            assert!((x as usize * y as usize) >= n && (x as usize * (y as usize - 1)) < n);
        }
    }
}
