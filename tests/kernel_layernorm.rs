//! Layer normalization (forward, backward): GPU against the CPU twin on awkward shapes, the
//! CPU backward against central differences in f64, and JAX float64 golden values
//! (tests/golden/make_norm_golden.py) written with nn.LayerNorm's semantics.

mod common;

use common::{assert_close, assert_close_f64, random_vec, random_vec_f64};
use gradscope::cpu;
use gradscope::gpu::kernels::layernorm as ln;
use serde_json::Value;

const EPS: f64 = 1e-5;

/// (rows, d): d = 1 (x̂ = 0, y = β), primes, d past one workgroup's lanes (257, 1024), more
/// rows than a workgroup has lanes (300, for the column sums of dγ, dβ).
const SHAPES: &[(usize, usize)] = &[
    (1, 1),
    (3, 1),
    (1, 7),
    (13, 31),
    (7, 257),
    (2, 1024),
    (300, 5),
    (31, 127),
];

struct Fwd<T> {
    y: Vec<T>,
    mean: Vec<T>,
    inv_std: Vec<T>,
}

fn cpu_forward<T: cpu::Element>(x: &[T], gamma: &[T], beta: &[T], rows: usize, d: usize) -> Fwd<T> {
    let mut f = Fwd {
        y: vec![T::zero(); rows * d],
        mean: vec![T::zero(); rows],
        inv_std: vec![T::zero(); rows],
    };
    cpu::layernorm::layernorm_forward(
        x,
        gamma,
        beta,
        &mut f.y,
        &mut f.mean,
        &mut f.inv_std,
        rows,
        d,
        EPS,
    );
    f
}

fn cpu_backward<T: cpu::Element>(
    x: &[T],
    gamma: &[T],
    dy: &[T],
    f: &Fwd<T>,
    rows: usize,
    d: usize,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut dx = vec![T::zero(); rows * d];
    let (mut dg, mut db) = (vec![T::zero(); d], vec![T::zero(); d]);
    cpu::layernorm::layernorm_backward(
        x, gamma, dy, &f.mean, &f.inv_std, &mut dx, &mut dg, &mut db, rows, d, false,
    );
    (dx, dg, db)
}

/// Runs forward then backward on the GPU; returns the forward and (dx, dγ, dβ), with dγ and
/// dβ starting from `dg0`, `db0` when `accumulate`.
#[allow(clippy::too_many_arguments)]
fn gpu_run(
    ctx: &gradscope::gpu::GpuContext,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    dy: &[f32],
    dg0: &[f32],
    db0: &[f32],
    rows: usize,
    d: usize,
    accumulate: bool,
) -> (Fwd<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let b = |name: &str, v: &[f32]| ctx.upload(name, v).unwrap();
    let z = |name: &str, n: usize| ctx.storage_buffer(name, n as u64 * 4).unwrap();
    let (xb, gb, bb, dyb) = (b("x", x), b("gamma", gamma), b("beta", beta), b("dy", dy));
    let (yb, mb, ib, dxb) = (
        z("y", rows * d),
        z("mean", rows),
        z("inv_std", rows),
        z("dx", rows * d),
    );
    let (dgb, dbb) = (b("dgamma", dg0), b("dbeta", db0));
    let fwd =
        ln::layernorm_forward(ctx, &xb, &gb, &bb, &yb, &mb, &ib, rows, d, EPS as f32).unwrap();
    let bwd = ln::layernorm_backward(
        ctx, &xb, &gb, &dyb, &mb, &ib, &dxb, &dgb, &dbb, rows, d, accumulate,
    )
    .unwrap();
    assert_eq!(bwd.len(), 2);
    ctx.run(&[&fwd, &bwd[0], &bwd[1]]).unwrap();
    (
        Fwd {
            y: ctx.read(&yb, rows * d).unwrap(),
            mean: ctx.read(&mb, rows).unwrap(),
            inv_std: ctx.read(&ib, rows).unwrap(),
        },
        ctx.read(&dxb, rows * d).unwrap(),
        ctx.read(&dgb, d).unwrap(),
        ctx.read(&dbb, d).unwrap(),
    )
}

