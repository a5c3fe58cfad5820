//! Pooling kernels: the CPU twin against a naive reference (explicitly padded input,
//! whole-window scans), the GPU against the CPU twin on awkward shapes, every backward
//! against central differences in f64, geometry validation, and golden values from JAX
//! (tests/golden/make_pool_golden.py).

mod common;

use common::{assert_close, assert_close_f64, random_vec, random_vec_f64};
use gradscope::cpu::pool2d as cp;
use gradscope::gpu::kernels::pool2d as gp;
use gradscope::ops::Pool2dShape;

fn sh(
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
) -> Pool2dShape {
    Pool2dShape {
        n,
        c,
        h,
        w,
        kh: k[0],
        kw: k[1],
        stride: s,
        pad: p,
    }
}

/// Size 1, primes, 1×1 windows with stride 2, stride ≠ window, asymmetric stride and
/// padding, padding of exactly half the window, and outputs past one workgroup (256).
fn shapes() -> Vec<Pool2dShape> {
    vec![
        sh(1, 1, 1, 1, [1, 1], [1, 1], [0, 0]),
        sh(2, 3, 7, 13, [3, 3], [2, 2], [1, 1]),
        sh(1, 5, 31, 17, [2, 2], [2, 2], [0, 0]),
        sh(3, 2, 13, 7, [3, 2], [1, 3], [1, 1]),
        sh(1, 1, 11, 5, [5, 3], [3, 1], [2, 1]),
        sh(2, 7, 9, 9, [1, 1], [2, 2], [0, 0]),
        sh(1, 2, 6, 6, [4, 4], [1, 1], [2, 2]),
        sh(2, 3, 32, 31, [3, 3], [1, 1], [1, 1]),
        sh(1, 1, 127, 1, [7, 1], [5, 1], [3, 0]),
    ]
}

/// Naive reference: pad explicitly with `fill`, scan every window; for max, the first
/// maximum in scan order and its unpadded in-plane index.
fn naive(s: &Pool2dShape, x: &[f64], max: bool) -> (Vec<f64>, Vec<u32>) {
    let (ph, pw) = (s.h + 2 * s.pad[0], s.w + 2 * s.pad[1]);
    let oh = (ph - s.kh) / s.stride[0] + 1;
    let ow = (pw - s.kw) / s.stride[1] + 1;
    let fill = if max { f64::NEG_INFINITY } else { 0.0 };
    let mut y = Vec::new();
    let mut arg = Vec::new();
    for b in 0..s.n * s.c {
        let mut padded = vec![fill; ph * pw];
        for i in 0..s.h {
            for j in 0..s.w {
                padded[(i + s.pad[0]) * pw + j + s.pad[1]] = x[b * s.h * s.w + i * s.w + j];
            }
        }
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut best, mut bi, mut sum) = (f64::NEG_INFINITY, None, 0.0);
                for ky in 0..s.kh {
                    for kx in 0..s.kw {
                        let (py, px) = (oy * s.stride[0] + ky, ox * s.stride[1] + kx);
                        let v = padded[py * pw + px];
                        sum += v;
                        if max && v > best {
                            best = v;
                            bi = Some(((py - s.pad[0]) * s.w + px - s.pad[1]) as u32);
                        }
                    }
                }
                y.push(if max {
                    best
                } else {
                    sum / (s.kh * s.kw) as f64
                });
                arg.push(bi.unwrap_or(u32::MAX));
            }
        }
    }
    (y, arg)
}

#[test]
fn out_hw_follows_pytorch() {
    assert_eq!(sh(1, 1, 32, 32, [3, 3], [2, 2], [1, 1]).out_hw(), (16, 16));
    assert_eq!(sh(1, 1, 7, 13, [3, 3], [2, 2], [1, 1]).out_hw(), (4, 7));
    assert_eq!(sh(1, 1, 5, 5, [2, 2], [2, 2], [0, 0]).out_hw(), (2, 2));
    assert_eq!(sh(1, 1, 1, 1, [1, 1], [1, 1], [0, 0]).out_hw(), (1, 1));
}

