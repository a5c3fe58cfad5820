//! Gradient clipping: the CPU twin against JAX's global-norm clipping (script and values in
//! tests/golden/), and every entry of shaders/clip.wgsl against the CPU twin.

mod common;

use gradscope::cpu::clip::{ClipDecision, clip_norm_scale, clip_scale, clip_value};
use gradscope::cpu::stats::stats_reduce;
use gradscope::gpu::kernels::clip as gpu_clip;
use gradscope::plan::Guard;
use gradscope::stats::RawStats;

struct Golden {
    grads: Vec<Vec<f32>>,
    /// (max_norm, norm, jax-clipped gradients, torch scale)
    norm_cases: Vec<(f32, f64, Vec<Vec<f64>>, f64)>,
    value: f32,
    value_clipped: Vec<Vec<f64>>,
}

fn golden() -> Golden {
    let text = include_str!("golden/clip_golden.json");
    let v: serde_json::Value = serde_json::from_str(text).expect("golden json");
    let vecs = |x: &serde_json::Value| -> Vec<Vec<f64>> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_f64().unwrap())
                    .collect()
            })
            .collect()
    };
    let grads = vecs(&v["grads"])
        .into_iter()
        .map(|g| g.into_iter().map(|x| x as f32).collect())
        .collect();
    let norm_cases = v["norm_cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["max_norm"].as_f64().unwrap() as f32,
                c["norm"].as_f64().unwrap(),
                vecs(&c["jax_clipped"]),
                c["torch_scale"].as_f64().unwrap(),
            )
        })
        .collect();
    Golden {
        grads,
        norm_cases,
        value: v["clip_value"].as_f64().unwrap() as f32,
        value_clipped: vecs(&v["value_clipped"]),
    }
}

fn records_of(grads: &[Vec<f32>]) -> Vec<RawStats> {
    grads.iter().map(|g| stats_reduce(g, None)).collect()
}

fn decide(records: &[RawStats], max_norm: f32, skip: bool) -> ClipDecision {
    let refs: Vec<&RawStats> = records.iter().collect();
    let guard = if skip { Guard::Skip } else { Guard::Off };
    clip_norm_scale(&refs, max_norm, guard, None)
}

fn to32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// The norm from the records and the clipped gradients match JAX's clip_grads in float64.
/// Tolerance: the records' nrm2 sum is f32 (~1e-7 relative per add over 59 elements), and
/// PyTorch's +1e-6 in the denominator differs from JAX's formula by 1e-6/23.5 ≈ 4e-8.
#[test]
fn global_norm_matches_jax() {
    let g = golden();
    let records = records_of(&g.grads);
    for (max_norm, norm, want, torch_scale) in &g.norm_cases {
        let d = decide(&records, *max_norm, false);
        let what = format!("max_norm {max_norm}");
        common::assert_close_f64(
            &format!("{what}: norm"),
            &[d.norm as f64],
            &[*norm],
            0.0,
            1e-6,
        );
        common::assert_close_f64(
            &format!("{what}: scale vs torch"),
            &[d.scale as f64],
            &[*torch_scale],
            0.0,
            1e-6,
        );
        assert!(!d.skipped);
        for (i, (grad, w)) in g.grads.iter().zip(want).enumerate() {
            let mut got = grad.clone();
            clip_scale(&mut got, d.scale);
            common::assert_close(&format!("{what}: grad {i}"), &got, &to32(w), 1e-7, 2e-6);
        }
    }
}

#[test]
fn clip_value_matches_jax() {
    let g = golden();
    for (i, (grad, want)) in g.grads.iter().zip(&g.value_clipped).enumerate() {
        let mut got = grad.clone();
        clip_value(&mut got, g.value);
        common::assert_close(&format!("value clip grad {i}"), &got, &to32(want), 0.0, 0.0);
    }
}

