//! The seeded generator and the weight initializers: distributions match their formulas
//! within sampling error, orthogonal matrices are orthogonal, and seeds reproduce.

use gradscope::init::{Init, activation_gain, init_weight};
use gradscope::ops::Activation;
use gradscope::rng::Rng;

fn mean_std(x: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// N = 200 000 standard normals: the sample mean has σ = 1/√N ≈ 0.0022 and the sample
/// variance σ = √(2/N) ≈ 0.0032, so 0.012 and 0.016 are about five standard errors.
#[test]
fn rng_normal_has_mean_zero_variance_one() {
    let mut rng = Rng::new(7);
    let n = 200_000;
    let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let mean = x.iter().sum::<f64>() / n as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    assert!(mean.abs() < 0.012, "seed 7: mean {mean}");
    assert!((var - 1.0).abs() < 0.016, "seed 7: variance {var}");
    // Tails: P(|z| > 3) = 0.0027, so ~540 expected (σ ≈ 23).
    let tail = x.iter().filter(|v| v.abs() > 3.0).count();
    assert!(
        (420..660).contains(&tail),
        "seed 7: {tail} samples beyond 3σ"
    );
}

#[test]
fn rng_uniform_below_and_shuffle() {
    let mut rng = Rng::new(3);
    let u: Vec<f64> = (0..100_000).map(|_| rng.uniform()).collect();
    assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)));
    let mean = u.iter().sum::<f64>() / u.len() as f64;
    // σ of the mean: √(1/12/N) ≈ 0.0009.
    assert!((mean - 0.5).abs() < 0.005, "uniform mean {mean}");
    let r: Vec<f64> = (0..1000).map(|_| rng.uniform_range(-3.0, 5.0)).collect();
    assert!(r.iter().all(|&v| (-3.0..5.0).contains(&v)));

    // below(7): each residue ~ 10 000 of 70 000 (σ ≈ 93).
    let mut counts = [0usize; 7];
    for _ in 0..70_000 {
        counts[rng.below(7)] += 1;
    }
    assert!(
        counts.iter().all(|&c| (9_500..10_500).contains(&c)),
        "{counts:?}"
    );
    assert_eq!(rng.below(1), 0);

    let mut v: Vec<usize> = (0..100).collect();
    rng.shuffle(&mut v);
    assert_ne!(
        v,
        (0..100).collect::<Vec<_>>(),
        "shuffle left 100 items in order"
    );
    let mut sorted = v.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..100).collect::<Vec<_>>(),
        "shuffle is not a permutation"
    );
    let mut empty: [u8; 0] = [];
    rng.shuffle(&mut empty);
}

#[test]
fn rng_is_reproducible_and_forks_are_independent() {
    let draw = |rng: &mut Rng| (0..16).map(|_| rng.next_u64()).collect::<Vec<_>>();
    assert_eq!(draw(&mut Rng::new(42)), draw(&mut Rng::new(42)));
    assert_ne!(draw(&mut Rng::new(42)), draw(&mut Rng::new(43)));

    let mut parent = Rng::new(42);
    let a = draw(&mut parent.fork(0));
    let b = draw(&mut parent.fork(1));
    let c = draw(&mut parent.fork(0));
    assert_ne!(a, b, "forks 0 and 1 share a stream");
    assert_ne!(a, c, "two forks with the same stream id repeat each other");
    assert_ne!(a, draw(&mut Rng::new(42)), "a fork repeats its parent");

    // Forks taken in the same order reproduce, whatever the children consume.
    let mut p1 = Rng::new(42);
    let mut f1 = p1.fork(0);
    let _ = draw(&mut f1);
    let g1 = draw(&mut p1.fork(1));
    let mut p2 = Rng::new(42);
    let _f2 = p2.fork(0);
    let g2 = draw(&mut p2.fork(1));
    assert_eq!(g1, g2);
}

const FAN_OUT: usize = 256;
const FAN_IN: usize = 512;