#[test]
fn impossible_geometry_is_refused_naming_the_layer() {
    let cases = [
        (sh(1, 1, 8, 8, [2, 2], [0, 1], [0, 0]), "stride"),
        (sh(1, 1, 8, 8, [3, 3], [1, 1], [2, 1]), "padding"),
        (
            sh(1, 1, 3, 8, [6, 2], [1, 1], [1, 0]),
            "larger than the padded input",
        ),
        (sh(1, 1, 8, 8, [0, 2], [1, 1], [0, 0]), "empty"),
        (sh(0, 1, 8, 8, [2, 2], [1, 1], [0, 0]), "empty"),
    ];
    for (s, needle) in cases {
        let e = s
            .validate("stage1.pool")
            .expect_err(&format!("{s:?} accepted"));
        let msg = e.to_string();
        assert!(
            matches!(e, gradscope::Error::Config(_)),
            "{s:?}: not a Config error: {msg}"
        );
        assert!(
            msg.contains("stage1.pool") && msg.contains(needle),
            "{s:?}: {msg}"
        );
    }
    // The limit itself is fine: pad = k/2, window = padded input.
    sh(1, 1, 8, 8, [3, 3], [1, 1], [1, 1])
        .validate("ok")
        .unwrap();
    sh(1, 1, 2, 2, [4, 4], [1, 1], [1, 1])
        .validate("ok")
        .unwrap();
}

#[test]
fn cpu_twin_matches_naive_reference() {
    for (i, s) in shapes().into_iter().enumerate() {
        let seed = 10 + i as u64;
        let x = random_vec_f64(seed, s.input_len(), -3.0, 3.0);
        let (want_max, want_arg) = naive(&s, &x, true);
        let (want_avg, _) = naive(&s, &x, false);
        let mut y = vec![0.0; s.output_len()];
        let mut arg = vec![0u32; s.output_len()];
        cp::max_pool2d_forward(&s, &x, &mut y, &mut arg);
        assert_close_f64(&format!("max seed {seed} {s:?}"), &y, &want_max, 0.0, 0.0);
        assert_eq!(arg, want_arg, "argmax seed {seed} {s:?}");
        cp::avg_pool2d_forward(&s, &x, &mut y);
        assert_close_f64(
            &format!("avg seed {seed} {s:?}"),
            &y,
            &want_avg,
            1e-15,
            1e-14,
        );
    }
}

#[test]
fn max_pool_ties_pick_the_first_in_scan_order() {
    // All equal: every window's arg-max is its first real element.
    let s = sh(1, 1, 5, 5, [3, 3], [2, 2], [1, 1]);
    let x = vec![1.5f64; 25];
    let mut y = vec![0.0; 9];
    let mut arg = vec![0u32; 9];
    cp::max_pool2d_forward(&s, &x, &mut y, &mut arg);
    // Window origins (padded) 0, 2, 4 → first real row/col 0, 1, 3.
    let first = [0u32, 1, 3];
    let want: Vec<u32> = first
        .iter()
        .flat_map(|&r| first.iter().map(move |&c| r * 5 + c))
        .collect();
    assert_eq!(arg, want);
    // Backward: each input gets the dy of the windows that chose it, no more.
    let dy: Vec<f64> = (1..=9).map(|v| v as f64).collect();
    let mut dx = vec![0.0; 25];
    cp::max_pool2d_backward(&s, &dy, &arg, &mut dx);
    let mut want_dx = vec![0.0; 25];
    for (o, &a) in arg.iter().enumerate() {
        want_dx[a as usize] += dy[o];
    }
    assert_eq!(dx, want_dx);

    // The GPU breaks ties the same way (integer-valued input, many ties).
    let Some(ctx) = common::gpu() else { return };
    let s = sh(2, 3, 13, 11, [3, 3], [1, 2], [1, 1]);
    let x: Vec<f32> = random_vec(7, s.input_len(), 0.0, 3.0)
        .iter()
        .map(|v| v.floor())
        .collect();
    let mut y = vec![0.0f32; s.output_len()];
    let mut arg = vec![0u32; s.output_len()];
    cp::max_pool2d_forward(&s, &x, &mut y, &mut arg);
    let xb = ctx.upload("x", &x).unwrap();
    let yb = ctx.storage_buffer("y", 4 * s.output_len() as u64).unwrap();
    let ab = ctx
        .storage_buffer("argmax", 4 * s.output_len() as u64)
        .unwrap();
    ctx.run(&[&gp::max_pool2d_forward(ctx, &s, &xb, &yb, &ab).unwrap()])
        .unwrap();
    assert_eq!(
        ctx.read::<u32>(&ab, s.output_len()).unwrap(),
        arg,
        "tied argmax {s:?}"
    );
}

