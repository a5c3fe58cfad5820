//! Branch-free f32 elementary functions for the CPU executor's smooth activations: eˣ,
//! eˣ − 1, ln(1 + t), tanh, σ, and GELU's x·Φ(x) with its derivative Φ(x) + x·φ(x).
//!
//! Why they exist: `std`'s exp and tanh are scalar library calls, and the activations'
//! reference formulas (`activation::forward_one`) evaluate GELU's Φ in f64 with a loop. Run
//! over a layer's outputs they took 6 (σ), 12 (tanh) and 52 (GELU) ns an element on the
//! development machine, and a GELU MLP's training step ten times a ReLU one's
//! (BENCHMARKS.md). These take every element through the same straight-line code, with no
//! call, no table and no branch (each case is computed and the answer selected by masks),
//! so a loop over a slice compiles to vector code.
//!
//! Only +, −, ×, ÷, compares and bit operations, never a fused multiply-add: every build
//! (AVX-512, AVX2, the x86-64 baseline, aarch64) gives the same bits.
//!
//! Accuracy, against f64 evaluations rounded to f32 (the tests below sweep every input
//! class; the bounds asserted there are the measured maxima rounded up):
//! - `exp`, `expm1_nonpositive`: within 1 ulp (measured 0.93 and 0.80);
//! - `log1p_unit`, `tanh`, `sigmoid`, `softplus`: within 3 ulp (1.85, 2.49, 2.40, 2.54);
//! - `gelu`: within 5 ulp (4.52; in subnormal steps where the result is subnormal);
//! - `gelu_derivative`: within 5 ulp (3.96) of the larger of its two terms Φ(x) and
//!   |x|·φ(x) (near x ≈ −0.75 they cancel, and no f32 evaluation keeps relative accuracy
//!   there).
//!
//! Special values follow the reference formulas: NaN in gives NaN out, ±0 keep their sign
//! where the function is odd, and GELU gives NaN at −∞ (−∞·Φ(−∞) = −∞·0), as PyTorch does.

/// log2(e).
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 in two parts (Cody and Waite): LN2_HI has 15 significant bits, so n·LN2_HI is exact
/// for every |n| < 512 the reductions meet, and x − n·LN2_HI is exact near n·ln 2.
const LN2_HI: f32 = 0.693_145_75;
/// ln 2 − LN2_HI.
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5·2²³: for |v| < 2²², v + ROUNDER rounds v to the nearest integer k, and the sum's bits
/// are ROUNDER's plus k.
const ROUNDER: f32 = 12_582_912.0;
/// 1/√(2π), φ(0).
const INV_SQRT_2PI: f32 = 0.398_942_3;
/// Past this |x|, Φ(−|x|) is below f32's smallest subnormal.
const NORMAL_TAIL_END: f32 = 14.5;

/// `if take { a } else { b }` by masks (see `Element::select_bits`): a select the compiler
/// cannot turn back into a branch.
#[inline(always)]
fn select(take: bool, a: f32, b: f32) -> f32 {
    let m = (take as u32).wrapping_neg();
    f32::from_bits((a.to_bits() & m) | (b.to_bits() & !m))
}

/// The smaller of a and b; b where a is NaN (one compare and one select, where `f32::min`
/// adds a NaN check of both).
#[inline(always)]
fn min(a: f32, b: f32) -> f32 {
    select(a < b, a, b)
}

/// The larger of a and b; b where a is NaN.
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    select(a > b, a, b)
}

/// |x|, by clearing the sign bit.
#[inline(always)]
fn abs(x: f32) -> f32 {
    f32::from_bits(x.to_bits() & 0x7fff_ffff)
}

