// 2-D convolution, NCHW, weights [c_out, c_in/groups, kh, kw] (PyTorch), with stride,
// padding, dilation and groups: forward, gradient w.r.t. the input, gradient w.r.t. the
// weights, and the per-channel bias (forward add and gradient).
//
// Algorithm: implicit GEMM (as in cuDNN's IMPLICIT_GEMM and CUTLASS's "implicit GEMM
// convolution"). Each pass is a matrix product per group whose operands are never stored:
// the tiles are gathered from the NCHW tensors on the fly while being staged in workgroup
// memory, then multiplied with the register-blocked inner loop of shaders/matmul.wgsl
// (16×16 invocations, 64×64 tile of C, 4×4 block per invocation, K walked in slices of
// 16). Chosen over im2col + matmul because it needs no scratch buffer (im2col's patch
// matrix is kh·kw times the input: 9× for a 3×3 kernel, and it would have to be written
// and read back through global memory once per pass), and because one dispatch per pass
// keeps the plan simple. The price is index arithmetic in the staging loads, which the
// 16 FMAs per staged pair amortize.
//
// The three GEMMs (g = group, cpg_in = c_in/groups, cpg_out = c_out/groups, P = cpg_in·kh·kw):
// - forward:         y_g(cpg_out, n·oh·ow)  = W_g(cpg_out, P) · patches(P, n·oh·ow)
// - backward input:  dx_g(cpg_in, n·h·w)    = W_gᵀ(cpg_in, cpg_out·kh·kw) · dy⁺(cpg_out·kh·kw, n·h·w)
//   the transposed convolution: dy⁺[(co, ki, kj), (b, iy, ix)] is dy[b, co, oy, ox] where
//   iy = oy·sh − ph + ki·dh (and likewise along x), i.e. oy = (iy + ph − ki·dh)/sh when that
//   division is exact and in range, else 0.
// - backward weight: dW_g(cpg_out, P)       = dy_g(cpg_out, n·oh·ow) · patchesᵀ(n·oh·ow, P)
// Groups run on the z dimension of the grid: grid (⌈N/64⌉, ⌈M/64⌉, groups).
//
// Backward weight has a small M×N (c_out/groups × P) and a long K (n·oh·ow: 131072 for
// resnet-20's first stage at batch 128), so a plain GEMM grid would be a handful of
// workgroups each walking all of K. It is split-K instead: the z dimension carries
// (group, split), each split sums its chunk of K into its own slice of a partial buffer,
// and `conv2d_backward_weight_reduce` adds the slices in split order 0, 1, …. The number of
// splits depends only on the shape (never on the device), so the summation order, and the
// result, are the same on every adapter.
//
// Depthwise convolutions (groups == c_in > 1, one input channel per group) have GEMMs of
// M = c_out/groups rows (1 or 2) and K = kh·kw (9): a 64-row tile would waste over 95% of
// its work, so they get direct kernels instead (`conv2d_depthwise_*`): one invocation per
// output (or input-gradient) element summing its kh·kw taps, and for the weight gradient
// one workgroup per weight element reducing its n·oh·ow products over 256 lanes and a
// fixed halving tree (the bias gradient's scheme).
//
// Determinism: every output element is owned by one invocation that sums its K products in
// ascending k; the bias gradient uses a fixed 256-lane split and a fixed halving tree (the
// CPU twin reproduces both). No atomics anywhere, so results repeat bit for bit.
//
// Gradient convention: dx is overwritten; dW and db are parameter gradients and
// `accumulate` = 1 adds to them.
//
// Bindings (auto layout; each entry uses all of its own):
//   entry                    1 (read)   2 (read_write)   3 (read)
//   conv2d_forward           x          y                w
//   conv2d_backward_input    dy         dx               w
//   conv2d_backward_weight   x          dW or partial    dy
//   …_backward_weight_reduce partial    dW               —
//   conv2d_depthwise_*       as the matching general pass
//   conv2d_bias_forward      bias       y                —
//   conv2d_backward_bias     dy         db               —