#[test]
fn max_pool_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, s) in shapes().into_iter().enumerate() {
        let seed = 100 + i as u64;
        let (ni, no) = (s.input_len(), s.output_len());
        let x = random_vec(seed, ni, -3.0, 3.0);
        let dy = random_vec(seed + 1000, no, -1.0, 1.0);
        let mut y = vec![0.0f32; no];
        let mut arg = vec![0u32; no];
        cp::max_pool2d_forward(&s, &x, &mut y, &mut arg);
        let mut dx = vec![0.0f32; ni];
        cp::max_pool2d_backward(&s, &dy, &arg, &mut dx);

        let xb = ctx.upload("x", &x).unwrap();
        let yb = ctx.storage_buffer("y", 4 * no as u64).unwrap();
        let ab = ctx.storage_buffer("argmax", 4 * no as u64).unwrap();
        let dyb = ctx.upload("dy", &dy).unwrap();
        // dx starts as garbage: the kernel must overwrite it.
        let dxb = ctx.upload("dx", &vec![7.0f32; ni]).unwrap();
        let f = gp::max_pool2d_forward(ctx, &s, &xb, &yb, &ab).unwrap();
        let b = gp::max_pool2d_backward(ctx, &s, &dyb, &ab, &dxb).unwrap();
        ctx.run(&[&f, &b]).unwrap();
        let what = format!("seed {seed} {s:?}");
        // Comparisons and sums of the same values in the same order: exact.
        assert_close(
            &format!("max y {what}"),
            &ctx.read(&yb, no).unwrap(),
            &y,
            0.0,
            0.0,
        );
        assert_eq!(ctx.read::<u32>(&ab, no).unwrap(), arg, "argmax {what}");
        assert_close(
            &format!("max dx {what}"),
            &ctx.read(&dxb, ni).unwrap(),
            &dx,
            0.0,
            0.0,
        );
    }
}

#[test]
fn avg_pool_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, s) in shapes().into_iter().enumerate() {
        let seed = 200 + i as u64;
        let (ni, no) = (s.input_len(), s.output_len());
        let x = random_vec(seed, ni, -3.0, 3.0);
        let dy = random_vec(seed + 1000, no, -1.0, 1.0);
        let mut y = vec![0.0f32; no];
        cp::avg_pool2d_forward(&s, &x, &mut y);
        let mut dx = vec![0.0f32; ni];
        cp::avg_pool2d_backward(&s, &dy, &mut dx);

        let xb = ctx.upload("x", &x).unwrap();
        let yb = ctx.storage_buffer("y", 4 * no as u64).unwrap();
        let dyb = ctx.upload("dy", &dy).unwrap();
        let dxb = ctx.upload("dx", &vec![7.0f32; ni]).unwrap();
        let f = gp::avg_pool2d_forward(ctx, &s, &xb, &yb).unwrap();
        let b = gp::avg_pool2d_backward(ctx, &s, &dyb, &dxb).unwrap();
        ctx.run(&[&f, &b]).unwrap();
        let what = format!("seed {seed} {s:?}");
        // Same sums in the same order; WGSL division may be off by up to 2.5 ulp, hence
        // the small relative tolerance (atol for sums that cancel to near zero).
        assert_close(
            &format!("avg y {what}"),
            &ctx.read(&yb, no).unwrap(),
            &y,
            1e-6,
            1e-6,
        );
        assert_close(
            &format!("avg dx {what}"),
            &ctx.read(&dxb, ni).unwrap(),
            &dx,
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn global_avg_pool_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &(n, c, h, w)) in [
        (1, 1, 1, 1),
        (2, 3, 7, 5),
        (3, 17, 8, 8),
        (1, 300, 1, 3),
        (2, 13, 31, 2),
    ]
    .iter()
    .enumerate()
    {
        let seed = 300 + i as u64;
        let x = random_vec(seed, n * c * h * w, -3.0, 3.0);
        let dy = random_vec(seed + 1000, n * c, -1.0, 1.0);
        let mut y = vec![0.0f32; n * c];
        cp::global_avg_pool_forward(&x, &mut y, n, c, h, w);
        let mut dx = vec![0.0f32; n * c * h * w];
        cp::global_avg_pool_backward(&dy, &mut dx, n, c, h, w);

        let xb = ctx.upload("x", &x).unwrap();
        let yb = ctx.storage_buffer("y", 4 * (n * c) as u64).unwrap();
        let dyb = ctx.upload("dy", &dy).unwrap();
        let dxb = ctx.upload("dx", &vec![7.0f32; n * c * h * w]).unwrap();
        let f = gp::global_avg_pool_forward(ctx, &xb, &yb, n, c, h, w).unwrap();
        let b = gp::global_avg_pool_backward(ctx, &dyb, &dxb, n, c, h, w).unwrap();
        ctx.run(&[&f, &b]).unwrap();
        let what = format!("seed {seed} [{n},{c},{h},{w}]");
        // As for avg pooling: same sums, division within a few ulp.
        assert_close(
            &format!("gap y {what}"),
            &ctx.read(&yb, n * c).unwrap(),
            &y,
            1e-6,
            1e-6,
        );
        assert_close(
            &format!("gap dx {what}"),
            &ctx.read(&dxb, n * c * h * w).unwrap(),
            &dx,
            1e-7,
            1e-6,
        );
    }
}

