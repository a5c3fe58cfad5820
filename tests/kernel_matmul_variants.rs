//! Every matmul variant the autotune may pick, forced one by one, against the CPU twin on
//! awkward shapes (1, primes, not multiples of any tile or of 4) in all three layouts,
//! overwriting and accumulating; the fused bias + activation epilogue against the unfused
//! ops; and the autotune's cache file (round trip, corrupt file ignored).

mod common;

use gradscope::Error;
use gradscope::cpu::matmul::matmul as cpu_matmul;
use gradscope::gpu::autotune;
use gradscope::gpu::kernels::activation::activation_forward;
use gradscope::gpu::kernels::bias::bias_forward;
use gradscope::gpu::kernels::matmul::{
    Epilogue, MatmulVariant, VARIANTS, matmul_forward_fused, matmul_with, vec4_allowed,
};
use gradscope::ops::{Activation, MatmulLayout, MatmulShape};

const LAYOUTS: [MatmulLayout; 3] = [MatmulLayout::NN, MatmulLayout::NT, MatmulLayout::TN];

/// (M, N, K): ones, primes, multiples of 4 (so the vec4 variants run) that are not
/// multiples of any tile, one past a 128 tile, K shorter than one slice, K ≫ M·N.
const SHAPES: [(usize, usize, usize); 12] = [
    (1, 1, 1),
    (1, 7, 13),
    (13, 1, 7),
    (31, 17, 127),
    (4, 4, 4),
    (12, 20, 36),
    (68, 132, 8),
    (129, 131, 17),
    (132, 136, 44),
    (64, 128, 64),
    (3, 200, 5),
    (8, 4, 300),
];

// As in tests/kernel_matmul.rs: atol = 1e-5·√K bounds the random-walk rounding error of
// two summation orders (GEMM blocks on the CPU, ascending k on the GPU) with a wide margin;
// a wrong index or a missed tile changes results by O(0.1).
fn atol_f32(k: usize) -> f32 {
    1e-5 * (k as f32).sqrt()
}
const RTOL_F32: f32 = 1e-4;

fn shape(m: usize, n: usize, k: usize) -> MatmulShape {
    MatmulShape { m, n, k }
}

fn inputs(seed: u64, s: MatmulShape) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    (
        common::random_vec(seed, s.m * s.k, -1.0, 1.0),
        common::random_vec(seed + 1, s.k * s.n, -1.0, 1.0),
        common::random_vec(seed + 2, s.m * s.n, -1.0, 1.0),
    )
}

#[test]
fn variant_names_round_trip_and_are_distinct() {
    for v in VARIANTS {
        assert_eq!(MatmulVariant::from_name(&v.name()), Some(v));
    }
    let mut names: Vec<String> = VARIANTS.iter().map(|v| v.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), VARIANTS.len());
    assert_eq!(MatmulVariant::from_name("t7x7k7"), None);
}

#[test]
fn vec4_needs_rows_divisible_by_four() {
    assert!(vec4_allowed(MatmulLayout::NN, shape(3, 4, 8)));
    assert!(!vec4_allowed(MatmulLayout::NN, shape(4, 3, 8)));
    assert!(!vec4_allowed(MatmulLayout::NN, shape(4, 4, 7)));
    assert!(vec4_allowed(MatmulLayout::NT, shape(3, 5, 8)));
    assert!(!vec4_allowed(MatmulLayout::NT, shape(4, 4, 6)));
    assert!(vec4_allowed(MatmulLayout::TN, shape(4, 8, 3)));
    assert!(!vec4_allowed(MatmulLayout::TN, shape(6, 8, 4)));
    // Candidates: all scalar variants always, vec4 ones only where allowed.
    let all = MatmulVariant::candidates(MatmulLayout::NN, shape(4, 4, 4));
    assert_eq!(all.len(), VARIANTS.len());
    let some = MatmulVariant::candidates(MatmulLayout::NN, shape(4, 5, 4));
    assert!(
        some.iter()
            .all(|v| !matches!(v, MatmulVariant::Tiled { vec4: true, .. }))
    );
    assert_eq!(some.len(), 8);
}

