//! A whole training step on the GPU executor matches the CPU executor, over several steps:
//! the loss, every gradient, every parameter and optimizer state, and every statistic.

mod common;

use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::{Executor, StatsLevel, StepReport};
use gradscope::gpu::executor::GpuExecutor;
use gradscope::init::Init;
use gradscope::model::{LossKind, ModelSpec};
use gradscope::ops::{Activation, OptimizerKind, OptimizerParams, StepScalars};
use gradscope::plan::{Plan, compile};
use gradscope::train::initialize;

/// Awkward sizes on purpose: primes, a width of 1, a batch that fills no tile.
fn plan(act: Activation, loss: LossKind, kind: OptimizerKind) -> Plan {
    let hidden = [(17, act), (1, act), (9, act)];
    let model = ModelSpec::mlp_layers(13, &hidden, 5, Init::XavierNormal, loss).unwrap();
    let mut opt = OptimizerParams::new(kind);
    opt.weight_decay = 1e-3;
    compile(&model, 7, opt).unwrap()
}

fn compare_reports(what: &str, g: &StepReport, c: &StepReport) {
    assert_eq!(g.step, c.step);
    assert_eq!(g.stats, c.stats);
    common::assert_close(&format!("{what} loss"), &[g.loss], &[c.loss], 1e-5, 1e-5);
    assert_eq!(g.correct, c.correct, "{what}: correct count");
    assert_eq!(g.dead_units, c.dead_units, "{what}: dead units");
    for (j, (gr, cr)) in g.records.iter().zip(&c.records).enumerate() {
        let (gs, cs) = (gr.summary(), cr.summary());
        let w = format!("{what} record {j}");
        assert_eq!(
            (gs.count, gs.nan, gs.inf),
            (cs.count, cs.nan, cs.inf),
            "{w}: counts"
        );
        // Values computed in f32 on both sides through different summation orders: an
        // element lying on a histogram or saturation boundary may fall either side, and a
        // zero may come out as ±1e-9; allow one element of slack in those counts.
        assert!(
            gr.zeros.abs_diff(cr.zeros) <= 1,
            "{w}: zeros {} vs {}",
            gr.zeros,
            cr.zeros
        );
        assert!(gr.saturated.abs_diff(cr.saturated) <= 1, "{w}: saturated");
        let hist_diff: u32 = gr
            .hist
            .iter()
            .zip(&cr.hist)
            .map(|(a, b)| a.abs_diff(*b))
            .sum();
        assert!(
            hist_diff <= 2,
            "{w}: histograms differ by {hist_diff}: {:?} vs {:?}",
            gr.hist,
            cr.hist
        );
        let f = |s: &gradscope::stats::TensorStats| {
            vec![
                s.mean as f32,
                s.std as f32,
                s.norm as f32,
                s.min as f32,
                s.max as f32,
                s.max_abs as f32,
            ]
        };
        common::assert_close(&w, &f(&gs), &f(&cs), 1e-5, 1e-4);
    }
}

