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
//!
//! Lane t of a run folds m = lo + t, lo + t + WG, … in order. The twin takes a run in rounds
//! of WG consecutive values (no division per value to find them), every lane folding its
//! value of the round, read in place from the one or more rows the round spans: each lane
//! sees the same values in the same order as alone, but the lanes' independent chains (a
//! Welford update waits on its division) overlap and compile to SIMD. A channel's rows lie
//! c·s values apart, so the reductions ask for the rows ahead (cpu/prefetch.rs). Channels
//! reduce in parallel (rayon), then the element-wise passes run in parallel over samples;
//! neither changes a result.

use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::activation::{FusedActivation, activation_forward_serial};
use crate::cpu::prefetch::{prefetch_lines, rows_ahead};
use crate::cpu::streaming::{STAGE, Streamer};
use crate::ops::batchnorm::runs;

/// Invocations per workgroup of batchnorm.wgsl and layernorm.wgsl, whose reduction orders
/// this file reproduces.
pub const WG: usize = crate::ops::batchnorm::WG;

/// lanes[t] = op(lanes[t], lanes[t + stride]) for stride = WG/2, …, 1: the shaders' tree.
#[inline(always)]
pub(crate) fn tree<V: Copy>(lanes: &mut [V; WG], op: impl Fn(V, V) -> V) -> V {
    tree_n(lanes, WG, op)
}

/// `tree` over lanes 0 .. n only (the others hold the empty value): the levels with stride
/// ≥ n pair a lane with an empty one, so the tree starts at stride n.next_power_of_two()/2,
/// as the shaders' `workgroup_*_n` do.
#[inline(always)]
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

    /// Welford's update with one more value (`MomentLanes::push` per lane).
    #[cfg(test)]
    fn push(&mut self, v: T) {
        self.n = self.n + T::one();
        let d = v - self.mean;
        self.mean = self.mean + d / self.n;
        self.m2 = self.m2 + d * (v - self.mean);
    }

    /// The moments of the union of two disjoint sets (Chan, Golub & LeVeque 1979).
    fn combine(a: Self, b: Self) -> Self {
        if a.n + b.n == T::zero() {
            return Self::zero();
        }
        Self::combine_unchecked(a, b)
    }

    /// `combine` of sets not both empty (of two empty ones, a mean and M2 of NaN).
    #[inline(always)]
    fn combine_unchecked(a: Self, b: Self) -> Self {
        let n = a.n + b.n;
        let d = b.mean - a.mean;
        let wb = b.n / n;
        Moments {
            n,
            mean: a.mean + d * wb,
            m2: a.m2 + b.m2 + d * d * a.n * wb,
        }
    }
}

/// WG lanes of Welford moments, one array per field so that a round vectorizes.
struct MomentLanes<T> {
    n: [T; WG],
    mean: [T; WG],
    m2: [T; WG],
}

impl<T: Element> MomentLanes<T> {
    fn new() -> Self {
        MomentLanes {
            n: [T::zero(); WG],
            mean: [T::zero(); WG],
            m2: [T::zero(); WG],
        }
    }

    /// Lane t0 + j folds values[j] (`Moments::push`, the same operations).
    #[inline(always)]
    fn push_at(&mut self, t0: usize, values: &[T]) {
        let t1 = t0 + values.len();
        let lanes = self.n[t0..t1]
            .iter_mut()
            .zip(&mut self.mean[t0..t1])
            .zip(&mut self.m2[t0..t1]);
        for (((n, mean), m2), &v) in lanes.zip(values) {
            *n = *n + T::one();
            let d = v - *mean;
            *mean = *mean + d / *n;
            *m2 = *m2 + d * (v - *mean);
        }
    }