/// The error of a launcher that must refuse (Dispatch has no Debug, so no expect_err).
fn refused<T>(r: gradscope::Result<T>, what: &str) -> gradscope::Error {
    match r {
        Ok(_) => panic!("{what}"),
        Err(e) => e,
    }
}

#[test]
fn launchers_refuse_bad_sizes_and_geometry() {
    let Some(ctx) = common::gpu() else { return };
    let s = sh(1, 2, 5, 5, [2, 2], [2, 2], [0, 0]);
    let x = ctx.upload("x", &vec![0.0f32; s.input_len()]).unwrap();
    let small = ctx.upload("y", &vec![0.0f32; s.output_len() - 1]).unwrap();
    let y = ctx.upload("y", &vec![0.0f32; s.output_len()]).unwrap();
    let e = refused(
        gp::avg_pool2d_forward(ctx, &s, &x, &small),
        "small y accepted",
    );
    assert!(e.to_string().contains("avg_pool2d_forward"), "{e}");
    let bad = Pool2dShape {
        stride: [0, 2],
        ..s
    };
    let e = refused(
        gp::avg_pool2d_forward(ctx, &bad, &x, &y),
        "stride 0 accepted",
    );
    assert!(e.to_string().contains("stride"), "{e}");
    let e = refused(
        gp::max_pool2d_forward(ctx, &s, &x, &y, &y),
        "aliased accepted",
    );
    assert!(e.to_string().contains("same buffer"), "{e}");
}

/// L(x) = Σ pool(x)·g; its gradient is backward(g). Central differences in f64 with
/// eps 1e-6: pooling is piecewise linear, so the truncation error is zero away from the
/// max's switching points and only rounding remains (~1e-16·|L|/eps ≈ 1e-9).
fn fd_check(what: &str, n_in: usize, x: &[f64], loss: impl Fn(&[f64]) -> f64, analytic: &[f64]) {
    let eps = 1e-6;
    let mut numeric = vec![0.0; n_in];
    let mut xp = x.to_vec();
    for i in 0..n_in {
        let v = xp[i];
        xp[i] = v + eps;
        let lp = loss(&xp);
        xp[i] = v - eps;
        let lm = loss(&xp);
        xp[i] = v;
        numeric[i] = (lp - lm) / (2.0 * eps);
    }
    assert_close_f64(what, analytic, &numeric, 1e-7, 1e-6);
}

#[test]
fn pooling_backward_matches_finite_differences() {
    for (i, s) in shapes().into_iter().enumerate() {
        if s.input_len() > 2000 {
            continue; // keep the O(n²) check cheap
        }
        let seed = 400 + i as u64;
        let (ni, no) = (s.input_len(), s.output_len());
        // Distinct values at least 0.01 apart (a shuffled ramp plus small noise), so no
        // max window switches its arg-max within ±eps: away from ties.
        let noise = random_vec_f64(seed, ni, 0.0, 0.001);
        let keys = random_vec_f64(seed + 1, ni, 0.0, 1.0);
        let mut order: Vec<usize> = (0..ni).collect();
        order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
        let mut x = vec![0.0; ni];
        for (rank, &j) in order.iter().enumerate() {
            x[j] = rank as f64 * 0.01 - 1.0 + noise[j];
        }
        let g = random_vec_f64(seed + 2, no, -1.0, 1.0);
        let dot = |y: &[f64]| y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>();

        let mut y = vec![0.0; no];
        let mut arg = vec![0u32; no];
        cp::max_pool2d_forward(&s, &x, &mut y, &mut arg);
        let mut dx = vec![0.0; ni];
        cp::max_pool2d_backward(&s, &g, &arg, &mut dx);
        let max_loss = |x: &[f64]| {
            let mut y = vec![0.0; no];
            let mut a = vec![0u32; no];
            cp::max_pool2d_forward(&s, x, &mut y, &mut a);
            dot(&y)
        };
        fd_check(&format!("max dx seed {seed} {s:?}"), ni, &x, max_loss, &dx);

        cp::avg_pool2d_backward(&s, &g, &mut dx);
        let avg_loss = |x: &[f64]| {
            let mut y = vec![0.0; no];
            cp::avg_pool2d_forward(&s, x, &mut y);
            dot(&y)
        };
        fd_check(&format!("avg dx seed {seed} {s:?}"), ni, &x, avg_loss, &dx);

        let (n, c, h, w) = (s.n, s.c, s.h, s.w);
        let gg = &g[..n * c];
        cp::global_avg_pool_backward(gg, &mut dx, n, c, h, w);
        let gap_loss = |x: &[f64]| {
            let mut y = vec![0.0; n * c];
            cp::global_avg_pool_forward(x, &mut y, n, c, h, w);
            y.iter().zip(gg).map(|(a, b)| a * b).sum::<f64>()
        };
        fd_check(&format!("gap dx seed {seed} {s:?}"), ni, &x, gap_loss, &dx);
    }
}

