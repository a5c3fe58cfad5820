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
// columns tx, tx + 16), so the invocations of a row of the grid read consecutive vec4s of
// the B slice (conflict-free) and the A slice is read as a broadcast; (ty, tx) =
// gemm_invocation(t) puts every 32 consecutive invocations on 4 rows × 8 columns of the
// grid, so that a warp reads 8 vec4s of B and 4 of A at each k (shaders/gemm_invocation.wgsl).
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
// Epilogue (forward of a dense layer, fused): with `HAS_BIAS`, C = A·Bᵀ + bias[n]; with
// `HAS_ACT`, the activation `ACT_CODE` of that value is also written to `z` — C keeps the
// pre-activation, which the activation's backward and the statistics read. Values are
// formed in the same order as the unfused ops (product, then + bias, then f), so the fused
// result is bit for bit the unfused one. The epilogue is chosen by override constants, not
// by the uniform: each of an invocation's 16 to 64 stores inlines it, and with every
// activation's formula behind a run-time switch the shader grew so large that lavapipe took
// 2 to 10 s to compile each variant; a pipeline now holds only the epilogue it runs.
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
    // Leaky-ReLU slope or ELU alpha.
    act_param: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
// vec4s from one k of a staged slice to the next: a row's BM/4 (BN/4) and one of padding.
// Where consecutive invocations stage consecutive k of one row (A stored (M,K), B stored
// (N,K)), their stores then lie 4·ROW floats apart, which spreads them over the banks of
// workgroup memory (for BK = 8, all 32 invocations of a subgroup in different banks); without
// the padding they were a multiple of 32 banks apart, a BK-way conflict on every store
// (shaders/matmul.wgsl says more). The padding is never read.
override A_ROW: u32 = BM / 4u + 1u;
override B_ROW: u32 = BN / 4u + 1u;
// Staged slices in vec4s: BK·A_ROW and BK·B_ROW.
override A_TILE: u32 = BK * A_ROW;
override B_TILE: u32 = BK * B_ROW;
// The epilogue: C += bias[n] after the product; z = f(C) with f the activation of code
// ACT_CODE (Activation::code()).
override HAS_BIAS: bool = false;
override HAS_ACT: bool = false;
override ACT_CODE: u32 = 0u;

const THREADS: u32 = 256u;

// k-major: a_tile[kk·A_ROW + q] = op(A)[m0 + 4q .. +3, k0 + kk]; b_tile likewise along n.
var<workgroup> a_tile: array<vec4<f32>, A_TILE>;
var<workgroup> b_tile: array<vec4<f32>, B_TILE>;

// ---- staging: fetch (global → registers), then put (registers → workgroup memory) ------
//
// An invocation holds at most 8 elements of each staged slice (128·16/256), packed in two
// vec4 registers: scalar element l at r[l / 4][l % 4], or vec4 l at r[l].
// Splitting the staging in two lets the PREFETCH variants fetch slice k0 + BK while slice
// k0 is multiplied, hiding the global-memory latency behind the FMAs.
//
// Registers, not memory: every index into a function-local array (r, the accumulator
// blocks) is a constant, written out by hand below instead of a loop over l, r or s. With a
// loop variable as index the array is only promoted to registers if the driver unrolls the
// loop first; NVIDIA's Vulkan compiler did not, and the variants ran from local memory at a
// tenth of the simple kernel's speed.
//
// Operands: 0 = A stored (M,K) (NN, NT), 1 = A stored (K,M) (TN), 2 = B stored (K,N) (NN,
// TN), 3 = B stored (N,K) (NT); a constant at every call site.
const A_MK: u32 = 0u;
const A_KM: u32 = 1u;
const B_KN: u32 = 2u;
const B_NK: u32 = 3u;

// Rows (columns) of the operand's slice, and its staged vec4s.
fn slice_rows(operand: u32) -> u32 {
    if (operand <= A_KM) {
        return BM;
    }
    return BN;
}

// vec4s from one k of the operand's staged slice to the next (padding included).
fn row_stride(operand: u32) -> u32 {
    if (operand <= A_KM) {
        return A_ROW;
    }
    return B_ROW;
}

fn slice_vec4s(operand: u32) -> u32 {
    return BK * slice_rows(operand) / 4u;
}

