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
// wid. j is uniform across a workgroup, so switching on it does not diverge. The table is
// read through `grouped_head()` (n_jobs, total_groups, row) and `grouped_job(k)`, which the
// file that includes this one defines over its own uniform: a table passed by value and
// indexed by k would be copied into every invocation's local memory on some drivers.
fn grouped_element(wid: vec3<u32>, lid: u32) -> vec3<u32> {
    let head = grouped_head();
    let w = wid.y * head.z + wid.x;
    if (w >= head.y) {
        return vec3<u32>(0u, 0u, 0u);
    }
    // The tensor whose workgroup range holds w: the last one starting at or before it.
    var j = 0u;
    for (var k = 1u; k < head.x; k++) {
        if (grouped_job(k).first_group <= w) {
            j = k;
        }
    }
    let job = grouped_job(j);
    let i = (w - job.first_group) * WG + lid;
    return vec3<u32>(j, i, select(0u, 1u, i < job.len));
}
