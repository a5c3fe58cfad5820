// Register-blocked fp32 matrix product C(M,N) = op(A)·op(B) (or C += …) in three layouts,
// with tile sizes chosen per pipeline and an optional fused epilogue (bias, activation).
//
// Algorithm: the SIMT SGEMM of CUTLASS and of Simon Boehm's "How to optimize a CUDA matmul
// kernel" (2-D block tiling, vectorized loads), after Volkov & Demmel (SC 2008). One
// workgroup of 16×16 invocations owns a BM×BN tile of C; each invocation keeps a TM×TN
// block of it in registers (TM = BM/16, TN = BN/16: 8×8 for 128×128, 8×4 for 128×64, 4×4
// for 64×64). K is walked in slices of BK: the workgroup stages the BM×BK slice of op(A)
// and the BK×BN slice of op(B) in workgroup memory, both k-major (A transposed as it is
// staged), so that at each kk an invocation reads its TM rows of A and TN columns of B as
// TM/4 + TN/4 vec4s and performs TM·TN FMAs: for 8×8, 4 workgroup loads per 64 FMAs.
//
// An invocation's rows are not contiguous: they are the vec4 groups ty, ty + 16 (and its
// columns tx, tx + 16), so the 16 invocations of a row of the workgroup read 16
// consecutive vec4s of the B slice (conflict-free) and the A slice is read as a broadcast.
//
// Tile sizes are pipeline-overridable constants (BM, BN, BK), fixed when the launcher
// builds the pipeline, so one source serves every variant and the driver sees constant
// loop bounds it can unroll. `VEC4` selects vec4 global loads (bindings a4, b4: the same
// buffers as a, b read as vec4), legal only when the contiguous dimension of each operand
// is a multiple of 4 (then a vec4 never straddles a row, nor the end of a buffer); the
// launcher checks that and otherwise builds the scalar-load pipeline, whose loads are
// coalesced along the contiguous index. Out-of-range elements are staged as zeros, so any
// M, N, K works; only in-range elements of C are written. `PREFETCH` fetches the next
// slice from global memory into registers while the current one is multiplied (see gemm).
//
// Epilogue (forward of a dense layer, fused): with `has_bias`, C = A·Bᵀ + bias[n]; with
// `has_act`, the activation of that value is also written to `z` — C keeps the
// pre-activation, which the activation's backward and the statistics read. Values are
// formed in the same order as the unfused ops (product, then + bias, then f), so the fused
// result is bit for bit the unfused one.
//
// Determinism: each element of C sums its K products in ascending k, in one invocation,
// with no atomics: a run repeats bit for bit on one adapter, whatever the tile.
//
// The activation formulas (act_forward, ACT_*) come from shaders/activation_math.wgsl,
// prepended by src/gpu/shaders.rs.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // != 0: C += op(A)·op(B) (parameter gradients accumulate).
    accumulate: u32,
    // != 0: C += bias[n] after the product.
    has_bias: u32,
    // != 0: z = f(C) with f the activation of code `act_code` (Activation::code()).
    has_act: u32,
    act_code: u32,
    // Leaky-ReLU slope or ELU alpha.
    act_param: f32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
// a and b again, read as vec4 (bound to a 16-byte placeholder when VEC4 is off).
@group(0) @binding(4) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> b4: array<vec4<f32>>;
// Epilogue operands (placeholders when unused).
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> z: array<f32>;

// Tile of C per workgroup and contracted slice per step. BM, BN ∈ {64, 128}; BK ∈ {8, 16}.
override BM: u32 = 128u;
override BN: u32 = 128u;
override BK: u32 = 8u;
override VEC4: bool = false;
// Fetch the next slice into registers while multiplying the current one.
override PREFETCH: bool = false;
// vec4 groups of rows (columns) per invocation: TM/4 = BM/64, TN/4 = BN/64 (1 or 2).
override RM: u32 = BM / 64u;
override RN: u32 = BN / 64u;
// Staged slices in vec4s: BK·BM/4 and BK·BN/4.
override A_TILE: u32 = BK * BM / 4u;
override B_TILE: u32 = BK * BN / 4u;

const THREADS: u32 = 256u;

// k-major: a_tile[kk·BM/4 + q] = op(A)[m0 + 4q .. +3, k0 + kk]; b_tile likewise along n.
var<workgroup> a_tile: array<vec4<f32>, A_TILE>;
var<workgroup> b_tile: array<vec4<f32>, B_TILE>;

