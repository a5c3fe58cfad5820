//! Interchange with PyTorch: a state_dict saved by PyTorch (tests/golden/torch_roundtrip.py,
//! safetensors.torch.save_file) loads through `--init-from`'s checker, gives PyTorch's loss
//! on PyTorch's batch, trains three SGD-with-momentum steps to PyTorch's parameters, and is
//! exported again under exactly PyTorch's names and shapes. The script checks the exported
//! file back in PyTorch (load_state_dict(strict=True)); set GRADSCOPE_ROUNDTRIP_OUT to keep
//! the file for it.

mod common;

use gradscope::checkpoint::{self, Checkpointer, Progress};
use gradscope::config::TrainConfig;
use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::{Executor, StatsLevel};
use gradscope::gpu::executor::GpuExecutor;
use gradscope::init::Init;
use gradscope::model::{LossKind, ModelSpec};
use gradscope::ops::{Activation, OptimizerKind, OptimizerParams, StepScalars};
use gradscope::plan::{Plan, compile};
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(include_str!("golden/torch_roundtrip.json")).unwrap()
}

fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("not a number array: {other}"),
    }
}

fn plan() -> Plan {
    let hidden = [(16, Activation::Relu), (8, Activation::Tanh)];
    let model = ModelSpec::mlp_layers(12, &hidden, 3, Init::Zeros, LossKind::Xent).unwrap();
    let mut opt = OptimizerParams::new(OptimizerKind::Momentum);
    opt.momentum = 0.9;
    compile(&model, 6, opt).unwrap()
}

fn round_trip(exec: &mut dyn Executor, what: &str) {
    let g = golden();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/torch_roundtrip.safetensors");
    checkpoint::init_from(exec, &path).unwrap();
    let labels: Vec<u32> = g["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    exec.load_batch(&flat(&g["inputs"]), &labels).unwrap();
    let (loss_sum, _) = exec.evaluate(6).unwrap();
    let want = g["loss"].as_f64().unwrap();
    // f32 on both sides, summed in different orders.
    assert!(
        ((loss_sum / 6.0) - want).abs() < 1e-5,
        "{what}: loss {} vs PyTorch's {want}",
        loss_sum / 6.0
    );
    for t in 1..=3u32 {
        exec.train_step(t as u64, StepScalars { lr: 0.1, t }, StatsLevel::None)
            .unwrap();
    }
    let losses: Vec<f32> = exec
        .finished(true)
        .unwrap()
        .iter()
        .map(|r| r.loss)
        .collect();
    common::assert_close(
        &format!("{what} step losses"),
        &losses,
        &flat(&g["sgd"]["losses"]),
        1e-5,
        1e-5,
    );
    for slot in exec.plan().params.clone() {
        let want = flat(&g["params_after"][&slot.name]);
        common::assert_close(
            &format!("{what} {} after 3 steps", slot.name),
            &exec.read(slot.value).unwrap(),
            &want,
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn pytorch_weights_load_train_and_export_under_pytorch_names() {
    let mut exec = CpuExecutor::<f32>::new(plan());
    round_trip(&mut exec, "cpu");
    // Export: the parameters alone, under PyTorch's state_dict names and shapes.
    let run = tempfile::tempdir().unwrap();
    let ck = Checkpointer::new(run.path(), 0, 1).unwrap();
    ck.save(
        &mut exec,
        &TrainConfig::default(),
        &Progress {
            step: 3,
            ..Progress::start()
        },
    )
    .unwrap();
    let out = match std::env::var("GRADSCOPE_ROUNDTRIP_OUT") {
        Ok(p) => std::path::PathBuf::from(p),
        Err(_) => run.path().join("model.safetensors"),
    };
    checkpoint::export(run.path(), Some(&out)).unwrap();
    let file = checkpoint::format::read(&out).unwrap();
    let g = golden();
    let mut names: Vec<&str> = file.tensors.iter().map(|t| t.name.as_str()).collect();
    let mut want: Vec<&str> = g["state_dict_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    names.sort();
    want.sort();
    assert_eq!(names, want);
    for t in &file.tensors {
        let expect = flat(&g["params_after"][&t.name]);
        assert_eq!(
            t.shape.iter().product::<usize>(),
            expect.len(),
            "{}",
            t.name
        );
        common::assert_close(
            &format!("exported {}", t.name),
            &t.to_f32().unwrap(),
            &expect,
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn pytorch_weights_on_the_gpu() {
    let Some(ctx) = common::gpu_arc() else { return };
    let mut exec = GpuExecutor::new(ctx, plan()).unwrap();
    round_trip(&mut exec, "gpu");
}
