//! Activations: GPU against the CPU twin for every activation and both passes, on awkward
//! lengths and on large-magnitude inputs; the CPU backward against central differences in
//! f64; a few values pinned to PyTorch's.

mod common;

use common::{assert_close, assert_close_f64, random_vec, random_vec_f64};
use gradscope::cpu;
use gradscope::gpu::kernels::activation as gpu_act;
use gradscope::ops::Activation;

fn all() -> Vec<Activation> {
    vec![
        Activation::Identity,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.01 },
        Activation::LeakyRelu { slope: 0.2 },
        Activation::Elu { alpha: 1.0 },
        Activation::Elu { alpha: 0.5 },
        Activation::Selu,
        Activation::Gelu,
        Activation::Softplus,
    ]
}

/// Lengths: 1, primes, not multiples of the workgroup (256), and a 1000×37 batch.
const LENS: &[usize] = &[1, 7, 13, 127, 257, 1000 * 37];

/// GPU forward and backward of `act` on `x`, against the CPU twin in f32. The backward of
/// both sides reads the same y (the CPU's), so each pass is compared on its own.
fn check_gpu(act: Activation, x: &[f32], dy: &[f32], what: &str) {
    let Some(ctx) = common::gpu() else { return };
    let n = x.len();
    let mut y = vec![0.0f32; n];
    cpu::activation::activation_forward(act, x, &mut y);
    let mut dx = vec![0.0f32; n];
    cpu::activation::activation_backward(act, x, &y, dy, &mut dx);

    let xb = ctx.upload("x", x).unwrap();
    let yb = ctx.storage_buffer("y", 4 * n as u64).unwrap();
    let d = gpu_act::activation_forward(ctx, act, &xb, &yb, n).unwrap();
    ctx.run(&[&d]).unwrap();
    let got_y: Vec<f32> = ctx.read(&yb, n).unwrap();
    assert!(
        got_y.iter().all(|v| v.is_finite()),
        "{what} {}: GPU forward not finite",
        act.name()
    );
    // The shader's exp is allowed 3 + 2|x| ulp (Vulkan's precision for exp), its erfc fit
    // 1.2e−7 relative and its tanh/log1p a few ulp, against a CPU twin accurate to ~1 ulp:
    // a few 1e−6 relative, with an absolute floor for results near zero.
    assert_close(
        &format!("{what} {} forward", act.name()),
        &got_y,
        &y,
        2e-6,
        1e-5,
    );

    let yb = ctx.upload("y", &y).unwrap();
    let dyb = ctx.upload("dy", dy).unwrap();
    let dxb = ctx.storage_buffer("dx", 4 * n as u64).unwrap();
    let d = gpu_act::activation_backward(ctx, act, &xb, &yb, &dyb, &dxb, n).unwrap();
    ctx.run(&[&d]).unwrap();
    let got_dx: Vec<f32> = ctx.read(&dxb, n).unwrap();
    assert!(
        got_dx.iter().all(|v| v.is_finite()),
        "{what} {}: GPU backward not finite",
        act.name()
    );
    assert_close(
        &format!("{what} {} backward", act.name()),
        &got_dx,
        &dx,
        2e-6,
        1e-5,
    );
}

#[test]
fn activations_gpu_match_cpu() {
    for (i, &n) in LENS.iter().enumerate() {
        let seed = 10 + i as u64;
        let x = random_vec(seed, n, -6.0, 6.0);
        let dy = random_vec(seed + 100, n, -1.0, 1.0);
        for act in all() {
            check_gpu(act, &x, &dy, &format!("seed {seed} len {n}"));
        }
    }
}

/// ±50, ±100, ±1000, both sides of softplus' threshold and the kinks: finite on the GPU and
/// equal to the CPU twin.
#[test]
fn activations_large_magnitudes_gpu_match_cpu() {
    let x: Vec<f32> = vec![
        -1000.0, -100.0, -88.0, -50.0, -20.5, -20.0, -19.5, -10.0, -1e-3, -0.0, 0.0, 1e-3, 0.2,
        0.3, 10.0, 19.5, 20.0, 20.5, 50.0, 88.0, 100.0, 1000.0,
    ];
    let dy = vec![1.0f32; x.len()];
    for act in all() {
        check_gpu(act, &x, &dy, "large magnitudes");
    }
}

