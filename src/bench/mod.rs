//! `gradscope bench`: every kernel family and whole training steps, GPU executor against CPU
//! executor, side by side in one run.
//!
//! Each case (`case.rs`) is a kernel on seeded inputs with its CPU twin and its GPU
//! launcher; `runner.rs` runs it once on each side from the same inputs and compares the
//! outputs (`compare.rs`), so a bench on a new adapter is also a correctness check, then
//! times warm-up and repeated runs: GPU times from timestamp queries where the device has
//! them (`gpu::timer`), else a host clock around submit and the wait for the queue. The
//! families live one per file; `step.rs` times whole training steps. Results
//! (`result.rs`) carry medians, throughput (GFLOP/s, GB/s or samples/s), the GPU/CPU ratio
//! and the check's error; `table.rs` renders them for the console, serde for `--json`.

pub mod activation;
pub mod case;
pub mod compare;
pub mod conv2d;
pub mod loss;
pub mod machine;
pub mod matmul;
pub mod norm;
pub mod optimizer;
pub mod options;
pub mod pool2d;
pub mod reduce;
pub mod result;
pub mod runner;
pub mod stats;
pub mod step;
pub mod table;

use std::sync::Arc;

pub use options::{BenchOptions, Family};
pub use result::{BenchReport, KernelResult};

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::timer::{GpuTimer, GpuTiming};
use case::Pending;

/// Copies of a case's tensors on the host: the case's own, the initial values kept for
/// the GPU side, the CPU side's working copy and the reference it leaves.
const HOST_COPIES: u64 = 4;

/// The cases of one family at one size (every family but `step`).
fn family_cases(family: Family, size: usize) -> Vec<Pending> {
    match family {
        Family::Matmul => matmul::cases(size),
        Family::Conv2d => conv2d::cases(size),
        Family::Pool => pool2d::cases(size),
        Family::Batchnorm => norm::batchnorm_cases(size),
        Family::Layernorm => norm::layernorm_cases(size),
        Family::Activation => activation::cases(size),
        Family::Loss => loss::cases(size),
        Family::Stats => stats::cases(size),
        Family::Reduce => reduce::cases(size),
        Family::Optimizer => optimizer::cases(size),
        Family::Step => Vec::new(),
    }
}

/// Refuses an `--op` filter that selects no case, before anything is measured: the caller
/// checks it before it opens an adapter or prints a header.
pub fn check_selection(opts: &BenchOptions) -> Result<()> {
    let selects = |family: Family| {
        if family == Family::Step {
            return step::MODELS.iter().any(|name| {
                opts.selected(family, name) || opts.selected(family, &step::pipelined_name(name))
            });
        }
        opts.sizes_for(family).into_iter().any(|size| {
            family_cases(family, size)
                .iter()
                .any(|p| opts.selected(p.family, &p.name))
        })
    };
    if Family::ALL.into_iter().any(selects) {
        return Ok(());
    }
    let families: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
    Err(crate::Error::config(format!(
        "--op {} matches no kernel; use a family ({}) or part of a kernel's name \
         (matmul_nt, backward, …)",
        opts.ops.join(","),
        families.join(", ")
    )))
}

/// Runs every selected case; `progress` sees each result as it is measured (long runs
/// print as they go). `ctx` is the GPU side (None: CPU only). Returns the whole report;
/// kernels whose GPU result disagrees with the CPU twin are listed in `failures` (the
/// caller decides to fail the run).
pub fn run(
    opts: &BenchOptions,
    ctx: Option<Arc<GpuContext>>,
    progress: &mut dyn FnMut(&KernelResult),
) -> Result<BenchReport> {
    opts.validate()?;
    check_selection(opts)?;
    let timing = ctx.as_deref().map(GpuTiming::best_per_pass);
    let timer = match (&ctx, timing) {
        (Some(c), Some(t)) => Some(GpuTimer::new(c, t, 1)?),
        _ => None,
    };
    let gpu = ctx.as_deref().zip(timer.as_ref());
    let mut results = Vec::new();
    for family in Family::ALL {
        for size in opts.sizes_for(family) {
            if family == Family::Step {
                for name in step::MODELS {
                    let rows = (
                        opts.selected(family, name),
                        opts.selected(family, &step::pipelined_name(name)),
                    );
                    if rows == (false, false) {
                        continue;
                    }
                    for r in step::run(name, size, rows, opts, ctx.as_ref())? {
                        progress(&r);
                        results.push(r);
                    }
                }
                continue;
            }
            let mut memory_checked = false;
            for p in family_cases(family, size) {
                if !opts.selected(p.family, &p.name) {
                    continue;
                }
                if !memory_checked {
                    // Refused with its size before anything is allocated, where the
                    // allocation itself would abort the process.
                    crate::host_memory::check(
                        &format!("`--op {}` at size {size}", family.name()),
                        family.tensor_elements(size) * 4 * HOST_COPIES,
                        "choose smaller --sizes",
                    )?;
                    memory_checked = true;
                }
                let r = runner::run_case((p.build)(), opts, gpu)?;
                progress(&r);
                results.push(r);
            }
        }
    }
    let failures = results
        .iter()
        .filter(|r| r.failed())
        .map(|r| {
            format!(
                "{} [{}]: GPU differs from the CPU twin by {:.3e} (tolerance {:.1e}){}",
                r.name,
                r.shape,
                r.max_rel_error.unwrap_or(f64::NAN),
                r.tolerance.unwrap_or(f64::NAN),
                if r.error_at.is_empty() {
                    String::new()
                } else {
                    format!("; {}", r.error_at)
                }
            )
        })
        .collect();
    Ok(BenchReport {
        gradscope_version: env!("CARGO_PKG_VERSION").into(),
        machine: machine::describe(ctx.as_deref(), timing),
        ops: opts.ops.clone(),
        sizes: opts.sizes.clone(),
        warmup: opts.warmup,
        repeats: opts.repeats,
        results,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Family::tensor_elements` bounds the tensors of every case of its family (and is
    /// not loose by more than a factor 2 for the largest), at a few sizes.
    #[test]
    fn tensor_elements_bound_every_case() {
        for family in Family::ALL {
            if family == Family::Step {
                continue;
            }
            for size in [1, 8, 64] {
                let size = if family == Family::Reduce {
                    size * 4096
                } else {
                    size
                };
                let held: Vec<u64> = family_cases(family, size)
                    .into_iter()
                    .map(|p| {
                        (p.build)()
                            .tensors
                            .iter()
                            .map(|t| t.data.len() as u64)
                            .sum()
                    })
                    .collect();
                let largest = *held.iter().max().unwrap();
                let bound = family.tensor_elements(size);
                assert!(
                    largest <= bound && bound <= 2 * largest,
                    "{}: size {size}: cases hold {held:?}, bound {bound}",
                    family.name()
                );
            }
        }
    }
}