/// Non-finite gradients: NaN/Inf norm, scale 0 and skipped under skip, scale 1 without.
#[test]
fn nonfinite_norm_and_policy() {
    let mut grads = vec![vec![1.0f32, 2.0], vec![3.0; 5]];
    grads[1][3] = f32::INFINITY;
    let r = records_of(&grads);
    let d = decide(&r, 1.0, true);
    assert!(d.norm.is_infinite() && d.scale == 0.0 && d.skipped, "{d:?}");
    let d = decide(&r, 1.0, false);
    assert!(
        d.norm.is_infinite() && d.scale == 1.0 && !d.skipped,
        "{d:?}"
    );
    grads[0][0] = f32::NAN;
    let d = decide(&records_of(&grads), f32::INFINITY, true);
    assert!(d.norm.is_nan() && d.skipped, "{d:?}");
    // Finite and only measured: scale 1, norm √(1+4+45) exactly as nrm2 gives it.
    let d = decide(
        &records_of(&[vec![1.0, 2.0], vec![3.0; 5]]),
        f32::INFINITY,
        true,
    );
    assert!(!d.skipped && d.scale == 1.0, "{d:?}");
    common::assert_close("norm", &[d.norm], &[50f32.sqrt()], 0.0, 1e-6);
    let mut v = vec![f32::NAN, 3.0, -3.0, 0.1];
    clip_value(&mut v, 1.0);
    assert!(v[0].is_nan() && v[1..] == [1.0, -1.0, 0.1], "{v:?}");
}

/// clip_norm_scale on the device reads the same records and reaches the same decision.
/// Records of tensors spanning 1e-20 … 1e20 in scale exercise the nrm2 rescaling; sqrt and
/// division may be a few ulp off on a GPU (Vulkan allows it), hence rtol 1e-6.
#[test]
fn gpu_norm_scale_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    let g = golden();
    let mut sets: Vec<(String, Vec<Vec<f32>>)> = vec![("golden".into(), g.grads.clone())];
    for (seed, lens, scale) in [
        (1u64, vec![1usize], 1.0f32),
        (2, vec![7, 13, 31, 127], 1e-20),
        (3, vec![13, 1, 255], 1e20),
        (4, vec![31, 7], 1.0),
    ] {
        let grads = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                common::random_vec(seed * 100 + i as u64, n, -1.0, 1.0)
                    .into_iter()
                    .map(|x| x * scale * (i as f32 + 1.0))
                    .collect()
            })
            .collect();
        sets.push((format!("seed {seed} lens {lens:?} scale {scale:e}"), grads));
    }
    let mut nan = g.grads.clone();
    nan[2][4] = f32::NAN;
    sets.push(("golden with a NaN".into(), nan));
    for (what, grads) in &sets {
        let records = records_of(grads);
        // A decoy record first, so the job table's indices are exercised.
        let mut all = vec![stats_reduce(&[1e30f32], None)];
        all.extend_from_slice(&records);
        let rec_buf = ctx.upload("records", &all).unwrap();
        let jobs: Vec<u32> = (1..all.len() as u32).collect();
        for (max_norm, skip) in [(1.0f32, true), (100.0, false), (f32::INFINITY, true)] {
            let state = gpu_clip::state_buffer(ctx).unwrap();
            let d = gpu_clip::clip_norm_scale(
                ctx,
                &rec_buf,
                &jobs,
                &state,
                max_norm,
                if skip { Guard::Skip } else { Guard::Off },
            )
            .unwrap();
            ctx.run(&[&d]).unwrap();
            let s: Vec<f32> = ctx.read(&state, 4).unwrap();
            let got = ClipDecision::from_state([s[0], s[1], s[2], s[3]]);
            let want = decide(&records, max_norm, skip);
            let w = format!("{what}, max_norm {max_norm}, skip {skip}");
            assert_eq!(got.skipped, want.skipped, "{w}: skipped");
            common::assert_close(
                &format!("{w}: [norm, scale, after]"),
                &[got.norm, got.scale, got.norm_after],
                &[want.norm, want.scale, want.norm_after],
                0.0,
                1e-6,
            );
        }
    }
}

