//! Whole training steps: an MLP 784-256-256-10 (Adam), LeNet-5 on 1×28×28 (momentum SGD),
//! a CIFAR resnet-20 with batch norm on 3×32×32 (momentum SGD) and the depthwise-separable
//! `dwsep` network on 1×28×28 (momentum SGD: after Adam's first step a parameter is about
//! p₀ ± lr whatever its gradient's size, so a BatchNorm β whose gradient is a sum that
//! cancels to nearly zero could land on either side on the two executors), each with full
//! statistics (the default: `--stats-every 1`), timed twice by a host clock, in samples/s:
//! - "step NAME": each step alone, from the call that runs it (the GPU executor encodes and
//!   submits) to the arrival of its report (the GPU's read back): what a loop that waits
//!   for every step sees, the encoding and the read-back included;
//! - "step NAME pipelined": runs of PIPELINED_STEPS steps back to back, each submitted while
//!   the ones before it are still in flight (as `gradscope train` runs), waited for at the
//!   end of the run: the steady rate of training, where the host's work overlaps the
//!   GPU's. (The CPU executor finishes each step before returning: its two rows measure
//!   the same work.)
//!
//! Correctness: both executors start from the same seeded parameters and batch; after one
//! step the loss and every parameter must agree (see the tolerances).

use std::sync::Arc;
use std::time::Instant;

use super::case::{Check, Data};
use super::compare;
use super::options::BenchOptions;
use super::result::{KernelResult, SideResult};
use crate::cpu::aligned::AlignedBuf;
use crate::cpu::executor::CpuExecutor;
use crate::error::Result;
use crate::executor::{Executor, StatsLevel};
use crate::gpu::GpuContext;
use crate::gpu::executor::GpuExecutor;
use crate::gpu::timer::GpuTiming;
use crate::init::Init;
use crate::model::{LossKind, ModelSpec, zoo};
use crate::ops::{Activation, OptimizerKind, OptimizerParams, StepScalars};
use crate::plan::{Plan, compile};
use crate::train::initialize;

/// The loss is a mean of positive terms after a forward pass of f32 GEMMs: the executors
/// agree to a few ulp of its depth, and 1e-4 relative is ample.
const LOSS_TOL: f64 = 1e-4;
/// A parameter after one step is p₀ − lr·g (momentum and Adam included), and some
/// gradients are sums of many cancelling terms: BatchNorm's β gradient sums dy over batch
/// and plane, and a bias that starts at zero is nothing but that sum after one step. Its
/// rounding error is ε times the terms' size, not the result's, so against the tensor's own
/// largest value it reaches ~4e-3 at batch 8 (measured on resnet-20) and grows with the
/// batch. 5e-2 leaves that room while a wrong kernel (a lost term, a bad index) still shows
/// as an error of order 1.
const PARAM_TOL: f64 = 5e-2;
const SEED: u64 = 7;

/// The models, as `--op` names them.
pub const MODELS: [&str; 4] = [
    "step mlp 784-256-256-10",
    "step lenet5",
    "step resnet20",
    "step dwsep",
];

/// The plan of a model of `MODELS` at `batch` (with its optimizer: Adam for the MLP, momentum
/// SGD for the convolutional nets); also what `benches/train_step.rs` times.
pub fn plan(name: &str, batch: usize) -> Result<Plan> {
    let (model, opt) = match name {
        "step mlp 784-256-256-10" => return mlp_plan(batch, Activation::Relu),
        "step lenet5" => (
            zoo::lenet5(&[1, 28, 28], 10, Init::HeNormal, LossKind::Xent)?,
            OptimizerKind::Momentum,
        ),
        "step dwsep" => (
            zoo::depthwise_separable(&[1, 28, 28], 10, true, Init::HeNormal, LossKind::Xent)?,
            OptimizerKind::Momentum,
        ),
        _ => (
            zoo::cifar_resnet(
                &[3, 32, 32],
                10,
                20,
                true,
                true,
                Init::HeNormal,
                LossKind::Xent,
            )?,
            OptimizerKind::Momentum,
        ),
    };
    compile(&model, batch, OptimizerParams::new(opt))
}

