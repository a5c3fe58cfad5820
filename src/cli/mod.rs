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
}

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