    /// The run's moments: the lanes combined by the shaders' tree (`tree`: lane t with lane
    /// t + stride, for stride = WG/2, …, 1), level by level on the lanes' arrays, so that a
    /// level's combinations run side by side in vectors (`Moments::combine`'s operations,
    /// its empty case as a select). As a tree of structs, one combination at a time, each
    /// waiting on its division, this took 0.7 % of a resnet-20 step.
    #[inline(always)]
    fn combine(&self) -> Moments<T> {
        let (mut n, mut mean, mut m2) = (self.n, self.mean, self.m2);
        let mut stride = WG / 2;
        while stride > 0 {
            let (n_lo, n_hi) = n.split_at_mut(stride);
            let (mean_lo, mean_hi) = mean.split_at_mut(stride);
            let (m2_lo, m2_hi) = m2.split_at_mut(stride);
            let lo = n_lo
                .iter_mut()
                .zip(mean_lo.iter_mut())
                .zip(m2_lo.iter_mut());
            let hi = n_hi.iter().zip(mean_hi.iter()).zip(m2_hi.iter());
            for (((na, ma), sa), ((&nb, &mb), &sb)) in lo.zip(hi) {
                let a = Moments {
                    n: *na,
                    mean: *ma,
                    m2: *sa,
                };
                let b = Moments {
                    n: nb,
                    mean: mb,
                    m2: sb,
                };
                let c = Moments::combine_unchecked(a, b);
                let empty = c.n == T::zero();
                *na = c.n;
                *ma = if empty { T::zero() } else { c.mean };
                *sa = if empty { T::zero() } else { c.m2 };
            }
            stride /= 2;
        }
        Moments {
            n: n[0],
            mean: mean[0],
            m2: m2[0],
        }
    }
}

/// The pieces of values m0 .. m0 + len of channel ch of x[n, c, s] (m = ni·s + si) as they
/// lie in its rows, in order: `f(t, at, take)` for values m0 + t .. m0 + t + take, which
/// are x[at .. at + take]. A round of a plane of at least WG values is one piece or two;
/// of a smaller plane, one per row it touches. Lanes read their values from the rows in
/// place: copied into a block first (a `memcpy` per piece), the rounds that cross rows
/// had cost the backward's sums more than their arithmetic on 14×14 and 7×7 planes.
#[inline(always)]
fn round_pieces(
    (c, s, ch): (usize, usize, usize),
    m0: usize,
    len: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let (mut ni, mut si) = (m0 / s, m0 % s);
    let mut t = 0;
    while t < len {
        let take = (s - si).min(len - t);
        f(t, (ni * c + ch) * s + si, take);
        t += take;
        ni += 1;
        si = 0;
    }
}

/// The runs of a channel of `count` values, as ranges of m, in order.
fn run_ranges(count: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let (chunks, chunk) = runs(count);
    (0..chunks).map(move |k| k * chunk..((k + 1) * chunk).min(count))
}

/// The rounds of a run: (first m, values), WG values each but the last.
fn rounds(run: std::ops::Range<usize>) -> impl Iterator<Item = (usize, usize)> {
    run.clone()
        .step_by(WG)
        .map(move |m0| (m0, (run.end - m0).min(WG)))
}

multiversion! {
    /// The moments of channel ch of x[n, c, s] in the forward passes' order.
    fn channel_moments<T> = channel_moments_kernel(x: &[T], c: usize, s: usize, ch: usize) -> Moments<T>;
}

#[inline(always)]
fn channel_moments_kernel<T: Element>(x: &[T], c: usize, s: usize, ch: usize) -> Moments<T> {
    let count = x.len() / c;
    // The same channel's values some rows on (cpu/prefetch.rs).
    let ahead = rows_ahead(s) * c * s;
    let mut parts = [Moments::zero(); WG];
    let mut chunks = 0;
    for (part, run) in parts.iter_mut().zip(run_ranges(count)) {
        let mut lanes = MomentLanes::new();
        for (m0, len) in rounds(run) {
            round_pieces((c, s, ch), m0, len, |t, at, take| {
                prefetch_lines(x.as_ptr().wrapping_add(at + ahead), take);
                lanes.push_at(t, &x[at..at + take]);
            });
        }
        *part = lanes.combine();
        chunks += 1;
    }
    tree_n(&mut parts, chunks, Moments::combine)
}

multiversion! {
    /// (Σ dy, Σ dy·x̂) of channel ch, x̂ = (x − mean)·inv_std, in the backward passes' order.
    fn channel_sums<T> = channel_sums_kernel(
        x: &[T],
        dy: &[T],
        c: usize,
        s: usize,
        ch: usize,
        mean: T,
        inv_std: T,
    ) -> (T, T);
}