/// The MLP of `MODELS` with another hidden activation (`benches/train_step.rs
/// --activation`), with Adam.
pub fn mlp_plan(batch: usize, activation: Activation) -> Result<Plan> {
    let model = ModelSpec::mlp(
        784,
        &[256, 256],
        10,
        activation,
        Init::HeNormal,
        LossKind::Xent,
    )?;
    compile(&model, batch, OptimizerParams::new(OptimizerKind::Adam))
}

/// A seeded batch in [0, 1) with labels cycling through the classes.
fn batch_data(plan: &Plan) -> (Vec<f32>, Vec<u32>) {
    let n = plan.batch * plan.input_features;
    let inputs = (0..n)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 1000) as f32 / 1000.0)
        .collect();
    let labels = (0..plan.batch).map(|i| (i % plan.classes) as u32).collect();
    (inputs, labels)
}

fn scalars(t: u64) -> StepScalars {
    StepScalars {
        lr: 1e-3,
        t: t as u32,
    }
}

/// Steps per timed run of the pipelined measurement.
pub const PIPELINED_STEPS: usize = 8;

/// The name of a model's pipelined row.
pub fn pipelined_name(name: &str) -> String {
    format!("{name} pipelined")
}

/// One step, waited for: its seconds and its loss.
fn step(exec: &mut dyn Executor, t: u64) -> Result<(f64, f32)> {
    let start = Instant::now();
    exec.train_step(t, scalars(t), StatsLevel::Full)?;
    let reports = exec.finished(true)?;
    let secs = start.elapsed().as_secs_f64();
    Ok((secs, reports.last().map_or(f32::NAN, |r| r.loss)))
}

/// Warm-up then timed steps (the executor has run `done` steps already).
fn time_steps(exec: &mut dyn Executor, opts: &BenchOptions, done: u64) -> Result<Vec<f64>> {
    let mut t = done;
    for _ in 0..opts.warmup {
        t += 1;
        step(exec, t)?;
    }
    let mut times = Vec::with_capacity(opts.repeats);
    for _ in 0..opts.repeats {
        t += 1;
        times.push(step(exec, t)?.0);
    }
    Ok(times)
}

/// Warm-up then timed runs of PIPELINED_STEPS steps submitted back to back (reports taken
/// as they arrive, without waiting), each run waited for at its end: seconds a step.
fn time_pipelined(exec: &mut dyn Executor, opts: &BenchOptions, done: u64) -> Result<Vec<f64>> {
    let mut t = done;
    let mut run = |exec: &mut dyn Executor| -> Result<f64> {
        let start = Instant::now();
        for _ in 0..PIPELINED_STEPS {
            t += 1;
            exec.train_step(t, scalars(t), StatsLevel::Full)?;
            exec.finished(false)?;
        }
        exec.finished(true)?;
        Ok(start.elapsed().as_secs_f64() / PIPELINED_STEPS as f64)
    };
    for _ in 0..opts.warmup {
        run(exec)?;
    }
    (0..opts.repeats).map(|_| run(exec)).collect()
}

/// An executor ready to step: seeded parameters, the bench batch loaded.
fn ready(mut exec: Box<dyn Executor>) -> Result<Box<dyn Executor>> {
    initialize(exec.as_mut(), SEED)?;
    let (inputs, labels) = batch_data(exec.plan());
    exec.load_batch(&inputs, &labels)?;
    Ok(exec)
}

/// The loss and every parameter after the first step, as one tensor list.
fn after_first_step(exec: &mut dyn Executor) -> Result<Vec<(String, Vec<f32>)>> {
    let (_, loss) = step(exec, 1)?;
    let mut out = vec![("loss".to_string(), vec![loss])];
    for p in exec.plan().params.clone() {
        out.push((p.name.clone(), exec.read(p.value)?));
    }
    Ok(out)
}

