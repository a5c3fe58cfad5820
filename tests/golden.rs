//! Golden values from an independent framework: tests/golden/make_golden.py computes, with
//! JAX in float64, the loss, logits, every gradient and its norm for small MLPs, and the
//! parameters after three steps of every optimizer with torch.optim's update rules. Here
//! the same networks run on the CPU executor (f64 and f32) and on the GPU executor (f32).

mod common;

use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::{Executor, StatsLevel};
use gradscope::gpu::executor::GpuExecutor;
use gradscope::init::Init;
use gradscope::model::{LossKind, ModelSpec};
use gradscope::ops::{Activation, OptimizerKind, OptimizerParams, StepScalars};
use gradscope::plan::{Plan, TensorKind, compile};
use serde_json::Value;

fn golden() -> Value {
    let text = include_str!("golden/mlp_golden.json");
    serde_json::from_str(text).expect("golden JSON parses")
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number array: {other}"),
    }
}

struct Case {
    name: String,
    plan: Plan,
    inputs: Vec<f64>,
    labels: Vec<u32>,
    params: Vec<(String, Vec<f64>)>,
    case: Value,
}

fn case_plan(case: &Value, optimizer: OptimizerParams) -> Case {
    let name = case["name"].as_str().unwrap().to_string();
    let sizes: Vec<usize> = case["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let acts: Vec<Activation> = case["activations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| Activation::parse(a.as_str().unwrap()).unwrap())
        .collect();
    let hidden: Vec<(usize, Activation)> = sizes[1..sizes.len() - 1]
        .iter()
        .copied()
        .zip(acts)
        .collect();
    let loss = LossKind::parse(case["loss"].as_str().unwrap()).unwrap();
    let model = ModelSpec::mlp_layers(sizes[0], &hidden, *sizes.last().unwrap(), Init::Zeros, loss)
        .unwrap();
    let batch = case["batch"].as_u64().unwrap() as usize;
    let plan = compile(&model, batch, optimizer).unwrap();
    let params = plan
        .params
        .iter()
        .map(|p| (p.name.clone(), flat(&case["params"][&p.name])))
        .collect();
    Case {
        name,
        plan,
        inputs: flat(&case["inputs"]),
        labels: case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect(),
        params,
        case: case.clone(),
    }
}

fn load_f64(c: &Case) -> CpuExecutor<f64> {
    let mut exec = CpuExecutor::<f64>::new(c.plan.clone());
    let inputs32: Vec<f32> = c.inputs.iter().map(|&v| v as f32).collect();
    exec.load_batch(&inputs32, &c.labels).unwrap();
    // Exact f64 inputs and parameters, not their f32 roundings.
    exec.set_tensor(c.plan.input, &c.inputs).unwrap();
    for (slot, (_, values)) in c.plan.params.iter().zip(&c.params) {
        exec.set_tensor(slot.value, values).unwrap();
    }
    exec
}

fn load_f32(exec: &mut dyn Executor, c: &Case) {
    let inputs32: Vec<f32> = c.inputs.iter().map(|&v| v as f32).collect();
    exec.load_batch(&inputs32, &c.labels).unwrap();
    for (slot, (_, values)) in c.plan.params.iter().zip(&c.params) {
        let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        exec.write(slot.value, &v).unwrap();
    }
}

fn optimizer_of(entry: &Value) -> (OptimizerParams, f32) {
    let kind = OptimizerKind::parse(entry["kind"].as_str().unwrap()).unwrap();
    let mut p = OptimizerParams::new(kind);
    p.momentum = entry["momentum"].as_f64().unwrap() as f32;
    p.beta1 = entry["beta1"].as_f64().unwrap() as f32;
    p.beta2 = entry["beta2"].as_f64().unwrap() as f32;
    p.eps = entry["eps"].as_f64().unwrap() as f32;
    p.weight_decay = entry["weight_decay"].as_f64().unwrap() as f32;
    (p, entry["lr"].as_f64().unwrap() as f32)
}

#[test]
fn cpu_f64_matches_jax_loss_and_every_gradient() {
    for case in golden()["cases"].as_array().unwrap() {
        let c = case_plan(case, OptimizerParams::new(OptimizerKind::Sgd));
        let mut exec = load_f64(&c);
        let loss = exec.compute_gradients().unwrap();
        let want = c.case["loss_value"].as_f64().unwrap();
        // f64 throughout; the only differences are summation order and libm (erf, exp).
        assert!(
            (loss - want).abs() <= 1e-12 + 1e-10 * want.abs(),
            "{}: loss {loss} vs {want}",
            c.name
        );
        for slot in &c.plan.params {
            let got = exec.tensor(slot.grad).to_vec();
            let want = flat(&c.case["grads"][&slot.name]);
            // Tight, but not 1e-12: activation constants (LeakyReLU's slope, ELU's alpha)
            // are f32 parameters, 0.01f32 differing from 0.01 by 2e-8 relative.
            common::assert_close_f64(
                &format!("{} grad {}", c.name, slot.name),
                &got,
                &want,
                1e-10,
                1e-7,
            );
        }
    }
}

