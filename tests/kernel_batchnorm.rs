//! Batch normalization (training forward, evaluation forward, backward): GPU against the CPU
//! twin on awkward shapes, the CPU backward against central differences in f64, the running
//! statistics over three steps against a direct formula, and everything against JAX float64
//! golden values (tests/golden/make_norm_golden.py) written with PyTorch's semantics.

mod common;

use common::{assert_close, assert_close_f64, random_vec, random_vec_f64};
use gradscope::cpu;
use gradscope::gpu::GpuContext;
use gradscope::gpu::kernels::batchnorm as bn;
use serde_json::Value;

const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

/// (n, c, s): batch 1 with spatial positions, one channel, s = 1 (BatchNorm1d) with more
/// rows than a workgroup has lanes, primes, s = 32·32, and channels beyond one workgroup's
/// worth of lanes; channels cut into several runs (3 whole ones; 2 with a short last one;
/// 256 runs of 4097 with a short last one, where the run length grows past its minimum).
/// n·s ≥ 2 always (training needs it).
const SHAPES: &[(usize, usize, usize)] = &[
    (2, 1, 1),
    (1, 3, 7),
    (7, 13, 1),
    (13, 5, 31),
    (3, 2, 257),
    (4, 3, 1024),
    (300, 2, 1),
    (2, 300, 3),
    (3, 3, 4096),
    (5, 2, 1000),
    (2, 1, 524_291),
];

/// CPU f32 state of one batch-norm layer: outputs, saved statistics, running statistics.
#[derive(Clone)]
struct CpuTrain<T> {
    y: Vec<T>,
    mean: Vec<T>,
    inv_std: Vec<T>,
    rm: Vec<T>,
    rv: Vec<T>,
}

fn cpu_train<T: cpu::Element>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    rm: &[T],
    rv: &[T],
    (n, c, s): (usize, usize, usize),
) -> CpuTrain<T> {
    let mut st = CpuTrain {
        y: vec![T::zero(); n * c * s],
        mean: vec![T::zero(); c],
        inv_std: vec![T::zero(); c],
        rm: rm.to_vec(),
        rv: rv.to_vec(),
    };
    cpu::batchnorm::batchnorm_forward_train(
        x,
        gamma,
        beta,
        &mut st.y,
        &mut st.mean,
        &mut st.inv_std,
        &mut st.rm,
        &mut st.rv,
        n,
        c,
        s,
        EPS,
        MOMENTUM,
        None,
    );
    st
}

struct GpuTrain {
    y: wgpu::Buffer,
    mean: wgpu::Buffer,
    inv_std: wgpu::Buffer,
    rm: wgpu::Buffer,
    rv: wgpu::Buffer,
    x: wgpu::Buffer,
    gamma: wgpu::Buffer,
    beta: wgpu::Buffer,
}

fn gpu_layer(
    ctx: &GpuContext,
    gamma: &[f32],
    beta: &[f32],
    rm: &[f32],
    rv: &[f32],
    (n, c, s): (usize, usize, usize),
) -> GpuTrain {
    let len = (n * c * s) as u64 * 4;
    GpuTrain {
        y: ctx.storage_buffer("y", len).unwrap(),
        mean: ctx.storage_buffer("mean", c as u64 * 4).unwrap(),
        inv_std: ctx.storage_buffer("inv_std", c as u64 * 4).unwrap(),
        rm: ctx.upload("rm", rm).unwrap(),
        rv: ctx.upload("rv", rv).unwrap(),
        x: ctx.storage_buffer("x", len).unwrap(),
        gamma: ctx.upload("gamma", gamma).unwrap(),
        beta: ctx.upload("beta", beta).unwrap(),
    }
}

/// One training forward on the GPU with input x; returns (y, mean, inv_std, rm, rv).
fn gpu_step(
    ctx: &GpuContext,
    g: &GpuTrain,
    x: &[f32],
    shape: (usize, usize, usize),
) -> CpuTrain<f32> {
    let (n, c, s) = shape;
    ctx.write(&g.x, bytemuck::cast_slice(x));
    let d = bn::batchnorm_forward_train(
        ctx,
        &g.x,
        &g.gamma,
        &g.beta,
        &g.y,
        &g.mean,
        &g.inv_std,
        &g.rm,
        &g.rv,
        n,
        c,
        s,
        EPS as f32,
        MOMENTUM as f32,
        None,
    )
    .unwrap();
    ctx.run(&d.iter().collect::<Vec<_>>()).unwrap();
    CpuTrain {
        y: ctx.read(&g.y, n * c * s).unwrap(),
        mean: ctx.read(&g.mean, c).unwrap(),
        inv_std: ctx.read(&g.inv_std, c).unwrap(),
        rm: ctx.read(&g.rm, c).unwrap(),
        rv: ctx.read(&g.rv, c).unwrap(),
    }
}