/// Each variant, forced, on every shape and layout, overwriting (from a random C, which it
/// must not read) and accumulating: against the CPU twin, and bit for bit against the
/// simple kernel (every variant sums in ascending k, so the autotune's choice does not
/// change any result).
#[test]
fn every_variant_matches_cpu_and_the_simple_kernel() {
    let Some(ctx) = common::gpu() else { return };
    eprintln!("adapter: {}", ctx.adapter.describe());
    for (ci, &(m, n, k)) in SHAPES.iter().enumerate() {
        let s = shape(m, n, k);
        for layout in LAYOUTS {
            for accumulate in [false, true] {
                let seed = 5000 + ci as u64 * 10;
                let (a, b, c0) = inputs(seed, s);
                let mut want = c0.clone();
                cpu_matmul(layout, s, &a, &b, &mut want, accumulate).unwrap();
                let ga = ctx.upload("a", &a).unwrap();
                let gb = ctx.upload("b", &b).unwrap();
                let mut simple: Option<Vec<f32>> = None;
                for v in MatmulVariant::candidates(layout, s) {
                    let gc = ctx.upload("c", &c0).unwrap();
                    let d = matmul_with(
                        ctx,
                        v,
                        layout,
                        s,
                        &ga,
                        &gb,
                        &gc,
                        accumulate,
                        Epilogue::default(),
                    )
                    .unwrap();
                    ctx.run(&[&d]).unwrap();
                    let got: Vec<f32> = ctx.read(&gc, m * n).unwrap();
                    let what = format!(
                        "{} {layout:?} {s:?} accumulate={accumulate} seed={seed}",
                        v.name()
                    );
                    common::assert_close(&what, &got, &want, atol_f32(k), RTOL_F32);
                    match &simple {
                        None => simple = Some(got),
                        Some(reference) => {
                            let same = reference
                                .iter()
                                .zip(&got)
                                .all(|(x, y)| x.to_bits() == y.to_bits());
                            assert!(same, "{what}: differs in bits from the simple kernel");
                        }
                    }
                }
            }
        }
    }
}

/// Writes stay inside C(M,N), and a NaN in op(A) row 1 and op(B) column 2 poisons exactly
/// C's row 1 and column 2 (zero padding never reads real data past K), for every variant.
#[test]
fn every_variant_stays_inside_c_and_keeps_nan_local() {
    let Some(ctx) = common::gpu() else { return };
    for layout in LAYOUTS {
        for (m, n, k) in [(132, 68, 20), (3, 5, 7)] {
            let s = shape(m, n, k);
            let (mut a, mut b, _) = inputs(91, s);
            match layout {
                MatmulLayout::TN => a[3 * m + 1] = f32::NAN,
                _ => a[k + 3] = f32::NAN,
            }
            match layout {
                MatmulLayout::NT => b[2 * k + 3] = f32::NAN,
                _ => b[3 * n + 2] = f32::NAN,
            }
            let ga = ctx.upload("a", &a).unwrap();
            let gb = ctx.upload("b", &b).unwrap();
            for v in MatmulVariant::candidates(layout, s) {
                let sentinel = vec![12345.0f32; m * n + 300];
                let gc = ctx.upload("c", &sentinel).unwrap();
                let d = matmul_with(ctx, v, layout, s, &ga, &gb, &gc, false, Epilogue::default())
                    .unwrap();
                ctx.run(&[&d]).unwrap();
                let got: Vec<f32> = ctx.read(&gc, sentinel.len()).unwrap();
                let what = format!("{} {layout:?} {s:?}", v.name());
                assert!(
                    got[m * n..].iter().all(|&x| x == 12345.0),
                    "{what}: wrote past C"
                );
                for i in 0..m {
                    for j in 0..n {
                        let x = got[i * n + j];
                        assert_eq!(x.is_nan(), i == 1 || j == 2, "{what}: C[{i},{j}] = {x}");
                        assert_ne!(x, 12345.0, "{what}: C[{i},{j}] not written");
                    }
                }
            }
        }
    }
}

