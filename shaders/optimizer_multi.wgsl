// optimizer_update_multi: the step of up to GROUPED parameter tensors in one dispatch, the
// same arithmetic element for element as optimizer.wgsl's optimizer_update (both call
// optimizer_math.wgsl's step_element, which precedes this file, as grouped_jobs.wgsl's job
// table does). Tensor j is bound at pj, gj, aj (state1), bj (state2), uj (update). A dispatch costs a
// barrier and a launch whatever its size, which dwarfs the work for the many small
// parameters of a deep net (a BatchNorm's scale is one value per channel).

@group(0) @binding(0) var<uniform> step: Step;
// The run's settings; its len and row are unused here.
@group(0) @binding(1) var<uniform> hp: Hyper;
@group(0) @binding(2) var<uniform> mh: GroupedTable;
@group(0) @binding(3) var<storage, read_write> p0: array<f32>;
@group(0) @binding(4) var<storage, read_write> p1: array<f32>;
@group(0) @binding(5) var<storage, read_write> p2: array<f32>;
@group(0) @binding(6) var<storage, read_write> p3: array<f32>;
@group(0) @binding(7) var<storage, read_write> p4: array<f32>;
@group(0) @binding(8) var<storage, read_write> p5: array<f32>;
@group(0) @binding(9) var<storage, read_write> p6: array<f32>;
@group(0) @binding(10) var<storage, read_write> p7: array<f32>;
@group(0) @binding(11) var<storage, read> g0: array<f32>;
@group(0) @binding(12) var<storage, read> g1: array<f32>;
@group(0) @binding(13) var<storage, read> g2: array<f32>;
@group(0) @binding(14) var<storage, read> g3: array<f32>;
@group(0) @binding(15) var<storage, read> g4: array<f32>;
@group(0) @binding(16) var<storage, read> g5: array<f32>;
@group(0) @binding(17) var<storage, read> g6: array<f32>;
@group(0) @binding(18) var<storage, read> g7: array<f32>;
@group(0) @binding(19) var<storage, read_write> a0: array<f32>;
@group(0) @binding(20) var<storage, read_write> a1: array<f32>;
@group(0) @binding(21) var<storage, read_write> a2: array<f32>;
@group(0) @binding(22) var<storage, read_write> a3: array<f32>;
@group(0) @binding(23) var<storage, read_write> a4: array<f32>;
@group(0) @binding(24) var<storage, read_write> a5: array<f32>;
@group(0) @binding(25) var<storage, read_write> a6: array<f32>;
@group(0) @binding(26) var<storage, read_write> a7: array<f32>;
@group(0) @binding(27) var<storage, read_write> b0: array<f32>;
@group(0) @binding(28) var<storage, read_write> b1: array<f32>;
@group(0) @binding(29) var<storage, read_write> b2: array<f32>;
@group(0) @binding(30) var<storage, read_write> b3: array<f32>;
@group(0) @binding(31) var<storage, read_write> b4: array<f32>;
@group(0) @binding(32) var<storage, read_write> b5: array<f32>;
@group(0) @binding(33) var<storage, read_write> b6: array<f32>;
@group(0) @binding(34) var<storage, read_write> b7: array<f32>;
@group(0) @binding(35) var<storage, read_write> u0: array<f32>;
@group(0) @binding(36) var<storage, read_write> u1: array<f32>;
@group(0) @binding(37) var<storage, read_write> u2: array<f32>;
@group(0) @binding(38) var<storage, read_write> u3: array<f32>;
@group(0) @binding(39) var<storage, read_write> u4: array<f32>;
@group(0) @binding(40) var<storage, read_write> u5: array<f32>;
@group(0) @binding(41) var<storage, read_write> u6: array<f32>;
@group(0) @binding(42) var<storage, read_write> u7: array<f32>;