#[test]
fn activations_large_magnitudes_cpu_values() {
    use cpu::activation::{backward_one, forward_one};
    let f = |act: Activation, x: f32| forward_one(act, act.param(), x);
    let g = |act: Activation, x: f32| {
        let y = f(act, x);
        backward_one(act, act.param(), x, y, 1.0f32)
    };
    for &x in &[-100.0f32, -50.0, 50.0, 100.0] {
        for act in all() {
            assert!(f(act, x).is_finite(), "{} forward at {x}", act.name());
            assert!(g(act, x).is_finite(), "{} backward at {x}", act.name());
        }
    }
    assert_eq!(f(Activation::Sigmoid, 100.0), 1.0);
    assert!(f(Activation::Sigmoid, -100.0) < 1e-40);
    assert_eq!(f(Activation::Tanh, -100.0), -1.0);
    assert_eq!(f(Activation::Softplus, 100.0), 100.0);
    assert_eq!(f(Activation::Softplus, -100.0), (-100.0f32).exp());
    assert_eq!(g(Activation::Softplus, 50.0), 1.0);
    assert_eq!(f(Activation::Gelu, 100.0), 100.0);
    assert_eq!(f(Activation::Gelu, -100.0), 0.0);
}

/// Values from PyTorch 2.x (float64): torch.nn.functional.gelu(torch.tensor([1., -1., 3.]))
/// and friends; Φ(1) = 0.8413447460685429, Φ(−1) = 0.15865525393145707,
/// Φ(3) = 0.9986501019683699; softplus(0) = ln 2.
#[test]
fn activation_values_match_pytorch() {
    use cpu::activation::forward_one;
    let f = |act: Activation, x: f64| forward_one(act, act.param() as f64, x);
    let cases = [
        (Activation::Gelu, 1.0, 0.841_344_746_068_542_9),
        (Activation::Gelu, -1.0, -0.158_655_253_931_457_07),
        (Activation::Gelu, 3.0, 3.0 * 0.998_650_101_968_369_9),
        (Activation::Softplus, 0.0, std::f64::consts::LN_2),
        (Activation::Sigmoid, 0.0, 0.5),
        (
            Activation::Selu,
            -1.0,
            1.050_700_987_355_480_5 * 1.673_263_242_354_377_3 * ((-1.0f64).exp() - 1.0),
        ),
        (Activation::Elu { alpha: 1.0 }, -2.0, (-2.0f64).exp() - 1.0),
        // The slope is an f32 parameter: 0.01f32 is 0.009999999776…
        (
            Activation::LeakyRelu { slope: 0.01 },
            -3.0,
            -3.0 * 0.01f32 as f64,
        ),
    ];
    for (act, x, want) in cases {
        let got = f(act, x);
        assert!(
            (got - want).abs() <= 1e-15 + 1e-14 * want.abs(),
            "{}({x}) = {got}, want {want}",
            act.name()
        );
    }
    // Derivatives at the kinks, as PyTorch: ReLU' (0) = 0, LeakyReLU'(0) = slope.
    use cpu::activation::backward_one;
    assert_eq!(backward_one(Activation::Relu, 0.0, 0.0, 0.0, 1.0f64), 0.0);
    assert_eq!(
        backward_one(
            Activation::LeakyRelu { slope: 0.25 },
            0.25,
            0.0,
            0.0,
            1.0f64
        ),
        0.25
    );
}

