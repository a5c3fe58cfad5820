//! Dropout: the counter-based mask bit-identical on GPU and CPU, its keep fraction, its
//! dependence on the step only, p = 0 as identity, the backward against central
//! differences, and the refusal of p outside [0, 1).

mod common;

use common::{assert_close, assert_close_f64, random_vec, random_vec_f64};
use gradscope::cpu::dropout as cd;
use gradscope::gpu::kernels::dropout as gd;

/// Element counts: 1, primes, not multiples of the workgroup (256), a few workgroups.
const LENS: &[usize] = &[1, 7, 13, 127, 257, 1000, 4099];

#[test]
fn gpu_mask_and_values_match_cpu_bit_for_bit() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &len) in LENS.iter().enumerate() {
        for &p in &[0.0f32, 0.1, 0.5, 0.9] {
            for &(seed, step) in &[(0u32, 0u32), (1234, 1), (0xdead_beef, 77_777)] {
                let s = 500 + i as u64;
                // Inputs away from zero, so a dropped element (0) and a kept one differ.
                let x: Vec<f32> = random_vec(s, len, 0.5, 2.0);
                let dy: Vec<f32> = random_vec(s + 1000, len, -2.0, -0.5);
                let mut y = vec![0.0f32; len];
                let mut dx = vec![0.0f32; len];
                cd::dropout_forward(&x, &mut y, p, seed, step);
                cd::dropout_backward(&dy, &mut dx, p, seed, step);

                let stepb = ctx.uniform("step", &gd::DropoutStep::new(step)).unwrap();
                let xb = ctx.upload("x", &x).unwrap();
                let yb = ctx.upload("y", &vec![9.0f32; len]).unwrap();
                let dyb = ctx.upload("dy", &dy).unwrap();
                let dxb = ctx.upload("dx", &vec![9.0f32; len]).unwrap();
                let f = gd::dropout_forward(ctx, &xb, &yb, len, p, seed, &stepb).unwrap();
                let b = gd::dropout_backward(ctx, &dyb, &dxb, len, p, seed, &stepb).unwrap();
                ctx.run(&[&f, &b]).unwrap();
                let what = format!("len {len} p {p} seed {seed} step {step}");
                // One f32 multiply by the same f32 scale on both sides: exact, and bit
                // equality of the values is bit equality of the masks.
                let gy: Vec<f32> = ctx.read(&yb, len).unwrap();
                let gdx: Vec<f32> = ctx.read(&dxb, len).unwrap();
                assert_eq!(
                    gy.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "forward {what}"
                );
                assert_eq!(
                    gdx.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    dx.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "backward {what}"
                );
                // And the forward and backward masks agree.
                for j in 0..len {
                    assert_eq!(y[j] == 0.0, dx[j] == 0.0, "mask differs at {j}, {what}");
                }
            }
        }
    }
}

#[test]
fn rewriting_the_step_uniform_changes_the_gpu_mask() {
    let Some(ctx) = common::gpu() else { return };
    let (len, p, seed) = (1000usize, 0.5f32, 42u32);
    let x = vec![1.0f32; len];
    let stepb = ctx.uniform("step", &gd::DropoutStep::new(3)).unwrap();
    let xb = ctx.upload("x", &x).unwrap();
    let yb = ctx.storage_buffer("y", 4 * len as u64).unwrap();
    // Built once; only the step uniform changes between runs, as in the executor.
    let f = gd::dropout_forward(ctx, &xb, &yb, len, p, seed, &stepb).unwrap();
    for step in [3u32, 4, 3] {
        ctx.write(&stepb, bytemuck::bytes_of(&gd::DropoutStep::new(step)));
        ctx.run(&[&f]).unwrap();
        let got: Vec<f32> = ctx.read(&yb, len).unwrap();
        let mut want = vec![0.0f32; len];
        cd::dropout_forward(&x, &mut want, p, seed, step);
        assert_close(&format!("step {step}"), &got, &want, 0.0, 0.0);
    }
}

#[test]
fn keep_fraction_is_one_minus_p() {
    let n = 200_000u32;
    for &p in &[0.05f32, 0.2, 0.5, 0.8, 0.95] {
        for &(seed, step) in &[(0u32, 0u32), (7, 1), (7, 2), (99, 123_456)] {
            let kept = (0..n).filter(|&i| cd::kept(p, seed, step, i)).count() as f64;
            let q = 1.0 - p as f64;
            // Binomial standard deviation √(n·q·(1−q)); 5σ makes a false failure
            // vanishingly rare while a biased hash (even 1% off) fails.
            let sd = (n as f64 * q * (1.0 - q)).sqrt();
            assert!(
                (kept - n as f64 * q).abs() < 5.0 * sd,
                "p {p} seed {seed} step {step}: kept {kept} of {n}, expected {} ± {}",
                n as f64 * q,
                5.0 * sd
            );
        }
    }
    // p = 0 keeps everything.
    assert!((0..10_000).all(|i| cd::kept(0.0, 5, 6, i)));
}