#[inline(always)]
fn channel_sums_kernel<T: Element>(
    x: &[T],
    dy: &[T],
    c: usize,
    s: usize,
    ch: usize,
    mean: T,
    inv_std: T,
) -> (T, T) {
    let count = x.len() / c;
    // The same channel's values some rows on (cpu/prefetch.rs).
    let ahead = rows_ahead(s) * c * s;
    let add = |a: (T, T), b: (T, T)| (a.0 + b.0, a.1 + b.1);
    let mut parts = [(T::zero(), T::zero()); WG];
    let mut chunks = 0;
    for (part, run) in parts.iter_mut().zip(run_ranges(count)) {
        // Lane t's two sums, one array each (so that a round vectorizes).
        let (mut sum_dy, mut sum_dy_xhat) = ([T::zero(); WG], [T::zero(); WG]);
        for (m0, len) in rounds(run) {
            round_pieces((c, s, ch), m0, len, |t, at, take| {
                prefetch_lines(x.as_ptr().wrapping_add(at + ahead), take);
                prefetch_lines(dy.as_ptr().wrapping_add(at + ahead), take);
                let lanes = sum_dy[t..t + take]
                    .iter_mut()
                    .zip(&mut sum_dy_xhat[t..t + take]);
                let values = x[at..at + take].iter().zip(&dy[at..at + take]);
                for ((a, b), (&xv, &g)) in lanes.zip(values) {
                    *a = *a + g;
                    *b = *b + g * ((xv - mean) * inv_std);
                }
            });
        }
        // The pairs' tree, one array at a time (the same sums): a level's additions run
        // side by side in vectors.
        let plus = |a: T, b: T| a + b;
        *part = (tree(&mut sum_dy, plus), tree(&mut sum_dy_xhat, plus));
        chunks += 1;
    }
    tree_n(&mut parts, chunks, add)
}

/// Elements below which an element-wise pass stays on one thread.
const PAR_ELEMENTS: usize = 1 << 15;

/// `f(ni, ch, row)` for the rows of s values (sample ni, channel ch) of t[n, c, s] whose
/// channel lies in `channels`, samples split across rayon's threads in tasks of at least
/// PAR_ELEMENTS values.
fn for_each_row<T: Element>(
    t: &mut [T],
    c: usize,
    s: usize,
    channels: std::ops::Range<usize>,
    f: impl Fn(usize, usize, &mut [T]) + Sync,
) {
    let sample = c * s;
    if sample == 0 || channels.is_empty() {
        return;
    }
    let per_task = PAR_ELEMENTS.div_ceil(channels.len() * s);
    t.par_chunks_mut(per_task * sample)
        .enumerate()
        .for_each(|(task, samples)| {
            let first = task * per_task;
            for (i, values) in samples.chunks_mut(sample).enumerate() {
                for ch in channels.clone() {
                    f(first + i, ch, &mut values[ch * s..(ch + 1) * s]);
                }
            }
        });
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
/// With `act`, also z = f(y), row by row as y is written (a fused activation forward, bit
/// for bit the unfused one), and y only where `act.write_y`.
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
    act: Option<FusedActivation<'_, T>>,
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
    let x = &x[..len];
    let mf = T::from_f64(count as f64);
    let eps = T::from_f64(eps);
    let momentum = T::from_f64(momentum);
    let keep = T::one() - momentum;
    save_mean[..c]
        .par_iter_mut()
        .zip(&mut save_invstd[..c])
        .zip(&mut running_mean[..c])
        .zip(&mut running_var[..c])
        .enumerate()
        .for_each(|(ch, (((mean_out, inv_std_out), rm), rv))| {
            let moments = channel_moments(x, c, s, ch);
            let mean = moments.mean;
            *mean_out = mean;
            *inv_std_out = T::one() / (moments.m2 / mf + eps).sqrt();
            let unbiased = moments.m2 / (mf - T::one());
            *rm = keep * *rm + momentum * mean;
            *rv = keep * *rv + momentum * unbiased;
        });
    let (save_mean, save_invstd) = (&*save_mean, &*save_invstd);
    for_each_row_then(&mut y[..len], act, c, s, |ni, ch, si, out| {
        let at = (ni * c + ch) * s + si;
        let affine = [gamma[ch], save_mean[ch], save_invstd[ch], beta[ch]];
        normalize_row(out, &x[at..at + out.len()], affine);
    });
}

