//! `gradscope bench`: every kernel family and whole training steps, GPU against CPU, as a
//! table (printed as each result arrives) and, with `--json`, as JSON.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use gradscope::bench::{self, BenchOptions, Family, table};
use gradscope::gpu::timer::GpuTiming;
use gradscope::gpu::{AdapterRequest, GpuContext};
use gradscope::{Error, Result};

#[derive(Args, Debug)]
#[command(after_help = size_help())]
pub struct BenchArgs {
    /// Only these families or kernels (comma-separated): a family (matmul, conv2d, pool,
    /// batchnorm, layernorm, activation, loss, stats, reduce, optimizer, step) or part of a
    /// kernel's name (matmul_nt, backward_weight, gelu, resnet20).
    #[arg(long, value_delimiter = ',')]
    op: Vec<String>,
    /// Sizes for every selected family, comma-separated; what a size means depends on the
    /// family (see below).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Timed runs per kernel; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Untimed runs before the timed ones (after the run that checks correctness).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Measure only the CPU executor (no correctness check).
    #[arg(long, conflicts_with = "gpu_only")]
    cpu_only: bool,
    /// Time only the GPU executor (the CPU twin still runs once, untimed, for the check).
    #[arg(long)]
    gpu_only: bool,
    /// The adapter: an index from `gradscope devices` or part of its name.
    #[arg(long)]
    adapter: Option<String>,
    /// vulkan, metal, dx12 or gl (or WGPU_BACKEND).
    #[arg(long)]
    backend: Option<String>,
    /// Write the results as JSON: to stdout with no value (the table then goes to stderr),
    /// or to the file given.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    json: Option<PathBuf>,
}

fn size_help() -> String {
    let mut s = String::from("What --sizes means per family (default in brackets):\n");
    for f in Family::ALL {
        let d: Vec<String> = f.default_sizes().iter().map(|v| v.to_string()).collect();
        s += &format!(
            "  {:<11} {} [{}]\n",
            f.name(),
            f.size_meaning(),
            d.join(",")
        );
    }
    s
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let opts = BenchOptions {
        ops: args.op.iter().map(|s| s.trim().to_string()).collect(),
        sizes: args.sizes.clone(),
        repeats: args.repeats,
        warmup: args.warmup,
        cpu: !args.gpu_only,
        gpu: !args.cpu_only,
    };
    opts.validate()?;
    bench::check_selection(&opts)?;
    let json_stdout = args
        .json
        .as_deref()
        .is_some_and(|p| p == std::path::Path::new("-"));
    // With JSON on stdout, the table goes to stderr so stdout parses as JSON.
    let mut out: Box<dyn Write> = if json_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let io = |e: std::io::Error| Error::io("<console>", e);

    let ctx = if opts.gpu {
        let request = AdapterRequest {
            backend: args.backend.clone(),
            adapter: args.adapter.clone(),
            ..AdapterRequest::default()
        };
        // A software renderer is measured only when asked for (as `train --device auto`
        // leaves it): its times say nothing about GPU hardware, and it runs the default
        // sizes many times slower than the CPU (lavapipe took 17× the CPU executor's time
        // for a 1024³ product on the development machine).
        let asked = args.adapter.is_some() || args.backend.is_some() || !opts.cpu;
        match GpuContext::new(&request) {
            Ok(c) if c.adapter.is_software() && !asked => {
                writeln!(
                    out,
                    "the only GPU adapter is the software renderer {}, whose times say nothing \
                     about GPU hardware; measuring the CPU executor only (--gpu-only, --adapter \
                     or --backend measures it anyway)",
                    c.adapter.name
                )
                .map_err(io)?;
                None
            }
            Ok(c) => Some(Arc::new(c)),
            // Without an adapter the CPU side still runs, unless only the GPU was asked for
            // or a particular adapter or backend was named.
            Err(e @ Error::NoAdapter { .. })
                if opts.cpu && args.adapter.is_none() && args.backend.is_none() =>
            {
                writeln!(out, "no GPU adapter ({e}); measuring the CPU executor only")
                    .map_err(io)?;
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let machine =
        bench::machine::describe(ctx.as_deref(), ctx.as_deref().map(GpuTiming::best_per_pass));
    write!(
        out,
        "{}",
        table::header(&machine, opts.warmup, opts.repeats)
    )
    .map_err(io)?;
    let report = bench::run(&opts, ctx, &mut |r| {
        // A console that went away is no reason to stop measuring.
        let _ = write!(out, "{}", table::row(r));
        let _ = out.flush();
    })?;

    if let Some(path) = &args.json {
        let json =
            serde_json::to_string_pretty(&report).map_err(|e| Error::config(e.to_string()))?;
        if json_stdout {
            println!("{json}");
        } else {
            std::fs::write(path, json + "\n").map_err(|e| Error::io(path, e))?;
            writeln!(out, "\nJSON written to {}", path.display()).map_err(io)?;
        }
    }
    if !report.failures.is_empty() {
        return Err(Error::Disagreement {
            count: report.failures.len(),
            details: report.failures.join("\n"),
        });
    }
    Ok(())
}
