//! Golden values from an independent framework for a whole convolutional network:
//! tests/golden/make_convnet_golden.py computes, with JAX in float64 and PyTorch's
//! semantics, the loss and every gradient of a small conv net (a biased stem conv,
//! BatchNorm, a residual block with a strided 1×1 projection shortcut, global average
//! pooling, a dense layer, softmax cross-entropy), then the parameters and every
//! BatchNorm's running statistics after three SGD steps. Here the same network, built with
//! the model builder, runs on the CPU executor in f64 and on the GPU executor in f32.

mod common;

use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::{Executor, StatsLevel};
use gradscope::gpu::executor::GpuExecutor;
use gradscope::init::Init;
use gradscope::model::builder::{Builder, gain};
use gradscope::model::{LossKind, ModelSpec};
use gradscope::ops::{Activation, OptimizerKind, OptimizerParams, StepScalars};
use gradscope::plan::{Plan, compile};
use serde_json::Value;

const RELU: Activation = Activation::Relu;

fn golden() -> Value {
    let text = include_str!("golden/convnet_golden.json");
    serde_json::from_str(text).expect("golden JSON parses")
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number array: {other}"),
    }
}

/// The script's network, layer for layer; the builder names the parameters as the script
/// does (PyTorch state-dict style).
fn convnet(input: &[usize], classes: usize) -> ModelSpec {
    let (mut b, x) = Builder::new("golden_convnet", input, Init::HeNormal);
    let x = b.conv("stem", x, 4, 3, 1, 1, 1, true, gain(RELU)).unwrap();
    let x = b.batchnorm("stem_bn", x);
    let x = b.act("stem_act", x, RELU);
    let y = b
        .conv("block.conv1", x, 6, 3, 2, 1, 1, false, gain(RELU))
        .unwrap();
    let y = b.batchnorm("block.bn1", y);
    let y = b.act("block.act1", y, RELU);
    let y = b.conv("block.conv2", y, 6, 3, 1, 1, 1, false, 1.0).unwrap();
    let y = b.batchnorm("block.bn2", y);
    let s = b
        .conv("block.shortcut", x, 6, 1, 2, 0, 1, false, 1.0)
        .unwrap();
    let s = b.batchnorm("block.shortcut_bn", s);
    let y = b.add("block.add", y, s).unwrap();
    let y = b.act("block.act2", y, RELU);
    let g = b.global_avg_pool("gap", y).unwrap();
    let logits = b.linear("fc", g, classes, 1.0);
    b.finish(logits, LossKind::Xent).unwrap()
}

struct Case {
    plan: Plan,
    inputs: Vec<f64>,
    labels: Vec<u32>,
    g: Value,
}

