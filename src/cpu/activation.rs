//! CPU twin of shaders/activation.wgsl: element-wise activations and their derivatives.
//!
//! The same stable formulas as the shader (sigmoid without overflow, softplus with PyTorch's
//! threshold of 20, ReLU's derivative 0 at 0), evaluated in T. Where Rust's `std` has an
//! accurate function (tanh, ln_1p, exp_m1) the twin uses it, so it is the reference the
//! shader's hand-written versions are measured against.
//!
//! GELU needs erf, which neither WGSL nor `std` has. The shader uses a Chebyshev fit
//! (relative error < 1.2e−7, fine in f32). The twin instead evaluates Φ in f64 to ~1e−16
//! (a series below 3, a continued fraction above), for two reasons: it is PyTorch's exact
//! GELU (approximate='none') to the last f32 bit, and the f64 finite-difference check of
//! the backward Φ(x) + x·φ(x) then tests the derivation, not the fit: a 1e−7 fit error
//! would differentiate into ~1e−6 discrepancies and force a useless tolerance.
//!
//! The slices the executor runs (`activation_forward`, `activation_backward`) take the
//! smooth activations in f32 through `vector_math`'s branch-free functions instead, compiled
//! for AVX-512 or AVX2 where the CPU has them: within 1 to 5 ulp of these formulas (the
//! bounds are that module's), and 9 (σ) to 40 (GELU) times faster than calling them element
//! by element (BENCHMARKS.md). In f64 (finite-difference checks) every slice runs these
//! formulas.
//!
//! Gradient convention: activation gradients are overwritten (dx =), never accumulated.

use std::any::TypeId;

use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::vector_math;
use crate::ops::Activation;
use crate::ops::activation::{SELU_ALPHA, SELU_SCALE};

/// PyTorch's softplus threshold (beta = 1): above it softplus(x) = x and its derivative 1.
pub const SOFTPLUS_THRESHOLD: f64 = 20.0;

/// Slices longer than this are split across rayon's threads (results do not depend on the
/// split: every element is computed on its own).
const PAR_CHUNK: usize = 1 << 14;

/// y = f(x), element-wise.
pub fn activation_forward<T: Element>(act: Activation, x: &[T], y: &mut [T]) {
    forward_split(act, x, y, true);
}

/// The activation that a BatchNorm's or an Add's pass applies to the values it writes (a
/// fused activation forward): z = f(y), bit for bit `activation_forward`'s values.
pub struct FusedActivation<'a, T> {
    pub act: Activation,
    pub z: &'a mut [T],
    /// Whether the pass writes y as well. The CPU executor leaves y unwritten where no op
    /// reads it but the activation itself (a ReLU, whose backward reads z).
    pub write_y: bool,
}

/// `activation_forward` on the calling thread: for a pass that applies the activation to the
/// rows it has just written (a BatchNorm's or an Add's, fused), the same values bit for bit.
pub fn activation_forward_serial<T: Element>(act: Activation, x: &[T], y: &mut [T]) {
    forward_split(act, x, y, false);
}

/// y = f(x), split across rayon's threads for long slices where `parallel`.
fn forward_split<T: Element>(act: Activation, x: &[T], y: &mut [T], parallel: bool) {
    assert_eq!(
        x.len(),
        y.len(),
        "activation_forward: x and y lengths differ"
    );
    let param = T::from_f64(act.param() as f64);
    // The piecewise-linear activations get a loop of their own, with the activation fixed
    // outside it: matched per element, the loop stays scalar and branches on every input's
    // sign, mispredicted about half the time on a layer's pre-activations; fixed, the
    // branch becomes a vector select (same formula, same bits).
    match act {
        Activation::Identity => y.copy_from_slice(x),
        Activation::Relu => map_forward(x, y, parallel, relu),
        Activation::LeakyRelu { .. } => map_forward(x, y, parallel, |v| leaky_relu(v, param)),
        _ => match (as_f32(x), as_f32_mut(y)) {
            (Some(x), Some(y)) => {
                let param = act.param();
                let run = |x: &[f32], y: &mut [f32]| smooth_forward_f32(act, param, x, y);
                if parallel && x.len() > PAR_CHUNK {
                    y.par_chunks_mut(PAR_CHUNK)
                        .zip(x.par_chunks(PAR_CHUNK))
                        .for_each(|(y, x)| run(x, y));
                } else {
                    run(x, y);
                }
            }
            _ => map_forward(x, y, parallel, |v| forward_one(act, param, v)),
        },
    }
}