/// Both sides sum in the same order; the driver's sqrt and fused multiply-adds differ by a
/// few ulps (1e-5). dx is a difference of row sums of up to 1024 terms ~1, and dγ sums
/// 300 rows: their absolute error scales with the sums, hence atol 1e-4.
#[test]
fn layernorm_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &(rows, d)) in SHAPES.iter().enumerate() {
        for accumulate in [false, true] {
            let seed = 6000 + i as u64;
            let x = random_vec(seed, rows * d, -2.0, 2.0);
            let gamma = random_vec(seed + 1, d, 0.5, 1.5);
            let beta = random_vec(seed + 2, d, -0.5, 0.5);
            let dy = random_vec(seed + 3, rows * d, -1.0, 1.0);
            let dg0 = random_vec(seed + 4, d, -1.0, 1.0);
            let db0 = random_vec(seed + 5, d, -1.0, 1.0);
            let f = cpu_forward(&x, &gamma, &beta, rows, d);
            let mut dx = vec![0.0f32; rows * d];
            let (mut dg, mut db) = (dg0.clone(), db0.clone());
            cpu::layernorm::layernorm_backward(
                &x, &gamma, &dy, &f.mean, &f.inv_std, &mut dx, &mut dg, &mut db, rows, d,
                accumulate,
            );
            let (gf, gdx, gdg, gdb) =
                gpu_run(ctx, &x, &gamma, &beta, &dy, &dg0, &db0, rows, d, accumulate);
            let what = format!("layernorm seed {seed} shape {rows}x{d} accumulate {accumulate}");
            assert_close(&format!("{what}: y"), &gf.y, &f.y, 1e-5, 1e-5);
            assert_close(&format!("{what}: mean"), &gf.mean, &f.mean, 1e-5, 1e-5);
            assert_close(
                &format!("{what}: inv_std"),
                &gf.inv_std,
                &f.inv_std,
                1e-5,
                1e-5,
            );
            assert_close(&format!("{what}: dx"), &gdx, &dx, 1e-4, 1e-4);
            assert_close(&format!("{what}: dgamma"), &gdg, &dg, 1e-4, 1e-5);
            assert_close(&format!("{what}: dbeta"), &gdb, &db, 1e-5, 1e-5);
        }
    }
}

/// Central differences in f64 of L = Σ w ⊙ y with respect to x, γ and β against
/// layernorm_backward(dy = w); tolerance as for batch norm (truncation ~1e-11, rounding
/// ~1e-9 at eps 1e-6).
#[test]
fn layernorm_backward_matches_central_differences() {
    for (i, &(rows, d)) in [(1usize, 2usize), (3, 5), (4, 7), (2, 13)]
        .iter()
        .enumerate()
    {
        let seed = 7000 + i as u64;
        let x = random_vec_f64(seed, rows * d, -2.0, 2.0);
        let gamma = random_vec_f64(seed + 1, d, 0.5, 1.5);
        let beta = random_vec_f64(seed + 2, d, -0.5, 0.5);
        let w = random_vec_f64(seed + 3, rows * d, -1.0, 1.0);
        let loss = |x: &[f64], g: &[f64], b: &[f64]| {
            let f = cpu_forward(x, g, b, rows, d);
            f.y.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>()
        };
        let f = cpu_forward(&x, &gamma, &beta, rows, d);
        let (dx, dg, db) = cpu_backward(&x, &gamma, &w, &f, rows, d);
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
        let what = format!("layernorm fd seed {seed} shape {rows}x{d}");
        assert_close_f64(&format!("{what}: dx"), &dx, &fd(&x, 0), 1e-7, 1e-6);
        assert_close_f64(&format!("{what}: dgamma"), &dg, &fd(&gamma, 1), 1e-7, 1e-6);
        assert_close_f64(&format!("{what}: dbeta"), &db, &fd(&beta, 2), 1e-7, 1e-6);
        // With d = 2, x̂ = ±sqrt(var/(var + eps)) ≈ ±1 whatever x is, so dx is ~0 there.
        if d > 2 {
            assert!(dx.iter().any(|v| v.abs() > 1e-3), "{what}: dx is ~0");
        }
    }
}

#[test]
fn layernorm_backward_accumulates_parameter_gradients() {
    let (rows, d) = (3, 4);
    let x = random_vec_f64(8000, rows * d, -2.0, 2.0);
    let gamma = random_vec_f64(8001, d, 0.5, 1.5);
    let dy = random_vec_f64(8002, rows * d, -1.0, 1.0);
    let f = cpu_forward(&x, &gamma, &vec![0.0; d], rows, d);
    let (_, dg, db) = cpu_backward(&x, &gamma, &dy, &f, rows, d);
    let mut dx = vec![0.0; rows * d];
    let (mut dg2, mut db2) = (vec![1.0; d], vec![-2.0; d]);
    cpu::layernorm::layernorm_backward(
        &x, &gamma, &dy, &f.mean, &f.inv_std, &mut dx, &mut dg2, &mut db2, rows, d, true,
    );
    let want_g: Vec<f64> = dg.iter().map(|v| v + 1.0).collect();
    let want_b: Vec<f64> = db.iter().map(|v| v - 2.0).collect();
    assert_close_f64("accumulated dgamma", &dg2, &want_g, 1e-15, 1e-15);
    assert_close_f64("accumulated dbeta", &db2, &want_b, 1e-15, 1e-15);
}

