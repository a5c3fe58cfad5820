//! Clipping and the skip guard inside whole steps: the plan orders backward → statistics →
//! clip → optimizer, the GPU executor matches the CPU executor, the clipped gradients have
//! the logged norm, and a step with non-finite gradients under `skip` changes no parameter
//! and no optimizer state on either executor.

mod common;

use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::{Executor, StatsLevel};
use gradscope::gpu::executor::GpuExecutor;
use gradscope::init::Init;
use gradscope::model::{LossKind, ModelSpec};
use gradscope::ops::{Activation, OptimizerKind, OptimizerParams, StepScalars};
use gradscope::plan::{Guard, Op, Plan, StepOptions, compile_with};
use gradscope::train::initialize;

fn plan(options: StepOptions, kind: OptimizerKind) -> Plan {
    let hidden = [(17, Activation::Tanh), (9, Activation::Relu)];
    let model = ModelSpec::mlp_layers(13, &hidden, 5, Init::XavierNormal, LossKind::Xent).unwrap();
    let mut opt = OptimizerParams::new(kind);
    opt.weight_decay = 1e-3;
    compile_with(&model, 7, opt, options).unwrap()
}

fn global_norm(exec: &mut dyn Executor) -> f64 {
    let params = exec.plan().params.clone();
    params
        .iter()
        .map(|p| {
            exec.read(p.grad)
                .unwrap()
                .iter()
                .map(|&g| (g as f64) * (g as f64))
                .sum::<f64>()
        })
        .sum::<f64>()
        .sqrt()
}

#[test]
fn plan_orders_clip_between_stats_and_optimizer() {
    let p = plan(
        StepOptions {
            clip_norm: Some(1.0),
            ..Default::default()
        },
        OptimizerKind::Adam,
    );
    let clip = p.ops.iter().position(|o| matches!(o, Op::ClipNorm { .. }));
    let first_opt = p.ops.iter().position(|o| matches!(o, Op::Optimizer { .. }));
    let last_grad_stats = p
        .ops
        .iter()
        .rposition(|o| matches!(o, Op::Stats { job } if p.grad_jobs().contains(job)));
    let (clip, first_opt, last) = (clip.unwrap(), first_opt.unwrap(), last_grad_stats.unwrap());
    assert!(
        last < clip && clip < first_opt,
        "{last} < {clip} < {first_opt}"
    );
    assert!(p.backward_end <= last);
    // Both kinds at once are refused, so is a non-positive bound.
    let model = ModelSpec::mlp_layers(
        3,
        &[(4, Activation::Relu)],
        2,
        Init::HeNormal,
        LossKind::Xent,
    )
    .unwrap();
    let opt = OptimizerParams::new(OptimizerKind::Sgd);
    let both = StepOptions {
        clip_norm: Some(1.0),
        clip_value: Some(1.0),
        ..Default::default()
    };
    assert!(compile_with(&model, 2, opt, both).is_err());
    let neg = StepOptions {
        clip_value: Some(-1.0),
        ..Default::default()
    };
    assert!(compile_with(&model, 2, opt, neg).is_err());
}

