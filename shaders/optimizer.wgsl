// Optimizer update: one element-wise step of torch.optim's SGD (plain, heavy-ball momentum,
// Nesterov), Adagrad, RMSprop, Adam and AdamW, one kernel for the whole family switching on
// OptimizerKind::code(). The formulas follow PyTorch's own order of operations
// (torch/optim/{sgd,adagrad,rmsprop,adam,adamw}.py, single-tensor path) so that a user's
// settings behave as they do there; the CPU twin is src/cpu/optimizer.rs.
//
// Every optimizer is element-wise: element i of the parameter only ever reads element i of
// its gradient and state, so one invocation owns one element and nothing is shared.

// OptimizerKind::code() values (src/ops/optimizer.rs).
const SGD: u32 = 0u;
const MOMENTUM: u32 = 1u;
const NESTEROV: u32 = 2u;
const ADAGRAD: u32 = 3u;
const RMSPROP: u32 = 4u;
const ADAM: u32 = 5u;
const ADAMW: u32 = 6u;

const WG: u32 = 256u;

// Rewritten by the executor every step (ops::StepUniform).
struct Step {
    lr: f32,
    t: u32,
    bias_correction1: f32, // 1 − β₁ᵗ, computed on the host in f64
    bias_correction2: f32, // 1 − β₂ᵗ
}

// Fixed for the run (launcher's OptimizerHyper).
struct Hyper {
    kind: u32,
    len: u32,
    row: u32, // invocations per row of the 2-D grid (workgroups in x · WG)
    momentum: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
}

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
    let lr = step.lr;
    let wd = hp.weight_decay;
    let p_old = param[i];
    var p = p_old;
    // L2 penalty folded into the gradient (every kind but adamw, whose decay is decoupled).
    var g = grad[i];
    if (hp.kind != ADAMW) {
        g = g + wd * p;
    }

    switch hp.kind {
        case SGD: {
            p = p - lr * g;
        }
        case MOMENTUM, NESTEROV: {
            // Dampening 0: buf = μ·buf + g. PyTorch's first step sets buf = g, which is the
            // same since buf starts at zero.
            let buf = hp.momentum * state1[i] + g;
            state1[i] = buf;
            if (hp.kind == NESTEROV) {
                p = p - lr * (g + hp.momentum * buf);
            } else {
                p = p - lr * buf;
            }
        }
        case ADAGRAD: {
            let sum = state1[i] + g * g;
            state1[i] = sum;
            p = p - lr * (g / (sqrt(sum) + hp.eps));
        }
        case RMSPROP: {
            // α is carried in beta2.
            let v = hp.beta2 * state1[i] + (1.0 - hp.beta2) * g * g;
            state1[i] = v;
            p = p - lr * (g / (sqrt(v) + hp.eps));
        }
        case ADAM, ADAMW: {
            if (hp.kind == ADAMW) {
                // Decoupled decay (Loshchilov & Hutter): shrink first, then plain Adam.
                p = p * (1.0 - lr * wd);
            }
            let m = hp.beta1 * state1[i] + (1.0 - hp.beta1) * g;
            let v = hp.beta2 * state2[i] + (1.0 - hp.beta2) * g * g;
            state1[i] = m;
            state2[i] = v;
            // As PyTorch computes it: step_size = lr/bc1, denom = √v/√bc2 + eps.
            let step_size = lr / step.bias_correction1;
            let denom = sqrt(v) / sqrt(step.bias_correction2) + hp.eps;
            p = p - step_size * (m / denom);
        }
        default: {
            // Unknown kind: leave the parameter as it is (the launcher never sends one).
        }
    }
    param[i] = p;
    update[i] = p - p_old;
}
