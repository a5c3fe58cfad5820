//! The CPU executor holds every float tensor on a 64-byte boundary (`cpu::aligned`), before
//! and after training steps: the vector kernels' loads and stores then never straddle two
//! cache lines, which BENCHMARKS.md measured as 3–7 % of a resnet-20 step.

use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::{Executor, StatsLevel};
use gradscope::init::Init;
use gradscope::model::{LossKind, zoo};
use gradscope::ops::{OptimizerKind, OptimizerParams, StepScalars};
use gradscope::plan::{BufId, Plan, compile};
use gradscope::tensor::DType;
use gradscope::train::initialize;

/// The float buffers of `plan` whose storage does not start on a 64-byte boundary.
fn misaligned(exec: &CpuExecutor<f32>, plan: &Plan) -> Vec<String> {
    plan.buffers
        .iter()
        .enumerate()
        .filter(|(_, b)| b.dtype == DType::F32 && b.alias_of.is_none() && b.numel > 0)
        .filter(|&(i, _)| !(exec.tensor(BufId(i)).as_ptr() as usize).is_multiple_of(64))
        .map(|(_, b)| b.name.clone())
        .collect()
}

#[test]
fn every_float_tensor_starts_on_a_cache_line() {
    let resnet =
        zoo::cifar_resnet(&[3, 8, 8], 4, 8, true, true, Init::HeNormal, LossKind::Xent).unwrap();
    let plan = compile(&resnet, 4, OptimizerParams::new(OptimizerKind::Adam)).unwrap();
    let mut exec = CpuExecutor::<f32>::new(plan.clone());
    initialize(&mut exec, 3).unwrap();
    assert_eq!(
        misaligned(&exec, &plan),
        Vec::<String>::new(),
        "after allocation"
    );
    let inputs: Vec<f32> = (0..plan.batch * plan.input_features)
        .map(|i| (i % 17) as f32 / 17.0 - 0.5)
        .collect();
    let labels: Vec<u32> = (0..plan.batch).map(|i| (i % plan.classes) as u32).collect();
    for step in 1..=2u64 {
        exec.load_batch(&inputs, &labels).unwrap();
        let scalars = StepScalars {
            lr: 1e-3,
            t: step as u32,
        };
        exec.train_step(step, scalars, StatsLevel::Full).unwrap();
        exec.finished(true).unwrap();
    }
    assert_eq!(
        misaligned(&exec, &plan),
        Vec::<String>::new(),
        "after two steps"
    );
}
