// Dropout with a counter-based mask: no mask buffer and no random state. Whether element i
// is kept at step t is a pure function of (seed, t, i):
//
//     key = pcg(seed ^ pcg(t)),  u = pcg(pcg(i) ^ key),  keep ⇔ u ≥ threshold
//
// where pcg is the PCG RXS-M-XS output permutation used as a hash (Jarzynski & Olano,
// "Hash Functions for GPU Rendering", JCGT 2020) and threshold = ⌊p·2³²⌋ is computed on
// the host, so the keep probability is 1 − p to within 2⁻³² and no float comparison can
// round differently on two devices. The CPU twin (cpu/dropout.rs) runs the same integer
// arithmetic, so both executors draw the identical mask, and the backward pass recomputes
// the mask instead of storing it. pcg is a bijection of u32, so distinct indices hash
// distinct pre-images; hashing i before mixing in the key keeps two steps' masks from
// being shifted copies of one another.
//
// Forward:  y = x · scale where kept, 0 where dropped (scale = 1/(1 − p), inverted dropout,
//           so evaluation needs no rescaling).
// Backward: forward was y = x·m·scale with m ∈ {0, 1}, so dx = dy·m·scale (overwritten).

const WG: u32 = 256u;

struct Params {
    seed: u32,
    // ⌊p·2³²⌋: an element is kept iff its hash is ≥ threshold.
    threshold: u32,
    // 1 / (1 − p), rounded to f32 on the host.
    scale: f32,
    len: u32,
}

// Rewritten by the executor each step (gpu::kernels::dropout::DropoutStep).
struct Step {
    step: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> step: Step;

// dropout_forward
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// dropout_backward
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn kept(i: u32) -> bool {
    let key = pcg(params.seed ^ pcg(step.step));
    return pcg(pcg(i) ^ key) >= params.threshold;
}

// The flat index of this invocation on a 2-D grid of workgroups (x fastest).
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * (nwg.x * WG) + gid.x;
}

// One invocation: one element, y[i] = kept(i) ? x[i]·scale : 0.
@compute @workgroup_size(WG)
fn dropout_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    y[i] = select(0.0, x[i] * params.scale, kept(i));
}

// One invocation: one element, dx[i] = kept(i) ? dy[i]·scale : 0.
@compute @workgroup_size(WG)
fn dropout_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    dx[i] = select(0.0, dy[i] * params.scale, kept(i));
}
