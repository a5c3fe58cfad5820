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
//! so that the lanes are vector lanes. The column sums of dγ and dβ run in the shader's order
//! too: eight row lanes, each over a contiguous range of rows in order, then a tree; the
//! backward is one pass in which each lane forms its rows' dx and adds each row's terms to
//! its sums.

use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::aligned::AlignedBuf;
use crate::cpu::batchnorm::{WG, tree};

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

/// Row lanes of the dγ, dβ column sums (`P_LANES` in shaders/layernorm.wgsl): lane l sums
/// the rows of its own contiguous range (`lane_rows`) in order, then lane l absorbs lane
/// l + half for half = 4, 2, 1.
pub const PARAM_LANES: usize = 8;

/// Lane l's rows of `rows`: rows/8 each, the first rows % 8 lanes one more (as the shader
/// splits them).
fn lane_rows(l: usize, rows: usize) -> std::ops::Range<usize> {
    let (q, rem) = (rows / PARAM_LANES, rows % PARAM_LANES);
    let start = l * q + l.min(rem);
    start..start + q + usize::from(l < rem)
}

/// Values of the scratch `layernorm_backward_with` takes for a width of d: every lane's
/// (Σ dy, Σ dy·x̂) per column.
fn backward_scratch_len(d: usize) -> usize {
    2 * PARAM_LANES * d
}

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
    let mut scratch = AlignedBuf::default();
    layernorm_backward_with(
        x,
        gamma,
        dy,
        save_mean,
        save_invstd,
        dx,
        dgamma,
        dbeta,
        rows,
        d,
        accumulate,
        &mut scratch,
    );
}

/// `layernorm_backward` with the row lanes' column sums in `scratch` (grown to
/// `backward_scratch_len(d)` if shorter; its contents on entry do not matter), so that a
/// caller that keeps it allocates nothing per step.
///
/// One pass: each row lane is a task that walks its rows in order, forming each row's dx
/// and adding the row's (dy, dy·x̂) to the lane's column sums while the row is in cache.
/// Taken as a pass of their own, the column sums read x and dy from memory a second time
/// (4.8–5.3 ms against PyTorch's 2.5–3.0 for 4096 × 1024 on one core, BENCHMARKS.md).
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward_with<T: Element>(
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
    scratch: &mut AlignedBuf<T>,
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
    scratch.grow(backward_scratch_len(d));
    let lanes = &mut scratch[..backward_scratch_len(d)];
    // Each lane's rows: dx, and the lane's [Σ dy | Σ dy·x̂] over its rows.
    let mut row_parts: [&mut [T]; PARAM_LANES] = Default::default();
    let mut rest = &mut dx[..rows * d];
    for (l, part) in row_parts.iter_mut().enumerate() {
        let (head, tail) = rest.split_at_mut(lane_rows(l, rows).len() * d);
        *part = head;
        rest = tail;
    }
    lanes
        .par_chunks_mut(2 * d)
        .zip(row_parts.into_par_iter())
        .enumerate()
        .for_each(|(l, (sums, dx_rows))| {
            sums.fill(T::zero());
            let (sum_dy, sum_dy_xhat) = sums.split_at_mut(d);
            for (r, dxr) in lane_rows(l, rows).zip(dx_rows.chunks_mut(d)) {
                let at = r * d;
                let stats = [save_mean[r], save_invstd[r]];
                let (xr, dyr) = (&x[at..at + d], &dy[at..at + d]);
                backward_row(dxr, xr, dyr, gamma, stats, sum_dy, sum_dy_xhat);
            }
        });
    // The lanes' tree: lane l += lane l + half for half = 4, 2, 1, every column at once.
    let mut half = PARAM_LANES / 2;
    while half > 0 {
        let (low, high) = lanes.split_at_mut(half * 2 * d);
        for (a, &b) in low.iter_mut().zip(&high[..half * 2 * d]) {
            *a = *a + b;
        }
        half /= 2;
    }
    let (sum_dy, sum_dy_xhat) = lanes[..2 * d].split_at(d);
    let sums = sum_dy.iter().zip(sum_dy_xhat);
    for ((g, b), (&s_dy, &s_dy_xhat)) in dgamma[..d].iter_mut().zip(&mut dbeta[..d]).zip(sums) {
        if accumulate {
            *g = *g + s_dy_xhat;
            *b = *b + s_dy;
        } else {
            *g = s_dy_xhat;
            *b = s_dy;
        }
    }
}

multiversion! {
    /// One row of the backward: dx = (inv_std/d)·(d·g − Σg − x̂·Σ g·x̂), g = γ ⊙ dy, x̂ = (x −
    /// mean)·inv_std, `stats` = [mean, inv_std]; and the row's dy and dy·x̂ added to the
    /// lane's column sums.
    fn backward_row<T> = backward_row_kernel(
        dx: &mut [T],
        x: &[T],
        dy: &[T],
        gamma: &[T],
        stats: [T; 2],
        sum_dy: &mut [T],
        sum_dy_xhat: &mut [T],
    ) -> ();
}

#[inline(always)]
fn backward_row_kernel<T: Element>(
    dx: &mut [T],
    x: &[T],
    dy: &[T],
    gamma: &[T],
    [mean, inv_std]: [T; 2],
    sum_dy: &mut [T],
    sum_dy_xhat: &mut [T],
) {
    let df = T::from_f64(x.len() as f64);
    // Lane t's two row sums, one array each (so that a chunk's loop vectorizes).
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
    let columns = sum_dy.iter_mut().zip(sum_dy_xhat.iter_mut());
    let values = x.iter().zip(dy).zip(gamma);
    for ((o, (c_dy, c_dy_xhat)), ((&xv, &dyv), &gv)) in dx.iter_mut().zip(columns).zip(values) {
        let xhat = (xv - mean) * inv_std;
        *o = k * (df * (gv * dyv) - sum_g - xhat * sum_g_xhat);
        *c_dy = *c_dy + dyv;
        *c_dy_xhat = *c_dy_xhat + dyv * xhat;
    }
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
        // dγ, dβ: the device's order. Row lane l sums the rows of its range in order, then
        // lane l absorbs lane l + half for half = 4, 2, 1.
        for j in 0..d {
            let mut lanes = [(T::zero(), T::zero()); PARAM_LANES];
            for (l, lane) in lanes.iter_mut().enumerate() {
                for r in lane_rows(l, rows) {
                    let i = r * d + j;
                    let xhat = (x[i] - save_mean[r]) * save_invstd[r];
                    lane.0 = lane.0 + dy[i];
                    lane.1 = lane.1 + dy[i] * xhat;
                }
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

    /// The row lanes cover every row once, in order, with sizes differing by at most one.
    #[test]
    fn row_lanes_split_the_rows_in_order() {
        for rows in [0, 1, 7, 8, 9, 63, 4096, 4101] {
            let ranges: Vec<_> = (0..PARAM_LANES).map(|l| lane_rows(l, rows)).collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[PARAM_LANES - 1].end, rows);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "rows {rows}");
                assert!(pair[0].len() >= pair[1].len() && pair[0].len() <= pair[1].len() + 1);
            }
        }
    }
}
