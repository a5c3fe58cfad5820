//! Checks and grid shapes shared by the launchers: the 2-D grid that keeps 1-D kernels
//! under the per-dimension workgroup limit, and the buffer-size, index-range and aliasing
//! checks that turn a wrong plan into an error naming the op instead of a wgpu panic.

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// The grid for a 1-D kernel of `invocations` threads in workgroups of `wg`: one row of
/// workgroups while it fits the device's per-dimension limit, else a 2-D grid of
/// `max × ⌈groups / max⌉` whose flat index the shader recomputes as
/// `gid.y · (num_workgroups.x · wg) + gid.x` (and bounds-checks, as the last row is partial).
pub fn grid_1d(ctx: &GpuContext, invocations: usize, wg: u32) -> [u32; 3] {
    let groups = invocations.div_ceil(wg as usize);
    let max = ctx.limits.max_compute_workgroups_per_dimension.max(1) as usize;
    if groups <= max {
        [groups as u32, 1, 1]
    } else {
        // A y extent past the limit is refused by `ctx.dispatch` with a TooLarge error.
        let gy = groups.div_ceil(max);
        [max as u32, gy.min(u32::MAX as usize) as u32, 1]
    }
}

/// Refuses element counts whose indices would not fit the shaders' u32 arithmetic (the
/// padded grid may run up to one row of workgroups past `len`, hence the headroom).
pub fn check_count(op: &str, what: &str, count: usize) -> Result<u32> {
    if count > (i32::MAX as usize) {
        return Err(Error::shape(
            op,
            format!("{what} = {count} exceeds the 2^31 − 1 elements a kernel can index"),
        ));
    }
    Ok(count as u32)
}

/// Checks that `buffer` holds at least `elems` 4-byte elements.
pub fn check_buffer(op: &str, name: &str, buffer: &wgpu::Buffer, elems: usize) -> Result<()> {
    let need = elems as u64 * 4;
    if buffer.size() < need {
        return Err(Error::shape(
            op,
            format!(
                "buffer `{name}` holds {} bytes but the shape needs {elems} elements ({need} bytes)",
                buffer.size()
            ),
        ));
    }
    Ok(())
}

/// Refuses a buffer bound twice in one dispatch: wgpu forbids one bound read-write and
/// read-only together, and the kernels are not written for in-place use.
pub fn check_distinct(op: &str, buffers: &[(&str, &wgpu::Buffer)]) -> Result<()> {
    for (i, (a, ba)) in buffers.iter().enumerate() {
        for (b, bb) in &buffers[i + 1..] {
            if ba == bb {
                return Err(Error::shape(
                    op,
                    format!(
                        "`{a}` and `{b}` are the same buffer; this kernel does not run in place"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Tensors one grouped element-wise dispatch takes at most (`GROUPED` in
/// shaders/grouped_jobs.wgsl): the optimizer's and clipping's multi-tensor kernels.
pub const GROUPED: usize = 8;

/// One tensor of a grouped dispatch (WGSL `GroupedJob`): its length and first workgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GroupedJob {
    pub len: u32,
    pub first_group: u32,
    pub _pad: [u32; 2],
}

/// The job table of a grouped dispatch (WGSL `GroupedTable`), 144 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GroupedTable {
    pub n_jobs: u32,
    pub total_groups: u32,
    /// Workgroups per row of the 2-D grid.
    pub row: u32,
    pub _pad: u32,
    pub jobs: [GroupedJob; GROUPED],
}

/// The job table and grid of a grouped dispatch that runs an element-wise kernel over the
/// tensors of `lens` elements (at most GROUPED), `wg` invocations a workgroup: ⌈len/wg⌉
/// workgroups each (at least one), laid end to end, on a grid that turns 2-D past the
/// per-dimension limit.
pub fn grouped_table(
    ctx: &GpuContext,
    op: &str,
    lens: &[u32],
    wg: u32,
) -> Result<(GroupedTable, [u32; 3])> {
    if lens.is_empty() || lens.len() > GROUPED {
        return Err(Error::shape(
            op,
            format!("takes 1 to {GROUPED} tensors, got {}", lens.len()),
        ));
    }
    let mut table = GroupedTable {
        n_jobs: lens.len() as u32,
        total_groups: 0,
        row: 0,
        _pad: 0,
        jobs: [bytemuck::Zeroable::zeroed(); GROUPED],
    };
    let mut groups = 0u64;
    let too_many = || Error::shape(op, "workgroup count exceeds u32");
    for (job, &len) in table.jobs.iter_mut().zip(lens) {
        *job = GroupedJob {
            len,
            first_group: u32::try_from(groups).map_err(|_| too_many())?,
            _pad: [0; 2],
        };
        groups += len.div_ceil(wg).max(1) as u64;
    }
    let total = u32::try_from(groups).map_err(|_| too_many())?;
    let gx = total.clamp(1, ctx.limits.max_compute_workgroups_per_dimension.max(1));
    table.total_groups = total;
    table.row = gx;
    Ok((table, [gx, total.div_ceil(gx), 1]))
}
