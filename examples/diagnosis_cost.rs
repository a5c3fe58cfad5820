//! What statistics plus diagnosis cost per training step, against none: an MLP
//! 784-256-256-10 at batch 128, on each executor,
//!   none    — a plain plan, no statistics, no guard;
//!   stats   — full statistics every step, read back and grouped by layer;
//!   +diag   — the same plus the halt guard on the device (the global-norm op) and, on
//!             the host, non-finite tracing and every diagnosis rule on every step.
//! GPU times wait for every step's report before reading the clock.
//!
//! `cargo run --release --example diagnosis_cost [-- STEPS]`

use std::time::Instant;

use gradscope::config::NonFinitePolicy;
use gradscope::cpu::executor::CpuExecutor;
use gradscope::diagnosis::{Diagnoser, DiagnosisConfig, Watch};
use gradscope::executor::{Executor, StatsLevel};
use gradscope::gpu::executor::GpuExecutor;
use gradscope::gpu::{AdapterRequest, GpuContext};
use gradscope::init::Init;
use gradscope::model::{LossKind, ModelSpec};
use gradscope::ops::{Activation, OptimizerKind, OptimizerParams, StepScalars};
use gradscope::plan::{Guard, Plan, StepOptions, compile_with};
use gradscope::stats::{layer_stats, total_grad_norm};
use gradscope::train::initialize;

const BATCH: usize = 128;

fn plan(guard: Guard) -> Plan {
    let model = ModelSpec::mlp(
        784,
        &[256, 256],
        10,
        Activation::Relu,
        Init::HeNormal,
        LossKind::Xent,
    )
    .unwrap();
    let options = StepOptions {
        guard,
        ..Default::default()
    };
    compile_with(
        &model,
        BATCH,
        OptimizerParams::new(OptimizerKind::Adam),
        options,
    )
    .unwrap()
}

/// Milliseconds per step over `steps` steps after a warm-up.
fn measure(exec: &mut dyn Executor, steps: u64, level: StatsLevel, diagnose: bool) -> f64 {
    let p = exec.plan().clone();
    let inputs: Vec<f32> = (0..BATCH * p.input_features)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
        .collect();
    let labels: Vec<u32> = (0..BATCH).map(|i| (i % 10) as u32).collect();
    exec.load_batch(&inputs, &labels).unwrap();
    let mut watch = Watch::new(
        &p,
        NonFinitePolicy::Halt,
        Diagnoser::new(DiagnosisConfig::default()),
    );
    let mut t = 0u64;
    let mut run = |exec: &mut dyn Executor, n: u64| {
        for _ in 0..n {
            t += 1;
            let s = StepScalars {
                lr: 1e-4,
                t: t as u32,
            };
            exec.train_step(t, s, level).unwrap();
            for r in exec.finished(false).unwrap() {
                if level == StatsLevel::Full {
                    let layers = layer_stats(&p, &r);
                    if diagnose {
                        let norm = total_grad_norm(&p, &r);
                        watch.examine(&p, &r, Some(&layers), norm).unwrap();
                    }
                }
            }
        }
        exec.finished(true).unwrap();
    };
    run(exec, 3);
    let start = Instant::now();
    run(exec, steps);
    start.elapsed().as_secs_f64() * 1e3 / steps as f64
}

fn report(name: &str, mut make: impl FnMut(Guard) -> Box<dyn Executor>, steps: u64) {
    let none = measure(make(Guard::Off).as_mut(), steps, StatsLevel::None, false);
    let stats = measure(make(Guard::Off).as_mut(), steps, StatsLevel::Full, false);
    let diag = measure(make(Guard::Halt).as_mut(), steps, StatsLevel::Full, true);
    println!(
        "{name}: none {none:.3} ms/step | stats {stats:.3} ms/step (+{:.1}%) | stats+diagnosis {diag:.3} ms/step (+{:.1}%)",
        100.0 * (stats / none - 1.0),
        100.0 * (diag / none - 1.0)
    );
}

fn main() {
    let steps: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    report(
        "cpu",
        |g| {
            let mut e = CpuExecutor::<f32>::new(plan(g));
            initialize(&mut e, 0).unwrap();
            Box::new(e)
        },
        steps,
    );
    match GpuContext::new(&AdapterRequest::default()) {
        Ok(ctx) => {
            let ctx = std::sync::Arc::new(ctx);
            let name = format!("gpu ({})", ctx.adapter.describe());
            report(
                &name,
                |g| {
                    let mut e = GpuExecutor::new(ctx.clone(), plan(g)).unwrap();
                    initialize(&mut e, 0).unwrap();
                    Box::new(e)
                },
                steps,
            );
        }
        Err(e) => println!("gpu: none ({e})"),
    }
}
