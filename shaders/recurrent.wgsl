// The time loop of a recurrent layer (Elman RNN with tanh or ReLU, LSTM, GRU as PyTorch
// writes them), forward and backward through time, the norm of the hidden-state gradient
// at every step, and the last-step selection of a sequence.
//
// Layout, batch first: gates [B, T, G·H] (gate g of unit j at g·H + j; LSTM i, f, g, o;
// GRU r, z, n), h / hprev / dy / dh / aux [B, T, H], w_hh [G·H, H], b_hh [G·H].
//
// The input projection x·W_ihᵀ + b_ih of all steps is one matmul before the loop, and the
// parameter gradients are matmuls over all B·T rows after it; only the recurrent product and
// the cell run per step, one dispatch per step. Each step's dispatch reads what the previous
// one wrote (wgpu orders dispatches of one pass that share a writable buffer), and its
// uniform names the step, so a whole layer is one run of dispatches in the step's single
// compute pass.
//
// One invocation computes unit j for BB = 4 consecutive samples: the G pre-activations
// (forward) or the gradient reaching h_t[b, j] and the cell's backward there, so each weight
// it reads serves 4 samples. A workgroup covers WG units of those samples, so the rows of
// h_{t−1} (forward) or of the next step's gate gradients (backward) that all its
// invocations read are staged once in workgroup memory, in tiles of WG (a vec4 per column). Sums run over k = 0, 1, … in order: reproducible, and the CPU twin rounds alike up to
// its GEMM's order.
//
// Derivations are in the CPU twin (src/cpu/recurrent.rs).

const WG: u32 = 64u;

