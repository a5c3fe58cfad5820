// Losses of the last layer, fused with their gradients, and the batch reduction.
//
// softmax_xent_forward_backward: one invocation per row of logits (rows, classes). The row
// max m is subtracted before exponentiating (log-sum-exp), so logits of ±1000 neither
// overflow nor lose the answer: with s = Σ_c e^(l_c − m),
//   loss = log s − (l_label − m)  (= −log softmax(l)_label),
//   dloss/dl_c = e^(l_c − m)/s − [c = label]  (= softmax − one-hot).
// Both are divided by rows, so the batch's mean loss is Σ row_loss and dlogits is the
// gradient of that mean. The arg-max (first maximum wins, as torch.argmax) is found in the
// same pass and compared with the label.
//
// An out-of-range label (label ≥ classes) cannot come from the data loader, which validates
// labels; if one arrives anyway the kernel never indexes with it: the row's loss is NaN (so
// the batch loss turns non-finite and the non-finite tracker names the loss), its dlogits
// are 0 (the row trains nothing) and it counts as wrong.
//
// mse_forward_backward: one invocation per row of pred (rows, cols), PyTorch's
// MSELoss(reduction='mean'): row_loss = Σ_j (p − t)²/(rows·cols), dpred = 2(p − t)/(rows·cols).
// row_correct compares arg-max(pred) with the label (never used as an index here).
//
// loss_reduce: one workgroup of RWG invocations. Invocation t sums rows t, t + RWG, t + 2·RWG, …
// in order, then a fixed binary tree in workgroup memory adds the RWG partial sums. No atomics
// and a fixed order: the batch loss is reproducible bit for bit, and the CPU twin follows the
// same order. Correct counts are summed as u32 and converted once (exact below 2^24).

const WG: u32 = 64u;
const RWG: u32 = 256u;

struct Shape {
    rows: u32,
    // classes (softmax) or cols (mse); unused by loss_reduce.
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> shape: Shape;

// softmax_xent_forward_backward
@group(0) @binding(1) var<storage, read> x_logits: array<f32>;
@group(0) @binding(2) var<storage, read> x_labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> x_dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> x_row_loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> x_row_correct: array<u32>;

// mse_forward_backward
@group(0) @binding(1) var<storage, read> m_pred: array<f32>;
@group(0) @binding(2) var<storage, read> m_targets: array<f32>;
@group(0) @binding(3) var<storage, read> m_labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> m_dpred: array<f32>;
@group(0) @binding(5) var<storage, read_write> m_row_loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> m_row_correct: array<u32>;

// loss_reduce
@group(0) @binding(1) var<storage, read> r_row_loss: array<f32>;
@group(0) @binding(2) var<storage, read> r_row_correct: array<u32>;
@group(0) @binding(3) var<storage, read_write> r_out: array<f32>;

var<workgroup> partial_loss: array<f32, RWG>;
var<workgroup> partial_correct: array<u32, RWG>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * (nwg.x * WG) + gid.x;
}

// One invocation: one row r, writing row_loss[r], row_correct[r] and dlogits[r, :].
@compute @workgroup_size(WG)
fn softmax_xent_forward_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = flat_index(gid, nwg);
    if r >= shape.rows {
        return;
    }
    let classes = shape.cols;
    let base = r * classes;
    let label = x_labels[r];
    let valid = label < classes;

    // Row max and arg-max; strict > keeps the first maximum. Each loop loads four classes
    // (in flight together) before it uses them in class order, so the results are those of
    // one class at a time.
    var m = x_logits[base];
    var arg = 0u;
    var c = 1u;
    for (; c + 4u <= classes; c = c + 4u) {
        let v = logits4(base + c);
        for (var q = 0u; q < 4u; q = q + 1u) {
            if v[q] > m {
                m = v[q];
                arg = c + q;
            }
        }
    }
    for (; c < classes; c = c + 1u) {
        let v = x_logits[base + c];
        if v > m {
            m = v;
            arg = c;
        }
    }
    var s = 0.0;
    c = 0u;
    for (; c + 4u <= classes; c = c + 4u) {
        let e = exp(logits4(base + c) - m);
        s = s + e.x + e.y + e.z + e.w;
    }
    for (; c < classes; c = c + 1u) {
        s = s + exp(x_logits[base + c] - m);
    }
    let n = f32(shape.rows);
    // min() keeps the read in bounds for an invalid label, whose loss is replaced below.
    let target_logit = x_logits[base + min(label, classes - 1u)];
    // A runtime NaN (a constant one would be rejected at shader creation).
    let nan = bitcast<f32>(0x7fc00000u | (label & 0u));
    x_row_loss[r] = select(nan, (log(s) - (target_logit - m)) / n, valid);
    for (c = 0u; c < classes; c = c + 1u) {
        let p = exp(x_logits[base + c] - m) / s;
        let g = (p - select(0.0, 1.0, c == label)) / n;
        x_dlogits[base + c] = select(0.0, g, valid);
    }
    x_row_correct[r] = select(0u, 1u, valid && arg == label);
}

// Logits i .. i + 3.
fn logits4(i: u32) -> vec4<f32> {
    return vec4<f32>(x_logits[i], x_logits[i + 1u], x_logits[i + 2u], x_logits[i + 3u]);
}

// One invocation: one row r, writing row_loss[r], row_correct[r] and dpred[r, :].
@compute @workgroup_size(WG)
fn mse_forward_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = flat_index(gid, nwg);
    if r >= shape.rows {
        return;
    }
    let cols = shape.cols;
    let base = r * cols;
    // rows·cols < 2^31 (checked by the launcher); its f32 rounding matches the CPU twin's.
    let n = f32(shape.rows * cols);
    var sum = 0.0;
    var m = m_pred[base];
    var arg = 0u;
    for (var c = 0u; c < cols; c = c + 1u) {
        let p = m_pred[base + c];
        let d = p - m_targets[base + c];
        sum = sum + d * d;
        // y = Σ d²/n, so dy/dp = 2d/n.
        m_dpred[base + c] = 2.0 * d / n;
        if p > m {
            m = p;
            arg = c;
        }
    }
    m_row_loss[r] = sum / n;
    m_row_correct[r] = select(0u, 1u, arg == m_labels[r]);
}

// One workgroup: out[0] = Σ row_loss, out[1] = Σ row_correct (as f32), in a fixed order.
@compute @workgroup_size(RWG)
fn loss_reduce(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    var s = 0.0;
    var k = 0u;
    for (var i = t; i < shape.rows; i = i + RWG) {
        s = s + r_row_loss[i];
        k = k + r_row_correct[i];
    }
    partial_loss[t] = s;
    partial_correct[t] = k;
    workgroupBarrier();
    for (var stride = RWG / 2u; stride > 0u; stride = stride / 2u) {
        if t < stride {
            partial_loss[t] = partial_loss[t] + partial_loss[t + stride];
            partial_correct[t] = partial_correct[t] + partial_correct[t + stride];
        }
        workgroupBarrier();
    }
    if t == 0u {
        r_out[0] = partial_loss[0];
        r_out[1] = f32(partial_correct[0]);
    }
}
