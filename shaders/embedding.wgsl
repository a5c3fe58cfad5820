// Embedding lookup (nn.Embedding) and its gradient, a deterministic scatter-add.
//
// Token ids arrive as f32 values (exact up to 2^24). An id that is not an integer in 0..V
// selects no row: output zero, no gradient (as the CPU twin, src/cpu/embedding.rs).
//
// Forward: one invocation per output element (r, e): y[r, e] = weight[ids[r], e].
// Backward: one invocation per table element (v, e): dW[v, e] (+)= Σ_{r : ids[r] = v} dy[r, e],
// rows in increasing order. No atomics and no float reordering: the result is the same bit
// for bit on every run and equals the CPU twin's, which sums in the same order. The scan
// over every row per element costs V·E·R reads, cheap for the vocabularies of the
// synthetic tasks (a sort-by-id pass would be the next step for large vocabularies).

const WG: u32 = 256u;

struct EmbShape {
    rows: u32,
    vocab: u32,
    dim: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> shape: EmbShape;
@group(0) @binding(1) var<storage, read> ids: array<f32>;

// embedding_forward
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// embedding_backward
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * (nwg.x * WG) + gid.x;
}

// The table row of id, or vocab when it selects none.
fn token_row(id: f32) -> u32 {
    if id >= 0.0 && fract(id) == 0.0 && id < f32(shape.vocab) {
        return u32(id);
    }
    return shape.vocab;
}

@compute @workgroup_size(WG)
fn embedding_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if i >= shape.rows * shape.dim {
        return;
    }
    let r = i / shape.dim;
    let e = i % shape.dim;
    let v = token_row(ids[r]);
    var out = 0.0;
    if v < shape.vocab {
        out = weight[v * shape.dim + e];
    }
    y[i] = out;
}

@compute @workgroup_size(WG)
fn embedding_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if i >= shape.vocab * shape.dim {
        return;
    }
    let v = i / shape.dim;
    let e = i % shape.dim;
    var s = 0.0;
    for (var r = 0u; r < shape.rows; r = r + 1u) {
        if token_row(ids[r]) == v {
            s = s + dy[r * shape.dim + e];
        }
    }
    if shape.accumulate != 0u {
        dw[i] = dw[i] + s;
    } else {
        dw[i] = s;
    }
}