fn run_both(act: Activation, loss: LossKind, kind: OptimizerKind) {
    let Some(ctx) = common::gpu_arc() else { return };
    let p = plan(act, loss, kind);
    let mut cpu = CpuExecutor::<f32>::new(p.clone());
    let mut gpu = GpuExecutor::new(ctx, p.clone()).unwrap();
    initialize(&mut cpu, 11).unwrap();
    initialize(&mut gpu, 11).unwrap();
    let what = format!("{} {} {}", act.name(), loss.name(), kind.name());
    for step in 1..=4u64 {
        let inputs = common::random_vec(100 + step, p.batch * p.input_features, -2.0, 2.0);
        let labels = common::random_labels(200 + step, p.batch, p.classes as u32);
        let scalars = StepScalars {
            lr: 0.05,
            t: step as u32,
        };
        // A step with gradient statistics only, and one with none, in the middle.
        let full = match step {
            2 => StatsLevel::Gradients,
            3 => StatsLevel::None,
            _ => StatsLevel::Full,
        };
        let before: Vec<Vec<f32>> = p
            .params
            .iter()
            .map(|s| cpu.read(s.value).unwrap())
            .collect();
        for exec in [&mut cpu as &mut dyn Executor, &mut gpu] {
            exec.load_batch(&inputs, &labels).unwrap();
            exec.train_step(step, scalars, full).unwrap();
        }
        let (c, g) = (cpu.finished(true).unwrap(), gpu.finished(true).unwrap());
        assert_eq!((c.len(), g.len()), (1, 1));
        compare_reports(&format!("{what} step {step}"), &g[0], &c[0]);
        for (slot, before) in p.params.iter().zip(&before) {
            // Each parameter's update buffer holds what this step added to it, and its
            // record (taken after every optimizer op has run) measures that update.
            let w = format!("{what} step {step} {} update", slot.name);
            let after = cpu.read(slot.value).unwrap();
            let step_taken: Vec<f32> = after.iter().zip(before).map(|(a, b)| a - b).collect();
            let update = cpu.read(slot.update).unwrap();
            // The update is p_new − p_old in f32 on both sides: exactly the step taken.
            common::assert_close(&w, &update, &step_taken, 0.0, 0.0);
            // Against the GPU, the values' tolerances (sqrt and division round there).
            common::assert_close(&w, &gpu.read(slot.update).unwrap(), &update, 1e-6, 1e-4);
            if full == StatsLevel::Full {
                let job = p
                    .stats_jobs
                    .iter()
                    .position(|j| j.buffer == slot.update)
                    .expect("every parameter's update has a statistics job");
                let norm = update
                    .iter()
                    .map(|&u| (u as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                for (side, report) in [("cpu", &c[0]), ("gpu", &g[0])] {
                    let got = report.records[job].summary().norm;
                    assert!(
                        (got - norm).abs() <= 1e-4 * norm + 1e-12,
                        "{w}: {side} record norm {got} vs the update's {norm}"
                    );
                }
            }
        }
        for slot in &p.params {
            let w = format!("{what} step {step} {}", slot.name);
            common::assert_close(
                &format!("{w} grad"),
                &gpu.read(slot.grad).unwrap(),
                &cpu.read(slot.grad).unwrap(),
                1e-5,
                1e-4,
            );
            common::assert_close(
                &format!("{w} value"),
                &gpu.read(slot.value).unwrap(),
                &cpu.read(slot.value).unwrap(),
                1e-5,
                1e-4,
            );
            for (i, &s) in slot.state.iter().enumerate() {
                common::assert_close(
                    &format!("{w} state{i}"),
                    &gpu.read(s).unwrap(),
                    &cpu.read(s).unwrap(),
                    1e-6,
                    1e-4,
                );
            }
        }
    }
    // Evaluation agrees as well, with a partially valid batch.
    let (gl, gc) = gpu.evaluate(5).unwrap();
    let (cl, cc) = cpu.evaluate(5).unwrap();
    assert_eq!(gc, cc, "{what}: eval correct");
    assert!(
        (gl - cl).abs() <= 1e-4 * (1.0 + cl.abs()),
        "{what}: eval loss {gl} vs {cl}"
    );
}

#[test]
fn relu_xent_adam() {
    run_both(Activation::Relu, LossKind::Xent, OptimizerKind::Adam);
}

#[test]
fn tanh_xent_nesterov() {
    run_both(Activation::Tanh, LossKind::Xent, OptimizerKind::Nesterov);
}

#[test]
fn sigmoid_mse_sgd() {
    run_both(Activation::Sigmoid, LossKind::Mse, OptimizerKind::Sgd);
}

#[test]
fn gelu_xent_rmsprop() {
    run_both(Activation::Gelu, LossKind::Xent, OptimizerKind::Rmsprop);
}

#[test]
fn elu_xent_adagrad_and_adamw() {
    run_both(
        Activation::Elu { alpha: 1.0 },
        LossKind::Xent,
        OptimizerKind::Adagrad,
    );
    run_both(Activation::Selu, LossKind::Xent, OptimizerKind::Adamw);
}

#[test]
fn leaky_softplus_momentum() {
    run_both(
        Activation::LeakyRelu { slope: 0.01 },
        LossKind::Xent,
        OptimizerKind::Momentum,
    );
    run_both(Activation::Softplus, LossKind::Mse, OptimizerKind::Momentum);
}