struct Params {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    dil_h: u32,
    dil_w: u32,
    oh: u32,
    ow: u32,
    cpg_in: u32,
    cpg_out: u32,
    // P = cpg_in·kh·kw, the patch length.
    plen: u32,
    // 1: dW (db) += gradient; 0: overwrite.
    accumulate: u32,
    // Backward weight, split-K: the n·oh·ow pixels are cut into `splits` chunks of `chunk`
    // (a multiple of TILE_K); splits == 1 writes dW directly.
    splits: u32,
    chunk: u32,
    // Elements of dW, c_out·P (the stride between partial sums).
    wlen: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src_a: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> src_b: array<f32>;

// Tiles as in matmul.wgsl: TILE_M × TILE_N of C per workgroup, TILE_K per staged slice,
// BLOCK × BLOCK of C per invocation.
const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const BLOCK: u32 = 4u;
const WG_X: u32 = 16u;
const THREADS: u32 = 256u;
// Elements of one staged slice per invocation: TILE_M·TILE_K / THREADS.
const LOADS: u32 = 4u;
// Lanes of the bias-gradient reduction (cpu::conv2d::BIAS_REDUCE_THREADS).
const BIAS_WG: u32 = 256u;

// k-major staged slices: a_tile[kk·16 + i] = A[m0 + 4i .. +3, k0 + kk],
// b_tile[kk·16 + j] = B[k0 + kk, n0 + 4j .. +3].
var<workgroup> a_tile: array<vec4<f32>, 256>;
var<workgroup> b_tile: array<vec4<f32>, 256>;
var<workgroup> lanes: array<f32, 256>;

fn put_a(mm: u32, kk: u32, v: f32) {
    a_tile[kk * (TILE_M / 4u) + mm / 4u][mm % 4u] = v;
}

fn put_b(kk: u32, nn: u32, v: f32) {
    b_tile[kk * (TILE_N / 4u) + nn / 4u][nn % 4u] = v;
}

// Patch element (k, col) of group g read from x (src_a): k = (ci, ki, kj) over P,
// col = (b, oy, ox) over n·oh·ow. Positions in the padding read 0.
fn patch_value(g: u32, k: u32, col: u32) -> f32 {
    let ox = col % p.ow;
    let t = col / p.ow;
    let oy = t % p.oh;
    let b = t / p.oh;
    let kj = k % p.kw;
    let t2 = k / p.kw;
    let ki = t2 % p.kh;
    let ci = t2 / p.kh;
    let iy = i32(oy * p.stride_h + ki * p.dil_h) - i32(p.pad_h);
    let ix = i32(ox * p.stride_w + kj * p.dil_w) - i32(p.pad_w);
    if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) {
        return 0.0;
    }
    let c = g * p.cpg_in + ci;
    return src_a[((b * p.c_in + c) * p.h + u32(iy)) * p.w + u32(ix)];
}

// acc[i][j] += Σ_kk A[4ty + i, kk] · B[kk, 4tx + j], kk ascending (matmul.wgsl's loop).
fn multiply_slice(ty: u32, tx: u32, acc: ptr<function, array<vec4<f32>, 4>>) {
    for (var kk = 0u; kk < TILE_K; kk++) {
        let av = a_tile[kk * (TILE_M / 4u) + ty];
        let bv = b_tile[kk * (TILE_N / 4u) + tx];
        (*acc)[0] = fma(vec4<f32>(av.x), bv, (*acc)[0]);
        (*acc)[1] = fma(vec4<f32>(av.y), bv, (*acc)[1]);
        (*acc)[2] = fma(vec4<f32>(av.z), bv, (*acc)[2]);
        (*acc)[3] = fma(vec4<f32>(av.w), bv, (*acc)[3]);
    }
}

// ---- forward: M = cpg_out, N = n·oh·ow, K = P --------------------------------------------