// Element e of the slice at k0 (e < rows·BK), in the order consecutive invocations read it:
// along k where k is contiguous in memory (A (M,K), B (N,K)), else along m or n. Returns
// (row or column within the slice, kk).
fn scalar_place(operand: u32, e: u32) -> vec2<u32> {
    if (operand == A_MK || operand == B_NK) {
        return vec2<u32>(e / BK, e % BK);
    }
    let rows = slice_rows(operand);
    return vec2<u32>(e % rows, e / rows);
}

// The value of element e of the slice (zero out of range).
fn fetch_scalar(operand: u32, base: u32, k0: u32, e: u32) -> f32 {
    let at = scalar_place(operand, e);
    let i = base + at.x;
    let k = k0 + at.y;
    if (k >= p.k) {
        return 0.0;
    }
    switch operand {
        case A_MK: {
            if (i < p.m) {
                return a[i * p.k + k];
            }
        }
        case A_KM: {
            if (i < p.m) {
                return a[k * p.m + i];
            }
        }
        case B_KN: {
            if (i < p.n) {
                return b[k * p.n + i];
            }
        }
        default: {
            if (i < p.n) {
                return b[i * p.k + k];
            }
        }
    }
    return 0.0;
}

fn put_scalar(operand: u32, e: u32, v: f32) {
    let at = scalar_place(operand, e);
    let q = at.y * row_stride(operand) + at.x / 4u;
    if (operand <= A_KM) {
        a_tile[q][at.x % 4u] = v;
    } else {
        b_tile[q][at.x % 4u] = v;
    }
}

// vec4 e of the slice (e < rows·BK/4): four consecutive k of one row where k is contiguous
// (K % 4 == 0 and k0 % 4 == 0, so all in range or all out), else four consecutive rows at
// one k (the row length a multiple of 4: the same). Returns (first row, kk).
fn vec4_place(operand: u32, e: u32) -> vec2<u32> {
    if (operand == A_MK || operand == B_NK) {
        return vec2<u32>(e / (BK / 4u), 4u * (e % (BK / 4u)));
    }
    let quads = slice_rows(operand) / 4u;
    return vec2<u32>(4u * (e % quads), e / quads);
}

fn fetch_vec4(operand: u32, base: u32, k0: u32, e: u32) -> vec4<f32> {
    let at = vec4_place(operand, e);
    let i = base + at.x;
    let k = k0 + at.y;
    if (e >= slice_vec4s(operand) || k >= p.k) {
        return vec4<f32>(0.0);
    }
    switch operand {
        case A_MK: {
            if (i < p.m) {
                return a4[(i * p.k + k) / 4u];
            }
        }
        case A_KM: {
            if (i < p.m) {
                return a4[(k * p.m + i) / 4u];
            }
        }
        case B_KN: {
            if (i < p.n) {
                return b4[(k * p.n + i) / 4u];
            }
        }
        default: {
            if (i < p.n) {
                return b4[(i * p.k + k) / 4u];
            }
        }
    }
    return vec4<f32>(0.0);
}

fn put_vec4(operand: u32, e: u32, v: vec4<f32>) {
    if (e >= slice_vec4s(operand)) {
        return;
    }
    let at = vec4_place(operand, e);
    let step = row_stride(operand);
    let q = at.y * step + at.x / 4u;
    if (operand == A_MK || operand == B_NK) {
        // Four k of one row: transposed into four k-major entries.
        let c = at.x % 4u;
        if (operand == A_MK) {
            a_tile[q][c] = v.x;
            a_tile[q + step][c] = v.y;
            a_tile[q + 2u * step][c] = v.z;
            a_tile[q + 3u * step][c] = v.w;
        } else {
            b_tile[q][c] = v.x;
            b_tile[q + step][c] = v.y;
            b_tile[q + 2u * step][c] = v.z;
            b_tile[q + 3u * step][c] = v.w;
        }
    } else if (operand == A_KM) {
        // Four rows at one k: the tile's own layout.
        a_tile[q] = v;
    } else {
        b_tile[q] = v;
    }
}