#[test]
fn gpu_scale_and_value_match_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (seed, len) in [(1u64, 1usize), (2, 7), (3, 255), (4, 257), (5, 4099)] {
        let mut x = common::random_vec(seed, len, -3.0, 3.0);
        if len > 3 {
            x[2] = f32::NAN;
        }
        let what = format!("seed {seed} len {len}");
        // Scale.
        let scale = 0.37f32;
        let state = ctx.upload("state", &[5.0f32, scale, 0.0, 0.0]).unwrap();
        let g = ctx.upload("grad", &x).unwrap();
        let d = gpu_clip::clip_scale(ctx, &state, &g, len).unwrap();
        ctx.run(&[&d]).unwrap();
        let got: Vec<f32> = ctx.read(&g, len).unwrap();
        let mut want = x.clone();
        clip_scale(&mut want, scale);
        common::assert_close(&format!("{what}: clip_scale"), &got, &want, 0.0, 0.0);
        // Value.
        let g = ctx.upload("grad", &x).unwrap();
        let d = gpu_clip::clip_value(ctx, &g, len, 1.25).unwrap();
        ctx.run(&[&d]).unwrap();
        let got: Vec<f32> = ctx.read(&g, len).unwrap();
        let mut want = x.clone();
        clip_value(&mut want, 1.25);
        common::assert_close(&format!("{what}: clip_value"), &got, &want, 0.0, 0.0);
    }
}

#[test]
fn gpu_gate_zeroes_args_only_when_skipped() {
    let Some(ctx) = common::gpu() else { return };
    let base: Vec<u32> = (1..=9).collect();
    for skipped in [0.0f32, 1.0] {
        let state = ctx.upload("state", &[f32::NAN, 0.0, skipped, 0.0]).unwrap();
        let args = gpu_clip::indirect_args_buffer(ctx, base.len()).unwrap();
        let d = gpu_clip::clip_gate(ctx, &state, &base, &args).unwrap();
        ctx.run(&[&d]).unwrap();
        let got: Vec<u32> = ctx.read(&args, base.len()).unwrap();
        let want = if skipped != 0.0 {
            vec![0; 9]
        } else {
            base.clone()
        };
        assert_eq!(got, want, "skipped = {skipped}");
    }
}

#[test]
fn launchers_refuse_bad_sizes() {
    let Some(ctx) = common::gpu() else { return };
    let small = ctx.storage_buffer("small", 8).unwrap();
    let state = gpu_clip::state_buffer(ctx).unwrap();
    assert!(gpu_clip::clip_scale(ctx, &state, &small, 3).is_err());
    assert!(gpu_clip::clip_value(ctx, &small, 3, 1.0).is_err());
    assert!(gpu_clip::clip_value(ctx, &small, 2, -1.0).is_err());
    assert!(gpu_clip::clip_norm_scale(ctx, &small, &[0], &state, 1.0, Guard::Off).is_err());
    assert!(gpu_clip::clip_gate(ctx, &state, &[1, 1], &small).is_err());
}

/// Halt keeps skipping after a bad step, on finite gradients too; skip does not.
#[test]
fn halt_latches_skip_does_not() {
    let finite = records_of(&[vec![1.0f32, 2.0]]);
    let refs: Vec<&RawStats> = finite.iter().collect();
    let bad = ClipDecision {
        norm: f32::NAN,
        scale: 0.0,
        skipped: true,
        norm_after: f32::NAN,
    };
    assert!(clip_norm_scale(&refs, 1.0, Guard::Halt, Some(bad)).skipped);
    assert!(!clip_norm_scale(&refs, 1.0, Guard::Skip, Some(bad)).skipped);
    let Some(ctx) = common::gpu() else { return };
    let rec = ctx.upload("records", &finite).unwrap();
    for (guard, want) in [(Guard::Halt, 1.0f32), (Guard::Skip, 0.0)] {
        let state = ctx
            .upload("state", &[f32::NAN, 0.0, 1.0, f32::NAN])
            .unwrap();
        let d = gpu_clip::clip_norm_scale(ctx, &rec, &[0], &state, 1.0, guard).unwrap();
        ctx.run(&[&d]).unwrap();
        let s: Vec<f32> = ctx.read(&state, 4).unwrap();
        assert_eq!(s[2], want, "{guard:?}: {s:?}");
    }
}

