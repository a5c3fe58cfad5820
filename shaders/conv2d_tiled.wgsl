// 2-D convolution (NCHW, weights [c_out, c_in/groups, kh, kw]) by implicit GEMM with tile
// sizes chosen per pipeline: forward, gradient w.r.t. the input, gradient w.r.t. the
// weights (split-K). The same three GEMMs as shaders/conv2d.wgsl (read its header for the
// derivation), computed faster:
//
// - Gathers by table. The operand gathered from the image (the patches, or dy⁺ for the
//   input gradient) is indexed by a column (a pixel, or a kernel tap for the weight
//   gradient) and a contracted index k. Both decompose with divisions by the shape (b, oy,
//   ox or ci, ki, kj), which on a GPU cost tens of instructions each. Here the columns of a
//   workgroup's tile are decomposed once, into `col_tab` (offset, row, column), and the BK
//   values of k of each slice once per slice, into `k_tab`, by BK invocations while the
//   others multiply the previous slice (double-buffered, so no extra barrier); a staged
//   element then costs two table reads, two adds, a bounds test and the load.
// - Tile sizes are pipeline-overridable: BN columns, BK per slice, TN4 vec4 columns per
//   invocation (TN = 4·TN4), 4 rows per invocation, 256 invocations, so BM = 4·256/(BN/TN).
//   (16×256, 32×128, 64×64 with 4×4 per invocation; 32×256, 64×128 with 4×8.) The launcher
//   picks per shape and pass (gpu::autotune, or a heuristic on the number of rows).
//
// - Stride phases for the input gradient. With stride s > 1, input row iy receives from
//   kernel row ki only where iy + pad − ki·dil is a multiple of s: a 3×3 stride-2 kernel
//   reaches each pixel through 2.25 of its 9 taps on average, and a GEMM over every tap
//   multiplies by zero three times in four. `conv2d_backward_input_phased` splits the
//   pixels by their phase ((iy + pad_h) mod s_h, (ix + pad_w) mod s_w): one GEMM per phase
//   and group (grid z), over that phase's pixels only, with K = c_out/groups × the taps of
//   that phase. A phase that no tap reaches (a 1×1 stride-2 kernel's odd pixels) has K = 0
//   and writes zeros.
//
// Summation order: every element of C sums its k products in ascending k within its split,
// with fma, whatever the tile; the split-K chunking of the weight gradient is a function of
// the shape only (gpu::kernels::conv2d::backward_weight_splits). So every tile gives the
// same bits as every other, and results repeat bit for bit. The phased input gradient
// leaves out only products with a zero (adding +0 leaves a sum's bits as they are) and
// keeps the others in ascending (co, ki, kj): the same bits as the unphased GEMM.
//
// Gradient convention: dx and dW are overwritten, or added to when `accumulate` = 1 (a
// parameter used twice, a tensor read by several nodes).
//
// Bindings (auto layout), as in conv2d.wgsl:
//   entry                    1 (read)   2 (read_write)   3 (read)
//   conv2d_forward           x          y                w
//   conv2d_backward_input    dy         dx               w
//   conv2d_backward_weight   x          dW or partial    dy

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
    plen: u32,
    accumulate: u32,
    splits: u32,
    chunk: u32,
    wlen: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src_a: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> src_b: array<f32>;

// Columns per tile, k per slice (8 or 16), vec4 columns per invocation (1 or 2).
override BN: u32 = 64u;
override BK: u32 = 16u;
override TN4: u32 = 1u;
// Invocations along N and M; rows per tile (4 per invocation).
override WN: u32 = BN / (4u * TN4);
override WM: u32 = 256u / WN;
override BM: u32 = 4u * WM;
// vec4s from one k of a staged slice to the next: a row's BM/4 (BN/4) and one of padding,
// so that the stores of consecutive invocations along k (A always, B for the weight
// gradient) spread over the banks of workgroup memory instead of all falling into one (see
// shaders/matmul.wgsl). The padding is never read.
override A_ROW: u32 = BM / 4u + 1u;
override B_ROW: u32 = BN / 4u + 1u;
override A_TILE: u32 = BK * A_ROW;
override B_TILE: u32 = BK * B_ROW;

const THREADS: u32 = 256u;
const FWD: u32 = 0u;
const BWD_IN: u32 = 1u;
const BWD_W: u32 = 2u;
const BWD_IN_PHASED: u32 = 3u;