// ---- staging: fetch (global → registers), then put (registers → workgroup memory) ------
//
// An invocation holds at most 8 elements of each staged slice (128·16/256), packed in two
// vec4 registers: scalar element l at r[l / 4][l % 4], or vec4 l at r[l]. Splitting the
// staging in two lets the PREFETCH variants fetch slice k0 + BK while slice k0 is
// multiplied, hiding the global-memory latency behind the FMAs.

// op(A) slice when A is stored (M,K) (NN, NT): consecutive invocations read along k.
fn fetch_a_mk(m0: u32, k0: u32, t: u32) -> array<vec4<f32>, 2> {
    var r: array<vec4<f32>, 2>;
    if (VEC4) {
        // K % 4 == 0 and k0 % 4 == 0: a vec4 of k is all in range or all out.
        for (var l = 0u; l < 2u; l++) {
            let e = l * THREADS + t;
            let m = m0 + e / (BK / 4u);
            let k = k0 + 4u * (e % (BK / 4u));
            if (e < A_TILE && m < p.m && k < p.k) {
                r[l] = a4[(m * p.k + k) / 4u];
            }
        }
    } else {
        for (var l = 0u; l < BM * BK / THREADS; l++) {
            let e = l * THREADS + t;
            let m = m0 + e / BK;
            let k = k0 + e % BK;
            if (m < p.m && k < p.k) {
                r[l / 4u][l % 4u] = a[m * p.k + k];
            }
        }
    }
    return r;
}

fn put_a_mk(r: array<vec4<f32>, 2>, t: u32) {
    if (VEC4) {
        for (var l = 0u; l < 2u; l++) {
            let e = l * THREADS + t;
            if (e < A_TILE) {
                let kq = e % (BK / 4u);
                let mm = e / (BK / 4u);
                for (var j = 0u; j < 4u; j++) {
                    a_tile[(4u * kq + j) * (BM / 4u) + mm / 4u][mm % 4u] = r[l][j];
                }
            }
        }
    } else {
        for (var l = 0u; l < BM * BK / THREADS; l++) {
            let e = l * THREADS + t;
            let mm = e / BK;
            a_tile[(e % BK) * (BM / 4u) + mm / 4u][mm % 4u] = r[l / 4u][l % 4u];
        }
    }
}

// op(A) slice when A is stored (K,M) (TN): consecutive invocations read along m.
fn fetch_a_km(m0: u32, k0: u32, t: u32) -> array<vec4<f32>, 2> {
    var r: array<vec4<f32>, 2>;
    if (VEC4) {
        // M % 4 == 0: a vec4 of m is all in range or all out.
        for (var l = 0u; l < 2u; l++) {
            let e = l * THREADS + t;
            let m = m0 + 4u * (e % (BM / 4u));
            let k = k0 + e / (BM / 4u);
            if (e < A_TILE && m < p.m && k < p.k) {
                r[l] = a4[(k * p.m + m) / 4u];
            }
        }
    } else {
        for (var l = 0u; l < BM * BK / THREADS; l++) {
            let e = l * THREADS + t;
            let m = m0 + e % BM;
            let k = k0 + e / BM;
            if (m < p.m && k < p.k) {
                r[l / 4u][l % 4u] = a[k * p.m + m];
            }
        }
    }
    return r;
}

fn put_a_km(r: array<vec4<f32>, 2>, t: u32) {
    if (VEC4) {
        for (var l = 0u; l < 2u; l++) {
            let e = l * THREADS + t;
            if (e < A_TILE) {
                // e = kk·BM/4 + mq: the tile's own index.
                a_tile[e] = r[l];
            }
        }
    } else {
        for (var l = 0u; l < BM * BK / THREADS; l++) {
            let e = l * THREADS + t;
            let mm = e % BM;
            a_tile[(e / BM) * (BM / 4u) + mm / 4u][mm % 4u] = r[l / 4u][l % 4u];
        }
    }
}

// op(B) slice when B is stored (K,N) (NN, TN): consecutive invocations read along n.
fn fetch_b_kn(n0: u32, k0: u32, t: u32) -> array<vec4<f32>, 2> {
    var r: array<vec4<f32>, 2>;
    if (VEC4) {
        for (var l = 0u; l < 2u; l++) {
            let e = l * THREADS + t;
            let n = n0 + 4u * (e % (BN / 4u));
            let k = k0 + e / (BN / 4u);
            if (e < B_TILE && n < p.n && k < p.k) {
                r[l] = b4[(k * p.n + n) / 4u];
            }
        }
    } else {
        for (var l = 0u; l < BN * BK / THREADS; l++) {
            let e = l * THREADS + t;
            let n = n0 + e % BN;
            let k = k0 + e / BN;
            if (n < p.n && k < p.k) {
                r[l / 4u][l % 4u] = b[k * p.n + n];
            }
        }
    }
    return r;
}