fn fwd_stage(g: u32, m0: u32, n0: u32, k0: u32, t: u32) {
    let ncols = p.n * p.oh * p.ow;
    for (var l = 0u; l < LOADS; l++) {
        let e = l * THREADS + t;
        // A = W_g (cpg_out, P), contiguous along k: consecutive invocations, consecutive k.
        let kk = e % TILE_K;
        let mm = e / TILE_K;
        var va = 0.0;
        if (m0 + mm < p.cpg_out && k0 + kk < p.plen) {
            va = src_b[(g * p.cpg_out + m0 + mm) * p.plen + k0 + kk];
        }
        put_a(mm, kk, va);
        // B = patches (P, n·oh·ow): consecutive invocations, consecutive output pixels.
        let nn = e % TILE_N;
        let kb = e / TILE_N;
        var vb = 0.0;
        if (n0 + nn < ncols && k0 + kb < p.plen) {
            vb = patch_value(g, k0 + kb, n0 + nn);
        }
        put_b(kb, nn, vb);
    }
}

// One invocation: y[b, g·cpg_out + m, oy, ox] for m in m0 + 4·ly .. +3 and the four output
// pixels (b, oy, ox) = n0 + 4·lx .. +3, with m0 = 64·wg.y, n0 = 64·wg.x, g = wg.z.
@compute @workgroup_size(16, 16)
fn conv2d_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = wg.z;
    let m0 = wg.y * TILE_M;
    let n0 = wg.x * TILE_N;
    let t = lid.y * WG_X + lid.x;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.plen; k0 += TILE_K) {
        fwd_stage(g, m0, n0, k0, t);
        workgroupBarrier();
        multiply_slice(lid.y, lid.x, &acc);
        workgroupBarrier();
    }
    let ohw = p.oh * p.ow;
    let ncols = p.n * ohw;
    for (var i = 0u; i < BLOCK; i++) {
        let m = m0 + lid.y * BLOCK + i;
        if (m >= p.cpg_out) {
            break;
        }
        for (var j = 0u; j < BLOCK; j++) {
            let col = n0 + lid.x * BLOCK + j;
            if (col >= ncols) {
                break;
            }
            let b = col / ohw;
            let r = col % ohw;
            dst[(b * p.c_out + g * p.cpg_out + m) * ohw + r] = acc[i][j];
        }
    }
}

// ---- backward input: M = cpg_in, N = n·h·w, K = cpg_out·kh·kw ------------------------------

fn bwd_in_stage(g: u32, m0: u32, n0: u32, k0: u32, t: u32) {
    let khw = p.kh * p.kw;
    let kdim = p.cpg_out * khw;
    let ncols = p.n * p.h * p.w;
    for (var l = 0u; l < LOADS; l++) {
        let e = l * THREADS + t;
        // A[ci, (co, ki, kj)] = W[g·cpg_out + co, ci, ki, kj]: contiguous along (ki, kj).
        let kk = e % TILE_K;
        let mm = e / TILE_K;
        var va = 0.0;
        let ci = m0 + mm;
        let k = k0 + kk;
        if (ci < p.cpg_in && k < kdim) {
            let co = k / khw;
            let r = k % khw;
            va = src_b[((g * p.cpg_out + co) * p.cpg_in + ci) * khw + r];
        }
        put_a(mm, kk, va);
        // B[(co, ki, kj), (b, iy, ix)] = dy[b, g·cpg_out + co, oy, ox] where the forward
        // gathered x[iy, ix] into output (oy, ox) through tap (ki, kj), else 0.
        let nn = e % TILE_N;
        let kb = e / TILE_N;
        var vb = 0.0;
        let col = n0 + nn;
        let kr = k0 + kb;
        if (col < ncols && kr < kdim) {
            let ix = col % p.w;
            let t1 = col / p.w;
            let iy = t1 % p.h;
            let b = t1 / p.h;
            let kj = kr % p.kw;
            let t2 = kr / p.kw;
            let ki = t2 % p.kh;
            let co = t2 / p.kh;
            let ty = i32(iy + p.pad_h) - i32(ki * p.dil_h);
            let tx = i32(ix + p.pad_w) - i32(kj * p.dil_w);
            if (ty >= 0 && tx >= 0) {
                let uy = u32(ty);
                let ux = u32(tx);
                let oy = uy / p.stride_h;
                let ox = ux / p.stride_w;
                if (uy % p.stride_h == 0u && ux % p.stride_w == 0u && oy < p.oh && ox < p.ow) {
                    vb = src_a[((b * p.c_out + g * p.cpg_out + co) * p.oh + oy) * p.ow + ox];
                }
            }
        }
        put_b(kb, nn, vb);
    }
}