// The stride phase one workgroup of conv2d_backward_input_phased computes (set first).
struct Phase {
    // (iy + pad_h) mod stride_h of its pixels' rows, likewise of their columns.
    ry: u32,
    rx: u32,
    // Its first input row and column, and how many rows and columns it has.
    iy0: u32,
    ix0: u32,
    rows: u32,
    cols: u32,
    // How many kernel rows and columns reach its pixels.
    taps_y: u32,
    taps_x: u32,
}

var<private> phase: Phase;

// k-major staged slices, as in matmul_tiled.wgsl.
var<workgroup> a_tile: array<vec4<f32>, A_TILE>;
var<workgroup> b_tile: array<vec4<f32>, B_TILE>;
// Per column of the tile, and per k of the current and next slice (two halves of 16).
//   pass             col_tab (.x offset, .y, .z, .w)                k_tab (.x offset, .y, .z, .w)
//   forward          x[b, g·cpg_in] offset, oy·sh − ph, ox·sw − pw,  ci·h·w, ki·dh, kj·dw, —
//                    y offset b·c_out·ohw + oy·ow + ox
//   backward input   dy[b, g·cpg_out] offset, iy + ph, ix + pw,      co·ohw, ki·dh, kj·dw,
//                    dx offset b·c_in·hw + iy·w + ix                 w offset co·cpg_in·khw + ki·kw + kj
//   backward weight  x[·, g·cpg_in + ci] offset, ki·dh, kj·dw, —    b·c_in·h·w, oy·sh − ph, ox·sw − pw,
//                                                                    dy offset b·c_out·ohw + oy·ow + ox
var<workgroup> col_tab: array<vec4<i32>, BN>;
var<workgroup> k_tab: array<vec4<i32>, 32>;

// Sizes (M, N, K) of each GEMM, per group.
fn gemm_m(which: u32) -> u32 {
    if (which == BWD_IN || which == BWD_IN_PHASED) {
        return p.cpg_in;
    }
    return p.cpg_out;
}

fn gemm_n(which: u32) -> u32 {
    switch which {
        case 0u: { return p.n * p.oh * p.ow; }
        case 1u: { return p.n * p.h * p.w; }
        case 3u: { return p.n * phase.rows * phase.cols; }
        default: { return p.plen; }
    }
}

fn gemm_k(which: u32) -> u32 {
    switch which {
        case 0u: { return p.plen; }
        case 1u: { return p.cpg_out * p.kh * p.kw; }
        case 3u: { return p.cpg_out * phase.taps_y * phase.taps_x; }
        default: { return p.n * p.oh * p.ow; }
    }
}

// The table entry of column `col` of group g (see col_tab).
fn col_entry(which: u32, g: u32, col: u32) -> vec4<i32> {
    switch which {
        case 0u: {
            let ohw = p.oh * p.ow;
            let b = col / ohw;
            let r = col % ohw;
            let oy = r / p.ow;
            let ox = r % p.ow;
            return vec4<i32>(
                i32((b * p.c_in + g * p.cpg_in) * p.h * p.w),
                i32(oy * p.stride_h) - i32(p.pad_h),
                i32(ox * p.stride_w) - i32(p.pad_w),
                i32(b * p.c_out * ohw + r),
            );
        }
        case 1u: {
            let hw = p.h * p.w;
            let b = col / hw;
            let r = col % hw;
            let iy = r / p.w;
            let ix = r % p.w;
            return vec4<i32>(
                i32((b * p.c_out + g * p.cpg_out) * p.oh * p.ow),
                i32(iy + p.pad_h),
                i32(ix + p.pad_w),
                i32(b * p.c_in * hw + r),
            );
        }
        case 3u: {
            let pix = phase.rows * phase.cols;
            let b = col / pix;
            let r = col % pix;
            let iy = phase.iy0 + (r / phase.cols) * p.stride_h;
            let ix = phase.ix0 + (r % phase.cols) * p.stride_w;
            return vec4<i32>(
                i32((b * p.c_out + g * p.cpg_out) * p.oh * p.ow),
                i32(iy + p.pad_h),
                i32(ix + p.pad_w),
                i32(b * p.c_in * p.h * p.w + iy * p.w + ix),
            );
        }
        default: {
            let kj = col % p.kw;
            let t = col / p.kw;
            let ki = t % p.kh;
            let ci = t / p.kh;
            return vec4<i32>(
                i32((g * p.cpg_in + ci) * p.h * p.w),
                i32(ki * p.dil_h),
                i32(kj * p.dil_w),
                0,
            );
        }
    }
}