fn put_b_kn(r: array<vec4<f32>, 2>, t: u32) {
    if (VEC4) {
        for (var l = 0u; l < 2u; l++) {
            let e = l * THREADS + t;
            if (e < B_TILE) {
                b_tile[e] = r[l];
            }
        }
    } else {
        for (var l = 0u; l < BN * BK / THREADS; l++) {
            let e = l * THREADS + t;
            let nn = e % BN;
            b_tile[(e / BN) * (BN / 4u) + nn / 4u][nn % 4u] = r[l / 4u][l % 4u];
        }
    }
}

// op(B) slice when B is stored (N,K) (NT): consecutive invocations read along k.
fn fetch_b_nk(n0: u32, k0: u32, t: u32) -> array<vec4<f32>, 2> {
    var r: array<vec4<f32>, 2>;
    if (VEC4) {
        for (var l = 0u; l < 2u; l++) {
            let e = l * THREADS + t;
            let n = n0 + e / (BK / 4u);
            let k = k0 + 4u * (e % (BK / 4u));
            if (e < B_TILE && n < p.n && k < p.k) {
                r[l] = b4[(n * p.k + k) / 4u];
            }
        }
    } else {
        for (var l = 0u; l < BN * BK / THREADS; l++) {
            let e = l * THREADS + t;
            let n = n0 + e / BK;
            let k = k0 + e % BK;
            if (n < p.n && k < p.k) {
                r[l / 4u][l % 4u] = b[n * p.k + k];
            }
        }
    }
    return r;
}

fn put_b_nk(r: array<vec4<f32>, 2>, t: u32) {
    if (VEC4) {
        for (var l = 0u; l < 2u; l++) {
            let e = l * THREADS + t;
            if (e < B_TILE) {
                let kq = e % (BK / 4u);
                let nn = e / (BK / 4u);
                for (var j = 0u; j < 4u; j++) {
                    b_tile[(4u * kq + j) * (BN / 4u) + nn / 4u][nn % 4u] = r[l][j];
                }
            }
        }
    } else {
        for (var l = 0u; l < BN * BK / THREADS; l++) {
            let e = l * THREADS + t;
            let nn = e / BK;
            b_tile[(e % BK) * (BN / 4u) + nn / 4u][nn % 4u] = r[l / 4u][l % 4u];
        }
    }
}

// The A and B slices at k0 of one layout, fetched (a_kind: 0 = (M,K), 1 = (K,M); b_kind:
// 0 = (K,N), 1 = (N,K); constants at every call site).
fn fetch_a(a_kind: u32, m0: u32, k0: u32, t: u32) -> array<vec4<f32>, 2> {
    if (a_kind == 0u) {
        return fetch_a_mk(m0, k0, t);
    }
    return fetch_a_km(m0, k0, t);
}

fn put_a(a_kind: u32, r: array<vec4<f32>, 2>, t: u32) {
    if (a_kind == 0u) {
        put_a_mk(r, t);
    } else {
        put_a_km(r, t);
    }
}

fn fetch_b(b_kind: u32, n0: u32, k0: u32, t: u32) -> array<vec4<f32>, 2> {
    if (b_kind == 0u) {
        return fetch_b_kn(n0, k0, t);
    }
    return fetch_b_nk(n0, k0, t);
}

fn put_b(b_kind: u32, r: array<vec4<f32>, 2>, t: u32) {
    if (b_kind == 0u) {
        put_b_kn(r, t);
    } else {
        put_b_nk(r, t);
    }
}

// ---- product and epilogue -------------------------------------------------------------------

