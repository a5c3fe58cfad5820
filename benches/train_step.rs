//! Training-step throughput on each executor, with full statistics every step, gradient
//! norms only, and no statistics, side by side in one run: an MLP 784-256-256-10 with Adam
//! at batch 128 (the default), or the CIFAR resnet-20 on 3×32×32 with momentum SGD
//! (`--model resnet20`, batch 32 unless `--batch` says). The batches are the ones the
//! comparison scripts of benches/compare build (JAX, PyTorch, Burn, Candle), value for
//! value. GPU times wait for the queue (the step's report) before reading the clock.
//!
//! `cargo bench --bench train_step [-- --model mlp|resnet20 --batch B --steps N
//!     --device cpu|gpu|both --activation NAME --json]`
//!
//! `--activation` gives the MLP's hidden layers another activation than ReLU (sigmoid,
//! tanh, elu, selu, gelu, softplus; `torch_cpu_mlp_step.py --activation` is its twin).
//!
//! `--per-step N` times each of N steps per level instead, the three levels taking turns
//! step by step, and prints the minimum, tenth percentile and median of a step: on a
//! shared machine, where runs of steps minutes apart move by a quarter, the low
//! percentiles of steps interleaved in one run compare builds and frameworks far more
//! steadily (the comparison scripts of benches/compare take the same option).

use std::time::Instant;

use gradscope::bench::step;
use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::{Executor, StatsLevel};
use gradscope::gpu::executor::GpuExecutor;
use gradscope::gpu::{AdapterRequest, GpuContext};
use gradscope::ops::{Activation, StepScalars};
use gradscope::plan::Plan;
use gradscope::train::initialize;

const REPEATS: usize = 5;

#[derive(Clone, Copy, PartialEq)]
enum Model {
    /// The MLP with this hidden activation.
    Mlp(Activation),
    Resnet20,
}

impl Model {
    fn describe(self) -> String {
        match self {
            Model::Mlp(Activation::Relu) => "MLP 784-256-256-10, Adam".into(),
            Model::Mlp(act) => format!("MLP 784-256-256-10, {}, Adam", act.name()),
            Model::Resnet20 => "resnet-20 on 3x32x32, momentum SGD".into(),
        }
    }

    fn is_mlp(self) -> bool {
        matches!(self, Model::Mlp(_))
    }

    /// The learning rate of the comparison scripts: optax.adam(1e-4), optax.sgd(0.1, 0.9).
    fn lr(self) -> f32 {
        match self {
            Model::Mlp(_) => 1e-4,
            Model::Resnet20 => 0.1,
        }
    }
}

fn plan(model: Model, batch: usize) -> Plan {
    // `gradscope bench --op step`'s models: the MLP, resnet-20.
    match model {
        Model::Mlp(act) => step::mlp_plan(batch, act).unwrap(),
        Model::Resnet20 => step::plan(step::MODELS[2], batch).unwrap(),
    }
}