// This invocation's elements of the slice at k0: l·256 + t for l below rows·BK/256 (2, 4
// or 8) scalars, or below 2 vec4s (those past the slice are skipped).
fn fetch(operand: u32, base: u32, k0: u32, t: u32) -> array<vec4<f32>, 2> {
    var r: array<vec4<f32>, 2>;
    if (VEC4) {
        r[0] = fetch_vec4(operand, base, k0, t);
        r[1] = fetch_vec4(operand, base, k0, THREADS + t);
        return r;
    }
    let count = slice_rows(operand) * BK / THREADS;
    r[0].x = fetch_scalar(operand, base, k0, t);
    r[0].y = fetch_scalar(operand, base, k0, THREADS + t);
    if (count > 2u) {
        r[0].z = fetch_scalar(operand, base, k0, 2u * THREADS + t);
        r[0].w = fetch_scalar(operand, base, k0, 3u * THREADS + t);
    }
    if (count > 4u) {
        r[1].x = fetch_scalar(operand, base, k0, 4u * THREADS + t);
        r[1].y = fetch_scalar(operand, base, k0, 5u * THREADS + t);
        r[1].z = fetch_scalar(operand, base, k0, 6u * THREADS + t);
        r[1].w = fetch_scalar(operand, base, k0, 7u * THREADS + t);
    }
    return r;
}

fn put(operand: u32, r: array<vec4<f32>, 2>, t: u32) {
    if (VEC4) {
        put_vec4(operand, t, r[0]);
        put_vec4(operand, THREADS + t, r[1]);
        return;
    }
    let count = slice_rows(operand) * BK / THREADS;
    put_scalar(operand, t, r[0].x);
    put_scalar(operand, THREADS + t, r[0].y);
    if (count > 2u) {
        put_scalar(operand, 2u * THREADS + t, r[0].z);
        put_scalar(operand, 3u * THREADS + t, r[0].w);
    }
    if (count > 4u) {
        put_scalar(operand, 4u * THREADS + t, r[1].x);
        put_scalar(operand, 5u * THREADS + t, r[1].y);
        put_scalar(operand, 6u * THREADS + t, r[1].z);
        put_scalar(operand, 7u * THREADS + t, r[1].w);
    }
}

// ---- product and epilogue -------------------------------------------------------------------

// An invocation's part of C: up to 2×2 blocks of 4×4 (function variables acc00, acc01,
// acc10, acc11 of `gemm`, passed whole, as WGSL wants a pointer argument to be), block rs
// holding rows 4(ty + 16r) + i and columns 4(tx + 16s) + j as acc{r}{s}[i][j]. Blocks
// past RM or RN stay unused.
alias Block = array<vec4<f32>, 4>;

// blk[i] += av[i] · bv: one k of a 4×4 block.
fn rank1(av: vec4<f32>, bv: vec4<f32>, blk: ptr<function, Block>) {
    (*blk)[0] = fma(vec4<f32>(av.x), bv, (*blk)[0]);
    (*blk)[1] = fma(vec4<f32>(av.y), bv, (*blk)[1]);
    (*blk)[2] = fma(vec4<f32>(av.z), bv, (*blk)[2]);
    (*blk)[3] = fma(vec4<f32>(av.w), bv, (*blk)[3]);
}

// Adds the staged slice's products into the blocks, kk ascending. Zero-padded k adds 0·0,
// which changes no sum.
fn multiply_slice(
    ty: u32,
    tx: u32,
    acc00: ptr<function, Block>,
    acc01: ptr<function, Block>,
    acc10: ptr<function, Block>,
    acc11: ptr<function, Block>,
) {
    for (var kk = 0u; kk < BK; kk++) {
        let a0 = a_tile[kk * A_ROW + ty];
        let b0 = b_tile[kk * B_ROW + tx];
        rank1(a0, b0, acc00);
        if (RN > 1u) {
            let b1 = b_tile[kk * B_ROW + tx + 16u];
            rank1(a0, b1, acc01);
            if (RM > 1u) {
                let a1 = a_tile[kk * A_ROW + ty + 16u];
                rank1(a1, b0, acc10);
                rank1(a1, b1, acc11);
            }
        } else if (RM > 1u) {
            let a1 = a_tile[kk * A_ROW + ty + 16u];
            rank1(a1, b0, acc10);
        }
    }
}

// Writes (adds, with the bias, and the activation into z) C[m, n] = v when in range: the
// same order of operations as matmul, then bias_forward, then activation_forward.
fn store_one(m: u32, n: u32, value: f32) {
    if (m >= p.m || n >= p.n) {
        return;
    }
    let idx = m * p.n + n;
    var v = value;
    if (p.accumulate != 0u) {
        v = c[idx] + v;
    }
    if (HAS_BIAS) {
        v = v + bias[n];
    }
    c[idx] = v;
    if (HAS_ACT) {
        z[idx] = act_forward(ACT_CODE, p.act_param, v);
    }
}