// acc[(4r + i)·2 + s][j] += Σ_kk op(A)[row(r, i), kk] · op(B)[kk, col(s, j)] over the staged
// slice, kk ascending, with row(r, i) = 4(ty + 16r) + i and col(s, j) = 4(tx + 16s) + j.
// Zero-padded k adds 0·0, which changes no sum.
fn multiply_slice(ty: u32, tx: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
    for (var kk = 0u; kk < BK; kk++) {
        var av: array<vec4<f32>, 2>;
        var bv: array<vec4<f32>, 2>;
        for (var r = 0u; r < RM; r++) {
            av[r] = a_tile[kk * (BM / 4u) + ty + 16u * r];
        }
        for (var s = 0u; s < RN; s++) {
            bv[s] = b_tile[kk * (BN / 4u) + tx + 16u * s];
        }
        for (var r = 0u; r < RM; r++) {
            for (var i = 0u; i < 4u; i++) {
                let ai = vec4<f32>(av[r][i]);
                for (var s = 0u; s < RN; s++) {
                    let q = (4u * r + i) * 2u + s;
                    (*acc)[q] = fma(ai, bv[s], (*acc)[q]);
                }
            }
        }
    }
}

// Writes (adds, with the bias, and the activation into z) the in-range part of an
// invocation's block: the same order of operations as matmul, then bias_forward, then
// activation_forward.
fn store_block(m0: u32, n0: u32, ty: u32, tx: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
    for (var r = 0u; r < RM; r++) {
        for (var i = 0u; i < 4u; i++) {
            let m = m0 + 4u * (ty + 16u * r) + i;
            if (m >= p.m) {
                continue;
            }
            for (var s = 0u; s < RN; s++) {
                let row = (*acc)[(4u * r + i) * 2u + s];
                for (var j = 0u; j < 4u; j++) {
                    let n = n0 + 4u * (tx + 16u * s) + j;
                    if (n >= p.n) {
                        continue;
                    }
                    let idx = m * p.n + n;
                    var v = row[j];
                    if (p.accumulate != 0u) {
                        v = c[idx] + v;
                    }
                    if (p.has_bias != 0u) {
                        v = v + bias[n];
                    }
                    c[idx] = v;
                    if (p.has_act != 0u) {
                        z[idx] = act_forward(p.act_code, p.act_param, v);
                    }
                }
            }
        }
    }
}

// The whole product of one workgroup's tile. Without PREFETCH: fetch and put slice k0,
// barrier, multiply, barrier. With PREFETCH: slice k0 + BK is fetched into registers before
// slice k0 is multiplied and put after it, so its global loads are in flight during the
// FMAs (one more barrier-free pair of vec4 registers per operand).
fn gemm(a_kind: u32, b_kind: u32, wg: vec3<u32>, lid: vec3<u32>) {
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    let t = lid.y * 16u + lid.x;
    var acc: array<vec4<f32>, 16>;
    if (PREFETCH) {
        var ra = fetch_a(a_kind, m0, 0u, t);
        var rb = fetch_b(b_kind, n0, 0u, t);
        put_a(a_kind, ra, t);
        put_b(b_kind, rb, t);
        workgroupBarrier();
        for (var k0 = 0u; k0 < p.k; k0 += BK) {
            let more = k0 + BK < p.k;
            if (more) {
                ra = fetch_a(a_kind, m0, k0 + BK, t);
                rb = fetch_b(b_kind, n0, k0 + BK, t);
            }
            multiply_slice(lid.y, lid.x, &acc);
            workgroupBarrier();
            if (more) {
                put_a(a_kind, ra, t);
                put_b(b_kind, rb, t);
            }
            workgroupBarrier();
        }
    } else {
        for (var k0 = 0u; k0 < p.k; k0 += BK) {
            put_a(a_kind, fetch_a(a_kind, m0, k0, t), t);
            put_b(b_kind, fetch_b(b_kind, n0, k0, t), t);
            workgroupBarrier();
            multiply_slice(lid.y, lid.x, &acc);
            workgroupBarrier();
        }
    }
    store_block(m0, n0, lid.y, lid.x, &acc);
}

// ---- entry points: grid (⌈N/BN⌉, ⌈M/BM⌉), workgroup 16×16 -----------------------------------

// NN: C(M,N) = A(M,K)·B(K,N). Dense layers: the input gradient dx = dy·W.
@compute @workgroup_size(16, 16)
fn matmul_nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm(0u, 0u, wg, lid);
}

// NT: C(M,N) = A(M,K)·B(N,K)ᵀ. Dense layers: the forward y = x·Wᵀ (+ bias, activation).
@compute @workgroup_size(16, 16)
fn matmul_nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm(0u, 1u, wg, lid);
}

// TN: C(M,N) = A(K,M)ᵀ·B(K,N). Dense layers: the weight gradient dW = dyᵀ·x (accumulated).
@compute @workgroup_size(16, 16)
fn matmul_tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm(1u, 0u, wg, lid);
}