#[test]
fn vec4_variant_on_a_shape_without_it_is_refused() {
    let Some(ctx) = common::gpu() else { return };
    let s = shape(5, 6, 7);
    let a = ctx.storage_buffer("a", 35 * 4).unwrap();
    let b = ctx.storage_buffer("b", 42 * 4).unwrap();
    let c = ctx.storage_buffer("c", 30 * 4).unwrap();
    let v4 = MatmulVariant::Tiled {
        bm: 64,
        bn: 64,
        bk: 16,
        vec4: true,
        prefetch: false,
    };
    for layout in LAYOUTS {
        match matmul_with(ctx, v4, layout, s, &a, &b, &c, false, Epilogue::default()) {
            Err(Error::Shape { detail, .. }) => assert!(detail.contains("vec4"), "{detail}"),
            other => panic!("{layout:?}: expected a shape error, got {other:?}"),
        }
    }
    // The simple kernel has no epilogue.
    match matmul_with(
        ctx,
        MatmulVariant::Simple,
        MatmulLayout::NT,
        s,
        &a,
        &b,
        &c,
        false,
        Epilogue {
            bias: Some(&b),
            act: None,
        },
    ) {
        Err(Error::Shape { detail, .. }) => assert!(detail.contains("epilogue"), "{detail}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    ctx.check("after refused launches").unwrap();
}

const ACTIVATIONS: [Activation; 9] = [
    Activation::Identity,
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Relu,
    Activation::LeakyRelu { slope: 0.05 },
    Activation::Elu { alpha: 0.7 },
    Activation::Selu,
    Activation::Gelu,
    Activation::Softplus,
];

/// A dense layer's forward fused into the matmul epilogue (y = x·Wᵀ + b, z = f(y)) against
/// the unfused ops (matmul, bias_forward, activation_forward), bit for bit: every
/// activation, with and without bias, through the launcher the executor uses, and every
/// tiled variant with at least one of those (activation, bias) pairs; y keeps the
/// pre-activation.
#[test]
fn fused_epilogue_matches_unfused_ops() {
    let Some(ctx) = common::gpu() else { return };
    let layout = MatmulLayout::NT;
    for (ci, &(m, n, k)) in [(1, 1, 1), (13, 7, 5), (130, 68, 12)].iter().enumerate() {
        let s = shape(m, n, k);
        let seed = 7000 + ci as u64 * 10;
        // Inputs scaled so that pre-activations cover both sides of 0 and the saturating
        // ranges.
        let x = common::random_vec(seed, m * k, -3.0, 3.0);
        let w = common::random_vec(seed + 1, n * k, -3.0, 3.0);
        let bias = common::random_vec(seed + 2, n, -2.0, 2.0);
        let gx = ctx.upload("x", &x).unwrap();
        let gw = ctx.upload("w", &w).unwrap();
        let gbias = ctx.upload("bias", &bias).unwrap();
        for (ai, act) in ACTIVATIONS.into_iter().enumerate() {
            for with_bias in [false, true] {
                // Unfused: the plan's ops, on the simple kernel.
                let y0 = ctx.storage_buffer("y0", (m * n * 4) as u64).unwrap();
                let z0 = ctx.storage_buffer("z0", (m * n * 4) as u64).unwrap();
                let mut ds = vec![
                    matmul_with(
                        ctx,
                        MatmulVariant::Simple,
                        layout,
                        s,
                        &gx,
                        &gw,
                        &y0,
                        false,
                        Epilogue::default(),
                    )
                    .unwrap(),
                ];
                if with_bias {
                    ds.push(bias_forward(ctx, &y0, &gbias, m, n).unwrap());
                }
                ds.push(activation_forward(ctx, act, &y0, &z0, m * n).unwrap());
                ctx.run(&ds.iter().collect::<Vec<_>>()).unwrap();
                let want_y: Vec<f32> = ctx.read(&y0, m * n).unwrap();
                let want_z: Vec<f32> = ctx.read(&z0, m * n).unwrap();
                fn epilogue<'a>(
                    bias: Option<&'a wgpu::Buffer>,
                    act: Activation,
                    z: &'a wgpu::Buffer,
                ) -> Epilogue<'a> {
                    Epilogue {
                        bias,
                        act: Some((act, z)),
                    }
                }
                let bias_buf = with_bias.then_some(&gbias);
                let mut variants: Vec<MatmulVariant> = MatmulVariant::candidates(layout, s)
                    .into_iter()
                    .filter(|v| *v != MatmulVariant::Simple)
                    .collect();
                variants.truncate(if m > 64 { variants.len() } else { 3 });
                // Each (activation, bias) pair on a share of the variants, so that every
                // variant's epilogue runs with some pair and every pair runs through the
                // launcher below: each pair is its own pipeline (override constants), and
                // the full product was 270 of them, minutes to compile on lavapipe.
                let pair = 2 * ai + with_bias as usize;
                let pairs = 2 * ACTIVATIONS.len();
                for v in variants
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| i % pairs == pair % pairs || (m <= 64 && i % 3 == pair % 3))
                    .map(|(_, v)| v)
                {
                    let y = ctx.storage_buffer("y", (m * n * 4) as u64).unwrap();
                    let z = ctx.storage_buffer("z", (m * n * 4) as u64).unwrap();
                    let d = matmul_with(
                        ctx,
                        v,
                        layout,
                        s,
                        &gx,
                        &gw,
                        &y,
                        false,
                        epilogue(bias_buf, act, &z),
                    )
                    .unwrap();
                    ctx.run(&[&d]).unwrap();
                    let got_y: Vec<f32> = ctx.read(&y, m * n).unwrap();
                    let got_z: Vec<f32> = ctx.read(&z, m * n).unwrap();
                    let what = format!(
                        "{} {} bias={with_bias} {s:?} seed={seed}",
                        v.name(),
                        act.name()
                    );
                    for (i, (g, w)) in got_y.iter().zip(&want_y).enumerate() {
                        assert_eq!(g.to_bits(), w.to_bits(), "{what}: y[{i}] {g} vs {w}");
                    }
                    for (i, (g, w)) in got_z.iter().zip(&want_z).enumerate() {
                        assert_eq!(g.to_bits(), w.to_bits(), "{what}: z[{i}] {g} vs {w}");
                    }
                }
                // The launcher the executor uses picks a variant itself.
                let y = ctx.storage_buffer("y", (m * n * 4) as u64).unwrap();
                let z = ctx.storage_buffer("z", (m * n * 4) as u64).unwrap();
                let d = matmul_forward_fused(ctx, s, &gx, &gw, &y, epilogue(bias_buf, act, &z))
                    .unwrap();
                ctx.run(&[&d]).unwrap();
                let got_z: Vec<f32> = ctx.read(&z, m * n).unwrap();
                assert!(
                    got_z
                        .iter()
                        .zip(&want_z)
                        .all(|(g, w)| g.to_bits() == w.to_bits()),
                    "matmul_forward_fused {} bias={with_bias} {s:?}",
                    act.name()
                );
            }
        }
    }
}

