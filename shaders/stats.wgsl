// Per-tensor statistics, reduced in a fixed order so that every run gives the same bits.
//
// Algorithm: per chunk of CHUNK elements, one workgroup computes a partial "statistics
// record" (src/stats/record.rs) in three phases over the elements it holds in registers,
// each closed by a fixed-order reduction of a few scalars: (A) counts, min, max, max|x|;
// (B) S = Σ y with y = x/max|x|, giving the scaled mean S/n; (C) M2/max|x|² = Σ(y − S/n)²
// and the norm's Σ y². Scaling by max|x| keeps both sums of squares finite for 1e30-sized
// values and non-zero for 1e-30-sized ones; the two-pass variance about the chunk's own
// mean does not cancel.
// - Merging records (stats_finalize): Chan et al.'s pairwise formula for (count, mean, M2)
//   ("Updating formulae and a pairwise algorithm for computing sample variances", 1979),
//   and LAPACK's scaled sum of squares for the norm (rescale to the larger max|x|).
// - Histogram of log2|x|: read from the IEEE exponent field with bitcast (exact everywhere,
//   unlike `log2`), counted with integer atomics on workgroup memory (integer sums do not
//   depend on order, so the atomics keep the result deterministic).
// Classification (NaN, ±Inf, zero, absolute value) is done on the bits too: WGSL lets an
// implementation assume that floats are finite, and some devices flush subnormals to zero,
// so `x != x` or `x == 0.0` would not be reliable.
//
// Fixed order: in `stats_partial`, invocation t of workgroup w holds elements
// w·CHUNK + t + k·WG for k = 0..PER; each phase's reduction folds 16 groups of 16
// invocations in index order, then the 16 group results in order. `stats_finalize` merges a
// job's partial records (invocation t absorbs partials t, t + WG, … in turn, then a binary
// tree: lane t absorbs lane t + s for s = WG/2, …, 1). No float atomics: results are
// bit-reproducible on one device. The CPU twin (src/cpu/stats.rs) sums in another order
// (f64, per CPU chunk), so the two agree exactly on counts, histogram and selections, and to
// f32 rounding on the moments.

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

// The fixed tree: lane t absorbs lane t + s for s = WG/2, …, 1. Every invocation of the
// workgroup must call it (it contains barriers).
fn tree_merge(tid: u32) {
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        if (tid < s) {
            lanes[tid] = acc_merge(lanes[tid], lanes[tid + s]);
        }
    }
    workgroupBarrier();
}

// ---------------------------------------------------------------------------------------
// stats_partial: x is (len,) f32. Workgroup w (flattened from a 2-D grid when there are
// more than 65535 chunks) reduces x[w·CHUNK .. min((w+1)·CHUNK, len)] into
// partials[partial_base + w]. Invocation t holds elements w·CHUNK + t + k·WG (k < PER) in
// registers; three phases, each closed by a fixed-order reduction of a few scalars:
//   A. counts, min, max, max|x| (and the histogram, with integer atomics);
//   B. S = Σ y with y = x / max|x| (|y| ≤ 1: nothing overflows or underflows), so the
//      scaled mean is S / n;
//   C. m2_scaled = Σ (y − S/n)² and norm_ssq = Σ y².
// One division per element (y), no per-element rescaling, no record merges.

// Phase A state of one invocation, then of a group of invocations.
struct Part {
    finite: u32,
    nan: u32,
    inf: u32,
    zeros: u32,
    saturated: u32,
    mn: f32,
    mx: f32,
    amax: f32,
}

var<workgroup> parts: array<Part, 256>;
var<workgroup> sums: array<vec2<f32>, 256>;

fn part_merge(a: Part, b: Part) -> Part {
    var r = a;
    r.finite = a.finite + b.finite;
    r.nan = a.nan + b.nan;
    r.inf = a.inf + b.inf;
    r.zeros = a.zeros + b.zeros;
    r.saturated = a.saturated + b.saturated;
    if (b.mn < a.mn) {
        r.mn = b.mn;
    }
    if (b.mx > a.mx) {
        r.mx = b.mx;
    }
    if (b.amax > a.amax) {
        r.amax = b.amax;
    }
    return r;
}

// Fixed-order reduction in two levels (two barriers instead of a tree's eight): invocation
// g < 16 folds entries 16g .. 16g + 15 in order into entry 16g, then every invocation folds
// entries 0, 16, …, 240 in order (each gets the same result: a broadcast for free). The
// caller has written its entry; every invocation must call these (they contain barriers).
fn reduce_parts(tid: u32) -> Part {
    workgroupBarrier();
    if (tid < 16u) {
        var a = parts[16u * tid];
        for (var i = 1u; i < 16u; i++) {
            a = part_merge(a, parts[16u * tid + i]);
        }
        parts[16u * tid] = a;
    }
    workgroupBarrier();
    var r = parts[0];
    for (var g = 1u; g < 16u; g++) {
        r = part_merge(r, parts[16u * g]);
    }
    return r;
}