/// The grouped dispatch the executor uses for a step's many gradients scales and clamps
/// each of them exactly as the CPU twin does: a full group of eight and a partial group,
/// lengths around the 256-wide workgroup, a NaN that must survive both.
#[test]
fn grouped_scale_and_value_match_cpu() {
    let Some(ctx) = common::gpu() else { return };
    if gpu_clip::multi_capacity(ctx) == 0 {
        return;
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for lens in [
        vec![1usize, 255, 256, 257, 4099, 7, 512, 3],
        vec![100, 1, 2049],
    ] {
        let data: Vec<Vec<f32>> = lens
            .iter()
            .enumerate()
            .map(|(j, &l)| {
                let mut x = common::random_vec(50 + j as u64, l, -3.0, 3.0);
                if l > 3 {
                    x[2] = f32::NAN;
                }
                x
            })
            .collect();
        let scale = 0.37f32;
        let state = ctx.upload("state", &[5.0f32, scale, 0.0, 0.0]).unwrap();
        for mode in [
            gpu_clip::ClipMode::Scale { state: &state },
            gpu_clip::ClipMode::Value(1.25),
        ] {
            let bufs: Vec<wgpu::Buffer> =
                data.iter().map(|x| ctx.upload("g", x).unwrap()).collect();
            let grads: Vec<(&wgpu::Buffer, usize)> =
                bufs.iter().zip(&lens).map(|(b, &l)| (b, l)).collect();
            let d = gpu_clip::clip_multi(ctx, mode, &grads).unwrap();
            ctx.run(&[&d]).unwrap();
            for (j, (b, x)) in bufs.iter().zip(&data).enumerate() {
                let mut want = x.clone();
                match mode {
                    gpu_clip::ClipMode::Scale { .. } => clip_scale(&mut want, scale),
                    gpu_clip::ClipMode::Value(v) => clip_value(&mut want, v),
                }
                let got: Vec<f32> = ctx.read(b, x.len()).unwrap();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{mode:?} lens {lens:?} gradient {j}"
                );
            }
        }
    }
    // Refusals: no gradients, nine, one bound twice, a bad value.
    let g = ctx.upload("g", &[1.0f32; 4]).unwrap();
    let h = ctx.upload("h", &[1.0f32; 4]).unwrap();
    let e = |r: gradscope::error::Result<_>| {
        r.map(|_: gradscope::gpu::Dispatch| ())
            .unwrap_err()
            .to_string()
    };
    assert!(
        e(gpu_clip::clip_multi(
            ctx,
            gpu_clip::ClipMode::Value(1.0),
            &[]
        ))
        .contains("1 to 8")
    );
    let nine = vec![(&g, 4usize); 9];
    assert!(
        e(gpu_clip::clip_multi(
            ctx,
            gpu_clip::ClipMode::Value(1.0),
            &nine
        ))
        .contains("got 9")
    );
    assert!(
        e(gpu_clip::clip_multi(
            ctx,
            gpu_clip::ClipMode::Value(1.0),
            &[(&g, 4), (&g, 4)]
        ))
        .contains("twice")
    );
    assert!(
        e(gpu_clip::clip_multi(
            ctx,
            gpu_clip::ClipMode::Value(-1.0),
            &[(&g, 4), (&h, 4)]
        ))
        .contains("positive")
    );
}
