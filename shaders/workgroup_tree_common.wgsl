// What both builds of the workgroup trees (workgroup_tree.wgsl, workgroup_tree_subgroup.wgsl)
// use: their workgroup arrays and the moments' pairwise combine. src/gpu/shaders.rs puts this
// file before either; the host file defines WG.

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

