// 2-D convolution, NCHW, weights [c_out, c_in/groups, kh, kw] (PyTorch), with stride,
// padding, dilation and groups: forward, gradient w.r.t. the input, gradient w.r.t. the
// weights, and the per-channel bias (forward add and gradient).
//
// Algorithm: implicit GEMM (as in cuDNN's IMPLICIT_GEMM and CUTLASS's "implicit GEMM
// convolution"). Each pass is a matrix product per group whose operands are never stored:
// the tiles are gathered from the NCHW tensors on the fly while being staged in workgroup
// memory, then multiplied with the register-blocked inner loop of shaders/matmul.wgsl
// (16×16 invocations, 64×64 tile of C, 4×4 block per invocation, K walked in slices of
// 16; or a 16×256 tile for GEMMs of at most 32 rows, see the tile constants). Chosen over
// im2col + matmul because it needs no scratch buffer (im2col's patch matrix is kh·kw times
// the input: 9× for a 3×3 kernel, written and read back through global memory once per
// pass) and needs one dispatch per pass. The price is index arithmetic in the staging
// loads, which the 16 FMAs per staged pair amortize. The three passes share one staging,
// product and store path per tile shape (`gemm_square`, `gemm_wide`), parameterized by
// which GEMM's operands `a_val` / `b_val` gather and where `store` writes.
//
// The three GEMMs (g = group, cpg_in = c_in/groups, cpg_out = c_out/groups, P = cpg_in·kh·kw):
// - forward:         y_g(cpg_out, n·oh·ow)  = W_g(cpg_out, P) · patches(P, n·oh·ow)
// - backward input:  dx_g(cpg_in, n·h·w)    = W_gᵀ(cpg_in, cpg_out·kh·kw) · dy⁺(cpg_out·kh·kw, n·h·w)
//   the transposed convolution: dy⁺[(co, ki, kj), (b, iy, ix)] is dy[b, co, oy, ox] where
//   iy = oy·sh − ph + ki·dh (and likewise along x), i.e. oy = (iy + ph − ki·dh)/sh when that
//   division is exact and in range, else 0.
// - backward weight: dW_g(cpg_out, P)       = dy_g(cpg_out, n·oh·ow) · patchesᵀ(n·oh·ow, P)
// Groups run on the z dimension of the grid: grid (⌈N/64⌉, ⌈M/64⌉, groups), or
// (⌈N/256⌉, ⌈M/16⌉, groups) for the wide tiles.
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
// fixed halving tree (the bias gradient's scheme). A depthwise pass does about as many
// multiply-adds as it moves values, so it is bound by memory, not arithmetic: the same
// split of the work as PyTorch's CUDA depthwise kernels (a thread per element; a block per
// weight element), which differ in fixing the kernel size at compile time for 1×1, 3×3
// and 5×5 so that the tap loops unroll.
//
// Determinism: every output element is owned by one invocation that sums its K products in
// ascending k (within its split, for the weight gradient; splits are then added in order); the bias gradient uses a fixed 256-lane split and a fixed halving tree (the
// CPU twin reproduces both). No atomics anywhere, so results repeat bit for bit.
//
// Gradient convention: dx, dW and db are overwritten, or added to when `accumulate` = 1
// (dW and db of a parameter used twice, dx of a tensor read by several nodes).
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

// Two tile shapes, both 256 invocations with a 4×4 register block each:
// - square, as in matmul.wgsl: a 64×64 tile of C, 16×16 invocations, K slices of 16;
// - wide, for GEMMs of at most 32 rows (resnet's 16- and 32-channel stages, whose rows a
//   64-row tile would leave 75% or 50% idle): a 16×256 tile, 64×4 invocations, K slices
//   of 8 (so its staged slices stay within 8.5 KiB of workgroup memory).
const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const WIDE_M: u32 = 16u;
const WIDE_N: u32 = 256u;
const WIDE_K: u32 = 8u;
const BLOCK: u32 = 4u;
const THREADS: u32 = 256u;
// Lanes of the bias-gradient reduction (cpu::conv2d::BIAS_REDUCE_THREADS).
const BIAS_WG: u32 = 256u;