/// `f(ni, ch, si, out)` writes values si .. si + out.len() of the row (sample ni, channel
/// ch) of t[n, c, s], for every row, samples split across rayon's threads as in
/// `for_each_row`. With `act`, each block of values is written into a staging block
/// first, z = f(values) is written from there, and the values go to t past the caches
/// (cpu/streaming.rs): t is the pre-activation, which the activation's backward reads
/// next, long after. Where `act.write_y` is false, nothing reads t, and it is not
/// written at all. z is `activation_forward`'s values, bit for bit.
fn for_each_row_then<T: Element>(
    t: &mut [T],
    act: Option<FusedActivation<'_, T>>,
    c: usize,
    s: usize,
    f: impl Fn(usize, usize, usize, &mut [T]) + Sync,
) {
    let Some(FusedActivation { act, z, write_y }) = act else {
        for_each_row(t, c, s, 0..c, |ni, ch, row| f(ni, ch, 0, row));
        return;
    };
    let sample = c * s;
    if sample == 0 {
        return;
    }
    assert!(
        z.len() >= t.len(),
        "batch norm: z has {} elements, y {}",
        z.len(),
        t.len()
    );
    let per_task = PAR_ELEMENTS.div_ceil(sample);
    let len = t.len();
    t.par_chunks_mut(per_task * sample)
        .zip(z[..len].par_chunks_mut(per_task * sample))
        .enumerate()
        .for_each(|(task, (samples, zs))| {
            let first = task * per_task;
            let mut streamer = Streamer::new();
            let mut stage = [T::zero(); STAGE];
            // The staging block holds samples[start .. start + filled]: rows follow each
            // other in memory, so the pieces of consecutive rows fill it in order.
            let (mut start, mut filled) = (0, 0);
            for r in 0..samples.len() / s {
                for si in (0..s).step_by(STAGE) {
                    let take = (s - si).min(STAGE);
                    if filled + take > STAGE {
                        if write_y {
                            streamer.write(&stage[..filled], &mut samples[start..start + filled]);
                        }
                        (start, filled) = (start + filled, 0);
                    }
                    let piece = &mut stage[filled..filled + take];
                    f(first + r / c, r % c, si, piece);
                    let at = r * s + si;
                    activation_forward_serial(act, piece, &mut zs[at..at + take]);
                    filled += take;
                }
            }
            if write_y {
                streamer.write(&stage[..filled], &mut samples[start..start + filled]);
            }
        });
}

multiversion! {
    /// y = γ·((x − mean)·inv_std) + β along a row, [γ, mean, inv_std, β] = `affine`.
    fn normalize_row<T> = normalize_row_kernel(y: &mut [T], x: &[T], affine: [T; 4]) -> ();
}

#[inline(always)]
fn normalize_row_kernel<T: Element>(y: &mut [T], x: &[T], [gamma, mean, inv_std, beta]: [T; 4]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = gamma * ((xi - mean) * inv_std) + beta;
    }
}

/// Evaluation-mode forward: y = γ·(x − running_mean)/sqrt(running_var + eps) + β.
/// x, y: [n, c, s]; the rest [c]. `act` as in `batchnorm_forward_train`.
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
    act: Option<FusedActivation<'_, T>>,
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
    let eps = T::from_f64(eps);
    for_each_row_then(&mut y[..len], act, c, s, |ni, ch, si, out| {
        let inv_std = T::one() / (running_var[ch] + eps).sqrt();
        let at = (ni * c + ch) * s + si;
        let x = &x[at..at + out.len()];
        for (yi, &xi) in out.iter_mut().zip(x) {
            *yi = gamma[ch] * ((xi - running_mean[ch]) * inv_std) + beta[ch];
        }
    });
}

