//! CPU twin of shaders/layernorm.wgsl: nn.LayerNorm over the last d features of each of
//! `rows` rows, with an elementwise affine γ, β of size d.
//!
//! Forward: mean and biased variance per row (two passes), x̂ = (x − mean)·inv_std with
//! inv_std = 1/sqrt(var + eps), y = γ ⊙ x̂ + β; mean and inv_std saved per row.
//! Backward: with g = γ ⊙ dy (= ∂L/∂x̂), dx = (inv_std/d)·(d·g − Σg − x̂·Σ g·x̂) per row,
//! dγ = Σ_rows dy·x̂, dβ = Σ_rows dy. dγ and dβ are parameter gradients (`accumulate` adds
//! to them); dx is overwritten.
//!
//! Row sums run in the shader's workgroup order (lane t sums elements t, t + WG, … in order,
//! then `cpu::batchnorm::tree` combines the lanes), taken a chunk of WG elements at a time
//! so that the lanes are vector lanes; column sums run in row order, as the shader's do.

use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::batchnorm::{WG, tree};
use crate::cpu::bias::merge_row_lanes;

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
    if d == 0 {
        return;
    }
    let (gamma, beta) = (&gamma[..d], &beta[..d]);
    let eps = T::from_f64(eps);
    // Rows in parallel: each row's result is its own.
    y[..rows * d]
        .par_chunks_mut(d)
        .zip(x[..rows * d].par_chunks(d))
        .zip(save_mean[..rows].par_iter_mut())
        .zip(save_invstd[..rows].par_iter_mut())
        .for_each(|(((yr, xr), mean_out), inv_std_out)| {
            (*mean_out, *inv_std_out) = forward_row(yr, xr, gamma, beta, eps);
        });
}

multiversion! {
    /// One row of the forward: y = γ ⊙ (x − mean)·inv_std + β; returns (mean, inv_std).
    fn forward_row<T> = forward_row_kernel(y: &mut [T], x: &[T], gamma: &[T], beta: &[T], eps: T) -> (T, T);
}

#[inline(always)]
fn forward_row_kernel<T: Element>(y: &mut [T], x: &[T], gamma: &[T], beta: &[T], eps: T) -> (T, T) {
    let df = T::from_f64(x.len() as f64);
    let mut lanes = [T::zero(); WG];
    for chunk in x.chunks(WG) {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = *lane + v;
        }
    }
    let mean = tree(&mut lanes, |a, b| a + b) / df;
    let mut lanes = [T::zero(); WG];
    for chunk in x.chunks(WG) {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            let dev = v - mean;
            *lane = *lane + dev * dev;
        }
    }
    let var = tree(&mut lanes, |a, b| a + b) / df;
    let inv_std = T::one() / (var + eps).sqrt();
    for ((o, &xv), (&g, &b)) in y.iter_mut().zip(x).zip(gamma.iter().zip(beta)) {
        *o = g * ((xv - mean) * inv_std) + b;
    }
    (mean, inv_std)
}

/// Row lanes of the dγ, dβ column sums (`P_LANES` in shaders/layernorm.wgsl).
pub const PARAM_LANES: usize = 8;

/// Columns of dγ, dβ summed together (one task's stack arrays).
const PARAM_BLOCK: usize = 64;

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
    if d == 0 {
        return;
    }
    let gamma = &gamma[..d];
    let (x, dy) = (&x[..rows * d], &dy[..rows * d]);
    // Rows in parallel: each row's dx is its own.
    dx[..rows * d]
        .par_chunks_mut(d)
        .zip(x.par_chunks(d).zip(dy.par_chunks(d)))
        .zip(save_mean[..rows].par_iter().zip(&save_invstd[..rows]))
        .for_each(|((dxr, (xr, dyr)), (&mean, &inv_std))| {
            input_gradient_row(dxr, xr, dyr, gamma, [mean, inv_std]);
        });
    // dγ, dβ: blocks of columns in parallel, each summed down the rows in stack arrays (no
    // allocation); every row is read along its length (the column walk read a value per
    // cache line).
    dgamma[..d]
        .par_chunks_mut(PARAM_BLOCK)
        .zip(dbeta[..d].par_chunks_mut(PARAM_BLOCK))
        .enumerate()
        .for_each(|(block, (dg, db))| {
            let columns = block * PARAM_BLOCK..block * PARAM_BLOCK + dg.len();
            let (sum_dy, sum_dy_xhat) =
                parameter_block_sums(x, dy, save_mean, save_invstd, d, columns);
            for ((g, b), (&s_dy, &s_dy_xhat)) in dg
                .iter_mut()
                .zip(db.iter_mut())
                .zip(sum_dy.iter().zip(&sum_dy_xhat))
            {
                if accumulate {
                    *g = *g + s_dy_xhat;
                    *b = *b + s_dy;
                } else {
                    *g = s_dy_xhat;
                    *b = s_dy;
                }
            }
        });
}

