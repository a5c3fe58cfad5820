// Optimizer update of one parameter tensor per dispatch (the arithmetic is in
// optimizer_math.wgsl, which precedes this file).

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> hp: Hyper;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
// momentum buffer (momentum, nesterov) / sum of squares (adagrad) / v (rmsprop) / m (adam).
@group(0) @binding(4) var<storage, read_write> state1: array<f32>;
// v (adam, adamw); a dummy elsewhere.
@group(0) @binding(5) var<storage, read_write> state2: array<f32>;
@group(0) @binding(6) var<storage, read_write> update: array<f32>;

// param, grad, state1, state2, update are [len]. One invocation updates element
// i = gid.y·row + gid.x (a 2-D grid, since len/WG may exceed 65535 workgroups) and writes
// update[i] = p_new − p_old. state1/state2 are only touched by the kinds that own them.
@compute @workgroup_size(WG)
fn optimizer_update(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * hp.row + gid.x;
    if (i >= hp.len) {
        return;
    }
    let p_old = param[i];
    var s1 = 0.0;
    var s2 = 0.0;
    if (keeps_state1(hp.kind)) {
        s1 = state1[i];
    }
    if (keeps_state2(hp.kind)) {
        s2 = state2[i];
    }
    let r = step_element(step, hp, p_old, grad[i], s1, s2);
    if (keeps_state1(hp.kind)) {
        state1[i] = r.s1;
    }
    if (keeps_state2(hp.kind)) {
        state2[i] = r.s2;
    }
    param[i] = r.p;
    update[i] = r.p - p_old;
}