fn reduce_sums(tid: u32) -> vec2<f32> {
    workgroupBarrier();
    if (tid < 16u) {
        var a = sums[16u * tid];
        for (var i = 1u; i < 16u; i++) {
            a = a + sums[16u * tid + i];
        }
        sums[16u * tid] = a;
    }
    workgroupBarrier();
    var r = sums[0];
    for (var g = 1u; g < 16u; g++) {
        r = r + sums[16u * g];
    }
    return r;
}

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

    // Phase A. `fin` marks the elements that take part in the moments: in range and finite
    // (classified on the bits, see the header).
    let saturate = pp.saturate != 0u;
    var v: array<f32, 8>;
    var fin: array<bool, 8>;
    var p = Part(0u, 0u, 0u, 0u, 0u, bitcast<f32>(F32_INF_BITS), bitcast<f32>(F32_NEG_INF_BITS),
        0.0);
    // Histogram counts are flushed to workgroup memory only when the bin changes: values of
    // one tensor cluster in a few bins, so this saves most of the atomic traffic.
    var cur_bin = 0u;
    var cur_cnt = 0u;
    let start = w * CHUNK;
    for (var k = 0u; k < PER; k++) {
        let i = start + tid + k * WG;
        v[k] = 0.0;
        fin[k] = false;
        if (i < pp.len) {
            let xv = x[i];
            let bits = bitcast<u32>(xv);
            let abs_bits = bits & 0x7fffffffu;
            if (abs_bits >= 0x7f800000u) {
                if (abs_bits > 0x7f800000u) {
                    p.nan += 1u;
                } else {
                    p.inf += 1u;
                }
                continue;
            }
            v[k] = xv;
            fin[k] = true;
            p.finite += 1u;
            if (saturate && (xv <= pp.lo || xv >= pp.hi)) {
                p.saturated += 1u;
            }
            p.mn = min(p.mn, xv);
            p.mx = max(p.mx, xv);
            p.amax = max(p.amax, bitcast<f32>(abs_bits));
            if (abs_bits == 0u) {
                p.zeros += 1u;
            } else {
                let b = hist_bin(bits);
                if (cur_cnt != 0u && b != cur_bin) {
                    atomicAdd(&hist_acc[cur_bin], cur_cnt);
                    cur_cnt = 0u;
                }
                cur_bin = b;
                cur_cnt += 1u;
            }
        }
    }
    if (cur_cnt != 0u) {
        atomicAdd(&hist_acc[cur_bin], cur_cnt);
    }
    parts[tid] = p;
    let a = reduce_parts(tid);

    // Phase B: y = x / max|x| (0 for every element when max|x| = 0: all zeros).
    var y: array<f32, 8>;
    var s = 0.0;
    for (var k = 0u; k < PER; k++) {
        y[k] = 0.0;
        if (fin[k] && a.amax > 0.0) {
            y[k] = v[k] / a.amax;
        }
        s += y[k];
    }
    sums[tid] = vec2<f32>(s, 0.0);
    let sy = reduce_sums(tid).x;
    var mean_s = 0.0;
    if (a.finite > 0u) {
        mean_s = sy / f32(a.finite);
    }

    // Phase C: the scaled sums of squares about the scaled mean and about 0.
    var c = vec2<f32>(0.0, 0.0);
    for (var k = 0u; k < PER; k++) {
        if (fin[k]) {
            let d = y[k] - mean_s;
            c += vec2<f32>(d * d, y[k] * y[k]);
        }
    }
    // Every invocation has read phase B's sums (inside reduce_sums) before any overwrites.
    workgroupBarrier();
    sums[tid] = c;
    let sq = reduce_sums(tid);
    // The last atomic add happened before the barriers in reduce_sums.
    if (tid == 0u) {
        var r = acc_empty();
        r.finite = a.finite;
        r.nan = a.nan;
        r.inf = a.inf;
        r.zeros = a.zeros;
        r.saturated = a.saturated;
        if (a.finite > 0u) {
            r.mean = mean_s * a.amax;
            r.m2s = sq.x;
            r.mn = a.mn;
            r.mx = a.mx;
            r.scale = a.amax;
            r.ssq = sq.y;
        }
        partials_out[pp.partial_base + w] = record_of(r);
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
    lanes[tid] = a;
    tree_merge(tid);
    if (tid == 0u) {
        records[job.record] = record_of(lanes[0]);
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