struct RecShape {
    batch: u32,
    steps: u32,
    hidden: u32,
    // The step this dispatch runs.
    t: u32,
    // Gates G (1 Elman, 4 LSTM, 3 GRU).
    gates: u32,
    // Backward: 1 when the gradient flows from step t + 1 into step t (not the last step,
    // not cut by truncated BPTT).
    flows: u32,
    // 0 tanh, 1 ReLU, 2 LSTM, 3 GRU.
    cell: u32,
    // Sequence kernels: features per step; norms: offset of this layer's T norms.
    features: u32,
    offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> shape: RecShape;
// Backward and transpose_weight: W_hh [G·H, H] as stored.
@group(0) @binding(1) var<storage, read> w_hh: array<f32>;
// Forward: W_hhᵀ [H, G·H], so that neighbouring invocations (units j) read neighbouring
// weights; `transpose_weight` writes it at the start of every forward.
@group(0) @binding(1) var<storage, read> w_hh_t: array<f32>;
@group(0) @binding(2) var<storage, read_write> w_hh_t_out: array<f32>;

// Forward: *_forward_step.
@group(0) @binding(2) var<storage, read> b_hh: array<f32>;
@group(0) @binding(3) var<storage, read_write> gates: array<f32>;
@group(0) @binding(4) var<storage, read_write> h: array<f32>;
@group(0) @binding(5) var<storage, read_write> hprev: array<f32>;
@group(0) @binding(6) var<storage, read_write> aux: array<f32>;

// Backward: *_backward_step.
@group(0) @binding(2) var<storage, read> sgates: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dh: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgi: array<f32>;
@group(0) @binding(6) var<storage, read> saux: array<f32>;
// LSTM: the dc carried between steps. GRU: h_{t−1} and the hidden-side gate gradients.
@group(0) @binding(7) var<storage, read_write> carry: array<f32>;
@group(0) @binding(7) var<storage, read> shprev: array<f32>;
@group(0) @binding(8) var<storage, read_write> dgh: array<f32>;

// Samples per invocation: each weight an invocation reads serves BB samples at once
// (their rows of h_{t−1} or of the gate gradients sit side by side in a vec4 of the tile).
const BB: u32 = 4u;

var<workgroup> tile: array<vec4<f32>, WG>;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// acc[g][s] = Σ_k h_{t−1}[b0 + s, k]·W_hh[g·H + j, k] for the cell's gates and the BB
// samples from b0, h_{t−1} staged in tiles (zero for samples past the batch). Every
// invocation of the workgroup calls it (barriers), live or not.
fn recurrent_product(b0: u32, j: u32, live: bool, lid: u32) -> array<vec4<f32>, 4> {
    // One accumulator variable per gate (not an array indexed by the gate: that would live
    // in memory on some drivers).
    var acc0 = vec4(0.0);
    var acc1 = vec4(0.0);
    var acc2 = vec4(0.0);
    var acc3 = vec4(0.0);
    let H = shape.hidden;
    if shape.t == 0u {
        return array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    }
    let G = shape.gates;
    for (var k0 = 0u; k0 < H; k0 = k0 + WG) {
        let k = k0 + lid;
        tile[lid] = vec4(h_prev_at(b0, k), h_prev_at(b0 + 1u, k), h_prev_at(b0 + 2u, k),
            h_prev_at(b0 + 3u, k));
        workgroupBarrier();
        if live {
            let kn = min(WG, H - k0);
            acc0 = gate_product(acc0, 0u, k0, kn, j);
            if G > 1u {
                acc1 = gate_product(acc1, 1u, k0, kn, j);
            }
            if G > 2u {
                acc2 = gate_product(acc2, 2u, k0, kn, j);
            }
            if G > 3u {
                acc3 = gate_product(acc3, 3u, k0, kn, j);
            }
        }
        workgroupBarrier();
    }
    return array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
}

// h_{t−1}[b, k], zero past the batch or the hidden size.
fn h_prev_at(b: u32, k: u32) -> f32 {
    if k < shape.hidden && b < shape.batch {
        return h[(b * shape.steps + shape.t - 1u) * shape.hidden + k];
    }
    return 0.0;
}

// a + Σ_{k < kn} tile[k]·W_hh[g·H + j, k0 + k] (W_hh read transposed), k ascending.
fn gate_product(a: vec4<f32>, g: u32, k0: u32, kn: u32, j: u32) -> vec4<f32> {
    let H = shape.hidden;
    let GH = shape.gates * H;
    var r = a;
    for (var k = 0u; k < kn; k = k + 1u) {
        r = r + tile[k] * w_hh_t[(k0 + k) * GH + g * H + j];
    }
    return r;
}

// W_hhᵀ: one invocation per element, w_hh_t_out[k, m] = w_hh[m, k] (m < G·H, k < H).
@compute @workgroup_size(WG)
fn transpose_weight(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = shape.hidden;
    let GH = shape.gates * H;
    let i = gid.y * (nwg.x * WG) + gid.x;
    if i >= GH * H {
        return;
    }
    let m = i / H;
    let k = i % H;
    w_hh_t_out[k * GH + m] = w_hh[i];
}

// The cell at (b, j) given the hidden-side sums hh[g] of its gates.
fn forward_cell(b: u32, j: u32, hh: vec4<f32>) {
    let H = shape.hidden;
    let t = shape.t;
    let row = (b * shape.steps + t) * H;
    let grow = (b * shape.steps + t) * shape.gates * H;
    var hp = 0.0;
    if t > 0u {
        hp = h[row - H + j];
    }
    hprev[row + j] = hp;
    if shape.cell <= 1u {
        let a = gates[grow + j] + hh[0] + b_hh[j];
        var v = max(a, 0.0);
        if shape.cell == 0u {
            v = tanh(a);
        }
        gates[grow + j] = v;
        h[row + j] = v;
    } else if shape.cell == 2u {
        let i = sigmoid(gates[grow + j] + hh[0] + b_hh[j]);
        let f = sigmoid(gates[grow + H + j] + hh[1] + b_hh[H + j]);
        let g = tanh(gates[grow + 2u * H + j] + hh[2] + b_hh[2u * H + j]);
        let o = sigmoid(gates[grow + 3u * H + j] + hh[3] + b_hh[3u * H + j]);
        var cp = 0.0;
        if t > 0u {
            cp = aux[row - H + j];
        }
        let c = f * cp + i * g;
        aux[row + j] = c;
        h[row + j] = o * tanh(c);
        gates[grow + j] = i;
        gates[grow + H + j] = f;
        gates[grow + 2u * H + j] = g;
        gates[grow + 3u * H + j] = o;
    } else {
        let r = sigmoid(gates[grow + j] + hh[0] + b_hh[j]);
        let z = sigmoid(gates[grow + H + j] + hh[1] + b_hh[H + j]);
        let hn = hh[2] + b_hh[2u * H + j];
        let n = tanh(gates[grow + 2u * H + j] + r * hn);
        aux[row + j] = hn;
        h[row + j] = (1.0 - z) * n + z * hp;
        gates[grow + j] = r;
        gates[grow + H + j] = z;
        gates[grow + 2u * H + j] = n;
    }
}

// One step of the Elman, LSTM or GRU cell (shape.cell) for unit gid.x of the BB samples
// from gid.y·BB.
@compute @workgroup_size(WG)
fn recurrent_forward_step(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let j = gid.x;
    let b0 = gid.y * BB;
    let live = j < shape.hidden;
    let acc = recurrent_product(b0, j, live, lid.x);
    if !live {
        return;
    }
    for (var s = 0u; s < BB; s = s + 1u) {
        if b0 + s < shape.batch {
            forward_cell(b0 + s, j, vec4(acc[0][s], acc[1][s], acc[2][s], acc[3][s]));
        }
    }
}

// dgi[b, t + 1, m] and dgh[b, t + 1, m] (m < G·H), zero past the batch or G·H.
fn dgi_next_at(b: u32, m: u32) -> f32 {
    let GH = shape.gates * shape.hidden;
    if m < GH && b < shape.batch {
        return dgi[(b * shape.steps + shape.t + 1u) * GH + m];
    }
    return 0.0;
}

fn dgh_next_at(b: u32, m: u32) -> f32 {
    let GH = shape.gates * shape.hidden;
    if m < GH && b < shape.batch {
        return dgh[(b * shape.steps + shape.t + 1u) * GH + m];
    }
    return 0.0;
}

// rec[s] = Σ_m src[b0 + s, t + 1, m]·W_hh[m, j]: the gradient reaching h_t through the next
// step's hidden-side pre-activations, for BB samples, staged in tiles. Two copies, one per
// source buffer (dgi for the Elman cell and the LSTM, dgh for the GRU), so that each entry
// point binds only its own.
fn recurrent_grad_dgi(b0: u32, j: u32, live: bool, lid: u32) -> vec4<f32> {
    let H = shape.hidden;
    let GH = shape.gates * H;
    var r = vec4(0.0);
    if shape.flows == 0u {
        return r;
    }
    for (var m0 = 0u; m0 < GH; m0 = m0 + WG) {
        let m = m0 + lid;
        tile[lid] = vec4(dgi_next_at(b0, m), dgi_next_at(b0 + 1u, m), dgi_next_at(b0 + 2u, m),
            dgi_next_at(b0 + 3u, m));
        workgroupBarrier();
        if live {
            let mn = min(WG, GH - m0);
            for (var m = 0u; m < mn; m = m + 1u) {
                r = r + tile[m] * w_hh[(m0 + m) * H + j];
            }
        }
        workgroupBarrier();
    }
    return r;
}

fn recurrent_grad_dgh(b0: u32, j: u32, live: bool, lid: u32) -> vec4<f32> {
    let H = shape.hidden;
    let GH = shape.gates * H;
    var r = vec4(0.0);
    if shape.flows == 0u {
        return r;
    }
    for (var m0 = 0u; m0 < GH; m0 = m0 + WG) {
        let m = m0 + lid;
        tile[lid] = vec4(dgh_next_at(b0, m), dgh_next_at(b0 + 1u, m), dgh_next_at(b0 + 2u, m),
            dgh_next_at(b0 + 3u, m));
        workgroupBarrier();
        if live {
            let mn = min(WG, GH - m0);
            for (var m = 0u; m < mn; m = m + 1u) {
                r = r + tile[m] * w_hh[(m0 + m) * H + j];
            }
        }
        workgroupBarrier();
    }
    return r;
}

// Backward of one step of the Elman cell (tanh or ReLU) at (b, j): gates holds h.
fn rnn_backward_cell(b: u32, j: u32, rec: f32) {
    let row = (b * shape.steps + shape.t) * shape.hidden;
    let d = dy[row + j] + rec;
    dh[row + j] = d;
    let v = sgates[row + j];
    if shape.cell == 0u {
        dgi[row + j] = d * (1.0 - v * v);
    } else {
        dgi[row + j] = select(0.0, d, v > 0.0);
    }
}

@compute @workgroup_size(WG)
fn rnn_backward_step(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let j = gid.x;
    let b0 = gid.y * BB;
    let live = j < shape.hidden;
    let rec = recurrent_grad_dgi(b0, j, live, lid.x);
    if !live {
        return;
    }
    for (var s = 0u; s < BB; s = s + 1u) {
        if b0 + s < shape.batch {
            rnn_backward_cell(b0 + s, j, rec[s]);
        }
    }
}

fn lstm_backward_cell(b: u32, j: u32, rec: f32) {
    let H = shape.hidden;
    let t = shape.t;
    let row = (b * shape.steps + t) * H;
    let grow = (b * shape.steps + t) * 4u * H;
    let d = dy[row + j] + rec;
    dh[row + j] = d;
    let i = sgates[grow + j];
    let f = sgates[grow + H + j];
    let g = sgates[grow + 2u * H + j];
    let o = sgates[grow + 3u * H + j];
    let c = saux[row + j];
    var cp = 0.0;
    if t > 0u {
        cp = saux[row - H + j];
    }
    let tc = tanh(c);
    var next = 0.0;
    if shape.flows != 0u {
        next = carry[b * H + j];
    }
    let dc = d * o * (1.0 - tc * tc) + next;
    carry[b * H + j] = dc * f;
    dgi[grow + j] = dc * g * i * (1.0 - i);
    dgi[grow + H + j] = dc * cp * f * (1.0 - f);
    dgi[grow + 2u * H + j] = dc * i * (1.0 - g * g);
    dgi[grow + 3u * H + j] = d * tc * o * (1.0 - o);
}

@compute @workgroup_size(WG)
fn lstm_backward_step(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let j = gid.x;
    let b0 = gid.y * BB;
    let live = j < shape.hidden;
    let rec = recurrent_grad_dgi(b0, j, live, lid.x);
    if !live {
        return;
    }
    for (var s = 0u; s < BB; s = s + 1u) {
        if b0 + s < shape.batch {
            lstm_backward_cell(b0 + s, j, rec[s]);
        }
    }
}

fn gru_backward_cell(b: u32, j: u32, rec_in: f32) {
    let H = shape.hidden;
    let t = shape.t;
    let T = shape.steps;
    var rec = rec_in;
    if shape.flows != 0u {
        // h_t also reaches h_{t+1} directly: h_{t+1} = (1 − z)·n + z·h_t.
        rec = rec + dh[(b * T + t + 1u) * H + j] * sgates[(b * T + t + 1u) * 3u * H + H + j];
    }
    let row = (b * T + t) * H;
    let grow = (b * T + t) * 3u * H;
    let d = dy[row + j] + rec;
    dh[row + j] = d;
    let r = sgates[grow + j];
    let z = sgates[grow + H + j];
    let n = sgates[grow + 2u * H + j];
    let hp = shprev[row + j];
    let dan = d * (1.0 - z) * (1.0 - n * n);
    let drp = dan * saux[row + j] * r * (1.0 - r);
    let dzp = d * (hp - n) * z * (1.0 - z);
    dgi[grow + j] = drp;
    dgi[grow + H + j] = dzp;
    dgi[grow + 2u * H + j] = dan;
    dgh[grow + j] = drp;
    dgh[grow + H + j] = dzp;
    dgh[grow + 2u * H + j] = dan * r;
}

@compute @workgroup_size(WG)
fn gru_backward_step(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let j = gid.x;
    let b0 = gid.y * BB;
    let live = j < shape.hidden;
    let rec = recurrent_grad_dgh(b0, j, live, lid.x);
    if !live {
        return;
    }
    for (var s = 0u; s < BB; s = s + 1u) {
        if b0 + s < shape.batch {
            gru_backward_cell(b0 + s, j, rec[s]);
        }
    }
}

// hidden_grad_norms / last_step_*: one sequence in, one out.
@group(0) @binding(1) var<storage, read> seq_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> seq_out: array<f32>;

// One invocation per step t: ‖dh[:, t, :]‖₂ into seq_out[offset + t], summed over b then j
// in order as max|x|·√Σ(x/max|x|)², so vanishing gradients do not underflow when squared.
@compute @workgroup_size(WG)
fn hidden_grad_norms(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if t >= shape.steps {
        return;
    }
    let H = shape.hidden;
    var m = 0.0;
    for (var b = 0u; b < shape.batch; b = b + 1u) {
        let row = (b * shape.steps + t) * H;
        for (var j = 0u; j < H; j = j + 1u) {
            m = max(m, abs(seq_in[row + j]));
        }
    }
    var norm = m;
    // m != m: NaN; a NaN or Inf norm is reported as the max itself.
    if m > 0.0 && m <= 3.4028235e38 {
        let inv = 1.0 / m;
        var s = 0.0;
        for (var b = 0u; b < shape.batch; b = b + 1u) {
            let row = (b * shape.steps + t) * H;
            for (var j = 0u; j < H; j = j + 1u) {
                let q = seq_in[row + j] * inv;
                s = s + q * q;
            }
        }
        norm = m * sqrt(s);
    }
    seq_out[shape.offset + t] = norm;
}

// One invocation per element of y [B, F]: y[b, f] = x[b, T − 1, f].
@compute @workgroup_size(WG)
fn last_step_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let F = shape.features;
    let i = gid.y * (nwg.x * WG) + gid.x;
    if i >= shape.batch * F {
        return;
    }
    let b = i / F;
    let f = i % F;
    seq_out[i] = seq_in[(b * shape.steps + shape.steps - 1u) * F + f];
}

// One invocation per element of dx [B, T, F]: dy[b, f] at the last step, 0 elsewhere.
@compute @workgroup_size(WG)
fn last_step_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let F = shape.features;
    let T = shape.steps;
    let i = gid.y * (nwg.x * WG) + gid.x;
    if i >= shape.batch * T * F {
        return;
    }
    let f = i % F;
    let t = (i / F) % T;
    let b = i / (F * T);
    var v = 0.0;
    if t == T - 1u {
        v = seq_in[b * F + f];
    }
    seq_out[i] = v;
}
