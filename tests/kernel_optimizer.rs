//! The optimizer family: the CPU twin against hand-computed torch.optim steps, and the GPU
//! kernel against the CPU twin over several steps for every kind.

mod common;

use gradscope::cpu::optimizer::optimizer_update as cpu_update;
use gradscope::gpu::kernels::optimizer::{
    OptimizerTensor, multi_capacity, optimizer_update as gpu_update,
    optimizer_update_multi as gpu_update_multi,
};
use gradscope::ops::{OptimizerKind, OptimizerParams, StepScalars, StepUniform};

const KINDS: [OptimizerKind; 7] = [
    OptimizerKind::Sgd,
    OptimizerKind::Momentum,
    OptimizerKind::Nesterov,
    OptimizerKind::Adagrad,
    OptimizerKind::Rmsprop,
    OptimizerKind::Adam,
    OptimizerKind::Adamw,
];

/// Golden values: one step from a non-zero state, lr 0.1, weight decay 0.1, t = 3, the
/// default μ, β₁, β₂ (α), eps. Produced by this float64 script, which writes torch.optim's
/// algorithms out by hand (torch itself was not available where these were made):
///
/// ```python
/// import math
/// p0 = [1.0, -2.0, 0.5]; g0 = [0.5, 0.25, -1.0]
/// buf0 = [0.1, -0.2, 0.3]; sq0 = [0.1, 0.2, 0.3]; v0 = [0.01, 0.04, 0.09]
/// lr, wd, t = 0.1, 0.1, 3
/// mu, b1, b2, alpha = 0.9, 0.9, 0.999, 0.99
/// g = [gi + wd * pi for gi, pi in zip(g0, p0)]
/// sgd = [pi - lr * gi for pi, gi in zip(p0, g)]
/// buf = [mu * b + gi for b, gi in zip(buf0, g)]
/// momentum = [pi - lr * b for pi, b in zip(p0, buf)]
/// nesterov = [pi - lr * (gi + mu * b) for pi, gi, b in zip(p0, g, buf)]
/// s = [sq + gi * gi for sq, gi in zip(sq0, g)]
/// adagrad = [pi - lr * gi / (math.sqrt(si) + 1e-10) for pi, gi, si in zip(p0, g, s)]
/// v = [alpha * sq + (1 - alpha) * gi * gi for sq, gi in zip(sq0, g)]
/// rmsprop = [pi - lr * gi / (math.sqrt(vi) + 1e-8) for pi, gi, vi in zip(p0, g, v)]
/// def adam(p, g):
///     m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(buf0, g)]
///     v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v0, g)]
///     bc1 = 1 - b1 ** t; bc2 = 1 - b2 ** t
///     return [pi - (lr / bc1) * mi / (math.sqrt(vi) / math.sqrt(bc2) + 1e-8)
///             for pi, mi, vi in zip(p, m, v)], m, v
/// adam(p0, g)                                          # adam
/// adam([pi * (1 - lr * wd) for pi in p0], g0)          # adamw: decay first, raw gradient
/// ```
///
/// SGD's and momentum's numbers can be checked by hand: g + wd·p = [0.6, 0.05, −0.95], so
/// plain SGD gives p − 0.1·g = [0.94, −2.005, 0.595].
struct Golden {
    kind: OptimizerKind,
    state1_in: [f64; 3],
    param: [f64; 3],
    state1: [f64; 3],
    state2: [f64; 3],
}

const P0: [f64; 3] = [1.0, -2.0, 0.5];
const G0: [f64; 3] = [0.5, 0.25, -1.0];
const BUF0: [f64; 3] = [0.1, -0.2, 0.3];
const SQ0: [f64; 3] = [0.1, 0.2, 0.3];
const V0: [f64; 3] = [0.01, 0.04, 0.09];

