//! The matmul family: the CPU GEMM path against the naive triple loop, the GPU kernel against
//! the CPU twin, on all three layouts and awkward shapes (1, primes, not multiples of the
//! 64×64×16 tile), overwriting and accumulating; and bad sizes give errors, not panics.

mod common;

use gradscope::Error;
use gradscope::cpu::matmul::{matmul as cpu_matmul, matmul_naive};
use gradscope::gpu::kernels::matmul::matmul as gpu_matmul;
use gradscope::ops::{MatmulLayout, MatmulShape};

const LAYOUTS: [MatmulLayout; 3] = [MatmulLayout::NN, MatmulLayout::NT, MatmulLayout::TN];

/// (M, N, K): ones, primes, exact tiles, one past and one short of a tile, K ≫ M·N.
const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (1, 7, 13),
    (13, 1, 7),
    (31, 17, 127),
    (64, 64, 64),
    (65, 63, 67),
    (128, 10, 256),
    (3, 200, 5),
    (97, 131, 16),
];

fn shape(m: usize, n: usize, k: usize) -> MatmulShape {
    MatmulShape { m, n, k }
}

/// Seeded inputs A, B and an initial C for one case; entries in [-1, 1).
fn inputs(seed: u64, s: MatmulShape) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    (
        common::random_vec(seed, s.m * s.k, -1.0, 1.0),
        common::random_vec(seed + 1, s.k * s.n, -1.0, 1.0),
        common::random_vec(seed + 2, s.m * s.n, -1.0, 1.0),
    )
}

// Tolerances. Entries are uniform in [-1, 1), so each product has |x·y| ≤ 1 and a sum of K of
// them has magnitude ~sqrt(K/9). Each f32 result carries rounding error of about
// ε·(Σ|x·y|) in the worst case and ε·sqrt(K)·(typical partial sum) in practice, with
// ε = 6e-8; two different summation orders (GEMM blocks vs the shader's ascending k) differ by
// twice that. atol = 1e-5·sqrt(K) bounds the random-walk error with a wide margin (for K = 256
// it is 1.6e-4, against an observed ~1e-6) while a wrong index, a missed tile or a dropped
// accumulate changes results by O(0.1) and fails at once. rtol = 1e-4 covers the accumulate
// case, where |C| is up to ~1 plus the sum.
fn atol_f32(k: usize) -> f32 {
    1e-5 * (k as f32).sqrt()
}
const RTOL_F32: f32 = 1e-4;

#[test]
fn cpu_gemm_matches_naive_f64() {
    // In f64 both paths are exact to ~1e-16 per term: a 1e-12 tolerance leaves nothing but
    // stride or layout mistakes to catch.
    for (ci, &(m, n, k)) in SHAPES.iter().enumerate() {
        let s = shape(m, n, k);
        for layout in LAYOUTS {
            for accumulate in [false, true] {
                let seed = 1000 + ci as u64 * 10;
                let a = common::random_vec_f64(seed, m * k, -1.0, 1.0);
                let b = common::random_vec_f64(seed + 1, k * n, -1.0, 1.0);
                let c0 = common::random_vec_f64(seed + 2, m * n, -1.0, 1.0);
                let mut got = c0.clone();
                let mut want = c0.clone();
                cpu_matmul(layout, s, &a, &b, &mut got, accumulate).unwrap();
                matmul_naive(layout, s, &a, &b, &mut want, accumulate).unwrap();
                common::assert_close_f64(
                    &format!("cpu f64 {layout:?} {s:?} accumulate={accumulate} seed={seed}"),
                    &got,
                    &want,
                    1e-12,
                    1e-12,
                );
            }
        }
    }
}

#[test]
fn cpu_gemm_matches_naive_f32() {
    for (ci, &(m, n, k)) in SHAPES.iter().enumerate() {
        let s = shape(m, n, k);
        for layout in LAYOUTS {
            for accumulate in [false, true] {
                let seed = 2000 + ci as u64 * 10;
                let (a, b, c0) = inputs(seed, s);
                let mut got = c0.clone();
                let mut want = c0.clone();
                cpu_matmul(layout, s, &a, &b, &mut got, accumulate).unwrap();
                matmul_naive(layout, s, &a, &b, &mut want, accumulate).unwrap();
                common::assert_close(
                    &format!("cpu f32 {layout:?} {s:?} accumulate={accumulate} seed={seed}"),
                    &got,
                    &want,
                    atol_f32(k),
                    RTOL_F32,
                );
            }
        }
    }
}