// Element i of tensor j's parameter, gradient and state (j is uniform across a workgroup,
// so the switches do not diverge).
fn load_p(j: u32, i: u32) -> f32 {
    switch j {
        case 0u: { return p0[i]; }
        case 1u: { return p1[i]; }
        case 2u: { return p2[i]; }
        case 3u: { return p3[i]; }
        case 4u: { return p4[i]; }
        case 5u: { return p5[i]; }
        case 6u: { return p6[i]; }
        default: { return p7[i]; }
    }
}

fn load_g(j: u32, i: u32) -> f32 {
    switch j {
        case 0u: { return g0[i]; }
        case 1u: { return g1[i]; }
        case 2u: { return g2[i]; }
        case 3u: { return g3[i]; }
        case 4u: { return g4[i]; }
        case 5u: { return g5[i]; }
        case 6u: { return g6[i]; }
        default: { return g7[i]; }
    }
}

fn load_a(j: u32, i: u32) -> f32 {
    switch j {
        case 0u: { return a0[i]; }
        case 1u: { return a1[i]; }
        case 2u: { return a2[i]; }
        case 3u: { return a3[i]; }
        case 4u: { return a4[i]; }
        case 5u: { return a5[i]; }
        case 6u: { return a6[i]; }
        default: { return a7[i]; }
    }
}

fn load_b(j: u32, i: u32) -> f32 {
    switch j {
        case 0u: { return b0[i]; }
        case 1u: { return b1[i]; }
        case 2u: { return b2[i]; }
        case 3u: { return b3[i]; }
        case 4u: { return b4[i]; }
        case 5u: { return b5[i]; }
        case 6u: { return b6[i]; }
        default: { return b7[i]; }
    }
}

// Writes tensor j's new value, state and update at element i (state only where kept).
fn store_all(j: u32, i: u32, r: Stepped, update_value: f32) {
    let s1 = keeps_state1(hp.kind);
    let s2 = keeps_state2(hp.kind);
    switch j {
        case 0u: { p0[i] = r.p; u0[i] = update_value; if (s1) { a0[i] = r.s1; } if (s2) { b0[i] = r.s2; } }
        case 1u: { p1[i] = r.p; u1[i] = update_value; if (s1) { a1[i] = r.s1; } if (s2) { b1[i] = r.s2; } }
        case 2u: { p2[i] = r.p; u2[i] = update_value; if (s1) { a2[i] = r.s1; } if (s2) { b2[i] = r.s2; } }
        case 3u: { p3[i] = r.p; u3[i] = update_value; if (s1) { a3[i] = r.s1; } if (s2) { b3[i] = r.s2; } }
        case 4u: { p4[i] = r.p; u4[i] = update_value; if (s1) { a4[i] = r.s1; } if (s2) { b4[i] = r.s2; } }
        case 5u: { p5[i] = r.p; u5[i] = update_value; if (s1) { a5[i] = r.s1; } if (s2) { b5[i] = r.s2; } }
        case 6u: { p6[i] = r.p; u6[i] = update_value; if (s1) { a6[i] = r.s1; } if (s2) { b6[i] = r.s2; } }
        default: { p7[i] = r.p; u7[i] = update_value; if (s1) { a7[i] = r.s1; } if (s2) { b7[i] = r.s2; } }
    }
}

// The job table's accessors that grouped_jobs.wgsl reads it through.
fn grouped_head() -> vec3<u32> {
    return vec3<u32>(mh.n_jobs, mh.total_groups, mh.row);
}

fn grouped_job(k: u32) -> GroupedJob {
    return mh.jobs[k];
}

@compute @workgroup_size(WG)
fn optimizer_update_multi(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let e = grouped_element(wid, lid);
    if (e.z == 0u) {
        return;
    }
    let j = e.x;
    let i = e.y;
    let p_old = load_p(j, i);
    var s1 = 0.0;
    var s2 = 0.0;
    if (keeps_state1(hp.kind)) {
        s1 = load_a(j, i);
    }
    if (keeps_state2(hp.kind)) {
        s2 = load_b(j, i);
    }
    let r = step_element(step, hp, p_old, load_g(j, i), s1, s2);
    store_all(j, i, r, r.p - p_old);
}