/// y = f(x) through `f`, split across rayon's threads for long slices where `parallel`.
#[inline(always)]
fn map_forward<T: Element>(x: &[T], y: &mut [T], parallel: bool, f: impl Fn(T) -> T + Sync) {
    let run = |x: &[T], y: &mut [T]| {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = f(v);
        }
    };
    if parallel && x.len() > PAR_CHUNK {
        y.par_chunks_mut(PAR_CHUNK)
            .zip(x.par_chunks(PAR_CHUNK))
            .for_each(|(y, x)| run(x, y));
    } else {
        run(x, y);
    }
}

/// dx = dy ⊙ f'(x), given the input x and the output y = f(x). Overwrites dx.
pub fn activation_backward<T: Element>(act: Activation, x: &[T], y: &[T], dy: &[T], dx: &mut [T]) {
    let n = dx.len();
    assert!(
        x.len() == n && y.len() == n && dy.len() == n,
        "activation_backward: lengths differ (x {}, y {}, dy {}, dx {n})",
        x.len(),
        y.len(),
        dy.len()
    );
    let param = T::from_f64(act.param() as f64);
    // As in the forward: the piecewise-linear activations loop with the activation fixed.
    match act {
        Activation::Identity => map_backward(x, y, dy, dx, |_, _, dy| dy * T::one()),
        // ReLU's derivative from its output: y = max(x, 0) is > 0 exactly where x is, and
        // NaN where x is, so `relu_backward(y, ·)` is `relu_backward(x, ·)` bit for bit.
        // y is the tensor the next layer has just read in the backward (its weight
        // gradient), so it is in cache, where x (the pre-activation) is not: a BatchNorm
        // or an Add that applies the ReLU itself writes x past the caches, or not at all
        // where nothing else reads it (cpu/executor.rs).
        Activation::Relu => map_backward(x, y, dy, dx, |_, y, dy| relu_backward(y, dy)),
        Activation::LeakyRelu { .. } => {
            map_backward(x, y, dy, dx, |x, _, dy| dy * leaky_relu_slope(x, param))
        }
        _ => match (as_f32(x), as_f32(y), as_f32(dy), as_f32_mut(dx)) {
            (Some(x), Some(y), Some(dy), Some(dx)) => {
                let param = act.param();
                let run = |base: usize, dx: &mut [f32]| {
                    let end = base + dx.len();
                    smooth_backward_f32(
                        act,
                        param,
                        &x[base..end],
                        &y[base..end],
                        &dy[base..end],
                        dx,
                    )
                };
                if dx.len() > PAR_CHUNK {
                    dx.par_chunks_mut(PAR_CHUNK)
                        .enumerate()
                        .for_each(|(c, dx)| run(c * PAR_CHUNK, dx));
                } else {
                    run(0, dx);
                }
            }
            _ => map_backward(x, y, dy, dx, |x, y, dy| backward_one(act, param, x, y, dy)),
        },
    }
}

/// The slice as f32, where T is f32.
fn as_f32<T: Element>(x: &[T]) -> Option<&[f32]> {
    (TypeId::of::<T>() == TypeId::of::<f32>())
        // SAFETY: T is f32 (checked just above), so the slice is a slice of f32.
        .then(|| unsafe { std::slice::from_raw_parts(x.as_ptr() as *const f32, x.len()) })
}

/// The slice as f32, where T is f32.
fn as_f32_mut<T: Element>(x: &mut [T]) -> Option<&mut [f32]> {
    (TypeId::of::<T>() == TypeId::of::<f32>())
        // SAFETY: T is f32 (checked just above), so the slice is a slice of f32, borrowed
        // mutably for as long as x is.
        .then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr() as *mut f32, x.len()) })
}

multiversion! {
    /// y = f(x) for a smooth activation (not Identity, ReLU or leaky ReLU) in f32.
    fn smooth_forward_f32 = smooth_forward_kernel(act: Activation, param: f32, x: &[f32], y: &mut [f32]) -> ();
}

multiversion! {
    /// dx = dy·f'(x) for a smooth activation (not Identity, ReLU or leaky ReLU) in f32.
    fn smooth_backward_f32 = smooth_backward_kernel(
        act: Activation,
        param: f32,
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) -> ();
}

/// A smooth activation on f32 through `vector_math`: its value and its derivative (from x
/// or y = f(x), as `backward_one` forms it). Each is a method of a plain type (not a
/// closure), so that it is inlined into the loops compiled per instruction set.
trait Smooth: Copy {
    fn value(self, x: f32) -> f32;
    fn derivative(self, x: f32, y: f32) -> f32;
}

