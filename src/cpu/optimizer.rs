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

/// The update of `optimizer_update` on one run of elements, on the calling thread: the
/// same loop compiled for the widest vector unit the CPU has (AVX-512, AVX2) or for the
/// x86-64 baseline. The arithmetic is the same in every build (Rust never contracts a·b + c
/// into an fma, and the vector sqrt and division are IEEE-exact), so the bits are too.
fn update_serial<T: Element>(
    p: &OptimizerParams,
    s: &StepScalars,
    param: &mut [T],
    grad: &[T],
    state1: &mut [T],
    state2: &mut [T],
    update: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { update_avx512(p, s, param, grad, state1, state2, update) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { update_avx2(p, s, param, grad, state1, state2, update) };
        }
    }
    update_kernel(p, s, param, grad, state1, state2, update);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn update_avx512<T: Element>(
    p: &OptimizerParams,
    s: &StepScalars,
    param: &mut [T],
    grad: &[T],
    state1: &mut [T],
    state2: &mut [T],
    update: &mut [T],
) {
    update_kernel(p, s, param, grad, state1, state2, update);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn update_avx2<T: Element>(
    p: &OptimizerParams,
    s: &StepScalars,
    param: &mut [T],
    grad: &[T],
    state1: &mut [T],
    state2: &mut [T],
    update: &mut [T],
) {
    update_kernel(p, s, param, grad, state1, state2, update);
}

/// The element loops, one per kind (the kind is decided once, not per element) over zipped
/// slices (no bounds checks), so that the compiler vectorizes them.
#[inline(always)]
fn update_kernel<T: Element>(
    p: &OptimizerParams,
    s: &StepScalars,
    param: &mut [T],
    grad: &[T],
    state1: &mut [T],
    state2: &mut [T],
    update: &mut [T],
) {
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
    // L2 penalty folded into the gradient, except for adamw whose decay is decoupled.
    let decayed = |g: T, x: T| g + wd * x;
    let elems = param.iter_mut().zip(grad).zip(update.iter_mut());
    match p.kind {
        OptimizerKind::Sgd => {
            for ((x, &g), u) in elems {
                let p_old = *x;
                let g = decayed(g, p_old);
                *x = p_old - lr * g;
                *u = *x - p_old;
            }
        }
        OptimizerKind::Momentum | OptimizerKind::Nesterov => {
            let nesterov = p.kind == OptimizerKind::Nesterov;
            for (((x, &g), u), b) in elems.zip(state1.iter_mut()) {
                let p_old = *x;
                let g = decayed(g, p_old);
                // Dampening 0; PyTorch's first step sets buf = g, the same as μ·0 + g.
                let buf = mu * *b + g;
                *b = buf;
                *x = if nesterov {
                    p_old - lr * (g + mu * buf)
                } else {
                    p_old - lr * buf
                };
                *u = *x - p_old;
            }
        }
        OptimizerKind::Adagrad => {
            for (((x, &g), u), acc) in elems.zip(state1.iter_mut()) {
                let p_old = *x;
                let g = decayed(g, p_old);
                let sum = *acc + g * g;
                *acc = sum;
                *x = p_old - lr * (g / (sum.sqrt() + eps));
                *u = *x - p_old;
            }
        }
        OptimizerKind::Rmsprop => {
            // α is carried in beta2.
            for (((x, &g), u), ms) in elems.zip(state1.iter_mut()) {
                let p_old = *x;
                let g = decayed(g, p_old);
                let v = beta2 * *ms + (one - beta2) * g * g;
                *ms = v;
                *x = p_old - lr * (g / (v.sqrt() + eps));
                *u = *x - p_old;
            }
        }
        OptimizerKind::Adam | OptimizerKind::Adamw => {
            let adamw = p.kind == OptimizerKind::Adamw;
            let step_size = lr / bc1;
            let bc2_sqrt = bc2.sqrt();
            for ((((x, &g), u), m1), m2) in elems.zip(state1.iter_mut()).zip(state2.iter_mut()) {
                let p_old = *x;
                let (g, mut xv) = if adamw {
                    // Decoupled decay (Loshchilov & Hutter): shrink first, then plain Adam.
                    (g, p_old * (one - lr * wd))
                } else {
                    (decayed(g, p_old), p_old)
                };
                let m = beta1 * *m1 + (one - beta1) * g;
                let v = beta2 * *m2 + (one - beta2) * g * g;
                *m1 = m;
                *m2 = v;
                let denom = v.sqrt() / bc2_sqrt + eps;
                xv = xv - step_size * (m / denom);
                *x = xv;
                *u = xv - p_old;
            }
        }
    }
}
