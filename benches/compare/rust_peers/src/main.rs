//! The training steps that gradscope's benches time, written in the two established Rust
//! frameworks (Burn on its Flex CPU backend, Candle on its CPU device; Burn also on its
//! Vulkan backend with `--device gpu`, in a build with `--features gpu`), timed with the
//! protocol of the other comparison scripts: warm-up steps, then the median of R runs of S
//! steps, in samples/s.
//!
//!     cargo run --release [--features gpu] -- --framework burn|candle --model mlp|resnet20
//!         [--device cpu|gpu] [--batch B] [--steps S] [--repeats R] [--json FILE]
//!
//! Threads: all three (Burn's Flex, Candle, and gradscope's CPU executor) run their parallel
//! kernels on rayon's pool, so RAYON_NUM_THREADS sets the thread count of each the same way.

mod batch;
mod burn_steps;
mod candle_steps;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Framework {
    Burn,
    Candle,
}

/// Where the step runs.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum Target {
    Cpu,
    /// Burn's Vulkan backend (CubeCL through wgpu) on the best adapter.
    Gpu,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    /// MLP 784-256-256-10, ReLU, softmax cross-entropy, Adam (lr 1e-4).
    Mlp,
    /// CIFAR-style resnet-20 on 3×32×32, BatchNorm in training mode, momentum SGD (lr 0.1).
    Resnet20,
}

#[derive(Parser, Debug)]
#[command(
    about = "Burn's and Candle's CPU training steps, timed as gradscope's benches time theirs"
)]
struct Args {
    #[arg(long, value_enum)]
    framework: Framework,
    #[arg(long, value_enum, default_value = "mlp")]
    model: Model,
    #[arg(long, value_enum, default_value = "cpu")]
    device: Target,
    /// Samples per step (default: 128 for the MLP, 32 for resnet-20, as gradscope's benches).
    #[arg(long)]
    batch: Option<usize>,
    /// Steps per timed run (default: 20 for the MLP, 5 for resnet-20).
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One framework's training step on one fixed batch.
pub trait TrainStep {
    /// Forward, backward and the optimizer's update.
    fn step(&mut self);
    /// The loss of the last step (reading it waits for the step, where a framework defers).
    fn last_loss(&mut self) -> f32;
    /// The framework, its version and its backend, for the report.
    fn describe(&self) -> String;
}

const WARMUP_STEPS: usize = 3;

fn main() {
    let args = Args::parse();
    let (batch, steps) = match args.model {
        Model::Mlp => (args.batch.unwrap_or(128), args.steps.unwrap_or(20)),
        Model::Resnet20 => (args.batch.unwrap_or(32), args.steps.unwrap_or(5)),
    };
    if batch == 0 || steps == 0 || args.repeats == 0 {
        eprintln!("error: --batch, --steps and --repeats must be at least 1");
        std::process::exit(2);
    }
    if args.device == Target::Gpu {
        if !matches!(args.framework, Framework::Burn) {
            eprintln!(
                "error: --device gpu is Burn's Vulkan backend; Candle's GPU backends are CUDA \
                 and Metal, not built here"
            );
            std::process::exit(2);
        }
        if !cfg!(feature = "gpu") {
            eprintln!("error: --device gpu needs a build with `--features gpu`");
            std::process::exit(2);
        }
    }
    let mut step: Box<dyn TrainStep> = match (args.framework, args.model) {
        (Framework::Burn, Model::Mlp) => burn_steps::mlp(batch, args.device),
        (Framework::Burn, Model::Resnet20) => burn_steps::resnet20(batch, args.device),
        (Framework::Candle, Model::Mlp) => Box::new(candle_steps::Mlp::new(batch)),
        (Framework::Candle, Model::Resnet20) => Box::new(candle_steps::Resnet20::new(batch)),
    };

    for _ in 0..WARMUP_STEPS {
        step.step();
    }
    let first_loss = step.last_loss();
    let mut rates = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats {
        let start = Instant::now();
        for _ in 0..steps {
            step.step();
        }
        step.last_loss();
        rates.push((steps * batch) as f64 / start.elapsed().as_secs_f64());
    }
    let last_loss = step.last_loss();
    rates.sort_by(f64::total_cmp);
    let rate = rates[rates.len() / 2];

    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "every core".into());
    let place = match args.device {
        Target::Cpu => format!("CPU, RAYON_NUM_THREADS={threads}"),
        Target::Gpu => "GPU".to_string(),
    };
    let model = match args.model {
        Model::Mlp => "MLP 784-256-256-10, Adam",
        Model::Resnet20 => "resnet-20 on 3x32x32, momentum SGD",
    };
    println!(
        "{} ({place}); {model}, batch {batch}; median of {} runs of {steps} steps",
        step.describe(),
        args.repeats
    );
    // The loss after the warm-up and at the end: a step that trains lowers it.
    println!("loss {first_loss:.4} after the warm-up, {last_loss:.4} at the end");
    println!(
        "{:?} {:?}: {rate:10.0} samples/s ({:.3} ms/step)",
        args.framework,
        args.model,
        1e3 * batch as f64 / rate
    );
    if let Some(path) = args.json {
        let json = serde_json::json!({
            "framework": step.describe(),
            "model": model,
            "batch": batch,
            "steps": steps,
            "repeats": args.repeats,
            "device": format!("{:?}", args.device).to_lowercase(),
            "rayon_num_threads": threads,
            "samples_per_s": rate,
            "runs_samples_per_s": rates,
            "loss_after_warmup": first_loss,
            "loss_at_end": last_loss,
        });
        if let Err(e) = std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()) {
            eprintln!("error: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}