// The table entry of contracted index k (see k_tab).
fn k_entry(which: u32, k: u32) -> vec4<i32> {
    switch which {
        case 0u: {
            let kj = k % p.kw;
            let t = k / p.kw;
            let ki = t % p.kh;
            let ci = t / p.kh;
            return vec4<i32>(i32(ci * p.h * p.w), i32(ki * p.dil_h), i32(kj * p.dil_w), 0);
        }
        case 1u: {
            let khw = p.kh * p.kw;
            let co = k / khw;
            let kr = k % khw;
            let ki = kr / p.kw;
            let kj = kr % p.kw;
            return vec4<i32>(
                i32(co * p.oh * p.ow),
                i32(ki * p.dil_h),
                i32(kj * p.dil_w),
                i32(co * p.cpg_in * khw + kr),
            );
        }
        case 3u: {
            let taps = phase.taps_y * phase.taps_x;
            if (taps == 0u) {
                return vec4<i32>(0);
            }
            let co = k / taps;
            let kr = k % taps;
            let ki = nth_tap(kr / phase.taps_x, phase.ry, p.kh, p.dil_h, p.stride_h);
            let kj = nth_tap(kr % phase.taps_x, phase.rx, p.kw, p.dil_w, p.stride_w);
            return vec4<i32>(
                i32(co * p.oh * p.ow),
                i32(ki * p.dil_h),
                i32(kj * p.dil_w),
                i32(co * p.cpg_in * p.kh * p.kw + ki * p.kw + kj),
            );
        }
        default: {
            let ohw = p.oh * p.ow;
            let b = k / ohw;
            let r = k % ohw;
            let oy = r / p.ow;
            let ox = r % p.ow;
            return vec4<i32>(
                i32(b * p.c_in * p.h * p.w),
                i32(oy * p.stride_h) - i32(p.pad_h),
                i32(ox * p.stride_w) - i32(p.pad_w),
                i32(b * p.c_out * ohw + r),
            );
        }
    }
}

// A[m, k] of group g; ke is k's table entry. 0 outside the matrix.
fn a_val(which: u32, g: u32, m: u32, k: u32, ke: vec4<i32>) -> f32 {
    if (m >= gemm_m(which) || k >= gemm_k(which)) {
        return 0.0;
    }
    switch which {
        case 0u: {
            return src_b[(g * p.cpg_out + m) * p.plen + k];
        }
        case 1u, 3u: {
            let khw = p.kh * p.kw;
            return src_b[g * p.cpg_out * p.cpg_in * khw + u32(ke.w) + m * khw];
        }
        default: {
            return src_b[u32(ke.w) + (g * p.cpg_out + m) * p.oh * p.ow];
        }
    }
}

// B[k, col]; ke and ce are the table entries of k and col. 0 outside the matrix and in
// the padding.
fn b_val(which: u32, k: u32, col: u32, ke: vec4<i32>, ce: vec4<i32>) -> f32 {
    if (k >= gemm_k(which) || col >= gemm_n(which)) {
        return 0.0;
    }
    if (which == BWD_IN_PHASED) {
        // The phase's taps make iy + ph − ki·dh a multiple of sh (likewise x): the
        // division is exact; only the range is left to test.
        let ty = ce.y - ke.y;
        let tx = ce.z - ke.z;
        if (ty < 0 || tx < 0) {
            return 0.0;
        }
        let oy = u32(ty) / p.stride_h;
        let ox = u32(tx) / p.stride_w;
        if (oy >= p.oh || ox >= p.ow) {
            return 0.0;
        }
        return src_a[u32(ce.x + ke.x) + oy * p.ow + ox];
    }
    if (which == BWD_IN) {
        // dy[b, co, oy, ox] where oy·sh = iy + ph − ki·dh exactly (likewise x), in range.
        let ty = ce.y - ke.y;
        let tx = ce.z - ke.z;
        if (ty < 0 || tx < 0) {
            return 0.0;
        }
        var oy = u32(ty);
        var ox = u32(tx);
        if (p.stride_h != 1u) {
            if (oy % p.stride_h != 0u) {
                return 0.0;
            }
            oy = oy / p.stride_h;
        }
        if (p.stride_w != 1u) {
            if (ox % p.stride_w != 0u) {
                return 0.0;
            }
            ox = ox / p.stride_w;
        }
        if (oy >= p.oh || ox >= p.ow) {
            return 0.0;
        }
        return src_a[u32(ce.x + ke.x) + oy * p.ow + ox];
    }
    // Forward and weight gradient: x at (row, column) = (ce.y + ke.y, ce.z + ke.z).
    let iy = ce.y + ke.y;
    let ix = ce.z + ke.z;
    if (u32(iy) >= p.h || u32(ix) >= p.w) {
        // Negative values wrap to large ones: one test covers both sides.
        return 0.0;
    }
    return src_a[u32(ce.x + ke.x) + u32(iy) * p.w + u32(ix)];
}

