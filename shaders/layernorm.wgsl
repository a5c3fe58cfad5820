// Layer normalization (Ba, Kiros & Hinton 2016) with nn.LayerNorm's semantics over the last
// d features of each of `rows` rows, with an elementwise affine γ, β of size d:
//   mean = Σ_j x_j / d, var = Σ_j (x_j − mean)² / d (biased, two passes),
//   x̂ = (x − mean)·inv_std, inv_std = 1/sqrt(var + eps), y = γ ⊙ x̂ + β.
// mean and inv_std are saved per row for the backward pass.
//
// Backward: with g_j = γ_j·dy_j (= ∂L/∂x̂_j) and x̂ depending on the whole row through its
// mean and inverse deviation (as in batch norm, over the row instead of the channel),
//   dx_j = (inv_std / d)·(d·g_j − Σ_k g_k − x̂_j·Σ_k g_k·x̂_k),
//   dγ_j = Σ_rows dy_j·x̂_j, dβ_j = Σ_rows dy_j.
// dx reduces along a row and dγ, dβ down the columns, so the backward is two entry points:
// layernorm_backward_input (one workgroup per row) and layernorm_backward_params (32
// columns per workgroup, each column's rows split between 8 row lanes, lane l summing the
// rows r ≡ l (mod 8) in order, the lanes merged in a fixed tree, as bias.wgsl does).
//
// Row reductions: the WG invocations of a row's workgroup take j = lid, lid + WG, … in
// order, then a tree combines the lane sums; the CPU twin reproduces that order
// (cpu::batchnorm::workgroup_sum). No float atomics anywhere. Rows ≥ 65535 use a 2-D grid
// of workgroups.
//
// Gradient convention: dγ and dβ are parameter gradients (`accumulate` = 1 adds to them);
// dx is an activation gradient and is overwritten.

const WG: u32 = 256u;

struct Shape {
    rows: u32,
    d: u32,
    // 1: dγ += …, dβ += …; 0: overwrite.
    accumulate: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> shape: Shape;

// layernorm_forward
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> save_mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> save_invstd: array<f32>;

// layernorm_backward_input: x and gamma as above, then
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> saved_mean: array<f32>;
@group(0) @binding(5) var<storage, read> saved_invstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

// layernorm_backward_params: x as above, then
@group(0) @binding(2) var<storage, read> p_dy: array<f32>;
@group(0) @binding(3) var<storage, read> p_mean: array<f32>;
@group(0) @binding(4) var<storage, read> p_invstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbeta: array<f32>;

// workgroup_sum: shaders/workgroup_tree.wgsl (or its subgroup build), which
// src/gpu/shaders.rs appends to this file.

// One workgroup: row r = its flat workgroup index. Reduces the row's mean and variance,
// writes the row of y, and (invocation 0) saves mean and inv_std.
@compute @workgroup_size(WG)
fn layernorm_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = wid.y * nwg.x + wid.x;
    if r >= shape.rows {
        return;
    }
    let base = r * shape.d;
    let df = f32(shape.d);
    var acc = 0.0;
    for (var j = lid; j < shape.d; j = j + WG) {
        acc = acc + x[base + j];
    }
    let mean = workgroup_sum(lid, vec2<f32>(acc, 0.0)).x / df;
    acc = 0.0;
    for (var j = lid; j < shape.d; j = j + WG) {
        let dev = x[base + j] - mean;
        acc = acc + dev * dev;
    }
    let var_b = workgroup_sum(lid, vec2<f32>(acc, 0.0)).x / df;
    let inv_std = 1.0 / sqrt(var_b + shape.eps);
    for (var j = lid; j < shape.d; j = j + WG) {
        y[base + j] = gamma[j] * ((x[base + j] - mean) * inv_std) + beta[j];
    }
    if lid == 0u {
        save_mean[r] = mean;
        save_invstd[r] = inv_std;
    }
}

// One workgroup: row r. Reduces Σ g and Σ g·x̂ (g = γ·dy) over the row, then writes its dx.
@compute @workgroup_size(WG)
fn layernorm_backward_input(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = wid.y * nwg.x + wid.x;
    if r >= shape.rows {
        return;
    }
    let base = r * shape.d;
    let mean = saved_mean[r];
    let inv_std = saved_invstd[r];
    var acc = vec2<f32>(0.0, 0.0);
    for (var j = lid; j < shape.d; j = j + WG) {
        let g = gamma[j] * dy[base + j];
        let xhat = (x[base + j] - mean) * inv_std;
        acc = acc + vec2<f32>(g, g * xhat);
    }
    let sums = workgroup_sum(lid, acc);
    let df = f32(shape.d);
    let k = inv_std / df;
    for (var j = lid; j < shape.d; j = j + WG) {
        let g = gamma[j] * dy[base + j];
        let xhat = (x[base + j] - mean) * inv_std;
        dx[base + j] = k * (df * g - sums.x - xhat * sums.y);
    }
}

// (dy, dy·x̂) of row r, column j.
fn param_terms(r: u32, j: u32) -> vec2<f32> {
    let i = r * shape.d + j;
    let xhat = (x[i] - p_mean[r]) * p_invstd[r];
    return vec2<f32>(p_dy[i], p_dy[i] * xhat);
}

// Columns per workgroup and row lanes per column of layernorm_backward_params (the CPU
// twin's PARAM_LANES).
const P_COLS: u32 = 32u;
const P_LANES: u32 = 8u;

// Invocation (x, l): column j = block·P_COLS + x, row lane l. dγ[j] (+)= Σ_r dy·x̂ and
// dβ[j] (+)= Σ_r dy. Lane l sums the rows of its own contiguous range in order (rows/8
// each, the first rows % 8 lanes one more: the CPU twin's `lane_rows`, whose single pass
// forms each row's dx and adds the row's terms to its lane's sums while the row is in
// cache); the lanes' sums meet in tree_pairs (workgroup_tree_common.wgsl, otherwise unused
// by this entry).
@compute @workgroup_size(32, 8)
fn layernorm_backward_params(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let j = (wid.y * nwg.x + wid.x) * P_COLS + lid.x;
    let l = lid.y;
    let q = shape.rows / P_LANES;
    let rem = shape.rows % P_LANES;
    let start = l * q + min(l, rem);
    let end = start + q + select(0u, 1u, l < rem);
    // (Σ dy, Σ dy·x̂) over the lane's rows. Four rows' terms are formed (their loads in
    // flight together) before they are added in row order.
    var sums = vec2<f32>(0.0, 0.0);
    if j < shape.d {
        var r = start;
        for (; r + 3u < end; r = r + 4u) {
            let t0 = param_terms(r, j);
            let t1 = param_terms(r + 1u, j);
            let t2 = param_terms(r + 2u, j);
            let t3 = param_terms(r + 3u, j);
            sums = sums + t0 + t1 + t2 + t3;
        }
        for (; r < end; r = r + 1u) {
            sums = sums + param_terms(r, j);
        }
    }
    let slot = l * P_COLS + lid.x;
    tree_pairs[slot] = sums;
    for (var half = P_LANES / 2u; half > 0u; half = half / 2u) {
        workgroupBarrier();
        if l < half {
            tree_pairs[slot] = tree_pairs[slot] + tree_pairs[slot + half * P_COLS];
        }
    }
    if l == 0u && j < shape.d {
        let t = tree_pairs[slot];
        if shape.accumulate != 0u {
            dgamma[j] = dgamma[j] + t.y;
            dbeta[j] = dbeta[j] + t.x;
        } else {
            dgamma[j] = t.y;
            dbeta[j] = t.x;
        }
    }
}