#[test]
fn masks_depend_on_step_and_seed_only() {
    let n = 10_000u32;
    let mask = |seed, step| -> Vec<bool> { (0..n).map(|i| cd::kept(0.5, seed, step, i)).collect() };
    assert_eq!(mask(1, 5), mask(1, 5), "same step, same mask");
    let base = mask(1, 5);
    for (seed, step) in [(1, 6), (1, 4), (2, 5), (0, 5), (1, 0)] {
        let other = mask(seed, step);
        let same = base.iter().zip(&other).filter(|(a, b)| a == b).count() as f64;
        // Independent masks at p = 0.5 agree on half the elements (sd 50 of 10000).
        assert!(
            (same - 5000.0).abs() < 300.0,
            "seed {seed} step {step}: agrees with (1, 5) on {same} of {n}"
        );
    }
    // Neighbouring steps are not shifted copies of each other.
    let next = mask(1, 6);
    for shift in 1..50 {
        let same = (0..(n - shift) as usize)
            .filter(|&i| base[i + shift as usize] == next[i])
            .count();
        assert!(same < 5300, "step 6 looks like step 5 shifted by {shift}");
    }
}

#[test]
fn p_zero_is_identity_and_values_are_inverted_dropout() {
    let x = random_vec_f64(1, 1000, -3.0, 3.0);
    let mut y = vec![0.0; 1000];
    cd::dropout_forward(&x, &mut y, 0.0, 3, 4);
    assert_eq!(y, x);
    let p = 0.3f32;
    cd::dropout_forward(&x, &mut y, p, 3, 4);
    for i in 0..1000 {
        let want = if cd::kept(p, 3, 4, i as u32) {
            x[i] / (1.0 - p as f64)
        } else {
            0.0
        };
        assert!(
            (y[i] - want).abs() <= 1e-15 * want.abs(),
            "element {i}: {} vs {want}",
            y[i]
        );
    }
}

#[test]
fn backward_matches_finite_differences() {
    // L = Σ y·g with y = x·m/(1 − p): linear in x, so central differences are exact up to
    // rounding (~1e-16·|L|/eps).
    let (len, p, seed, step) = (257usize, 0.4f32, 11u32, 3u32);
    let x = random_vec_f64(20, len, -2.0, 2.0);
    let g = random_vec_f64(21, len, -1.0, 1.0);
    let loss = |x: &[f64]| {
        let mut y = vec![0.0; len];
        cd::dropout_forward(x, &mut y, p, seed, step);
        y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
    };
    let mut dx = vec![0.0; len];
    cd::dropout_backward(&g, &mut dx, p, seed, step);
    let eps = 1e-6;
    let mut xp = x.clone();
    let numeric: Vec<f64> = (0..len)
        .map(|i| {
            let v = xp[i];
            xp[i] = v + eps;
            let lp = loss(&xp);
            xp[i] = v - eps;
            let lm = loss(&xp);
            xp[i] = v;
            (lp - lm) / (2.0 * eps)
        })
        .collect();
    assert_close_f64("dropout dx", &dx, &numeric, 1e-8, 1e-6);
}

#[test]
fn p_outside_unit_interval_is_refused() {
    for p in [-0.1f32, 1.0, 1.5, f32::NAN, f32::INFINITY] {
        let e = cd::validate_p("block3.drop", p).expect_err(&format!("p {p} accepted"));
        assert!(e.to_string().contains("block3.drop"), "{e}");
    }
    for p in [0.0f32, 0.5, 0.999] {
        cd::validate_p("ok", p).unwrap();
    }
    let Some(ctx) = common::gpu() else { return };
    let stepb = ctx.uniform("step", &gd::DropoutStep::new(0)).unwrap();
    let xb = ctx.upload("x", &[1.0f32; 4]).unwrap();
    let yb = ctx.upload("y", &[1.0f32; 4]).unwrap();
    assert!(gd::dropout_forward(ctx, &xb, &yb, 4, 1.0, 0, &stepb).is_err());
    assert!(gd::dropout_forward(ctx, &xb, &yb, 5, 0.5, 0, &stepb).is_err());
    let tiny = ctx.upload("tiny", &[0u32]).unwrap();
    assert!(gd::dropout_forward(ctx, &xb, &yb, 4, 0.5, 0, &tiny).is_err());
}
