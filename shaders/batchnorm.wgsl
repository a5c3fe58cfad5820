// Batch normalization (Ioffe & Szegedy 2015) with PyTorch's semantics, for nn.BatchNorm1d
// on [N, C] and nn.BatchNorm2d on NCHW alike: x is [n, c, s] (s = H·W, or 1 for 1-D) and
// every channel c is normalized over its M = n·s values.
//
// Training forward: per channel, mean and the biased variance var = Σ(x − mean)² / M,
// x̂ = (x − mean)·inv_std with inv_std = 1/sqrt(var + eps), y = γ·x̂ + β. mean and inv_std
// are saved for the backward pass; running_mean and running_var move by `momentum` towards
// the batch mean and the UNBIASED variance var·M/(M − 1), as torch does. Evaluation forward
// normalizes with the running statistics instead.
//
// Backward (training mode, where mean and var depend on x):
//   dβ = Σ dy, dγ = Σ dy·x̂,
//   dx = (γ·inv_std / M)·(M·dy − Σ dy − x̂·Σ dy·x̂).
// (From y = γx̂ + β: ∂L/∂x̂ = γ·dy; x̂ = (x − μ)·r with ∂μ/∂x_i = 1/M and
// ∂r/∂x_i = −r³(x_i − μ)/M, which collects into the expression above.)
//
// Work split. A channel holds up to millions of values (resnet-20 at batch 128: 131 072 in
// each of 16 channels), so one workgroup per channel would leave most of a GPU idle.
// Each pass is two dispatches instead:
//   partial   one workgroup per (channel, chunk): the channel's m = ni·s + si are cut into
//             `chunks` runs of `chunk` consecutive m; each workgroup reduces its run;
//   apply     one workgroup per (channel, run) combines its channel's run partials
//             (chunks ≤ WG) in a fixed tree, every workgroup of the channel the same way
//             and so to the same bits, then writes the run's y (or dx); the channel's first
//             run also writes the channel's results (saved mean and inv_std, running
//             statistics; dγ, dβ). Combining ≤ 256 partials again per run costs less than
//             the dispatch (and barrier) a separate per-channel pass would.
// The forward reduces (count, mean, M2) moments: each invocation runs Welford's update over
// m = lo + lid, lo + lid + WG, … in order, and the workgroup combines them in a tree with
// Chan et al.'s pairwise formula, so no E[x²] − E[x]² cancellation happens anywhere. The
// backward reduces (Σ dy, Σ dy·x̂) the same way with plain sums. Every order is fixed (no
// atomics): results are reproducible, and the CPU twin (cpu/batchnorm.rs) follows it.
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
    // Runs per channel (≤ WG) and consecutive m per run.
    chunks: u32,
    chunk: u32,
    // The activation the `_act` entries apply to y into z (activation_math.wgsl's ACT_*
    // code and its parameter); the other entries ignore it.
    act_code: u32,
    act_param: f32,
    // 1: batchnorm_backward_partial_act also writes each formed dy to dy_copy (the gradient
    // of a tensor whose readers are this BatchNorm's output's reader and an identity
    // shortcut, which receives the same values); 0: dy_copy is a placeholder, untouched.
    copy_dy: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> shape: Shape;
@group(0) @binding(1) var<storage, read> x: array<f32>;

// batchnorm_forward_partial: x, then the moments (count, mean, M2, 0) of each run
// [c, chunks].
@group(0) @binding(2) var<storage, read_write> moments_out: array<vec4<f32>>;

// batchnorm_forward_apply(_act): x, the runs' moments, the channel's saved mean and
// inv_std and running statistics (written by its first run), γ, β, y (, z).
@group(0) @binding(2) var<storage, read> runs_moments: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> save_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> save_invstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(7) var<storage, read> apply_gamma: array<f32>;
@group(0) @binding(8) var<storage, read> apply_beta: array<f32>;
@group(0) @binding(9) var<storage, read_write> apply_y: array<f32>;
@group(0) @binding(10) var<storage, read_write> apply_z: array<f32>;

