// Per-tensor statistics, reduced in a fixed order so that every run gives the same bits.
//
// Algorithm: a two-pass tree reduction of "statistics records" (src/stats/record.rs).
// - Moments: within an invocation, shifted sums Σd and Σd² of d = x − K (K the
//   invocation's first element) turned into a (count, mean, M2) triple once; records are
//   merged by Chan et al.'s pairwise formula ("Updating formulae and a pairwise algorithm
//   for computing sample variances", 1979). M2 is kept divided by scale² (scale = max|x|,
//   the norm's scale below), rescaled with the norm's ssq, for the same reason: raw M2 of
//   1e30-sized values overflows f32 and of 1e-30-sized values underflows. The mean is not
//   scaled (|mean| ≤ scale cannot overflow).
// - L2 norm: LAPACK's scaled sum of squares (dnrm2 before 3.10): keep (scale, ssq) with
//   norm = scale·sqrt(ssq) and scale = max|x|, rescaling ssq when records of different
//   scales merge, so that neither 1e30-sized values overflow nor 1e-30-sized values
//   underflow. Within an invocation the scale is a power of two (see `Lane`).
// - Histogram of log2|x|: read from the IEEE exponent field with bitcast (exact everywhere,
//   unlike `log2`), counted in each invocation's registers, then added with integer atomics
//   on workgroup memory (integer sums do not depend on order, so the atomics keep the
//   result deterministic).
// Classification (NaN, ±Inf, zero, absolute value) is done on the bits too: WGSL lets an
// implementation assume that floats are finite, and some devices flush subnormals to zero,
// so `x != x` or `x == 0.0` would not be reliable.
//
// Fixed order: in `stats_partial`, invocation t of workgroup w walks elements
// w·CHUNK + t + k·WG for k = 0..PER (four loads at a time) into its running state, a
// `Lane`; the workgroup then merges its WG lanes in a fixed binary tree (lane t absorbs
// lane t + s for s = WG/2, …, 1). `stats_finalize` does the same over a job's partial
// records (lane t absorbs partials t, t + WG, … in turn, then the tree). The CPU twin
// (src/cpu/stats.rs) chunks and sums in its own order: counts, histogram and extremes
// agree exactly, the moments to f32 rounding.
//
// Why a Lane and not a record per element: the pass must move each byte once at the
// memory's speed. An element costs no division (Welford's mean update and nrm2's rescaling
// took three or four) and no workgroup atomic (the histogram counts in the lane's
// registers): the lane's sums are taken relative to a power of two 2^e ≥ max|x| / 2, which
// changes only when a larger exponent arrives (an exact rescaling by ldexp), and the moments
// are shifted sums Σd, Σd² of d = x − K, K the lane's first element, turned into Chan's
// (mean, M2) once per lane. PER is large so that the tree and the record write, a fixed
// cost per workgroup, are shared by many elements.

const WG: u32 = 256u;
// Elements per invocation in stats_partial (a multiple of 4, at most 255: a lane counts its
// histogram in bytes); CHUNK = WG·PER elements per partial record.
const PER: u32 = 32u;
const CHUNK: u32 = 8192u;
const HIST_BINS: u32 = 40u;
// log2|x| at the lower edge of bin 0 and bin width (record.rs: HIST_LOG2_LO, HIST_BIN_WIDTH).
const HIST_LOG2_LO: i32 = -64;
const HIST_BIN_WIDTH: i32 = 2;
const F32_INF_BITS: u32 = 0x7f800000u;
const F32_NEG_INF_BITS: u32 = 0xff800000u;

