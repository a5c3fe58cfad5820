// Fixed-order workgroup reductions shared by batchnorm.wgsl and layernorm.wgsl (appended
// to each by src/gpu/shaders.rs; the host file defines WG). This build keeps the whole
// tree in workgroup memory; workgroup_tree_subgroup.wgsl is the same tree, same bits, with
// its last levels in subgroup registers.
//
// Both reductions merge lane t with lane t + stride for stride = WG/2, …, 1 and hand every
// invocation the result; the CPU twins (cpu::batchnorm) follow the same order. Call them
// from uniform control flow only; they may be called again at once (a barrier ends each).

var<workgroup> tree_moments: array<vec3<f32>, WG>;
var<workgroup> tree_pairs: array<vec2<f32>, WG>;

// Moments (count, mean, M2) of the union of two disjoint sets (Chan, Golub & LeVeque 1979).
fn combine(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let n = a.x + b.x;
    if n == 0.0 {
        return vec3<f32>(0.0, 0.0, 0.0);
    }
    let d = b.y - a.y;
    let wb = b.x / n;
    return vec3<f32>(n, a.y + d * wb, a.z + b.z + d * d * a.x * wb);
}

// Combines the lanes' moments v over the workgroup.
fn workgroup_moments(lid: u32, v: vec3<f32>) -> vec3<f32> {
    tree_moments[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            tree_moments[lid] = combine(tree_moments[lid], tree_moments[lid + stride]);
        }
        workgroupBarrier();
    }
    let total = tree_moments[0];
    workgroupBarrier();
    return total;
}

// Sums the lanes' v over the workgroup.
fn workgroup_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    tree_pairs[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            tree_pairs[lid] = tree_pairs[lid] + tree_pairs[lid + stride];
        }
        workgroupBarrier();
    }
    let total = tree_pairs[0];
    workgroupBarrier();
    return total;
}
