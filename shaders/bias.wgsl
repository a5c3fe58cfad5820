// Bias of a dense layer, broadcast over the batch, and its gradient.
//
// Forward: y(rows, cols) += bias(cols), one invocation per element of y, on a 2-D grid of
// workgroups so that tensors past 65535·WG elements still fit the dispatch limits.
// Backward: db(cols) = Σ_rows dy(rows, cols). A workgroup owns COLS neighbouring columns
// and splits their rows between LANES row lanes: lane l sums the rows r ≡ l (mod LANES) in
// increasing order, then the lanes are merged in a fixed tree (l absorbs l + 4, then l + 2,
// then l + 1). That fixed order (no atomics) makes the result bit-for-bit reproducible, and
// the CPU twin sums in the same order. A row step of a lane is one coalesced read of the
// workgroup's COLS columns; each lane loads four of its rows before adding them, so a
// column of R rows costs about R / 32 waits for memory instead of R.
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

// Columns per workgroup and row lanes per column (the CPU twin's BIAS_LANES).
const COLS: u32 = 32u;
const LANES: u32 = 8u;

var<workgroup> lane_sums: array<f32, 256>;

// Invocation (x, l): column c = block·COLS + x, row lane l; db[c] (+)= Σ_r dy[r, c].
@compute @workgroup_size(32, 8)
fn bias_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let c = (wid.y * nwg.x + wid.x) * COLS + lid.x;
    let l = lid.y;
    let n = shape.cols;
    var sum = 0.0;
    if c < n {
        var r = l;
        for (; r + 3u * LANES < shape.rows; r = r + 4u * LANES) {
            let i = r * n + c;
            // Four loads in flight, then four additions in row order, each its own
            // statement: written as one expression over a vec4, a GL driver's compiler
            // (Mesa's) reordered the additions, and the bits no longer matched the twin.
            let d0 = dy[i];
            let d1 = dy[i + LANES * n];
            let d2 = dy[i + 2u * LANES * n];
            let d3 = dy[i + 3u * LANES * n];
            sum = sum + d0;
            sum = sum + d1;
            sum = sum + d2;
            sum = sum + d3;
        }
        for (; r < shape.rows; r = r + LANES) {
            sum = sum + dy[r * n + c];
        }
    }
    let slot = l * COLS + lid.x;
    lane_sums[slot] = sum;
    for (var half = LANES / 2u; half > 0u; half = half / 2u) {
        workgroupBarrier();
        if l < half {
            lane_sums[slot] = lane_sums[slot] + lane_sums[slot + half * COLS];
        }
    }
    if l == 0u && c < n {
        if shape.accumulate != 0u {
            db[c] = db[c] + lane_sums[slot];
        } else {
            db[c] = lane_sums[slot];
        }
    }
}
