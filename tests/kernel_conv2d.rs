//! 2-D convolution: the CPU twin against a naive direct convolution in f64, every backward
//! against central differences in f64, the GPU kernels against the CPU twin on awkward
//! shapes, everything against JAX float64 golden values (tests/golden/make_conv_golden.py),
//! and the refusal of impossible geometry.

mod common;

use common::{assert_close, assert_close_f64, random_vec, random_vec_f64};
use gradscope::cpu::aligned::AlignedBuf;
use gradscope::cpu::conv2d as cc;
use gradscope::gpu::kernels::conv2d as gk;
use gradscope::ops::Conv2dShape;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[allow(clippy::too_many_arguments)]
fn shape(
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Conv2dShape {
    Conv2dShape {
        n,
        c_in,
        h,
        w,
        c_out,
        kh: k[0],
        kw: k[1],
        stride,
        pad,
        dilation,
        groups,
    }
}

/// Awkward shapes: a hand-picked set (1×1 kernels, depthwise, everything at once, a tile
/// boundary crossed in channels and pixels) plus seeded random draws from the option sets
/// n 1..3, c_in 1/3/5, c_out 1/4/7, h, w 1/5/7/9, k 1/3/5, stride 1/2/3, pad 0/1/2,
/// dilation 1/2, groups 1/2/c_in, keeping only valid geometry.
fn shapes(random: usize) -> Vec<Conv2dShape> {
    let mut v = vec![
        shape(1, 1, 1, 1, 1, [1, 1], [1, 1], [0, 0], [1, 1], 1),
        shape(2, 3, 7, 5, 4, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(3, 5, 9, 7, 7, [3, 5], [2, 3], [2, 1], [2, 1], 1),
        shape(2, 5, 9, 9, 5, [3, 3], [2, 2], [1, 1], [1, 1], 5), // depthwise
        shape(1, 3, 7, 9, 6, [5, 3], [1, 2], [2, 0], [1, 2], 3), // depthwise ×2
        // Depthwise ×2 whose dilations are not multiples of the strides (3 by 2, 2 by 3):
        // the GPU's input gradient steps each tap's quotient and remainder by the stride.
        shape(2, 4, 13, 11, 8, [3, 3], [2, 3], [2, 3], [3, 2], 4),
        // Depthwise with more output pixels than a workgroup has lanes (3 × 17 × 15): the
        // GPU's weight gradient steps each lane's pixel across rows and images.
        shape(3, 2, 17, 15, 2, [3, 3], [1, 1], [1, 1], [1, 1], 2),
        shape(2, 4, 5, 7, 6, [1, 1], [2, 2], [0, 0], [1, 1], 2), // grouped 1×1 strided
        // 1×1, stride 1, no padding: the CPU twin uses the image as its own patch matrix.
        shape(3, 5, 4, 3, 7, [1, 1], [1, 1], [0, 0], [1, 1], 1),
        shape(2, 4, 5, 7, 6, [1, 1], [1, 1], [0, 0], [2, 2], 2),
        shape(1, 1, 9, 9, 1, [5, 5], [3, 3], [2, 2], [2, 2], 1),
        // Crosses the 64 tile in output channels (67), input channels (66) and pixels.
        shape(2, 66, 9, 7, 67, [1, 3], [1, 1], [0, 1], [1, 1], 1),
        // 16–32 rows: the wide tiles' full height (resnet-like 16 and 32 channels, and 20/24).
        shape(2, 16, 8, 8, 16, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(2, 16, 9, 9, 32, [3, 3], [2, 2], [1, 1], [1, 1], 1),
        shape(1, 24, 9, 11, 20, [3, 3], [1, 2], [2, 1], [2, 1], 1),
        // Long K = n·oh·ow for the backward weight pass: split-K with a ragged last chunk.
        shape(3, 3, 31, 29, 5, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(2, 4, 23, 17, 4, [3, 3], [2, 1], [1, 1], [1, 2], 4),
        // Stride 1 with outputs as wide as the input ("same"): the CPU twin copies and adds
        // each tap as one shifted run of the plane. Dilated, non-square, 5×5 on a plane
        // shorter than the kernel (taps with no valid row), and a single row.
        shape(2, 3, 7, 6, 4, [3, 3], [1, 1], [2, 2], [2, 2], 1),
        shape(2, 2, 5, 8, 4, [3, 5], [1, 1], [1, 2], [1, 1], 2),
        shape(1, 2, 2, 9, 3, [5, 5], [1, 1], [2, 2], [1, 1], 1),
        shape(2, 3, 1, 7, 2, [3, 3], [1, 1], [1, 1], [1, 1], 1),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let pick = |rng: &mut ChaCha8Rng, xs: &[usize]| xs[rng.random_range(0..xs.len())];
    let fixed = v.len();
    while v.len() < fixed + random {
        let c_in = pick(&mut rng, &[1, 3, 5]);
        let groups = match rng.random_range(0..3) {
            0 => 1,
            1 => 2,
            _ => c_in,
        };
        let c_out_base = pick(&mut rng, &[1, 4, 7]);
        // Depthwise keeps c_out a multiple of c_in (channel multiplier 1 or 2).
        let c_out = if groups == c_in && groups > 1 {
            c_in * (c_out_base % 2 + 1)
        } else {
            c_out_base
        };
        let k = pick(&mut rng, &[1, 3, 5]);
        let s = shape(
            rng.random_range(1..4),
            c_in,
            pick(&mut rng, &[1, 5, 7, 9]),
            pick(&mut rng, &[1, 5, 7, 9]),
            c_out,
            [k, pick(&mut rng, &[1, 3, 5])],
            [pick(&mut rng, &[1, 2, 3]), pick(&mut rng, &[1, 2, 3])],
            [pick(&mut rng, &[0, 1, 2]), pick(&mut rng, &[0, 1, 2])],
            [pick(&mut rng, &[1, 2]), pick(&mut rng, &[1, 2])],
            groups,
        );
        if s.validate("random").is_ok() {
            v.push(s);
        }
    }
    v
}

fn describe(s: &Conv2dShape) -> String {
    format!(
        "n{} c_in{} {}x{} c_out{} k{}x{} stride{:?} pad{:?} dil{:?} groups{}",
        s.n, s.c_in, s.h, s.w, s.c_out, s.kh, s.kw, s.stride, s.pad, s.dilation, s.groups
    )
}

/// The definition, seven loops deep: output y[b, co, oy, ox] reads x[b, g·cpg_in + ci,
/// oy·s − p + ki·d, ox·s − p + kj·d] through w[co, ci, ki, kj], with g = co / (c_out/groups).
/// Calls `tap(xi, wi, yi)` with the flat indices of every such (input, weight, output)
/// triple whose input is not padding, outputs in order, each output's taps in (ci, ki, kj)
/// order. The three passes below are this map read three ways.
fn for_each_tap(s: &Conv2dShape, mut tap: impl FnMut(usize, usize, usize)) {
    let [oh, ow] = s.out_hw();
    let (cpg_in, cpg_out) = (s.c_in / s.groups, s.c_out / s.groups);
    for b in 0..s.n {
        for co in 0..s.c_out {
            let g = co / cpg_out;
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = ((b * s.c_out + co) * oh + oy) * ow + ox;
                    for ci in 0..cpg_in {
                        for ki in 0..s.kh {
                            for kj in 0..s.kw {
                                let iy = (oy * s.stride[0] + ki * s.dilation[0]) as isize
                                    - s.pad[0] as isize;
                                let ix = (ox * s.stride[1] + kj * s.dilation[1]) as isize
                                    - s.pad[1] as isize;
                                if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                    continue;
                                }
                                let xi = ((b * s.c_in + g * cpg_in + ci) * s.h + iy as usize) * s.w
                                    + ix as usize;
                                let wi = ((co * cpg_in + ci) * s.kh + ki) * s.kw + kj;
                                tap(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// y = Σ over each output's taps of x · w.
fn naive_forward(s: &Conv2dShape, x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; s.y_len()];
    for_each_tap(s, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
    y
}

#[test]
fn cpu_forward_matches_naive_direct_convolution() {
    for (i, s) in shapes(60).iter().enumerate() {
        let seed = 1000 + i as u64;
        let x = random_vec_f64(seed, s.x_len(), -1.0, 1.0);
        let w = random_vec_f64(seed + 1, s.w_len(), -1.0, 1.0);
        let want = naive_forward(s, &x, &w);
        let mut got = vec![f64::NAN; s.y_len()];
        cc::conv2d_forward(s, &x, &w, &mut got);
        // Same products, different summation order: f64 rounding only.
        assert_close_f64(
            &format!("conv2d_forward vs naive, seed {seed}, {}", describe(s)),
            &got,
            &want,
            1e-12,
            1e-12,
        );
    }
}

/// dW = Σ over every tap that uses a weight of dy · x, directly.
fn naive_backward_weight(s: &Conv2dShape, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; s.w_len()];
    for_each_tap(s, |xi, wi, yi| dw[wi] += dy[yi] * x[xi]);
    dw
}

/// dx = Σ over the outputs that read a pixel of dy · w, directly: the forward's gather,
/// scattered back.
fn naive_backward_input(s: &Conv2dShape, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; s.x_len()];
    for_each_tap(s, |xi, wi, yi| dx[xi] += dy[yi] * w[wi]);
    dx
}

/// The input gradient against the direct scatter, on every shape of the suite and on
/// stride-1 shapes with 16 or more input channels per group, which the twin computes as a
/// forward convolution of dy with the turned kernel: "same", "valid" (the transposed
/// padding then reaches k − 1), dilated, grouped, non-square, asymmetric padding, and a
/// padding beyond dilation·(k − 1), which keeps the direct form.
#[test]
fn cpu_backward_input_matches_direct_scatter() {
    let mut all = shapes(30);
    all.extend([
        shape(2, 16, 6, 5, 8, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(1, 16, 6, 7, 4, [3, 3], [1, 1], [0, 0], [1, 1], 1),
        shape(2, 32, 7, 6, 6, [3, 5], [1, 1], [2, 1], [2, 1], 2),
        shape(1, 17, 5, 8, 3, [2, 4], [1, 1], [0, 3], [1, 1], 1),
        shape(1, 16, 4, 4, 5, [3, 3], [1, 1], [3, 2], [1, 1], 1),
    ]);
    // And random stride-1 geometry at 16 and 32 input channels per group.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let pick = |rng: &mut ChaCha8Rng, xs: &[usize]| xs[rng.random_range(0..xs.len())];
    let fixed = all.len();
    while all.len() < fixed + 8 {
        let groups = pick(&mut rng, &[1, 2]);
        let (kh, kw) = (pick(&mut rng, &[1, 2, 3, 5]), pick(&mut rng, &[1, 3, 4]));
        let s = shape(
            rng.random_range(1..3),
            groups * pick(&mut rng, &[16, 32]),
            pick(&mut rng, &[3, 5, 8]),
            pick(&mut rng, &[4, 6, 9]),
            groups * pick(&mut rng, &[1, 3, 4]),
            [kh, kw],
            [1, 1],
            [pick(&mut rng, &[0, 1, 2]), pick(&mut rng, &[0, 1, 2])],
            [pick(&mut rng, &[1, 2]), pick(&mut rng, &[1, 2])],
            groups,
        );
        if s.validate("random").is_ok() {
            all.push(s);
        }
    }
    for (i, s) in all.iter().enumerate() {
        let seed = 5000 + i as u64;
        let dy = random_vec_f64(seed, s.y_len(), -1.0, 1.0);
        let w = random_vec_f64(seed + 1, s.w_len(), -1.0, 1.0);
        let mut dx = vec![f64::NAN; s.x_len()];
        cc::conv2d_backward_input(s, &dy, &w, &mut dx);
        assert_close_f64(
            &format!(
                "conv2d_backward_input vs direct scatter, seed {seed}, {}",
                describe(s)
            ),
            &dx,
            &naive_backward_input(s, &dy, &w),
            1e-12,
            1e-12,
        );
    }
}

/// The weight gradient sums the batch in parallel chunks of 4 images: batches of 9 and 4
/// (several chunks, a ragged last one, exactly one) against the direct sum.
#[test]
fn cpu_backward_weight_matches_direct_sum_over_large_batches() {
    for (i, s) in [
        shape(9, 4, 7, 6, 6, [3, 2], [2, 1], [1, 1], [1, 2], 2),
        shape(4, 3, 5, 5, 3, [3, 3], [1, 1], [1, 1], [1, 1], 3),
        shape(9, 2, 6, 5, 3, [1, 3], [1, 2], [0, 2], [1, 1], 1),
    ]
    .iter()
    .enumerate()
    {
        let seed = 4000 + i as u64;
        let x = random_vec_f64(seed, s.x_len(), -1.0, 1.0);
        let dy = random_vec_f64(seed + 1, s.y_len(), -1.0, 1.0);
        let mut dw = vec![f64::NAN; s.w_len()];
        cc::conv2d_backward_weight(s, &x, &dy, &mut dw, false);
        assert_close_f64(
            &format!(
                "conv2d_backward_weight vs direct sum, seed {seed}, {}",
                describe(s)
            ),
            &dw,
            &naive_backward_weight(s, &x, &dy),
            1e-12,
            1e-12,
        );
    }
}

/// The direct weight gradients leave out the products with the padding's zeros, as the
/// definition does (dW sums over the input pixels inside the image only): an infinite
/// output gradient where a kernel row or column reads only padding leaves that tap's
/// weights finite and reaches the other taps' (im2col + GEMM, and the GPU, multiply it by
/// the padding's zero into NaN). Output row 0 meets input row −1 through kernel row 0;
/// output column 0 meets input column −1 through kernel column 0. The channel blocks (32
/// output channels, on every instruction set with direct kernels) and the channel-last
/// layout (16 channels on x86-64: input lanes on AVX-512, output lanes on AVX2) skip both.
/// The other instruction sets' runs are `cpu_f32_passes_match_with_every_instruction_set`'s
/// child processes, which run this file's f64-definition test only.
#[test]
fn direct_weight_gradients_leave_out_the_padding_products() {
    let isa = cc::direct_isa();
    let x86 = matches!(isa, Some("avx512" | "avx2"));
    for (s, rows, columns) in [
        (
            shape(2, 32, 7, 7, 32, [3, 3], [1, 1], [1, 1], [1, 1], 1),
            true,
            true,
        ),
        (
            shape(2, 16, 14, 28, 16, [3, 3], [1, 1], [1, 1], [1, 1], 1),
            x86,
            x86,
        ),
    ] {
        if !cc::runs_direct::<f32>(&s)[1] {
            eprintln!("{}: no direct weight gradient on this CPU", describe(&s));
            continue;
        }
        let [oh, ow] = s.out_hw();
        let x = random_vec(91, s.x_len(), -1.0, 1.0);
        let (co, b) = (3, 1);
        let plane = (b * s.c_out + co) * oh * ow;
        let cases = [
            (plane + 3, Tap::Row(0), rows),
            (plane + 2 * ow, Tap::Column(0), columns),
        ];
        for (at, padded_tap, _) in cases.into_iter().filter(|c| c.2) {
            let mut dy = random_vec(92, s.y_len(), -1.0, 1.0);
            dy[at] = f32::INFINITY;
            let mut dw = vec![f32::NAN; s.w_len()];
            cc::conv2d_backward_weight(&s, &x, &dy, &mut dw, false);
            for ci in 0..s.c_in {
                for ki in 0..s.kh {
                    for kj in 0..s.kw {
                        let v = dw[((co * s.c_in + ci) * s.kh + ki) * s.kw + kj];
                        let skipped = match padded_tap {
                            Tap::Row(r) => ki == r,
                            Tap::Column(c) => kj == c,
                        };
                        assert_eq!(
                            v.is_finite(),
                            skipped,
                            "{}: dw[{co}][{ci}][{ki}][{kj}] = {v} with dy = ∞ at {padded_tap:?}'s padding",
                            describe(&s)
                        );
                    }
                }
            }
            // The other output channels' weights stay finite.
            assert!(dw[..co * s.patch_len()].iter().all(|v| v.is_finite()));
        }
    }
}

/// The kernel row or column through which an output position reads only padding.
#[derive(Clone, Copy, Debug)]
enum Tap {
    Row(usize),
    Column(usize),
}

/// The f32 passes against the f64 definition: the awkward set (im2col + GEMM) and
/// stride-1 shapes wide enough for the direct kernels (conv2d_direct.rs): channel counts
/// off the register blocks, odd output channels per group, dilation, non-square and 5×5
/// kernels (taps past one block), no padding, padding past the kernel, a padded 1×1, a
/// ragged batch of weight-gradient chunks, resnet-20's stride-1 shapes. Every output of
/// the direct kernels sums in another order than the f64 reference, so the tolerance is
/// f32 rounding over the patch length.
/// Whether this CPU has AVX2 and FMA (the direct kernels' second instruction set on x86-64).
fn avx2_present() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[test]
fn cpu_f32_passes_match_the_f64_definition() {
    let wide = [
        shape(2, 16, 12, 30, 16, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(3, 5, 10, 40, 7, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(1, 16, 9, 29, 16, [3, 5], [1, 1], [1, 2], [1, 1], 1),
        shape(2, 16, 11, 33, 12, [3, 3], [1, 1], [2, 2], [2, 2], 1),
        shape(2, 32, 8, 31, 18, [3, 3], [1, 1], [1, 1], [1, 1], 2),
        shape(1, 4, 12, 28, 6, [5, 5], [1, 1], [2, 2], [1, 1], 1),
        shape(2, 6, 10, 34, 8, [3, 3], [1, 1], [0, 0], [1, 1], 1),
        shape(1, 3, 6, 40, 4, [3, 3], [1, 1], [2, 2], [1, 1], 1),
        shape(2, 8, 6, 30, 8, [1, 1], [1, 1], [1, 1], [1, 1], 1),
        shape(9, 3, 8, 31, 5, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(2, 16, 10, 30, 8, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(1, 2, 2, 40, 3, [5, 5], [1, 1], [2, 2], [1, 1], 1),
        // Rows of whole vectors: the weight gradient walks them (one or two column blocks
        // at a time, a single row, groups) where neither the channel-last input lanes (16
        // input channels on AVX-512) nor the channel blocks (32 output channels or more)
        // take the shape.
        shape(1, 8, 16, 16, 16, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(1, 2, 3, 256, 4, [3, 3], [1, 1], [0, 1], [1, 1], 1),
        shape(2, 8, 16, 32, 8, [3, 3], [1, 1], [1, 1], [1, 1], 2),
        shape(2, 16, 32, 32, 16, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(2, 32, 16, 16, 32, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(2, 64, 8, 8, 64, [3, 3], [1, 1], [1, 1], [1, 1], 1),
    ];
    // The child processes of `cpu_f32_passes_match_with_every_instruction_set` choose the
    // instruction set; the kernels must run on the one chosen.
    match std::env::var("GRADSCOPE_CONV_DIRECT").as_deref() {
        Ok("off") => assert_eq!(cc::direct_isa(), None),
        Ok("avx2") if avx2_present() => assert_eq!(cc::direct_isa(), Some("avx2")),
        _ => {}
    }
    let forward = wide.iter().filter(|s| cc::runs_direct::<f32>(s)[0]).count();
    let weight = wide.iter().filter(|s| cc::runs_direct::<f32>(s)[1]).count();
    if cc::direct_isa().is_some() {
        assert_eq!(
            forward,
            wide.len(),
            "every wide shape's forward runs directly"
        );
    }
    // The wide grid's weight gradient has AVX-512 and NEON kernels only: all but the
    // two-row 5×5 (84 wide positions per image) and the 8×8 planes (72), below their 256
    // (the two planes 31 wide have 8 rows of 32 positions: 256 with every lane count).
    // The channel blocks take the shapes whose output channels fill them, the 8×8 planes
    // among them, on every instruction set.
    let channels_on = std::env::var("GRADSCOPE_CONV_CHANNELS").as_deref() != Ok("off");
    let weight_min = if matches!(cc::direct_isa(), Some("avx512" | "neon")) {
        wide.len() - 2
    } else {
        0
    };
    assert!(
        weight >= weight_min,
        "{weight} weight gradients run directly, not {weight_min}"
    );
    let eight_by_eight = &wide[wide.len() - 1];
    if cc::direct_isa().is_some() {
        assert_eq!(
            cc::runs_direct::<f32>(eight_by_eight)[1],
            channels_on,
            "the 8×8 planes' weight gradient runs through the channel blocks"
        );
    }
    eprintln!(
        "of {} wide shapes, {forward} forwards and {weight} weight gradients ran directly ({:?})",
        wide.len(),
        cc::direct_isa()
    );
    // Output channels in whole blocks of 16 and 32 (conv2d_channels.rs): strided,
    // dilated, grouped, 7×7 planes, a single output position, 96 = 3·32 channels.
    let channel_blocks = [
        shape(2, 16, 9, 9, 32, [3, 3], [2, 2], [1, 1], [1, 1], 1),
        shape(3, 32, 8, 8, 64, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(2, 12, 7, 7, 64, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(1, 8, 13, 11, 32, [5, 3], [2, 1], [2, 1], [1, 2], 1),
        shape(2, 64, 10, 6, 64, [3, 3], [1, 1], [2, 2], [2, 2], 2),
        shape(1, 16, 5, 5, 96, [3, 3], [3, 3], [0, 0], [1, 1], 1),
        shape(2, 32, 16, 16, 32, [3, 3], [2, 2], [1, 1], [1, 1], 1),
        // Along output rows, with a row stride and dilation (5 rows of 16).
        shape(2, 8, 13, 16, 32, [5, 3], [2, 1], [2, 1], [2, 1], 1),
    ];
    if cc::direct_isa().is_some() && channels_on {
        for s in &channel_blocks {
            assert!(
                cc::runs_direct::<f32>(s) == [true, true],
                "{} runs through channel blocks",
                describe(s)
            );
        }
    }
    // One vector of output channels on rows that are not whole vectors, and 1×1 kernels:
    // the weight gradient on channel-last copies (conv2d_weight_nhwc.rs) on AVX-512 and
    // AVX2 (28 columns as on the bundled data, a 3-channel stem, strided projections).
    let channels_last = [
        shape(2, 16, 14, 28, 16, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(3, 3, 9, 28, 16, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(2, 16, 10, 10, 32, [1, 1], [2, 2], [0, 0], [1, 1], 1),
        shape(2, 32, 7, 9, 64, [1, 1], [2, 2], [0, 0], [1, 1], 1),
    ];
    if matches!(cc::direct_isa(), Some("avx512" | "avx2")) && channels_on {
        for s in &channels_last {
            assert!(
                cc::runs_direct::<f32>(s)[1],
                "{}'s weight gradient runs on channel-last copies",
                describe(s)
            );
        }
    }
    // Strided input gradients by stride phase on the wide grid (conv2d_strided_input.rs):
    // resnet-20's two on the bundled data's 28×28 inputs, odd planes, strides 3 × 2, 4 × 4
    // (one tap a phase), 2 × 1 and 1 × 2, input channels past a whole block (20, 24),
    // no padding, a plane one column wide. (dy planes of whole vectors keep the im2col path:
    // the 16×16 planes of 32×32 inputs.)
    let strided_input = [
        shape(2, 16, 28, 28, 32, [3, 3], [2, 2], [1, 1], [1, 1], 1),
        shape(2, 32, 14, 14, 64, [3, 3], [2, 2], [1, 1], [1, 1], 1),
        shape(3, 16, 9, 11, 8, [3, 3], [2, 2], [1, 1], [1, 1], 1),
        shape(1, 24, 13, 7, 8, [5, 3], [3, 2], [2, 1], [1, 1], 1),
        shape(2, 16, 8, 8, 16, [4, 4], [4, 4], [0, 0], [1, 1], 1),
        shape(1, 20, 7, 12, 16, [3, 3], [2, 2], [0, 0], [1, 1], 1),
        shape(2, 16, 9, 10, 8, [3, 3], [2, 1], [1, 1], [1, 1], 1),
        shape(2, 16, 10, 9, 8, [3, 3], [1, 2], [1, 1], [1, 1], 1),
        shape(1, 16, 9, 1, 32, [3, 1], [2, 1], [1, 0], [1, 1], 1),
    ];
    let whole_planes = shape(2, 16, 32, 32, 32, [3, 3], [2, 2], [1, 1], [1, 1], 1);
    assert!(!cc::runs_input_gradient_direct::<f32>(&whole_planes));
    if cc::direct_isa().is_some() && channels_on {
        for s in &strided_input {
            assert!(
                cc::runs_input_gradient_direct::<f32>(s),
                "{}'s input gradient runs by stride phase",
                describe(s)
            );
            // Without accumulating, every element of dx is written: NaN must not remain.
            let w = random_vec(9001, s.w_len(), -1.0, 1.0);
            let dy = random_vec(9002, s.y_len(), -1.0, 1.0);
            let mut dx = vec![f32::NAN; s.x_len()];
            cc::conv2d_backward_input_with(s, &dy, &w, &mut dx, &mut AlignedBuf::default(), false);
            let up = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
            let want: Vec<f32> = naive_backward_input(s, &up(&dy), &up(&w))
                .iter()
                .map(|&g| g as f32)
                .collect();
            let terms = s.c_out * s.kh * s.kw;
            assert_close(
                &format!("backward input from NaN, {}", describe(s)),
                &dx,
                &want,
                4e-7 * terms as f32,
                1e-5,
            );
        }
    }
    // The input gradient of a stride-1 convolution with 32 input channels is a forward with
    // 32 output channels.
    let transposed_blocks = shape(2, 32, 6, 7, 16, [3, 3], [1, 1], [1, 1], [1, 1], 1);
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let mut all = shapes(20);
    all.extend(wide);
    all.extend(channel_blocks);
    all.extend(channels_last);
    all.extend(strided_input);
    all.push(transposed_blocks);
    // Depthwise (conv2d_depthwise.rs): the dwsep model's three shapes on the bundled data's
    // 28×28, a channel multiplier of 2, a 5×5 dilated kernel on rows wider than a vector,
    // stride 3 with padding wider than the taps reach, a row of one output column, a
    // column stride of 3 with one channel per group, and padding past the kernel's reach
    // (outputs that see only zeros); then the shapes that put the channels across the
    // vector lanes.
    let depthwise = [
        shape(2, 32, 28, 28, 32, [3, 3], [1, 1], [1, 1], [1, 1], 32),
        shape(2, 64, 28, 28, 64, [3, 3], [2, 2], [1, 1], [1, 1], 64),
        shape(3, 8, 7, 7, 8, [3, 3], [2, 2], [1, 1], [1, 1], 8),
        shape(2, 6, 9, 21, 12, [3, 3], [1, 1], [1, 1], [1, 1], 6),
        shape(1, 4, 12, 37, 4, [5, 5], [1, 1], [4, 4], [2, 2], 4),
        shape(2, 3, 11, 13, 6, [3, 5], [3, 2], [2, 3], [1, 1], 3),
        shape(1, 5, 6, 1, 5, [3, 1], [1, 1], [1, 0], [1, 1], 5),
        shape(2, 4, 10, 14, 4, [3, 3], [2, 3], [1, 2], [1, 1], 4),
        shape(2, 3, 5, 6, 3, [3, 3], [1, 1], [3, 3], [1, 1], 3),
        // Channels across the lanes (conv2d_depthwise_lanes.rs, f32, blocks of 16
        // channels, strided or small planes): stride 1 on 6×6, strides 2 and 3 with a
        // dilated 5×3 kernel, padding past the kernel's reach, two blocks at stride 2.
        shape(2, 16, 6, 6, 16, [3, 3], [1, 1], [1, 1], [1, 1], 16),
        shape(1, 32, 9, 11, 32, [5, 3], [2, 3], [2, 1], [2, 1], 32),
        shape(3, 16, 5, 4, 16, [3, 3], [2, 2], [3, 3], [1, 1], 16),
        shape(2, 32, 14, 14, 32, [3, 3], [2, 2], [1, 1], [1, 1], 32),
    ];
    for s in &depthwise {
        assert!(
            cc::runs_direct::<f32>(s) == [true, true],
            "{} runs through the depthwise kernels",
            describe(s)
        );
    }
    all.extend(depthwise);
    for (i, s) in all.iter().enumerate() {
        let seed = 7000 + 3 * i as u64;
        let x = random_vec_f64(seed, s.x_len(), -1.0, 1.0);
        let w = random_vec_f64(seed + 1, s.w_len(), -1.0, 1.0);
        let dy = random_vec_f64(seed + 2, s.y_len(), -1.0, 1.0);
        // f32 inputs, f64 arithmetic: the reference sees the values the f32 pass sees.
        let (x, w, dy) = (f32s(&x), f32s(&w), f32s(&dy));
        let up = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let (x64, w64, dy64) = (up(&x), up(&w), up(&dy));
        let what = |pass: &str| format!("{pass} in f32 vs f64, seed {seed}, {}", describe(s));
        let tol = |terms: usize| 4e-7 * terms as f32;

        let mut y = vec![f32::NAN; s.y_len()];
        cc::conv2d_forward(s, &x, &w, &mut y);
        let want = f32s(&naive_forward(s, &x64, &w64));
        assert_close(&what("forward"), &y, &want, tol(s.patch_len()), 1e-5);

        // With accumulate: dx0 + ∂L/∂x.
        let dx0 = random_vec(seed + 3, s.x_len(), -1.0, 1.0);
        let mut dx = dx0.clone();
        cc::conv2d_backward_input_with(s, &dy, &w, &mut dx, &mut AlignedBuf::default(), true);
        let grad = naive_backward_input(s, &dy64, &w64);
        let want: Vec<f32> = dx0
            .iter()
            .zip(&grad)
            .map(|(&a, &g)| (a as f64 + g) as f32)
            .collect();
        let terms = s.cout_per_group() * s.kh * s.kw;
        assert_close(&what("backward input"), &dx, &want, tol(terms), 1e-5);

        let dw0 = random_vec(seed + 4, s.w_len(), -1.0, 1.0);
        let mut dw = dw0.clone();
        cc::conv2d_backward_weight(s, &x, &dy, &mut dw, true);
        let grad = naive_backward_weight(s, &x64, &dy64);
        let want: Vec<f32> = dw0
            .iter()
            .zip(&grad)
            .map(|(&a, &g)| (a as f64 + g) as f32)
            .collect();
        let [oh, ow] = s.out_hw();
        assert_close(
            &what("backward weight"),
            &dw,
            &want,
            tol(s.n * oh * ow),
            1e-5,
        );
    }
}

/// `cpu_f32_passes_match_the_f64_definition` again with the AVX2 kernels, with the
/// channel blocks off (so the wide grid runs the shapes they take), and with no direct
/// kernels (im2col + GEMM everywhere), each in a child process of this test binary, since
/// the kernels are chosen once per process (`GRADSCOPE_CONV_DIRECT`,
/// `GRADSCOPE_CONV_CHANNELS`).
#[test]
fn cpu_f32_passes_match_with_every_instruction_set() {
    // x86-64 CPUs with AVX-512 run its kernels in this process: AVX2's in a child. The
    // other architectures have one instruction set, so only the other paths are left.
    let best = cc::direct_isa().unwrap_or("off");
    let mut others: Vec<(&str, &str)> = vec![(best, "off"), ("off", "on")];
    if cfg!(target_arch = "x86_64") {
        others.extend([("avx2", "on"), ("avx2", "off")]);
    }
    for (isa, channels) in others {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "cpu_f32_passes_match_the_f64_definition",
                "--exact",
                "--nocapture",
            ])
            .env("GRADSCOPE_CONV_DIRECT", isa)
            .env("GRADSCOPE_CONV_CHANNELS", channels)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "GRADSCOPE_CONV_DIRECT={isa} GRADSCOPE_CONV_CHANNELS={channels}:\n{stdout}\n{stderr}"
        );
        eprintln!(
            "GRADSCOPE_CONV_DIRECT={isa} GRADSCOPE_CONV_CHANNELS={channels}: {}",
            stderr.trim()
        );
    }
}

#[test]
fn cpu_bias_forward_and_backward_match_definition() {
    let s = shape(2, 3, 5, 4, 3, [3, 1], [2, 1], [1, 0], [1, 1], 1);
    let [oh, ow] = s.out_hw();
    let y0 = random_vec_f64(5, s.y_len(), -1.0, 1.0);
    let b = random_vec_f64(6, s.c_out, -1.0, 1.0);
    let mut y = y0.clone();
    cc::conv2d_bias_forward(&s, &mut y, &b);
    for (i, (&got, &was)) in y.iter().zip(&y0).enumerate() {
        assert_eq!(got, was + b[(i / (oh * ow)) % s.c_out], "index {i}");
    }
    let mut db = vec![10.0; s.c_out];
    cc::conv2d_backward_bias(&s, &y0, &mut db, true);
    for (c, &got) in db.iter().enumerate() {
        let mut want = 10.0;
        for bb in 0..s.n {
            want += y0[(bb * s.c_out + c) * oh * ow..][..oh * ow]
                .iter()
                .sum::<f64>();
        }
        assert!((got - want).abs() < 1e-12, "db[{c}] {got} != {want}");
    }
}

/// L = Σ r ⊙ (conv(x, w) + b) for fixed r, so ∂L/∂x, ∂L/∂w, ∂L/∂b are what the backward
/// passes return given dy = r. L is linear in each argument, so the central difference is
/// exact up to rounding: |L| ≲ 100 gives errors ~1e-16·100/1e-6 ≈ 1e-8, hence atol 1e-7.
#[test]
fn backward_passes_match_central_differences() {
    let eps = 1e-6;
    let mut checked = 0;
    for (i, s) in shapes(12).iter().enumerate() {
        if s.x_len() > 700 || s.w_len() > 700 {
            continue; // keeps the 2·(|x| + |w|) forward evaluations cheap
        }
        let seed = 2000 + i as u64;
        let what = format!("seed {seed}, {}", describe(s));
        let x = random_vec_f64(seed, s.x_len(), -1.0, 1.0);
        let w = random_vec_f64(seed + 1, s.w_len(), -1.0, 1.0);
        let b = random_vec_f64(seed + 2, s.c_out, -1.0, 1.0);
        let r = random_vec_f64(seed + 3, s.y_len(), -1.0, 1.0);
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; s.y_len()];
            cc::conv2d_forward(s, x, w, &mut y);
            cc::conv2d_bias_forward(s, &mut y, b);
            y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>()
        };
        let central = |v: &[f64], f: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
            (0..v.len())
                .map(|j| {
                    let mut p = v.to_vec();
                    p[j] += eps;
                    let mut m = v.to_vec();
                    m[j] -= eps;
                    (f(&p) - f(&m)) / (2.0 * eps)
                })
                .collect()
        };

        let mut dx = vec![f64::NAN; s.x_len()];
        cc::conv2d_backward_input(s, &r, &w, &mut dx);
        let num = central(&x, &|xp| loss(xp, &w, &b));
        assert_close_f64(&format!("dx {what}"), &dx, &num, 1e-7, 1e-7);

        let mut dw = vec![f64::NAN; s.w_len()];
        cc::conv2d_backward_weight(s, &x, &r, &mut dw, false);
        let num = central(&w, &|wp| loss(&x, wp, &b));
        assert_close_f64(&format!("dw {what}"), &dw, &num, 1e-7, 1e-7);

        let mut db = vec![f64::NAN; s.c_out];
        cc::conv2d_backward_bias(s, &r, &mut db, false);
        let num = central(&b, &|bp| loss(&x, &w, bp));
        assert_close_f64(&format!("db {what}"), &db, &num, 1e-7, 1e-7);

        // accumulate adds the same gradient onto what was there.
        let mut dx2 = dx.clone();
        cc::conv2d_backward_input_with(s, &r, &w, &mut dx2, &mut AlignedBuf::default(), true);
        let twice: Vec<f64> = dx.iter().map(|v| 2.0 * v).collect();
        assert_close_f64(&format!("dx accumulate {what}"), &dx2, &twice, 1e-12, 1e-12);
        let mut dw2 = dw.clone();
        cc::conv2d_backward_weight(s, &x, &r, &mut dw2, true);
        let twice: Vec<f64> = dw.iter().map(|v| 2.0 * v).collect();
        assert_close_f64(&format!("dw accumulate {what}"), &dw2, &twice, 1e-12, 1e-12);
        let mut db2 = db.clone();
        cc::conv2d_backward_bias(s, &r, &mut db2, true);
        let twice: Vec<f64> = db.iter().map(|v| 2.0 * v).collect();
        assert_close_f64(&format!("db accumulate {what}"), &db2, &twice, 1e-12, 1e-12);
        checked += 1;
    }
    // The size filter must leave the strided, padded, dilated, grouped and depthwise cases.
    assert!(checked >= 12, "only {checked} shapes checked");
}

#[test]
fn gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    let all = shapes(40);
    // Both special paths of the launchers must be exercised, not only the plain GEMMs.
    let depthwise = all.iter().filter(|s| gk::is_depthwise(s)).count();
    let split = all
        .iter()
        .filter(|s| gk::backward_weight_scratch_len(s) > 0)
        .count();
    assert!(
        depthwise >= 5 && split >= 2,
        "{depthwise} depthwise, {split} split-K shapes"
    );
    for (i, s) in all.iter().enumerate() {
        let seed = 3000 + i as u64;
        let what = format!("seed {seed}, {}", describe(s));
        let x = random_vec(seed, s.x_len(), -1.0, 1.0);
        let w = random_vec(seed + 1, s.w_len(), -1.0, 1.0);
        let b = random_vec(seed + 2, s.c_out, -1.0, 1.0);
        let dy = random_vec(seed + 3, s.y_len(), -1.0, 1.0);
        let dw0 = random_vec(seed + 4, s.w_len(), -1.0, 1.0);
        let db0 = random_vec(seed + 5, s.c_out, -1.0, 1.0);

        let mut y = vec![0.0f32; s.y_len()];
        cc::conv2d_forward(s, &x, &w, &mut y);
        let mut yb_want = y.clone();
        cc::conv2d_bias_forward(s, &mut yb_want, &b);
        let mut dx = vec![0.0f32; s.x_len()];
        cc::conv2d_backward_input(s, &dy, &w, &mut dx);

        let xg = ctx.upload("x", &x).unwrap();
        let wg = ctx.upload("w", &w).unwrap();
        let bg = ctx.upload("b", &b).unwrap();
        let dyg = ctx.upload("dy", &dy).unwrap();
        let yg = ctx.upload("y", &vec![f32::NAN; s.y_len()]).unwrap();
        let dxg = ctx.upload("dx", &vec![f32::NAN; s.x_len()]).unwrap();
        let fwd = gk::conv2d_forward(ctx, s, &xg, &wg, &yg).unwrap();
        let bin = gk::conv2d_backward_input(ctx, s, &dyg, &wg, &dxg, false).unwrap();
        ctx.run(&[&fwd, &bin]).unwrap();
        // Sums of at most c_in/groups·kh·kw (or c_out/groups·kh·kw) products of values in
        // [−1, 1], in different orders: f32 rounding ~1e-7 per term, so 1e-5 is ample and
        // a wrong tap (an error of order 1) cannot hide.
        let got: Vec<f32> = ctx.read(&yg, s.y_len()).unwrap();
        assert_close(&format!("conv2d_forward {what}"), &got, &y, 1e-5, 1e-5);
        let got: Vec<f32> = ctx.read(&dxg, s.x_len()).unwrap();
        assert_close(
            &format!("conv2d_backward_input {what}"),
            &got,
            &dx,
            1e-5,
            1e-5,
        );

        // Added to what dx held (a tensor read by several nodes sums their gradients):
        // the depthwise and GEMM kernels, and the CPU's pointwise and col2im paths.
        let dx0 = random_vec(seed + 6, s.x_len(), -1.0, 1.0);
        let mut dx_acc = dx0.clone();
        cc::conv2d_backward_input_with(s, &dy, &w, &mut dx_acc, &mut AlignedBuf::default(), true);
        let want: Vec<f32> = dx0.iter().zip(&dx).map(|(a, b)| a + b).collect();
        assert_close(
            &format!("cpu conv2d_backward_input accumulate {what}"),
            &dx_acc,
            &want,
            1e-6,
            1e-5,
        );
        let dxg_acc = ctx.upload("dx", &dx0).unwrap();
        let bin_acc = gk::conv2d_backward_input(ctx, s, &dyg, &wg, &dxg_acc, true).unwrap();
        ctx.run(&[&bin_acc]).unwrap();
        let got: Vec<f32> = ctx.read(&dxg_acc, s.x_len()).unwrap();
        assert_close(
            &format!("conv2d_backward_input accumulate {what}"),
            &got,
            &dx_acc,
            1e-5,
            1e-5,
        );

        let bf = gk::conv2d_bias_forward(ctx, s, &yg, &bg).unwrap();
        ctx.run(&[&bf]).unwrap();
        let got: Vec<f32> = ctx.read(&yg, s.y_len()).unwrap();
        assert_close(
            &format!("conv2d_bias_forward {what}"),
            &got,
            &yb_want,
            1e-5,
            1e-5,
        );

        for accumulate in [false, true] {
            let mut dw = dw0.clone();
            cc::conv2d_backward_weight(s, &x, &dy, &mut dw, accumulate);
            let mut db = db0.clone();
            cc::conv2d_backward_bias(s, &dy, &mut db, accumulate);
            let dwg = ctx.upload("dw", &dw0).unwrap();
            let dbg = ctx.upload("db", &db0).unwrap();
            let mut ds = gk::conv2d_backward_weight(ctx, s, &xg, &dyg, &dwg, accumulate).unwrap();
            ds.push(gk::conv2d_backward_bias(ctx, s, &dyg, &dbg, accumulate).unwrap());
            ctx.run(&ds.iter().collect::<Vec<_>>()).unwrap();
            // dw sums n·oh·ow products (≤ 3·31·29 here) in another order than the CPU's
            // GEMM (split-K for the larger ones): f32 rounding ~1e-7 relative per term on
            // sums of magnitude ≲ 30, hence atol 1e-4.
            let got: Vec<f32> = ctx.read(&dwg, s.w_len()).unwrap();
            assert_close(
                &format!("conv2d_backward_weight accumulate {accumulate} {what}"),
                &got,
                &dw,
                1e-4,
                1e-5,
            );
            // The CPU twin adds in the kernel's lane-and-tree order: additions only, exact.
            let got: Vec<f32> = ctx.read(&dbg, s.c_out).unwrap();
            assert_close(
                &format!("conv2d_backward_bias accumulate {accumulate} {what}"),
                &got,
                &db,
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn gpu_repeats_bit_for_bit() {
    let Some(ctx) = common::gpu() else { return };
    // Split-K (two dispatches) and depthwise (one workgroup per weight, lane tree).
    for (s, dispatches) in [
        (shape(2, 6, 29, 31, 8, [3, 3], [1, 2], [1, 1], [2, 1], 2), 2),
        (
            shape(2, 6, 29, 31, 12, [3, 3], [1, 2], [1, 1], [2, 1], 6),
            1,
        ),
    ] {
        repeat_backward_weight(ctx, s, dispatches);
    }
}

fn repeat_backward_weight(ctx: &gradscope::gpu::GpuContext, s: Conv2dShape, dispatches: usize) {
    let x = ctx
        .upload("x", &random_vec(1, s.x_len(), -1.0, 1.0))
        .unwrap();
    let dy = ctx
        .upload("dy", &random_vec(2, s.y_len(), -1.0, 1.0))
        .unwrap();
    let dw = ctx.storage_buffer("dw", 4 * s.w_len() as u64).unwrap();
    let d = gk::conv2d_backward_weight(ctx, &s, &x, &dy, &dw, false).unwrap();
    assert_eq!(d.len(), dispatches, "{}", describe(&s));
    let d: Vec<_> = d.iter().collect();
    ctx.run(&d).unwrap();
    let first: Vec<f32> = ctx.read(&dw, s.w_len()).unwrap();
    ctx.run(&d).unwrap();
    let second: Vec<f32> = ctx.read(&dw, s.w_len()).unwrap();
    assert_eq!(
        first.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        second.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn split_k_is_a_function_of_the_shape() {
    // Small K: one split, no scratch. resnet-20's first stage at batch 128: K = 131072
    // pixels over 3 workgroups of dW tiles, so it splits into many chunks of ≥ 128 pixels,
    // each a multiple of the 16-pixel slice, covering K exactly once.
    let small = shape(1, 3, 5, 5, 4, [3, 3], [1, 1], [1, 1], [1, 1], 1);
    assert_eq!(gk::backward_weight_splits(&small).0, 1);
    assert_eq!(gk::backward_weight_scratch_len(&small), 0);
    let stage1 = shape(128, 16, 32, 32, 16, [3, 3], [1, 1], [1, 1], [1, 1], 1);
    let (splits, chunk) = gk::backward_weight_splits(&stage1);
    let k = 128 * 32 * 32;
    assert!(splits > 64, "{splits}");
    assert!(chunk % 16 == 0 && chunk >= 128, "{chunk}");
    assert!(
        (splits - 1) * chunk < k && splits * chunk >= k,
        "{splits} × {chunk} vs {k}"
    );
    assert_eq!(
        gk::backward_weight_scratch_len(&stage1),
        splits * stage1.w_len()
    );
}

#[test]
fn launchers_refuse_bad_buffers() {
    let Some(ctx) = common::gpu() else { return };
    let s = shape(1, 2, 5, 5, 3, [3, 3], [1, 1], [1, 1], [1, 1], 1);
    let x = ctx.storage_buffer("x", 4 * s.x_len() as u64).unwrap();
    let w = ctx.storage_buffer("w", 4 * s.w_len() as u64).unwrap();
    let short = ctx.storage_buffer("y", 4 * (s.y_len() as u64 - 1)).unwrap();
    let e = gk::conv2d_forward(ctx, &s, &x, &w, &short).unwrap_err();
    assert!(e.to_string().contains("`y`"), "{e}");
    let e = gk::conv2d_backward_weight(ctx, &s, &x, &short, &w, false).unwrap_err();
    assert!(e.to_string().contains("`dy`"), "{e}");
    // y as large as the output, passed as x too (large enough for both roles).
    let y = ctx.storage_buffer("y", 4 * s.y_len() as u64).unwrap();
    let e = gk::conv2d_forward(ctx, &s, &y, &w, &y).unwrap_err();
    assert!(e.to_string().contains("same buffer"), "{e}");
    let mut bad = s;
    bad.stride = [0, 1];
    let e = gk::conv2d_forward(ctx, &bad, &x, &w, &short).unwrap_err();
    assert!(e.to_string().contains("stride"), "{e}");
}

#[test]
fn validate_refuses_impossible_geometry() {
    let ok = shape(2, 4, 8, 8, 6, [3, 3], [1, 1], [1, 1], [1, 1], 2);
    ok.validate("conv1").unwrap();
    let cases: Vec<(Conv2dShape, &str)> = vec![
        (
            Conv2dShape {
                stride: [1, 0],
                ..ok
            },
            "stride",
        ),
        (
            Conv2dShape {
                dilation: [0, 1],
                ..ok
            },
            "dilation",
        ),
        (Conv2dShape { groups: 0, ..ok }, "groups is 0"),
        (Conv2dShape { groups: 3, ..ok }, "not divisible by groups"),
        (Conv2dShape { c_out: 5, ..ok }, "not divisible by groups"),
        (Conv2dShape { kh: 11, ..ok }, "kernel height 11"),
        (
            Conv2dShape {
                kw: 4,
                dilation: [1, 4],
                ..ok
            },
            "effective 13",
        ),
        (Conv2dShape { c_in: 0, ..ok }, "input channels is 0"),
    ];
    for (s, needle) in cases {
        let e = s.validate("stage2.block1.conv2").unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, gradscope::Error::Config(_)),
            "{msg}: not a Config error"
        );
        assert!(
            msg.contains("stage2.block1.conv2"),
            "{msg}: layer not named"
        );
        assert!(msg.contains(needle), "{msg}: does not mention `{needle}`");
        if needle.starts_with("kernel") || needle.starts_with("effective") {
            // The kernel does not fit: out_hw reports an empty output instead of wrapping.
            assert!(s.out_hw().contains(&0), "{msg}: out_hw {:?}", s.out_hw());
        }
    }
    // The kernel exactly filling the padded input is fine: one output pixel.
    let fits = Conv2dShape { kh: 10, ..ok };
    fits.validate("conv1").unwrap();
    assert_eq!(fits.out_hw(), [1, 8]);
}

#[test]
fn matches_jax_golden_values() {
    let text = std::fs::read_to_string("tests/golden/conv_golden.json").unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    let gpu = common::gpu();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let u = |k: &str| c[k].as_u64().unwrap() as usize;
        let pair = |k: &str| {
            [
                c[k][0].as_u64().unwrap() as usize,
                c[k][1].as_u64().unwrap() as usize,
            ]
        };
        let v = |k: &str| -> Vec<f64> {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_f64().unwrap())
                .collect()
        };
        let s = Conv2dShape {
            n: u("n"),
            c_in: u("c_in"),
            h: u("h"),
            w: u("w"),
            c_out: u("c_out"),
            kh: u("kh"),
            kw: u("kw"),
            stride: pair("stride"),
            pad: pair("pad"),
            dilation: pair("dilation"),
            groups: u("groups"),
        };
        s.validate(name).unwrap();
        let ys: Vec<usize> = c["y_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_u64().unwrap() as usize)
            .collect();
        let [oh, ow] = s.out_hw();
        assert_eq!(ys, vec![s.n, s.c_out, oh, ow], "{name}: output shape");
        let (x, w, b, dy) = (v("x"), v("weight"), v("bias"), v("dy"));

        // CPU twin in f64: JAX's float64 results to rounding.
        let mut y = vec![0.0; s.y_len()];
        cc::conv2d_forward(&s, &x, &w, &mut y);
        cc::conv2d_bias_forward(&s, &mut y, &b);
        assert_close_f64(&format!("{name} y"), &y, &v("y"), 1e-12, 1e-12);
        let mut dx = vec![0.0; s.x_len()];
        cc::conv2d_backward_input(&s, &dy, &w, &mut dx);
        assert_close_f64(&format!("{name} dx"), &dx, &v("dx"), 1e-12, 1e-12);
        let mut dw = vec![0.0; s.w_len()];
        cc::conv2d_backward_weight(&s, &x, &dy, &mut dw, false);
        assert_close_f64(&format!("{name} dw"), &dw, &v("dweight"), 1e-12, 1e-12);
        let mut db = vec![0.0; s.c_out];
        cc::conv2d_backward_bias(&s, &dy, &mut db, false);
        assert_close_f64(&format!("{name} db"), &db, &v("dbias"), 1e-12, 1e-12);

        // GPU in f32: inputs are exactly representable (the script rounds them to f32);
        // the results differ from float64 by f32 rounding of sums of O(10–100) products
        // of O(1) values, so 1e-4 absolute.
        let Some(ctx) = gpu else { continue };
        let f = |a: &[f64]| a.iter().map(|&e| e as f32).collect::<Vec<f32>>();
        let xg = ctx.upload("x", &f(&x)).unwrap();
        let wg = ctx.upload("w", &f(&w)).unwrap();
        let bg = ctx.upload("b", &f(&b)).unwrap();
        let dyg = ctx.upload("dy", &f(&dy)).unwrap();
        let yg = ctx.storage_buffer("y", 4 * s.y_len() as u64).unwrap();
        let dxg = ctx.storage_buffer("dx", 4 * s.x_len() as u64).unwrap();
        let dwg = ctx.storage_buffer("dw", 4 * s.w_len() as u64).unwrap();
        let dbg = ctx.storage_buffer("db", 4 * s.c_out as u64).unwrap();
        let ds = [
            gk::conv2d_forward(ctx, &s, &xg, &wg, &yg).unwrap(),
            gk::conv2d_bias_forward(ctx, &s, &yg, &bg).unwrap(),
            gk::conv2d_backward_input(ctx, &s, &dyg, &wg, &dxg, false).unwrap(),
            gk::conv2d_backward_bias(ctx, &s, &dyg, &dbg, false).unwrap(),
        ];
        let bw = gk::conv2d_backward_weight(ctx, &s, &xg, &dyg, &dwg, false).unwrap();
        ctx.run(&ds.iter().chain(&bw).collect::<Vec<_>>()).unwrap();
        for (what, buf, len, want) in [
            ("y", &yg, s.y_len(), "y"),
            ("dx", &dxg, s.x_len(), "dx"),
            ("dw", &dwg, s.w_len(), "dweight"),
            ("db", &dbg, s.c_out, "dbias"),
        ] {
            let got: Vec<f32> = ctx.read(buf, len).unwrap();
            assert_close(
                &format!("{name} GPU {what}"),
                &got,
                &f(&v(want)),
                1e-4,
                1e-5,
            );
        }
    }
}

/// The split-K sums of several backward-weight passes run as one grouped dispatch give the
/// bits each pass's own sum gives, overwriting and accumulating, for groups of one to
/// eight passes of different shapes and split counts (8 or more splits and fewer, so both
/// of the sum's loops run).
#[test]
fn grouped_split_k_sums_give_the_bits_of_each_sum_alone() {
    let Some(ctx) = common::gpu() else { return };
    if gk::sum_multi_capacity(ctx) < 2 {
        return;
    }
    let shapes = [
        shape(2, 6, 29, 31, 8, [3, 3], [1, 2], [1, 1], [2, 1], 2),
        shape(4, 3, 16, 16, 5, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(1, 5, 37, 9, 7, [1, 1], [1, 1], [0, 0], [1, 1], 1),
        shape(3, 4, 24, 24, 4, [5, 5], [2, 2], [2, 2], [1, 1], 1),
        shape(8, 2, 16, 16, 3, [3, 3], [1, 1], [1, 1], [1, 1], 1),
    ];
    let splits: Vec<usize> = shapes
        .iter()
        .map(|s| gk::backward_weight_splits(s).0)
        .collect();
    assert!(splits.iter().all(|&k| k > 1), "{splits:?}");
    assert!(
        splits.iter().any(|&k| k < 9) && splits.iter().any(|&k| k >= 9),
        "{splits:?}"
    );
    for members in 1..=gk::sum_multi_capacity(ctx) {
        for accumulate in [false, true] {
            let mut alone = Vec::new();
            let mut grouped = Vec::new();
            let mut sums = Vec::new();
            let mut passes = Vec::new();
            for m in 0..members {
                let s = shapes[m % shapes.len()];
                let seed = 10 * m as u64;
                let x = ctx
                    .upload("x", &random_vec(seed, s.x_len(), -1.0, 1.0))
                    .unwrap();
                let dy = ctx
                    .upload("dy", &random_vec(seed + 1, s.y_len(), -1.0, 1.0))
                    .unwrap();
                let start = random_vec(seed + 2, s.w_len(), -1.0, 1.0);
                let (dw1, dw2) = (
                    ctx.upload("dw1", &start).unwrap(),
                    ctx.upload("dw2", &start).unwrap(),
                );
                let (pass1, sum1) =
                    gk::conv2d_backward_weight_split(ctx, &s, &x, &dy, &dw1, accumulate).unwrap();
                let (pass2, sum2) =
                    gk::conv2d_backward_weight_split(ctx, &s, &x, &dy, &dw2, accumulate).unwrap();
                passes.extend(pass1);
                passes.extend(pass2);
                let (sum1, sum2) = (sum1.unwrap(), sum2.unwrap());
                assert!(sum1.splits > 1);
                alone.push((dw1, s.w_len(), sum1));
                grouped.push(dw2);
                sums.push(sum2);
            }
            let refs: Vec<&gk::SplitKSum> = sums.iter().collect();
            let multi = gk::conv2d_backward_weight_sum_multi(ctx, &refs).unwrap();
            let mut run: Vec<&gradscope::gpu::Dispatch> = passes.iter().collect();
            run.extend(alone.iter().map(|(_, _, m)| &m.alone));
            run.push(&multi);
            ctx.run(&run).unwrap();
            for ((dw1, len, _), dw2) in alone.iter().zip(&grouped) {
                let bits = |b: &wgpu::Buffer| -> Vec<u32> {
                    ctx.read(b, *len)
                        .unwrap()
                        .iter()
                        .map(|v: &f32| v.to_bits())
                        .collect()
                };
                assert_eq!(
                    bits(dw1),
                    bits(dw2),
                    "{members} members, accumulate {accumulate}"
                );
            }
        }
    }
}