/// erfc against Python's math.erfc (the C library's, correctly rounded to within an ulp),
/// on both sides of the switch from series to continued fraction at 3. Below 3 the twin
/// promises ~1e−16 absolute (1 − erf cancels), from 3 on ~1e−15 relative.
#[test]
fn erfc_matches_reference_values() {
    use cpu::activation::erfc_nonneg;
    let cases = [
        (0.0, 1.0),
        (0.5, 0.479_500_122_186_953_5),
        (1.0, 0.157_299_207_050_285_13),
        (2.0, 0.004_677_734_981_047_265),
        (2.999_999, 2.209_063_625_205_517e-5),
        (3.0, 2.209_049_699_858_543_8e-5),
        (4.0, 1.541_725_790_028_002e-8),
        (5.0, 1.537_459_794_428_035_1e-12),
        (10.0, 2.088_487_583_762_545e-45),
    ];
    for (z, want) in cases {
        let got = erfc_nonneg(z);
        let tol = if z < 3.0 { 1e-15 } else { 1e-14 * want };
        assert!(
            (got - want).abs() <= tol,
            "erfc({z}) = {got:e}, want {want:e}, rel {:e}",
            ((got - want) / want).abs()
        );
    }
}

/// Central differences in f64 of L = Σ w ⊙ f(x) against activation_backward(dy = w), for
/// every activation, at points at least 1e−2 away from the kinks (0 for ReLU-like and
/// ELU/SELU, 20 for softplus). eps = 1e−6: the truncation error f'''·eps²/6 is ~1e−13 and
/// the rounding error ~1e−16·|f|/eps ≈ 1e−10, so 1e−8 absolute plus 1e−7 relative leaves a
/// wide margin while a wrong derivative (off by a factor or a term) fails by orders.
#[test]
fn activation_backward_matches_central_differences() {
    let n = 64;
    for (k, act) in all().into_iter().enumerate() {
        let seed = 500 + k as u64;
        let x: Vec<f64> = random_vec_f64(seed, n, -4.0, 4.0)
            .into_iter()
            .map(|v| if v.abs() < 1e-2 { v + 0.05 } else { v })
            .collect();
        let w = random_vec_f64(seed + 1, n, -1.0, 1.0);
        let mut y = vec![0.0; n];
        cpu::activation::activation_forward(act, &x, &mut y);
        let mut dx = vec![0.0; n];
        cpu::activation::activation_backward(act, &x, &y, &w, &mut dx);
        let eps = 1e-6;
        let p = act.param() as f64;
        let numeric: Vec<f64> = (0..n)
            .map(|i| {
                let fp = cpu::activation::forward_one(act, p, x[i] + eps);
                let fm = cpu::activation::forward_one(act, p, x[i] - eps);
                w[i] * (fp - fm) / (2.0 * eps)
            })
            .collect();
        assert_close_f64(
            &format!("{} backward vs central differences seed {seed}", act.name()),
            &dx,
            &numeric,
            1e-8,
            1e-7,
        );
    }
}

/// A length past 65535·256 elements needs the 2-D grid; every element must be written.
#[test]
fn activation_forward_covers_lengths_past_one_grid_row() {
    let Some(ctx) = common::gpu() else { return };
    let n = 65535 * 256 + 3;
    let act = Activation::LeakyRelu { slope: 0.5 };
    let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 - 500.0).collect();
    let mut want = vec![0.0f32; n];
    cpu::activation::activation_forward(act, &x, &mut want);
    let xb = ctx.upload("x", &x).unwrap();
    let yb = ctx.storage_buffer("y", 4 * n as u64).unwrap();
    let d = gpu_act::activation_forward(ctx, act, &xb, &yb, n).unwrap();
    assert!(d.workgroups[1] > 1, "grid {:?} should be 2-D", d.workgroups);
    ctx.run(&[&d]).unwrap();
    let got: Vec<f32> = ctx.read(&yb, n).unwrap();
    // Exact: x and x/2 are exact in f32.
    assert_close(&format!("leaky_relu len {n}"), &got, &want, 0.0, 0.0);
}

#[test]
fn activation_launchers_refuse_bad_shapes() {
    let Some(ctx) = common::gpu() else { return };
    let a = ctx.storage_buffer("a", 4 * 10).unwrap();
    let b = ctx.storage_buffer("b", 4 * 9).unwrap();
    let e = gpu_act::activation_forward(ctx, Activation::Relu, &a, &b, 10).unwrap_err();
    assert!(e.to_string().contains("`y`"), "{e}");
    let e = gpu_act::activation_forward(ctx, Activation::Relu, &a, &a, 10).unwrap_err();
    assert!(e.to_string().contains("same buffer"), "{e}");
}
