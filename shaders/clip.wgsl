// Gradient clipping, run between the gradient statistics and the optimizer.
//
// By global norm (torch.nn.utils.clip_grad_norm_): every parameter gradient is multiplied by
// min(1, max_norm / (‖g‖ + 1e-6)), where ‖g‖ = √(Σ_p ‖g_p‖²) over all parameters. The
// per-tensor norms are not recomputed: the statistics records (shaders/stats.wgsl) already
// hold each gradient's L2 norm as max_abs·√norm_ssq, and `clip_norm_scale` merges them in a
// fixed order with the same rescaling as the records themselves (LAPACK nrm2: rescale the
// sum of squares to the larger max |x|), so the global norm neither overflows when
// gradients explode nor underflows when they vanish, and is bit-reproducible.
//
// The same kernel decides the non-finite policy on the device, before the optimizer runs:
// when any gradient holds a NaN or Inf and the guard is on, the step is marked skipped and `clip_gate` zeroes the indirect dispatch arguments of every optimizer op, so
// no parameter and no optimizer moment changes (an update with a zero gradient would still
// decay Adam's moments and apply weight decay).
//
// By value (torch.nn.utils.clip_grad_value_): every element is clamped to [−v, v]; a NaN
// stays NaN, as torch.clamp leaves it.
//
// The CPU twin is src/cpu/clip.rs.

const WG: u32 = 256u;

// Words of one statistics record (stats::RECORD_WORDS) and the fields read here.
const RECORD_WORDS: u32 = 56u;
const F_NAN: u32 = 1u;
const F_INF: u32 = 2u;
const F_MAX_ABS: u32 = 9u;
const F_NORM_SSQ: u32 = 10u;

// state[] of the clip op (launcher's ClipState), read back every step.
const S_NORM: u32 = 0u;      // global gradient norm before clipping (NaN/Inf if any is)
const S_SCALE: u32 = 1u;     // factor applied to every gradient
const S_SKIPPED: u32 = 2u;   // 1.0 when this step's update is discarded
const S_NORM_AFTER: u32 = 3u; // norm · scale: the global norm after clipping

struct NormParams {
    max_norm: f32,       // +inf: no clipping, only the norm and the non-finite guard
    guard: u32,          // plan::Guard: 0 off, 1 skip the step, 2 halt (skip it and every later one)
    jobs: u32,           // gradient records to merge
    _pad: u32,
}

struct GateParams {
    words: u32, // indirect-argument words (3 per optimizer dispatch)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct ElemParams {
    len: u32,
    row: u32, // invocations per row of the 2-D grid (workgroups in x · WG)
    value: f32, // clip_value's bound v
    _pad: u32,
}

// ---- clip_norm_scale ----------------------------------------------------------------------

@group(0) @binding(0) var<uniform> np: NormParams;
@group(0) @binding(1) var<storage, read> records: array<u32>;
@group(0) @binding(2) var<storage, read> job_records: array<u32>; // record index of each grad
@group(0) @binding(3) var<storage, read_write> state: array<f32>;

// One invocation merges the `jobs` gradient records in index order (a handful of tensors:
// a serial fixed-order loop is both cheapest and deterministic) and writes `state`.
@compute @workgroup_size(1)
fn clip_norm_scale() {
    var big = 0.0;  // the largest max |x| so far
    var ssq = 0.0;  // Σ (x / big)² so far
    var nan = 0u;
    var inf = 0u;
    for (var j = 0u; j < np.jobs; j = j + 1u) {
        let r = job_records[j] * RECORD_WORDS;
        nan = nan + records[r + F_NAN];
        inf = inf + records[r + F_INF];
        let m = bitcast<f32>(records[r + F_MAX_ABS]);
        let s = bitcast<f32>(records[r + F_NORM_SSQ]);
        if (m > big) {
            let q = big / m;
            ssq = s + ssq * (q * q);
            big = m;
        } else if (m > 0.0) {
            let q = m / big;
            ssq = ssq + s * (q * q);
        }
    }
    var norm = big * sqrt(ssq);
    var scale = 1.0;
    var skipped = 0.0;
    if (nan > 0u) {
        norm = bitcast<f32>(0x7fc00000u); // NaN
    } else if (inf > 0u) {
        norm = bitcast<f32>(0x7f800000u); // +Inf
    }
    // Halt latches: the flag of the previous step is still in `state`.
    let latched = np.guard == 2u && state[S_SKIPPED] != 0.0;
    if (nan + inf > 0u || latched) {
        // Non-finite: either discard the step, or let the values through unscaled
        // ("continue": scaling by max_norm/Inf would only add more NaN).
        if (np.guard != 0u) {
            scale = 0.0;
            skipped = 1.0;
        }
    } else {
        scale = min(1.0, np.max_norm / (norm + 1e-6));
    }
    state[S_NORM] = norm;
    state[S_SCALE] = scale;
    state[S_SKIPPED] = skipped;
    state[S_NORM_AFTER] = norm * scale;
}

// ---- clip_gate ----------------------------------------------------------------------------