fn compare(what: &str, got: &CpuTrain<f32>, want: &CpuTrain<f32>, tol: f32) {
    assert_close(&format!("{what}: y"), &got.y, &want.y, tol, tol);
    assert_close(&format!("{what}: mean"), &got.mean, &want.mean, tol, tol);
    assert_close(
        &format!("{what}: inv_std"),
        &got.inv_std,
        &want.inv_std,
        tol,
        tol,
    );
    assert_close(
        &format!("{what}: running_mean"),
        &got.rm,
        &want.rm,
        tol,
        tol,
    );
    assert_close(&format!("{what}: running_var"), &got.rv, &want.rv, tol, tol);
}

/// GPU against CPU over three training steps of one layer (so the running statistics are
/// compared after 1, 2 and 3 updates). Both sum in the same order; what may differ is the
/// driver's sqrt and its fusing of a·b + c, a few ulps: 1e-5 relative.
#[test]
fn batchnorm_forward_train_gpu_matches_cpu_over_three_steps() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &(n, c, s)) in SHAPES.iter().enumerate() {
        let seed = 1000 + i as u64;
        let shape = (n, c, s);
        let gamma = random_vec(seed + 1, c, 0.5, 1.5);
        let beta = random_vec(seed + 2, c, -0.5, 0.5);
        let rm0 = vec![0.0f32; c];
        let rv0 = vec![1.0f32; c];
        let g = gpu_layer(ctx, &gamma, &beta, &rm0, &rv0, shape);
        let (mut rm, mut rv) = (rm0, rv0);
        for step in 0..3u64 {
            // An offset and scale per step, so the statistics move.
            let x: Vec<f32> = random_vec(seed * 10 + step, n * c * s, -2.0, 2.0)
                .iter()
                .map(|v| v * (1.0 + step as f32) + step as f32)
                .collect();
            let want = cpu_train(&x, &gamma, &beta, &rm, &rv, shape);
            let got = gpu_step(ctx, &g, &x, shape);
            compare(
                &format!("batchnorm_forward_train seed {seed} shape {n}x{c}x{s} step {step}"),
                &got,
                &want,
                1e-5,
            );
            rm = want.rm;
            rv = want.rv;
        }
    }
}

#[test]
fn batchnorm_forward_eval_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &(n, c, s)) in SHAPES.iter().chain(&[(1, 1, 1), (1, 7, 1)]).enumerate() {
        let seed = 2000 + i as u64;
        let len = n * c * s;
        let x = random_vec(seed, len, -2.0, 2.0);
        let gamma = random_vec(seed + 1, c, 0.5, 1.5);
        let beta = random_vec(seed + 2, c, -0.5, 0.5);
        let rm = random_vec(seed + 3, c, -1.0, 1.0);
        let rv = random_vec(seed + 4, c, 0.1, 3.0);
        let mut want = vec![0.0f32; len];
        cpu::batchnorm::batchnorm_forward_eval(
            &x, &gamma, &beta, &rm, &rv, &mut want, n, c, s, EPS, None,
        );
        let xb = ctx.upload("x", &x).unwrap();
        let gb = ctx.upload("gamma", &gamma).unwrap();
        let bb = ctx.upload("beta", &beta).unwrap();
        let rmb = ctx.upload("rm", &rm).unwrap();
        let rvb = ctx.upload("rv", &rv).unwrap();
        let yb = ctx.storage_buffer("y", len as u64 * 4).unwrap();
        let d = bn::batchnorm_forward_eval(
            ctx, &xb, &gb, &bb, &rmb, &rvb, &yb, n, c, s, EPS as f32, None,
        )
        .unwrap();
        ctx.run(&[&d]).unwrap();
        let got: Vec<f32> = ctx.read(&yb, len).unwrap();
        assert_close(
            &format!("batchnorm_forward_eval seed {seed} shape {n}x{c}x{s}"),
            &got,
            &want,
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn batchnorm_backward_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &(n, c, s)) in SHAPES.iter().enumerate() {
        for accumulate in [false, true] {
            let seed = 3000 + i as u64;
            let len = n * c * s;
            let x = random_vec(seed, len, -2.0, 2.0);
            let gamma = random_vec(seed + 1, c, 0.5, 1.5);
            let beta = random_vec(seed + 2, c, -0.5, 0.5);
            let dy = random_vec(seed + 3, len, -1.0, 1.0);
            let dg0 = random_vec(seed + 4, c, -1.0, 1.0);
            let db0 = random_vec(seed + 5, c, -1.0, 1.0);
            let f = cpu_train(&x, &gamma, &beta, &vec![0.0; c], &vec![1.0; c], (n, c, s));
            let mut dx = vec![0.0f32; len];
            let (mut dg, mut db) = (dg0.clone(), db0.clone());
            cpu::batchnorm::batchnorm_backward(
                &x, &gamma, &dy, &f.mean, &f.inv_std, &mut dx, &mut dg, &mut db, n, c, s,
                accumulate,
            );
            let b = |name: &str, v: &[f32]| ctx.upload(name, v).unwrap();
            let (xb, gb, dyb) = (b("x", &x), b("gamma", &gamma), b("dy", &dy));
            let (mb, ib) = (b("mean", &f.mean), b("inv_std", &f.inv_std));
            let (dgb, dbb) = (b("dgamma", &dg0), b("dbeta", &db0));
            let dxb = ctx.storage_buffer("dx", len as u64 * 4).unwrap();
            let d = bn::batchnorm_backward(
                ctx, &xb, &gb, &dyb, &mb, &ib, &dxb, &dgb, &dbb, n, c, s, accumulate, None,
            )
            .unwrap();
            ctx.run(&d.iter().collect::<Vec<_>>()).unwrap();
            let what =
                format!("batchnorm_backward seed {seed} shape {n}x{c}x{s} accumulate {accumulate}");
            // dx is a difference of sums of up to 1200 terms of size ~1: the absolute error
            // scales with the sums, not with dx, hence the atol.
            assert_close(
                &format!("{what}: dx"),
                &ctx.read(&dxb, len).unwrap(),
                &dx,
                1e-4,
                1e-4,
            );
            assert_close(
                &format!("{what}: dgamma"),
                &ctx.read(&dgb, c).unwrap(),
                &dg,
                1e-4,
                1e-5,
            );
            assert_close(
                &format!("{what}: dbeta"),
                &ctx.read(&dbb, c).unwrap(),
                &db,
                1e-5,
                1e-5,
            );
        }
    }
}