fn case() -> Case {
    let g = golden();
    let input: Vec<usize> = g["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let classes = g["classes"].as_u64().unwrap() as usize;
    let batch = g["batch"].as_u64().unwrap() as usize;
    let plan = compile(
        &convnet(&input, classes),
        batch,
        OptimizerParams::new(OptimizerKind::Sgd),
    )
    .unwrap();
    // Every parameter of the plan has a golden value and vice versa: a renamed or missing
    // layer fails here rather than being skipped.
    let mut ours: Vec<&str> = plan.params.iter().map(|p| p.name.as_str()).collect();
    let mut theirs: Vec<&str> = g["params"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "parameter names");
    assert_eq!(
        plan.running.len(),
        8,
        "running statistics of four BatchNorms"
    );
    Case {
        inputs: flat(&g["inputs"]),
        labels: g["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect(),
        plan,
        g,
    }
}

fn param(c: &Case, name: &str) -> Vec<f64> {
    let v = flat(&c.g["params"][name]);
    let slot = c.plan.params.iter().find(|p| p.name == name).unwrap();
    assert_eq!(v.len(), slot.numel, "golden size of {name}");
    v
}

fn load_f64(c: &Case) -> CpuExecutor<f64> {
    let mut exec = CpuExecutor::<f64>::new(c.plan.clone());
    let inputs32: Vec<f32> = c.inputs.iter().map(|&v| v as f32).collect();
    exec.load_batch(&inputs32, &c.labels).unwrap();
    // The script's inputs and parameters are f32-representable, so these are exact.
    exec.set_tensor(c.plan.input, &c.inputs).unwrap();
    for slot in &c.plan.params {
        exec.set_tensor(slot.value, &param(c, &slot.name)).unwrap();
    }
    // What `initialize` would do for the running statistics: mean 0, variance 1.
    for (name, buf, init) in &c.plan.running {
        let n = exec.tensor(*buf).len();
        assert_eq!(
            *init,
            if name.ends_with("running_var") {
                1.0
            } else {
                0.0
            }
        );
        exec.set_tensor(*buf, &vec![*init as f64; n]).unwrap();
    }
    exec
}

fn load_f32(exec: &mut dyn Executor, c: &Case) {
    let inputs32: Vec<f32> = c.inputs.iter().map(|&v| v as f32).collect();
    exec.load_batch(&inputs32, &c.labels).unwrap();
    for slot in &c.plan.params {
        let v: Vec<f32> = param(c, &slot.name).iter().map(|&x| x as f32).collect();
        exec.write(slot.value, &v).unwrap();
    }
    for (_, buf, init) in &c.plan.running {
        let n = exec.read(*buf).unwrap().len();
        exec.write(*buf, &vec![*init; n]).unwrap();
    }
}

fn read64(exec: &mut dyn Executor, buf: gradscope::plan::BufId) -> Vec<f64> {
    exec.read(buf).unwrap().iter().map(|&v| v as f64).collect()
}

/// Three SGD steps on the same batch, then the losses, parameters and running statistics
/// against the script's, within `tol` (absolute and relative).
fn check_three_steps(exec: &mut dyn Executor, c: &Case, tol: f64, label: &str) {
    let sgd = &c.g["sgd"];
    let lr = sgd["lr"].as_f64().unwrap() as f32;
    let steps = sgd["steps"].as_u64().unwrap();
    for t in 1..=steps {
        exec.train_step(t, StepScalars { lr, t: t as u32 }, StatsLevel::None)
            .unwrap();
    }
    let reports = exec.finished(true).unwrap();
    let losses: Vec<f64> = reports.iter().map(|r| r.loss as f64).collect();
    common::assert_close_f64(
        &format!("{label} losses"),
        &losses,
        &flat(&sgd["losses"]),
        tol,
        tol,
    );
    for slot in &c.plan.params {
        let want = flat(&sgd["params_after"][&slot.name]);
        let got = read64(exec, slot.value);
        common::assert_close_f64(&format!("{label} {}", slot.name), &got, &want, tol, tol);
    }
    for (name, buf, _) in &c.plan.running {
        let want = flat(&sgd["running_after"][name]);
        let got = read64(exec, *buf);
        common::assert_close_f64(&format!("{label} {name}"), &got, &want, tol, tol);
    }
}

#[test]
fn cpu_f64_matches_jax_loss_and_every_gradient() {
    let c = case();
    let mut exec = load_f64(&c);
    let loss = exec.compute_gradients().unwrap();
    let want = c.g["loss"].as_f64().unwrap();
    // f64 throughout on both sides; only summation order and libm (exp, log, sqrt) differ,
    // a few ulps per operation through ~15 ops: far below 1e-9.
    assert!(
        (loss - want).abs() <= 1e-12 + 1e-10 * want.abs(),
        "loss {loss} vs {want}"
    );
    for slot in &c.plan.params {
        let got = exec.tensor(slot.grad).to_vec();
        let want = flat(&c.g["grads"][&slot.name]);
        // Through four BatchNorm backwards (each dividing by a batch standard deviation)
        // f64 rounding stays ~1e-13 absolute (measured worst: 3e-13); 1e-9 absolute and
        // relative leaves a wide margin yet catches any wrong formula (a biased/unbiased
        // variance mix-up, a missing shortcut term, are percent-level errors).
        common::assert_close_f64(&format!("grad {}", slot.name), &got, &want, 1e-9, 1e-9);
    }
}

#[test]
fn cpu_f64_three_sgd_steps_match_jax_params_and_running_stats() {
    let c = case();
    let mut exec = load_f64(&c);
    // f64 executor, but the learning rate and BatchNorm's momentum are f32 values:
    // 0.1f32 differs from 0.1 by 1.5e-8 relative, entering each update and running
    // average; 1e-7 bounds that after three steps.
    check_three_steps(&mut exec, &c, 1e-7, "cpu f64");
}

#[test]
fn gpu_matches_jax_gradients_and_three_sgd_steps() {
    let Some(ctx) = common::gpu_arc() else { return };
    let c = case();
    let mut exec = GpuExecutor::new(ctx.clone(), c.plan.clone()).unwrap();
    load_f32(&mut exec, &c);
    // A step with lr 0 computes the gradients and leaves the parameters; it does update
    // the running statistics, so the three steps below start from a fresh executor.
    exec.train_step(1, StepScalars { lr: 0.0, t: 1 }, StatsLevel::None)
        .unwrap();
    let report = exec.finished(true).unwrap().pop().unwrap();
    let want = c.g["loss"].as_f64().unwrap();
    // f32 on the device: ~6e-8 relative rounding per operation, amplified by the
    // BatchNorm normalizations (division by a batch standard deviation) and by sums of up
    // to 144 terms. Measured worst relative gradient error ~2e-5 (a BN gamma's gradient,
    // a sum of cancelling terms); 1e-5 absolute + 1e-4 relative bounds it.
    assert!(
        (report.loss as f64 - want).abs() <= 1e-5 + 1e-5 * want.abs(),
        "gpu loss {} vs {want}",
        report.loss
    );
    for slot in &c.plan.params {
        let got = read64(&mut exec, slot.grad);
        let want = flat(&c.g["grads"][&slot.name]);
        common::assert_close_f64(&format!("gpu grad {}", slot.name), &got, &want, 1e-5, 1e-4);
    }
    let mut exec = GpuExecutor::new(ctx, c.plan.clone()).unwrap();
    load_f32(&mut exec, &c);
    // Three f32 steps: the per-step rounding above compounds through the updates and the
    // running averages (measured worst ~4e-6 relative, a running mean near zero); 1e-4
    // absolute and relative.
    check_three_steps(&mut exec, &c, 1e-4, "gpu");
}