/// The dense forward's NT product at sizes where the CPU transposes B in tiles first (and,
/// past 2^17 elements of B, on several threads): ragged against every tile width, with and
/// without accumulation, on one thread and on three.
#[test]
fn cpu_nt_through_transpose_matches_naive() {
    for (ci, &(m, n, k)) in [(8, 16, 16), (9, 17, 33), (33, 257, 520), (130, 300, 449)]
        .iter()
        .enumerate()
    {
        let s = shape(m, n, k);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for accumulate in [false, true] {
                let seed = 2500 + ci as u64 * 10;
                let (a, b, c0) = inputs(seed, s);
                let mut got = c0.clone();
                let mut want = c0.clone();
                pool.install(|| cpu_matmul(MatmulLayout::NT, s, &a, &b, &mut got, accumulate))
                    .unwrap();
                matmul_naive(MatmulLayout::NT, s, &a, &b, &mut want, accumulate).unwrap();
                common::assert_close(
                    &format!("cpu f32 NT {s:?} accumulate={accumulate} threads={threads}"),
                    &got,
                    &want,
                    atol_f32(k),
                    RTOL_F32,
                );
            }
        }
    }
}

/// The naive loop itself, on a product small enough to write out by hand, so the reference
/// is not just trusted: A = [[1,2,3],[4,5,6]] (2×3), B = [[7,8],[9,10],[11,12]] (3×2).
#[test]
fn naive_matches_hand_computed_product() {
    let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
    let b = [7.0f64, 8.0, 9.0, 10.0, 11.0, 12.0];
    let want = [58.0f64, 64.0, 139.0, 154.0];
    let s = shape(2, 2, 3);
    let mut c = [0.0f64; 4];
    matmul_naive(MatmulLayout::NN, s, &a, &b, &mut c, false).unwrap();
    assert_eq!(c, want);
    // The same product with B stored transposed (N,K) and A stored transposed (K,M).
    let bt = [7.0f64, 9.0, 11.0, 8.0, 10.0, 12.0];
    let at = [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0];
    matmul_naive(MatmulLayout::NT, s, &a, &bt, &mut c, false).unwrap();
    assert_eq!(c, want);
    matmul_naive(MatmulLayout::TN, s, &at, &b, &mut c, false).unwrap();
    assert_eq!(c, want);
    // Accumulating adds the product once more.
    matmul_naive(MatmulLayout::TN, s, &at, &b, &mut c, true).unwrap();
    assert_eq!(c, want.map(|x| 2.0 * x));
}

/// With beta = 0 the GEMM must overwrite C without reading it: NaN already in C must vanish.
#[test]
fn cpu_overwrite_ignores_nan_in_c() {
    let s = shape(5, 3, 4);
    let (a, b, _) = inputs(7, s);
    let mut c = vec![f32::NAN; s.m * s.n];
    cpu_matmul(MatmulLayout::NN, s, &a, &b, &mut c, false).unwrap();
    assert!(c.iter().all(|x| x.is_finite()), "{c:?}");
}

#[test]
fn gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    eprintln!("adapter: {}", ctx.adapter.describe());
    for (ci, &(m, n, k)) in SHAPES.iter().enumerate() {
        let s = shape(m, n, k);
        for layout in LAYOUTS {
            for accumulate in [false, true] {
                let seed = 3000 + ci as u64 * 10;
                let (a, b, c0) = inputs(seed, s);
                let mut want = c0.clone();
                cpu_matmul(layout, s, &a, &b, &mut want, accumulate).unwrap();

                let ga = ctx.upload("a", &a).unwrap();
                let gb = ctx.upload("b", &b).unwrap();
                // Overwrite starts from random C too: the kernel must not read it then.
                let gc = ctx.upload("c", &c0).unwrap();
                let d = gpu_matmul(ctx, layout, s, &ga, &gb, &gc, accumulate).unwrap();
                ctx.run(&[&d]).unwrap();
                let got: Vec<f32> = ctx.read(&gc, s.m * s.n).unwrap();
                common::assert_close(
                    &format!("gpu {layout:?} {s:?} accumulate={accumulate} seed={seed}"),
                    &got,
                    &want,
                    atol_f32(k),
                    RTOL_F32,
                );
            }
        }
    }
}