// batchnorm_forward_eval(_act): x, the running mean and variance, γ, β, y (, z).
// batchnorm_backward_*: the saved mean and inv_std at 2 and 3.
@group(0) @binding(2) var<storage, read> mean_in: array<f32>;
@group(0) @binding(3) var<storage, read> invstd_in: array<f32>;
@group(0) @binding(3) var<storage, read> eval_var: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
// z = f(y) of batchnorm_forward_eval_act (the BatchNorm's following activation).
@group(0) @binding(7) var<storage, read_write> z: array<f32>;

// batchnorm_backward_partial: x, the saved mean and inv_std, dy, then (Σ dy, Σ dy·x̂) of
// each run [c, chunks].
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> sums_out: array<vec2<f32>>;

// batchnorm_backward_partial_act: the same, with dy formed first from the activation after
// the BatchNorm: dy = f'-backward of (its input, its output, its output's gradient), written
// to dy_formed (the BatchNorm's output gradient, which the statistics and apply read).
@group(0) @binding(4) var<storage, read_write> dy_formed: array<f32>;
@group(0) @binding(6) var<storage, read> act_x: array<f32>;
@group(0) @binding(7) var<storage, read> act_y: array<f32>;
@group(0) @binding(8) var<storage, read> act_dy: array<f32>;
@group(0) @binding(9) var<storage, read_write> dy_copy: array<f32>;

// batchnorm_backward_apply: x, the saved mean and inv_std, dy, the runs' sums, γ, dx, then
// dγ and dβ (written by each channel's first run).
@group(0) @binding(5) var<storage, read> runs_sums: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read> bgamma: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
@group(0) @binding(8) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(9) var<storage, read_write> dbeta: array<f32>;

// combine, workgroup_moments and workgroup_sum: shaders/workgroup_tree.wgsl (or its subgroup
// build), which src/gpu/shaders.rs appends to this file.

// An invocation's walk over its values of one run of channel ch: m = lo + lid,
// lo + lid + WG, … below hi, where the m-th value (m = ni·s + si) sits at flat index
// (ni·c + ch)·s + si. The walk keeps (ni, si) and steps it by WG = q·s + r, so a value costs
// two adds and a compare where dividing m by s would cost a long sequence on most GPUs.
// Loops take four values at a time while four are left (their loads in flight together),
// then one at a time; either way the values are visited in the order of m.
struct Walk {
    ch: u32,
    ni: u32,
    si: u32,
    q: u32,
    r: u32,
    left: u32,
}

fn walk_start(ch: u32, lo: u32, hi: u32, lid: u32) -> Walk {
    let m = lo + lid;
    let ni = m / shape.s;
    let q = WG / shape.s;
    var left = 0u;
    if m < hi {
        left = (hi - 1u - m) / WG + 1u;
    }
    return Walk(ch, ni, m - ni * shape.s, q, WG - q * shape.s, left);
}

// The flat index of the walk's next value; advances the walk.
fn walk_next(w: ptr<function, Walk>) -> u32 {
    let i = ((*w).ni * shape.c + (*w).ch) * shape.s + (*w).si;
    var si = (*w).si + (*w).r;
    var ni = (*w).ni + (*w).q;
    if si >= shape.s {
        si -= shape.s;
        ni += 1u;
    }
    (*w).si = si;
    (*w).ni = ni;
    (*w).left -= 1u;
    return i;
}

// The flat indices of the walk's next four values (call only while left ≥ 4).
fn walk_next4(w: ptr<function, Walk>) -> vec4<u32> {
    let a = walk_next(w);
    let b = walk_next(w);
    let c = walk_next(w);
    return vec4<u32>(a, b, c, walk_next(w));
}

fn load4(i: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(x[i.x], x[i.y], x[i.z], x[i.w]);
}