/// Channels whose sums the backward holds at a time (on the stack: no allocation).
const SUM_GROUP: usize = 64;

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
    if len == 0 {
        return;
    }
    let (x, dy) = (&x[..len], &dy[..len]);
    let mf = T::from_f64((n * s) as f64);
    // Channels in groups whose sums fit on the stack: the group's sums in parallel over its
    // channels, then its part of every sample's dx in parallel over samples.
    for g0 in (0..c).step_by(SUM_GROUP) {
        let g1 = (g0 + SUM_GROUP).min(c);
        let mut sums = [(T::zero(), T::zero()); SUM_GROUP];
        sums[..g1 - g0]
            .par_iter_mut()
            .enumerate()
            .for_each(|(i, sum)| {
                let ch = g0 + i;
                *sum = channel_sums(x, dy, c, s, ch, save_mean[ch], save_invstd[ch]);
            });
        let sums = &sums;
        for_each_row(&mut dx[..len], c, s, g0..g1, |ni, ch, row| {
            let (sum_dy, sum_dy_xhat) = sums[ch - g0];
            let (mean, inv_std) = (save_mean[ch], save_invstd[ch]);
            let k = gamma[ch] * inv_std / mf;
            let at = (ni * c + ch) * s;
            let terms = [mean, inv_std, k, mf, sum_dy, sum_dy_xhat];
            input_gradient_row(row, &x[at..at + s], &dy[at..at + s], terms);
        });
        for (j, &(sum_dy, sum_dy_xhat)) in sums[..g1 - g0].iter().enumerate() {
            let ch = g0 + j;
            if accumulate {
                dgamma[ch] = dgamma[ch] + sum_dy_xhat;
                dbeta[ch] = dbeta[ch] + sum_dy;
            } else {
                dgamma[ch] = sum_dy_xhat;
                dbeta[ch] = sum_dy;
            }
        }
    }
}

multiversion! {
    /// dx = k·(M·dy − Σdy − x̂·Σdy·x̂) along a row, x̂ = (x − mean)·inv_std, [mean, inv_std,
    /// k, M, Σdy, Σdy·x̂] = `terms`.
    fn input_gradient_row<T> = input_gradient_row_kernel(
        dx: &mut [T],
        x: &[T],
        dy: &[T],
        terms: [T; 6],
    ) -> ();
}

#[inline(always)]
fn input_gradient_row_kernel<T: Element>(
    dx: &mut [T],
    x: &[T],
    dy: &[T],
    [mean, inv_std, k, mf, sum_dy, sum_dy_xhat]: [T; 6],
) {
    for (d, (&xv, &g)) in dx.iter_mut().zip(x.iter().zip(dy)) {
        let xhat = (xv - mean) * inv_std;
        *d = k * (mf * g - sum_dy - xhat * sum_dy_xhat);
    }
}

#[cfg(test)]
mod tests {
    //! The twin as it was written first (each lane of a run folded alone, every value's
    //! index divided out of m, one channel at a time), kept as the reference that the
    //! blocked, parallel twin must reproduce bit for bit.
    use super::*;
    use crate::ops::Activation;

    fn reference_index(c: usize, s: usize, ch: usize, m: usize) -> usize {
        let (ni, si) = (m / s, m % s);
        (ni * c + ch) * s + si
    }

    fn reference_reduce<V: Copy>(
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

    /// (y, mean, inv_std, running mean, running var) of the first twin's training forward.
    #[allow(clippy::type_complexity)]
    fn reference_forward<T: Element>(
        x: &[T],
        gamma: &[T],
        beta: &[T],
        (n, c, s): (usize, usize, usize),
        (eps, momentum): (f64, f64),
    ) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
        let count = n * s;
        let mf = T::from_f64(count as f64);
        let (eps, momentum) = (T::from_f64(eps), T::from_f64(momentum));
        let keep = T::one() - momentum;
        let mut y = vec![T::zero(); n * c * s];
        let (mut sm, mut si) = (vec![T::zero(); c], vec![T::zero(); c]);
        let (mut rm, mut rv) = (vec![T::zero(); c], vec![T::one(); c]);
        for ch in 0..c {
            let push = |mut acc: Moments<T>, m: usize| {
                acc.push(x[reference_index(c, s, ch, m)]);
                acc
            };
            let moments = reference_reduce(count, Moments::zero(), push, Moments::combine);
            let mean = moments.mean;
            let inv_std = T::one() / (moments.m2 / mf + eps).sqrt();
            for m in 0..count {
                let i = reference_index(c, s, ch, m);
                y[i] = gamma[ch] * ((x[i] - mean) * inv_std) + beta[ch];
            }
            sm[ch] = mean;
            si[ch] = inv_std;
            rm[ch] = keep * rm[ch] + momentum * mean;
            rv[ch] = keep * rv[ch] + momentum * (moments.m2 / (mf - T::one()));
        }
        (y, sm, si, rm, rv)
    }