// Which GEMM a shared routine computes (argument `which`, uniform, so its switches do not
// diverge; a constant at every call site, which the compiler can fold).
const FWD: u32 = 0u;
const BWD_IN: u32 = 1u;
const BWD_W: u32 = 2u;

// k-major staged slices. Square: a_tile[kk·17 + i] = A[m0 + 4i .. +3, k0 + kk],
// b_tile[kk·17 + j] = B[k0 + kk, n0 + 4j .. +3]. Wide: a_wide[kk·5 + i], b_wide[kk·65 + j].
// Each k's row has one vec4 of padding (never read), so that the stores of consecutive
// invocations along k (A always, B for the weight gradient) spread over the banks of
// workgroup memory instead of falling into one (see shaders/matmul.wgsl).
const SQUARE_ROW: u32 = 17u; // TILE_M / 4 + 1 = TILE_N / 4 + 1
const WIDE_A_ROW: u32 = 5u; // WIDE_M / 4 + 1
const WIDE_B_ROW: u32 = 65u; // WIDE_N / 4 + 1
var<workgroup> a_tile: array<vec4<f32>, 272>; // TILE_K · SQUARE_ROW
var<workgroup> b_tile: array<vec4<f32>, 272>;
var<workgroup> a_wide: array<vec4<f32>, 40>; // WIDE_K · WIDE_A_ROW
var<workgroup> b_wide: array<vec4<f32>, 520>; // WIDE_K · WIDE_B_ROW
var<workgroup> lanes: array<f32, 256>;

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

// Sizes (M, N, K) of each GEMM, per group.
fn gemm_m(which: u32) -> u32 {
    if (which == BWD_IN) {
        return p.cpg_in;
    }
    return p.cpg_out;
}

fn gemm_n(which: u32) -> u32 {
    switch which {
        case 0u: { return p.n * p.oh * p.ow; }
        case 1u: { return p.n * p.h * p.w; }
        default: { return p.plen; }
    }
}

fn gemm_k(which: u32) -> u32 {
    switch which {
        case 0u: { return p.plen; }
        case 1u: { return p.cpg_out * p.kh * p.kw; }
        default: { return p.n * p.oh * p.ow; }
    }
}

// A[m, k] of group g, 0 outside the matrix.
//   forward:         W_g[m, k]                          (m = co, k = (ci, ki, kj))
//   backward input:  W[g·cpg_out + co, m, ki, kj]       (m = ci, k = (co, ki, kj))
//   backward weight: dy[b, g·cpg_out + m, oy, ox]       (m = co, k = (b, oy, ox))
fn a_val(which: u32, g: u32, m: u32, k: u32) -> f32 {
    if (m >= gemm_m(which) || k >= gemm_k(which)) {
        return 0.0;
    }
    switch which {
        case 0u: {
            return src_b[(g * p.cpg_out + m) * p.plen + k];
        }
        case 1u: {
            let khw = p.kh * p.kw;
            return src_b[((g * p.cpg_out + k / khw) * p.cpg_in + m) * khw + k % khw];
        }
        default: {
            let ohw = p.oh * p.ow;
            return src_b[((k / ohw) * p.c_out + g * p.cpg_out + m) * ohw + k % ohw];
        }
    }
}

