//! Command-line interface: `gradscope [train] …`, `gradscope report RUN_DIR`,
//! `gradscope devices` and `gradscope bench`.

mod bench;
mod console;
mod devices;
mod export;
mod report;
mod study;
mod train_args;

use clap::{Parser, Subcommand};

use gradscope::Result;

#[derive(Parser, Debug)]
#[command(
    name = "gradscope",
    version,
    about = "Train deep nets on any GPU through WGSL compute shaders, and see the gradient flow through every layer.",
    long_about = "Without a subcommand, trains the default deep network on the bundled Fashion-MNIST data on the best \
                  adapter there is, and prints the per-layer gradient table."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Threads of the CPU executor (and of the CPU side of `bench`): default one per core,
    /// or RAYON_NUM_THREADS. Results are the same bits for any count; only the speed moves.
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS))]
    threads: Option<u16>,
}

/// The most threads `--threads` takes: past that a count is more likely a typo than a
/// machine.
const MAX_THREADS: i64 = 4096;

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a network (presets, a TOML config, and a flag for every setting).
    Train(Box<train_args::TrainArgs>),
    /// List every GPU adapter with the limits and features that matter for compute.
    Devices(devices::DevicesArgs),
    /// Write a run's trained parameters (newest valid checkpoint) as safetensors for PyTorch.
    Export(export::ExportArgs),
    /// Draw a run's gradient flow: PNG and SVG pictures and report.html in RUN_DIR/report/.
    Report(report::ReportArgs),
    /// Time every kernel family and whole training steps on the GPU and the CPU executor,
    /// checking each GPU result against its CPU twin.
    Bench(bench::BenchArgs),
    /// Run a grid of short trainings (a built-in study or a TOML file) and compare them in
    /// one report.
    Study(study::StudyArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        // Before anything runs on the pool: rayon builds its global pool once, at first use.
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.into())
            .build_global()
            .map_err(|e| {
                gradscope::Error::config(format!("--threads {n}: the CPU thread pool: {e}"))
            })?;
    }
    match cli.command {
        None => train_args::run(&train_args::TrainArgs::default()),
        Some(Command::Train(args)) => train_args::run(&args),
        Some(Command::Devices(args)) => devices::run(&args),
        Some(Command::Export(args)) => export::run(&args),
        Some(Command::Report(args)) => report::run(&args),
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Study(args)) => study::run(&args),
    }
}