/// Central differences in f64 of L = Σ w ⊙ y (Σ y alone is constant in x: Σ x̂ = 0 per
/// channel) with respect to x, γ and β, against batchnorm_backward(dy = w). L is smooth
/// with |L| ~ 10, so with eps 1e-6 the truncation error is ~eps²·|L'''| ≈ 1e-11 and the
/// rounding error ~1e-16·10/1e-6 = 1e-9: tolerance 1e-7.
#[test]
fn batchnorm_backward_matches_central_differences() {
    for (i, &(n, c, s)) in [(2usize, 1usize, 1usize), (5, 3, 1), (3, 2, 5), (1, 2, 7)]
        .iter()
        .enumerate()
    {
        let seed = 4000 + i as u64;
        let len = n * c * s;
        let x = random_vec_f64(seed, len, -2.0, 2.0);
        let gamma = random_vec_f64(seed + 1, c, 0.5, 1.5);
        let beta = random_vec_f64(seed + 2, c, -0.5, 0.5);
        let w = random_vec_f64(seed + 3, len, -1.0, 1.0);
        let (rm, rv) = (vec![0.0; c], vec![1.0; c]);
        let loss = |x: &[f64], g: &[f64], b: &[f64]| {
            let f = cpu_train(x, g, b, &rm, &rv, (n, c, s));
            f.y.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>()
        };
        let f = cpu_train(&x, &gamma, &beta, &rm, &rv, (n, c, s));
        let mut dx = vec![0.0; len];
        let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
        cpu::batchnorm::batchnorm_backward(
            &x, &gamma, &w, &f.mean, &f.inv_std, &mut dx, &mut dg, &mut db, n, c, s, false,
        );
        let h = 1e-6;
        let fd = |v: &[f64], which: usize| -> Vec<f64> {
            (0..v.len())
                .map(|k| {
                    let mut p = v.to_vec();
                    let mut m = v.to_vec();
                    p[k] += h;
                    m[k] -= h;
                    let (lp, lm) = match which {
                        0 => (loss(&p, &gamma, &beta), loss(&m, &gamma, &beta)),
                        1 => (loss(&x, &p, &beta), loss(&x, &m, &beta)),
                        _ => (loss(&x, &gamma, &p), loss(&x, &gamma, &m)),
                    };
                    (lp - lm) / (2.0 * h)
                })
                .collect()
        };
        let what = format!("batchnorm fd seed {seed} shape {n}x{c}x{s}");
        assert_close_f64(&format!("{what}: dx"), &dx, &fd(&x, 0), 1e-7, 1e-6);
        assert_close_f64(&format!("{what}: dgamma"), &dg, &fd(&gamma, 1), 1e-7, 1e-6);
        assert_close_f64(&format!("{what}: dbeta"), &db, &fd(&beta, 2), 1e-7, 1e-6);
        // dx must not be trivially zero (it would be for L = Σ y). With two values per
        // channel x̂ = ±sqrt(var/(var + eps)) ≈ ±1 whatever x is, so dx is ~0 there.
        if n * s > 2 {
            assert!(dx.iter().any(|v| v.abs() > 1e-3), "{what}: dx is ~0");
        }
    }
}