// B[k, col] of group g, 0 outside the matrix.
//   forward:         patch (k, col)                      (col = (b, oy, ox))
//   backward input:  dy[b, g·cpg_out + co, oy, ox] where the forward gathered x[b, ·, iy, ix]
//                    into output (oy, ox) through tap (ki, kj), i.e. oy = (iy + ph − ki·dh)/sh
//                    exact and in range (likewise ox), else 0 (k = (co, ki, kj),
//                    col = (b, iy, ix)): the transposed convolution
//   backward weight: patch (col, k)                      (k = (b, oy, ox), col = (ci, ki, kj))
fn b_val(which: u32, g: u32, k: u32, col: u32) -> f32 {
    if (k >= gemm_k(which) || col >= gemm_n(which)) {
        return 0.0;
    }
    switch which {
        case 0u: {
            return patch_value(g, k, col);
        }
        case 1u: {
            let ix = col % p.w;
            let t1 = col / p.w;
            let iy = t1 % p.h;
            let b = t1 / p.h;
            let kj = k % p.kw;
            let t2 = k / p.kw;
            let ki = t2 % p.kh;
            let co = t2 / p.kh;
            let ty = i32(iy + p.pad_h) - i32(ki * p.dil_h);
            let tx = i32(ix + p.pad_w) - i32(kj * p.dil_w);
            if (ty < 0 || tx < 0) {
                return 0.0;
            }
            let uy = u32(ty);
            let ux = u32(tx);
            let oy = uy / p.stride_h;
            let ox = ux / p.stride_w;
            if (uy % p.stride_h != 0u || ux % p.stride_w != 0u || oy >= p.oh || ox >= p.ow) {
                return 0.0;
            }
            return src_a[((b * p.c_out + g * p.cpg_out + co) * p.oh + oy) * p.ow + ox];
        }
        default: {
            return patch_value(g, col, k);
        }
    }
}

// Writes C[m, col] = v of group g (split `split` of the backward weight pass) to its place:
// y (overwritten), dx and dW (overwritten or, with `accumulate`, added to), or the split's
// slice of the partial sums.
fn store(which: u32, g: u32, split: u32, m: u32, col: u32, v: f32) {
    if (m >= gemm_m(which) || col >= gemm_n(which)) {
        return;
    }
    switch which {
        case 0u: {
            let ohw = p.oh * p.ow;
            dst[((col / ohw) * p.c_out + g * p.cpg_out + m) * ohw + col % ohw] = v;
        }
        case 1u: {
            let hw = p.h * p.w;
            let idx = ((col / hw) * p.c_in + g * p.cpg_in + m) * hw + col % hw;
            if (p.accumulate != 0u) {
                dst[idx] = dst[idx] + v;
            } else {
                dst[idx] = v;
            }
        }
        default: {
            let idx = (g * p.cpg_out + m) * p.plen + col;
            if (p.splits > 1u) {
                dst[split * p.wlen + idx] = v;
            } else if (p.accumulate != 0u) {
                dst[idx] = dst[idx] + v;
            } else {
                dst[idx] = v;
            }
        }
    }
}

// (group, split, first k, end of k) of this workgroup: the z dimension carries
// group·splits + split for the backward weight pass, the group otherwise.
fn k_range(which: u32, z: u32) -> vec4<u32> {
    if (which != BWD_W) {
        return vec4<u32>(z, 0u, 0u, gemm_k(which));
    }
    let split = z % p.splits;
    let k_begin = split * p.chunk;
    // chunk is a multiple of 16 (of both slice lengths), so every slice but the very last
    // (staged with zeros past K) lies inside this split's chunk: no product counts twice.
    return vec4<u32>(z / p.splits, split, k_begin, min(gemm_k(which), k_begin + p.chunk));
}

// ---- square tiles: 64×64 of C, 16×16 invocations -------------------------------------------

fn stage_square(which: u32, g: u32, m0: u32, n0: u32, k0: u32, t: u32) {
    for (var l = 0u; l < TILE_M * TILE_K / THREADS; l++) {
        let e = l * THREADS + t;
        // A: consecutive invocations take consecutive k, along which every A is contiguous.
        let kk = e % TILE_K;
        let mm = e / TILE_K;
        a_tile[kk * SQUARE_ROW + mm / 4u][mm % 4u] = a_val(which, g, m0 + mm, k0 + kk);
        // B: consecutive pixels (forward, backward input) or consecutive k = pixels
        // (backward weight), whichever is contiguous in x and dy.
        var kb = e / TILE_N;
        var nn = e % TILE_N;
        if (which == BWD_W) {
            kb = e % TILE_K;
            nn = e / TILE_K;
        }
        b_tile[kb * SQUARE_ROW + nn / 4u][nn % 4u] = b_val(which, g, k0 + kb, n0 + nn);
    }
}