#[derive(Clone, Copy)]
struct Sigmoid;

impl Smooth for Sigmoid {
    #[inline(always)]
    fn value(self, x: f32) -> f32 {
        vector_math::sigmoid(x)
    }
    #[inline(always)]
    fn derivative(self, _: f32, y: f32) -> f32 {
        y * (1.0 - y)
    }
}

#[derive(Clone, Copy)]
struct Tanh;

impl Smooth for Tanh {
    #[inline(always)]
    fn value(self, x: f32) -> f32 {
        vector_math::tanh(x)
    }
    #[inline(always)]
    fn derivative(self, _: f32, y: f32) -> f32 {
        1.0 - y * y
    }
}

/// ELU and SELU: `linear`·x above 0, `exp`·(eˣ − 1) below (ELU: 1 and α; SELU: λ and λα,
/// the product rounded to f32 first, as `forward_one` has it).
#[derive(Clone, Copy)]
struct ExpLinear {
    linear: f32,
    exp: f32,
}

impl Smooth for ExpLinear {
    #[inline(always)]
    fn value(self, x: f32) -> f32 {
        // eˣ − 1 is only taken of x ≤ 0 (NaN passes, and gives NaN).
        let left = self.exp * vector_math::expm1_nonpositive(f32::select_bits(x > 0.0, 0.0, x));
        f32::select_bits(x > 0.0, self.linear * x, left)
    }
    #[inline(always)]
    fn derivative(self, x: f32, _: f32) -> f32 {
        f32::select_bits(x > 0.0, self.linear, self.exp * vector_math::exp(x))
    }
}

#[derive(Clone, Copy)]
struct Gelu;

impl Smooth for Gelu {
    #[inline(always)]
    fn value(self, x: f32) -> f32 {
        vector_math::gelu(x)
    }
    #[inline(always)]
    fn derivative(self, x: f32, _: f32) -> f32 {
        vector_math::gelu_derivative(x)
    }
}

#[derive(Clone, Copy)]
struct Softplus;

impl Smooth for Softplus {
    #[inline(always)]
    fn value(self, x: f32) -> f32 {
        vector_math::softplus(x, SOFTPLUS_THRESHOLD as f32)
    }
    #[inline(always)]
    fn derivative(self, x: f32, _: f32) -> f32 {
        f32::select_bits(x > SOFTPLUS_THRESHOLD as f32, 1.0, vector_math::sigmoid(x))
    }
}

/// Runs `each` with the `Smooth` type of `act` (not Identity, ReLU or leaky ReLU).
macro_rules! with_smooth {
    ($act:expr, $param:expr, |$f:ident| $each:expr) => {
        match $act {
            Activation::Sigmoid => {
                let $f = Sigmoid;
                $each
            }
            Activation::Tanh => {
                let $f = Tanh;
                $each
            }
            Activation::Elu { .. } => {
                let $f = ExpLinear {
                    linear: 1.0,
                    exp: $param,
                };
                $each
            }
            Activation::Selu => {
                let scale = SELU_SCALE as f32;
                let $f = ExpLinear {
                    linear: scale,
                    exp: scale * SELU_ALPHA as f32,
                };
                $each
            }
            Activation::Gelu => {
                let $f = Gelu;
                $each
            }
            Activation::Softplus => {
                let $f = Softplus;
                $each
            }
            Activation::Identity | Activation::Relu | Activation::LeakyRelu { .. } => {
                unreachable!("{} has a loop of its own", $act.name())
            }
        }
    };
}

/// One loop per activation, each over straight-line code that compiles to vector code.
#[inline(always)]
fn smooth_forward_kernel(act: Activation, param: f32, x: &[f32], y: &mut [f32]) {
    #[inline(always)]
    fn run(f: impl Smooth, x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = f.value(v);
        }
    }
    with_smooth!(act, param, |f| run(f, x, y))
}

/// The backward twin of `smooth_forward_kernel`: dx = dy·f'(x).
#[inline(always)]
fn smooth_backward_kernel(
    act: Activation,
    param: f32,
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    #[inline(always)]
    fn run(f: impl Smooth, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
        let inputs = x.iter().zip(y).zip(dy);
        for (o, ((&x, &y), &dy)) in dx.iter_mut().zip(inputs) {
            *o = dy * f.derivative(x, y);
        }
    }
    with_smooth!(act, param, |f| run(f, x, y, dy, dx))
}

