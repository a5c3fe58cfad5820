//! Golden values from PyTorch for the recurrent layers: tests/golden/make_rnn_golden.py runs
//! nn.RNN (tanh, ReLU), nn.LSTM and nn.GRU with batch_first=True in float64 on the same
//! weights and inputs, stacked, with an embedding, a read-out at the last step or at every
//! step, cross-entropy or MSE, and truncated BPTT (the module on chunks with the state
//! detached). It records the logits, the top layer's outputs, the loss, every parameter
//! gradient and ‖dL/dh_t‖ for every step of every layer (from an unrolled copy of the cells
//! that the script checks against the module). Here the same networks run on the CPU
//! executor in f64 and f32 and on the GPU executor.

mod common;

use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::{Executor, StatsLevel, StepReport};
use gradscope::gpu::executor::GpuExecutor;
use gradscope::model::LossKind;
use gradscope::model::recurrent::{Readout, SeqInput, SequenceModel};
use gradscope::ops::{CellKind, OptimizerKind, OptimizerParams, StepScalars};
use gradscope::plan::{BufId, Plan, compile};
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(include_str!("golden/rnn_golden.json")).expect("golden JSON parses")
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number array: {other}"),
    }
}

fn usize_of(case: &Value, key: &str) -> usize {
    case[key].as_u64().unwrap_or_else(|| panic!("{key}")) as usize
}

/// The model and plan of a golden case.
fn plan_of(case: &Value) -> Plan {
    let input = match case.get("tokens") {
        Some(t) => SeqInput::Tokens {
            vocab: t[0].as_u64().unwrap() as usize,
            dim: t[1].as_u64().unwrap() as usize,
        },
        None => SeqInput::Features(usize_of(case, "features")),
    };
    let model = SequenceModel {
        cell: CellKind::parse(case["cell"].as_str().unwrap()).unwrap(),
        input,
        steps: usize_of(case, "steps"),
        hidden: usize_of(case, "hidden"),
        layers: usize_of(case, "layers"),
        outputs: usize_of(case, "classes"),
        readout: if case["readout"] == "every" {
            Readout::EveryStep
        } else {
            Readout::Last
        },
        loss: LossKind::parse(case["loss_fn"].as_str().unwrap()).unwrap(),
        truncate: usize_of(case, "truncate"),
        forget_bias: None,
    }
    .build()
    .unwrap();
    compile(
        &model,
        usize_of(case, "batch"),
        OptimizerParams::new(OptimizerKind::Sgd),
    )
    .unwrap()
}

fn buffer(plan: &Plan, name: &str) -> BufId {
    BufId(
        plan.buffers
            .iter()
            .position(|b| b.name == name)
            .unwrap_or_else(|| panic!("no buffer `{name}`")),
    )
}