// Stores one row of an invocation's 4×4 block (row: a value, indexed freely).
fn store_row(which: u32, g: u32, split: u32, m: u32, n: u32, row: vec4<f32>) {
    for (var j = 0u; j < BLOCK; j++) {
        store(which, g, split, m, n + j, row[j]);
    }
}

// Stores an invocation's 4×4 block, rows m .. m + 3 and columns n .. n + 3. The rows are
// written out, not looped over, so the block is indexed by constants only and stays in
// registers whether or not the driver unrolls a loop (see tests/shaders.rs).
fn store_block(which: u32, g: u32, split: u32, m: u32, n: u32, acc: ptr<function, array<vec4<f32>, 4>>) {
    store_row(which, g, split, m, n, (*acc)[0]);
    store_row(which, g, split, m + 1u, n, (*acc)[1]);
    store_row(which, g, split, m + 2u, n, (*acc)[2]);
    store_row(which, g, split, m + 3u, n, (*acc)[3]);
}

// One invocation: C[m0 + 4·ty .. +3, n0 + 4·tx .. +3] of group g ((ty, tx) =
// gemm_invocation(t), m0 = 64·wg.y, n0 = 64·wg.x), its k products summed in ascending
// order (matmul.wgsl's inner loop).
fn gemm_square(which: u32, wg: vec3<u32>, lid: vec3<u32>) {
    let r = k_range(which, wg.z);
    let m0 = wg.y * TILE_M;
    let n0 = wg.x * TILE_N;
    let t = lid.y * 16u + lid.x;
    let at = gemm_invocation(t, 16u);
    var acc: array<vec4<f32>, 4>;
    for (var k0 = r.z; k0 < r.w; k0 += TILE_K) {
        stage_square(which, r.x, m0, n0, k0, t);
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let av = a_tile[kk * SQUARE_ROW + at.x];
            let bv = b_tile[kk * SQUARE_ROW + at.y];
            acc[0] = fma(vec4<f32>(av.x), bv, acc[0]);
            acc[1] = fma(vec4<f32>(av.y), bv, acc[1]);
            acc[2] = fma(vec4<f32>(av.z), bv, acc[2]);
            acc[3] = fma(vec4<f32>(av.w), bv, acc[3]);
        }
        workgroupBarrier();
    }
    store_block(which, r.x, r.y, m0 + at.x * BLOCK, n0 + at.y * BLOCK, &acc);
}

// ---- wide tiles: 16×256 of C, 64×4 invocations ---------------------------------------------

fn stage_wide(which: u32, g: u32, m0: u32, n0: u32, k0: u32, t: u32) {
    // A: 16×8 elements, one for each of the first 128 invocations.
    if (t < WIDE_M * WIDE_K) {
        let kk = t % WIDE_K;
        let mm = t / WIDE_K;
        a_wide[kk * WIDE_A_ROW + mm / 4u][mm % 4u] = a_val(which, g, m0 + mm, k0 + kk);
    }
    for (var l = 0u; l < WIDE_N * WIDE_K / THREADS; l++) {
        let e = l * THREADS + t;
        var kb = e / WIDE_N;
        var nn = e % WIDE_N;
        if (which == BWD_W) {
            kb = e % WIDE_K;
            nn = e / WIDE_K;
        }
        b_wide[kb * WIDE_B_ROW + nn / 4u][nn % 4u] = b_val(which, g, k0 + kb, n0 + nn);
    }
}