multiversion! {
    /// One row of dx = (inv_std/d)·(d·g − Σg − x̂·Σ g·x̂), g = γ ⊙ dy, x̂ = (x − mean)·inv_std;
    /// `stats` = [mean, inv_std].
    fn input_gradient_row<T> = input_gradient_row_kernel(dx: &mut [T], x: &[T], dy: &[T], gamma: &[T], stats: [T; 2]) -> ();
}

#[inline(always)]
fn input_gradient_row_kernel<T: Element>(
    dx: &mut [T],
    x: &[T],
    dy: &[T],
    gamma: &[T],
    [mean, inv_std]: [T; 2],
) {
    let df = T::from_f64(x.len() as f64);
    // Lane t's two sums, one array each (so that a chunk's loop vectorizes).
    let (mut sum_g, mut sum_g_xhat) = ([T::zero(); WG], [T::zero(); WG]);
    for ((xc, dyc), gc) in x.chunks(WG).zip(dy.chunks(WG)).zip(gamma.chunks(WG)) {
        let lanes = sum_g.iter_mut().zip(sum_g_xhat.iter_mut());
        for ((a, b), ((&xv, &dyv), &gv)) in lanes.zip(xc.iter().zip(dyc).zip(gc)) {
            let g = gv * dyv;
            *a = *a + g;
            *b = *b + g * ((xv - mean) * inv_std);
        }
    }
    let sum_g = tree(&mut sum_g, |a, b| a + b);
    let sum_g_xhat = tree(&mut sum_g_xhat, |a, b| a + b);
    let k = inv_std / df;
    for (o, ((&xv, &dyv), &gv)) in dx.iter_mut().zip(x.iter().zip(dy).zip(gamma)) {
        let xhat = (xv - mean) * inv_std;
        *o = k * (df * (gv * dyv) - sum_g - xhat * sum_g_xhat);
    }
}

multiversion! {
    /// (Σ dy, Σ dy·x̂) of `columns` (at most PARAM_BLOCK) in the device's order: row lane l
    /// sums rows r ≡ l (mod PARAM_LANES) in order, then lane l absorbs lane l + half for
    /// half = 4, 2, 1.
    fn parameter_block_sums<T> = parameter_block_sums_kernel(
        x: &[T],
        dy: &[T],
        save_mean: &[T],
        save_invstd: &[T],
        d: usize,
        columns: std::ops::Range<usize>,
    ) -> ([T; PARAM_BLOCK], [T; PARAM_BLOCK]);
}

#[inline(always)]
fn parameter_block_sums_kernel<T: Element>(
    x: &[T],
    dy: &[T],
    save_mean: &[T],
    save_invstd: &[T],
    d: usize,
    columns: std::ops::Range<usize>,
) -> ([T; PARAM_BLOCK], [T; PARAM_BLOCK]) {
    let width = columns.len();
    // Lane l's two sums, one array each (so that a row's loop vectorizes).
    let mut sum_dy = [[T::zero(); PARAM_BLOCK]; PARAM_LANES];
    let mut sum_dy_xhat = [[T::zero(); PARAM_BLOCK]; PARAM_LANES];
    let rows = x.len() / d;
    for r in 0..rows {
        let (mean, inv_std) = (save_mean[r], save_invstd[r]);
        let at = r * d + columns.start;
        let values = x[at..at + width].iter().zip(&dy[at..at + width]);
        let lane = r % PARAM_LANES;
        let lanes = sum_dy[lane].iter_mut().zip(sum_dy_xhat[lane].iter_mut());
        for ((a, b), (&xv, &g)) in lanes.zip(values) {
            *a = *a + g;
            *b = *b + g * ((xv - mean) * inv_std);
        }
    }
    merge_row_lanes(&mut sum_dy, width, |a, b| a + b);
    merge_row_lanes(&mut sum_dy_xhat, width, |a, b| a + b);
    (sum_dy[0], sum_dy_xhat[0])
}

