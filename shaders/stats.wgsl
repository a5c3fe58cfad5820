// Per-tensor statistics, reduced in a fixed order so that every run gives the same bits.
//
// Algorithm: a two-pass tree reduction of "statistics records" (src/stats/record.rs).
// - Moments: Welford's online update per element, Chan et al.'s pairwise formula to merge
//   two partial (count, mean, M2) triples ("Updating formulae and a pairwise algorithm for
//   computing sample variances", 1979). M2 is kept divided by scale² (scale = max|x|, the
//   norm's scale below), rescaled with the norm's ssq, for the same reason: raw M2 of
//   1e30-sized values overflows f32 and of 1e-30-sized values underflows. The mean is not
//   scaled (|mean| ≤ scale cannot overflow).
// - L2 norm: LAPACK's scaled sum of squares (dnrm2 before 3.10): keep (scale, ssq) with
//   norm = scale·sqrt(ssq) and scale = max|x|, rescaling ssq when a larger |x| arrives, so
//   that neither 1e30-sized values overflow nor 1e-30-sized values underflow.
// - Histogram of log2|x|: read from the IEEE exponent field with bitcast (exact everywhere,
//   unlike `log2`), counted with integer atomics on workgroup memory (integer sums do not
//   depend on order, so the atomics keep the result deterministic).
// Classification (NaN, ±Inf, zero, absolute value) is done on the bits too: WGSL lets an
// implementation assume that floats are finite, and some devices flush subnormals to zero,
// so `x != x` or `x == 0.0` would not be reliable.
//
// Fixed order: in `stats_partial`, invocation t of workgroup w walks elements
// w·CHUNK + t + k·WG for k = 0..PER sequentially, then the workgroup merges its WG lanes in
// a fixed binary tree (lane t absorbs lane t + s for s = WG/2, …, 1). `stats_finalize`
// does the same over a job's partial records (lane t absorbs partials t, t + WG, … in
// turn, then the tree). The CPU twin (src/cpu/stats.rs) follows exactly this order.

const WG: u32 = 256u;
// Elements per invocation in stats_partial; CHUNK = WG·PER elements per partial record.
const PER: u32 = 8u;
const CHUNK: u32 = 2048u;
const HIST_BINS: u32 = 40u;
// log2|x| at the lower edge of bin 0 and bin width (record.rs: HIST_LOG2_LO, HIST_BIN_WIDTH).
const HIST_LOG2_LO: i32 = -64;
const HIST_BIN_WIDTH: i32 = 2;
const F32_INF_BITS: u32 = 0x7f800000u;
const F32_NEG_INF_BITS: u32 = 0xff800000u;

// Must match `RawStats` in src/stats/record.rs word for word (56 words).
struct StatRecord {
    finite: u32,
    nan: u32,
    inf: u32,
    zeros: u32,
    saturated: u32,
    mean: f32,
    m2_scaled: f32,
    min: f32,
    max: f32,
    max_abs: f32,
    norm_ssq: f32,
    hist: array<u32, 40>,
    pad: array<u32, 5>,
}

// One entry of the finalize job table (`StatsJob` in src/gpu/kernels/stats.rs).
struct Job {
    partial_base: u32,
    partial_count: u32,
    record: u32,
    pad: u32,
}

// A record without its histogram: the state of one lane, kept in workgroup memory for the
// tree merge. The histogram lives in `hist_acc` (atomics) instead.
struct Acc {
    finite: u32,
    nan: u32,
    inf: u32,
    zeros: u32,
    saturated: u32,
    mean: f32,
    // M2 / scale² (record.rs: RawStats::m2_scaled).
    m2s: f32,
    mn: f32,
    mx: f32,
    scale: f32,
    ssq: f32,
}

struct PartialParams {
    len: u32,
    partial_base: u32,
    // 1 when saturation bounds are given.
    saturate: u32,
    pad0: u32,
    lo: f32,
    hi: f32,
    pad1: u32,
    pad2: u32,
}