#[test]
fn cpu_f32_statistics_give_jax_gradient_norms() {
    for case in golden()["cases"].as_array().unwrap() {
        let c = case_plan(case, OptimizerParams::new(OptimizerKind::Sgd));
        let mut exec = CpuExecutor::<f32>::new(c.plan.clone());
        load_f32(&mut exec, &c);
        exec.train_step(1, StepScalars { lr: 0.0, t: 1 }, StatsLevel::Full)
            .unwrap();
        let report = exec.finished(true).unwrap().pop().unwrap();
        for (job, raw) in c.plan.stats_jobs.iter().zip(&report.records) {
            let param = match job.kind {
                TensorKind::WeightGrad => c.plan.layers[job.layer].weight,
                TensorKind::BiasGrad => c.plan.layers[job.layer].bias.unwrap(),
                _ => continue,
            };
            let name = &c.plan.params[param].name;
            let want = c.case["grad_norms"][name].as_f64().unwrap();
            let got = raw.summary().norm;
            // f32 forward and backward: a few ulps of relative error per layer.
            assert!(
                (got - want).abs() <= 1e-7 + 1e-4 * want,
                "{}: norm of {name} {got} vs {want}",
                c.name
            );
        }
    }
}

fn check_optimizers(exec_for: &mut dyn FnMut(&Case) -> Box<dyn Executor>, tol: f64, label: &str) {
    for case in golden()["cases"].as_array().unwrap() {
        let Some(entries) = case.get("optimizers").and_then(|o| o.as_array()) else {
            continue;
        };
        for entry in entries {
            let (opt, lr) = optimizer_of(entry);
            let c = case_plan(case, opt);
            let mut exec = exec_for(&c);
            let steps = entry["steps"].as_u64().unwrap();
            let losses = flat(&entry["losses"]);
            for t in 1..=steps {
                exec.train_step(t, StepScalars { lr, t: t as u32 }, StatsLevel::None)
                    .unwrap();
            }
            let reports = exec.finished(true).unwrap();
            let got_losses: Vec<f64> = reports.iter().map(|r| r.loss as f64).collect();
            let what = format!("{label} {} {}", c.name, entry["kind"]);
            common::assert_close_f64(&format!("{what} losses"), &got_losses, &losses, tol, tol);
            for slot in &c.plan.params {
                let got: Vec<f64> = exec
                    .read(slot.value)
                    .unwrap()
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let want = flat(&entry["params_after"][&slot.name]);
                common::assert_close_f64(&format!("{what} {}", slot.name), &got, &want, tol, tol);
            }
        }
    }
}

#[test]
fn cpu_optimizers_match_jax_after_three_steps() {
    // f64 executor; the hyper-parameters are f32 (as on the GPU), so lr and the bias
    // corrections carry f32 rounding (~6e-8 relative): 1e-6 bounds it.
    check_optimizers(
        &mut |c| {
            let exec = load_f64(c);
            Box::new(exec)
        },
        1e-6,
        "cpu f64",
    );
}

#[test]
fn gpu_optimizers_and_gradients_match_jax() {
    let Some(ctx) = common::gpu_arc() else { return };
    for case in golden()["cases"].as_array().unwrap() {
        let c = case_plan(case, OptimizerParams::new(OptimizerKind::Sgd));
        let mut exec = GpuExecutor::new(ctx.clone(), c.plan.clone()).unwrap();
        load_f32(&mut exec, &c);
        exec.train_step(1, StepScalars { lr: 0.0, t: 1 }, StatsLevel::Full)
            .unwrap();
        let report = exec.finished(true).unwrap().pop().unwrap();
        let want = c.case["loss_value"].as_f64().unwrap();
        // f32 on the device: relative error of a few ulps per layer.
        assert!(
            (report.loss as f64 - want).abs() <= 1e-5 + 1e-5 * want.abs(),
            "{}: gpu loss {} vs {want}",
            c.name,
            report.loss
        );
        for slot in &c.plan.params {
            let got: Vec<f64> = exec
                .read(slot.grad)
                .unwrap()
                .iter()
                .map(|&v| v as f64)
                .collect();
            let want = flat(&c.case["grads"][&slot.name]);
            common::assert_close_f64(
                &format!("gpu {} grad {}", c.name, slot.name),
                &got,
                &want,
                1e-6,
                1e-4,
            );
        }
    }
    // f32 through three steps of forward, backward and update: the f32 rounding of each
    // step compounds, and Adam's division by √v amplifies it for near-zero gradients.
    check_optimizers(
        &mut |c| {
            let mut exec = GpuExecutor::new(ctx.clone(), c.plan.clone()).unwrap();
            load_f32(&mut exec, c);
            Box::new(exec)
        },
        2e-5,
        "gpu",
    );
}
