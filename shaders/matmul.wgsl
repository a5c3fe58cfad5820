// Tiled fp32 matrix product C(M,N) = op(A)·op(B), or C += op(A)·op(B), in three layouts.
//
// Algorithm: shared-memory tiling with register blocking, as in Volkov & Demmel, "Benchmarking
// GPUs to tune dense linear algebra" (SC 2008), and the SIMT GEMM of CUTLASS ("2-D block
// tiling" in Simon Boehm's "How to optimize a CUDA matmul kernel"). One workgroup of 16×16
// invocations owns a 64×64 tile of C; each invocation keeps a 4×4 block of it in registers.
// K is walked in slices of 16: the workgroup stages the 64×16 slice of op(A) and the 16×64
// slice of op(B) in workgroup memory (four elements of each per invocation, coalesced along
// whichever index is contiguous in memory), then every invocation performs 16 rank-1 updates
// of its block, each from one vec4 of A and one vec4 of B: 2 workgroup-memory loads per 16
// FMAs, instead of 2 global loads per FMA for the naive kernel.
//
// The three entry points differ only in how the slices are staged (which index of A or B is
// contiguous in memory); the staged slices have one layout, k-major, so the inner product is
// shared. Out-of-range elements are staged as zeros, so any M, N, K works (1, primes, sizes
// that are not multiples of the tile); only in-range elements of C are written.
//
// Determinism: each element of C sums its K products in ascending k, one invocation per
// element, no atomics, so a run repeats bit for bit on one adapter.
//
// Portable WGSL on purpose: no subgroups, no f16. Faster variants (subgroup shuffles, larger
// register blocks, f16) belong beside this one, checked against it.

// Shapes of the product. All matrices are row-major. `accumulate` != 0 means C += instead of
// C = (parameter gradients accumulate, activation gradients are overwritten).
struct Params {
    m: u32,
    n: u32,
    k: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// Tile of C per workgroup (TILE_M × TILE_N), contracted slice per step (TILE_K), block of C
// per invocation (BLOCK × BLOCK). TILE_M = WG_Y·BLOCK, TILE_N = WG_X·BLOCK.
const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const BLOCK: u32 = 4u;
const WG_X: u32 = 16u;
const WG_Y: u32 = 16u;
const THREADS: u32 = 256u; // WG_X · WG_Y
// Elements of one staged slice each invocation loads: TILE_M·TILE_K / THREADS.
const LOADS: u32 = 4u;

// Staged slices, k-major: a_tile[kk·ROW + i] holds op(A)[m0 + 4i .. m0 + 4i + 3, k0 + kk], and
// b_tile[kk·ROW + j] holds op(B)[k0 + kk, n0 + 4j .. n0 + 4j + 3], so an invocation reads its
// four rows (or four columns) at one step kk as a single vec4.
//
// ROW is one vec4 more than a row's 16. Where consecutive invocations stage consecutive k of
// one row (A stored (M,K), B stored (N,K)), the 16 stores of a row then lie 68 floats apart
// and fall into 8 of workgroup memory's 32 banks (two stores per bank), where 64 apart put
// all 16 into one bank: a 16-way conflict on every store of A in NN and NT and of B in NT,
// none in TN, whose staging runs along m and n (on the H200, TN ran at 51 % of cuBLAS, NN
// at 41 %, NT at 32 %; BENCHMARKS.md). The padding vec4 of each row is never read.
const ROW: u32 = 17u; // TILE_M / 4 + 1 = TILE_N / 4 + 1
var<workgroup> a_tile: array<vec4<f32>, 272>; // TILE_K · ROW
var<workgroup> b_tile: array<vec4<f32>, 272>; // TILE_K · ROW

// Stages op(A)[m0.., k0..] when A is stored (M,K): consecutive invocations read consecutive k.
fn stage_a_mk(m0: u32, k0: u32, t: u32) {
    for (var l = 0u; l < LOADS; l++) {
        let e = l * THREADS + t;
        let kk = e % TILE_K;
        let mm = e / TILE_K;
        let m = m0 + mm;
        let k = k0 + kk;
        var v = 0.0;
        if (m < p.m && k < p.k) {
            v = a[m * p.k + k];
        }
        a_tile[kk * ROW + mm / 4u][mm % 4u] = v;
    }
}

// Stages op(A)[m0.., k0..] when A is stored (K,M): consecutive invocations read consecutive m.
fn stage_a_km(m0: u32, k0: u32, t: u32) {
    for (var l = 0u; l < LOADS; l++) {
        let e = l * THREADS + t;
        let mm = e % TILE_M;
        let kk = e / TILE_M;
        let m = m0 + mm;
        let k = k0 + kk;
        var v = 0.0;
        if (m < p.m && k < p.k) {
            v = a[k * p.m + m];
        }
        a_tile[kk * ROW + mm / 4u][mm % 4u] = v;
    }
}

// Stages op(B)[k0.., n0..] when B is stored (K,N): consecutive invocations read consecutive n.
fn stage_b_kn(n0: u32, k0: u32, t: u32) {
    for (var l = 0u; l < LOADS; l++) {
        let e = l * THREADS + t;
        let nn = e % TILE_N;
        let kk = e / TILE_N;
        let n = n0 + nn;
        let k = k0 + kk;
        var v = 0.0;
        if (n < p.n && k < p.k) {
            v = b[k * p.n + n];
        }
        b_tile[kk * ROW + nn / 4u][nn % 4u] = v;
    }
}

// Stages op(B)[k0.., n0..] when B is stored (N,K): consecutive invocations read consecutive k.
fn stage_b_nk(n0: u32, k0: u32, t: u32) {
    for (var l = 0u; l < LOADS; l++) {
        let e = l * THREADS + t;
        let kk = e % TILE_K;
        let nn = e / TILE_K;
        let n = n0 + nn;
        let k = k0 + kk;
        var v = 0.0;
        if (n < p.n && k < p.k) {
            v = b[n * p.k + k];
        }
        b_tile[kk * ROW + nn / 4u][nn % 4u] = v;
    }
}

// acc[i][j] += Σ_kk op(A)[4ty + i, kk] · op(B)[kk, 4tx + j] over the staged slice, kk ascending.
// Zero-padded k (past K) adds 0·0, so it changes no sum.
fn multiply_slice(ty: u32, tx: u32, acc: ptr<function, array<vec4<f32>, 4>>) {
    for (var kk = 0u; kk < TILE_K; kk++) {
        let av = a_tile[kk * ROW + ty];
        let bv = b_tile[kk * ROW + tx];
        (*acc)[0] = fma(vec4<f32>(av.x), bv, (*acc)[0]);
        (*acc)[1] = fma(vec4<f32>(av.y), bv, (*acc)[1]);
        (*acc)[2] = fma(vec4<f32>(av.z), bv, (*acc)[2]);
        (*acc)[3] = fma(vec4<f32>(av.w), bv, (*acc)[3]);
    }
}

// Writes (or adds) the in-range part of one row of an invocation's block to C(M,N).
fn store_row(m: u32, n0: u32, row: vec4<f32>) {
    if (m >= p.m) {
        return;
    }
    for (var j = 0u; j < BLOCK; j++) {
        let n = n0 + j;
        if (n >= p.n) {
            break;
        }
        let idx = m * p.n + n;
        if (p.accumulate != 0u) {
            c[idx] = c[idx] + row[j];
        } else {
            c[idx] = row[j];
        }
    }
}

// Writes (or adds) the in-range part of an invocation's 4×4 block to C(M,N). The rows are
// written out, not looped over: the block is indexed by constants only, so it stays in
// registers whether or not the driver unrolls a loop (see tests/shaders.rs).
fn store_block(m0: u32, n0: u32, ty: u32, tx: u32, acc: ptr<function, array<vec4<f32>, 4>>) {
    let m = m0 + ty * BLOCK;
    let n = n0 + tx * BLOCK;
    store_row(m, n, (*acc)[0]);
    store_row(m + 1u, n, (*acc)[1]);
    store_row(m + 2u, n, (*acc)[2]);
    store_row(m + 3u, n, (*acc)[3]);
}

// NN: C(M,N) = A(M,K)·B(K,N). Grid (⌈N/64⌉, ⌈M/64⌉); one invocation computes
// C[m0 + 4·ty .. +3, n0 + 4·tx .. +3] with m0 = 64·wg.y, n0 = 64·wg.x and (ty, tx) =
// gemm_invocation(t) (shaders/gemm_invocation.wgsl).
// Dense layers use it for the input gradient dx = dy·W.
@compute @workgroup_size(16, 16)
fn matmul_nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = wg.y * TILE_M;
    let n0 = wg.x * TILE_N;
    let t = lid.y * WG_X + lid.x;
    let at = gemm_invocation(t, WG_X);
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        stage_a_mk(m0, k0, t);
        stage_b_kn(n0, k0, t);
        workgroupBarrier();
        multiply_slice(at.x, at.y, &acc);
        workgroupBarrier();
    }
    store_block(m0, n0, at.x, at.y, &acc);
}

