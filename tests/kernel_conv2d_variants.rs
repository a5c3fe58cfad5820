//! Every convolution variant the autotune may pick (shaders/conv2d.wgsl's tiles and the
//! table-gather tiles of shaders/conv2d_tiled.wgsl), forced one by one, on awkward
//! geometry (strides, padding, dilation, groups, 1×1, channel and pixel counts crossing
//! every tile), in all three passes: against the CPU twin, and bit for bit against the
//! simple kernel (every variant sums in ascending k within the same split-K chunks).

mod common;

use common::{assert_close, random_vec};
use gradscope::cpu::aligned::AlignedBuf;
use gradscope::cpu::conv2d as cc;
use gradscope::gpu::GpuContext;
use gradscope::gpu::kernels::conv2d::{
    self as gk, CONV_VARIANTS, ConvPass, ConvVariant, conv_heuristic,
};
use gradscope::ops::Conv2dShape;

#[allow(clippy::too_many_arguments)]
fn shape(
    n: usize,
    c_in: usize,
    hw: [usize; 2],
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
        h: hw[0],
        w: hw[1],
        c_out,
        kh: k[0],
        kw: k[1],
        stride,
        pad,
        dilation,
        groups,
    }
}

/// Non-depthwise geometry (depthwise shapes take direct kernels whatever the variant).
fn shapes() -> Vec<Conv2dShape> {
    vec![
        shape(1, 1, [1, 1], 1, [1, 1], [1, 1], [0, 0], [1, 1], 1),
        shape(2, 3, [7, 5], 4, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(3, 5, [9, 7], 7, [3, 5], [2, 3], [2, 1], [2, 1], 1),
        shape(2, 4, [5, 7], 6, [1, 1], [2, 2], [0, 0], [1, 1], 2),
        shape(1, 1, [9, 9], 1, [5, 5], [3, 3], [2, 2], [2, 2], 1),
        // Crosses 64- and 128-row tiles in channels, and every column tile in pixels.
        shape(2, 66, [9, 7], 67, [1, 3], [1, 1], [0, 1], [1, 1], 1),
        shape(1, 6, [5, 5], 130, [3, 3], [1, 1], [1, 1], [1, 1], 2),
        // resnet-like: 16 and 32 channels, 3×3 stride 1 and 2, 1×1 stride-2 projection.
        shape(2, 16, [8, 8], 16, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        shape(2, 16, [9, 9], 32, [3, 3], [2, 2], [1, 1], [1, 1], 1),
        shape(2, 16, [10, 10], 32, [1, 1], [2, 2], [0, 0], [1, 1], 1),
        shape(1, 24, [9, 11], 20, [3, 3], [1, 2], [2, 1], [2, 1], 1),
        // Long K for the weight gradient: split-K with a ragged last chunk.
        shape(3, 3, [31, 29], 5, [3, 3], [1, 1], [1, 1], [1, 1], 1),
    ]
}

fn describe(s: &Conv2dShape) -> String {
    format!(
        "n{} c_in{} {}x{} c_out{} k{}x{} stride{:?} pad{:?} dil{:?} groups{}",
        s.n, s.c_in, s.h, s.w, s.c_out, s.kh, s.kw, s.stride, s.pad, s.dilation, s.groups
    )
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[allow(clippy::too_many_arguments)]
fn run_variant(
    ctx: &GpuContext,
    v: ConvVariant,
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx0: &[f32],
    dw0: &[f32],
    accumulate: bool,
) -> [Vec<f32>; 3] {
    let xg = ctx.upload("x", x).unwrap();
    let wg = ctx.upload("w", w).unwrap();
    let dyg = ctx.upload("dy", dy).unwrap();
    // Outputs start as NaN: a missed element shows.
    let yg = ctx.upload("y", &vec![f32::NAN; s.y_len()]).unwrap();
    // dx starts as NaN too when it is overwritten, as dx0 when the pass adds to it.
    let dxg = if accumulate {
        ctx.upload("dx", dx0).unwrap()
    } else {
        ctx.upload("dx", &vec![f32::NAN; s.x_len()]).unwrap()
    };
    let dwg = ctx.upload("dw", dw0).unwrap();
    let mut ds = vec![
        gk::conv2d_forward_with(ctx, v, s, &xg, &wg, &yg).unwrap(),
        gk::conv2d_backward_input_with(ctx, v, s, &dyg, &wg, &dxg, accumulate).unwrap(),
    ];
    ds.extend(gk::conv2d_backward_weight_with(ctx, v, s, &xg, &dyg, &dwg, accumulate).unwrap());
    ctx.run(&ds.iter().collect::<Vec<_>>()).unwrap();
    [
        ctx.read(&yg, s.y_len()).unwrap(),
        ctx.read(&dxg, s.x_len()).unwrap(),
        ctx.read(&dwg, s.w_len()).unwrap(),
    ]
}

#[test]
fn every_variant_matches_cpu_and_the_simple_kernel() {
    let Some(ctx) = common::gpu() else { return };
    let variants = ConvVariant::candidates(ctx);
    assert!(
        variants.len() >= 6,
        "{} variants fit this device",
        variants.len()
    );
    for (i, s) in shapes().iter().enumerate() {
        assert!(!gk::is_depthwise(s));
        let seed = 9000 + i as u64 * 10;
        let x = random_vec(seed, s.x_len(), -1.0, 1.0);
        let w = random_vec(seed + 1, s.w_len(), -1.0, 1.0);
        let dy = random_vec(seed + 2, s.y_len(), -1.0, 1.0);
        let dw0 = random_vec(seed + 3, s.w_len(), -1.0, 1.0);
        let dx0 = random_vec(seed + 4, s.x_len(), -1.0, 1.0);
        for accumulate in [false, true] {
            let mut y = vec![0.0f32; s.y_len()];
            cc::conv2d_forward(s, &x, &w, &mut y);
            let mut dx = dx0.clone();
            cc::conv2d_backward_input_with(
                s,
                &dy,
                &w,
                &mut dx,
                &mut AlignedBuf::default(),
                accumulate,
            );
            let mut dw = dw0.clone();
            cc::conv2d_backward_weight(s, &x, &dy, &mut dw, accumulate);
            let mut simple: Option<[Vec<f32>; 3]> = None;
            for &v in &variants {
                let got = run_variant(ctx, v, s, &x, &w, &dy, &dx0, &dw0, accumulate);
                let what = format!(
                    "{} accumulate={accumulate} seed={seed} {}",
                    v.name(),
                    describe(s)
                );
                // Tolerances as in tests/kernel_conv2d.rs: short sums for y and dx, sums of
                // n·oh·ow products in another order than the CPU's GEMM for dw.
                assert_close(&format!("forward {what}"), &got[0], &y, 1e-5, 1e-5);
                assert_close(&format!("backward_input {what}"), &got[1], &dx, 1e-5, 1e-5);
                assert_close(&format!("backward_weight {what}"), &got[2], &dw, 1e-4, 1e-5);
                match &simple {
                    None => simple = Some(got),
                    Some(reference) => {
                        for (pass, (g, r)) in ["forward", "backward_input", "backward_weight"]
                            .iter()
                            .zip(got.iter().zip(reference))
                        {
                            assert!(
                                bits(g) == bits(r),
                                "{pass} {what}: differs in bits from the simple kernel"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn variant_names_round_trip_and_tiles_hold_256_invocations() {
    for v in CONV_VARIANTS {
        assert_eq!(ConvVariant::from_name(&v.name()), Some(v), "{v:?}");
        if let ConvVariant::Tiled { bn, tn4, .. } = v {
            let (bm, bnu) = v.tile(0);
            assert_eq!(bnu, bn as usize);
            // 4 rows × 4·TN4 columns per invocation, 256 invocations.
            assert_eq!(bm * bnu, 256 * 16 * tn4 as usize, "{}", v.name());
        }
    }
    let mut names: Vec<String> = CONV_VARIANTS.iter().map(|v| v.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), CONV_VARIANTS.len());
}

#[test]
fn heuristic_fits_the_tile_to_the_rows() {
    let s16 = shape(128, 16, [32, 32], 16, [3, 3], [1, 1], [1, 1], [1, 1], 1);
    let s64 = shape(128, 64, [8, 8], 64, [3, 3], [1, 1], [1, 1], [1, 1], 1);
    assert_eq!(conv_heuristic(ConvPass::Forward, &s16).name(), "c16x256k8");
    assert_eq!(conv_heuristic(ConvPass::Forward, &s64).name(), "c64x128k8");
    // 16 rows: the 16-row tile, for every pass.
    let stem = shape(128, 3, [32, 32], 16, [3, 3], [1, 1], [1, 1], [1, 1], 1);
    assert_eq!(
        conv_heuristic(ConvPass::BackwardWeight, &stem).name(),
        "c16x256k8"
    );
    assert_eq!(
        conv_heuristic(ConvPass::BackwardInput, &stem).name(),
        "c16x256k8"
    );
}

#[test]
fn stride_phases_partition_the_pixels_and_the_taps() {
    for s in shapes() {
        let phases = gk::stride_phases(&s);
        let d = describe(&s);
        assert_eq!(phases.len(), s.stride[0] * s.stride[1], "{d}");
        let pixels: usize = phases.iter().map(|p| p.pixels()).sum();
        assert_eq!(
            pixels,
            s.h * s.w,
            "{d}: every input pixel lies in one phase"
        );
        // A kernel row's residue (ki·dil mod stride) is one phase's, so the taps partition
        // too, each phase's rows times columns.
        let rows: usize = phases.iter().step_by(s.stride[1]).map(|p| p.taps_y).sum();
        let cols: usize = phases.iter().take(s.stride[1]).map(|p| p.taps_x).sum();
        assert_eq!((rows, cols), (s.kh, s.kw), "{d}");
    }
    // resnet's 3×3 stride-2 pad-1 on 9×9: rows 0, 2, 4, 6, 8 have residue 1 (one tap), rows
    // 1, 3, 5, 7 residue 0 (taps 0 and 2).
    let s = shapes()[8];
    assert_eq!((s.kh, s.stride, s.h), (3, [2, 2], 9));
    let p = gk::stride_phases(&s);
    assert_eq!((p[0].rows, p[0].taps_y), (4, 2));
    assert_eq!((p[3].rows, p[3].cols, p[3].taps()), (5, 5, 1));
}