// One invocation: C[m0 + 4·ty .. +3, n0 + 4·tx .. +3] of group g ((ty, tx) =
// gemm_invocation(t), m0 = 16·wg.y, n0 = 256·wg.x), its k products summed in ascending
// order.
fn gemm_wide(which: u32, wg: vec3<u32>, lid: vec3<u32>) {
    let r = k_range(which, wg.z);
    let m0 = wg.y * WIDE_M;
    let n0 = wg.x * WIDE_N;
    let t = lid.y * 64u + lid.x;
    let at = gemm_invocation(t, 64u);
    var acc: array<vec4<f32>, 4>;
    for (var k0 = r.z; k0 < r.w; k0 += WIDE_K) {
        stage_wide(which, r.x, m0, n0, k0, t);
        workgroupBarrier();
        for (var kk = 0u; kk < WIDE_K; kk++) {
            let av = a_wide[kk * WIDE_A_ROW + at.x];
            let bv = b_wide[kk * WIDE_B_ROW + at.y];
            acc[0] = fma(vec4<f32>(av.x), bv, acc[0]);
            acc[1] = fma(vec4<f32>(av.y), bv, acc[1]);
            acc[2] = fma(vec4<f32>(av.z), bv, acc[2]);
            acc[3] = fma(vec4<f32>(av.w), bv, acc[3]);
        }
        workgroupBarrier();
    }
    store_block(which, r.x, r.y, m0 + at.x * BLOCK, n0 + at.y * BLOCK, &acc);
}

// ---- entry points ---------------------------------------------------------------------------
// Square grid (⌈N/64⌉, ⌈M/64⌉, z), wide grid (⌈N/256⌉, ⌈M/16⌉, z); z = groups, or
// groups·splits for the backward weight pass. One invocation computes a 4×4 block of C.

// y[b, g·cpg_out + m, oy, ox] for a 4×4 block of (m, (b, oy, ox)).
@compute @workgroup_size(16, 16)
fn conv2d_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_square(FWD, wg, lid);
}

@compute @workgroup_size(64, 4)
fn conv2d_forward_wide(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_wide(FWD, wg, lid);
}

// dx[b, g·cpg_in + ci, iy, ix] for a 4×4 block of (ci, (b, iy, ix)). Overwrites.
@compute @workgroup_size(16, 16)
fn conv2d_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_square(BWD_IN, wg, lid);
}

@compute @workgroup_size(64, 4)
fn conv2d_backward_input_wide(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_wide(BWD_IN, wg, lid);
}

// dW[g·cpg_out + co, (ci, ki, kj)] for a 4×4 block of (co, (ci, ki, kj)), summed over the
// output pixels of split wg.z % splits. With one split it writes dW (adding when
// `accumulate`); with several it writes (overwrites) the split's slice
// partial[split·wlen ..] of the same binding, for conv2d_backward_weight_reduce.
@compute @workgroup_size(16, 16)
fn conv2d_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_square(BWD_W, wg, lid);
}

@compute @workgroup_size(64, 4)
fn conv2d_backward_weight_wide(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_wide(BWD_W, wg, lid);
}

