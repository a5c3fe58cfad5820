//! Training-step throughput of a recurrent network on each executor, side by side in one
//! run: one LSTM layer of hidden 256 over sequences of length 100 (28 features per step, as
//! row-by-row images), batch 64, a read-out at the last step, Adam, gradient norms every
//! step and full statistics (with ‖∂L/∂h_t‖ for every t) on the first. GPU times wait for
//! the queue (the step's report) before reading the clock.
//!
//! `cargo bench --bench recurrent [-- --steps N --device cpu|gpu|both --cell lstm|gru|rnn
//!  --hidden H --len T --batch B --json]`

use std::time::Instant;

use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::{Executor, StatsLevel};
use gradscope::gpu::executor::GpuExecutor;
use gradscope::gpu::{AdapterRequest, GpuContext};
use gradscope::model::LossKind;
use gradscope::model::recurrent::{Readout, SeqInput, SequenceModel};
use gradscope::ops::{CellKind, OptimizerKind, OptimizerParams, StepScalars};
use gradscope::plan::{Plan, compile};
use gradscope::train::initialize;

const FEATURES: usize = 28;
const CLASSES: usize = 10;
const REPEATS: usize = 3;

struct Setup {
    cell: CellKind,
    hidden: usize,
    steps: usize,
    batch: usize,
}

fn plan(s: &Setup) -> Plan {
    let model = SequenceModel {
        cell: s.cell,
        input: SeqInput::Features(FEATURES),
        steps: s.steps,
        hidden: s.hidden,
        layers: 1,
        outputs: CLASSES,
        readout: Readout::Last,
        loss: LossKind::Xent,
        truncate: 0,
        forget_bias: Some(1.0),
    }
    .build()
    .unwrap();
    compile(&model, s.batch, OptimizerParams::new(OptimizerKind::Adam)).unwrap()
}

/// Median samples/s over REPEATS runs of `steps` steps, after a warm-up step.
fn measure(exec: &mut dyn Executor, steps: usize, batch: usize) -> f64 {
    let p = exec.plan().clone();
    let inputs: Vec<f32> = (0..batch * p.input_features)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
        .collect();
    let labels: Vec<u32> = (0..batch).map(|i| (i % CLASSES) as u32).collect();
    exec.load_batch(&inputs, &labels).unwrap();
    let mut t = 0u64;
    let mut run = |exec: &mut dyn Executor, n: usize| {
        for _ in 0..n {
            t += 1;
            let level = if t == 1 {
                StatsLevel::Full
            } else {
                StatsLevel::Gradients
            };
            exec.train_step(
                t,
                StepScalars {
                    lr: 1e-4,
                    t: t as u32,
                },
                level,
            )
            .unwrap();
            exec.finished(false).unwrap();
        }
        exec.finished(true).unwrap();
    };
    run(exec, 1);
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
    let num =
        |name: &str, default: usize| flag(name).and_then(|s| s.parse().ok()).unwrap_or(default);
    let steps = num("--steps", 3);
    let device = flag("--device").unwrap_or_else(|| "both".into());
    let json = args.iter().any(|a| a == "--json");
    let setup = Setup {
        cell: flag("--cell")
            .and_then(|c| CellKind::parse(&c))
            .unwrap_or(CellKind::Lstm),
        hidden: num("--hidden", 256),
        steps: num("--len", 100),
        batch: num("--batch", 64),
    };
    let what = format!(
        "{} hidden {}, length {}, batch {}, {} features/step, Adam",
        setup.cell.name(),
        setup.hidden,
        setup.steps,
        setup.batch,
        FEATURES
    );

    let mut rows: Vec<(String, String, f64)> = Vec::new();
    if device == "cpu" || device == "both" {
        let mut exec = CpuExecutor::<f32>::new(plan(&setup));
        initialize(&mut exec, 0).unwrap();
        let rate = measure(&mut exec, steps, setup.batch);
        rows.push((
            "cpu".into(),
            format!("{} ({} threads)", cpu_name(), rayon::current_num_threads()),
            rate,
        ));
    }
    if device == "gpu" || device == "both" {
        match GpuContext::new(&AdapterRequest::default()) {
            Ok(ctx) => {
                let name = ctx.adapter.describe();
                let mut exec = GpuExecutor::new(std::sync::Arc::new(ctx), plan(&setup)).unwrap();
                initialize(&mut exec, 0).unwrap();
                let rate = measure(&mut exec, steps, setup.batch);
                rows.push(("gpu".into(), name, rate));
            }
            Err(e) => eprintln!("no GPU executor: {e}"),
        }
    }
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(e, d, r)| {
                serde_json::json!({"executor": e, "device": d, "model": what,
                    "samples_per_s": r})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
        return;
    }
    println!("{what}; median of {REPEATS} runs of {steps} training steps");
    println!(
        "{:<4} {:>12} {:>12}  device",
        "exec", "samples/s", "steps/s"
    );
    for (e, d, r) in &rows {
        println!("{e:<4} {r:>12.1} {:>12.2}  {d}", r / setup.batch as f64);
    }
    if rows.len() == 2 {
        println!("gpu/cpu ratio: {:.2}", rows[1].2 / rows[0].2);
    }
}