/// The running statistics over three steps against the textbook update, computed here
/// independently (naive sums in f64): rm ← 0.9·rm + 0.1·mean, rv ← 0.9·rv + 0.1·var·M/(M−1).
#[test]
fn batchnorm_running_statistics_follow_torch_over_three_steps() {
    let (n, c, s) = (3usize, 4usize, 5usize);
    let m = (n * s) as f64;
    let gamma = vec![1.0; c];
    let beta = vec![0.0; c];
    let (mut rm, mut rv) = (vec![0.0f64; c], vec![1.0f64; c]);
    let (mut want_rm, mut want_rv) = (rm.clone(), rv.clone());
    for step in 0..3u64 {
        let x = random_vec_f64(5000 + step, n * c * s, -1.0, 3.0);
        let f = cpu_train(&x, &gamma, &beta, &rm, &rv, (n, c, s));
        for ch in 0..c {
            let vals: Vec<f64> = (0..n)
                .flat_map(|ni| (0..s).map(move |si| (ni * c + ch) * s + si))
                .map(|i| x[i])
                .collect();
            let mean = vals.iter().sum::<f64>() / m;
            let var_unbiased = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1.0);
            want_rm[ch] = 0.9 * want_rm[ch] + 0.1 * mean;
            want_rv[ch] = 0.9 * want_rv[ch] + 0.1 * var_unbiased;
        }
        assert_close_f64(
            &format!("running_mean step {step}"),
            &f.rm,
            &want_rm,
            1e-13,
            1e-13,
        );
        assert_close_f64(
            &format!("running_var step {step}"),
            &f.rv,
            &want_rv,
            1e-13,
            1e-13,
        );
        rm = f.rm;
        rv = f.rv;
    }
}

