// Element-wise sum for shortcut connections, and gradient accumulation.
//
// add_forward:     y = a + b (the merge of a residual block: y = F(x) + shortcut(x)).
//                  Its backward is a pass-through (∂y/∂a = ∂y/∂b = 1), so it has no kernel.
// add_forward_act: the same, and z = f(y) of the activation after it (activation_math.wgsl,
//                  which precedes this file), the bits of activation.wgsl's forward of y.
// accumulate_grad: dst += src, for a tensor with several consumers: the plan writes the
//                  first consumer's gradient and accumulates every later one, in a fixed
//                  order, so the sum is deterministic.
// copy_tensor:     dst = src, for the first gradient a shortcut's input receives (an
//                  Add passes its output gradient on unchanged) and for dropout at
//                  evaluation, inside the step's compute pass.

const WG: u32 = 256u;

struct Shape {
    len: u32,
    // add_forward_act's activation (ACT_* code and parameter); ignored elsewhere.
    act_code: u32,
    act_param: f32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> shape: Shape;

// add_forward
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> z: array<f32>;

// accumulate_grad
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// The flat index of this invocation on a 2-D grid of workgroups (x fastest).
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * (nwg.x * WG) + gid.x;
}

// One invocation: one element, y[i] = a[i] + b[i].
@compute @workgroup_size(WG)
fn add_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if i >= shape.len {
        return;
    }
    y[i] = a[i] + b[i];
}

// One invocation: one element, y[i] = a[i] + b[i] and z[i] = f(y[i]).
@compute @workgroup_size(WG)
fn add_forward_act(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if i >= shape.len {
        return;
    }
    let v = a[i] + b[i];
    y[i] = v;
    z[i] = act_forward(shape.act_code, shape.act_param, v);
}

// One invocation: one element, dst[i] += src[i].
@compute @workgroup_size(WG)
fn accumulate_grad(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if i >= shape.len {
        return;
    }
    dst[i] = dst[i] + src[i];
}

// One invocation: one element, dst[i] = src[i].
@compute @workgroup_size(WG)
fn copy_tensor(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if i >= shape.len {
        return;
    }
    dst[i] = src[i];
}
