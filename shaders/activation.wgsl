// Element-wise activation kernels, one invocation per element, the function chosen at run
// time by the code of `Activation::code()` with its one tunable constant (leaky slope, ELU
// alpha) in the uniform. A uniform-controlled switch costs the same on every invocation, so
// one pipeline per pass serves every activation. The formulas (ACT_* codes, act_forward,
// act_derivative) live in shaders/activation_math.wgsl, which src/gpu/shaders.rs prepends.

const WG: u32 = 256u;

struct Params {
    len: u32,
    code: u32,
    // Leaky-ReLU slope or ELU alpha; 0 for the others.
    param: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

// activation_forward
@group(0) @binding(1) var<storage, read> fx: array<f32>;
@group(0) @binding(2) var<storage, read_write> fy: array<f32>;

// activation_backward
@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> by: array<f32>;
@group(0) @binding(3) var<storage, read> bdy: array<f32>;
@group(0) @binding(4) var<storage, read_write> bdx: array<f32>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * (nwg.x * WG) + gid.x;
}

// One invocation: one element, y[i] = f(x[i]).
@compute @workgroup_size(WG)
fn activation_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    fy[i] = act_forward(params.code, params.param, fx[i]);
}

// One invocation: one element, dx[i] = dy[i]·f'(x[i]) (overwritten).
@compute @workgroup_size(WG)
fn activation_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    bdx[i] = act_backward(params.code, params.param, bx[i], by[i], bdy[i]);
}