fn run(options: StepOptions, kind: OptimizerKind, plant_nan_at: Option<u64>) {
    let Some(ctx) = common::gpu_arc() else { return };
    let p = plan(options, kind);
    let mut cpu = CpuExecutor::<f32>::new(p.clone());
    let mut gpu = GpuExecutor::new(ctx, p.clone()).unwrap();
    initialize(&mut cpu, 5).unwrap();
    initialize(&mut gpu, 5).unwrap();
    let what = format!("{options:?} {}", kind.name());
    for step in 1..=4u64 {
        let mut inputs = common::random_vec(300 + step, p.batch * p.input_features, -3.0, 3.0);
        if plant_nan_at == Some(step) {
            inputs[5] = f32::NAN;
        }
        let labels = common::random_labels(400 + step, p.batch, p.classes as u32);
        let scalars = StepScalars {
            lr: 0.05,
            t: step as u32,
        };
        let level = if step == 3 {
            StatsLevel::None
        } else {
            StatsLevel::Full
        };
        let before: Vec<Vec<f32>> = p
            .params
            .iter()
            .flat_map(|s| std::iter::once(s.value).chain(s.state.iter().copied()))
            .map(|b| cpu.read(b).unwrap())
            .collect();
        for exec in [&mut cpu as &mut dyn Executor, &mut gpu] {
            exec.load_batch(&inputs, &labels).unwrap();
            exec.train_step(step, scalars, level).unwrap();
        }
        let (c, g) = (cpu.finished(true).unwrap(), gpu.finished(true).unwrap());
        let w = format!("{what} step {step}");
        let (cd, gd) = (c[0].clip, g[0].clip);
        if options.clip_norm.is_some() || options.guard != Guard::Off {
            let (cd, gd) = (cd.expect("cpu clip report"), gd.expect("gpu clip report"));
            assert_eq!(cd.skipped, gd.skipped, "{w}: skipped");
            let want_skip = match options.guard {
                Guard::Halt => plant_nan_at.is_some_and(|s| step >= s),
                _ => plant_nan_at == Some(step),
            };
            assert_eq!(cd.skipped, want_skip, "{w}: skipped");
            common::assert_close(
                &format!("{w}: clip [norm, scale, after]"),
                &[gd.norm, gd.scale, gd.norm_after],
                &[cd.norm, cd.scale, cd.norm_after],
                1e-6,
                1e-4,
            );
            if let Some(max) = options.clip_norm.filter(|_| !cd.skipped) {
                assert!(cd.norm_after <= max * 1.0001, "{w}: {cd:?}");
                let n = global_norm(&mut cpu);
                assert!(
                    (n - cd.norm_after as f64).abs() <= 1e-4 * n,
                    "{w}: clipped gradients have norm {n}, logged {}",
                    cd.norm_after
                );
            }
        } else {
            assert!(cd.is_none() && gd.is_none());
        }
        if let Some(v) = options.clip_value.filter(|_| plant_nan_at.is_none()) {
            for s in &p.params {
                assert!(
                    cpu.read(s.grad).unwrap().iter().all(|g| g.abs() <= v),
                    "{w}"
                );
            }
        }
        let mut k = 0;
        for slot in &p.params {
            let ws = format!("{w} {}", slot.name);
            for (name, b) in std::iter::once(("value", slot.value))
                .chain(slot.state.iter().map(|&s| ("state", s)))
            {
                let (gv, cv) = (gpu.read(b).unwrap(), cpu.read(b).unwrap());
                common::assert_close(&format!("{ws} {name}"), &gv, &cv, 1e-5, 1e-4);
                if cd.is_some_and(|d| d.skipped) {
                    assert_eq!(cv, before[k], "{ws} {name}: changed on a skipped step");
                }
                k += 1;
            }
            if !cd.is_some_and(|d| d.skipped) {
                common::assert_close(
                    &format!("{ws} grad"),
                    &gpu.read(slot.grad).unwrap(),
                    &cpu.read(slot.grad).unwrap(),
                    1e-5,
                    1e-4,
                );
            }
        }
    }
}

#[test]
fn clip_norm_adam() {
    run(
        StepOptions {
            clip_norm: Some(0.05),
            ..Default::default()
        },
        OptimizerKind::Adam,
        None,
    );
}

#[test]
fn clip_norm_large_bound_is_identity_momentum() {
    run(
        StepOptions {
            clip_norm: Some(1e6),
            ..Default::default()
        },
        OptimizerKind::Momentum,
        None,
    );
}

#[test]
fn clip_value_sgd() {
    run(
        StepOptions {
            clip_value: Some(0.01),
            ..Default::default()
        },
        OptimizerKind::Sgd,
        None,
    );
}

#[test]
fn skip_nonfinite_keeps_adam_state() {
    run(
        StepOptions {
            guard: Guard::Skip,
            ..Default::default()
        },
        OptimizerKind::Adam,
        Some(2),
    );
    run(
        StepOptions {
            clip_norm: Some(0.5),
            guard: Guard::Skip,
            ..Default::default()
        },
        OptimizerKind::Adamw,
        Some(3),
    );
}

/// Halt latches: from the bad step on, no update runs, so the parameters stay those of the
/// last good step however far the device runs ahead of the host.
#[test]
fn halt_latches_on_both_executors() {
    run(
        StepOptions {
            guard: Guard::Halt,
            ..Default::default()
        },
        OptimizerKind::Adam,
        Some(2),
    );
}