// The flat workgroup index of a grid that may be 2-D (more than 65 535 workgroups).
fn flat(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// The run a workgroup of the partial and apply passes owns: (channel, first m, end m),
// with (channel, run) = divmod(flat index, chunks). Call only with f < c·chunks.
fn run_of(f: u32) -> vec3<u32> {
    let ch = f / shape.chunks;
    let lo = (f - ch * shape.chunks) * shape.chunk;
    return vec3<u32>(ch, lo, min(lo + shape.chunk, shape.n * shape.s));
}

// Welford's update of (count, mean, M2) by one value.
fn welford(acc: vec3<f32>, v: f32) -> vec3<f32> {
    let n = acc.x + 1.0;
    let d = v - acc.y;
    let mean = acc.y + d / n;
    return vec3<f32>(n, mean, acc.z + d * (v - mean));
}

// One workgroup: one run of one channel (`run_of`).
@compute @workgroup_size(WG)
fn batchnorm_forward_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let f = flat(wid, nwg);
    if f >= shape.c * shape.chunks {
        return;
    }
    let run = run_of(f);
    let ch = run.x;
    var acc = vec3<f32>(0.0, 0.0, 0.0);
    var w = walk_start(ch, run.y, run.z, lid);
    while w.left >= 4u {
        let v = load4(walk_next4(&w));
        acc = welford(welford(welford(welford(acc, v.x), v.y), v.z), v.w);
    }
    while w.left > 0u {
        acc = welford(acc, x[walk_next(&w)]);
    }
    let total = workgroup_moments(lid, acc);
    if lid == 0u {
        moments_out[f] = vec4<f32>(total, 0.0);
    }
}

// The normalization of run f (of channel ch, run k): combines the channel's run moments
// in the fixed tree, and in the channel's first run (k = 0) saves mean and inv_std and
// moves the running statistics. Returns (mean, inv_std). Every invocation must call it.
fn normalize_run(f: u32, ch: u32, lid: u32) -> vec2<f32> {
    var v = vec3<f32>(0.0, 0.0, 0.0);
    if lid < shape.chunks {
        v = runs_moments[ch * shape.chunks + lid].xyz;
    }
    let total = workgroup_moments_n(lid, v, shape.chunks);
    let count = f32(shape.n * shape.s);
    let var_b = total.z / count;
    let inv_std = 1.0 / sqrt(var_b + shape.eps);
    if lid == 0u && f == ch * shape.chunks {
        save_mean[ch] = total.y;
        save_invstd[ch] = inv_std;
        // The launcher refuses M = 1 (torch: "Expected more than 1 value per channel").
        let unbiased = total.z / (count - 1.0);
        let keep = 1.0 - shape.momentum;
        running_mean[ch] = keep * running_mean[ch] + shape.momentum * total.y;
        running_var[ch] = keep * running_var[ch] + shape.momentum * unbiased;
    }
    return vec2<f32>(total.y, inv_std);
}

// What the apply of run f needs: its channel and range of m, the channel's statistics
// (normalize_run), γ and β. Every invocation must call it.
struct ApplyRun {
    ch: u32,
    lo: u32,
    hi: u32,
    mean: f32,
    inv_std: f32,
    g: f32,
    b: f32,
}

fn apply_run(f: u32, lid: u32) -> ApplyRun {
    let run = run_of(f);
    let ch = run.x;
    let stats = normalize_run(f, ch, lid);
    return ApplyRun(ch, run.y, run.z, stats.x, stats.y, apply_gamma[ch], apply_beta[ch]);
}

// y = γ·(x − mean)·inv_std + β for the run's channel.
fn normalized(a: ApplyRun, v: f32) -> f32 {
    return a.g * ((v - a.mean) * a.inv_std) + a.b;
}