// One invocation: one element i of dW, dW[i] (+)= Σ_split partial[split·wlen + i], splits
// added in ascending order (binding 1 is the partial buffer, binding 2 dW).
@compute @workgroup_size(256)
fn conv2d_backward_weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * (nwg.x * 256u) + gid.x;
    if (i >= p.wlen) {
        return;
    }
    // Eight splits' partials are loaded before they are added in split order: eight loads
    // in flight where one split at a time waited for each (resnet-20's first stage has 171
    // splits at batch 128), the same sum bit for bit.
    let n = p.wlen;
    var sum = src_a[i];
    var s = 1u;
    for (; s + 8u <= p.splits; s += 8u) {
        let b = s * n + i;
        let u = vec4<f32>(src_a[b], src_a[b + n], src_a[b + 2u * n], src_a[b + 3u * n]);
        let v = vec4<f32>(src_a[b + 4u * n], src_a[b + 5u * n], src_a[b + 6u * n], src_a[b + 7u * n]);
        sum = sum + u.x + u.y + u.z + u.w + v.x + v.y + v.z + v.w;
    }
    for (; s < p.splits; s++) {
        sum = sum + src_a[s * n + i];
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

// (q, r) = the quotient and remainder by s of an offset, made those of the offset minus a
// step whose quotient and remainder by s are (dq, dr).
fn step_down(q: ptr<function, i32>, r: ptr<function, u32>, dq: i32, dr: u32, s: u32) {
    *q = *q - dq;
    if (*r < dr) {
        *r = *r + s - dr;
        *q = *q - 1;
    } else {
        *r = *r - dr;
    }
}

// One invocation: dx[b, c, iy, ix] = Σ_{co of group c, ki, kj} dy[b, co, oy, ox]·w[co, 0, ki, kj]
// over the taps whose forward read x[b, c, iy, ix]: oy = (iy + ph − ki·dh)/sh exact and in
// range (likewise ox). Overwrites, or adds with `accumulate`.
//
// Tap ki's offset iy + ph − ki·dh is tracked as a quotient and remainder by sh, stepped by
// dh's own quotient and remainder: no division per tap (a division by a value known only
// at run time is a long instruction sequence on GPUs, and nine taps took 36 of them per
// pixel), the same taps in the same order.
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
    // (quotient, remainder) of ki = 0's offsets and of one tap's step, by the stride.
    let ty0 = iy + p.pad_h;
    let tx0 = ix + p.pad_w;
    let qy0 = i32(ty0 / p.stride_h);
    let ry0 = ty0 % p.stride_h;
    let qx0 = i32(tx0 / p.stride_w);
    let rx0 = tx0 % p.stride_w;
    let dqy = i32(p.dil_h / p.stride_h);
    let dry = p.dil_h % p.stride_h;
    let dqx = i32(p.dil_w / p.stride_w);
    let drx = p.dil_w % p.stride_w;
    var sum = 0.0;
    for (var m = 0u; m < p.cpg_out; m++) {
        let co = c * p.cpg_out + m;
        let dy_plane = (b * p.c_out + co) * p.oh;
        var qy = qy0;
        var ry = ry0;
        for (var ki = 0u; ki < p.kh; ki++) {
            // Tap ki: offset ty = ty0 − ki·dh = qy·sh + ry.
            if (ry == 0u && qy >= 0 && u32(qy) < p.oh) {
                var qx = qx0;
                var rx = rx0;
                for (var kj = 0u; kj < p.kw; kj++) {
                    if (rx == 0u && qx >= 0 && u32(qx) < p.ow) {
                        let wv = src_b[(co * p.kh + ki) * p.kw + kj];
                        sum = fma(src_a[(dy_plane + u32(qy)) * p.ow + u32(qx)], wv, sum);
                    }
                    // Next tap: tx −= dw.
                    step_down(&qx, &rx, dqx, drx, p.stride_w);
                }
            }
            step_down(&qy, &ry, dqy, dry, p.stride_h);
        }
    }
    if (p.accumulate != 0u) {
        dst[i] = dst[i] + sum;
    } else {
        dst[i] = sum;
    }
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
        // Pixel k = (b, oy, ox) stepped by BIAS_WG = (db, doy, dox) in that mixed radix, with
        // carries: no division per pixel (a division by a value known only at run time is a
        // long instruction sequence on GPUs), the same pixels in the same order.
        var b = t / ohw;
        var oy = (t % ohw) / p.ow;
        var ox = t % p.ow;
        let dox = BIAS_WG % p.ow;
        let doy = (BIAS_WG / p.ow) % p.oh;
        let db = BIAS_WG / ohw;
        for (var k = t; k < p.n * ohw; k += BIAS_WG) {
            let iy = i32(oy * p.stride_h + ki * p.dil_h) - i32(p.pad_h);
            let ix = i32(ox * p.stride_w + kj * p.dil_w) - i32(p.pad_w);
            if (iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w)) {
                let xv = src_a[((b * p.c_in + plane) * p.h + u32(iy)) * p.w + u32(ix)];
                sum = fma(src_b[((b * p.c_out + co) * p.oh + oy) * p.ow + ox], xv, sum);
            }
            ox = ox + dox;
            var carry = 0u;
            if (ox >= p.ow) {
                ox = ox - p.ow;
                carry = 1u;
            }
            oy = oy + doy + carry;
            if (oy >= p.oh) {
                oy = oy - p.oh;
                b = b + 1u;
            }
            b = b + db;
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