    /// (dx, dγ, dβ) of the first twin's backward, dγ and dβ added to `prior`.
    #[allow(clippy::too_many_arguments)]
    fn reference_backward<T: Element>(
        x: &[T],
        gamma: &[T],
        dy: &[T],
        mean: &[T],
        inv_std: &[T],
        (n, c, s): (usize, usize, usize),
        prior: T,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let count = n * s;
        let mf = T::from_f64(count as f64);
        let mut dx = vec![T::zero(); n * c * s];
        let (mut dg, mut db) = (vec![prior; c], vec![prior; c]);
        for ch in 0..c {
            let xhat = |i: usize| (x[i] - mean[ch]) * inv_std[ch];
            let add = |a: (T, T), b: (T, T)| (a.0 + b.0, a.1 + b.1);
            let push = |acc: (T, T), m: usize| {
                let i = reference_index(c, s, ch, m);
                add(acc, (dy[i], dy[i] * xhat(i)))
            };
            let (sum_dy, sum_dy_xhat) = reference_reduce(count, (T::zero(), T::zero()), push, add);
            let k = gamma[ch] * inv_std[ch] / mf;
            for m in 0..count {
                let i = reference_index(c, s, ch, m);
                dx[i] = k * (mf * dy[i] - sum_dy - xhat(i) * sum_dy_xhat);
            }
            dg[ch] = dg[ch] + sum_dy_xhat;
            db[ch] = db[ch] + sum_dy;
        }
        (dx, dg, db)
    }

    fn values<T: Element>(rng: &mut crate::rng::Rng, len: usize, offset: f64) -> Vec<T> {
        (0..len)
            .map(|_| T::from_f64(offset + 3.0 * (rng.uniform() - 0.5)))
            .collect()
    }