// NT: C(M,N) = A(M,K)·B(N,K)ᵀ. Grid (⌈N/64⌉, ⌈M/64⌉); one invocation computes
// C[m0 + 4·ty .. +3, n0 + 4·tx .. +3] with m0 = 64·wg.y, n0 = 64·wg.x and (ty, tx) =
// gemm_invocation(t) (shaders/gemm_invocation.wgsl).
// Dense layers use it for the forward y = x·Wᵀ with W stored (out, in).
@compute @workgroup_size(16, 16)
fn matmul_nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = wg.y * TILE_M;
    let n0 = wg.x * TILE_N;
    let t = lid.y * WG_X + lid.x;
    let at = gemm_invocation(t, WG_X);
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        stage_a_mk(m0, k0, t);
        stage_b_nk(n0, k0, t);
        workgroupBarrier();
        multiply_slice(at.x, at.y, &acc);
        workgroupBarrier();
    }
    store_block(m0, n0, at.x, at.y, &acc);
}

// TN: C(M,N) = A(K,M)ᵀ·B(K,N). Grid (⌈N/64⌉, ⌈M/64⌉); one invocation computes
// C[m0 + 4·ty .. +3, n0 + 4·tx .. +3] with m0 = 64·wg.y, n0 = 64·wg.x and (ty, tx) =
// gemm_invocation(t) (shaders/gemm_invocation.wgsl).
// Dense layers use it for the weight gradient dW = dyᵀ·x (accumulated).
@compute @workgroup_size(16, 16)
fn matmul_tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = wg.y * TILE_M;
    let n0 = wg.x * TILE_N;
    let t = lid.y * WG_X + lid.x;
    let at = gemm_invocation(t, WG_X);
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        stage_a_km(m0, k0, t);
        stage_b_kn(n0, k0, t);
        workgroupBarrier();
        multiply_slice(at.x, at.y, &acc);
        workgroupBarrier();
    }
    store_block(m0, n0, at.x, at.y, &acc);
}
