//! Bias add and its gradient: GPU against the CPU twin on awkward shapes, and the CPU
//! gradient against central differences in f64.

mod common;

use common::{assert_close, assert_close_f64, random_vec, random_vec_f64};
use gradscope::cpu;
use gradscope::gpu::kernels::bias;

/// (rows, cols): size 1, primes, sizes that are not multiples of the workgroup (256), and
/// more columns than one workgroup holds.
const SHAPES: &[(usize, usize)] = &[
    (1, 1),
    (1, 7),
    (7, 1),
    (13, 31),
    (127, 3),
    (3, 257),
    (1000, 37),
    (2, 600),
];

#[test]
fn bias_forward_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &(rows, cols)) in SHAPES.iter().enumerate() {
        let seed = 100 + i as u64;
        let y0 = random_vec(seed, rows * cols, -2.0, 2.0);
        let b = random_vec(seed + 1000, cols, -1.0, 1.0);
        let mut want = y0.clone();
        cpu::bias::bias_forward(&mut want, &b, rows, cols);

        let yb = ctx.upload("y", &y0).unwrap();
        let bb = ctx.upload("bias", &b).unwrap();
        let d = bias::bias_forward(ctx, &yb, &bb, rows, cols).unwrap();
        ctx.run(&[&d]).unwrap();
        let got: Vec<f32> = ctx.read(&yb, rows * cols).unwrap();
        // One f32 addition, the same on both sides: exact.
        assert_close(
            &format!("bias_forward seed {seed} shape {rows}x{cols}"),
            &got,
            &want,
            0.0,
            0.0,
        );
    }
}

#[test]
fn bias_backward_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &(rows, cols)) in SHAPES.iter().enumerate() {
        for accumulate in [false, true] {
            let seed = 200 + i as u64;
            let dy = random_vec(seed, rows * cols, -1.0, 1.0);
            let db0 = random_vec(seed + 1000, cols, -1.0, 1.0);
            let mut want = db0.clone();
            cpu::bias::bias_backward(&dy, &mut want, rows, cols, accumulate);

            let dyb = ctx.upload("dy", &dy).unwrap();
            let dbb = ctx.upload("db", &db0).unwrap();
            let d = bias::bias_backward(ctx, &dyb, &dbb, rows, cols, accumulate).unwrap();
            ctx.run(&[&d]).unwrap();
            let got: Vec<f32> = ctx.read(&dbb, cols).unwrap();
            // Same summation order on both sides, additions only: exact barring a driver
            // that reorders float additions, which would itself be worth knowing about.
            assert_close(
                &format!("bias_backward seed {seed} shape {rows}x{cols} accumulate {accumulate}"),
                &got,
                &want,
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn bias_backward_accumulates_and_overwrites() {
    // A hand-checked case: dy = [[1, 2], [3, 4], [5, 6]] sums to [9, 12].
    let dy = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let mut db = [100.0f32, -100.0];
    cpu::bias::bias_backward(&dy, &mut db, 3, 2, true);
    assert_eq!(db, [109.0, -88.0]);
    cpu::bias::bias_backward(&dy, &mut db, 3, 2, false);
    assert_eq!(db, [9.0, 12.0]);
}

#[test]
fn bias_launchers_refuse_bad_shapes() {
    let Some(ctx) = common::gpu() else { return };
    let y = ctx.storage_buffer("y", 4 * 12).unwrap();
    let b = ctx.storage_buffer("bias", 4 * 3).unwrap();
    // y holds 12 elements, the shape asks for 13 × 3.
    let e = bias::bias_forward(ctx, &y, &b, 13, 3).unwrap_err();
    assert!(e.to_string().contains("`y`"), "{e}");
    let e = bias::bias_backward(ctx, &y, &b, 3, 4, false).unwrap_err();
    assert!(e.to_string().contains("`db`"), "{e}");
    let e = bias::bias_forward(ctx, &y, &y, 3, 4).unwrap_err();
    assert!(e.to_string().contains("same buffer"), "{e}");
}

/// Central differences in f64 of L = Σ w ⊙ (y + bias) with respect to bias, against
/// bias_backward(w). L is linear in bias, so the difference quotient is exact up to
/// rounding: with eps 1e-6 and |L| ~ 10, rounding error is ~1e-16·10/1e-6 ≈ 1e-9.
#[test]
fn bias_backward_matches_central_differences() {
    for (i, &(rows, cols)) in [(1usize, 1usize), (7, 3), (13, 5)].iter().enumerate() {
        let seed = 300 + i as u64;
        let y = random_vec_f64(seed, rows * cols, -1.0, 1.0);
        let w = random_vec_f64(seed + 1, rows * cols, -1.0, 1.0);
        let b = random_vec_f64(seed + 2, cols, -1.0, 1.0);
        let loss = |b: &[f64]| {
            let mut out = y.clone();
            cpu::bias::bias_forward(&mut out, b, rows, cols);
            out.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut db = vec![0.0; cols];
        cpu::bias::bias_backward(&w, &mut db, rows, cols, false);
        let eps = 1e-6;
        let numeric: Vec<f64> = (0..cols)
            .map(|c| {
                let mut p = b.clone();
                p[c] += eps;
                let mut m = b.clone();
                m[c] -= eps;
                (loss(&p) - loss(&m)) / (2.0 * eps)
            })
            .collect();
        assert_close_f64(
            &format!("bias_backward vs central differences seed {seed} shape {rows}x{cols}"),
            &db,
            &numeric,
            1e-8,
            1e-7,
        );
    }
}
