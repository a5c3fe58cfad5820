// Fixed-order workgroup reductions shared by batchnorm.wgsl and layernorm.wgsl (appended
// to each by src/gpu/shaders.rs; the host file defines WG). This build keeps the whole
// tree in workgroup memory; workgroup_tree_subgroup.wgsl is the same tree, same bits, with
// its last levels in subgroup registers.
//
// Both reductions merge lane t with lane t + stride for stride = WG/2, …, 1 and hand every
// invocation the result; the CPU twins (cpu::batchnorm) follow the same order. Call them
// from uniform control flow only; they may be called again at once (a barrier ends each).

// Combines the lanes' moments v over the workgroup.
fn workgroup_moments(lid: u32, v: vec3<f32>) -> vec3<f32> {
    return workgroup_moments_n(lid, v, WG);
}

// Sums the lanes' v over the workgroup.
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

// workgroup_moments over lanes 0 .. n only (the others hold the empty (0, 0, 0)): the tree's
// levels with stride ≥ n pair a lane with an empty one, which combine leaves exactly as it
// is, so starting at stride pow2_at_least(n)/2 gives the same bits in fewer levels.
fn workgroup_moments_n(lid: u32, v: vec3<f32>, n: u32) -> vec3<f32> {
    tree_moments[lid] = v;
    workgroupBarrier();
    for (var stride = pow2_at_least(n) / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            tree_moments[lid] = combine(tree_moments[lid], tree_moments[lid + stride]);
        }
        workgroupBarrier();
    }
    let total = tree_moments[0];
    workgroupBarrier();
    return total;
}

// workgroup_sum over lanes 0 .. n only (the others hold zeros), in the levels that pair
// two of them (adding +0 is exact but for the sign of a −0 sum; cpu::batchnorm's tree_n
// skips the same levels).
fn workgroup_sum_n(lid: u32, v: vec2<f32>, n: u32) -> vec2<f32> {
    tree_pairs[lid] = v;
    workgroupBarrier();
    for (var stride = pow2_at_least(n) / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            tree_pairs[lid] = tree_pairs[lid] + tree_pairs[lid + stride];
        }
        workgroupBarrier();
    }
    let total = tree_pairs[0];
    workgroupBarrier();
    return total;
}