fn goldens() -> Vec<Golden> {
    use OptimizerKind::*;
    let z = [0.0; 3];
    vec![
        Golden {
            kind: Sgd,
            state1_in: z,
            param: [0.94, -2.005, 0.595],
            state1: z,
            state2: z,
        },
        Golden {
            kind: Momentum,
            state1_in: BUF0,
            param: [0.931, -1.987, 0.568],
            state1: [0.69, -0.13, -0.68],
            state2: z,
        },
        Golden {
            kind: Nesterov,
            state1_in: BUF0,
            param: [0.8779, -1.9933, 0.6562],
            state1: [0.69, -0.13, -0.68],
            state2: z,
        },
        Golden {
            kind: Adagrad,
            state1_in: SQ0,
            param: [0.9115348263201052, -2.011111111108642, 0.5866325429837349],
            state1: [0.46, 0.2025, 1.2025],
            state2: z,
        },
        Golden {
            kind: Rmsprop,
            state1_in: SQ0,
            param: [0.8126828435316142, -2.0112359548036864, 0.6717295943807878],
            state1: [0.1026, 0.198025, 0.306025],
            state2: z,
        },
        Golden {
            kind: Adam,
            state1_in: BUF0,
            param: [0.9702151625098552, -1.982315781351247, 0.4882688824896658],
            state1: [0.15, -0.175, 0.175],
            state2: [0.01035, 0.0399625, 0.0908125],
        },
        Golden {
            kind: Adamw,
            state1_in: BUF0,
            param: [0.9620519051775128, -1.9643485800843212, 0.4836101699282183],
            state1: [0.14, -0.155, 0.17],
            state2: [0.01024, 0.0400225, 0.09091],
        },
    ]
}

fn golden_params(kind: OptimizerKind) -> OptimizerParams {
    OptimizerParams {
        weight_decay: 0.1,
        ..OptimizerParams::new(kind)
    }
}

const GOLDEN_STEP: StepScalars = StepScalars { lr: 0.1, t: 3 };

/// The CPU twin in f64 reproduces the script. The twin starts from the f32 hyper-parameters
/// (0.9f32 = 0.899999976…), which moves most results by ~1e-8 relative; Adam's are more
/// sensitive: bc2 = 1 − β₂³ ≈ 0.003 turns β₂'s rounding (1.3e-8) into 1.3e-5 relative, and
/// the step moves by half that through √bc2 (6e-6 of an update; 2e-7 of a parameter).
#[test]
fn cpu_matches_hand_computed_step_f64() {
    for g in goldens() {
        let p = golden_params(g.kind);
        let mut param = P0.to_vec();
        let mut s1 = g.state1_in.to_vec();
        let mut s2 = V0.to_vec();
        let mut update = vec![0.0; 3];
        cpu_update(
            &p,
            &GOLDEN_STEP,
            &mut param,
            &G0,
            &mut s1,
            &mut s2,
            &mut update,
        );
        let name = g.kind.name();
        common::assert_close_f64(&format!("{name} param"), &param, &g.param, 1e-7, 1e-6);
        let want_update: Vec<f64> = g.param.iter().zip(P0).map(|(a, b)| a - b).collect();
        common::assert_close_f64(&format!("{name} update"), &update, &want_update, 1e-7, 2e-5);
        if g.kind.state_slots() >= 1 {
            common::assert_close_f64(&format!("{name} state1"), &s1, &g.state1, 1e-9, 1e-6);
        }
        if g.kind.state_slots() >= 2 {
            common::assert_close_f64(&format!("{name} state2"), &s2, &g.state2, 1e-9, 1e-6);
        }
    }
}