/// The selected rows of model `name` (`waited`: "step NAME", `pipelined`: "step NAME
/// pipelined"), from one pair of executors checked against each other after a first step.
pub fn run(
    name: &str,
    batch: usize,
    (waited, pipelined): (bool, bool),
    opts: &BenchOptions,
    ctx: Option<&Arc<GpuContext>>,
) -> Result<Vec<KernelResult>> {
    let plan = plan(name, batch)?;
    // (waited, pipelined) sides of each executor.
    let measure = |exec: &mut dyn Executor, timing| -> Result<[Option<SideResult>; 2]> {
        let side = |times: &[f64]| SideResult::from_runs(times, batch as f64, 1.0, timing);
        let mut done = 1;
        let w = if waited {
            let times = time_steps(exec, opts, done)?;
            done += (opts.warmup + opts.repeats) as u64;
            Some(side(&times))
        } else {
            None
        };
        let p = if pipelined {
            Some(side(&time_pipelined(exec, opts, done)?))
        } else {
            None
        };
        Ok([w, p])
    };
    let mut cpu_sides = [None, None];
    let mut gpu_sides = [None, None];
    let mut cpu_ref = None;
    if opts.cpu || ctx.is_some() {
        let mut exec = ready(Box::new(CpuExecutor::<f32>::try_new(plan.clone())?))?;
        cpu_ref = Some(after_first_step(exec.as_mut())?);
        if opts.cpu {
            cpu_sides = measure(exec.as_mut(), None)?;
        }
    }
    let mut error = None;
    let mut error_at = String::new();
    if let Some(ctx) = ctx {
        let mut exec = ready(Box::new(GpuExecutor::new(ctx.clone(), plan.clone())?))?;
        let got = after_first_step(exec.as_mut())?;
        if let Some(want) = &cpu_ref {
            // The tensor furthest past (or closest to) its tolerance is reported.
            let mut worst: Option<(f64, f64, f64)> = None;
            for (i, ((tensor, g), (_, c))) in got.iter().zip(want).enumerate() {
                let tol = if i == 0 { LOSS_TOL } else { PARAM_TOL };
                let (e, at) = compare::error(
                    Check::Close(tol),
                    &Data::F32(AlignedBuf::from_slice(g)),
                    &Data::F32(AlignedBuf::from_slice(c)),
                );
                let ratio = if e.is_nan() { f64::INFINITY } else { e / tol };
                if worst.is_none_or(|(r, _, _)| ratio > r) {
                    worst = Some((ratio, e, tol));
                    error_at = if at.is_empty() {
                        String::new()
                    } else {
                        format!("{tensor}: {at}")
                    };
                }
            }
            error = worst.map(|(_, e, tol)| (e, tol));
        }
        gpu_sides = measure(exec.as_mut(), Some(GpuTiming::HostClock))?;
    }
    let rows = [
        (
            waited,
            name.to_string(),
            format!("batch {batch}, full statistics"),
        ),
        (
            pipelined,
            pipelined_name(name),
            format!("batch {batch}, full statistics, runs of {PIPELINED_STEPS}"),
        ),
    ];
    let mut out = Vec::new();
    for ((selected, row, shape), (cpu, gpu)) in
        rows.into_iter().zip(cpu_sides.into_iter().zip(gpu_sides))
    {
        if !selected {
            continue;
        }
        out.push(KernelResult {
            family: "step".into(),
            name: row,
            shape,
            unit: "samples/s".into(),
            flops: None,
            bytes: None,
            samples: Some(batch),
            gpu_over_cpu: match (&cpu, &gpu) {
                (Some(c), Some(g)) => Some(c.median_s / g.median_s),
                _ => None,
            },
            cpu,
            gpu,
            max_rel_error: error.map(|(e, _)| e),
            tolerance: error.map(|(_, t)| t),
            error_at: error_at.clone(),
        });
    }
    Ok(out)
}
