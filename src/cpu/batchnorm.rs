//! CPU twin of shaders/batchnorm.wgsl: batch normalization with PyTorch's semantics for
//! nn.BatchNorm1d on [N, C] and nn.BatchNorm2d on NCHW, both seen as x[n, c, s] (s = H·W,
//! or 1) with every channel normalized over its M = n·s values.
//!
//! Training forward: mean and the biased variance per channel (two passes), x̂ = (x − mean)
//! ·inv_std with inv_std = 1/sqrt(var + eps), y = γ·x̂ + β; mean and inv_std are saved for
//! backward, and the running statistics move by `momentum` towards the batch mean and the
//! unbiased variance var·M/(M − 1). Evaluation forward uses the running statistics.
//!
//! Backward (training mode): dβ = Σ dy, dγ = Σ dy·x̂, dx = (γ·inv_std/M)·(M·dy − Σdy −
//! x̂·Σ dy·x̂): from y = γx̂ + β, ∂L/∂x̂ = γ·dy, and x̂ depends on every x of its channel
//! through the mean (∂μ/∂x_i = 1/M) and the inverse deviation (∂r/∂x_i = −r³(x_i − μ)/M).
//! dγ and dβ are parameter gradients (`accumulate` adds to them); dx is overwritten.
//!
//! Every channel reduction runs in the GPU's order (runs of `ops::batchnorm::runs`, each
//! reduced by WG lanes then a tree; the runs combined by a second tree): moments (count,
//! mean, M2) by Welford's update and Chan's pairwise formula in the forward, plain sums in
//! the backward. Both executors thus round the same way up to the driver's contraction of
//! a·b + c into fused multiply-adds.

use crate::cpu::Element;
use crate::ops::batchnorm::runs;

/// Invocations per workgroup of batchnorm.wgsl and layernorm.wgsl, whose reduction orders
/// this file reproduces.
pub const WG: usize = crate::ops::batchnorm::WG;

/// lanes[t] = op(lanes[t], lanes[t + stride]) for stride = WG/2, …, 1: the shaders' tree.
fn tree<V: Copy>(lanes: &mut [V; WG], op: impl Fn(V, V) -> V) -> V {
    tree_n(lanes, WG, op)
}

/// `tree` over lanes 0 .. n only (the others hold the empty value): the levels with stride
/// ≥ n pair a lane with an empty one, so the tree starts at stride n.next_power_of_two()/2,
/// as the shaders' `workgroup_*_n` do.
fn tree_n<V: Copy>(lanes: &mut [V; WG], n: usize, op: impl Fn(V, V) -> V) -> V {
    let mut stride = n.max(1).next_power_of_two() / 2;
    while stride > 0 {
        for t in 0..stride {
            lanes[t] = op(lanes[t], lanes[t + stride]);
        }
        stride /= 2;
    }
    lanes[0]
}

/// (count, mean, M2 = Σ (x − mean)²) of a set of values.
#[derive(Clone, Copy, Debug)]
struct Moments<T> {
    n: T,
    mean: T,
    m2: T,
}

impl<T: Element> Moments<T> {
    fn zero() -> Self {
        Moments {
            n: T::zero(),
            mean: T::zero(),
            m2: T::zero(),
        }
    }

    /// Welford's update with one more value.
    fn push(&mut self, v: T) {
        self.n = self.n + T::one();
        let d = v - self.mean;
        self.mean = self.mean + d / self.n;
        self.m2 = self.m2 + d * (v - self.mean);
    }

    /// The moments of the union of two disjoint sets (Chan, Golub & LeVeque 1979).
    fn combine(a: Self, b: Self) -> Self {
        let n = a.n + b.n;
        if n == T::zero() {
            return Self::zero();
        }
        let d = b.mean - a.mean;
        let wb = b.n / n;
        Moments {
            n,
            mean: a.mean + d * wb,
            m2: a.m2 + b.m2 + d * d * a.n * wb,
        }
    }
}