/// dx = f(x, y, dy) element-wise, split across rayon's threads for long slices.
#[inline(always)]
fn map_backward<T: Element>(
    x: &[T],
    y: &[T],
    dy: &[T],
    dx: &mut [T],
    f: impl Fn(T, T, T) -> T + Sync,
) {
    let run = |base: usize, dx: &mut [T]| {
        let end = base + dx.len();
        let inputs = x[base..end].iter().zip(&y[base..end]).zip(&dy[base..end]);
        for (o, ((&x, &y), &dy)) in dx.iter_mut().zip(inputs) {
            *o = f(x, y, dy);
        }
    };
    if dx.len() > PAR_CHUNK {
        dx.par_chunks_mut(PAR_CHUNK)
            .enumerate()
            .for_each(|(c, dx)| run(c * PAR_CHUNK, dx));
    } else {
        run(0, dx);
    }
}

/// max(x, 0), with NaN propagated (`x <= 0` is false for NaN), as in PyTorch.
#[inline(always)]
fn relu<T: Element>(x: T) -> T {
    if x <= T::zero() { T::zero() } else { x }
}

/// x for x > 0, slope·x otherwise.
#[inline(always)]
fn leaky_relu<T: Element>(x: T, slope: T) -> T {
    if x > T::zero() { x } else { slope * x }
}

/// ReLU's backward: x ≤ 0 ? 0 : dy, with derivative 0 at x = 0 (PyTorch's
/// threshold_backward); a select rather than dy·0 so a non-finite dy behind a dead unit
/// stays blocked.
#[inline(always)]
fn relu_backward<T: Element>(x: T, dy: T) -> T {
    if x <= T::zero() { T::zero() } else { dy }
}

/// Leaky ReLU's derivative; PyTorch takes the slope at x = 0.
#[inline(always)]
fn leaky_relu_slope<T: Element>(x: T, slope: T) -> T {
    if x > T::zero() { T::one() } else { slope }
}

/// f(x) for one element.
#[inline]
pub fn forward_one<T: Element>(act: Activation, param: T, x: T) -> T {
    let zero = T::zero();
    match act {
        Activation::Identity => x,
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Relu => relu(x),
        Activation::LeakyRelu { .. } => leaky_relu(x, param),
        Activation::Elu { .. } => {
            if x > zero {
                x
            } else {
                param * x.exp_m1()
            }
        }
        Activation::Selu => {
            let scale = T::from_f64(SELU_SCALE);
            if x > zero {
                scale * x
            } else {
                scale * T::from_f64(SELU_ALPHA) * x.exp_m1()
            }
        }
        Activation::Gelu => T::from_f64(x.to_f64() * normal_cdf(x.to_f64())),
        Activation::Softplus => {
            if x > T::from_f64(SOFTPLUS_THRESHOLD) {
                x
            } else {
                x.max(zero) + (-x.abs()).exp().ln_1p()
            }
        }
    }
}

/// dy·f'(x) for one element, from x and/or y = f(x) (derivations as in the shader).
#[inline]
pub fn backward_one<T: Element>(act: Activation, param: T, x: T, y: T, dy: T) -> T {
    let zero = T::zero();
    let one = T::one();
    let d = match act {
        Activation::Identity => one,
        // y = σ(x): dy/dx = y(1 − y).
        Activation::Sigmoid => y * (one - y),
        // y = tanh x: dy/dx = 1 − y².
        Activation::Tanh => one - y * y,
        Activation::Relu => return relu_backward(x, dy),
        Activation::LeakyRelu { .. } => leaky_relu_slope(x, param),
        // x ≤ 0: y = α(eˣ − 1), dy/dx = α·eˣ (= y + α without the cancellation).
        Activation::Elu { .. } => {
            if x > zero {
                one
            } else {
                param * x.exp()
            }
        }
        // x ≤ 0: y = λα(eˣ − 1), dy/dx = λα·eˣ; x > 0: λ.
        Activation::Selu => {
            let scale = T::from_f64(SELU_SCALE);
            if x > zero {
                scale
            } else {
                scale * T::from_f64(SELU_ALPHA) * x.exp()
            }
        }
        // y = x·Φ(x): dy/dx = Φ(x) + x·φ(x).
        Activation::Gelu => {
            let xf = x.to_f64();
            T::from_f64(normal_cdf(xf) + xf * normal_pdf(xf))
        }
        // y = log(1 + eˣ): dy/dx = σ(x); exactly 1 above the threshold, where y = x.
        Activation::Softplus => {
            if x > T::from_f64(SOFTPLUS_THRESHOLD) {
                one
            } else {
                sigmoid(x)
            }
        }
    };
    dy * d
}