// One invocation: dx[b, g·cpg_in + ci, iy, ix] for ci in m0 + 4·ly .. +3 and the four input
// pixels (b, iy, ix) = n0 + 4·lx .. +3, with m0 = 64·wg.y, n0 = 64·wg.x, g = wg.z. Overwrites.
@compute @workgroup_size(16, 16)
fn conv2d_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = wg.z;
    let m0 = wg.y * TILE_M;
    let n0 = wg.x * TILE_N;
    let t = lid.y * WG_X + lid.x;
    let kdim = p.cpg_out * p.kh * p.kw;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < kdim; k0 += TILE_K) {
        bwd_in_stage(g, m0, n0, k0, t);
        workgroupBarrier();
        multiply_slice(lid.y, lid.x, &acc);
        workgroupBarrier();
    }
    let hw = p.h * p.w;
    let ncols = p.n * hw;
    for (var i = 0u; i < BLOCK; i++) {
        let ci = m0 + lid.y * BLOCK + i;
        if (ci >= p.cpg_in) {
            break;
        }
        for (var j = 0u; j < BLOCK; j++) {
            let col = n0 + lid.x * BLOCK + j;
            if (col >= ncols) {
                break;
            }
            let b = col / hw;
            let r = col % hw;
            dst[(b * p.c_in + g * p.cpg_in + ci) * hw + r] = acc[i][j];
        }
    }
}

// ---- backward weight: M = cpg_out, N = P, K = n·oh·ow --------------------------------------

fn bwd_w_stage(g: u32, m0: u32, n0: u32, k0: u32, t: u32) {
    let ohw = p.oh * p.ow;
    let kdim = p.n * ohw;
    for (var l = 0u; l < LOADS; l++) {
        let e = l * THREADS + t;
        // Both operands are contiguous along the output pixel k = (b, oy, ox), so
        // consecutive invocations take consecutive k for both.
        let kk = e % TILE_K;
        let mm = e / TILE_K;
        let k = k0 + kk;
        // A[co, (b, oy, ox)] = dy[b, g·cpg_out + co, oy, ox].
        var va = 0.0;
        if (m0 + mm < p.cpg_out && k < kdim) {
            let b = k / ohw;
            let r = k % ohw;
            va = src_b[(b * p.c_out + g * p.cpg_out + m0 + mm) * ohw + r];
        }
        put_a(mm, kk, va);
        // B[(b, oy, ox), (ci, ki, kj)] = patch element ((ci, ki, kj), (b, oy, ox)).
        var vb = 0.0;
        if (n0 + mm < p.plen && k < kdim) {
            vb = patch_value(g, n0 + mm, k);
        }
        put_b(kk, mm, vb);
    }
}

// One invocation: dW[g·cpg_out + co, (ci, ki, kj)] for co in m0 + 4·ly .. +3 and the four
// patch positions n0 + 4·lx .. +3, with m0 = 64·wg.y, n0 = 64·wg.x, g = wg.z / splits,
// summed over the output pixels of split wg.z % splits in ascending order. With one split
// it writes dW (adding when `accumulate`); with several it writes (overwrites) the split's
// slice partial[split·wlen ..] of the same binding, for conv2d_backward_weight_reduce.
@compute @workgroup_size(16, 16)
fn conv2d_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = wg.z / p.splits;
    let split = wg.z % p.splits;
    let m0 = wg.y * TILE_M;
    let n0 = wg.x * TILE_N;
    let t = lid.y * WG_X + lid.x;
    let kdim = p.n * p.oh * p.ow;
    let k_begin = split * p.chunk;
    let k_end = min(kdim, k_begin + p.chunk);
    var acc: array<vec4<f32>, 4>;
    // chunk is a multiple of TILE_K, so every slice but the very last (staged with zeros
    // past kdim) lies inside this split's chunk: no product is counted twice.
    for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        bwd_w_stage(g, m0, n0, k0, t);
        workgroupBarrier();
        multiply_slice(lid.y, lid.x, &acc);
        workgroupBarrier();
    }
    for (var i = 0u; i < BLOCK; i++) {
        let co = m0 + lid.y * BLOCK + i;
        if (co >= p.cpg_out) {
            break;
        }
        for (var j = 0u; j < BLOCK; j++) {
            let col = n0 + lid.x * BLOCK + j;
            if (col >= p.plen) {
                break;
            }
            let idx = (g * p.cpg_out + co) * p.plen + col;
            if (p.splits > 1u) {
                dst[split * p.wlen + idx] = acc[i][j];
            } else if (p.accumulate != 0u) {
                dst[idx] = dst[idx] + acc[i][j];
            } else {
                dst[idx] = acc[i][j];
            }
        }
    }
}