/// Writes stay inside C(M,N): a buffer larger than M·N keeps its tail untouched, on shapes
/// whose last tile is partial in both directions.
#[test]
fn gpu_leaves_bytes_past_c_untouched() {
    let Some(ctx) = common::gpu() else { return };
    for layout in LAYOUTS {
        let s = shape(65, 63, 17);
        let (a, b, _) = inputs(41, s);
        let sentinel = vec![12345.0f32; s.m * s.n + 300];
        let ga = ctx.upload("a", &a).unwrap();
        let gb = ctx.upload("b", &b).unwrap();
        let gc = ctx.upload("c", &sentinel).unwrap();
        let d = gpu_matmul(ctx, layout, s, &ga, &gb, &gc, false).unwrap();
        ctx.run(&[&d]).unwrap();
        let got: Vec<f32> = ctx.read(&gc, sentinel.len()).unwrap();
        assert!(
            got[s.m * s.n..].iter().all(|&x| x == 12345.0),
            "{layout:?} {s:?}: the kernel wrote past C"
        );
        assert!(got[..s.m * s.n].iter().all(|&x| x != 12345.0));
    }
}

/// A NaN in op(A) row 1 and op(B) column 2 poisons exactly C's row 1 and column 2, as on the
/// CPU. This is what lets the engine say where a non-finite value first appeared, and it
/// fails if the tile padding ever reads real data past K (NaN · 0 = NaN would leak into
/// neighbouring rows or columns).
#[test]
fn gpu_nan_stays_in_its_row_and_column() {
    let Some(ctx) = common::gpu() else { return };
    for layout in LAYOUTS {
        for (m, n, k) in [(3, 4, 5), (70, 66, 21)] {
            let s = shape(m, n, k);
            let (mut a, mut b, _) = inputs(77, s);
            // op(A)[1, 3] and op(B)[3, 2], wherever the layout stores them.
            match layout {
                MatmulLayout::TN => a[3 * m + 1] = f32::NAN,
                _ => a[k + 3] = f32::NAN,
            }
            match layout {
                MatmulLayout::NT => b[2 * k + 3] = f32::NAN,
                _ => b[3 * n + 2] = f32::NAN,
            }
            let mut want = vec![0.0f32; m * n];
            cpu_matmul(layout, s, &a, &b, &mut want, false).unwrap();
            for i in 0..m {
                for j in 0..n {
                    assert_eq!(want[i * n + j].is_nan(), i == 1 || j == 2, "cpu {i},{j}");
                }
            }
            let ga = ctx.upload("a", &a).unwrap();
            let gb = ctx.upload("b", &b).unwrap();
            let gc = ctx.storage_buffer("c", (m * n * 4) as u64).unwrap();
            let d = gpu_matmul(ctx, layout, s, &ga, &gb, &gc, false).unwrap();
            ctx.run(&[&d]).unwrap();
            let got: Vec<f32> = ctx.read(&gc, m * n).unwrap();
            common::assert_close(
                &format!("gpu NaN locality {layout:?} {s:?} seed=77"),
                &got,
                &want,
                atol_f32(k),
                RTOL_F32,
            );
        }
    }
}

/// Fixed summation order: the same dispatch twice gives the same bits.
#[test]
fn gpu_is_deterministic() {
    let Some(ctx) = common::gpu() else { return };
    let s = shape(70, 90, 130);
    let (a, b, _) = inputs(55, s);
    let ga = ctx.upload("a", &a).unwrap();
    let gb = ctx.upload("b", &b).unwrap();
    let gc = ctx.storage_buffer("c", (s.m * s.n * 4) as u64).unwrap();
    for layout in LAYOUTS {
        let d = gpu_matmul(ctx, layout, s, &ga, &gb, &gc, false).unwrap();
        ctx.run(&[&d]).unwrap();
        let first: Vec<f32> = ctx.read(&gc, s.m * s.n).unwrap();
        ctx.run(&[&d]).unwrap();
        let second: Vec<f32> = ctx.read(&gc, s.m * s.n).unwrap();
        assert!(
            first
                .iter()
                .zip(&second)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{layout:?}: two runs differ"
        );
    }
}