/// σ(x) without overflow: e^−x is only formed for x ≥ 0 and eˣ for x < 0.
#[inline]
pub fn sigmoid<T: Element>(x: T) -> T {
    let one = T::one();
    if x >= T::zero() {
        one / (one + (-x).exp())
    } else {
        let e = x.exp();
        e / (one + e)
    }
}

/// The standard normal density φ(x) = e^(−x²/2)/√(2π).
pub fn normal_pdf(x: f64) -> f64 {
    const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
    INV_SQRT_2PI * (-0.5 * x * x).exp()
}

/// The standard normal CDF Φ(x) = erfc(−x/√2)/2, to ~1e−16 absolute and, in the left tail,
/// to ~1e−15 relative (erfc is evaluated directly there, never as 1 + erf).
pub fn normal_cdf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let e = erfc_nonneg(x.abs() * std::f64::consts::FRAC_1_SQRT_2);
    if x < 0.0 { 0.5 * e } else { 1.0 - 0.5 * e }
}

/// erfc(z) for z ≥ 0.
///
/// Below 3: 1 − erf(z) with erf(z) = (2/√π)·e^(−z²)·Σₙ 2ⁿz^(2n+1)/(1·3·…·(2n+1)), a series
/// of positive terms (no cancellation inside it); 1 − erf then loses at most 4.7 digits at
/// z = 3, leaving ~1e−16 absolute. From 3 on: Laplace's continued fraction
/// erfc(z) = e^(−z²)/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + …)))), evaluated bottom-up at a
/// fixed depth that converges to full f64 precision for z ≥ 3 (checked in the tests).
pub fn erfc_nonneg(z: f64) -> f64 {
    const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;
    if z < 3.0 {
        let z2 = z * z;
        let mut term = z;
        let mut sum = z;
        let mut n = 0.0;
        while term > 1e-17 * sum {
            term *= 2.0 * z2 / (2.0 * n + 3.0);
            sum += term;
            n += 1.0;
        }
        1.0 - FRAC_2_SQRT_PI * (-z2).exp() * sum
    } else {
        if z.is_infinite() {
            return 0.0;
        }
        const DEPTH: u32 = 80;
        let mut f = z;
        for k in (1..=DEPTH).rev() {
            f = z + (k as f64 * 0.5) / f;
        }
        0.5 * FRAC_2_SQRT_PI * (-z * z).exp() / f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Awkward inputs: both zeros, NaN, ±∞, subnormals and values of both signs, long
    /// enough to run split across threads.
    fn awkward(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n)
            .map(|i| match i % 11 {
                0 => 0.0,
                1 => -0.0,
                2 => f32::NAN,
                3 => f32::INFINITY,
                4 => f32::NEG_INFINITY,
                5 => f32::from_bits(1 + (rng.next_u64() % 1000) as u32),
                _ => (rng.uniform() as f32 - 0.5) * 8.0,
            })
            .collect()
    }

    /// Runs each of `acts` through the slices (forward, the serial forward, backward) on
    /// awkward inputs on both sides of PAR_CHUNK, and asserts every element's bits equal
    /// `want(act, x, dy)`'s (y, dx).
    fn assert_slices_give(acts: &[Activation], want: impl Fn(Activation, f32, f32) -> (f32, f32)) {
        for n in [1, 37, PAR_CHUNK + 5] {
            let x = awkward(n, 1);
            let dy = awkward(n, 2);
            for &act in acts {
                let mut y = vec![0.0f32; n];
                activation_forward(act, &x, &mut y);
                let mut serial = vec![0.0f32; n];
                activation_forward_serial(act, &x, &mut serial);
                let mut dx = vec![0.0f32; n];
                activation_backward(act, &x, &y, &dy, &mut dx);
                for i in 0..n {
                    let (want_y, want_dx) = want(act, x[i], dy[i]);
                    let what = format!("{act:?}, n {n}, element {i}: x {}, dy {}", x[i], dy[i]);
                    assert_eq!(y[i].to_bits(), want_y.to_bits(), "forward, {what}");
                    assert_eq!(serial[i].to_bits(), want_y.to_bits(), "serial, {what}");
                    assert_eq!(dx[i].to_bits(), want_dx.to_bits(), "backward, {what}");
                }
            }
        }
    }

    /// The loops with the activation fixed outside them give, bit for bit, what the
    /// per-element formulas give, on every input class and on both sides of PAR_CHUNK.
    #[test]
    fn fixed_activation_loops_give_the_bits_of_the_element_formulas() {
        let acts = [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu { slope: 0.2 },
        ];
        assert_slices_give(&acts, |act, x, dy| {
            let y = forward_one(act, act.param(), x);
            (y, backward_one(act, act.param(), x, y, dy))
        });
        // ReLU propagates NaN forward and blocks a non-finite gradient behind x ≤ 0.
        let mut y = [0.0f32; 3];
        activation_forward(Activation::Relu, &[f32::NAN, -1.0, 0.0], &mut y);
        assert!(y[0].is_nan() && y[1] == 0.0 && y[2] == 0.0);
        let mut dx = [1.0f32; 2];
        let dy = [f32::INFINITY, f32::NAN];
        activation_backward(Activation::Relu, &[-1.0, 0.0], &[0.0, 0.0], &dy, &mut dx);
        assert_eq!(dx, [0.0, 0.0]);
    }

    /// The smooth activations, which run through `vector_math` in f32.
    const SMOOTH: [Activation; 7] = [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Elu { alpha: 1.0 },
        Activation::Elu { alpha: 0.3 },
        Activation::Selu,
        Activation::Gelu,
        Activation::Softplus,
    ];

    /// The f32 slices of the smooth activations (compiled for the widest vectors this CPU
    /// has, split across threads past PAR_CHUNK) give the bits of the same per-element code
    /// run one element at a time as the baseline build compiles it: every build agrees.
    #[test]
    fn smooth_slices_give_the_bits_of_their_element_code_on_every_build() {
        assert_slices_give(&SMOOTH, |act, x, dy| {
            with_smooth!(act, act.param(), |f| {
                let y = f.value(x);
                (y, dy * f.derivative(x, y))
            })
        });
    }

    /// The f32 slices against the reference formulas evaluated in f64, on a grid over
    /// [−20, 20] and the awkward inputs: within 5 ulp of the value, and of the derivative
    /// within 5 ulp plus, where the derivative is formed as a difference of terms of order
    /// 1 (σ's y(1 − y), tanh's 1 − y², GELU's Φ + xφ), 5 ulp of 1.
    #[test]
    fn smooth_slices_stay_within_a_few_ulp_of_the_reference_formulas() {
        let mut x: Vec<f32> = (0..=80_000).map(|i| -20.0 + i as f32 * 5e-4).collect();
        x.extend(awkward(2000, 5));
        let n = x.len();
        let spacing = |v: f64| {
            let w = (v.abs() as f32).max(f32::MIN_POSITIVE);
            (f32::from_bits(w.to_bits() + 1) - w) as f64
        };
        for act in SMOOTH {
            let mut y = vec![0.0f32; n];
            activation_forward(act, &x, &mut y);
            let mut d = vec![0.0f32; n];
            activation_backward(act, &x, &y, &vec![1.0f32; n], &mut d);
            let param = act.param() as f64;
            let unit_terms = matches!(
                act,
                Activation::Sigmoid | Activation::Tanh | Activation::Gelu
            );
            for i in 0..n {
                let xd = x[i] as f64;
                let want_y = forward_one(act, param, xd);
                // The derivative from the same y the slice was given (σ and tanh form it
                // from y).
                let want_d = backward_one(act, param, xd, y[i] as f64, 1.0);
                let what = format!("{act:?} at x = {:e}", x[i]);
                if !want_y.is_finite() {
                    assert!(
                        (y[i] as f64 == want_y) || (y[i].is_nan() && want_y.is_nan()),
                        "{what}: {} against {want_y}",
                        y[i]
                    );
                } else {
                    let e = (y[i] as f64 - want_y).abs();
                    assert!(
                        e <= 5.0 * spacing(want_y),
                        "{what}: {} against {want_y}",
                        y[i]
                    );
                }
                if !want_d.is_finite() {
                    assert!(
                        (d[i] as f64 == want_d) || (d[i].is_nan() && want_d.is_nan()),
                        "{what}: derivative {} against {want_d}",
                        d[i]
                    );
                } else {
                    let floor = if unit_terms { 5.0 * spacing(1.0) } else { 0.0 };
                    let e = (d[i] as f64 - want_d).abs();
                    assert!(
                        e <= 5.0 * spacing(want_d) + floor,
                        "{what}: derivative {} against {want_d}",
                        d[i]
                    );
                }
            }
        }
    }
}
