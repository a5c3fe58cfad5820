//! Weight initialization with torch.nn.init's formulas, drawn from our own `Rng` so a seed
//! gives the same weights everywhere.
//!
//! Initialization is one of the survey's three remedies for unstable gradients: a layer
//! keeps the variance of its signal (forward) and of its gradient (backward) when
//! Var(w) ≈ 2/(fan_in + fan_out) (Glorot & Bengio 2010), or 2/fan_in for ReLU (He et al.
//! 2015), or 1/fan_in for SELU (LeCun; Klambauer et al. 2017). Orthogonal matrices keep
//! every singular value at 1, which is what deep linear nets and RNNs want (Saxe et al.
//! 2014).
//!
//! A weight is a row-major [fan_out, fan_in] matrix (PyTorch's Linear layout: the fans are
//! torch's `_calculate_fan_in_and_fan_out` of that shape). `gain` multiplies the Glorot
//! and He inits and orthogonal; the caller passes `activation_gain(act)`. LeCun's variance
//! is 1/fan_in by definition (what SELU's self-normalization assumes; Keras and JAX have no
//! gain for it), so the LeCun inits ignore the gain, as do `Normal`, `Uniform` and `Zeros`:
//! otherwise LeCun with ReLU would be He, and with SELU (torch's gain 3/4) too small.

use serde::{Deserialize, Serialize};

use crate::ops::Activation;
use crate::rng::Rng;

/// The default σ of `normal` and half-width of `uniform` when the name gives none: Keras's
/// RandomNormal/RandomUniform defaults, the classic "small random weights".
pub const DEFAULT_SMALL: f64 = 0.05;

/// How a weight matrix is filled. Serialized with snake_case names: the plain ones as a
/// string (`"he_normal"`), the two with a parameter as a table (`{ normal = { std = 0.1 } }`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    Zeros,
    /// All ones (normalization scales).
    Ones,
    /// N(0, std²).
    Normal {
        std: f64,
    },
    /// U(−limit, limit).
    Uniform {
        limit: f64,
    },
    /// Glorot: U(−a, a), a = gain·√(6/(fan_in + fan_out)).
    XavierUniform,
    /// Glorot: N(0, σ²), σ = gain·√(2/(fan_in + fan_out)).
    XavierNormal,
    /// Kaiming (fan_in mode): U(−b, b), b = gain·√(3/fan_in); gain √2 for ReLU.
    HeUniform,
    /// Kaiming (fan_in mode): N(0, σ²), σ = gain/√fan_in.
    HeNormal,
    /// N(0, σ²), σ = 1/√fan_in (what SELU's self-normalization assumes); ignores the gain.
    LecunNormal,
    /// U(−b, b), b = √(3/fan_in): the uniform with LeCun's variance; ignores the gain.
    LecunUniform,
    /// A (semi-)orthogonal matrix from the QR of a Gaussian one, times gain.
    Orthogonal,
}