/// 2ⁿ for n in [−126, 127], by its bits.
#[inline(always)]
fn pow2(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// x = n·ln 2 + r with n the integer nearest x·log2(e) and |r| ≤ ln2/2 (plus a rounding),
/// for |x| < 2²¹: (n, r).
#[inline(always)]
fn reduce(x: f32) -> (i32, f32) {
    let t = x * LOG2E + ROUNDER;
    let n = t.to_bits() as i32 - ROUNDER.to_bits() as i32;
    let nf = t - ROUNDER;
    (n, (x - nf * LN2_HI) - nf * LN2_LO)
}

/// eʳ − 1 − r for |r| ≤ 0.35: the Taylor series to r⁸ (the first term left out is below
/// 2.1e−10·|r|).
#[inline(always)]
fn expm1_rest(r: f32) -> f32 {
    const C: [f32; 7] = [
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
        1.0 / 40320.0,
    ];
    let mut q = C[6];
    for &c in C[..6].iter().rev() {
        q = q * r + c;
    }
    r * r * q
}

/// eˣ as (p, s, t) with eˣ = (p·s)·t: p = eʳ in [0.7, 1.42] and s·t = 2ⁿ split into two
/// normal powers of two, so that a result in the subnormal range rounds once (in the last
/// product), and one past f32's largest overflows to ∞ there. x is clamped to
/// [−110, 88.75], where eˣ lies beyond both ends of f32; NaN goes to −110 (callers that
/// pass it on select it back).
#[inline(always)]
fn exp_parts(x: f32) -> (f32, f32, f32) {
    let x = max(min(x, 88.75), -110.0);
    let (n, r) = reduce(x);
    let p = 1.0 + (r + expm1_rest(r));
    let h = n >> 1;
    (p, pow2(h), pow2(n - h))
}

/// eˣ.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let (p, s, t) = exp_parts(x);
    select(x.is_nan(), x, p * s * t)
}

/// eˣ − 1 for x ≤ 0 (−∞ included), to full relative accuracy near 0. Positive x is not
/// handled (the activations only need x ≤ 0).
#[inline(always)]
pub fn expm1_nonpositive(x: f32) -> f32 {
    // Below −30, eˣ − 1 rounds to −1.
    let (n, r) = reduce(max(x, -30.0));
    // eˣ − 1 = 2ⁿ·(eʳ − 1) + (2ⁿ − 1), 2ⁿ − 1 exact for n ≥ −24 (n ≥ −44 here).
    let s = pow2(n);
    let y = s * (r + expm1_rest(r)) + (s - 1.0);
    // ±0 and NaN are their own answers.
    select(x == 0.0 || x.is_nan(), x, y)
}

/// ln(1 + t) for t in [0, 1]: 2·atanh(w/(2 + w)) as a series in odd powers, with w = t for
/// t < 1/2 and, above, ln(1 + t) = ln 2 + ln(1 + w) with w = (t − 1)/2 (exact) in
/// [−1/4, 0]; either way |w/(2 + w)| ≤ 0.2, and the series to the 13th power leaves
/// 1e−9 relative.
#[inline(always)]
pub fn log1p_unit(t: f32) -> f32 {
    let upper = t >= 0.5;
    let w = select(upper, (t - 1.0) * 0.5, t);
    let s = w / (2.0 + w);
    let s2 = s * s;
    const C: [f32; 6] = [
        1.0 / 3.0,
        1.0 / 5.0,
        1.0 / 7.0,
        1.0 / 9.0,
        1.0 / 11.0,
        1.0 / 13.0,
    ];
    let mut q = C[5];
    for &c in C[..5].iter().rev() {
        q = q * s2 + c;
    }
    let l = 2.0 * (s + s * (s2 * q));
    select(upper, LN2_HI + (LN2_LO + l), l)
}

/// tanh x = sign(x)·(−e)/(2 + e) with e = e^(−2|x|) − 1 (no cancellation for small |x|,
/// ±1 past |x| ≈ 9).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let e = expm1_nonpositive(-2.0 * abs(x));
    let y = -e / (2.0 + e);
    let signed = f32::from_bits(y.to_bits() | (x.to_bits() & 0x8000_0000));
    select(x.is_nan(), x, signed)
}

/// σ(x) = 1/(1 + e^−x) for x ≥ 0 and e^x/(1 + e^x) below, from one e^(−|x|) (which never
/// overflows).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let t = exp(-abs(x));
    let s = 1.0 / (1.0 + t);
    let y = select(x >= 0.0, s, t * s);
    select(x.is_nan(), x, y)
}