#[test]
fn golden_values_from_jax() {
    let text = include_str!("golden/pool_golden.json");
    let v: serde_json::Value = serde_json::from_str(text).expect("golden json");
    let vec64 = |x: &serde_json::Value| -> Vec<f64> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_f64().unwrap())
            .collect()
    };
    let us = |x: &serde_json::Value| x.as_u64().unwrap() as usize;
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let st = &case["stride"];
        let pd = &case["pad"];
        let s = Pool2dShape {
            n: us(&case["n"]),
            c: us(&case["c"]),
            h: us(&case["h"]),
            w: us(&case["w"]),
            kh: us(&case["kh"]),
            kw: us(&case["kw"]),
            stride: [us(&st[0]), us(&st[1])],
            pad: [us(&pd[0]), us(&pd[1])],
        };
        s.validate("golden").unwrap();
        assert_eq!(s.out_hw(), (us(&case["out_hw"][0]), us(&case["out_hw"][1])));
        let kind = case["kind"].as_str().unwrap();
        let (x, want_y, dy, want_dx) = (
            vec64(&case["x"]),
            vec64(&case["y"]),
            vec64(&case["dy"]),
            vec64(&case["dx"]),
        );
        let (ni, no) = (s.input_len(), s.output_len());
        let mut y = vec![0.0; no];
        let mut dx = vec![0.0; ni];
        if kind == "max" {
            let mut arg = vec![0u32; no];
            cp::max_pool2d_forward(&s, &x, &mut y, &mut arg);
            cp::max_pool2d_backward(&s, &dy, &arg, &mut dx);
        } else {
            cp::avg_pool2d_forward(&s, &x, &mut y);
            cp::avg_pool2d_backward(&s, &dy, &mut dx);
        }
        // f64 on both sides, sums of at most kh·kw terms in possibly different orders.
        assert_close_f64(&format!("golden {kind} y {s:?}"), &y, &want_y, 1e-14, 1e-13);
        assert_close_f64(
            &format!("golden {kind} dx {s:?}"),
            &dx,
            &want_dx,
            1e-14,
            1e-13,
        );

        // The GPU in f32 (inputs are f32-exact), to f32 rounding of a few-term sum.
        let Some(ctx) = common::gpu() else { continue };
        let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        let xb = ctx.upload("x", &f(&x)).unwrap();
        let yb = ctx.storage_buffer("y", 4 * no as u64).unwrap();
        let dyb = ctx.upload("dy", &f(&dy)).unwrap();
        let dxb = ctx.storage_buffer("dx", 4 * ni as u64).unwrap();
        if kind == "max" {
            let ab = ctx.storage_buffer("argmax", 4 * no as u64).unwrap();
            let fw = gp::max_pool2d_forward(ctx, &s, &xb, &yb, &ab).unwrap();
            let bw = gp::max_pool2d_backward(ctx, &s, &dyb, &ab, &dxb).unwrap();
            ctx.run(&[&fw, &bw]).unwrap();
        } else {
            let fw = gp::avg_pool2d_forward(ctx, &s, &xb, &yb).unwrap();
            let bw = gp::avg_pool2d_backward(ctx, &s, &dyb, &dxb).unwrap();
            ctx.run(&[&fw, &bw]).unwrap();
        }
        assert_close(
            &format!("golden gpu {kind} y {s:?}"),
            &ctx.read(&yb, no).unwrap(),
            &f(&want_y),
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("golden gpu {kind} dx {s:?}"),
            &ctx.read(&dxb, ni).unwrap(),
            &f(&want_dx),
            1e-6,
            1e-5,
        );
    }
}