/// Reduces m < count in the order of batchnorm.wgsl's partial and finalize passes: lane t
/// of run k folds m = k·chunk + t, + WG, … in order (`push`), the lanes of a run and then
/// the runs are combined by the shaders' tree (`combine`, `zero` for missing ones).
fn channel_reduce<V: Copy>(
    count: usize,
    zero: V,
    push: impl Fn(V, usize) -> V,
    combine: impl Fn(V, V) -> V,
) -> V {
    let (chunks, chunk) = runs(count);
    let mut parts = [zero; WG];
    for (k, part) in parts.iter_mut().enumerate().take(chunks) {
        let (lo, hi) = (k * chunk, ((k + 1) * chunk).min(count));
        let mut lanes = [zero; WG];
        for (t, lane) in lanes.iter_mut().enumerate() {
            let mut m = lo + t;
            while m < hi {
                *lane = push(*lane, m);
                m += WG;
            }
        }
        *part = tree(&mut lanes, &combine);
    }
    tree_n(&mut parts, chunks, &combine)
}

/// The moments of value(m), m < count, in the forward passes' order.
fn channel_moments<T: Element>(count: usize, value: impl Fn(usize) -> T) -> Moments<T> {
    let push = |mut acc: Moments<T>, m: usize| {
        acc.push(value(m));
        acc
    };
    channel_reduce(count, Moments::zero(), push, Moments::combine)
}

/// (Σ a(m), Σ b(m)) over m < count in the backward passes' order.
fn channel_sums<T: Element>(count: usize, value: impl Fn(usize) -> (T, T)) -> (T, T) {
    let add = |a: (T, T), b: (T, T)| (a.0 + b.0, a.1 + b.1);
    channel_reduce(
        count,
        (T::zero(), T::zero()),
        |acc, m| add(acc, value(m)),
        add,
    )
}

/// Σ_{m < count} value(m) in the order of the shaders' workgroup reduction: lane t sums
/// m = t, t + WG, t + 2·WG, … in order, then the WG lane sums are combined by a tree,
/// lane[t] += lane[t + stride] for stride = WG/2, …, 1.
pub fn workgroup_sum<T: Element>(count: usize, mut value: impl FnMut(usize) -> T) -> T {
    let mut lanes = [T::zero(); WG];
    for (t, lane) in lanes.iter_mut().enumerate() {
        let mut m = t;
        while m < count {
            *lane = *lane + value(m);
            m += WG;
        }
    }
    tree(&mut lanes, |a, b| a + b)
}

/// The flat index in x[n, c, s] of the m-th value (m = ni·s + si) of channel ch.
fn index(c: usize, s: usize, ch: usize, m: usize) -> usize {
    let (ni, si) = (m / s, m % s);
    (ni * c + ch) * s + si
}

fn check(op: &str, n: usize, c: usize, s: usize, tensors: &[(&str, usize, usize)]) {
    for &(name, len, need) in tensors {
        assert!(
            len >= need,
            "{op}: `{name}` has {len} elements but n {n} × c {c} × s {s} needs {need}"
        );
    }
}

/// Training-mode forward. x, y: [n, c, s]; gamma, beta, save_mean, save_invstd,
/// running_mean, running_var: [c]. Needs n·s ≥ 2 (the unbiased variance divides by M − 1).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward_train<T: Element>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    y: &mut [T],
    save_mean: &mut [T],
    save_invstd: &mut [T],
    running_mean: &mut [T],
    running_var: &mut [T],
    n: usize,
    c: usize,
    s: usize,
    eps: f64,
    momentum: f64,
) {
    let len = n * c * s;
    check(
        "batchnorm_forward_train",
        n,
        c,
        s,
        &[
            ("x", x.len(), len),
            ("y", y.len(), len),
            ("gamma", gamma.len(), c),
            ("beta", beta.len(), c),
            ("save_mean", save_mean.len(), c),
            ("save_invstd", save_invstd.len(), c),
            ("running_mean", running_mean.len(), c),
            ("running_var", running_var.len(), c),
        ],
    );
    let count = n * s;
    assert!(
        count >= 2,
        "batchnorm_forward_train: n·s = {count}, but training needs more than one value per channel"
    );
    let mf = T::from_f64(count as f64);
    let eps = T::from_f64(eps);
    let momentum = T::from_f64(momentum);
    let keep = T::one() - momentum;
    for ch in 0..c {
        let moments = channel_moments(count, |m| x[index(c, s, ch, m)]);
        let mean = moments.mean;
        let inv_std = T::one() / (moments.m2 / mf + eps).sqrt();
        for m in 0..count {
            let i = index(c, s, ch, m);
            y[i] = gamma[ch] * ((x[i] - mean) * inv_std) + beta[ch];
        }
        save_mean[ch] = mean;
        save_invstd[ch] = inv_std;
        let unbiased = moments.m2 / (mf - T::one());
        running_mean[ch] = keep * running_mean[ch] + momentum * mean;
        running_var[ch] = keep * running_var[ch] + momentum * unbiased;
    }
}

