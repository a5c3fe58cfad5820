//! CPU twin of shaders/layernorm.wgsl: nn.LayerNorm over the last d features of each of
//! `rows` rows, with an elementwise affine γ, β of size d.
//!
//! Forward: mean and biased variance per row (two passes), x̂ = (x − mean)·inv_std with
//! inv_std = 1/sqrt(var + eps), y = γ ⊙ x̂ + β; mean and inv_std saved per row.
//! Backward: with g = γ ⊙ dy (= ∂L/∂x̂), dx = (inv_std/d)·(d·g − Σg − x̂·Σ g·x̂) per row,
//! dγ = Σ_rows dy·x̂, dβ = Σ_rows dy. dγ and dβ are parameter gradients (`accumulate` adds
//! to them); dx is overwritten.
//!
//! Row sums run in the GPU's workgroup order (`cpu::batchnorm::workgroup_sum`), column sums
//! in row order, as the shader does.

use crate::cpu::Element;
use crate::cpu::batchnorm::workgroup_sum;

fn check(op: &str, rows: usize, d: usize, tensors: &[(&str, usize, usize)]) {
    for &(name, len, need) in tensors {
        assert!(
            len >= need,
            "{op}: `{name}` has {len} elements but rows {rows} × d {d} needs {need}"
        );
    }
}

/// x, y: [rows, d]; gamma, beta: [d]; save_mean, save_invstd: [rows].
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward<T: Element>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    y: &mut [T],
    save_mean: &mut [T],
    save_invstd: &mut [T],
    rows: usize,
    d: usize,
    eps: f64,
) {
    check(
        "layernorm_forward",
        rows,
        d,
        &[
            ("x", x.len(), rows * d),
            ("y", y.len(), rows * d),
            ("gamma", gamma.len(), d),
            ("beta", beta.len(), d),
            ("save_mean", save_mean.len(), rows),
            ("save_invstd", save_invstd.len(), rows),
        ],
    );
    let df = T::from_f64(d as f64);
    let eps = T::from_f64(eps);
    for r in 0..rows {
        let xr = &x[r * d..(r + 1) * d];
        let mean = workgroup_sum(d, |j| xr[j]) / df;
        let var = workgroup_sum(d, |j| {
            let dev = xr[j] - mean;
            dev * dev
        }) / df;
        let inv_std = T::one() / (var + eps).sqrt();
        for j in 0..d {
            y[r * d + j] = gamma[j] * ((xr[j] - mean) * inv_std) + beta[j];
        }
        save_mean[r] = mean;
        save_invstd[r] = inv_std;
    }
}

/// Row lanes of the dγ, dβ column sums (`P_LANES` in shaders/layernorm.wgsl).
pub const PARAM_LANES: usize = 8;

/// x, dy, dx: [rows, d]; gamma, dgamma, dbeta: [d]; save_mean, save_invstd: [rows]. dx is
/// overwritten; dγ and dβ are overwritten, or added to when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward<T: Element>(
    x: &[T],
    gamma: &[T],
    dy: &[T],
    save_mean: &[T],
    save_invstd: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    rows: usize,
    d: usize,
    accumulate: bool,
) {
    check(
        "layernorm_backward",
        rows,
        d,
        &[
            ("x", x.len(), rows * d),
            ("dy", dy.len(), rows * d),
            ("dx", dx.len(), rows * d),
            ("gamma", gamma.len(), d),
            ("dgamma", dgamma.len(), d),
            ("dbeta", dbeta.len(), d),
            ("save_mean", save_mean.len(), rows),
            ("save_invstd", save_invstd.len(), rows),
        ],
    );
    let df = T::from_f64(d as f64);
    for r in 0..rows {
        let (mean, inv_std) = (save_mean[r], save_invstd[r]);
        let base = r * d;
        let g = |j: usize| gamma[j] * dy[base + j];
        let xhat = |j: usize| (x[base + j] - mean) * inv_std;
        let sum_g = workgroup_sum(d, g);
        let sum_g_xhat = workgroup_sum(d, |j| g(j) * xhat(j));
        let k = inv_std / df;
        for j in 0..d {
            dx[base + j] = k * (df * g(j) - sum_g - xhat(j) * sum_g_xhat);
        }
    }
    // dγ, dβ: the device's order. Row lane l sums rows r ≡ l (mod PARAM_LANES) in order,
    // then lane l absorbs lane l + half for half = 4, 2, 1.
    for j in 0..d {
        let mut lanes = [(T::zero(), T::zero()); PARAM_LANES];
        for r in 0..rows {
            let i = r * d + j;
            let xhat = (x[i] - save_mean[r]) * save_invstd[r];
            let lane = &mut lanes[r % PARAM_LANES];
            lane.0 = lane.0 + dy[i];
            lane.1 = lane.1 + dy[i] * xhat;
        }
        let mut half = PARAM_LANES / 2;
        while half > 0 {
            for l in 0..half {
                lanes[l] = (
                    lanes[l].0 + lanes[l + half].0,
                    lanes[l].1 + lanes[l + half].1,
                );
            }
            half /= 2;
        }
        let (sum_dy, sum_dy_xhat) = lanes[0];
        if accumulate {
            dgamma[j] = dgamma[j] + sum_dy_xhat;
            dbeta[j] = dbeta[j] + sum_dy;
        } else {
            dgamma[j] = sum_dy_xhat;
            dbeta[j] = sum_dy;
        }
    }
}
