// Optimizer arithmetic, shared by optimizer.wgsl (one tensor per dispatch) and
// optimizer_multi.wgsl (several): one element-wise step of torch.optim's SGD (plain,
// heavy-ball momentum, Nesterov), Adagrad, RMSprop, Adam and AdamW, one function for the
// whole family switching on OptimizerKind::code(). The formulas follow PyTorch's own order of operations
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

// No bindings and no entry points: the two shaders are this file followed by their own.

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

// The new value and state of one element (state slots the kind does not keep stay 0).
struct Stepped {
    p: f32,
    s1: f32,
    s2: f32,
}

// One element's step: p_old, its raw gradient g_raw and its state s1, s2 (0 where the
// kind keeps none), under the step's and the run's settings.
fn step_element(st: Step, h: Hyper, p_old: f32, g_raw: f32, s1: f32, s2: f32) -> Stepped {
    let lr = st.lr;
    let wd = h.weight_decay;
    var p = p_old;
    var n1 = 0.0;
    var n2 = 0.0;
    // L2 penalty folded into the gradient (every kind but adamw, whose decay is decoupled).
    var g = g_raw;
    if (h.kind != ADAMW) {
        g = g + wd * p;
    }

    switch h.kind {
        case SGD: {
            p = p - lr * g;
        }
        case MOMENTUM, NESTEROV: {
            // Dampening 0: buf = μ·buf + g. PyTorch's first step sets buf = g, which is the
            // same since buf starts at zero.
            let buf = h.momentum * s1 + g;
            n1 = buf;
            if (h.kind == NESTEROV) {
                p = p - lr * (g + h.momentum * buf);
            } else {
                p = p - lr * buf;
            }
        }
        case ADAGRAD: {
            let sum = s1 + g * g;
            n1 = sum;
            p = p - lr * (g / (sqrt(sum) + h.eps));
        }
        case RMSPROP: {
            // α is carried in beta2.
            let v = h.beta2 * s1 + (1.0 - h.beta2) * g * g;
            n1 = v;
            p = p - lr * (g / (sqrt(v) + h.eps));
        }
        case ADAM, ADAMW: {
            if (h.kind == ADAMW) {
                // Decoupled decay (Loshchilov & Hutter): shrink first, then plain Adam.
                p = p * (1.0 - lr * wd);
            }
            let m = h.beta1 * s1 + (1.0 - h.beta1) * g;
            let v = h.beta2 * s2 + (1.0 - h.beta2) * g * g;
            n1 = m;
            n2 = v;
            // As PyTorch computes it: step_size = lr/bc1, denom = √v/√bc2 + eps.
            let step_size = lr / st.bias_correction1;
            let denom = sqrt(v) / sqrt(st.bias_correction2) + h.eps;
            p = p - step_size * (m / denom);
        }
        default: {
            // Unknown kind: leave the parameter as it is (the launcher never sends one).
        }
    }
    return Stepped(p, n1, n2);
}

// Whether the kind keeps state slot 1, and slot 2.
fn keeps_state1(kind: u32) -> bool {
    return kind != SGD;
}

fn keeps_state2(kind: u32) -> bool {
    return kind == ADAM || kind == ADAMW;
}