fn store_row(m: u32, n: u32, v: vec4<f32>) {
    store_one(m, n, v.x);
    store_one(m, n + 1u, v.y);
    store_one(m, n + 2u, v.z);
    store_one(m, n + 3u, v.w);
}

// Rows m .. m + 3 and columns n .. n + 3 from a block.
fn store_4x4(m: u32, n: u32, blk: ptr<function, Block>) {
    store_row(m, n, (*blk)[0]);
    store_row(m + 1u, n, (*blk)[1]);
    store_row(m + 2u, n, (*blk)[2]);
    store_row(m + 3u, n, (*blk)[3]);
}

fn store_block(
    m0: u32,
    n0: u32,
    ty: u32,
    tx: u32,
    acc00: ptr<function, Block>,
    acc01: ptr<function, Block>,
    acc10: ptr<function, Block>,
    acc11: ptr<function, Block>,
) {
    let m = m0 + 4u * ty;
    let n = n0 + 4u * tx;
    store_4x4(m, n, acc00);
    if (RN > 1u) {
        store_4x4(m, n + 64u, acc01);
    }
    if (RM > 1u) {
        store_4x4(m + 64u, n, acc10);
        if (RN > 1u) {
            store_4x4(m + 64u, n + 64u, acc11);
        }
    }
}

// The whole product of one workgroup's tile. Without PREFETCH: fetch and put slice k0,
// barrier, multiply, barrier. With PREFETCH: slice k0 + BK is fetched into registers before
// slice k0 is multiplied and put after it, so its global loads are in flight during the
// FMAs (one more barrier-free pair of vec4 registers per operand).
fn gemm(a_op: u32, b_op: u32, wg: vec3<u32>, lid: vec3<u32>) {
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    let t = lid.y * 16u + lid.x;
    let at = gemm_invocation(t, 16u);
    var acc00: Block;
    var acc01: Block;
    var acc10: Block;
    var acc11: Block;
    if (PREFETCH) {
        var ra = fetch(a_op, m0, 0u, t);
        var rb = fetch(b_op, n0, 0u, t);
        put(a_op, ra, t);
        put(b_op, rb, t);
        workgroupBarrier();
        for (var k0 = 0u; k0 < p.k; k0 += BK) {
            let more = k0 + BK < p.k;
            if (more) {
                ra = fetch(a_op, m0, k0 + BK, t);
                rb = fetch(b_op, n0, k0 + BK, t);
            }
            multiply_slice(at.x, at.y, &acc00, &acc01, &acc10, &acc11);
            workgroupBarrier();
            if (more) {
                put(a_op, ra, t);
                put(b_op, rb, t);
            }
            workgroupBarrier();
        }
    } else {
        for (var k0 = 0u; k0 < p.k; k0 += BK) {
            put(a_op, fetch(a_op, m0, k0, t), t);
            put(b_op, fetch(b_op, n0, k0, t), t);
            workgroupBarrier();
            multiply_slice(at.x, at.y, &acc00, &acc01, &acc10, &acc11);
            workgroupBarrier();
        }
    }
    store_block(m0, n0, at.x, at.y, &acc00, &acc01, &acc10, &acc11);
}

// ---- entry points: grid (⌈N/BN⌉, ⌈M/BM⌉), workgroup 16×16 -----------------------------------

// NN: C(M,N) = A(M,K)·B(K,N). Dense layers: the input gradient dx = dy·W.
@compute @workgroup_size(16, 16)
fn matmul_nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm(A_MK, B_KN, wg, lid);
}

// NT: C(M,N) = A(M,K)·B(N,K)ᵀ. Dense layers: the forward y = x·Wᵀ (+ bias, activation).
@compute @workgroup_size(16, 16)
fn matmul_nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm(A_MK, B_NK, wg, lid);
}

// TN: C(M,N) = A(K,M)ᵀ·B(K,N). Dense layers: the weight gradient dW = dyᵀ·x (accumulated).
@compute @workgroup_size(16, 16)
fn matmul_tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm(A_KM, B_KN, wg, lid);
}