#[cfg(test)]
mod tests {
    //! The twin as first written (one row after another, the parameter sums walking each
    //! column down the rows), kept as the reference the parallel twin must reproduce bit
    //! for bit.
    use super::*;

    /// Σ_{m < count} value(m) in the order of the shaders' workgroup reduction: lane t sums
    /// m = t, t + WG, t + 2·WG, … in order, then the WG lane sums are combined by a tree,
    /// lane[t] += lane[t + stride] for stride = WG/2, …, 1.
    fn workgroup_sum<T: Element>(count: usize, mut value: impl FnMut(usize) -> T) -> T {
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

    /// x, y: [rows, d]; gamma, beta: [d]; save_mean, save_invstd: [rows].
    #[allow(clippy::too_many_arguments)]
    fn reference_forward<T: Element>(
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

    /// x, dy, dx: [rows, d]; gamma, dgamma, dbeta: [d]; save_mean, save_invstd: [rows]. dx is
    /// overwritten; dγ and dβ are overwritten, or added to when `accumulate`.
    #[allow(clippy::too_many_arguments)]
    fn reference_backward<T: Element>(
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

    fn same_bits(what: &str, got: &[f32], want: &[f32]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{what}[{i}]: {g}, want {w}");
        }
    }

    /// Rows and widths around the column block, the row lanes and the row sums' WG-element
    /// chunks, accumulating or not.
    #[test]
    fn parallel_twin_gives_the_bits_of_the_row_by_row_twin() {
        let mut rng = crate::rng::Rng::new(9);
        for (rows, d) in [
            (1, 1),
            (3, 5),
            (9, 64),
            (17, 65),
            (40, 300),
            (130, 7),
            (5, 256),
            (3, 257),
            (2, 1100),
        ] {
            let mut v = |n: usize, offset: f64| -> Vec<f32> {
                (0..n)
                    .map(|_| (offset + 2.0 * (rng.uniform() - 0.5)) as f32)
                    .collect()
            };
            let (x, dy, gamma, beta) = (v(rows * d, 3.0), v(rows * d, 0.0), v(d, 1.0), v(d, 0.0));
            let what = format!("rows {rows} d {d}");
            let (mut y, mut m, mut s) = (vec![0f32; rows * d], vec![0f32; rows], vec![0f32; rows]);
            let (mut ry, mut rm, mut rs) = (y.clone(), m.clone(), s.clone());
            layernorm_forward(&x, &gamma, &beta, &mut y, &mut m, &mut s, rows, d, 1e-5);
            reference_forward(&x, &gamma, &beta, &mut ry, &mut rm, &mut rs, rows, d, 1e-5);
            same_bits(&format!("y {what}"), &y, &ry);
            same_bits(&format!("mean {what}"), &m, &rm);
            same_bits(&format!("inv_std {what}"), &s, &rs);
            for accumulate in [false, true] {
                let mut dx = vec![0f32; rows * d];
                let (mut dg, mut db) = (vec![0.5f32; d], vec![0.25f32; d]);
                let (mut rdx, mut rdg, mut rdb) = (dx.clone(), dg.clone(), db.clone());
                layernorm_backward(
                    &x, &gamma, &dy, &m, &s, &mut dx, &mut dg, &mut db, rows, d, accumulate,
                );
                reference_backward(
                    &x, &gamma, &dy, &m, &s, &mut rdx, &mut rdg, &mut rdb, rows, d, accumulate,
                );
                same_bits(&format!("dx {what}"), &dx, &rdx);
                same_bits(&format!("dgamma {what}"), &dg, &rdg);
                same_bits(&format!("dbeta {what}"), &db, &rdb);
            }
        }
    }
}