#[test]
fn batchnorm_launchers_refuse_bad_shapes() {
    let Some(ctx) = common::gpu() else { return };
    let buf = |name: &str, elems: u64| ctx.storage_buffer(name, elems * 4).unwrap();
    let (x, y) = (buf("x", 12), buf("y", 12));
    let (g, b, m, i, rm, rv) = (
        buf("g", 3),
        buf("b", 3),
        buf("m", 3),
        buf("i", 3),
        buf("rm", 3),
        buf("rv", 3),
    );
    // One value per channel: torch refuses training-mode batch norm.
    let e = bn::batchnorm_forward_train(
        ctx, &x, &g, &b, &y, &m, &i, &rm, &rv, 1, 3, 1, 1e-5, 0.1, None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("more than one"), "{e}");
    // x holds 12 elements; 2 × 3 × 3 needs 18.
    let e = bn::batchnorm_forward_train(
        ctx, &x, &g, &b, &y, &m, &i, &rm, &rv, 2, 3, 3, 1e-5, 0.1, None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`x`"), "{e}");
    // gamma holds 3 channels, the shape asks for 4.
    let e =
        bn::batchnorm_forward_eval(ctx, &x, &g, &b, &rm, &rv, &y, 3, 4, 1, 1e-5, None).unwrap_err();
    assert!(e.to_string().contains("`gamma`"), "{e}");
    let e =
        bn::batchnorm_forward_eval(ctx, &x, &g, &b, &rm, &rv, &y, 0, 3, 1, 1e-5, None).unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let e = bn::batchnorm_backward(ctx, &x, &g, &x, &m, &i, &y, &rm, &rv, 2, 3, 2, false, None)
        .unwrap_err();
    assert!(e.to_string().contains("same buffer"), "{e}");
    let e = bn::batchnorm_forward_train(
        ctx, &x, &g, &b, &y, &m, &i, &rm, &rv, 2, 3, 2, 1e-5, 1.5, None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("momentum"), "{e}");
}

// ---- golden values (JAX float64, PyTorch semantics) ----

fn golden() -> Value {
    serde_json::from_str(include_str!("golden/norm_golden.json")).expect("golden JSON parses")
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("number array")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// CPU f64 against the golden values: the same formulas in the same precision, so only
/// summation order differs (1e-12). Then CPU f32 and the GPU: inputs are exact in f32, the
/// rest carries f32 rounding of sums of up to 75 values ~2 and of 1/sqrt: 1e-4 (dx 2e-4).
#[test]
fn batchnorm_matches_golden_values() {
    let gold = golden();
    assert_eq!(gold["eps"].as_f64(), Some(EPS));
    assert_eq!(gold["momentum"].as_f64(), Some(MOMENTUM));
    let ctx = common::gpu();
    for case in gold["batchnorm"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let dim = |k: &str| case[k].as_u64().unwrap() as usize;
        let (n, c, s) = (dim("n"), dim("c"), dim("s"));
        let (gamma, beta, w) = (nums(&case["gamma"]), nums(&case["beta"]), nums(&case["w"]));
        let (mut rm, mut rv) = (vec![0.0f64; c], vec![1.0f64; c]);
        let (mut rm32, mut rv32) = (vec![0.0f32; c], vec![1.0f32; c]);
        let gpu = ctx.map(|ctx| {
            gpu_layer(
                ctx,
                &to_f32(&gamma),
                &to_f32(&beta),
                &rm32,
                &rv32,
                (n, c, s),
            )
        });
        for (k, step) in case["steps"].as_array().unwrap().iter().enumerate() {
            let what = format!("golden {name} step {k}");
            let x = nums(&step["x"]);
            // f64
            let f = cpu_train(&x, &gamma, &beta, &rm, &rv, (n, c, s));
            let mut dx = vec![0.0; n * c * s];
            let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
            cpu::batchnorm::batchnorm_backward(
                &x, &gamma, &w, &f.mean, &f.inv_std, &mut dx, &mut dg, &mut db, n, c, s, false,
            );
            for (key, got) in [
                ("y", &f.y),
                ("mean", &f.mean),
                ("inv_std", &f.inv_std),
                ("running_mean", &f.rm),
                ("running_var", &f.rv),
                ("dx", &dx),
                ("dgamma", &dg),
                ("dbeta", &db),
            ] {
                assert_close_f64(
                    &format!("{what} f64 {key}"),
                    got,
                    &nums(&step[key]),
                    1e-12,
                    1e-12,
                );
            }
            rm = f.rm;
            rv = f.rv;
            // f32, CPU and GPU
            let x32 = to_f32(&x);
            let f32s = cpu_train(
                &x32,
                &to_f32(&gamma),
                &to_f32(&beta),
                &rm32,
                &rv32,
                (n, c, s),
            );
            let mut runs = vec![("cpu", f32s.clone())];
            if let (Some(ctx), Some(g)) = (ctx, &gpu) {
                runs.push(("gpu", gpu_step(ctx, g, &x32, (n, c, s))));
            }
            for (dev, r) in &runs {
                for (key, got) in [
                    ("y", &r.y),
                    ("mean", &r.mean),
                    ("inv_std", &r.inv_std),
                    ("running_mean", &r.rm),
                    ("running_var", &r.rv),
                ] {
                    assert_close(
                        &format!("{what} {dev} f32 {key}"),
                        got,
                        &to_f32(&nums(&step[key])),
                        1e-4,
                        1e-4,
                    );
                }
            }
            rm32 = f32s.rm.clone();
            rv32 = f32s.rv.clone();
            // f32 backward, CPU and GPU, from the f32 forward's saved statistics.
            let (g32, w32) = (to_f32(&gamma), to_f32(&w));
            let mut dx32 = vec![0.0f32; n * c * s];
            let (mut dg32, mut db32) = (vec![0.0f32; c], vec![0.0f32; c]);
            cpu::batchnorm::batchnorm_backward(
                &x32,
                &g32,
                &w32,
                &f32s.mean,
                &f32s.inv_std,
                &mut dx32,
                &mut dg32,
                &mut db32,
                n,
                c,
                s,
                false,
            );
            let mut grads = vec![("cpu", dx32, dg32, db32)];
            if let (Some(ctx), Some(g)) = (ctx, &gpu) {
                let wb = ctx.upload("w", &w32).unwrap();
                let dxb = ctx.storage_buffer("dx", (n * c * s) as u64 * 4).unwrap();
                let dgb = ctx.storage_buffer("dgamma", c as u64 * 4).unwrap();
                let dbb = ctx.storage_buffer("dbeta", c as u64 * 4).unwrap();
                let d = bn::batchnorm_backward(
                    ctx, &g.x, &g.gamma, &wb, &g.mean, &g.inv_std, &dxb, &dgb, &dbb, n, c, s,
                    false, None,
                )
                .unwrap();
                ctx.run(&d.iter().collect::<Vec<_>>()).unwrap();
                grads.push((
                    "gpu",
                    ctx.read(&dxb, n * c * s).unwrap(),
                    ctx.read(&dgb, c).unwrap(),
                    ctx.read(&dbb, c).unwrap(),
                ));
            }
            for (dev, gx, gg, gb) in &grads {
                assert_close(
                    &format!("{what} {dev} f32 dx"),
                    gx,
                    &to_f32(&nums(&step["dx"])),
                    2e-4,
                    2e-4,
                );
                assert_close(
                    &format!("{what} {dev} f32 dgamma"),
                    gg,
                    &to_f32(&nums(&step["dgamma"])),
                    1e-4,
                    1e-4,
                );
                assert_close(
                    &format!("{what} {dev} f32 dbeta"),
                    gb,
                    &to_f32(&nums(&step["dbeta"])),
                    1e-4,
                    1e-4,
                );
            }
        }
        // Evaluation mode with the running statistics after the two steps.
        let x_eval = nums(&case["x_eval"]);
        let want = nums(&case["y_eval"]);
        let mut y = vec![0.0; n * c * s];
        cpu::batchnorm::batchnorm_forward_eval(
            &x_eval, &gamma, &beta, &rm, &rv, &mut y, n, c, s, EPS, None,
        );
        assert_close_f64(
            &format!("golden {name} f64 y_eval"),
            &y,
            &want,
            1e-12,
            1e-12,
        );
        if let (Some(ctx), Some(g)) = (ctx, &gpu) {
            let xb = ctx.upload("x_eval", &to_f32(&x_eval)).unwrap();
            let d = bn::batchnorm_forward_eval(
                ctx, &xb, &g.gamma, &g.beta, &g.rm, &g.rv, &g.y, n, c, s, EPS as f32, None,
            )
            .unwrap();
            ctx.run(&[&d]).unwrap();
            let got: Vec<f32> = ctx.read(&g.y, n * c * s).unwrap();
            assert_close(
                &format!("golden {name} gpu y_eval"),
                &got,
                &to_f32(&want),
                1e-4,
                1e-4,
            );
        }
    }
}

/// Every activation the fusions may take.
fn fused_activations() -> [gradscope::ops::Activation; 9] {
    use gradscope::ops::Activation;
    [
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::LeakyRelu { slope: 0.1 },
        Activation::Elu { alpha: 1.0 },
        Activation::Selu,
        Activation::Gelu,
        Activation::Softplus,
        Activation::Identity,
    ]
}

/// (n, c, s) for the fusion tests: one run per channel, several (3 of 4 097 and more), s = 1.
const FUSED_SHAPES: [(usize, usize, usize); 3] = [(13, 5, 31), (3, 2, 4097 * 3), (7, 13, 1)];

/// The values' bits, for exact comparisons.
fn bits(v: Vec<f32>) -> Vec<u32> {
    v.into_iter().map(f32::to_bits).collect()
}

/// The BatchNorm forward with the following activation fused into its last pass (what the
/// GPU executor runs for conv → BN → activation) writes the same y, bit for bit, as the
/// plain forward, and a z with the bits of the activation kernel applied to that y: in
/// training and in evaluation, for every activation, on shapes with one and several runs.
#[test]
fn fused_activation_gives_the_bits_of_the_two_kernels() {
    use gradscope::gpu::kernels::activation::activation_forward;
    use gradscope::ops::Activation;
    let Some(ctx) = common::gpu() else { return };
    let acts = fused_activations();
    for (k, &(n, c, s)) in FUSED_SHAPES.iter().enumerate() {
        let len = n * c * s;
        for (a, &act) in acts.iter().enumerate() {
            let seed = 500 + 10 * k as u64 + a as u64 * 1000;
            let what = format!("{} n {n} c {c} s {s}", act.name());
            let x = ctx.upload("x", &random_vec(seed, len, -3.0, 3.0)).unwrap();
            let gamma = ctx
                .upload("gamma", &random_vec(seed + 1, c, 0.5, 1.5))
                .unwrap();
            let beta = ctx
                .upload("beta", &random_vec(seed + 2, c, -0.5, 0.5))
                .unwrap();
            let buf = |name: &str, l: usize| ctx.storage_buffer(name, l as u64 * 4).unwrap();
            let (y1, y2, z1, z2) = (
                buf("y1", len),
                buf("y2", len),
                buf("z1", len),
                buf("z2", len),
            );
            // Two sets of saved and running statistics, so the two forwards see the same.
            let stats: Vec<[wgpu::Buffer; 4]> = (0..2)
                .map(|_| {
                    [
                        buf("mean", c),
                        buf("inv_std", c),
                        ctx.upload("rm", &vec![0.0f32; c]).unwrap(),
                        ctx.upload("rv", &vec![1.0f32; c]).unwrap(),
                    ]
                })
                .collect();
            let train = |y: &wgpu::Buffer, st: &[wgpu::Buffer; 4], fused| {
                bn::batchnorm_forward_train(
                    ctx, &x, &gamma, &beta, y, &st[0], &st[1], &st[2], &st[3], n, c, s, 1e-5, 0.1,
                    fused,
                )
                .unwrap()
            };
            let mut plain = train(&y1, &stats[0], None);
            plain.push(activation_forward(ctx, act, &y1, &z1, len).unwrap());
            let fused = train(&y2, &stats[1], Some((act, &z2)));
            assert_eq!(fused.len(), plain.len() - 1, "{what}: one dispatch fewer");
            ctx.run(&plain.iter().chain(&fused).collect::<Vec<_>>())
                .unwrap();
            assert_eq!(
                bits(ctx.read(&y1, len).unwrap()),
                bits(ctx.read(&y2, len).unwrap()),
                "{what}: train y"
            );
            assert_eq!(
                bits(ctx.read(&z1, len).unwrap()),
                bits(ctx.read(&z2, len).unwrap()),
                "{what}: train z"
            );
            // Evaluation, from the running statistics the two forwards left (identical).
            let eval = |y: &wgpu::Buffer, st: &[wgpu::Buffer; 4], fused| {
                bn::batchnorm_forward_eval(
                    ctx, &x, &gamma, &beta, &st[2], &st[3], y, n, c, s, 1e-5, fused,
                )
                .unwrap()
            };
            let plain = [
                eval(&y1, &stats[0], None),
                activation_forward(ctx, act, &y1, &z1, len).unwrap(),
            ];
            let fused = eval(&y2, &stats[1], Some((act, &z2)));
            ctx.run(&[&plain[0], &plain[1], &fused]).unwrap();
            assert_eq!(
                bits(ctx.read(&y1, len).unwrap()),
                bits(ctx.read(&y2, len).unwrap()),
                "{what}: eval y"
            );
            assert_eq!(
                bits(ctx.read(&z1, len).unwrap()),
                bits(ctx.read(&z2, len).unwrap()),
                "{what}: eval z"
            );
        }
    }
    // z must be its own buffer.
    let x = ctx.upload("x", &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let one = |v: f32| ctx.upload("p", &[v]).unwrap();
    let (g, b, m, i, rm, rv) = (one(1.0), one(0.0), one(0.0), one(1.0), one(0.0), one(1.0));
    let y = ctx.storage_buffer("y", 16).unwrap();
    let err = bn::batchnorm_forward_train(
        ctx,
        &x,
        &g,
        &b,
        &y,
        &m,
        &i,
        &rm,
        &rv,
        4,
        1,
        1,
        1e-5,
        0.1,
        Some((Activation::Relu, &y)),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("same buffer"), "{err}");
}

/// The backward of the activation after a BatchNorm fused into the BatchNorm's backward
/// (what the GPU executor runs for conv → BN → activation) writes the BatchNorm's output
/// gradient, dx, dγ and dβ with the bits of the two kernels run apart, for every
/// activation, on shapes with one and several runs per channel; asked for a copy of the
/// output gradient, it writes the same bits there too.
#[test]
fn fused_activation_backward_gives_the_bits_of_the_two_kernels() {
    use gradscope::gpu::kernels::activation::{activation_backward, activation_forward};
    let Some(ctx) = common::gpu() else { return };
    let acts = fused_activations();
    for (k, &(n, c, s)) in FUSED_SHAPES.iter().enumerate() {
        let len = n * c * s;
        for (a, &act) in acts.iter().enumerate() {
            let seed = 900 + 10 * k as u64 + a as u64 * 1000;
            let what = format!("{} n {n} c {c} s {s}", act.name());
            let up = |name: &str, v: Vec<f32>| ctx.upload(name, &v).unwrap();
            let buf = |name: &str, l: usize| ctx.storage_buffer(name, l as u64 * 4).unwrap();
            let x = up("x", random_vec(seed, len, -3.0, 3.0));
            let gamma = up("gamma", random_vec(seed + 1, c, 0.5, 1.5));
            let beta = up("beta", random_vec(seed + 2, c, -0.5, 0.5));
            let (y, z) = (buf("y", len), buf("z", len));
            let (mean, inv_std) = (buf("mean", c), buf("inv_std", c));
            let (rm, rv) = (up("rm", vec![0.0; c]), up("rv", vec![1.0; c]));
            let mut fwd = bn::batchnorm_forward_train(
                ctx, &x, &gamma, &beta, &y, &mean, &inv_std, &rm, &rv, n, c, s, 1e-5, 0.1, None,
            )
            .unwrap();
            fwd.push(activation_forward(ctx, act, &y, &z, len).unwrap());
            ctx.run(&fwd.iter().collect::<Vec<_>>()).unwrap();
            let dz = up("dz", random_vec(seed + 3, len, -1.0, 1.0));
            // Apart: dy = the activation's backward, then the BatchNorm's.
            let (dy1, dx1, dg1, db1) = (
                buf("dy1", len),
                buf("dx1", len),
                buf("dg1", c),
                buf("db1", c),
            );
            let mut apart = vec![activation_backward(ctx, act, &y, &z, &dz, &dy1, len).unwrap()];
            apart.extend(
                bn::batchnorm_backward(
                    ctx, &x, &gamma, &dy1, &mean, &inv_std, &dx1, &dg1, &db1, n, c, s, false, None,
                )
                .unwrap(),
            );
            // Fused: the BatchNorm's first pass forms dy (into dy2) itself; once alone,
            // once also writing it to `copy` (what an identity shortcut's input receives).
            let copy = buf("copy", len);
            for with_copy in [false, true] {
                let what = format!("{what}, copy {with_copy}");
                let (dy2, dx2, dg2, db2) = (
                    buf("dy2", len),
                    buf("dx2", len),
                    buf("dg2", c),
                    buf("db2", c),
                );
                let fused = bn::batchnorm_backward(
                    ctx,
                    &x,
                    &gamma,
                    &dy2,
                    &mean,
                    &inv_std,
                    &dx2,
                    &dg2,
                    &db2,
                    n,
                    c,
                    s,
                    false,
                    Some(bn::ActivationBackward {
                        act,
                        x: &y,
                        y: &z,
                        dy: &dz,
                        copy: with_copy.then_some(&copy),
                    }),
                )
                .unwrap();
                assert_eq!(fused.len(), apart.len() - 1, "{what}: one dispatch fewer");
                ctx.run(&apart.iter().chain(&fused).collect::<Vec<_>>())
                    .unwrap();
                let mut outputs = vec![
                    ("BatchNorm output gradient", len, &dy1, &dy2),
                    ("dx", len, &dx1, &dx2),
                    ("dgamma", c, &dg1, &dg2),
                    ("dbeta", c, &db1, &db2),
                ];
                if with_copy {
                    outputs.push(("the copy of the output gradient", len, &dy1, &copy));
                }
                for (name, l, p, q) in outputs {
                    assert_eq!(
                        bits(ctx.read(p, l).unwrap()),
                        bits(ctx.read(q, l).unwrap()),
                        "{what}: {name}"
                    );
                }
            }
            // A copy into storage the pass also writes is refused.
            let Err(err) = bn::batchnorm_backward(
                ctx,
                &x,
                &gamma,
                &dy1,
                &mean,
                &inv_std,
                &dx1,
                &dg1,
                &db1,
                n,
                c,
                s,
                false,
                Some(bn::ActivationBackward {
                    act,
                    x: &y,
                    y: &z,
                    dy: &dz,
                    copy: Some(&dx1),
                }),
            ) else {
                panic!("{what}: a copy into dx must be refused")
            };
            let err = err.to_string();
            assert!(err.contains("same buffer"), "{what}: {err}");
        }
    }
}

/// BatchNorm and LayerNorm built with the subgroup trees (their last levels in shuffles)
/// give the bits of the workgroup-memory trees: every output of the training forward and
/// the backward, on shapes with one run, several runs and rows longer than a workgroup.
#[test]
fn subgroup_trees_give_the_bits_of_the_workgroup_trees() {
    use gradscope::gpu::kernels::layernorm as ln;
    let Some(shared) = common::gpu() else { return };
    if shared.subgroup_size.is_none() {
        return;
    }
    let request = gradscope::gpu::AdapterRequest::default();
    let with = GpuContext::new(&request).unwrap();
    let mut without = GpuContext::new(&request).unwrap();
    without.subgroup_size = None;
    // Every output of a BatchNorm forward and backward on one context.
    let batchnorm = |ctx: &GpuContext, (n, c, s): (usize, usize, usize), seed: u64| {
        let len = n * c * s;
        let up = |v: Vec<f32>| ctx.upload("t", &v).unwrap();
        let buf = |l: usize| ctx.storage_buffer("t", l as u64 * 4).unwrap();
        let (x, gamma, beta) = (
            up(random_vec(seed, len, -3.0, 3.0)),
            up(random_vec(seed + 1, c, 0.5, 1.5)),
            up(random_vec(seed + 2, c, -0.5, 0.5)),
        );
        let dy = up(random_vec(seed + 3, len, -1.0, 1.0));
        let (y, mean, inv_std, dx, dg, db) = (buf(len), buf(c), buf(c), buf(len), buf(c), buf(c));
        let (rm, rv) = (up(vec![0.0; c]), up(vec![1.0; c]));
        let mut d = bn::batchnorm_forward_train(
            ctx, &x, &gamma, &beta, &y, &mean, &inv_std, &rm, &rv, n, c, s, 1e-5, 0.1, None,
        )
        .unwrap();
        d.extend(
            bn::batchnorm_backward(
                ctx, &x, &gamma, &dy, &mean, &inv_std, &dx, &dg, &db, n, c, s, false, None,
            )
            .unwrap(),
        );
        ctx.run(&d.iter().collect::<Vec<_>>()).unwrap();
        [
            (&y, len),
            (&mean, c),
            (&inv_std, c),
            (&rm, c),
            (&rv, c),
            (&dx, len),
            (&dg, c),
            (&db, c),
        ]
        .map(|(b, l)| bits(ctx.read(b, l).unwrap()))
    };
    for (k, shape) in [(13usize, 5usize, 31usize), (3, 2, 4097 * 3), (300, 2, 1)]
        .into_iter()
        .enumerate()
    {
        let seed = 3000 + 10 * k as u64;
        assert_eq!(
            batchnorm(&with, shape, seed),
            batchnorm(&without, shape, seed),
            "batchnorm {shape:?}"
        );
    }
    let layernorm = |ctx: &GpuContext, rows: usize, d: usize, seed: u64| {
        let up = |v: Vec<f32>| ctx.upload("t", &v).unwrap();
        let buf = |l: usize| ctx.storage_buffer("t", l as u64 * 4).unwrap();
        let (x, gamma, beta) = (
            up(random_vec(seed, rows * d, -3.0, 3.0)),
            up(random_vec(seed + 1, d, 0.5, 1.5)),
            up(random_vec(seed + 2, d, -0.5, 0.5)),
        );
        let dy = up(random_vec(seed + 3, rows * d, -1.0, 1.0));
        let (y, mean, inv_std, dx) = (buf(rows * d), buf(rows), buf(rows), buf(rows * d));
        let f = ln::layernorm_forward(ctx, &x, &gamma, &beta, &y, &mean, &inv_std, rows, d, 1e-5)
            .unwrap();
        let b = ln::layernorm_backward_input(ctx, &x, &gamma, &dy, &mean, &inv_std, &dx, rows, d)
            .unwrap();
        ctx.run(&[&f, &b]).unwrap();
        [
            (&y, rows * d),
            (&mean, rows),
            (&inv_std, rows),
            (&dx, rows * d),
        ]
        .map(|(b, l)| bits(ctx.read(b, l).unwrap()))
    };
    for (rows, d) in [(7usize, 1000usize), (3, 5), (2, 4099)] {
        let seed = 4000 + d as u64;
        assert_eq!(
            layernorm(&with, rows, d, seed),
            layernorm(&without, rows, d, seed),
            "layernorm {rows}×{d}"
        );
    }
}