fn f32s(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

/// The same step in f32 on the CPU and, where there is an adapter, on the GPU.
/// Tolerance: parameters are O(1), so f32 rounding is ~1e-7 absolute.
#[test]
fn gpu_and_cpu_f32_match_hand_computed_step() {
    for g in goldens() {
        let p = golden_params(g.kind);
        let name = g.kind.name();
        let (mut param, mut s1, mut s2) = (f32s(&P0), f32s(&g.state1_in), f32s(&V0));
        let mut update = vec![0f32; 3];
        cpu_update(
            &p,
            &GOLDEN_STEP,
            &mut param,
            &f32s(&G0),
            &mut s1,
            &mut s2,
            &mut update,
        );
        common::assert_close(
            &format!("cpu f32 {name} param"),
            &param,
            &f32s(&g.param),
            1e-6,
            1e-6,
        );

        let Some(ctx) = common::gpu() else { continue };
        let step = ctx
            .uniform("step", &StepUniform::new(&GOLDEN_STEP, &p))
            .unwrap();
        let param_b = ctx.upload("param", &f32s(&P0)).unwrap();
        let grad_b = ctx.upload("grad", &f32s(&G0)).unwrap();
        let s1_b = ctx.upload("state1", &f32s(&g.state1_in)).unwrap();
        let s2_b = ctx.upload("state2", &f32s(&V0)).unwrap();
        let upd_b = ctx.storage_buffer("update", 12).unwrap();
        let slots = g.kind.state_slots();
        let d = gpu_update(
            ctx,
            &p,
            &step,
            &param_b,
            &grad_b,
            (slots >= 1).then_some(&s1_b),
            (slots >= 2).then_some(&s2_b),
            &upd_b,
            3,
        )
        .unwrap();
        ctx.run(&[&d]).unwrap();
        let got: Vec<f32> = ctx.read(&param_b, 3).unwrap();
        common::assert_close(
            &format!("gpu {name} param"),
            &got,
            &f32s(&g.param),
            1e-6,
            1e-6,
        );
        let got: Vec<f32> = ctx.read(&upd_b, 3).unwrap();
        let want: Vec<f32> = g
            .param
            .iter()
            .zip(P0)
            .map(|(a, b)| (a - b) as f32)
            .collect();
        common::assert_close(&format!("gpu {name} update"), &got, &want, 1e-6, 1e-5);
        if slots >= 1 {
            let got: Vec<f32> = ctx.read(&s1_b, 3).unwrap();
            common::assert_close(
                &format!("gpu {name} state1"),
                &got,
                &f32s(&g.state1),
                1e-7,
                1e-6,
            );
        }
        if slots >= 2 {
            let got: Vec<f32> = ctx.read(&s2_b, 3).unwrap();
            common::assert_close(
                &format!("gpu {name} state2"),
                &got,
                &f32s(&g.state2),
                1e-8,
                1e-6,
            );
        }
    }
}

/// GPU against the CPU twin for every kind over five steps (t = 1..5, lr changing every
/// step through the rewritten step uniform), with and without weight decay, on lengths
/// that are 1, prime, and not multiples of the 256-wide workgroup.
///
/// Tolerances: the device's sqrt and division may be a few ulp off correctly rounded (and
/// it may fuse multiply-adds), so parameters and state agree to ~1e-6 relative after five
/// steps. `update` is p_new − p_old: a one-ulp difference in p (|p| < 1, ulp ≤ 6e-8)
/// becomes an absolute error of that size in an update ~1e-3, hence its atol.
#[test]
fn gpu_matches_cpu_over_five_steps() {
    let Some(ctx) = common::gpu() else { return };
    for (ki, &kind) in KINDS.iter().enumerate() {
        for &wd in &[0.0f32, 0.05] {
            for &len in &[1usize, 7, 1000, 70001] {
                let seed = 1000 * ki as u64 + len as u64 + if wd > 0.0 { 500_000 } else { 0 };
                let what = format!("{} wd {wd} len {len} seed {seed}", kind.name());
                let p = OptimizerParams {
                    weight_decay: wd,
                    ..OptimizerParams::new(kind)
                };
                let mut param = common::random_vec(seed, len, -1.0, 1.0);
                let mut s1 = vec![0f32; len];
                let mut s2 = vec![0f32; len];
                let mut update = vec![0f32; len];

                let first = StepScalars { lr: 0.05, t: 1 };
                let step_b = ctx.uniform("step", &StepUniform::new(&first, &p)).unwrap();
                let param_b = ctx.upload("param", &param).unwrap();
                let grad_b = ctx.storage_buffer("grad", 4 * len as u64).unwrap();
                let s1_b = ctx.storage_buffer("state1", 4 * len as u64).unwrap();
                let s2_b = ctx.storage_buffer("state2", 4 * len as u64).unwrap();
                let upd_b = ctx.storage_buffer("update", 4 * len as u64).unwrap();
                let slots = kind.state_slots();
                // Built once, as a plan does; each step only rewrites the uniform and grad.
                let d = gpu_update(
                    ctx,
                    &p,
                    &step_b,
                    &param_b,
                    &grad_b,
                    (slots >= 1).then_some(&s1_b),
                    (slots >= 2).then_some(&s2_b),
                    &upd_b,
                    len,
                )
                .unwrap();

                for t in 1..=5u32 {
                    let s = StepScalars {
                        lr: 0.05 / t as f32,
                        t,
                    };
                    let grad = common::random_vec(seed * 31 + t as u64, len, -1.0, 1.0);
                    ctx.write(&grad_b, bytemuck::cast_slice(&grad));
                    ctx.write(&step_b, bytemuck::bytes_of(&StepUniform::new(&s, &p)));
                    ctx.run(&[&d]).unwrap();
                    cpu_update(&p, &s, &mut param, &grad, &mut s1, &mut s2, &mut update);

                    let got: Vec<f32> = ctx.read(&param_b, len).unwrap();
                    common::assert_close(&format!("{what} t {t} param"), &got, &param, 1e-6, 1e-5);
                    let got: Vec<f32> = ctx.read(&upd_b, len).unwrap();
                    common::assert_close(
                        &format!("{what} t {t} update"),
                        &got,
                        &update,
                        2e-7,
                        1e-4,
                    );
                    if slots >= 1 {
                        let got: Vec<f32> = ctx.read(&s1_b, len).unwrap();
                        common::assert_close(
                            &format!("{what} t {t} state1"),
                            &got,
                            &s1,
                            1e-7,
                            1e-5,
                        );
                    }
                    if slots >= 2 {
                        let got: Vec<f32> = ctx.read(&s2_b, len).unwrap();
                        common::assert_close(
                            &format!("{what} t {t} state2"),
                            &got,
                            &s2,
                            1e-9,
                            1e-5,
                        );
                    }
                }
            }
        }
    }
}

/// The launcher refuses what the shader cannot run: a missing state slot, short buffers,
/// and one buffer bound twice.
#[test]
fn launcher_rejects_bad_bindings() {
    let Some(ctx) = common::gpu() else { return };
    let p = OptimizerParams::new(OptimizerKind::Adam);
    let step = ctx
        .uniform(
            "step",
            &StepUniform::new(&StepScalars { lr: 0.1, t: 1 }, &p),
        )
        .unwrap();
    let buf = |n: u64| ctx.storage_buffer("b", 4 * n).unwrap();
    let (param, grad, s1, s2, upd) = (buf(10), buf(10), buf(10), buf(10), buf(10));

    let err = gpu_update(ctx, &p, &step, &param, &grad, Some(&s1), None, &upd, 10).unwrap_err();
    assert!(err.to_string().contains("state2"), "{err}");

    let short = buf(9);
    let err = gpu_update(
        ctx,
        &p,
        &step,
        &param,
        &short,
        Some(&s1),
        Some(&s2),
        &upd,
        10,
    )
    .unwrap_err();
    assert!(err.to_string().contains("grad"), "{err}");

    let err = gpu_update(
        ctx,
        &p,
        &step,
        &param,
        &grad,
        Some(&s1),
        Some(&s1),
        &upd,
        10,
    )
    .unwrap_err();
    assert!(err.to_string().contains("same buffer"), "{err}");

    // SGD needs no state: dummies are bound and the dispatch builds.
    let sgd = OptimizerParams::new(OptimizerKind::Sgd);
    gpu_update(ctx, &sgd, &step, &param, &grad, None, None, &upd, 10).unwrap();
}

/// The shader parses and validates without a GPU.
#[test]
fn shader_validates_with_naga() {
    let src = gradscope::gpu::shaders::source("optimizer").unwrap();
    let module =
        naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{e:?}"));
}

/// Past 65535 workgroups of 256 the launcher spreads the grid over y. Ignored by default
/// (five 67 MB buffers are slow on a software adapter): `cargo test --test kernel_optimizer
/// -- --ignored`.
#[test]
#[ignore]
fn gpu_matches_cpu_on_a_two_dimensional_grid() {
    let Some(ctx) = common::gpu() else { return };
    let len = 65535 * 256 + 7;
    let p = OptimizerParams::new(OptimizerKind::Adam);
    let s = StepScalars { lr: 0.01, t: 1 };
    let mut param = common::random_vec(77, len, -1.0, 1.0);
    let grad = common::random_vec(78, len, -1.0, 1.0);
    let step_b = ctx.uniform("step", &StepUniform::new(&s, &p)).unwrap();
    let param_b = ctx.upload("param", &param).unwrap();
    let grad_b = ctx.upload("grad", &grad).unwrap();
    let s1_b = ctx.storage_buffer("state1", 4 * len as u64).unwrap();
    let s2_b = ctx.storage_buffer("state2", 4 * len as u64).unwrap();
    let upd_b = ctx.storage_buffer("update", 4 * len as u64).unwrap();
    let d = gpu_update(
        ctx,
        &p,
        &step_b,
        &param_b,
        &grad_b,
        Some(&s1_b),
        Some(&s2_b),
        &upd_b,
        len,
    )
    .unwrap();
    assert!(d.workgroups[1] > 1, "grid {:?}", d.workgroups);
    ctx.run(&[&d]).unwrap();
    let (mut s1, mut s2, mut update) = (vec![0f32; len], vec![0f32; len], vec![0f32; len]);
    cpu_update(&p, &s, &mut param, &grad, &mut s1, &mut s2, &mut update);
    let got: Vec<f32> = ctx.read(&param_b, len).unwrap();
    common::assert_close(
        "adam len 65535·256+7 seed 77 param",
        &got,
        &param,
        1e-6,
        1e-5,
    );
}

/// Long tensors are updated in parallel chunks on the CPU: every kind gives the same bits
/// as updating each element alone (a one-element call never splits).
#[test]
fn cpu_parallel_update_matches_element_by_element() {
    let len = 100_003;
    for (ki, &kind) in KINDS.iter().enumerate() {
        let p = OptimizerParams {
            weight_decay: 0.05,
            ..OptimizerParams::new(kind)
        };
        let seed = 9000 + ki as u64;
        let s = StepScalars { lr: 0.05, t: 3 };
        let param = common::random_vec(seed, len, -1.0, 1.0);
        let grad = common::random_vec(seed + 1, len, -1.0, 1.0);
        let state = common::random_vec(seed + 2, len, 0.0, 1.0);
        let slots = kind.state_slots();
        let state_of = |n: usize| if slots > n { state.clone() } else { Vec::new() };
        let (mut x, mut s1, mut s2, mut u) =
            (param.clone(), state_of(0), state_of(1), vec![0f32; len]);
        cpu_update(&p, &s, &mut x, &grad, &mut s1, &mut s2, &mut u);
        for i in (0..len).step_by(997).chain([len - 1]) {
            let mut one = [param[i]];
            let mut a: Vec<f32> = state_of(0).get(i).map(|&v| vec![v]).unwrap_or_default();
            let mut b: Vec<f32> = state_of(1).get(i).map(|&v| vec![v]).unwrap_or_default();
            let mut du = [0f32];
            cpu_update(&p, &s, &mut one, &grad[i..=i], &mut a, &mut b, &mut du);
            let what = format!("{} element {i}", kind.name());
            assert_eq!(one[0].to_bits(), x[i].to_bits(), "{what}: param");
            assert_eq!(du[0].to_bits(), u[i].to_bits(), "{what}: update");
            if slots >= 1 {
                assert_eq!(a[0].to_bits(), s1[i].to_bits(), "{what}: state1");
            }
            if slots >= 2 {
                assert_eq!(b[0].to_bits(), s2[i].to_bits(), "{what}: state2");
            }
        }
    }
}

/// One tensor's buffers for the multi test.
struct TensorBufs {
    param: wgpu::Buffer,
    grad: wgpu::Buffer,
    s1: wgpu::Buffer,
    s2: wgpu::Buffer,
    update: wgpu::Buffer,
    len: usize,
}

fn tensor_bufs(ctx: &gradscope::gpu::GpuContext, seed: u64, len: usize) -> TensorBufs {
    let bytes = 4 * len as u64;
    TensorBufs {
        param: ctx
            .upload("param", &common::random_vec(seed, len, -1.0, 1.0))
            .unwrap(),
        grad: ctx.storage_buffer("grad", bytes).unwrap(),
        s1: ctx.storage_buffer("state1", bytes).unwrap(),
        s2: ctx.storage_buffer("state2", bytes).unwrap(),
        update: ctx.storage_buffer("update", bytes).unwrap(),
        len,
    }
}

fn as_tensor(t: &TensorBufs, slots: usize) -> OptimizerTensor<'_> {
    OptimizerTensor {
        param: &t.param,
        grad: &t.grad,
        state1: (slots >= 1).then_some(&t.s1),
        state2: (slots >= 2).then_some(&t.s2),
        update: &t.update,
        len: t.len,
    }
}

