//! Runs one case on both executors: one untimed run of each from the same initial tensors
//! (the correctness check), then warm-up runs, then the timed runs whose median is
//! reported. Kernels that update their inputs (optimizers, running statistics) keep
//! updating them during the timed runs; only the first run is compared.

use std::time::Instant;

use super::case::{Case, Check, Data, Slots};
use super::compare;
use super::options::BenchOptions;
use super::result::{KernelResult, SideResult};
use crate::cpu::aligned::AlignedBuf;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::timer::GpuTimer;

fn upload(ctx: &GpuContext, name: &str, data: &Data) -> Result<wgpu::Buffer> {
    match data {
        Data::F32(v) => ctx.upload(name, v),
        Data::U32(v) => ctx.upload(name, v),
    }
}

fn download(ctx: &GpuContext, buffer: &wgpu::Buffer, like: &Data) -> Result<Data> {
    Ok(match like {
        Data::F32(v) => Data::F32(AlignedBuf::from_slice(&ctx.read(buffer, v.len())?)),
        Data::U32(v) => Data::U32(ctx.read(buffer, v.len())?),
    })
}

fn tolerance(check: Check) -> Option<f64> {
    match check {
        Check::Close(t) | Check::Stats(t) => Some(t),
        Check::Exact => Some(0.0),
        Check::Input => None,
    }
}

/// Measures `case`; the GPU side runs when `gpu` is given, and is then checked against
/// the CPU twin (run once, untimed, even under `--gpu-only`).
pub fn run_case(
    mut case: Case,
    opts: &BenchOptions,
    gpu: Option<(&GpuContext, &GpuTimer)>,
) -> Result<KernelResult> {
    let initial: Vec<Data> = case.tensors.iter().map(|t| t.data.clone()).collect();
    let (work, scale, unit) = match case.work {
        super::case::Work::Flops(f) => (f, 1e9, "GFLOP/s"),
        super::case::Work::Bytes(b) => (b, 1e9, "GB/s"),
    };

    let mut cpu_side = None;
    let mut reference = None;
    if opts.cpu || gpu.is_some() {
        let mut slots = Slots(initial.clone());
        (case.cpu)(&mut slots)?;
        if gpu.is_some() {
            reference = Some(slots.0.clone());
        }
        if opts.cpu {
            for _ in 0..opts.warmup {
                (case.cpu)(&mut slots)?;
            }
            let mut times = Vec::with_capacity(opts.repeats);
            for _ in 0..opts.repeats {
                let start = Instant::now();
                (case.cpu)(&mut slots)?;
                times.push(start.elapsed().as_secs_f64());
            }
            cpu_side = Some(SideResult::from_runs(&times, work, scale, None));
        }
    }

    let mut gpu_side = None;
    let (mut max_error, mut max_tol, mut error_at) = (None::<f64>, None::<f64>, String::new());
    if let Some((ctx, timer)) = gpu {
        let buffers = case
            .tensors
            .iter()
            .zip(&initial)
            .map(|(t, d)| upload(ctx, t.name, d))
            .collect::<Result<Vec<_>>>()?;
        let dispatches = (case.gpu)(ctx, &buffers)?;
        let segment = [dispatches.as_slice()];
        timer.time_segments(ctx, &segment)?;
        // The check: every output against the CPU twin's first run. The result reports
        // the worst ratio of error to tolerance's tensor, with that tensor's numbers.
        let reference = reference.unwrap_or_default();
        let mut worst_excess = f64::NEG_INFINITY;
        for ((t, b), want) in case.tensors.iter().zip(&buffers).zip(&reference) {
            let Some(tol) = tolerance(t.check) else {
                continue;
            };
            let got = download(ctx, b, want)?;
            let (e, at) = compare::error(t.check, &got, want);
            // Ranks tensors by how far past (or below) their tolerance they are.
            let excess = if tol > 0.0 {
                e / tol
            } else if e > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            if excess > worst_excess || e.is_nan() {
                worst_excess = excess;
                max_error = Some(e);
                max_tol = Some(tol);
                error_at = if at.is_empty() {
                    String::new()
                } else {
                    format!("{}: {at}", t.name)
                };
            }
        }
        for _ in 0..opts.warmup {
            timer.time_segments(ctx, &segment)?;
        }
        let mut times = Vec::with_capacity(opts.repeats);
        for _ in 0..opts.repeats {
            times.extend(timer.time_segments(ctx, &segment)?);
        }
        gpu_side = Some(SideResult::from_runs(
            &times,
            work,
            scale,
            Some(timer.method),
        ));
    }

    Ok(KernelResult {
        family: case.family.name().into(),
        name: case.name,
        shape: case.shape,
        unit: unit.into(),
        flops: matches!(case.work, super::case::Work::Flops(_)).then_some(work),
        bytes: matches!(case.work, super::case::Work::Bytes(_)).then_some(work),
        samples: None,
        gpu_over_cpu: match (&cpu_side, &gpu_side) {
            (Some(c), Some(g)) => Some(c.median_s / g.median_s.max(1e-12)),
            _ => None,
        },
        cpu: cpu_side,
        gpu: gpu_side,
        max_rel_error: max_error,
        tolerance: max_tol,
        error_at,
    })
}