fn labels(case: &Value) -> Vec<u32> {
    case["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// One step with learning rate 0 and full statistics: the gradients and the hidden-state
/// gradient norms, parameters unchanged.
fn step(exec: &mut dyn Executor) -> StepReport {
    exec.train_step(1, StepScalars { lr: 0.0, t: 1 }, StatsLevel::Full)
        .unwrap();
    exec.finished(true).unwrap().pop().unwrap()
}

struct Tol {
    atol: f64,
    rtol: f64,
}

fn check_case(case: &Value, exec: &mut dyn Executor, tol: Tol, what: &str) {
    let name = format!("{} ({what})", case["name"].as_str().unwrap());
    let plan = exec.plan().clone();
    for slot in &plan.params {
        let v: Vec<f32> = flat(&case["params"][&slot.name])
            .iter()
            .map(|&x| x as f32)
            .collect();
        assert_eq!(v.len(), slot.numel, "{name}: {}", slot.name);
        exec.write(slot.value, &v).unwrap();
    }
    let inputs: Vec<f32> = flat(&case["inputs"]).iter().map(|&x| x as f32).collect();
    exec.load_batch(&inputs, &labels(case)).unwrap();
    let report = step(exec);
    let close = |label: &str, got: &[f32], want: &[f64]| {
        let want: Vec<f64> = want.to_vec();
        let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
        common::assert_close_f64(&format!("{name}: {label}"), &got, &want, tol.atol, tol.rtol);
    };
    close("loss", &[report.loss], &[case["loss"].as_f64().unwrap()]);
    let logits = exec.read(buffer(&plan, "fc.out")).unwrap();
    close("logits", &logits, &flat(&case["logits"]));
    let top = format!("rnn.l{}.out", usize_of(case, "layers") - 1);
    let top = exec.read(buffer(&plan, &top)).unwrap();
    close("top layer outputs", &top, &flat(&case["top"]));
    for slot in &plan.params {
        let got = exec.read(slot.grad).unwrap();
        close(
            &format!("grad {}", slot.name),
            &got,
            &flat(&case["grads"][&slot.name]),
        );
    }
    // ‖dL/dh_t‖ of every layer at every step, in the plan's layout.
    let norms = case["hidden_grad_norms"].as_array().unwrap();
    assert_eq!(plan.recurrent_layers.len(), norms.len(), "{name}");
    for (layer, want) in plan.recurrent_layers.iter().zip(norms) {
        let got = &report.hidden_norms[layer.offset..layer.offset + layer.steps];
        close(
            &format!("hidden grad norms {}", layer.name),
            got,
            &flat(want),
        );
    }
}

/// f64 on the CPU: only the rounding of the f32 hand-off (reports carry f32) and of
/// float64 sums in another order separate the two.
#[test]
fn cpu_f64_matches_pytorch() {
    for case in golden()["cases"].as_array().unwrap() {
        let mut exec = CpuExecutor::<f64>::new(plan_of(case));
        // Parameters and inputs pass through f32 in `write` and `load_batch`, so write them
        // again in f64 for a full-precision comparison.
        let plan = exec.plan().clone();
        let inputs: Vec<f32> = flat(&case["inputs"]).iter().map(|&x| x as f32).collect();
        exec.load_batch(&inputs, &labels(case)).unwrap();
        exec.set_tensor(plan.input, &flat(&case["inputs"])).unwrap();
        for slot in &plan.params {
            exec.set_tensor(slot.value, &flat(&case["params"][&slot.name]))
                .unwrap();
        }
        let name = case["name"].as_str().unwrap();
        let loss = exec.compute_gradients().unwrap();
        let want = case["loss"].as_f64().unwrap();
        assert!(
            (loss - want).abs() <= 1e-12 * want.abs().max(1.0),
            "{name}: loss {loss} vs {want}"
        );
        for slot in &plan.params {
            common::assert_close_f64(
                &format!("{name}: grad {}", slot.name),
                exec.tensor(slot.grad),
                &flat(&case["grads"][&slot.name]),
                1e-12,
                1e-10,
            );
        }
        common::assert_close_f64(
            &format!("{name}: logits"),
            exec.tensor(buffer(&plan, "fc.out")),
            &flat(&case["logits"]),
            1e-12,
            1e-10,
        );
    }
}

/// f32 on the CPU and the hidden-gradient norms through a whole training step.
#[test]
fn cpu_f32_matches_pytorch() {
    for case in golden()["cases"].as_array().unwrap() {
        let mut exec = CpuExecutor::<f32>::new(plan_of(case));
        // f32 through a few steps of tanh/sigmoid products: about 1e-6 relative.
        check_case(
            case,
            &mut exec,
            Tol {
                atol: 2e-6,
                rtol: 1e-4,
            },
            "cpu f32",
        );
    }
}

#[test]
fn gpu_matches_pytorch() {
    let Some(ctx) = common::gpu_arc() else { return };
    for case in golden()["cases"].as_array().unwrap() {
        let mut exec = GpuExecutor::new(ctx.clone(), plan_of(case)).unwrap();
        // f32 with the GPU's own exp/tanh (a few ulp) and summation order.
        check_case(
            case,
            &mut exec,
            Tol {
                atol: 1e-5,
                rtol: 5e-4,
            },
            "gpu",
        );
    }
}
