// workgroup_tree.wgsl's reductions with their last log2(SG) levels in subgroup registers,
// for adapters with subgroup operations; the same tree and the same bits.
//
// The levels stride ≥ SG run in workgroup memory; after them slots 0 .. SG hold what the
// last levels merge. Every subgroup reads those SG values by its own lane index
// (subgroupExclusiveAdd(1) of a full subgroup, so nothing assumes how invocations map to
// subgroups) and merges them with shuffles: at level stride, lane t < stride absorbs lane
// t + stride, which that lane computed at level 2·stride, the workgroup tree's order. A
// broadcast of lane 0 gives every invocation the result.
//
// SG: the adapter's minimum subgroup size (a power of two, 4 to 128), set by the launcher.

override SG: u32 = 32u;

fn workgroup_moments(lid: u32, v: vec3<f32>) -> vec3<f32> {
    return workgroup_moments_n(lid, v, WG);
}

fn workgroup_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    return workgroup_sum_n(lid, v, WG);
}

// The smallest power of two ≥ n (n ≥ 1).
fn pow2_at_least(n: u32) -> u32 {
    var p = 1u;
    while p < n {
        p = p * 2u;
    }
    return p;
}

// workgroup_tree.wgsl's workgroup_moments_n: the levels from stride pow2_at_least(n)/2, the
// ones at or above SG in workgroup memory, the rest in shuffles.
fn workgroup_moments_n(lid: u32, v: vec3<f32>, n: u32) -> vec3<f32> {
    let top = pow2_at_least(n);
    tree_moments[lid] = v;
    workgroupBarrier();
    for (var stride = top / 2u; stride >= SG; stride = stride / 2u) {
        if lid < stride {
            tree_moments[lid] = combine(tree_moments[lid], tree_moments[lid + stride]);
        }
        workgroupBarrier();
    }
    let lane = subgroupExclusiveAdd(1u);
    var m = vec3<f32>(0.0, 0.0, 0.0);
    if lane < SG {
        m = tree_moments[lane];
    }
    for (var stride = min(top, SG) / 2u; stride > 0u; stride = stride / 2u) {
        let other = subgroupShuffleDown(m, stride);
        if lane < stride {
            m = combine(m, other);
        }
    }
    let total = subgroupBroadcast(m, 0u);
    workgroupBarrier();
    return total;
}

// workgroup_tree.wgsl's workgroup_sum_n, likewise.
fn workgroup_sum_n(lid: u32, v: vec2<f32>, n: u32) -> vec2<f32> {
    let top = pow2_at_least(n);
    tree_pairs[lid] = v;
    workgroupBarrier();
    for (var stride = top / 2u; stride >= SG; stride = stride / 2u) {
        if lid < stride {
            tree_pairs[lid] = tree_pairs[lid] + tree_pairs[lid + stride];
        }
        workgroupBarrier();
    }
    let lane = subgroupExclusiveAdd(1u);
    var t = vec2<f32>(0.0, 0.0);
    if lane < SG {
        t = tree_pairs[lane];
    }
    for (var stride = min(top, SG) / 2u; stride > 0u; stride = stride / 2u) {
        let other = subgroupShuffleDown(t, stride);
        if lane < stride {
            t = t + other;
        }
    }
    let total = subgroupBroadcast(t, 0u);
    workgroupBarrier();
    return total;
}
