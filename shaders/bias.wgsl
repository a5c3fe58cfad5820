// Bias of a dense layer, broadcast over the batch, and its gradient.
//
// Forward: y(rows, cols) += bias(cols), one invocation per element of y, on a 2-D grid of
// workgroups so that tensors past 65535·WG elements still fit the dispatch limits.
// Backward: db(cols) = Σ_rows dy(rows, cols), one invocation per column summing its rows
// in order 0, 1, …, rows−1. That fixed order (no atomics, no split of the rows between
// invocations) makes the result bit-for-bit reproducible and lets the CPU twin sum in the
// same order. Neighbouring invocations read neighbouring columns, so every row step is one
// coalesced read of the workgroup's WG columns.
//
// Gradient convention: db is a parameter gradient, so `accumulate` = 1 adds the sum to it
// (db += Σ dy) instead of overwriting it.

const WG: u32 = 256u;

struct Shape {
    rows: u32,
    cols: u32,
    // 1: db += Σ dy; 0: db = Σ dy.
    accumulate: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> shape: Shape;

// bias_forward
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;

// bias_backward
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;

// The flat index of this invocation on a 2-D grid of workgroups (x fastest).
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * (nwg.x * WG) + gid.x;
}

// One invocation: one element y[r, c] += bias[c].
@compute @workgroup_size(WG)
fn bias_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(gid, nwg);
    if i >= shape.rows * shape.cols {
        return;
    }
    y[i] = y[i] + bias[i % shape.cols];
}

// One invocation: one column c, db[c] (+)= Σ_r dy[r, c], rows summed in increasing order.
@compute @workgroup_size(WG)
fn bias_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let c = flat_index(gid, nwg);
    if c >= shape.cols {
        return;
    }
    // Eight rows are loaded before they are added (in order), so eight loads are in flight
    // where a row at a time would wait for each: the same sum, bit for bit.
    let n = shape.cols;
    var sum = 0.0;
    var r = 0u;
    for (; r + 8u <= shape.rows; r = r + 8u) {
        let i = r * n + c;
        let a = vec4<f32>(dy[i], dy[i + n], dy[i + 2u * n], dy[i + 3u * n]);
        let b = vec4<f32>(dy[i + 4u * n], dy[i + 5u * n], dy[i + 6u * n], dy[i + 7u * n]);
        sum = sum + a.x + a.y + a.z + a.w + b.x + b.y + b.z + b.w;
    }
    for (; r < shape.rows; r = r + 1u) {
        sum = sum + dy[r * n + c];
    }
    if shape.accumulate != 0u {
        db[c] = db[c] + sum;
    } else {
        db[c] = sum;
    }
}