/// The autotune times every candidate and returns the fastest of them.
#[test]
fn tune_times_every_candidate() {
    let Some(ctx) = common::gpu() else { return };
    let s = shape(36, 20, 12);
    let (best, times) = autotune::tune(ctx, MatmulLayout::NN, s).unwrap();
    assert_eq!(
        times.len(),
        MatmulVariant::candidates(MatmulLayout::NN, s).len()
    );
    assert!(times.iter().all(|(_, t)| *t > 0.0 && t.is_finite()));
    let fastest = times.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
    assert_eq!(best, fastest);
}

#[test]
fn cache_file_round_trips_and_corruption_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("autotune.json");
    // Missing: empty, no warning.
    let (empty, warning) = autotune::read_cache(&path);
    assert!(empty.adapters.is_empty() && warning.is_none());
    let mut file = autotune::CacheFile {
        version: autotune::CACHE_VERSION,
        ..Default::default()
    };
    file.adapters
        .entry("gpu | drv | vulkan".into())
        .or_default()
        .insert(
            autotune::shape_key(MatmulLayout::TN, shape(4, 5, 6)),
            "t128x64k8".into(),
        );
    autotune::write_cache(&path, &file).unwrap();
    let (back, warning) = autotune::read_cache(&path);
    assert!(warning.is_none());
    assert_eq!(
        back.adapters["gpu | drv | vulkan"]["tn 4x5x6"],
        "t128x64k8".to_string()
    );
    // Corrupt, or of another version: empty, with a warning naming the file.
    for bad in ["{not json", "{\"version\": 1, \"adapters\": {}}", ""] {
        std::fs::write(&path, bad).unwrap();
        let (c, warning) = autotune::read_cache(&path);
        assert!(c.adapters.is_empty());
        let w = warning.expect("a warning");
        assert!(w.contains("autotune.json"), "{w}");
    }
}