/// Each init on a 256×512 matrix (N = 131 072): the sample std of a normal has relative
/// standard error 1/√(2N) ≈ 0.002, of a uniform ≈ 0.0014, so 1.5% is 7–10 standard errors,
/// while any confusion of fan_in and fan_out, or of a formula's constant, moves it by ≥ 15%.
#[test]
fn init_std_and_limits_match_torch_formulas() {
    let (fi, fo) = (FAN_IN as f64, FAN_OUT as f64);
    let gain = 2f64.sqrt();
    // (init, gain passed, expected std, uniform limit if uniform)
    let cases: Vec<(Init, f64, f64, Option<f64>)> = vec![
        (Init::Normal { std: 0.1 }, gain, 0.1, None),
        (
            Init::Uniform { limit: 0.3 },
            gain,
            0.3 / 3f64.sqrt(),
            Some(0.3),
        ),
        (Init::XavierNormal, 1.0, (2.0 / (fi + fo)).sqrt(), None),
        (
            Init::XavierNormal,
            gain,
            gain * (2.0 / (fi + fo)).sqrt(),
            None,
        ),
        (
            Init::XavierUniform,
            1.0,
            (2.0 / (fi + fo)).sqrt(),
            Some((6.0 / (fi + fo)).sqrt()),
        ),
        (Init::HeNormal, gain, gain / fi.sqrt(), None),
        (
            Init::HeUniform,
            gain,
            gain / fi.sqrt(),
            Some(gain * (3.0 / fi).sqrt()),
        ),
        (Init::LecunNormal, 1.0, 1.0 / fi.sqrt(), None),
        // LeCun's variance is 1/fan_in whatever gain the caller passes.
        (Init::LecunNormal, gain, 1.0 / fi.sqrt(), None),
        (
            Init::LecunUniform,
            1.0,
            1.0 / fi.sqrt(),
            Some((3.0 / fi).sqrt()),
        ),
        // A semi-orthogonal 256×512 with orthonormal rows: Σw² = 256·gain², spread over
        // 131 072 entries of mean ~0, so std = gain/√512.
        (Init::Orthogonal, gain, gain / fi.sqrt(), None),
    ];
    for (i, (init, g, want_std, limit)) in cases.into_iter().enumerate() {
        let seed = 100 + i as u64;
        let what = format!("{} gain {g} seed {seed} [{FAN_OUT}, {FAN_IN}]", init.name());
        let w = init_weight(init, FAN_OUT, FAN_IN, g, &mut Rng::new(seed));
        assert_eq!(w.len(), FAN_OUT * FAN_IN, "{what}: length");
        let (mean, std) = mean_std(&w);
        assert!(
            (std / want_std - 1.0).abs() < 0.015,
            "{what}: std {std}, want {want_std}"
        );
        assert!(
            mean.abs() < 5.0 * want_std / (w.len() as f64).sqrt(),
            "{what}: mean {mean}"
        );
        if let Some(limit) = limit {
            let max = w.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
            // f32 rounding may land exactly on the limit, never past it by more.
            assert!(
                max <= limit * (1.0 + 1e-7),
                "{what}: max |w| {max} > {limit}"
            );
            assert!(
                max > 0.999 * limit,
                "{what}: max |w| {max} far below {limit}"
            );
        }
    }
    assert!(
        init_weight(Init::Zeros, 3, 5, 1.0, &mut Rng::new(1))
            .iter()
            .all(|&v| v == 0.0)
    );
}

/// max |WWᵀ − gain²·I| (wide) or |WᵀW − gain²·I| (tall), in f64 from the f32 weights.
fn orthogonality_error(w: &[f32], rows: usize, cols: usize, gain: f64) -> f64 {
    let at = |i: usize, j: usize| w[i * cols + j] as f64;
    let wide = rows < cols;
    let k = rows.min(cols);
    let mut worst: f64 = 0.0;
    for a in 0..k {
        for b in 0..k {
            let dot: f64 = if wide {
                (0..cols).map(|j| at(a, j) * at(b, j)).sum()
            } else {
                (0..rows).map(|i| at(i, a) * at(i, b)).sum()
            };
            let want = if a == b { gain * gain } else { 0.0 };
            worst = worst.max((dot - want).abs());
        }
    }
    worst
}