// One invocation: one element i of dW, dW[i] (+)= Σ_split partial[split·wlen + i], splits
// added in ascending order (binding 1 is the partial buffer, binding 2 dW).
@compute @workgroup_size(256)
fn conv2d_backward_weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * (nwg.x * 256u) + gid.x;
    if (i >= p.wlen) {
        return;
    }
    var sum = src_a[i];
    for (var s = 1u; s < p.splits; s++) {
        sum = sum + src_a[s * p.wlen + i];
    }
    if (p.accumulate != 0u) {
        dst[i] = dst[i] + sum;
    } else {
        dst[i] = sum;
    }
}

// ---- bias ----------------------------------------------------------------------------------

// One invocation: one element y[b, c, oy, ox] += bias[c], flat index on a 2-D grid of
// workgroups (x fastest) so large outputs stay under the per-dimension limit.
@compute @workgroup_size(256)
fn conv2d_bias_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * (nwg.x * 256u) + gid.x;
    let ohw = p.oh * p.ow;
    if (i >= p.n * p.c_out * ohw) {
        return;
    }
    dst[i] = dst[i] + src_a[(i / ohw) % p.c_out];
}

// One workgroup: one channel c = wg.x, db[c] (+)= Σ_{b, oy, ox} dy[b, c, oy, ox]. Lane t sums
// the channel's values t, t + 256, … in (b, oy, ox) order; the lanes are merged by a fixed
// halving tree. Forward was y[b, c, ·] = … + bias[c], so ∂L/∂bias[c] = Σ dy[b, c, ·].
@compute @workgroup_size(256)
fn conv2d_backward_bias(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wg.x;
    let t = lid.x;
    let ohw = p.oh * p.ow;
    let count = p.n * ohw;
    var sum = 0.0;
    for (var i = t; i < count; i += BIAS_WG) {
        let b = i / ohw;
        let r = i % ohw;
        sum = sum + src_a[(b * p.c_out + c) * ohw + r];
    }
    lanes[t] = sum;
    workgroupBarrier();
    for (var half = BIAS_WG / 2u; half > 0u; half = half / 2u) {
        if (t < half) {
            lanes[t] = lanes[t] + lanes[t + half];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        if (p.accumulate != 0u) {
            dst[c] = dst[c] + lanes[0];
        } else {
            dst[c] = lanes[0];
        }
    }
}

// ---- depthwise (groups == c_in, cpg_in == 1) ----------------------------------------------

// One invocation: y[b, co, oy, ox] = Σ_{ki, kj} x[b, g, iy, ix]·w[co, 0, ki, kj] with
// g = co / cpg_out, taps in ascending (ki, kj); flat index on a 2-D grid of workgroups.
@compute @workgroup_size(256)
fn conv2d_depthwise_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * (nwg.x * 256u) + gid.x;
    if (i >= p.n * p.c_out * p.oh * p.ow) {
        return;
    }
    let ox = i % p.ow;
    let t = i / p.ow;
    let oy = t % p.oh;
    let t2 = t / p.oh;
    let co = t2 % p.c_out;
    let b = t2 / p.c_out;
    let plane = (b * p.c_in + co / p.cpg_out) * p.h;
    var sum = 0.0;
    for (var ki = 0u; ki < p.kh; ki++) {
        let iy = i32(oy * p.stride_h + ki * p.dil_h) - i32(p.pad_h);
        if (iy < 0 || iy >= i32(p.h)) {
            continue;
        }
        for (var kj = 0u; kj < p.kw; kj++) {
            let ix = i32(ox * p.stride_w + kj * p.dil_w) - i32(p.pad_w);
            if (ix < 0 || ix >= i32(p.w)) {
                continue;
            }
            let wv = src_b[(co * p.kh + ki) * p.kw + kj];
            sum = fma(src_a[(plane + u32(iy)) * p.w + u32(ix)], wv, sum);
        }
    }
    dst[i] = sum;
}

