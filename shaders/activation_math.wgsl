// Activation functions and their derivatives, shared by every shader that applies one:
// shaders/activation.wgsl (element-wise kernels), shaders/matmul_tiled.wgsl (the fused
// matmul epilogue), shaders/batchnorm.wgsl and shaders/add.wgsl (their passes with the
// following activation fused).
// This file has no bindings and no entry point; the shader table (src/gpu/shaders.rs)
// prepends it to each of those sources, so the formulas exist once.
//
// Every formula is written to stay finite and accurate for any finite input (±100 and
// beyond), instead of trusting the driver's builtins where WGSL leaves their accuracy loose:
// - sigmoid: 1/(1+e^−x) for x ≥ 0, e^x/(1+e^x) otherwise, so exp never overflows;
// - tanh: odd Taylor polynomial for |x| < 1/4, else (1−e)/(1+e) with e = e^−2|x| ≤ 1, so
//   exp never overflows (WGSL's tanh is specified only as sinh/cosh, which overflows);
// - softplus: PyTorch's threshold (x > 20 returns x), else max(x,0) + log1p(e^−|x|) with
//   log1p from its atanh series, since WGSL has no log1p and log(1+u) loses digits;
// - GELU (exact, PyTorch approximate='none'): x·Φ(x) with Φ(x) = erfc(−x/√2)/2 and erfc
//   from the Chebyshev fit of Numerical Recipes (erfcc, after W. J. Cody), whose
//   relative error is below 1.2e−7 for every argument, so the left tail of Φ keeps its
//   relative accuracy where 1 + erf(x) would cancel. WGSL has no erf.
//
// The backward reads the pre-activation x and the output y = f(x), using whichever gives
// the derivative exactly or more cheaply (derivations at each case). Activation gradients
// are overwritten (dx =), never accumulated.

const ACT_IDENTITY: u32 = 0u;
const ACT_SIGMOID: u32 = 1u;
const ACT_TANH: u32 = 2u;
const ACT_RELU: u32 = 3u;
const ACT_LEAKY_RELU: u32 = 4u;
const ACT_ELU: u32 = 5u;
const ACT_SELU: u32 = 6u;
const ACT_GELU: u32 = 7u;
const ACT_SOFTPLUS: u32 = 8u;

// ops/activation.rs SELU_ALPHA and SELU_SCALE, rounded to f32.
const SELU_ALPHA: f32 = 1.6732632423543772;
const SELU_SCALE: f32 = 1.0507009873554805;
// PyTorch's softplus threshold (beta = 1): above it softplus(x) = x and its derivative is 1.
const SOFTPLUS_THRESHOLD: f32 = 20.0;
const INV_SQRT2: f32 = 0.70710678118654752;
// 1/√(2π), the peak of the standard normal density.
const INV_SQRT_2PI: f32 = 0.39894228040143268;

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        return 1.0 / (1.0 + exp(-x));
    }
    // x < 0 (or NaN, which propagates): e^x ≤ 1 cannot overflow.
    let e = exp(x);
    return e / (1.0 + e);
}

fn tanh_stable(x: f32) -> f32 {
    let a = abs(x);
    if a < 0.25 {
        // tanh x = x − x³/3 + 2x⁵/15 − 17x⁷/315 + 62x⁹/2835 − 1382x¹¹/155925 + …; the next
        // term is below 1e−10 relative for |x| < 1/4, and no digits cancel near 0.
        let x2 = x * x;
        return x * (1.0 + x2 * (-0.33333333333 + x2 * (0.13333333333 + x2 * (-0.053968253968
            + x2 * (0.021869488536 + x2 * -0.0088632355299)))));
    }
    // tanh |x| = (1 − e^−2|x|) / (1 + e^−2|x|): e ≤ e^−1/2, so 1 − e loses at most 1.4 bits.
    let e = exp(-2.0 * a);
    let t = (1.0 - e) / (1.0 + e);
    return select(t, -t, x < 0.0);
}

// log(1 + u) for u in [0, 1]: with s = u/(2+u) ≤ 1/3, log(1+u) = 2·atanh(s) =
// 2s·(1 + s²/3 + s⁴/5 + …); nine terms leave a relative error below 2e−9, and no step
// subtracts nearly equal numbers.
fn log1p_unit(u: f32) -> f32 {
    let s = u / (2.0 + u);
    let s2 = s * s;
    return 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0
        + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0 + s2 * (1.0 / 15.0 + s2 * (1.0 / 17.0)))))))));
}