impl Init {
    pub const ALL_NAMES: &'static [&'static str] = &[
        "zeros",
        "ones",
        "normal",
        "uniform",
        "xavier_uniform",
        "xavier_normal",
        "he_uniform",
        "he_normal",
        "lecun_normal",
        "lecun_uniform",
        "orthogonal",
    ];

    pub fn name(self) -> &'static str {
        match self {
            Init::Zeros => "zeros",
            Init::Ones => "ones",
            Init::Normal { .. } => "normal",
            Init::Uniform { .. } => "uniform",
            Init::XavierUniform => "xavier_uniform",
            Init::XavierNormal => "xavier_normal",
            Init::HeUniform => "he_uniform",
            Init::HeNormal => "he_normal",
            Init::LecunNormal => "lecun_normal",
            Init::LecunUniform => "lecun_uniform",
            Init::Orthogonal => "orthogonal",
        }
    }

    /// Parses a name from the command line or a config: one of `ALL_NAMES` (hyphens or
    /// underscores, any case; the aliases glorot_* and kaiming_* too), and for `normal` and
    /// `uniform` an optional positive scale after a colon: `normal:0.01`, `uniform:0.1`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase().replace('-', "_");
        let (name, arg) = match text.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (text.as_str(), None),
        };
        let scale = match arg {
            None => DEFAULT_SMALL,
            Some(a) => match a.parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 => x,
                _ => return None,
            },
        };
        let init = match name {
            "normal" | "gaussian" => Init::Normal { std: scale },
            "uniform" => Init::Uniform { limit: scale },
            _ if arg.is_some() => return None,
            "zeros" | "zero" => Init::Zeros,
            "ones" | "one" => Init::Ones,
            "xavier_uniform" | "glorot_uniform" => Init::XavierUniform,
            "xavier_normal" | "glorot_normal" => Init::XavierNormal,
            "he_uniform" | "kaiming_uniform" => Init::HeUniform,
            "he_normal" | "kaiming_normal" => Init::HeNormal,
            "lecun_normal" => Init::LecunNormal,
            "lecun_uniform" => Init::LecunUniform,
            "orthogonal" => Init::Orthogonal,
            _ => return None,
        };
        Some(init)
    }
}

/// torch.nn.init.calculate_gain: the factor that keeps the activation's output variance
/// at its input's under the matching init (√2 for ReLU because it zeroes half its input).
pub fn activation_gain(act: &Activation) -> f64 {
    match *act {
        Activation::Identity | Activation::Sigmoid => 1.0,
        Activation::Tanh => 5.0 / 3.0,
        Activation::Relu => 2f64.sqrt(),
        Activation::LeakyRelu { slope } => {
            let s = slope as f64;
            (2.0 / (1.0 + s * s)).sqrt()
        }
        // PyTorch's choice for SELU, tuned empirically (its docs say so).
        Activation::Selu => 0.75,
        // calculate_gain does not know these; PyTorch would raise, we take the neutral 1.
        Activation::Elu { .. } | Activation::Gelu | Activation::Softplus => 1.0,
    }
}

/// A row-major [fan_out, fan_in] weight matrix filled as `init` says, with PyTorch's
/// formulas (see `Init`'s variants). Draws from `rng` in row-major order.
pub fn init_weight(
    init: Init,
    fan_out: usize,
    fan_in: usize,
    gain: f64,
    rng: &mut Rng,
) -> Vec<f32> {
    let n = fan_out * fan_in;
    let fi = fan_in as f64;
    let fo = fan_out as f64;
    let normal = |std: f64, rng: &mut Rng| -> Vec<f32> {
        (0..n).map(|_| (std * rng.normal()) as f32).collect()
    };
    let uniform = |limit: f64, rng: &mut Rng| -> Vec<f32> {
        (0..n)
            .map(|_| rng.uniform_range(-limit, limit) as f32)
            .collect()
    };
    match init {
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Normal { std } => normal(std, rng),
        Init::Uniform { limit } => uniform(limit, rng),
        Init::XavierUniform => uniform(gain * (6.0 / (fi + fo)).sqrt(), rng),
        Init::XavierNormal => normal(gain * (2.0 / (fi + fo)).sqrt(), rng),
        // Kaiming in fan_in mode: Var(w) = gain²/fan_in, and a uniform on (−b, b) has
        // variance b²/3, hence b = gain·√(3/fan_in).
        Init::HeUniform => uniform(gain * (3.0 / fi).sqrt(), rng),
        Init::HeNormal => normal(gain / fi.sqrt(), rng),
        Init::LecunUniform => uniform((3.0 / fi).sqrt(), rng),
        Init::LecunNormal => normal(1.0 / fi.sqrt(), rng),
        Init::Orthogonal => orthogonal(fan_out, fan_in, gain, rng),
    }
}