// One invocation: dx[b, c, iy, ix] = Σ_{co of group c, ki, kj} dy[b, co, oy, ox]·w[co, 0, ki, kj]
// over the taps whose forward read x[b, c, iy, ix]: oy = (iy + ph − ki·dh)/sh exact and in
// range (likewise ox). Overwrites.
@compute @workgroup_size(256)
fn conv2d_depthwise_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * (nwg.x * 256u) + gid.x;
    if (i >= p.n * p.c_in * p.h * p.w) {
        return;
    }
    let ix = i % p.w;
    let t = i / p.w;
    let iy = t % p.h;
    let t2 = t / p.h;
    let c = t2 % p.c_in;
    let b = t2 / p.c_in;
    var sum = 0.0;
    for (var m = 0u; m < p.cpg_out; m++) {
        let co = c * p.cpg_out + m;
        for (var ki = 0u; ki < p.kh; ki++) {
            let ty = i32(iy + p.pad_h) - i32(ki * p.dil_h);
            if (ty < 0 || u32(ty) % p.stride_h != 0u || u32(ty) / p.stride_h >= p.oh) {
                continue;
            }
            let oy = u32(ty) / p.stride_h;
            for (var kj = 0u; kj < p.kw; kj++) {
                let tx = i32(ix + p.pad_w) - i32(kj * p.dil_w);
                if (tx < 0 || u32(tx) % p.stride_w != 0u || u32(tx) / p.stride_w >= p.ow) {
                    continue;
                }
                let ox = u32(tx) / p.stride_w;
                let wv = src_b[(co * p.kh + ki) * p.kw + kj];
                sum = fma(src_a[((b * p.c_out + co) * p.oh + oy) * p.ow + ox], wv, sum);
            }
        }
    }
    dst[i] = sum;
}

// One workgroup: one weight element e = (co, ki, kj), flat over a 2-D grid of workgroups;
// dW[e] (+)= Σ_{b, oy, ox} dy[b, co, oy, ox]·x[b, g, iy, ix]. Lane t sums pixels t, t + 256,
// … in (b, oy, ox) order; the lanes merge by the fixed halving tree.
@compute @workgroup_size(256)
fn conv2d_depthwise_backward_weight(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let e = wg.y * nwg.x + wg.x;
    let t = lid.x;
    let valid = e < p.wlen;
    let kj = e % p.kw;
    let ki = (e / p.kw) % p.kh;
    let co = e / (p.kw * p.kh);
    let plane = co / p.cpg_out;
    let ohw = p.oh * p.ow;
    var sum = 0.0;
    if (valid) {
        for (var k = t; k < p.n * ohw; k += BIAS_WG) {
            let b = k / ohw;
            let r = k % ohw;
            let oy = r / p.ow;
            let ox = r % p.ow;
            let iy = i32(oy * p.stride_h + ki * p.dil_h) - i32(p.pad_h);
            let ix = i32(ox * p.stride_w + kj * p.dil_w) - i32(p.pad_w);
            if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) {
                continue;
            }
            let xv = src_a[((b * p.c_in + plane) * p.h + u32(iy)) * p.w + u32(ix)];
            sum = fma(src_b[(b * p.c_out + co) * ohw + r], xv, sum);
        }
    }
    lanes[t] = sum;
    workgroupBarrier();
    for (var half = BIAS_WG / 2u; half > 0u; half = half / 2u) {
        if (t < half) {
            lanes[t] = lanes[t] + lanes[t + half];
        }
        workgroupBarrier();
    }
    if (valid && t == 0u) {
        if (p.accumulate != 0u) {
            dst[e] = dst[e] + lanes[0];
        } else {
            dst[e] = lanes[0];
        }
    }
}
