// The job table of a grouped element-wise dispatch (src/gpu/kernels/launch.rs: GroupedTable,
// grouped_table), shared by optimizer_multi.wgsl and clip.wgsl, which src/gpu/shaders.rs puts
// after this file (each defines WG): up to GROUPED tensors on one grid, tensor j's elements
// those of workgroups jobs[j].first_group .. + ⌈len/WG⌉, the grid flattened from 2-D.

const GROUPED: u32 = 8u;

struct GroupedJob {
    len: u32,
    first_group: u32,
    pad0: u32,
    pad1: u32,
}

struct GroupedTable {
    n_jobs: u32,
    total_groups: u32,
    // Workgroups per row of the 2-D grid.
    row: u32,
    pad0: u32,
    jobs: array<GroupedJob, GROUPED>,
}

// (tensor j, element i, 1 when that element exists, else 0) of invocation lid of workgroup
// wid. j is uniform across a workgroup, so switching on it does not diverge.
fn grouped_element(t: GroupedTable, wid: vec3<u32>, lid: u32) -> vec3<u32> {
    let w = wid.y * t.row + wid.x;
    if (w >= t.total_groups) {
        return vec3<u32>(0u, 0u, 0u);
    }
    // The tensor whose workgroup range holds w: the last one starting at or before it.
    var j = 0u;
    for (var k = 1u; k < t.n_jobs; k++) {
        if (t.jobs[k].first_group <= w) {
            j = k;
        }
    }
    let i = (w - t.jobs[j].first_group) * WG + lid;
    return vec3<u32>(j, i, select(0u, 1u, i < t.jobs[j].len));
}