/// Evaluation-mode forward: y = γ·(x − running_mean)/sqrt(running_var + eps) + β.
/// x, y: [n, c, s]; the rest [c].
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward_eval<T: Element>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    running_mean: &[T],
    running_var: &[T],
    y: &mut [T],
    n: usize,
    c: usize,
    s: usize,
    eps: f64,
) {
    let len = n * c * s;
    check(
        "batchnorm_forward_eval",
        n,
        c,
        s,
        &[
            ("x", x.len(), len),
            ("y", y.len(), len),
            ("gamma", gamma.len(), c),
            ("beta", beta.len(), c),
            ("running_mean", running_mean.len(), c),
            ("running_var", running_var.len(), c),
        ],
    );
    if s == 0 {
        return;
    }
    let eps = T::from_f64(eps);
    for (i, (yi, &xi)) in y[..len].iter_mut().zip(&x[..len]).enumerate() {
        let ch = (i / s) % c;
        let inv_std = T::one() / (running_var[ch] + eps).sqrt();
        *yi = gamma[ch] * ((xi - running_mean[ch]) * inv_std) + beta[ch];
    }
}

/// Training-mode backward from the saved mean and inv_std. x, dy, dx: [n, c, s]; gamma,
/// save_mean, save_invstd, dgamma, dbeta: [c]. dx is overwritten; dγ and dβ are
/// overwritten, or added to when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward<T: Element>(
    x: &[T],
    gamma: &[T],
    dy: &[T],
    save_mean: &[T],
    save_invstd: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    n: usize,
    c: usize,
    s: usize,
    accumulate: bool,
) {
    let len = n * c * s;
    check(
        "batchnorm_backward",
        n,
        c,
        s,
        &[
            ("x", x.len(), len),
            ("dy", dy.len(), len),
            ("dx", dx.len(), len),
            ("gamma", gamma.len(), c),
            ("save_mean", save_mean.len(), c),
            ("save_invstd", save_invstd.len(), c),
            ("dgamma", dgamma.len(), c),
            ("dbeta", dbeta.len(), c),
        ],
    );
    let count = n * s;
    let mf = T::from_f64(count as f64);
    for ch in 0..c {
        let (mean, inv_std) = (save_mean[ch], save_invstd[ch]);
        let xhat = |i: usize| (x[i] - mean) * inv_std;
        let (sum_dy, sum_dy_xhat) = channel_sums(count, |m| {
            let i = index(c, s, ch, m);
            (dy[i], dy[i] * xhat(i))
        });
        let k = gamma[ch] * inv_std / mf;
        for m in 0..count {
            let i = index(c, s, ch, m);
            dx[i] = k * (mf * dy[i] - sum_dy - xhat(i) * sum_dy_xhat);
        }
        if accumulate {
            dgamma[ch] = dgamma[ch] + sum_dy_xhat;
            dbeta[ch] = dbeta[ch] + sum_dy;
        } else {
            dgamma[ch] = sum_dy_xhat;
            dbeta[ch] = sum_dy;
        }
    }
}