    fn same_bits<T: Element>(what: &str, got: &[T], want: &[T]) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            // Bits through f64: both f32 and f64 convert exactly.
            assert!(
                Element::to_f64(*g).to_bits() == Element::to_f64(*w).to_bits(),
                "{what}[{i}]: {g:?}, want {w:?}"
            );
        }
    }

    fn check_shape<T: Element>(n: usize, c: usize, s: usize, seed: u64) {
        let mut rng = crate::rng::Rng::new(seed);
        let len = n * c * s;
        let x = values::<T>(&mut rng, len, 40.0);
        let dy = values::<T>(&mut rng, len, 0.0);
        let gamma = values::<T>(&mut rng, c, 1.0);
        let beta = values::<T>(&mut rng, c, 0.0);
        let shape = (n, c, s);
        let what = |t: &str| format!("{} {t}, n {n} c {c} s {s}", T::NAME);

        let (y, sm, si, rm, rv) = reference_forward(&x, &gamma, &beta, shape, (1e-5, 0.1));
        let mut got_y = vec![T::zero(); len];
        let (mut got_sm, mut got_si) = (vec![T::zero(); c], vec![T::zero(); c]);
        let (mut got_rm, mut got_rv) = (vec![T::zero(); c], vec![T::one(); c]);
        batchnorm_forward_train(
            &x,
            &gamma,
            &beta,
            &mut got_y,
            &mut got_sm,
            &mut got_si,
            &mut got_rm,
            &mut got_rv,
            n,
            c,
            s,
            1e-5,
            0.1,
            None,
        );
        same_bits(&what("y"), &got_y, &y);
        same_bits(&what("mean"), &got_sm, &sm);
        same_bits(&what("inv_std"), &got_si, &si);
        same_bits(&what("running mean"), &got_rm, &rm);
        same_bits(&what("running var"), &got_rv, &rv);

        for accumulate in [false, true] {
            let prior = if accumulate {
                T::from_f64(0.25)
            } else {
                T::zero()
            };
            let (dx, dg, db) = reference_backward(&x, &gamma, &dy, &sm, &si, shape, prior);
            let mut got_dx = vec![T::zero(); len];
            let (mut got_dg, mut got_db) = (vec![prior; c], vec![prior; c]);
            batchnorm_backward(
                &x,
                &gamma,
                &dy,
                &sm,
                &si,
                &mut got_dx,
                &mut got_dg,
                &mut got_db,
                n,
                c,
                s,
                accumulate,
            );
            same_bits(&what("dx"), &got_dx, &dx);
            same_bits(&what("dgamma"), &got_dg, &dg);
            same_bits(&what("dbeta"), &got_db, &db);
        }
    }

    /// The blocked, parallel twin gives the first twin's bits: BatchNorm1d and 2d shapes,
    /// channels of fewer values than a round, rows shorter and longer than a round and not
    /// dividing it, one run and many (a partial last run), more channels than a sum group.
    #[test]
    fn blocked_twin_gives_the_bits_of_the_lane_by_lane_twin() {
        let shapes = [
            (2, 1, 1),
            (3, 5, 1),
            (128, 70, 1),
            (4, 3, 7),
            (5, 3, 333),
            (2, 2, 4100),
            (16, 2, 1024),
            (1, 2, 70_000),
            (3, 130, 9),
            // Two runs of rows shorter than a round (resnet-20's last stage on 28×28).
            (130, 2, 49),
            // Rows of many rounds, one of them ragged.
            (2, 3, 40_000),
        ];
        for (seed, &(n, c, s)) in shapes.iter().enumerate() {
            check_shape::<f32>(n, c, s, seed as u64);
            check_shape::<f64>(n, c, s, 100 + seed as u64);
        }
    }

    /// A BatchNorm forward that writes its activation too (a fused activation forward) gives
    /// y and z = f(y) bit for bit as the two ops apart, in training and in evaluation, for
    /// every activation, on a batch split across tasks (n·c·s past PAR_ELEMENTS) and one
    /// that is not, with rows shorter than a staging block, whole blocks, and a block and a
    /// part (cpu/streaming.rs).
    #[test]
    fn fused_activation_gives_the_bits_of_the_two_ops() {
        use crate::cpu::activation::activation_forward;
        for &(n, c, s) in &[(3, 2, 5), (5, 8, 1024), (4, 3, 300), (9, 2, 49)] {
            let len = n * c * s;
            let mut rng = crate::rng::Rng::new(7);
            let x = values::<f32>(&mut rng, len, 0.3);
            let gamma = values::<f32>(&mut rng, c, 1.0);
            let beta = values::<f32>(&mut rng, c, 0.0);
            for name in Activation::ALL_NAMES {
                let act = Activation::parse(name).unwrap();
                for train in [true, false] {
                    // fused: None, the ops apart; Some(write_y), one pass.
                    let run = |fused: Option<bool>| {
                        let mut y = vec![f32::NAN; len];
                        let mut z = vec![f32::NAN; len];
                        let (mut m, mut is) = (vec![0f32; c], vec![0f32; c]);
                        let (mut rm, mut rv) = (vec![0.1f32; c], vec![0.9f32; c]);
                        let act_z = fused.map(|write_y| FusedActivation {
                            act,
                            z: &mut z[..],
                            write_y,
                        });
                        if train {
                            batchnorm_forward_train(
                                &x, &gamma, &beta, &mut y, &mut m, &mut is, &mut rm, &mut rv, n, c,
                                s, 1e-5, 0.1, act_z,
                            );
                        } else {
                            batchnorm_forward_eval(
                                &x, &gamma, &beta, &rm, &rv, &mut y, n, c, s, 1e-5, act_z,
                            );
                        }
                        if fused.is_none() {
                            activation_forward(act, &y, &mut z);
                        }
                        (y, z)
                    };
                    let ((y0, z0), (y1, z1)) = (run(None), run(Some(true)));
                    let what = format!("{name}, train {train}, n {n} c {c} s {s}");
                    same_bits(&format!("{what}: y"), &y1, &y0);
                    // Told not to write y, the pass leaves it as it was.
                    let (y2, z2) = run(Some(false));
                    same_bits(&format!("{what}: y unwritten"), &y2, &vec![f32::NAN; len]);
                    same_bits(&format!("{what}: z without y"), &z2, &z0);
                    same_bits(&format!("{what}: z"), &z1, &z0);
                }
            }
        }
    }
}