// One workgroup: run k of channel ch, as in the partial pass. y = γ·(x − mean)·inv_std + β.
@compute @workgroup_size(WG)
fn batchnorm_forward_apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let f = flat(wid, nwg);
    if f >= shape.c * shape.chunks {
        return;
    }
    let a = apply_run(f, lid);
    var w = walk_start(a.ch, a.lo, a.hi, lid);
    while w.left >= 4u {
        let i = walk_next4(&w);
        let v = load4(i);
        apply_y[i.x] = normalized(a, v.x);
        apply_y[i.y] = normalized(a, v.y);
        apply_y[i.z] = normalized(a, v.z);
        apply_y[i.w] = normalized(a, v.w);
    }
    while w.left > 0u {
        let i = walk_next(&w);
        apply_y[i] = normalized(a, x[i]);
    }
}

// y[i] = v and z[i] = f(v), the activation after the BatchNorm.
fn store_y_z(i: u32, v: f32) {
    apply_y[i] = v;
    apply_z[i] = act_forward(shape.act_code, shape.act_param, v);
}

// batchnorm_forward_apply and the activation after it in one pass: y as there, and
// z = f(y), the same bits as activation.wgsl's forward of y (same function, same input).
@compute @workgroup_size(WG)
fn batchnorm_forward_apply_act(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let f = flat(wid, nwg);
    if f >= shape.c * shape.chunks {
        return;
    }
    let a = apply_run(f, lid);
    var w = walk_start(a.ch, a.lo, a.hi, lid);
    while w.left >= 4u {
        let i = walk_next4(&w);
        let v = load4(i);
        store_y_z(i.x, normalized(a, v.x));
        store_y_z(i.y, normalized(a, v.y));
        store_y_z(i.z, normalized(a, v.z));
        store_y_z(i.w, normalized(a, v.w));
    }
    while w.left > 0u {
        let i = walk_next(&w);
        store_y_z(i, normalized(a, x[i]));
    }
}

// y[i] = γ·(x[i] − running_mean)/sqrt(running_var + eps) + β, for the eval entries.
fn eval_value(i: u32) -> f32 {
    let ch = (i / shape.s) % shape.c;
    let inv_std = 1.0 / sqrt(eval_var[ch] + shape.eps);
    return gamma[ch] * ((x[i] - mean_in[ch]) * inv_std) + beta[ch];
}

// One invocation: y[i] = eval_value(i).
@compute @workgroup_size(WG)
fn batchnorm_forward_eval(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.y * (nwg.x * WG) + gid.x;
    if i >= shape.n * shape.c * shape.s {
        return;
    }
    y[i] = eval_value(i);
}

// batchnorm_forward_eval and the activation after it: y as there, z = f(y).
@compute @workgroup_size(WG)
fn batchnorm_forward_eval_act(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.y * (nwg.x * WG) + gid.x;
    if i >= shape.n * shape.c * shape.s {
        return;
    }
    let v = eval_value(i);
    y[i] = v;
    z[i] = act_forward(shape.act_code, shape.act_param, v);
}

// Run f's saved statistics: (mean, inv_std) of its channel.
fn saved_stats(f: u32) -> vec2<f32> {
    let ch = run_of(f).x;
    return vec2<f32>(mean_in[ch], invstd_in[ch]);
}

// (dy, dy·x̂) of one value v with gradient g, x̂ from the saved statistics st.
fn dy_terms(g: f32, v: f32, st: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(g, g * ((v - st.x) * st.y));
}

// Combines the lanes' (Σ dy, Σ dy·x̂) of run f and stores them. Every invocation calls it.
fn store_run_sums(f: u32, lid: u32, acc: vec2<f32>) {
    let total = workgroup_sum(lid, acc);
    if lid == 0u {
        sums_out[f] = total;
    }
}

// One workgroup: run k of channel ch. (Σ dy, Σ dy·x̂) over the run.
@compute @workgroup_size(WG)
fn batchnorm_backward_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let f = flat(wid, nwg);
    if f >= shape.c * shape.chunks {
        return;
    }
    let run = run_of(f);
    let st = saved_stats(f);
    var acc = vec2<f32>(0.0, 0.0);
    var w = walk_start(run.x, run.y, run.z, lid);
    while w.left >= 4u {
        let i = walk_next4(&w);
        let g = vec4<f32>(dy[i.x], dy[i.y], dy[i.z], dy[i.w]);
        let v = load4(i);
        // Added in order, as one value at a time would be.
        acc = acc + dy_terms(g.x, v.x, st) + dy_terms(g.y, v.y, st) + dy_terms(g.z, v.z, st) +
            dy_terms(g.w, v.w, st);
    }
    while w.left > 0u {
        let i = walk_next(&w);
        acc = acc + dy_terms(dy[i], x[i], st);
    }
    store_run_sums(f, lid, acc);
}