/// softplus(x) = ln(1 + eˣ) = max(x, 0) + ln(1 + e^(−|x|)), and x itself above
/// `threshold` (PyTorch's convention).
#[inline(always)]
pub fn softplus(x: f32, threshold: f32) -> f32 {
    let y = max(x, 0.0) + log1p_unit(exp(-abs(x)));
    let y = select(x > threshold, x, y);
    select(x.is_nan(), x, y)
}

/// Coefficients of `normal_tail`'s three pieces, lowest power first, and each piece's
/// centre; fitted by `tools/fit_normal_tail.py` (which prints them, and their error).
const TAIL_PIECES: [[f32; 10]; 3] = [
    // a in [0, 1.5): G(a) in powers of a − 0.75.
    [
        3.002_324_7e-1,
        -1.737_679_2e-1,
        8.495_313e-2,
        -3.668_444_2e-2,
        1.436_189_4e-2,
        -5.182_423_6e-3,
        1.735_944_1e-3,
        -5.531_373_3e-4,
        1.855_967_4e-4,
        -5.090_948_6e-5,
    ],
    // a in [1.5, 4): G(a) in powers of a − 2.75.
    [
        1.307_247_4e-1,
        -3.944_926e-2,
        1.111_957_8e-2,
        -2.956_774_6e-3,
        7.474_211e-4,
        -1.804_174_8e-4,
        4.131_788e-5,
        -9.297_993e-6,
        2.382_748_3e-6,
        -4.780_095_5e-7,
    ],
    // a in [4, 14.5]: a·G(a) in powers of 1/a² − 0.03362812.
    [
        3.866_940_4e-1,
        -3.340_699_4e-1,
        7.840_072e-1,
        -2.807_397_6,
        1.298_204_8e1,
        -7.757_81e1,
        5.293_744_5e2,
        -3.126_079_6,
        9.052_203e-1,
        -5.949_036_7e-3,
    ],
];
const TAIL_CENTRES: [f32; 3] = [0.75, 2.75, 0.033_628_12];

/// G(a) = e^(a²/2)·Φ(−a) for a in [0, 14.5]: the normal distribution's left tail with its
/// Gaussian factor taken out, a smooth function from 1/2 at 0 falling like 1/(a√(2π)).
#[inline(always)]
fn normal_tail(a: f32) -> f32 {
    let first = a < 1.5;
    let far = a >= 4.0;
    let pick = |k: usize| {
        select(
            first,
            TAIL_PIECES[0][k],
            select(far, TAIL_PIECES[2][k], TAIL_PIECES[1][k]),
        )
    };
    let centre = select(
        first,
        TAIL_CENTRES[0],
        select(far, TAIL_CENTRES[2], TAIL_CENTRES[1]),
    );
    let u = select(far, 1.0 / (a * a), a) - centre;
    let mut acc = pick(9);
    for k in (0..9).rev() {
        acc = acc * u + pick(k);
    }
    select(far, acc / a, acc)
}

/// e^(−a²/2) as (p, s, t) with the value (p·s)·t, as `exp_parts`, for a ≥ 0. a² is split
/// exactly into hi + lo (Dekker's product, a cut into two halves of 12 bits), so the
/// exponent's rounding does not grow with a² (a plain a·a would lose 80 ulp at a = 13).
#[inline(always)]
fn gaussian_parts(a: f32) -> (f32, f32, f32) {
    let ah = f32::from_bits(a.to_bits() & 0xffff_f000);
    let al = a - ah;
    let hi = a * a;
    let lo = ((ah * ah - hi) + 2.0 * ah * al) + al * al;
    let (p, s, t) = exp_parts(-0.5 * hi);
    // e^(−lo/2) = 1 − lo/2 to f32 precision: |lo| ≤ ulp(hi)/2.
    (p * (1.0 - 0.5 * lo), s, t)
}

/// GELU, x·Φ(x): below 0, x·e^(−x²/2)·G(|x|) with every factor but the power of two
/// multiplied first, so tiny results round once; above, x·(1 − Φ(−x)), where Φ(−x) ≤ 1/2
/// costs no digits.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let a = min(abs(x), NORMAL_TAIL_END);
    let (p, s, t) = gaussian_parts(a);
    let pg = p * normal_tail(a);
    let left = x * pg * s * t;
    let right = x * (1.0 - pg * s * t);
    let y = select(x < 0.0, left, right);
    // Past the tail's end the result rounds to −0; at −∞ it is −∞·0, NaN, as the
    // reference and PyTorch have it.
    select(x < -NORMAL_TAIL_END, x * 0.0, y)
}

