//! CPU twin of shaders/optimizer.wgsl: one element-wise step of torch.optim's SGD (plain,
//! momentum, Nesterov), Adagrad, RMSprop, Adam and AdamW. The operations are written in the
//! shader's order (which is PyTorch's), so the f32 instantiation matches the GPU up to the
//! rounding of sqrt and division on the device.

use rayon::iter::Either;
use rayon::prelude::*;

use crate::cpu::Element;
use crate::ops::{OptimizerKind, OptimizerParams, StepScalars};

/// One optimizer step on one parameter tensor, with torch.optim's semantics. `state1` and
/// `state2` are the optimizer's state slots (empty where the optimizer keeps fewer);
/// `update` receives the change applied to each element (param_new − param_old).
///
/// state1 is the momentum buffer (momentum, nesterov), the running sum of squares
/// (adagrad), the mean square v (rmsprop) or the first moment m (adam, adamw); state2 is
/// Adam's second moment v. Slices are [len] (state slots the kind does not keep may be
/// empty); the caller (the plan) sizes them, so a mismatch is a bug and panics.
pub fn optimizer_update<T: Element>(
    p: &OptimizerParams,
    s: &StepScalars,
    param: &mut [T],
    grad: &[T],
    state1: &mut [T],
    state2: &mut [T],
    update: &mut [T],
) {
    let len = param.len();
    assert_eq!(grad.len(), len, "optimizer_update: grad length");
    assert_eq!(update.len(), len, "optimizer_update: update length");
    let slots = p.kind.state_slots();
    if slots >= 1 {
        assert_eq!(state1.len(), len, "optimizer_update: state1 length");
    }
    if slots >= 2 {
        assert_eq!(state2.len(), len, "optimizer_update: state2 length");
    }

    if len <= PAR_CHUNK {
        update_serial(p, s, param, grad, state1, state2, update);
        return;
    }
    // Every element is updated on its own, so splitting changes no result.
    let chunks = len.div_ceil(PAR_CHUNK);
    param
        .par_chunks_mut(PAR_CHUNK)
        .zip(grad.par_chunks(PAR_CHUNK))
        .zip(chunks_or_empty(state1, chunks))
        .zip(chunks_or_empty(state2, chunks))
        .zip(update.par_chunks_mut(PAR_CHUNK))
        .for_each(|((((x, g), s1), s2), u)| update_serial(p, s, x, g, s1, s2, u));
}

/// Tensors longer than this are updated in chunks of this size across rayon's threads.
const PAR_CHUNK: usize = 1 << 15;

/// `count` chunks of PAR_CHUNK elements of a state slot, or `count` empty slices for a slot
/// the optimizer does not keep (it is then never indexed).
fn chunks_or_empty<T: Element>(
    state: &mut [T],
    count: usize,
) -> impl IndexedParallelIterator<Item = &mut [T]> {
    if state.is_empty() {
        Either::Left((0..count).into_par_iter().map(|_| <&mut [T]>::default()))
    } else {
        Either::Right(state.par_chunks_mut(PAR_CHUNK))
    }
}

/// The update of `optimizer_update` on one run of elements, on the calling thread.
fn update_serial<T: Element>(
    p: &OptimizerParams,
    s: &StepScalars,
    param: &mut [T],
    grad: &[T],
    state1: &mut [T],
    state2: &mut [T],
    update: &mut [T],
) {
    let len = param.len();
    let c = |x: f32| T::from_f64(x as f64);
    let lr = c(s.lr);
    let wd = c(p.weight_decay);
    let mu = c(p.momentum);
    let beta1 = c(p.beta1);
    let beta2 = c(p.beta2);
    let eps = c(p.eps);
    let one = T::one();
    // Bias corrections are rounded to f32 on the host, exactly as the GPU receives them.
    let (bc1, bc2) = s.bias_corrections(p);
    let (bc1, bc2) = (c(bc1), c(bc2));

    for i in 0..len {
        let p_old = param[i];
        let mut x = p_old;
        // L2 penalty folded into the gradient, except for adamw whose decay is decoupled.
        let g = if p.kind == OptimizerKind::Adamw {
            grad[i]
        } else {
            grad[i] + wd * x
        };
        match p.kind {
            OptimizerKind::Sgd => {
                x = x - lr * g;
            }
            OptimizerKind::Momentum | OptimizerKind::Nesterov => {
                // Dampening 0; PyTorch's first step sets buf = g, the same as μ·0 + g.
                let buf = mu * state1[i] + g;
                state1[i] = buf;
                x = if p.kind == OptimizerKind::Nesterov {
                    x - lr * (g + mu * buf)
                } else {
                    x - lr * buf
                };
            }
            OptimizerKind::Adagrad => {
                let sum = state1[i] + g * g;
                state1[i] = sum;
                x = x - lr * (g / (sum.sqrt() + eps));
            }
            OptimizerKind::Rmsprop => {
                // α is carried in beta2.
                let v = beta2 * state1[i] + (one - beta2) * g * g;
                state1[i] = v;
                x = x - lr * (g / (v.sqrt() + eps));
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                if p.kind == OptimizerKind::Adamw {
                    x = x * (one - lr * wd);
                }
                let m = beta1 * state1[i] + (one - beta1) * g;
                let v = beta2 * state2[i] + (one - beta2) * g * g;
                state1[i] = m;
                state2[i] = v;
                let step_size = lr / bc1;
                let denom = v.sqrt() / bc2.sqrt() + eps;
                x = x - step_size * (m / denom);
            }
        }
        param[i] = x;
        update[i] = x - p_old;
    }
}
