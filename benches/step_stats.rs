//! The CPU cost of one step's statistics, alone: every statistics record of the MLP
//! 784-256-256-10 step (weights, gradients, updates, activations and their gradients; 24
//! records, about 0.94 M values) reduced in one rayon region, as the executor's statistics
//! block does, on the tensors of a `CpuExecutor` after `--steps` Adam steps of the
//! `train_step` bench's batch (trained tensors spread over more histogram bins than random
//! ones). Prints the best, tenth-percentile and median time of `--repeats` runs, and with
//! `--jobs` the best time of each record.
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench step_stats [-- --steps N --repeats N --jobs]`

use std::time::Instant;

use gradscope::bench::step;
use gradscope::cpu::executor::CpuExecutor;
use gradscope::cpu::stats::stats_reduce_with;
use gradscope::executor::{Executor, StatsLevel};
use gradscope::ops::StepScalars;
use gradscope::train::initialize;
use rayon::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (steps, repeats) = (flag("--steps", 50), flag("--repeats", 1000).max(1));
    let plan = step::plan(step::MODELS[0], 128).unwrap();
    let mut exec = CpuExecutor::<f32>::new(plan.clone());
    initialize(&mut exec, 0).unwrap();
    // The comparison scripts' batch (as `train_step`).
    let inputs: Vec<f32> = (0..128 * plan.input_features)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
        .collect();
    let labels: Vec<u32> = (0..128).map(|i| (i % 10) as u32).collect();
    exec.load_batch(&inputs, &labels).unwrap();
    for t in 1..=steps as u64 {
        let scalars = StepScalars {
            lr: 1e-4,
            t: t as u32,
        };
        exec.train_step(t, scalars, StatsLevel::Full).unwrap();
        exec.finished(true).unwrap();
    }
    // (values, saturation bounds) of each record.
    type Job = (Vec<f32>, Option<(f32, f32)>);
    let jobs: Vec<Job> = plan
        .stats_jobs
        .iter()
        .map(|j| (exec.tensor(j.buffer)[..j.len].to_vec(), j.saturation))
        .collect();
    let values: usize = jobs.iter().map(|j| j.0.len()).sum();
    let mut partials = vec![Vec::new(); jobs.len()];
    let mut times = Vec::with_capacity(repeats);
    let mut best_per_job = vec![f64::INFINITY; jobs.len()];
    // Inside the pool, as the executor's statistics block runs.
    rayon::ThreadPoolBuilder::new()
        .build()
        .unwrap()
        .install(|| {
            for _ in 0..repeats {
                let start = Instant::now();
                let records: Vec<_> = jobs
                    .par_iter()
                    .zip(partials.par_iter_mut())
                    .map(|(j, p)| stats_reduce_with(&j.0, j.1, p))
                    .collect();
                std::hint::black_box(records);
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
            for ((j, p), best) in jobs.iter().zip(&mut partials).zip(&mut best_per_job) {
                for _ in 0..repeats.div_ceil(5) {
                    let start = Instant::now();
                    std::hint::black_box(stats_reduce_with(&j.0, j.1, p));
                    *best = best.min(start.elapsed().as_secs_f64() * 1e6);
                }
            }
        });
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "MLP 784-256-256-10 step's statistics after {steps} steps: {} records, {values} values, {} threads",
        jobs.len(),
        rayon::current_num_threads()
    );
    println!(
        "best {:.4} ms, p10 {:.4} ms, median {:.4} ms of {repeats} runs",
        times[0],
        times[repeats / 10],
        times[repeats / 2]
    );
    if args.iter().any(|a| a == "--jobs") {
        for (spec, best) in plan.stats_jobs.iter().zip(&best_per_job) {
            println!(
                "layer {} {:?}: {} values, {best:.1} us",
                spec.layer, spec.kind, spec.len
            );
        }
    }
}