// Element i's dy formed by the activation's backward (the bits activation.wgsl's backward
// writes), stored to dy_formed and, where asked, to dy_copy.
fn form_dy(i: u32) -> f32 {
    let g = act_backward(shape.act_code, shape.act_param, act_x[i], act_y[i], act_dy[i]);
    dy_formed[i] = g;
    if shape.copy_dy != 0u {
        dy_copy[i] = g;
    }
    return g;
}

// batchnorm_backward_partial with the activation's backward in front: each element's dy is
// act_backward(…) (the bits activation.wgsl's backward writes), stored, then summed alike.
@compute @workgroup_size(WG)
fn batchnorm_backward_partial_act(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let f = flat(wid, nwg);
    if f >= shape.c * shape.chunks {
        return;
    }
    let run = run_of(f);
    let st = saved_stats(f);
    var acc = vec2<f32>(0.0, 0.0);
    var w = walk_start(run.x, run.y, run.z, lid);
    while w.left >= 4u {
        let i = walk_next4(&w);
        let g = vec4<f32>(form_dy(i.x), form_dy(i.y), form_dy(i.z), form_dy(i.w));
        let v = load4(i);
        // Added in order, as one value at a time would be.
        acc = acc + dy_terms(g.x, v.x, st) + dy_terms(g.y, v.y, st) + dy_terms(g.z, v.z, st) +
            dy_terms(g.w, v.w, st);
    }
    while w.left > 0u {
        let i = walk_next(&w);
        acc = acc + dy_terms(form_dy(i), x[i], st);
    }
    store_run_sums(f, lid, acc);
}

// One workgroup: run k of channel ch. Sums the channel's run sums in the fixed tree (the
// channel's first run writes dβ, dγ), then dx = (γ·inv_std / M)·(M·dy − Σ dy − x̂·Σ dy·x̂).
@compute @workgroup_size(WG)
fn batchnorm_backward_apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let f = flat(wid, nwg);
    if f >= shape.c * shape.chunks {
        return;
    }
    let run = run_of(f);
    let ch = run.x;
    var v = vec2<f32>(0.0, 0.0);
    if lid < shape.chunks {
        v = runs_sums[ch * shape.chunks + lid];
    }
    let t = workgroup_sum_n(lid, v, shape.chunks);
    if lid == 0u && f == ch * shape.chunks {
        if shape.accumulate != 0u {
            dgamma[ch] = dgamma[ch] + t.y;
            dbeta[ch] = dbeta[ch] + t.x;
        } else {
            dgamma[ch] = t.y;
            dbeta[ch] = t.x;
        }
    }
    let mean = mean_in[ch];
    let inv_std = invstd_in[ch];
    let mf = f32(shape.n * shape.s);
    let k = bgamma[ch] * inv_std / mf;
    var w = walk_start(ch, run.y, run.z, lid);
    while w.left >= 4u {
        let i = walk_next4(&w);
        let g = vec4<f32>(dy[i.x], dy[i.y], dy[i.z], dy[i.w]);
        let dx4 = k * (mf * g - t.x - ((load4(i) - mean) * inv_std) * t.y);
        dx[i.x] = dx4.x;
        dx[i.y] = dx4.y;
        dx[i.z] = dx4.z;
        dx[i.w] = dx4.w;
    }
    while w.left > 0u {
        let i = walk_next(&w);
        let xhat = (x[i] - mean) * inv_std;
        dx[i] = k * (mf * dy[i] - t.x - xhat * t.y);
    }
}