struct FinalizeParams {
    n_jobs: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

struct DeadParams {
    rows: u32,
    cols: u32,
    index: u32,
    pad0: u32,
}

var<workgroup> lanes: array<Acc, 256>;
var<workgroup> hist_acc: array<atomic<u32>, 40>;
var<workgroup> dead_lanes: array<u32, 256>;

fn acc_empty() -> Acc {
    return Acc(0u, 0u, 0u, 0u, 0u, 0.0, 0.0, bitcast<f32>(F32_INF_BITS),
        bitcast<f32>(F32_NEG_INF_BITS), 0.0, 0.0);
}

// record.rs `RawStats::hist_bin`: floor(log2|x|) from the exponent field, in bins of
// HIST_BIN_WIDTH from 2^HIST_LOG2_LO, clamped. WGSL's `/` truncates where Rust's
// div_euclid floors, but the two differ only for a negative numerator, which clamps to
// bin 0 either way.
fn hist_bin(bits: u32) -> u32 {
    let e = i32((bits >> 23u) & 0xffu) - 127;
    let b = (e - HIST_LOG2_LO) / HIST_BIN_WIDTH;
    return u32(clamp(b, 0, i32(HIST_BINS) - 1));
}

// Folds one element into a lane. Mirrors `push` in src/cpu/stats.rs operation by operation.
fn acc_push(a: ptr<function, Acc>, x: f32, saturate: bool, lo: f32, hi: f32) {
    let bits = bitcast<u32>(x);
    if ((bits & 0x7f800000u) == 0x7f800000u) {
        if ((bits & 0x007fffffu) != 0u) {
            (*a).nan += 1u;
        } else {
            (*a).inf += 1u;
        }
        return;
    }
    let abs_bits = bits & 0x7fffffffu;
    if (abs_bits == 0u) {
        (*a).zeros += 1u;
    }
    if (saturate && (x <= lo || x >= hi)) {
        (*a).saturated += 1u;
    }
    // nrm2: ssq holds Σ(x/scale)²; a larger |x| becomes the scale and rescales the sum.
    // m2s is relative to the same scale, so it is rescaled by the same r² (before the
    // Welford step, which then divides by the new scale).
    let ax = bitcast<f32>(abs_bits);
    if (ax > (*a).scale) {
        let r = (*a).scale / ax;
        let rr = r * r;
        (*a).ssq = 1.0 + (*a).ssq * rr;
        (*a).m2s = (*a).m2s * rr;
        (*a).scale = ax;
    } else if (ax > 0.0) {
        let r = ax / (*a).scale;
        (*a).ssq = (*a).ssq + r * r;
    }
    (*a).finite += 1u;
    if ((*a).finite == 1u) {
        (*a).mean = x;
        (*a).m2s = 0.0;
        (*a).mn = x;
        (*a).mx = x;
    } else {
        // Welford: mean_n = mean_{n-1} + (x − mean_{n-1})/n, M2 += (x − mean_{n-1})(x − mean_n),
        // here divided by s² = scale² factor by factor. s = 0 means every value so far,
        // x included, is zero: M2 stays 0 (and 0/0 must not be formed).
        let delta = x - (*a).mean;
        (*a).mean = (*a).mean + delta / f32((*a).finite);
        let s = (*a).scale;
        if (s > 0.0) {
            (*a).m2s = (*a).m2s + (delta / s) * ((x - (*a).mean) / s);
        }
        if (x < (*a).mn) {
            (*a).mn = x;
        }
        if (x > (*a).mx) {
            (*a).mx = x;
        }
    }
}

// a ← a ⊕ b (Chan for the moments, nrm2 rescaling for the norm). Mirrors
// `RawStats::merge` in src/stats/record.rs.
fn acc_merge(a: Acc, b: Acc) -> Acc {
    var r = a;
    r.nan = a.nan + b.nan;
    r.inf = a.inf + b.inf;
    r.zeros = a.zeros + b.zeros;
    r.saturated = a.saturated + b.saturated;
    if (b.finite == 0u) {
        return r;
    }
    if (a.finite == 0u) {
        r.finite = b.finite;
        r.mean = b.mean;
        r.m2s = b.m2s;
        r.mn = b.mn;
        r.mx = b.mx;
        r.scale = b.scale;
        r.ssq = b.ssq;
        return r;
    }
    let n = a.finite + b.finite;
    r.finite = n;
    if (b.mn < a.mn) {
        r.mn = b.mn;
    }
    if (b.mx > a.mx) {
        r.mx = b.mx;
    }
    // Both sums of squares are relative to their own scale: bring the smaller side's to
    // the larger scale s (multiply by q² ≤ 1). b.scale = 0: b holds only zeros, its sums
    // are 0 and a's scale stays.
    var m2_sum: f32;
    if (b.scale > a.scale) {
        let q = a.scale / b.scale;
        let qq = q * q;
        r.ssq = b.ssq + a.ssq * qq;
        m2_sum = a.m2s * qq + b.m2s;
        r.scale = b.scale;
    } else if (b.scale > 0.0) {
        let q = b.scale / a.scale;
        let qq = q * q;
        r.ssq = a.ssq + b.ssq * qq;
        m2_sum = a.m2s + b.m2s * qq;
    } else {
        m2_sum = a.m2s + b.m2s;
    }
    // Chan: mean = ma + δ·nb/n, M2 = M2a + M2b + δ²·na·nb/n with δ = mb − ma; divided by
    // s², the last term is (δ/s)²·na·nb/n. s = 0 means both sides are all zeros: δ = 0.
    let delta = b.mean - a.mean;
    let fb = f32(b.finite) / f32(n);
    r.mean = a.mean + delta * fb;
    let s = r.scale;
    if (s > 0.0) {
        let ds = delta / s;
        r.m2s = m2_sum + (ds * ds) * (f32(a.finite) * fb);
    } else {
        r.m2s = m2_sum;
    }
    return r;
}

fn acc_of_record(s: StatRecord) -> Acc {
    return Acc(s.finite, s.nan, s.inf, s.zeros, s.saturated, s.mean, s.m2_scaled, s.min, s.max,
        s.max_abs, s.norm_ssq);
}

// Lane 0 after the tree plus the histogram, as a record. The caller has passed a barrier
// after the last atomic add.
fn record_of(a: Acc) -> StatRecord {
    var s: StatRecord;
    s.finite = a.finite;
    s.nan = a.nan;
    s.inf = a.inf;
    s.zeros = a.zeros;
    s.saturated = a.saturated;
    s.mean = a.mean;
    s.m2_scaled = a.m2s;
    s.min = a.mn;
    s.max = a.mx;
    s.max_abs = a.scale;
    s.norm_ssq = a.ssq;
    for (var b = 0u; b < HIST_BINS; b++) {
        s.hist[b] = atomicLoad(&hist_acc[b]);
    }
    for (var p = 0u; p < 5u; p++) {
        s.pad[p] = 0u;
    }
    return s;
}

// The fixed tree, `tree_merge(tid, a) -> Acc`, lives in stats_tree.wgsl (workgroup memory
// only) or stats_tree_subgroup.wgsl (its last levels through subgroup shuffles), one of
// which src/gpu/shaders.rs appends to this file: lane t absorbs lane t + s for
// s = WG/2, …, 1, and invocation 0 gets the result, the same bits either way.

// The histogram bin an invocation is counting in a partial pass. Counts are flushed to
// workgroup memory only when the bin changes: values of one tensor cluster in a few bins,
// so this saves most of the atomic traffic.
struct HistRun {
    bin: u32,
    count: u32,
}

fn hist_push(h: ptr<function, HistRun>, v: f32) {
    let bits = bitcast<u32>(v);
    let abs_bits = bits & 0x7fffffffu;
    if (abs_bits != 0u && abs_bits < 0x7f800000u) {
        let b = hist_bin(bits);
        if ((*h).count != 0u && b != (*h).bin) {
            atomicAdd(&hist_acc[(*h).bin], (*h).count);
            (*h).count = 0u;
        }
        (*h).bin = b;
        (*h).count += 1u;
    }
}

fn hist_flush(h: HistRun) {
    if (h.count != 0u) {
        atomicAdd(&hist_acc[h.bin], h.count);
    }
}

// ---------------------------------------------------------------------------------------
// stats_partial: x is (len,) f32. Workgroup w (flattened from a 2-D grid when there are
// more than 65535 chunks) reduces x[w·CHUNK .. min((w+1)·CHUNK, len)] into
// partials[partial_base + w]; one invocation first folds its PER strided elements.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials_out: array<StatRecord>;
@group(0) @binding(2) var<uniform> pp: PartialParams;

@compute @workgroup_size(256)
fn stats_partial(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = wid.x + wid.y * nwg.x;
    let n_chunks = (pp.len + CHUNK - 1u) / CHUNK;
    // Uniform across the workgroup (depends on the workgroup id only), so the barriers
    // below stay in uniform control flow.
    if (w >= n_chunks) {
        return;
    }
    if (tid < HIST_BINS) {
        atomicStore(&hist_acc[tid], 0u);
    }
    workgroupBarrier();

    let saturate = pp.saturate != 0u;
    var a = acc_empty();
    var h = HistRun(0u, 0u);
    let start = w * CHUNK;
    for (var k = 0u; k < PER; k++) {
        let i = start + tid + k * WG;
        if (i < pp.len) {
            let v = x[i];
            acc_push(&a, v, saturate, pp.lo, pp.hi);
            hist_push(&h, v);
        }
    }
    hist_flush(h);
    let merged = tree_merge(tid, a);
    if (tid == 0u) {
        partials_out[pp.partial_base + w] = record_of(merged);
    }
}

// ---------------------------------------------------------------------------------------
// stats_partial_multi: the partial records of up to MULTI tensors in one dispatch, so that a
// run of statistics ops costs one dispatch (and one pipeline barrier) instead of one each.
// Tensor j is bound at xj; its chunks are workgroups mp.jobs[j].first_chunk .. + chunks(len).
// Each chunk is reduced exactly as stats_partial reduces it (same order, same bits).

const MULTI: u32 = 16u;

struct MultiJob {
    len: u32,
    partial_base: u32,
    saturate: u32,
    first_chunk: u32,
    lo: f32,
    hi: f32,
    pad0: u32,
    pad1: u32,
}

struct MultiParams {
    n_jobs: u32,
    total_chunks: u32,
    pad0: u32,
    pad1: u32,
    jobs: array<MultiJob, MULTI>,
}

@group(0) @binding(0) var<storage, read> x0: array<f32>;
@group(0) @binding(1) var<storage, read> x1: array<f32>;
@group(0) @binding(2) var<storage, read> x2: array<f32>;
@group(0) @binding(3) var<storage, read> x3: array<f32>;
@group(0) @binding(4) var<storage, read> x4: array<f32>;
@group(0) @binding(5) var<storage, read> x5: array<f32>;
@group(0) @binding(6) var<storage, read> x6: array<f32>;
@group(0) @binding(7) var<storage, read> x7: array<f32>;
@group(0) @binding(8) var<storage, read> x8: array<f32>;
@group(0) @binding(9) var<storage, read> x9: array<f32>;
@group(0) @binding(10) var<storage, read> x10: array<f32>;
@group(0) @binding(11) var<storage, read> x11: array<f32>;
@group(0) @binding(12) var<storage, read> x12: array<f32>;
@group(0) @binding(13) var<storage, read> x13: array<f32>;
@group(0) @binding(14) var<storage, read> x14: array<f32>;
@group(0) @binding(15) var<storage, read> x15: array<f32>;
@group(0) @binding(16) var<storage, read_write> multi_partials_out: array<StatRecord>;
@group(0) @binding(17) var<uniform> mp: MultiParams;

// Element i of tensor j (j is uniform across a workgroup, so the switch does not diverge).
fn load_x(j: u32, i: u32) -> f32 {
    switch j {
        case 0u: { return x0[i]; }
        case 1u: { return x1[i]; }
        case 2u: { return x2[i]; }
        case 3u: { return x3[i]; }
        case 4u: { return x4[i]; }
        case 5u: { return x5[i]; }
        case 6u: { return x6[i]; }
        case 7u: { return x7[i]; }
        case 8u: { return x8[i]; }
        case 9u: { return x9[i]; }
        case 10u: { return x10[i]; }
        case 11u: { return x11[i]; }
        case 12u: { return x12[i]; }
        case 13u: { return x13[i]; }
        case 14u: { return x14[i]; }
        default: { return x15[i]; }
    }
}

@compute @workgroup_size(256)
fn stats_partial_multi(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let w = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup (depends on the workgroup id only).
    if (w >= mp.total_chunks) {
        return;
    }
    // The job whose chunk range holds w: the last one starting at or before it.
    var j = 0u;
    for (var k = 1u; k < mp.n_jobs; k++) {
        if (mp.jobs[k].first_chunk <= w) {
            j = k;
        }
    }
    let job = mp.jobs[j];
    if (tid < HIST_BINS) {
        atomicStore(&hist_acc[tid], 0u);
    }
    workgroupBarrier();

    let saturate = job.saturate != 0u;
    let c = w - job.first_chunk;
    var a = acc_empty();
    var h = HistRun(0u, 0u);
    let start = c * CHUNK;
    for (var k = 0u; k < PER; k++) {
        let i = start + tid + k * WG;
        if (i < job.len) {
            let v = load_x(j, i);
            acc_push(&a, v, saturate, job.lo, job.hi);
            hist_push(&h, v);
        }
    }
    hist_flush(h);
    let merged = tree_merge(tid, a);
    if (tid == 0u) {
        multi_partials_out[job.partial_base + c] = record_of(merged);
    }
}

// ---------------------------------------------------------------------------------------
// stats_finalize: jobs is (n_jobs,) Job. Workgroup j (flattened from a 2-D grid) merges
// partials[job.partial_base .. + job.partial_count] into records[job.record]; invocation t
// folds partials t, t + WG, … in turn, then the fixed tree. No partials: the empty record.

@group(0) @binding(0) var<storage, read> partials_in: array<StatRecord>;
@group(0) @binding(1) var<storage, read> jobs: array<Job>;
@group(0) @binding(2) var<storage, read_write> records: array<StatRecord>;
@group(0) @binding(3) var<uniform> fp: FinalizeParams;

@compute @workgroup_size(256)
fn stats_finalize(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let j = wid.x + wid.y * nwg.x;
    if (j >= fp.n_jobs) {
        return;
    }
    if (tid < HIST_BINS) {
        atomicStore(&hist_acc[tid], 0u);
    }
    workgroupBarrier();

    let job = jobs[j];
    var a = acc_empty();
    for (var p = tid; p < job.partial_count; p += WG) {
        let s = partials_in[job.partial_base + p];
        a = acc_merge(a, acc_of_record(s));
        for (var b = 0u; b < HIST_BINS; b++) {
            if (s.hist[b] != 0u) {
                atomicAdd(&hist_acc[b], s.hist[b]);
            }
        }
    }
    let merged = tree_merge(tid, a);
    if (tid == 0u) {
        records[job.record] = record_of(merged);
    }
}

// ---------------------------------------------------------------------------------------
// dead_units: y is (rows, cols) f32, one workgroup. Invocation t counts the columns
// t, t + WG, … that are exactly zero (+0 or −0, judged on the bits) in every row; a fixed
// tree sums the counts into out[index].

@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read_write> dead_out: array<u32>;
@group(0) @binding(2) var<uniform> dp: DeadParams;

@compute @workgroup_size(256)
fn dead_units(@builtin(local_invocation_index) tid: u32) {
    var count = 0u;
    for (var c = tid; c < dp.cols; c += WG) {
        var dead = true;
        for (var r = 0u; r < dp.rows; r++) {
            if ((bitcast<u32>(y[r * dp.cols + c]) & 0x7fffffffu) != 0u) {
                dead = false;
                break;
            }
        }
        if (dead) {
            count += 1u;
        }
    }
    dead_lanes[tid] = count;
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        if (tid < s) {
            dead_lanes[tid] = dead_lanes[tid] + dead_lanes[tid + s];
        }
    }
    if (tid == 0u) {
        dead_out[dp.index] = dead_lanes[0];
    }
}