/// Without timing, the heuristic picks the largest tile that still gives many workgroups,
/// with vec4 loads where the shape allows them.
#[test]
fn heuristic_prefers_large_tiles_for_large_products() {
    let big = autotune::heuristic(MatmulLayout::NN, shape(4096, 4096, 4096));
    assert_eq!(big.name(), "t128x128k8v4");
    let small = autotune::heuristic(MatmulLayout::NN, shape(128, 10, 256));
    assert_eq!(small.name(), "t64x64k16");
    let odd = autotune::heuristic(MatmulLayout::NT, shape(2047, 2049, 7));
    assert_eq!(odd.name(), "t128x128k8");
}

/// The fusion pass finds each dense layer's product, bias and activation in an MLP's
/// training and evaluation op lists (the last layer has no activation: product + bias),
/// and nothing else.
#[test]
fn fusion_finds_every_dense_forward_of_an_mlp() {
    use gradscope::gpu::fusion::{Fused, find_fusions};
    use gradscope::init::Init;
    use gradscope::model::{LossKind, ModelSpec};
    use gradscope::ops::{OptimizerKind, OptimizerParams};
    let model = ModelSpec::mlp(
        12,
        &[8, 8],
        3,
        Activation::Tanh,
        Init::HeNormal,
        LossKind::Xent,
    )
    .unwrap();
    let plan =
        gradscope::plan::compile(&model, 5, OptimizerParams::new(OptimizerKind::Sgd)).unwrap();
    for ops in [&plan.ops, &plan.eval] {
        let f = find_fusions(&plan, ops);
        let heads: Vec<usize> = f
            .iter()
            .filter_map(|x| match x {
                Fused::Head(_, absorbs) => Some(*absorbs),
                _ => None,
            })
            .collect();
        assert_eq!(heads, vec![2, 2, 1], "{f:?}");
        let absorbed = f.iter().filter(|x| **x == Fused::Absorbed).count();
        assert_eq!(absorbed, 5);
        // Every head is a forward product; every absorbed op follows its head.
        for (i, x) in f.iter().enumerate() {
            if let Fused::Head(d, _) = x {
                assert!(d.bias.is_some());
                assert!(matches!(ops[i], gradscope::plan::Op::Matmul { .. }));
            }
        }
    }
}

/// The autotune's clock (`gpu::timing`, on top of `gpu::timer`): a pass of several products
/// takes a positive, finite time per product, and a pass repeated 4 times reports the time
/// of one repetition (within the noise of a shared machine, not 4× more).
#[test]
fn timing_reports_seconds_per_repetition() {
    let Some(ctx) = common::gpu() else { return };
    let s = MatmulShape {
        m: 64,
        n: 64,
        k: 64,
    };
    let (a, b, c0) = inputs(77, s);
    let (ga, gb, gc) = (
        ctx.upload("a", &a).unwrap(),
        ctx.upload("b", &b).unwrap(),
        ctx.upload("c", &c0).unwrap(),
    );
    let d = matmul_with(
        ctx,
        MatmulVariant::Simple,
        MatmulLayout::NN,
        s,
        &ga,
        &gb,
        &gc,
        false,
        Epilogue::default(),
    )
    .unwrap();
    let dispatches = vec![&d; 8];
    // The quickest of three of each, so one hiccup of a loaded machine does not decide.
    let quickest = |repeat: usize| {
        (0..3)
            .map(|_| gradscope::gpu::timing::time_pass(ctx, &dispatches, repeat).unwrap())
            .fold(f64::INFINITY, f64::min)
    };
    let (one, four) = (quickest(1), quickest(4));
    assert!(one.is_finite() && one > 0.0, "{one}");
    assert!(four.is_finite() && four > 0.0, "{four}");
    assert!(
        four < 3.0 * one,
        "per repetition: {four} s against {one} s for one"
    );
    let median = gradscope::gpu::timing::median_time(ctx, &[&d], 1, 3, 1e-3).unwrap();
    assert!(median.is_finite() && median > 0.0, "{median}");
}