#[test]
fn layernorm_launchers_refuse_bad_shapes() {
    let Some(ctx) = common::gpu() else { return };
    let buf = |name: &str, elems: u64| ctx.storage_buffer(name, elems * 4).unwrap();
    let (x, y, g, b, m, i) = (
        buf("x", 12),
        buf("y", 12),
        buf("g", 4),
        buf("b", 4),
        buf("m", 3),
        buf("i", 3),
    );
    let e = ln::layernorm_forward(ctx, &x, &g, &b, &y, &m, &i, 4, 4, 1e-5).unwrap_err();
    assert!(e.to_string().contains("`x`"), "{e}");
    let e = ln::layernorm_forward(ctx, &x, &g, &b, &y, &m, &i, 2, 6, 1e-5).unwrap_err();
    assert!(e.to_string().contains("`gamma`"), "{e}");
    let e = ln::layernorm_forward(ctx, &x, &g, &b, &y, &m, &i, 0, 4, 1e-5).unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let e = ln::layernorm_forward(ctx, &x, &g, &b, &x, &m, &i, 3, 4, 1e-5).unwrap_err();
    assert!(e.to_string().contains("same buffer"), "{e}");
    let e = ln::layernorm_backward(ctx, &x, &g, &y, &m, &i, &y, &b, &g, 3, 4, false).unwrap_err();
    assert!(e.to_string().contains("same buffer"), "{e}");
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

/// CPU f64 against JAX float64 (1e-12: only summation order differs), then CPU f32 and the
/// GPU (inputs exact in f32; f32 rounding of row sums of up to 300 values: 1e-4, dx 2e-4).
#[test]
fn layernorm_matches_golden_values() {
    let gold: Value =
        serde_json::from_str(include_str!("golden/norm_golden.json")).expect("golden JSON parses");
    assert_eq!(gold["eps"].as_f64(), Some(EPS));
    let ctx = common::gpu();
    for case in gold["layernorm"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let rows = case["rows"].as_u64().unwrap() as usize;
        let d = case["d"].as_u64().unwrap() as usize;
        let (x, gamma, beta, w) = (
            nums(&case["x"]),
            nums(&case["gamma"]),
            nums(&case["beta"]),
            nums(&case["w"]),
        );
        let f = cpu_forward(&x, &gamma, &beta, rows, d);
        let (dx, dg, db) = cpu_backward(&x, &gamma, &w, &f, rows, d);
        for (key, got) in [
            ("y", &f.y),
            ("mean", &f.mean),
            ("inv_std", &f.inv_std),
            ("dx", &dx),
            ("dgamma", &dg),
            ("dbeta", &db),
        ] {
            assert_close_f64(
                &format!("golden {name} f64 {key}"),
                got,
                &nums(&case[key]),
                1e-12,
                1e-12,
            );
        }
        let (x32, g32, b32, w32) = (to_f32(&x), to_f32(&gamma), to_f32(&beta), to_f32(&w));
        let f32s = cpu_forward(&x32, &g32, &b32, rows, d);
        let (dx32, dg32, db32) = cpu_backward(&x32, &g32, &w32, &f32s, rows, d);
        let mut runs = vec![("cpu", f32s, dx32, dg32, db32)];
        if let Some(ctx) = ctx {
            let zeros = vec![0.0f32; d];
            let (gf, gdx, gdg, gdb) =
                gpu_run(ctx, &x32, &g32, &b32, &w32, &zeros, &zeros, rows, d, false);
            runs.push(("gpu", gf, gdx, gdg, gdb));
        }
        for (dev, f, gx, gg, gb) in &runs {
            let what = format!("golden {name} {dev} f32");
            let want = |k: &str| to_f32(&nums(&case[k]));
            assert_close(&format!("{what} y"), &f.y, &want("y"), 1e-4, 1e-4);
            assert_close(&format!("{what} mean"), &f.mean, &want("mean"), 1e-4, 1e-4);
            // d = 1: var = 0 and inv_std = 1/sqrt(eps) ≈ 316, relative tolerance covers it.
            assert_close(
                &format!("{what} inv_std"),
                &f.inv_std,
                &want("inv_std"),
                1e-4,
                1e-4,
            );
            assert_close(&format!("{what} dx"), gx, &want("dx"), 2e-4, 2e-4);
            assert_close(&format!("{what} dgamma"), gg, &want("dgamma"), 1e-4, 1e-4);
            assert_close(&format!("{what} dbeta"), gb, &want("dbeta"), 1e-4, 1e-4);
        }
    }
}