/// f32 storage rounds each entry to ~6e-8 relative; a dot product of n such entries then
/// errs by ~1e-7·√n, far below the 1e-5 allowed; a wrong sign or a missed reflector is O(1).
#[test]
fn orthogonal_is_orthogonal_in_both_orientations() {
    for &(rows, cols) in &[
        (256usize, 512usize),
        (512, 256),
        (31, 31),
        (7, 13),
        (13, 7),
        (1, 5),
        (5, 1),
    ] {
        for &gain in &[1.0, 5.0 / 3.0] {
            let w = init_weight(Init::Orthogonal, rows, cols, gain, &mut Rng::new(9));
            assert_eq!(w.len(), rows * cols);
            let err = orthogonality_error(&w, rows, cols, gain);
            assert!(
                err < 1e-5 * gain * gain,
                "orthogonal [{rows}, {cols}] gain {gain} seed 9: max |QᵀQ − g²I| = {err}"
            );
        }
    }
    assert!(init_weight(Init::Orthogonal, 0, 4, 1.0, &mut Rng::new(1)).is_empty());
}

/// The sign correction makes Q the factor with a positive diagonal in R = QᵀA. For a tall
/// Gaussian A we rebuild A from the same seed and check diag(QᵀA) > 0.
#[test]
fn orthogonal_sign_correction_gives_positive_r_diagonal() {
    let (rows, cols) = (40usize, 12usize);
    let q = init_weight(Init::Orthogonal, rows, cols, 1.0, &mut Rng::new(5));
    let mut rng = Rng::new(5);
    let a: Vec<f64> = (0..rows * cols).map(|_| rng.normal()).collect();
    for j in 0..cols {
        let r_jj: f64 = (0..rows)
            .map(|i| q[i * cols + j] as f64 * a[i * cols + j])
            .sum();
        assert!(
            r_jj > 0.0,
            "R[{j}][{j}] = {r_jj} (seed 5, [{rows}, {cols}])"
        );
    }
}

#[test]
fn init_seeds_reproduce_and_differ() {
    for name in Init::ALL_NAMES {
        let init = Init::parse(name).unwrap();
        let a = init_weight(init, 13, 7, 1.0, &mut Rng::new(11));
        let b = init_weight(init, 13, 7, 1.0, &mut Rng::new(11));
        assert_eq!(a, b, "{name}: same seed, different weights");
        // The constant initializers draw nothing.
        if !matches!(init, Init::Zeros | Init::Ones) {
            let c = init_weight(init, 13, 7, 1.0, &mut Rng::new(12));
            assert_ne!(a, c, "{name}: seeds 11 and 12 give the same weights");
        }
    }
}

#[test]
fn init_names_parse_and_serialize() {
    for name in Init::ALL_NAMES {
        let init = Init::parse(name).unwrap_or_else(|| panic!("{name} does not parse"));
        assert_eq!(init.name(), *name);
        let json = serde_json::to_string(&init).unwrap();
        let back: Init = serde_json::from_str(&json).unwrap();
        assert_eq!(back, init, "{name} via {json}");
    }
    assert_eq!(Init::parse("Kaiming-Normal"), Some(Init::HeNormal));
    assert_eq!(Init::parse("glorot_uniform"), Some(Init::XavierUniform));
    assert_eq!(Init::parse("normal:0.01"), Some(Init::Normal { std: 0.01 }));
    assert_eq!(
        Init::parse("uniform:0.2"),
        Some(Init::Uniform { limit: 0.2 })
    );
    assert_eq!(Init::parse("normal:-1"), None);
    assert_eq!(Init::parse("he_normal:2"), None);
    assert_eq!(Init::parse("xavier"), None);
    assert_eq!(
        serde_json::to_string(&Init::HeNormal).unwrap(),
        "\"he_normal\""
    );
    let n: Init = serde_json::from_str(r#"{"normal":{"std":0.5}}"#).unwrap();
    assert_eq!(n, Init::Normal { std: 0.5 });
}

#[test]
fn activation_gains_match_calculate_gain() {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(activation_gain(&Activation::Identity), 1.0));
    assert!(close(activation_gain(&Activation::Sigmoid), 1.0));
    assert!(close(activation_gain(&Activation::Tanh), 5.0 / 3.0));
    assert!(close(activation_gain(&Activation::Relu), 2f64.sqrt()));
    assert!(close(activation_gain(&Activation::Selu), 0.75));
    // calculate_gain('leaky_relu', 0.01) = √(2/1.0001); the slope is an f32 here.
    let g = activation_gain(&Activation::LeakyRelu { slope: 0.01 });
    assert!((g - (2.0 / 1.0001f64).sqrt()).abs() < 1e-9, "{g}");
    assert!(close(activation_gain(&Activation::Gelu), 1.0));
}