/// Median samples/s over REPEATS runs of `steps` steps, after a warm-up.
fn measure(exec: &mut dyn Executor, model: Model, steps: usize, level: StatsLevel) -> f64 {
    let p = exec.plan().clone();
    let batch = p.batch;
    // The comparison scripts' batches: MLP inputs centred on 0, images in [0, 1).
    let shift = if model.is_mlp() { 0.5 } else { 0.0 };
    let inputs: Vec<f32> = (0..batch * p.input_features)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - shift)
        .collect();
    let labels: Vec<u32> = (0..batch).map(|i| (i % 10) as u32).collect();
    exec.load_batch(&inputs, &labels).unwrap();
    let mut t = 0u64;
    let mut run = |exec: &mut dyn Executor, n: usize| {
        for _ in 0..n {
            t += 1;
            exec.train_step(
                t,
                StepScalars {
                    lr: model.lr(),
                    t: t as u32,
                },
                level,
            )
            .unwrap();
            exec.finished(false).unwrap();
        }
        exec.finished(true).unwrap();
    };
    run(exec, 3);
    let mut rates: Vec<f64> = (0..REPEATS)
        .map(|_| {
            let start = Instant::now();
            run(exec, steps);
            (steps * batch) as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[REPEATS / 2]
}

/// Seconds of each of `steps` steps per level (Full, Gradients, None), the levels taking
/// turns step by step after a warm-up, so that a slow spell of the machine falls on all
/// three alike.
fn measure_per_step(exec: &mut dyn Executor, model: Model, steps: usize) -> [Vec<f64>; 3] {
    let p = exec.plan().clone();
    let batch = p.batch;
    let shift = if model.is_mlp() { 0.5 } else { 0.0 };
    let inputs: Vec<f32> = (0..batch * p.input_features)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - shift)
        .collect();
    let labels: Vec<u32> = (0..batch).map(|i| (i % 10) as u32).collect();
    exec.load_batch(&inputs, &labels).unwrap();
    let levels = [StatsLevel::Full, StatsLevel::Gradients, StatsLevel::None];
    let mut times: [Vec<f64>; 3] = Default::default();
    let warm_up = 3 * levels.len();
    for t in 1..=(warm_up + steps * levels.len()) as u64 {
        let level = (t as usize) % levels.len();
        let scalars = StepScalars {
            lr: model.lr(),
            t: t as u32,
        };
        let start = Instant::now();
        exec.train_step(t, scalars, levels[level]).unwrap();
        exec.finished(true).unwrap();
        if t as usize > warm_up {
            times[level].push(start.elapsed().as_secs_f64());
        }
    }
    for v in &mut times {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    times
}

/// (minimum, tenth percentile, median) of sorted step times, in ms.
fn percentiles(sorted: &[f64]) -> [f64; 3] {
    let at = |q: f64| 1e3 * sorted[((sorted.len() - 1) as f64 * q) as usize];
    [at(0.0), at(0.1), at(0.5)]
}

/// Runs `f` on the CPU executor, then the GPU executor, as `device` (cpu, gpu or both)
/// asks, each initialized and given with its name and what it runs on; one at a time, so
/// neither is alive while the other is timed.
fn each_executor(
    model: Model,
    batch: usize,
    device: &str,
    mut f: impl FnMut(&str, String, &mut dyn Executor),
) {
    if device == "cpu" || device == "both" {
        let mut exec = CpuExecutor::<f32>::new(plan(model, batch));
        initialize(&mut exec, 0).unwrap();
        let name = format!("{} ({} threads)", cpu_name(), rayon::current_num_threads());
        f("cpu", name, &mut exec);
    }
    if device == "gpu" || device == "both" {
        match GpuContext::new(&AdapterRequest::default()) {
            Ok(ctx) => {
                let name = ctx.adapter.describe();
                let mut exec =
                    GpuExecutor::new(std::sync::Arc::new(ctx), plan(model, batch)).unwrap();
                initialize(&mut exec, 0).unwrap();
                f("gpu", name, &mut exec);
            }
            Err(e) => eprintln!("no GPU executor: {e}"),
        }
    }
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let model = match flag("--model").as_deref() {
        None | Some("mlp") => {
            let name = flag("--activation").unwrap_or_else(|| "relu".into());
            match Activation::parse(&name) {
                Some(act) => Model::Mlp(act),
                None => {
                    eprintln!(
                        "error: --activation {name}: the activations are identity, sigmoid, \
                         tanh, relu, leaky_relu, elu, selu, gelu and softplus"
                    );
                    std::process::exit(2);
                }
            }
        }
        Some("resnet20") => Model::Resnet20,
        Some(other) => {
            eprintln!("error: --model {other}: the models are mlp and resnet20");
            std::process::exit(2);
        }
    };
    let default_batch = if model.is_mlp() { 128 } else { 32 };
    let batch: usize = flag("--batch")
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_batch);
    let default_steps = if model.is_mlp() { 20 } else { 5 };
    let steps: usize = flag("--steps")
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_steps);
    let device = flag("--device").unwrap_or_else(|| "both".into());
    let json = args.iter().any(|a| a == "--json");
    if let Some(per_step) = flag("--per-step") {
        let Ok(steps @ 1..) = per_step.parse::<usize>() else {
            eprintln!("error: --per-step {per_step}: give a number of steps, at least 1");
            std::process::exit(2);
        };
        per_step_table(model, batch, steps, &device, json);
        return;
    }

    let mut rows: Vec<(String, String, f64, f64, f64)> = Vec::new();
    each_executor(model, batch, &device, |name, device, exec| {
        let full = measure(exec, model, steps, StatsLevel::Full);
        let grads = measure(exec, model, steps, StatsLevel::Gradients);
        let none = measure(exec, model, steps, StatsLevel::None);
        rows.push((name.into(), device, full, grads, none));
    });
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(e, d, f, g, n)| {
                serde_json::json!({"executor": e, "device": d, "model": model.describe(), "batch": batch,
                    "samples_per_s_full_stats": f, "samples_per_s_grad_norms": g, "samples_per_s_no_stats": n,
                    "full_stats_overhead": n / f - 1.0})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
        return;
    }
    println!(
        "{}, batch {batch}; median of {REPEATS} runs of {steps} steps (samples/s)",
        model.describe()
    );
    println!(
        "{:<4} {:>12} {:>12} {:>12} {:>10}  device",
        "exec", "full stats", "grad norms", "no stats", "overhead"
    );
    for (e, d, f, g, n) in &rows {
        println!(
            "{e:<4} {f:>12.0} {g:>12.0} {n:>12.0} {:>9.1}%  {d}",
            100.0 * (n / f - 1.0)
        );
    }
    if rows.len() == 2 {
        println!("gpu/cpu ratio (full stats): {:.2}", rows[1].2 / rows[0].2);
    }
}

/// `--per-step`: each executor's step times at each level, as percentiles.
fn per_step_table(model: Model, batch: usize, steps: usize, device: &str, json: bool) {
    let mut rows: Vec<(String, String, [Vec<f64>; 3])> = Vec::new();
    each_executor(model, batch, device, |name, device, exec| {
        rows.push((name.into(), device, measure_per_step(exec, model, steps)));
    });
    let levels = ["full stats", "grad norms", "no stats"];
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .flat_map(|(e, d, times)| {
                levels.iter().zip(times).map(move |(level, t)| {
                    let [min, p10, median] = percentiles(t);
                    serde_json::json!({"executor": e, "device": d, "model": model.describe(),
                        "batch": batch, "stats": level, "steps": t.len(), "ms_min": min,
                        "ms_p10": p10, "ms_median": median,
                        "samples_per_s_at_median": batch as f64 / (median / 1e3)})
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
        return;
    }
    println!(
        "{}, batch {batch}; {steps} steps per level, levels in turn (ms per step)",
        model.describe()
    );
    println!(
        "{:<4} {:<11} {:>8} {:>8} {:>8} {:>12}  device",
        "exec", "stats", "min", "p10", "median", "samples/s"
    );
    for (e, d, times) in &rows {
        for (level, t) in levels.iter().zip(times) {
            let [min, p10, median] = percentiles(t);
            println!(
                "{e:<4} {level:<11} {min:>8.3} {p10:>8.3} {median:>8.3} {:>12.0}  {d}",
                batch as f64 / (median / 1e3)
            );
        }
    }
}