/// torch.nn.init.orthogonal_ for a [rows, cols] matrix: fill it with N(0, 1), transpose it
/// when it is wide so that the QR is of a tall matrix (m ≥ n), take the reduced Q, flip each
/// column by the sign of R's diagonal (so Q is the unique factor with diag(R) > 0, and the
/// result is Haar-distributed), transpose back, and scale by `gain`. A tall result has
/// orthonormal columns (WᵀW = I), a wide one orthonormal rows (WWᵀ = I).
fn orthogonal(rows: usize, cols: usize, gain: f64, rng: &mut Rng) -> Vec<f32> {
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    let a: Vec<f64> = (0..rows * cols).map(|_| rng.normal()).collect();
    let wide = rows < cols;
    let (m, n) = if wide { (cols, rows) } else { (rows, cols) };
    // The m×n matrix to factor, column-major (column j at [j·m, (j+1)·m)) so that the
    // reflections run over contiguous memory. For a wide matrix it is Aᵀ, and Aᵀ in
    // column-major order is A in row-major order: the draws as they are.
    let mut mat = if wide {
        a
    } else {
        let mut t = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                t[j * m + i] = a[i * n + j];
            }
        }
        t
    };
    let (q, signs) = householder_q(&mut mat, m, n);
    // W = Q·diag(sign(diag R)), transposed back when wide.
    let mut w = vec![0f32; m * n];
    for j in 0..n {
        for i in 0..m {
            let x = (gain * signs[j] * q[j * m + i]) as f32;
            if wide {
                // W is n×m (rows = n), W[j][i] = Q[i][j].
                w[j * m + i] = x;
            } else {
                // W is m×n, W[i][j] = Q[i][j].
                w[i * n + j] = x;
            }
        }
    }
    w
}

/// Householder QR of the column-major m×n matrix `mat` (m ≥ n), in f64. Returns the reduced
/// Q (column-major m×n) and the signs of R's diagonal (+1 where it is 0). `mat` is
/// overwritten by R (above the diagonal) and scratch.
fn householder_q(mat: &mut [f64], m: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let dot = |x: &[f64], y: &[f64]| -> f64 { x.iter().zip(y).map(|(a, b)| a * b).sum() };
    // Reflector k maps column k's tail x to (α, 0, …, 0) with H = I − 2vvᵀ, |v| = 1.
    let mut reflectors: Vec<Vec<f64>> = Vec::with_capacity(n);
    let mut signs = vec![1.0; n];
    for k in 0..n {
        let x = &mat[k * m + k..(k + 1) * m];
        let norm = dot(x, x).sqrt();
        if norm == 0.0 {
            // Already zero below (and on) the diagonal: no reflection, R[k][k] = 0.
            reflectors.push(Vec::new());
            continue;
        }
        // α takes the sign opposite to x₀, so v₀ = x₀ − α does not cancel.
        let alpha = if x[0] >= 0.0 { -norm } else { norm };
        let mut v = x.to_vec();
        v[0] -= alpha;
        let vnorm = dot(&v, &v).sqrt();
        v.iter_mut().for_each(|e| *e /= vnorm);
        for j in k..n {
            let col = &mut mat[j * m + k..(j + 1) * m];
            let d = 2.0 * dot(&v, col);
            col.iter_mut().zip(&v).for_each(|(c, vi)| *c -= d * vi);
        }
        signs[k] = alpha.signum();
        reflectors.push(v);
    }
    // Q = H₀H₁…Hₙ₋₁ applied to the first n columns of I, right to left. Column j < k of the
    // partial product is still e_j, which Hₖ (acting on rows ≥ k) leaves alone.
    let mut q = vec![0.0; m * n];
    for j in 0..n {
        q[j * m + j] = 1.0;
    }
    for k in (0..n).rev() {
        let v = &reflectors[k];
        if v.is_empty() {
            continue;
        }
        for j in k..n {
            let col = &mut q[j * m + k..(j + 1) * m];
            let d = 2.0 * dot(v, col);
            col.iter_mut().zip(v).for_each(|(c, vi)| *c -= d * vi);
        }
    }
    (q, signs)
}