/// GELU's derivative, Φ(x) + x·φ(x): below 0, e^(−x²/2)·(G(|x|) + x/√(2π)), again scaled
/// last; above, (1 − Φ(−x)) + x·φ(x).
#[inline(always)]
pub fn gelu_derivative(x: f32) -> f32 {
    let a = min(abs(x), NORMAL_TAIL_END);
    let (p, s, t) = gaussian_parts(a);
    let g = normal_tail(a);
    let left = p * (g + x * INV_SQRT_2PI) * s * t;
    let right = (1.0 - p * g * s * t) + x * (p * INV_SQRT_2PI * s * t);
    let d = select(x < 0.0, left, right);
    select(x < -NORMAL_TAIL_END, x * 0.0, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::activation::{normal_cdf, normal_pdf};

    /// Distance from `got` to `want` (an f64 value) in units of f32's spacing at `want`
    /// rounded to f32 (the subnormal step below f32::MIN_POSITIVE), 0 where both are the
    /// same non-finite value or both NaN.
    fn ulps(got: f32, want: f64) -> f64 {
        if want.is_nan() {
            return if got.is_nan() { 0.0 } else { f64::INFINITY };
        }
        if want.is_infinite() || (want as f32).is_infinite() {
            return if got as f64 == want || got == want as f32 {
                0.0
            } else {
                f64::INFINITY
            };
        }
        let w = want as f32;
        let spacing = if w.abs() < f32::MIN_POSITIVE {
            f32::from_bits(1) as f64
        } else {
            let next = f32::from_bits(w.abs().to_bits() + 1);
            (next - w.abs()) as f64
        };
        (got as f64 - want).abs() / spacing
    }

    /// Inputs over [lo, hi]: an even grid of `n` and every f32 of a few stretches around
    /// the ends and the pieces' seams, with ±0, subnormals, ±∞ and NaN.
    fn inputs(lo: f32, hi: f32, n: usize, seams: &[f32]) -> Vec<f32> {
        let mut v: Vec<f32> = (0..=n)
            .map(|i| lo + (hi - lo) * (i as f32 / n as f32))
            .collect();
        for &s in seams.iter().chain(&[lo, hi, 0.0]) {
            let b = s.to_bits();
            for d in 0..200u32 {
                v.push(f32::from_bits(b.wrapping_add(d)));
                v.push(f32::from_bits(b.wrapping_sub(d)));
            }
        }
        v.extend([
            0.0,
            -0.0,
            f32::from_bits(1),
            -f32::from_bits(1),
            f32::MIN_POSITIVE,
            1e-30,
            -1e-30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        v
    }

    /// The largest error in ulp of `f` against `reference` over `xs`, with the worst input.
    fn worst(xs: &[f32], f: impl Fn(f32) -> f32, reference: impl Fn(f64) -> f64) -> (f64, f32) {
        let mut worst = (0.0, 0.0);
        for &x in xs {
            let e = ulps(f(x), reference(x as f64));
            if e > worst.0 || e.is_nan() {
                worst = (e, x);
            }
        }
        worst
    }

    #[track_caller]
    fn check(name: &str, bound: f64, got: (f64, f32)) {
        assert!(
            got.0 <= bound,
            "{name}: {:.2} ulp at x = {:e} (bits {:#x}), bound {bound}",
            got.0,
            got.1,
            got.1.to_bits()
        );
    }

    #[test]
    fn exponentials_are_within_one_ulp() {
        let xs = inputs(-110.0, 90.0, 400_000, &[-103.28, -87.34, 88.72, 0.3466]);
        check("exp", 1.0, worst(&xs, exp, f64::exp));
        let xs = inputs(-40.0, 0.0, 400_000, &[-0.3466, -1.04, -16.6]);
        let xs: Vec<f32> = xs.into_iter().filter(|&x| x <= 0.0 || x.is_nan()).collect();
        check("expm1", 1.0, worst(&xs, expm1_nonpositive, |x| x.exp_m1()));
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(expm1_nonpositive(f32::NEG_INFINITY), -1.0);
        assert_eq!(expm1_nonpositive(-0.0).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn log1p_tanh_sigmoid_softplus_are_within_three_ulp() {
        let ts = inputs(0.0, 1.0, 400_000, &[0.5]);
        let ts: Vec<f32> = ts.into_iter().filter(|t| (0.0..=1.0).contains(t)).collect();
        check("log1p", 3.0, worst(&ts, log1p_unit, f64::ln_1p));
        let xs = inputs(-30.0, 30.0, 600_000, &[-9.01, 0.1733, -0.1733, 20.0]);
        check("tanh", 3.0, worst(&xs, tanh, f64::tanh));
        let xs = inputs(-110.0, 110.0, 600_000, &[-87.3, -103.3, 16.6]);
        let sigmoid64 = |x: f64| {
            if x >= 0.0 {
                1.0 / (1.0 + (-x).exp())
            } else {
                x.exp() / (1.0 + x.exp())
            }
        };
        check("sigmoid", 3.0, worst(&xs, sigmoid, sigmoid64));
        let softplus64 = |x: f64| {
            if x > 20.0 {
                x
            } else {
                x.max(0.0) + (-x.abs()).exp().ln_1p()
            }
        };
        check(
            "softplus",
            3.0,
            worst(&xs, |x| softplus(x, 20.0), softplus64),
        );
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
        assert_eq!(softplus(f32::NEG_INFINITY, 20.0), 0.0);
        for f in [tanh, sigmoid, |x| softplus(x, 20.0), exp] {
            assert!(f(f32::NAN).is_nan());
        }
    }

    #[test]
    fn gaussian_exponent_is_split_exactly() {
        for i in 0..100_000u32 {
            let a = 14.5 * (i as f32 / 100_000.0) + f32::from_bits(i);
            let ah = f32::from_bits(a.to_bits() & 0xffff_f000);
            let al = a - ah;
            let hi = a * a;
            let lo = ((ah * ah - hi) + 2.0 * ah * al) + al * al;
            assert_eq!(hi as f64 + lo as f64, a as f64 * a as f64, "a = {a}");
        }
    }

    #[test]
    fn gelu_is_within_five_ulp_and_its_derivative_within_five_of_its_terms() {
        let gelu64 = |x: f64| x * normal_cdf(x);
        let xs = inputs(
            -16.0,
            16.0,
            1_000_000,
            &[-14.5, -13.2, -4.0, -1.5, 1.5, 4.0],
        );
        check("gelu", 5.0, worst(&xs, gelu, gelu64));
        // The derivative's error measured against its larger term's spacing.
        let mut worst_seen = (0.0f64, 0.0f32);
        for &x in &xs {
            let xd = x as f64;
            let want = normal_cdf(xd) + xd * normal_pdf(xd);
            let got = gelu_derivative(x);
            if !want.is_finite() {
                assert!(got.is_nan() == want.is_nan(), "x {x}: {got} against {want}");
                continue;
            }
            let scale = normal_cdf(xd).max((xd * normal_pdf(xd)).abs());
            let e = ulps(got, want).min((got as f64 - want).abs() / ulps_spacing(scale));
            if e > worst_seen.0 {
                worst_seen = (e, x);
            }
        }
        check("gelu derivative", 5.0, worst_seen);
        assert!(gelu(f32::NEG_INFINITY).is_nan());
        assert_eq!(gelu(f32::INFINITY), f32::INFINITY);
        assert_eq!(gelu(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(gelu(-20.0).to_bits(), (-0.0f32).to_bits());
        assert!(gelu(f32::NAN).is_nan());
        assert!(gelu_derivative(f32::NEG_INFINITY).is_nan());
        assert!(gelu_derivative(f32::INFINITY).is_nan());
        assert!(gelu_derivative(f32::NAN).is_nan());
    }

    /// f32's spacing at |v| (the subnormal step below f32::MIN_POSITIVE).
    fn ulps_spacing(v: f64) -> f64 {
        let w = (v.abs() as f32).max(f32::MIN_POSITIVE);
        (f32::from_bits(w.to_bits() + 1) - w) as f64
    }
}