#[test]
fn gpu_too_small_buffer_is_a_shape_error() {
    let Some(ctx) = common::gpu() else { return };
    let s = shape(8, 9, 10);
    let ok_a = ctx.storage_buffer("a", (8 * 10 * 4) as u64).unwrap();
    let ok_b = ctx.storage_buffer("b", (10 * 9 * 4) as u64).unwrap();
    let ok_c = ctx.storage_buffer("c", (8 * 9 * 4) as u64).unwrap();
    // One element short, each operand in turn.
    let small_a = ctx.storage_buffer("a", (8 * 10 * 4 - 4) as u64).unwrap();
    let small_b = ctx.storage_buffer("b", (10 * 9 * 4 - 4) as u64).unwrap();
    let small_c = ctx.storage_buffer("c", (8 * 9 * 4 - 4) as u64).unwrap();
    for layout in LAYOUTS {
        assert!(gpu_matmul(ctx, layout, s, &ok_a, &ok_b, &ok_c, false).is_ok());
        for (which, a, b, c) in [
            ("A", &small_a, &ok_b, &ok_c),
            ("B", &ok_a, &small_b, &ok_c),
            ("C", &ok_a, &ok_b, &small_c),
        ] {
            match gpu_matmul(ctx, layout, s, a, b, c, true) {
                Err(Error::Shape { op, detail }) => {
                    assert!(op.contains(&format!("{layout:?}")), "{op}");
                    assert!(detail.starts_with(which), "{which}: {detail}");
                    assert!(detail.contains("bytes"), "{detail}");
                }
                other => panic!("{layout:?} short {which}: expected a shape error, got {other:?}"),
            }
        }
        // Zero sizes and C aliasing an input are refused as well.
        assert!(matches!(
            gpu_matmul(ctx, layout, shape(0, 9, 10), &ok_a, &ok_b, &ok_c, false),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            gpu_matmul(ctx, layout, shape(1, 1, 1), &ok_a, &ok_b, &ok_a, false),
            Err(Error::Shape { .. })
        ));
    }
    ctx.check("after refused launches").unwrap();
}

#[test]
fn cpu_short_slice_is_a_shape_error() {
    let s = shape(4, 5, 6);
    let a = vec![0.0f32; 24];
    let b = vec![0.0f32; 30];
    let mut c = vec![0.0f32; 20];
    for layout in LAYOUTS {
        assert!(cpu_matmul(layout, s, &a, &b, &mut c, false).is_ok());
        let cases: [(&str, &[f32], &[f32], usize); 3] = [
            ("A", &a[..23], &b, 20),
            ("B", &a, &b[..29], 20),
            ("C", &a, &b, 19),
        ];
        for (which, a, b, c_len) in cases {
            for naive in [false, true] {
                let c = &mut c[..c_len];
                let r = if naive {
                    matmul_naive(layout, s, a, b, c, false)
                } else {
                    cpu_matmul(layout, s, a, b, c, false)
                };
                match r {
                    Err(Error::Shape { detail, .. }) => {
                        assert!(detail.starts_with(which), "{detail}")
                    }
                    other => panic!("{layout:?} short {which}: got {other:?}"),
                }
            }
        }
        assert!(matches!(
            cpu_matmul(layout, shape(4, 0, 6), &a, &b, &mut c, false),
            Err(Error::Shape { .. })
        ));
    }
}

/// The shader parses and validates with naga, so a broken edit fails even without a GPU.
#[test]
fn shader_validates_with_naga() {
    let src = gradscope::gpu::shaders::source("matmul").unwrap();
    let module =
        naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
    for entry in ["matmul_nn", "matmul_nt", "matmul_tn"] {
        assert!(
            module.entry_points.iter().any(|e| e.name == entry),
            "missing entry point {entry}"
        );
    }
}