// Must match `RawStats` in src/stats/record.rs word for word (56 words): its first eleven
// words are an `Acc` (below), field for field, then the histogram and padding. Kept as one
// struct member so that a record is written as that head by one invocation and its 45
// other words by 45 invocations at once, straight into storage: building the whole record
// in a function variable and indexing its histogram by a loop variable would put it in
// memory on some drivers.
struct StatRecord {
    head: Acc,
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

// A record without its histogram (a record's first eleven words): a lane's state in the
// tree merge, kept in workgroup memory. The histogram lives in `hist_acc` (atomics).
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

// One invocation's running state in a partial pass. The sums are relative to 2^e, e the
// exponent of the largest |x| seen (clamped to the normal range so that 2^−e is a normal
// f32 too): ssq = Σ(x·2^−e)², s1 = Σd, s2 = Σd² with d = (x − K)·2^−e. Every value scaled
// by 2^−e is below 4 in magnitude, so neither 1e30-sized values overflow nor
// 1e-30-sized ones underflow. Shifting by K, an element of the lane, bounds the
// cancellation in M2 = s2 − s1²/n by the lane's length. The histogram is counted in
// bytes, bins 4i .. 4i + 3 in word hi, each lane folding at most PER < 256 elements.
struct Lane {
    finite: u32,
    nan: u32,
    inf: u32,
    zeros: u32,
    saturated: u32,
    mn: f32,
    mx: f32,
    e: i32,
    // 2^−e, and the shift K and K·2^−e.
    inv: f32,
    k: f32,
    ks: f32,
    s1: f32,
    s2: f32,
    ssq: f32,
    h0: u32,
    h1: u32,
    h2: u32,
    h3: u32,
    h4: u32,
    h5: u32,
    h6: u32,
    h7: u32,
    h8: u32,
    h9: u32,
}

// The scale exponent of a finite x: its unbiased exponent, clamped to [−126, 126] (a
// subnormal counts as −126; 2^−127 would not be a normal f32).
fn scale_exponent(bits: u32) -> i32 {
    return clamp(i32((bits >> 23u) & 0xffu) - 127, -126, 126);
}

// An empty lane shifting by k0 (0 when k0 is not finite).
fn lane_new(k0: f32) -> Lane {
    let bits = bitcast<u32>(k0);
    let finite = (bits & 0x7f800000u) != 0x7f800000u;
    let k = select(0.0, k0, finite);
    let e = select(-126, scale_exponent(bits), finite);
    let inv = ldexp(1.0, -e);
    return Lane(0u, 0u, 0u, 0u, 0u, bitcast<f32>(F32_INF_BITS), bitcast<f32>(F32_NEG_INF_BITS),
        e, inv, k, k * inv, 0.0, 0.0, 0.0, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
}

// A larger exponent arrived: the sums so far, relative to 2^e, become relative to 2^e_new
// (exact multiplications by powers of two; what underflows is below 2^−126 of the new
// scale's squares and cannot matter).
fn lane_rescale(l: ptr<function, Lane>, e_new: i32) {
    let d = (*l).e - e_new;
    (*l).s1 = ldexp((*l).s1, d);
    (*l).s2 = ldexp((*l).s2, 2 * d);
    (*l).ssq = ldexp((*l).ssq, 2 * d);
    (*l).e = e_new;
    (*l).inv = ldexp(1.0, -e_new);
    (*l).ks = (*l).k * (*l).inv;
}

// Adds inc to histogram word w (a chain of selects: indexing an array by w would put it in
// memory on some drivers).
fn lane_count(l: ptr<function, Lane>, w: u32, inc: u32) {
    (*l).h0 += select(0u, inc, w == 0u);
    (*l).h1 += select(0u, inc, w == 1u);
    (*l).h2 += select(0u, inc, w == 2u);
    (*l).h3 += select(0u, inc, w == 3u);
    (*l).h4 += select(0u, inc, w == 4u);
    (*l).h5 += select(0u, inc, w == 5u);
    (*l).h6 += select(0u, inc, w == 6u);
    (*l).h7 += select(0u, inc, w == 7u);
    (*l).h8 += select(0u, inc, w == 8u);
    (*l).h9 += select(0u, inc, w == 9u);
}

// Folds one element into a lane. NaN and ±Inf are counted and take no part in anything
// else; min and max keep the first of equal values, as the CPU twin does.
fn lane_push(l: ptr<function, Lane>, x: f32, saturate: bool, lo: f32, hi: f32) {
    let bits = bitcast<u32>(x);
    if ((bits & 0x7f800000u) == 0x7f800000u) {
        if ((bits & 0x007fffffu) != 0u) {
            (*l).nan += 1u;
        } else {
            (*l).inf += 1u;
        }
        return;
    }
    let nonzero = (bits & 0x7fffffffu) != 0u;
    (*l).finite += 1u;
    (*l).zeros += select(1u, 0u, nonzero);
    (*l).saturated += select(0u, 1u, saturate && (x <= lo || x >= hi));
    (*l).mn = select((*l).mn, x, x < (*l).mn);
    (*l).mx = select((*l).mx, x, x > (*l).mx);
    let e = scale_exponent(bits);
    if (e > (*l).e) {
        lane_rescale(l, e);
    }
    let xs = x * (*l).inv;
    let d = xs - (*l).ks;
    (*l).s1 += d;
    (*l).s2 = fma(d, d, (*l).s2);
    (*l).ssq = fma(xs, xs, (*l).ssq);
    let bin = hist_bin(bits);
    lane_count(l, bin >> 2u, select(0u, 1u << ((bin & 3u) * 8u), nonzero));
}

fn lane_push4(l: ptr<function, Lane>, v: vec4<f32>, saturate: bool, lo: f32, hi: f32) {
    lane_push(l, v.x, saturate, lo, hi);
    lane_push(l, v.y, saturate, lo, hi);
    lane_push(l, v.z, saturate, lo, hi);
    lane_push(l, v.w, saturate, lo, hi);
}

// The lane as a tree record: mean = K + S1/n and M2 = S2 − S1²/n (Chan's pair), and the
// sums brought from 2^e to the record's scale max|x| (multiplied by (2^e / max|x|)²).
fn lane_acc(l: Lane) -> Acc {
    var a = acc_empty();
    a.nan = l.nan;
    a.inf = l.inf;
    a.zeros = l.zeros;
    a.saturated = l.saturated;
    if (l.finite == 0u) {
        return a;
    }
    let n = f32(l.finite);
    a.finite = l.finite;
    a.mn = l.mn;
    a.mx = l.mx;
    a.mean = ldexp(l.ks + l.s1 / n, l.e);
    let max_abs = max(abs(l.mn), abs(l.mx));
    a.scale = max_abs;
    if (max_abs > 0.0) {
        let q = ldexp(1.0, l.e) / max_abs;
        let qq = q * q;
        a.ssq = l.ssq * qq;
        a.m2s = max(l.s2 - l.s1 * (l.s1 / n), 0.0) * qq;
    }
    return a;
}

// Adds the four byte counts of histogram word w (bins base .. base + 3) to the
// workgroup's histogram. Integer sums do not depend on order: the atomics keep the result
// deterministic.
fn hist_flush_word(base: u32, w: u32) {
    if (w == 0u) {
        return;
    }
    for (var q = 0u; q < 4u; q++) {
        let c = (w >> (8u * q)) & 0xffu;
        if (c != 0u) {
            atomicAdd(&hist_acc[base + q], c);
        }
    }
}

fn lane_flush_hist(l: Lane) {
    hist_flush_word(0u, l.h0);
    hist_flush_word(4u, l.h1);
    hist_flush_word(8u, l.h2);
    hist_flush_word(12u, l.h3);
    hist_flush_word(16u, l.h4);
    hist_flush_word(20u, l.h5);
    hist_flush_word(24u, l.h6);
    hist_flush_word(28u, l.h7);
    hist_flush_word(32u, l.h8);
    hist_flush_word(36u, l.h9);
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

// The fixed tree, `tree_merge(tid, a) -> Acc`, lives in stats_tree.wgsl (workgroup memory
// only) or stats_tree_subgroup.wgsl (its last levels through subgroup shuffles), one of
// which src/gpu/shaders.rs appends to this file: lane t absorbs lane t + s for
// s = WG/2, …, 1, and every invocation gets the result, the same bits either way; the
// histogram atomics are final when it returns, so the 40 invocations that write a
// record's histogram read them after it.

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
    let start = w * CHUNK;
    let first = start + tid;
    var k0 = 0.0;
    if (first < pp.len) {
        k0 = x[first];
    }
    var l = lane_new(k0);
    // A whole chunk (uniform across the workgroup) loads four elements at a time, so that
    // each invocation keeps several loads in flight; the last chunk checks each index.
    // Both fold the elements in the same order.
    if (start + CHUNK <= pp.len) {
        for (var k = 0u; k < PER; k += 4u) {
            let i = first + k * WG;
            let v = vec4<f32>(x[i], x[i + WG], x[i + 2u * WG], x[i + 3u * WG]);
            lane_push4(&l, v, saturate, pp.lo, pp.hi);
        }
    } else {
        for (var k = 0u; k < PER; k++) {
            let i = first + k * WG;
            if (i < pp.len) {
                lane_push(&l, x[i], saturate, pp.lo, pp.hi);
            }
        }
    }
    lane_flush_hist(l);
    let merged = tree_merge(tid, lane_acc(l));
    let r = pp.partial_base + w;
    if (tid == 0u) {
        partials_out[r].head = merged;
    }
    if (tid < HIST_BINS) {
        partials_out[r].hist[tid] = atomicLoad(&hist_acc[tid]);
    } else if (tid < HIST_BINS + 5u) {
        partials_out[r].pad[tid - HIST_BINS] = 0u;
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
        let i = job.partial_base + p;
        a = acc_merge(a, partials_in[i].head);
        for (var b = 0u; b < HIST_BINS; b++) {
            let h = partials_in[i].hist[b];
            if (h != 0u) {
                atomicAdd(&hist_acc[b], h);
            }
        }
    }
    let merged = tree_merge(tid, a);
    let r = job.record;
    if (tid == 0u) {
        records[r].head = merged;
    }
    if (tid < HIST_BINS) {
        records[r].hist[tid] = atomicLoad(&hist_acc[tid]);
    } else if (tid < HIST_BINS + 5u) {
        records[r].pad[tid - HIST_BINS] = 0u;
    }
}

// ---------------------------------------------------------------------------------------
// dead_units: y is (rows, cols) f32, one workgroup. Invocation t counts the columns
// t, t + WG, … that are exactly zero (+0 or −0, judged on the bits) in every row; a fixed
// tree sums the counts into out[index].

@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read_write> dead_out: array<u32>;
@group(0) @binding(2) var<uniform> dp: DeadParams;

// |v|'s bits: non-zero unless v is +0 or −0.
fn nonzero_bits(v: f32) -> u32 {
    return bitcast<u32>(v) & 0x7fffffffu;
}

@compute @workgroup_size(256)
fn dead_units(@builtin(local_invocation_index) tid: u32) {
    // Eight rows are tested at a time (their loads in flight together): a dead unit reads
    // every row, and one load at a time made its invocation wait rows times.
    var count = 0u;
    let n = dp.cols;
    for (var c = tid; c < n; c += WG) {
        var live = 0u;
        var r = 0u;
        for (; r + 8u <= dp.rows && live == 0u; r += 8u) {
            let i = r * n + c;
            live = nonzero_bits(y[i]) | nonzero_bits(y[i + n]) | nonzero_bits(y[i + 2u * n]) |
                nonzero_bits(y[i + 3u * n]) | nonzero_bits(y[i + 4u * n]) |
                nonzero_bits(y[i + 5u * n]) | nonzero_bits(y[i + 6u * n]) |
                nonzero_bits(y[i + 7u * n]);
        }
        for (; r < dp.rows && live == 0u; r++) {
            live = nonzero_bits(y[r * n + c]);
        }
        if (live == 0u) {
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