// Writes C[m, col] = v of group g (split `split` of the weight gradient); ce is col's
// table entry.
fn store(which: u32, g: u32, split: u32, m: u32, col: u32, ce: vec4<i32>, v: f32) {
    if (m >= gemm_m(which) || col >= gemm_n(which)) {
        return;
    }
    switch which {
        case 0u: {
            dst[u32(ce.w) + (g * p.cpg_out + m) * p.oh * p.ow] = v;
        }
        case 1u, 3u: {
            let idx = u32(ce.w) + (g * p.cpg_in + m) * p.h * p.w;
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

// (group, split, first k, end of k) of this workgroup, as in conv2d.wgsl: chunk is a
// multiple of 16, so of BK, and no slice crosses a split.
fn k_range(which: u32, z: u32) -> vec4<u32> {
    if (which == BWD_IN_PHASED) {
        return vec4<u32>(z / (p.stride_h * p.stride_w), 0u, 0u, gemm_k(which));
    }
    if (which != BWD_W) {
        return vec4<u32>(z, 0u, 0u, gemm_k(which));
    }
    let split = z % p.splits;
    let k_begin = split * p.chunk;
    return vec4<u32>(z / p.splits, split, k_begin, min(gemm_k(which), k_begin + p.chunk));
}

// Kernel index of the t-th tap, ascending, of the phase whose residue is r: the t-th i in
// 0..k with i·d ≡ r (mod s); k when there are fewer.
fn nth_tap(t: u32, r: u32, k: u32, d: u32, s: u32) -> u32 {
    var seen = 0u;
    for (var i = 0u; i < k; i++) {
        if ((i * d) % s == r) {
            if (seen == t) {
                return i;
            }
            seen += 1u;
        }
    }
    return k;
}

// The phase of grid layer z (group-major: z = g·sh·sw + ry·sw + rx) along one axis:
// (first index, count) of the `size` pixels i with (i + pad) mod s = r, and the taps
// reaching them.
fn phase_axis(r: u32, size: u32, pad: u32, s: u32, k: u32, d: u32) -> vec3<u32> {
    let first = (r + s - pad % s) % s;
    var count = 0u;
    if (first < size) {
        count = (size - first + s - 1u) / s;
    }
    var taps = 0u;
    for (var i = 0u; i < k; i++) {
        if ((i * d) % s == r) {
            taps += 1u;
        }
    }
    return vec3<u32>(first, count, taps);
}

fn set_phase(z: u32) {
    let ph = z % (p.stride_h * p.stride_w);
    let ry = ph / p.stride_w;
    let rx = ph % p.stride_w;
    let y = phase_axis(ry, p.h, p.pad_h, p.stride_h, p.kh, p.dil_h);
    let x = phase_axis(rx, p.w, p.pad_w, p.stride_w, p.kw, p.dil_w);
    phase = Phase(ry, rx, y.x, x.x, y.y, x.y, y.z, x.z);
}

fn stage(which: u32, g: u32, m0: u32, n0: u32, k0: u32, half: u32, t: u32) {
    // A: consecutive invocations along k, the contiguous index of w and (weight gradient) dy.
    for (var e = t; e < BM * BK; e += THREADS) {
        let kk = e % BK;
        let mm = e / BK;
        let v = a_val(which, g, m0 + mm, k0 + kk, k_tab[half + kk]);
        a_tile[kk * A_ROW + mm / 4u][mm % 4u] = v;
    }
    // B: consecutive invocations along whichever index is contiguous in the image: the
    // pixel column (forward, input gradient), k (weight gradient).
    for (var e = t; e < BN * BK; e += THREADS) {
        var kk = e / BN;
        var nn = e % BN;
        if (which == BWD_W) {
            kk = e % BK;
            nn = e / BK;
        }
        let v = b_val(which, k0 + kk, n0 + nn, k_tab[half + kk], col_tab[nn]);
        b_tile[kk * B_ROW + nn / 4u][nn % 4u] = v;
    }
}

// Four rows of one column group of an invocation's part of C.
alias Block = array<vec4<f32>, 4>;

// blk[i] += av[i] · bv: one k of a 4×4 block.
fn rank1(av: vec4<f32>, bv: vec4<f32>, blk: ptr<function, Block>) {
    (*blk)[0] = fma(vec4<f32>(av.x), bv, (*blk)[0]);
    (*blk)[1] = fma(vec4<f32>(av.y), bv, (*blk)[1]);
    (*blk)[2] = fma(vec4<f32>(av.z), bv, (*blk)[2]);
    (*blk)[3] = fma(vec4<f32>(av.w), bv, (*blk)[3]);
}

// Stores row m of columns n0 + nn .. +3 (row: a value, indexed freely).
fn store_row(which: u32, g: u32, split: u32, m: u32, n0: u32, nn: u32, row: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        store(which, g, split, m, n0 + nn + j, col_tab[nn + j], row[j]);
    }
}

// Stores a block: rows m .. m + 3, tile columns nn .. nn + 3, written out by row.
fn store_block(which: u32, g: u32, split: u32, m: u32, n0: u32, nn: u32, blk: ptr<function, Block>) {
    store_row(which, g, split, m, n0, nn, (*blk)[0]);
    store_row(which, g, split, m + 1u, n0, nn, (*blk)[1]);
    store_row(which, g, split, m + 2u, n0, nn, (*blk)[2]);
    store_row(which, g, split, m + 3u, n0, nn, (*blk)[3]);
}

// One invocation: rows m0 + 4·ty .. +3 and the vec4 column groups tx, tx + WN of the tile.
fn gemm(which: u32, wg: vec3<u32>, t: u32) {
    if (which == BWD_IN_PHASED) {
        set_phase(wg.z);
        // The grid covers the largest phase; this one may have fewer pixels. (Uniform: it
        // depends on the workgroup id and the parameters only.)
        if (wg.x * BN >= gemm_n(which)) {
            return;
        }
    }
    let r = k_range(which, wg.z);
    let g = r.x;
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    let at = gemm_invocation(t, WN);
    let ty = at.x;
    let tx = at.y;
    for (var e = t; e < BN; e += THREADS) {
        col_tab[e] = col_entry(which, g, n0 + e);
    }
    if (t < BK) {
        k_tab[t] = k_entry(which, r.z + t);
    }
    workgroupBarrier();
    // Column groups 0 and 1 (the second only with TN4 = 2): acc{s}[i] holds row 4·ty + i
    // and columns 4(tx + WN·s) ..+3. Two whole variables, indexed by constants only (see
    // shaders/matmul_tiled.wgsl on registers and tests/shaders.rs).
    var acc0: Block;
    var acc1: Block;
    var half = 0u;
    for (var k0 = r.z; k0 < r.w; k0 += BK) {
        stage(which, g, m0, n0, k0, half, t);
        workgroupBarrier();
        // The next slice's table, into the other half, while the slice is multiplied.
        if (t < BK) {
            k_tab[(16u - half) + t] = k_entry(which, k0 + BK + t);
        }
        for (var kk = 0u; kk < BK; kk++) {
            let av = a_tile[kk * A_ROW + ty];
            rank1(av, b_tile[kk * B_ROW + tx], &acc0);
            if (TN4 > 1u) {
                rank1(av, b_tile[kk * B_ROW + tx + WN], &acc1);
            }
        }
        half = 16u - half;
        workgroupBarrier();
    }
    store_block(which, g, r.y, m0 + 4u * ty, n0, 4u * tx, &acc0);
    if (TN4 > 1u) {
        store_block(which, g, r.y, m0 + 4u * ty, n0, 4u * (tx + WN), &acc1);
    }
}

// Grid (⌈N/BN⌉, ⌈M/BM⌉, z), z = groups, or groups·splits for the weight gradient.

// y[b, g·cpg_out + m, oy, ox] (overwrites).
@compute @workgroup_size(256)
fn conv2d_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    gemm(FWD, wg, t);
}

// dx[b, g·cpg_in + ci, iy, ix] (overwrites).
@compute @workgroup_size(256)
fn conv2d_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    gemm(BWD_IN, wg, t);
}

// dx of the pixels of one stride phase (grid z = group·sh·sw + phase; overwrites).
@compute @workgroup_size(256)
fn conv2d_backward_input_phased(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    gemm(BWD_IN_PHASED, wg, t);
}

// dW[g·cpg_out + co, (ci, ki, kj)] over split wg.z % splits: dW itself (adding when
// `accumulate`) with one split, else the split's slice of the partial sums, which
// conv2d.wgsl's conv2d_backward_weight_reduce adds in split order.
@compute @workgroup_size(256)
fn conv2d_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    gemm(BWD_W, wg, t);
}