fn softplus(x: f32) -> f32 {
    if x > SOFTPLUS_THRESHOLD {
        return x;
    }
    return max(x, 0.0) + log1p_unit(exp(-abs(x)));
}

// erfc(z) for z ≥ 0, relative error < 1.2e−7 (Numerical Recipes' erfcc, a Chebyshev fit).
fn erfc_nonneg(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-z * z + p);
}

// Φ(x), the standard normal CDF, = erfc(−x/√2)/2.
fn normal_cdf(x: f32) -> f32 {
    let e = erfc_nonneg(abs(x) * INV_SQRT2);
    return select(1.0 - 0.5 * e, 0.5 * e, x < 0.0);
}

fn act_forward(code: u32, param: f32, x: f32) -> f32 {
    switch code {
        case ACT_SIGMOID: {
            return sigmoid(x);
        }
        case ACT_TANH: {
            return tanh_stable(x);
        }
        case ACT_RELU: {
            // Written so that NaN propagates (NaN <= 0 is false), as in PyTorch.
            return select(x, 0.0, x <= 0.0);
        }
        case ACT_LEAKY_RELU: {
            return select(param * x, x, x > 0.0);
        }
        case ACT_ELU: {
            return select(param * (exp(x) - 1.0), x, x > 0.0);
        }
        case ACT_SELU: {
            return SELU_SCALE * select(SELU_ALPHA * (exp(x) - 1.0), x, x > 0.0);
        }
        case ACT_GELU: {
            return x * normal_cdf(x);
        }
        case ACT_SOFTPLUS: {
            return softplus(x);
        }
        default: {
            // ACT_IDENTITY (the launcher passes only valid codes).
            return x;
        }
    }
}

// dx = dy·f'(x) of one element, from x, y = f(x) and dy: what activation.wgsl's backward
// writes, and what batchnorm.wgsl's fused backward forms in place of reading it.
fn act_backward(code: u32, param: f32, x: f32, y: f32, dy: f32) -> f32 {
    if code == ACT_RELU {
        // A select, not dy·0, so that a non-finite dy behind a dead unit stays blocked, as
        // PyTorch's threshold_backward does (x ≤ 0 ? 0 : dy).
        return select(dy, 0.0, x <= 0.0);
    }
    return dy * act_derivative(code, param, x, y);
}

// f'(x), from x and/or y = f(x). ReLU's backward is a select (see act_backward).
fn act_derivative(code: u32, param: f32, x: f32, y: f32) -> f32 {
    switch code {
        case ACT_SIGMOID: {
            // y = σ(x), so dy/dx = σ(x)(1 − σ(x)) = y(1 − y).
            return y * (1.0 - y);
        }
        case ACT_TANH: {
            // y = tanh x, so dy/dx = 1 − tanh² x = 1 − y².
            return 1.0 - y * y;
        }
        case ACT_RELU: {
            // Derivative 0 at x = 0, as PyTorch.
            return select(0.0, 1.0, x > 0.0);
        }
        case ACT_LEAKY_RELU: {
            // PyTorch takes the slope at x = 0.
            return select(param, 1.0, x > 0.0);
        }
        case ACT_ELU: {
            // x ≤ 0: y = α(eˣ − 1), so dy/dx = α·eˣ (= y + α, but without the cancellation).
            return select(param * exp(x), 1.0, x > 0.0);
        }
        case ACT_SELU: {
            // x ≤ 0: y = λα(eˣ − 1), so dy/dx = λα·eˣ; x > 0: λ.
            return SELU_SCALE * select(SELU_ALPHA * exp(x), 1.0, x > 0.0);
        }
        case ACT_GELU: {
            // y = x·Φ(x), so dy/dx = Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π).
            return normal_cdf(x) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
        }
        case ACT_SOFTPLUS: {
            // y = log(1 + eˣ), so dy/dx = eˣ/(1 + eˣ) = σ(x); exactly 1 above PyTorch's
            // threshold, where the forward returned x itself.
            return select(sigmoid(x), 1.0, x > SOFTPLUS_THRESHOLD);
        }
        default: {
            return 1.0;
        }
    }
}
