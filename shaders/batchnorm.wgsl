// Batch normalization (Ioffe & Szegedy 2015) with PyTorch's semantics, for nn.BatchNorm1d
// on [N, C] and nn.BatchNorm2d on NCHW alike: x is [n, c, s] (s = H·W, or 1 for 1-D) and
// every channel c is normalized over its M = n·s values.
//
// Training forward: per channel, mean = Σx / M and the biased variance var = Σ(x − mean)² / M
// (two passes over the channel, so no cancellation of E[x²] − E[x]²), x̂ = (x − mean)·inv_std
// with inv_std = 1/sqrt(var + eps), y = γ·x̂ + β. mean and inv_std are saved for the
// backward pass; running_mean and running_var move by `momentum` towards the batch mean and
// the UNBIASED variance var·M/(M − 1), as torch does. Evaluation forward normalizes with the
// running statistics instead.
//
// Backward (training mode, where mean and var depend on x):
//   dβ = Σ dy, dγ = Σ dy·x̂,
//   dx = (γ·inv_std / M)·(M·dy − Σ dy − x̂·Σ dy·x̂).
// (From y = γx̂ + β: ∂L/∂x̂ = γ·dy; x̂ = (x − μ)·r with ∂μ/∂x_i = 1/M and
// ∂r/∂x_i = −r³(x_i − μ)/M, which collects into the expression above.)
//
// One workgroup per channel: its WG invocations take the channel's values m = lid,
// lid + WG, … (m = ni·s + si) in order, then a tree reduction in workgroup memory combines
// the WG partial sums: a fixed order with no atomics, so results are reproducible, and the
// CPU twin (cpu/batchnorm.rs, `workgroup_sum`) reproduces it. The same workgroup then writes
// its channel's outputs, so no scratch buffer is needed between the reduction and the
// elementwise part. Parallelism is c workgroups; channels ≥ 65535 use a 2-D grid.
//
// Gradient convention: dγ and dβ are parameter gradients (`accumulate` = 1 adds to them);
// dx is an activation gradient and is overwritten.

const WG: u32 = 256u;

struct Shape {
    n: u32,
    c: u32,
    s: u32,
    // 1: dγ += …, dβ += …; 0: overwrite.
    accumulate: u32,
    eps: f32,
    momentum: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> shape: Shape;

// batchnorm_forward_train
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> save_mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> save_invstd: array<f32>;
@group(0) @binding(7) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(8) var<storage, read_write> running_var: array<f32>;

// batchnorm_forward_eval: x, gamma, beta and y as above, then
@group(0) @binding(5) var<storage, read> eval_mean: array<f32>;
@group(0) @binding(6) var<storage, read> eval_var: array<f32>;

// batchnorm_backward: x and gamma as above, then
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> saved_mean: array<f32>;
@group(0) @binding(5) var<storage, read> saved_invstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(8) var<storage, read_write> dbeta: array<f32>;

var<workgroup> partial: array<vec2<f32>, WG>;

// The flat index in x of the m-th value (m = ni·s + si) of channel ch.
fn index(ch: u32, m: u32) -> u32 {
    let ni = m / shape.s;
    let si = m - ni * shape.s;
    return (ni * shape.c + ch) * shape.s + si;
}

// Sums v over the workgroup: partial[t] += partial[t + stride] for stride = WG/2, …, 1.
// Every invocation gets the total. Call from uniform control flow only.
fn workgroup_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            partial[lid] = partial[lid] + partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // Everyone has read the total before the next call overwrites partial.
    workgroupBarrier();
    return total;
}

// One workgroup: channel ch = its flat workgroup index. Reduces the channel's mean and
// variance, writes y for the channel, and (invocation 0) saves mean and inv_std and
// updates the running statistics.
@compute @workgroup_size(WG)
fn batchnorm_forward_train(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let ch = wid.y * nwg.x + wid.x;
    if ch >= shape.c {
        return;
    }
    let count = shape.n * shape.s;
    var acc = 0.0;
    for (var m = lid; m < count; m = m + WG) {
        acc = acc + x[index(ch, m)];
    }
    let mean = workgroup_sum(lid, vec2<f32>(acc, 0.0)).x / f32(count);
    acc = 0.0;
    for (var m = lid; m < count; m = m + WG) {
        let d = x[index(ch, m)] - mean;
        acc = acc + d * d;
    }
    let var_b = workgroup_sum(lid, vec2<f32>(acc, 0.0)).x / f32(count);
    let inv_std = 1.0 / sqrt(var_b + shape.eps);
    let g = gamma[ch];
    let b = beta[ch];
    for (var m = lid; m < count; m = m + WG) {
        let i = index(ch, m);
        y[i] = g * ((x[i] - mean) * inv_std) + b;
    }
    if lid == 0u {
        save_mean[ch] = mean;
        save_invstd[ch] = inv_std;
        // The launcher refuses M = 1 (torch: "Expected more than 1 value per channel").
        let unbiased = var_b * f32(count) / f32(count - 1u);
        let keep = 1.0 - shape.momentum;
        running_mean[ch] = keep * running_mean[ch] + shape.momentum * mean;
        running_var[ch] = keep * running_var[ch] + shape.momentum * unbiased;
    }
}

// One invocation: one element y[i] = γ·(x[i] − running_mean)/sqrt(running_var + eps) + β of
// channel (i / s) % c, on a 2-D grid of workgroups.
@compute @workgroup_size(WG)
fn batchnorm_forward_eval(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.y * (nwg.x * WG) + gid.x;
    if i >= shape.n * shape.c * shape.s {
        return;
    }
    let ch = (i / shape.s) % shape.c;
    let inv_std = 1.0 / sqrt(eval_var[ch] + shape.eps);
    y[i] = gamma[ch] * ((x[i] - eval_mean[ch]) * inv_std) + beta[ch];
}

// One workgroup: channel ch. Reduces Σ dy and Σ dy·x̂ together, writes dγ and dβ
// (invocation 0) and dx for the channel.
@compute @workgroup_size(WG)
fn batchnorm_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let ch = wid.y * nwg.x + wid.x;
    if ch >= shape.c {
        return;
    }
    let count = shape.n * shape.s;
    let mean = saved_mean[ch];
    let inv_std = saved_invstd[ch];
    var acc = vec2<f32>(0.0, 0.0);
    for (var m = lid; m < count; m = m + WG) {
        let i = index(ch, m);
        let xhat = (x[i] - mean) * inv_std;
        acc = acc + vec2<f32>(dy[i], dy[i] * xhat);
    }
    let sums = workgroup_sum(lid, acc);
    let sum_dy = sums.x;
    let sum_dy_xhat = sums.y;
    let mf = f32(count);
    let k = gamma[ch] * inv_std / mf;
    for (var m = lid; m < count; m = m + WG) {
        let i = index(ch, m);
        let xhat = (x[i] - mean) * inv_std;
        dx[i] = k * (mf * dy[i] - sum_dy - xhat * sum_dy_xhat);
    }
    if lid == 0u {
        if shape.accumulate != 0u {
            dgamma[ch] = dgamma[ch] + sum_dy_xhat;
            dbeta[ch] = dbeta[ch] + sum_dy;
        } else {
            dgamma[ch] = sum_dy_xhat;
            dbeta[ch] = sum_dy;
        }
    }
}