/// The grouped dispatch the executor uses for runs of optimizer ops gives, for every kind,
/// the same bits as one dispatch per tensor: a full group of eight and a partial group,
/// with lengths around the 256-wide workgroup, over three steps.
#[test]
fn multi_tensor_dispatch_matches_one_dispatch_per_tensor_bit_for_bit() {
    let Some(ctx) = common::gpu() else { return };
    if multi_capacity(ctx) == 0 {
        assert!(
            std::env::var("REQUIRE_GPU").is_err(),
            "this adapter cannot bind the multi-tensor optimizer's 40 storage buffers"
        );
        return;
    }
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    for (ki, &kind) in KINDS.iter().enumerate() {
        let p = OptimizerParams {
            weight_decay: 0.01,
            ..OptimizerParams::new(kind)
        };
        let slots = kind.state_slots();
        for lens in [
            vec![1usize, 255, 256, 257, 3000, 7, 512, 1],
            vec![100, 1, 2049],
            // A group of one: the executor groups every optimizer op where it can.
            vec![257],
        ] {
            let what = format!("{} lens {lens:?}", kind.name());
            let seed = |j: usize| 7000 * ki as u64 + 13 * j as u64 + lens.len() as u64;
            let single: Vec<TensorBufs> = lens
                .iter()
                .enumerate()
                .map(|(j, &l)| tensor_bufs(ctx, seed(j), l))
                .collect();
            let multi: Vec<TensorBufs> = lens
                .iter()
                .enumerate()
                .map(|(j, &l)| tensor_bufs(ctx, seed(j), l))
                .collect();
            let first = StepScalars { lr: 0.05, t: 1 };
            let step_b = ctx.uniform("step", &StepUniform::new(&first, &p)).unwrap();
            let singles: Vec<_> = single
                .iter()
                .map(|t| {
                    let t = as_tensor(t, slots);
                    gpu_update(
                        ctx, &p, &step_b, t.param, t.grad, t.state1, t.state2, t.update, t.len,
                    )
                    .unwrap()
                })
                .collect();
            let tensors: Vec<_> = multi.iter().map(|t| as_tensor(t, slots)).collect();
            let grouped = gpu_update_multi(ctx, &p, &step_b, &tensors).unwrap();
            for t in 1..=3u32 {
                let s = StepScalars {
                    lr: 0.05 / t as f32,
                    t,
                };
                ctx.write(&step_b, bytemuck::bytes_of(&StepUniform::new(&s, &p)));
                for (j, (a, b)) in single.iter().zip(&multi).enumerate() {
                    let grad = common::random_vec(seed(j) * 31 + t as u64, a.len, -1.0, 1.0);
                    ctx.write(&a.grad, bytemuck::cast_slice(&grad));
                    ctx.write(&b.grad, bytemuck::cast_slice(&grad));
                }
                ctx.run(&singles.iter().collect::<Vec<_>>()).unwrap();
                ctx.run(&[&grouped]).unwrap();
                for (j, (a, b)) in single.iter().zip(&multi).enumerate() {
                    let mut pairs = vec![
                        ("param", &a.param, &b.param),
                        ("update", &a.update, &b.update),
                    ];
                    if slots >= 1 {
                        pairs.push(("state1", &a.s1, &b.s1));
                    }
                    if slots >= 2 {
                        pairs.push(("state2", &a.s2, &b.s2));
                    }
                    for (name, x, y) in pairs {
                        assert_eq!(
                            bits(ctx.read(x, a.len).unwrap()),
                            bits(ctx.read(y, a.len).unwrap()),
                            "{what} step {t} tensor {j} {name}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn multi_tensor_launcher_refuses_bad_groups() {
    let Some(ctx) = common::gpu() else { return };
    if multi_capacity(ctx) == 0 {
        return;
    }
    let p = OptimizerParams::new(OptimizerKind::Momentum);
    let step_b = ctx
        .uniform(
            "step",
            &StepUniform::new(&StepScalars { lr: 0.1, t: 1 }, &p),
        )
        .unwrap();
    let err = gpu_update_multi(ctx, &p, &step_b, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("takes 1 to 8 tensors"), "{err}");
    let bufs: Vec<TensorBufs> = (0..9).map(|j| tensor_bufs(ctx, j, 16)).collect();
    let nine: Vec<_> = bufs.iter().map(|t| as_tensor(t, 1)).collect();
    let err = gpu_update_multi(ctx, &p, &step_b, &nine)
        .unwrap_err()
        .to_string();
    assert!(err.contains("got 9"), "{err}");
    // Momentum keeps a state tensor: leaving it out is refused, naming it.
    let missing = [as_tensor(&bufs[0], 0)];
    let err = gpu_update_multi(ctx, &p, &step_b, &missing)
        .unwrap_err()
        .to_string();
    assert!(err.contains("state1 is missing"), "{err}");
    // The same parameter twice would be updated twice in one dispatch.
    let twice = [as_tensor(&bufs[0], 1), as_tensor(&bufs[0], 1)];
    let err = gpu_update_multi(ctx, &p, &step_b, &twice)
        .unwrap_err()
        .to_string();
    assert!(err.contains("same buffer"), "{err}");
}