@group(0) @binding(0) var<uniform> gp: GateParams;
@group(0) @binding(1) var<storage, read> gate_state: array<f32>;
@group(0) @binding(2) var<storage, read> base_args: array<u32>;
@group(0) @binding(3) var<storage, read_write> args: array<u32>;

// base_args, args are [words]: the optimizer dispatches' workgroup counts (x, y, z each).
// One invocation copies one word, or writes 0 when the step is skipped.
@compute @workgroup_size(64)
fn clip_gate(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= gp.words) {
        return;
    }
    args[i] = select(base_args[i], 0u, gate_state[S_SKIPPED] != 0.0);
}

// ---- clip_scale ---------------------------------------------------------------------------

@group(0) @binding(0) var<uniform> ep: ElemParams;
@group(0) @binding(1) var<storage, read> scale_state: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;

// grad is [len]; one invocation scales element i = gid.y·row + gid.x by state[S_SCALE].
@compute @workgroup_size(WG)
fn clip_scale(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ep.row + gid.x;
    if (i >= ep.len) {
        return;
    }
    grad[i] = grad[i] * scale_state[S_SCALE];
}

// ---- clip_value ---------------------------------------------------------------------------

@group(0) @binding(0) var<uniform> vp: ElemParams;
@group(0) @binding(1) var<storage, read_write> vgrad: array<f32>;

// vgrad is [len]; one invocation clamps element i = gid.y·row + gid.x to [−v, v].
@compute @workgroup_size(WG)
fn clip_value(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * vp.row + gid.x;
    if (i >= vp.len) {
        return;
    }
    let g = vgrad[i];
    // NaN compares false both ways and is kept, like torch.clamp.
    if (g > vp.value) {
        vgrad[i] = vp.value;
    } else if (g < -vp.value) {
        vgrad[i] = -vp.value;
    }
}

// ---- clip_multi ---------------------------------------------------------------------------
// clip_scale or clip_value (by `mode`) on up to GROUPED gradients in one dispatch, element
// for element the same arithmetic: a deep net has a gradient per parameter tensor, and each
// dispatch costs a barrier and a launch whatever its size. Tensor j is bound at mgj; the job
// table is grouped_jobs.wgsl's (which precedes this file). multi_state is the clip state in
// scale mode, a dummy in value mode.

const MODE_SCALE: u32 = 0u;
const MODE_VALUE: u32 = 1u;

struct MultiParams {
    table: GroupedTable,
    mode: u32,
    value: f32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> mp: MultiParams;
@group(0) @binding(1) var<storage, read> multi_state: array<f32>;
@group(0) @binding(2) var<storage, read_write> mg0: array<f32>;
@group(0) @binding(3) var<storage, read_write> mg1: array<f32>;
@group(0) @binding(4) var<storage, read_write> mg2: array<f32>;
@group(0) @binding(5) var<storage, read_write> mg3: array<f32>;
@group(0) @binding(6) var<storage, read_write> mg4: array<f32>;
@group(0) @binding(7) var<storage, read_write> mg5: array<f32>;
@group(0) @binding(8) var<storage, read_write> mg6: array<f32>;
@group(0) @binding(9) var<storage, read_write> mg7: array<f32>;

// Element i of gradient j (j is uniform across a workgroup, so the switch does not diverge).
fn load_g(j: u32, i: u32) -> f32 {
    switch j {
        case 0u: { return mg0[i]; }
        case 1u: { return mg1[i]; }
        case 2u: { return mg2[i]; }
        case 3u: { return mg3[i]; }
        case 4u: { return mg4[i]; }
        case 5u: { return mg5[i]; }
        case 6u: { return mg6[i]; }
        default: { return mg7[i]; }
    }
}

fn store_g(j: u32, i: u32, v: f32) {
    switch j {
        case 0u: { mg0[i] = v; }
        case 1u: { mg1[i] = v; }
        case 2u: { mg2[i] = v; }
        case 3u: { mg3[i] = v; }
        case 4u: { mg4[i] = v; }
        case 5u: { mg5[i] = v; }
        case 6u: { mg6[i] = v; }
        default: { mg7[i] = v; }
    }
}

// The job table's accessors that grouped_jobs.wgsl reads it through.
fn grouped_head() -> vec3<u32> {
    return vec3<u32>(mp.table.n_jobs, mp.table.total_groups, mp.table.row);
}

fn grouped_job(k: u32) -> GroupedJob {
    return mp.table.jobs[k];
}

@compute @workgroup_size(WG)
fn clip_multi(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let e = grouped_element(wid, lid);
    if (e.z == 0u) {
        return;
    }
    let j = e.x;
    let i = e.y;
    let g = load_g(j, i);
    if (mp.mode == MODE_SCALE) {
        store_g(j, i, g * multi_state[S_SCALE]);
    } else if (g > mp.value) {
        // NaN compares false both ways and is kept, like torch.clamp.
        store_g(j, i, mp.value);
    } else if (g < -mp.value) {
        store_g(j, i, -mp.value);
    }
}
