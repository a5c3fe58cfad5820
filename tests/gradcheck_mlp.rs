//! The whole MLP's backward, as the plan orders it, against central finite differences in
//! f64 on the CPU executor: every parameter element of a small network, for every
//! activation and both losses. (Each kernel's backward is also checked on its own in the
//! kernel tests.)

mod common;

use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::Executor;
use gradscope::init::Init;
use gradscope::model::{LossKind, ModelSpec};
use gradscope::ops::{Activation, OptimizerKind, OptimizerParams};
use gradscope::plan::compile;
use gradscope::train::initialize;

fn check(act: Activation, loss: LossKind) {
    let model = ModelSpec::mlp(5, &[4, 3], 3, act, Init::XavierNormal, loss).unwrap();
    let plan = compile(&model, 4, OptimizerParams::new(OptimizerKind::Sgd)).unwrap();
    let mut exec = CpuExecutor::<f64>::new(plan.clone());
    initialize(&mut exec, 3).unwrap();
    // Non-zero biases, so every path through the network is exercised.
    for slot in plan.params.iter().filter(|p| p.shape.len() == 1) {
        exec.set_tensor(
            slot.value,
            &common::random_vec_f64(7, slot.numel, -0.5, 0.5),
        )
        .unwrap();
    }
    let inputs = common::random_vec(5, 4 * 5, -1.5, 1.5);
    let labels = common::random_labels(6, 4, 3);
    exec.load_batch(&inputs, &labels).unwrap();
    exec.compute_gradients().unwrap();
    // eps 1e-6 in f64: truncation error ~eps² and cancellation ~1e-16/eps both near 1e-10.
    let eps = 1e-6;
    for slot in &plan.params {
        let analytic = exec.tensor(slot.grad).to_vec();
        let base = exec.tensor(slot.value).to_vec();
        let mut numeric = vec![0.0; base.len()];
        for i in 0..base.len() {
            let mut p = base.clone();
            p[i] = base[i] + eps;
            exec.set_tensor(slot.value, &p).unwrap();
            let up = exec.compute_gradients().unwrap();
            p[i] = base[i] - eps;
            exec.set_tensor(slot.value, &p).unwrap();
            let down = exec.compute_gradients().unwrap();
            numeric[i] = (up - down) / (2.0 * eps);
        }
        exec.set_tensor(slot.value, &base).unwrap();
        exec.compute_gradients().unwrap();
        common::assert_close_f64(
            &format!("{} {} {}", act.name(), loss.name(), slot.name),
            &analytic,
            &numeric,
            1e-7,
            1e-5,
        );
    }
}

#[test]
fn every_activation_with_cross_entropy() {
    for name in Activation::ALL_NAMES {
        check(Activation::parse(name).unwrap(), LossKind::Xent);
    }
}

#[test]
fn every_activation_with_mse() {
    for name in Activation::ALL_NAMES {
        check(Activation::parse(name).unwrap(), LossKind::Mse);
    }
}

#[test]
fn a_wrong_gradient_would_be_caught() {
    // The comparison above can fail: a gradient off by 1% is rejected.
    let r = std::panic::catch_unwind(|| {
        common::assert_close_f64("perturbed", &[1.01], &[1.0], 1e-7, 1e-5)
    });
    assert!(r.is_err());
}
