//! Convolution throughput and a resnet-20 training step, CPU twins against GPU launchers,
//! side by side in one run.
//!
//! 1. For each distinct convolution of resnet-20 on 32×32 inputs (the 3×3 convolutions of
//!    16, 32 and 64 channels at 32×32, 16×16 and 8×8, the two stride-2 3×3 ones, and the
//!    two 1×1 stride-2 projections), the forward, backward-input and backward-weight passes:
//!    median time, GFLOP/s (`Conv2dShape::flops`, the same count for each pass) and the
//!    GPU/CPU ratio of throughput. GPU times are `GpuContext::run` of the pass's
//!    dispatches, which submits and waits for the queue.
//! 2. Samples/s of a whole resnet-20 training step (batch norm, momentum SGD) on each
//!    executor, with no statistics and with full statistics, the GPU executor waiting for
//!    each step's report as in benches/train_step.rs.
//! 3. The plan's memory by role against what the GPU executor made the device allocate
//!    (wgpu's allocator report before and after building the executor: uniforms, staging
//!    ring and split-K scratch included, plus allocation rounding).
//!
//! The default batch is 32, not the usual 128, to keep a run on lavapipe (software Vulkan)
//! within a few minutes.
//!
//! `cargo bench --bench conv [-- --batch N --step-batch N[,N…] --steps N --repeats N
//!  --device cpu|gpu|both --shape TEXT --side N --in-channels N --no-convs --no-step]`
//!
//! `--shape TEXT` keeps the convolutions whose name contains TEXT (`16→16`, `s2`). `--side N`
//! takes the inputs N×N (default 32; 28 is the bundled data's side), for the passes and the
//! step alike. `--in-channels N` gives the inputs N channels (default 3, CIFAR's; 1 is the
//! bundled data's), which changes the stem convolution and the step's first layer.

use std::sync::Arc;
use std::time::Instant;

use gradscope::bench::conv2d::resnet20_shapes_on;
use gradscope::cpu::aligned::AlignedBuf;
use gradscope::cpu::conv2d as cpu;
use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::{Executor, StatsLevel};
use gradscope::gpu::executor::GpuExecutor;
use gradscope::gpu::kernels::conv2d as gpu;
use gradscope::gpu::{AdapterRequest, GpuContext};
use gradscope::init::Init;
use gradscope::model::LossKind;
use gradscope::model::zoo::cifar_resnet;
use gradscope::ops::{Conv2dShape, OptimizerKind, OptimizerParams, StepScalars};
use gradscope::plan::{Plan, compile};
use gradscope::train::initialize;

/// Deterministic values in [-0.5, 0.5).
fn data(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i.wrapping_mul(7919).wrapping_add(salt * 104_729)) % 1021) as f32 / 1021.0 - 0.5)
        .collect()
}

/// Median seconds of `repeats` calls of `f`, after one warm-up call.
fn median_time(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

const PASSES: [&str; 3] = ["forward", "backward input", "backward weight"];

/// Median seconds of each pass on the CPU twins (f32). Each pass keeps its scratch from one
/// call to the next, as the CPU executor does (a fresh allocation would time the kernel's
/// page faults).
fn cpu_passes(s: &Conv2dShape, repeats: usize) -> [f64; 3] {
    // On 64-byte boundaries, as the executor holds its tensors and scratch.
    let x = AlignedBuf::from_slice(&data(s.x_len(), 1));
    let w = AlignedBuf::from_slice(&data(s.w_len(), 2));
    let dy = AlignedBuf::from_slice(&data(s.y_len(), 3));
    let mut y = AlignedBuf::zeroed(s.y_len());
    let mut dx = AlignedBuf::zeroed(s.x_len());
    let mut dw = AlignedBuf::zeroed(s.w_len());
    let mut scratch: [AlignedBuf<f32>; 3] = Default::default();
    let [sf, si, sw] = &mut scratch;
    [
        median_time(repeats, || cpu::conv2d_forward_with(s, &x, &w, &mut y, sf)),
        median_time(repeats, || {
            cpu::conv2d_backward_input_with(s, &dy, &w, &mut dx, si, false)
        }),
        median_time(repeats, || {
            cpu::conv2d_backward_weight_with(s, &x, &dy, &mut dw, false, sw)
        }),
    ]
}

/// Median seconds of each pass on the GPU launchers, each run as its own command buffer
/// and waited for.
fn gpu_passes(ctx: &GpuContext, s: &Conv2dShape, repeats: usize) -> gradscope::Result<[f64; 3]> {
    let x = ctx.upload("x", &data(s.x_len(), 1))?;
    let w = ctx.upload("w", &data(s.w_len(), 2))?;
    let dy = ctx.upload("dy", &data(s.y_len(), 3))?;
    let y = ctx.storage_buffer("y", (s.y_len() * 4) as u64)?;
    let dx = ctx.storage_buffer("dx", (s.x_len() * 4) as u64)?;
    let dw = ctx.storage_buffer("dw", (s.w_len() * 4) as u64)?;
    let fwd = gpu::conv2d_forward(ctx, s, &x, &w, &y)?;
    let bin = gpu::conv2d_backward_input(ctx, s, &dy, &w, &dx, false)?;
    let bw = gpu::conv2d_backward_weight(ctx, s, &x, &dy, &dw, false)?;
    let bw: Vec<&_> = bw.iter().collect();
    let mut err = Ok(());
    let mut timed = |d: &[&gradscope::gpu::Dispatch]| {
        median_time(repeats, || {
            if let Err(e) = ctx.run(d) {
                err = Err(e);
            }
        })
    };
    let t = [timed(&[&fwd]), timed(&[&bin]), timed(&bw)];
    err.map(|_| t)
}

fn step_plan(batch: usize, side: usize, in_channels: usize) -> Plan {
    let model = cifar_resnet(
        &[in_channels, side, side],
        10,
        20,
        true,
        true,
        Init::HeNormal,
        LossKind::Xent,
    )
    .unwrap();
    compile(&model, batch, OptimizerParams::new(OptimizerKind::Momentum)).unwrap()
}

/// Median samples/s over `repeats` single steps, after one warm-up step.
fn step_rate(exec: &mut dyn Executor, batch: usize, repeats: usize, level: StatsLevel) -> f64 {
    let p = exec.plan().clone();
    exec.load_batch(
        &data(batch * p.input_features, 4),
        &(0..batch).map(|i| (i % 10) as u32).collect::<Vec<_>>(),
    )
    .unwrap();
    let mut t = 0u64;
    let secs = median_time(repeats, || {
        t += 1;
        exec.train_step(
            t,
            StepScalars {
                lr: 1e-3,
                t: t as u32,
            },
            level,
        )
        .unwrap();
        exec.finished(true).unwrap();
    });
    batch as f64 / secs
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

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let has = |name: &str| args.iter().any(|a| a == name);
    let batch: usize = flag("--batch").and_then(|s| s.parse().ok()).unwrap_or(32);
    let step_batches: Vec<usize> = flag("--step-batch")
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![32]);
    let repeats: usize = flag("--repeats").and_then(|s| s.parse().ok()).unwrap_or(5);
    let steps: usize = flag("--steps").and_then(|s| s.parse().ok()).unwrap_or(3);
    let device = flag("--device").unwrap_or_else(|| "both".into());
    let side: usize = flag("--side").and_then(|s| s.parse().ok()).unwrap_or(32);
    let in_channels: usize = flag("--in-channels")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let (use_cpu, use_gpu) = (device != "gpu", device != "cpu");

    let cpu_desc = format!("{} ({} threads)", cpu_name(), rayon::current_num_threads());
    let ctx = if use_gpu {
        match GpuContext::new(&AdapterRequest::default()) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                eprintln!("no GPU: {e}");
                None
            }
        }
    } else {
        None
    };
    println!("CPU: {cpu_desc}");
    if let Some(c) = &ctx {
        println!("GPU adapter: {}", c.adapter.describe());
    }

    if !has("--no-convs") {
        println!(
            "\nresnet-20 convolutions on {side}×{side} inputs, batch {batch}, f32; median of {repeats} after a warm-up; \
             ms and GFLOP/s (2·MACs, same count per pass)"
        );
        println!(
            "{:<26} {:<16} {:>8} {:>10} {:>8} {:>10} {:>9}",
            "shape", "pass", "cpu ms", "cpu GF/s", "gpu ms", "gpu GF/s", "gpu/cpu"
        );
        let only = flag("--shape").unwrap_or_default();
        let shapes = resnet20_shapes_on(batch, side)
            .into_iter()
            .map(|(name, s)| {
                if name.starts_with("stem") {
                    // The stem reads the inputs' channels.
                    let s = Conv2dShape {
                        c_in: in_channels,
                        ..s
                    };
                    (format!("stem {in_channels}→{} 3×3", s.c_out), s)
                } else {
                    (name.to_string(), s)
                }
            });
        for (name, s) in shapes.filter(|(name, _)| name.contains(&only)) {
            let c = if use_cpu {
                Some(cpu_passes(&s, repeats))
            } else {
                None
            };
            let g = ctx
                .as_ref()
                .map(|ctx| gpu_passes(ctx, &s, repeats).unwrap());
            let gf = s.flops() / 1e9;
            for (i, pass) in PASSES.iter().enumerate() {
                let cell = |t: Option<f64>| match t {
                    Some(t) => (format!("{:.2}", t * 1e3), format!("{:.2}", gf / t)),
                    None => ("-".into(), "-".into()),
                };
                let (cm, cg) = cell(c.map(|c| c[i]));
                let (gm, gg) = cell(g.map(|g| g[i]));
                let ratio = match (c, g) {
                    (Some(c), Some(g)) => format!("{:.2}", c[i] / g[i]),
                    _ => "-".into(),
                };
                println!(
                    "{:<26} {pass:<16} {cm:>8} {cg:>10} {gm:>8} {gg:>10} {ratio:>9}",
                    if i == 0 { name.as_str() } else { "" }
                );
            }
        }
    }

    if has("--no-step") {
        return;
    }
    for &sb in &step_batches {
        let plan = step_plan(sb, side, in_channels);
        println!(
            "\nresnet-20 training step on {in_channels}×{side}×{side}, batch {sb}, momentum SGD, batch norm; median of {steps} \
             steps after a warm-up (samples/s)"
        );
        println!(
            "{:<4} {:>10} {:>12}  device",
            "exec", "no stats", "full stats"
        );
        let mut rates = Vec::new();
        if use_cpu {
            let mut exec = CpuExecutor::<f32>::new(plan.clone());
            initialize(&mut exec, 0).unwrap();
            let none = step_rate(&mut exec, sb, steps, StatsLevel::None);
            let full = step_rate(&mut exec, sb, steps, StatsLevel::Full);
            println!("{:<4} {none:>10.1} {full:>12.1}  {cpu_desc}", "cpu");
            rates.push(none);
        }
        let mut allocated = None;
        if let Some(ctx) = &ctx {
            let before = ctx.device.generate_allocator_report();
            let mut exec = GpuExecutor::new(ctx.clone(), plan.clone()).unwrap();
            let after = ctx.device.generate_allocator_report();
            if let (Some(b), Some(a)) = (before, after) {
                allocated = Some((
                    a.total_allocated_bytes
                        .saturating_sub(b.total_allocated_bytes),
                    a.allocations.len().saturating_sub(b.allocations.len()),
                    a.total_reserved_bytes
                        .saturating_sub(b.total_reserved_bytes),
                ));
            }
            initialize(&mut exec, 0).unwrap();
            let none = step_rate(&mut exec, sb, steps, StatsLevel::None);
            let full = step_rate(&mut exec, sb, steps, StatsLevel::Full);
            println!(
                "{:<4} {none:>10.1} {full:>12.1}  {}",
                "gpu",
                ctx.adapter.describe()
            );
            rates.push(none);
        }
        if rates.len() == 2 {
            println!("gpu/cpu ratio (no stats): {:.2}", rates[1] / rates[0]);
        }
        println!("plan memory, batch {sb} (MiB):");
        for (role, bytes) in plan.bytes_by_role() {
            println!("  {:<16} {:>9.2}", format!("{role:?}"), mib(bytes));
        }
        println!("  {:<16} {:>9.2}", "total", mib(plan.total_bytes()));
        match allocated {
            Some((bytes, count, reserved)) => println!(
                "GPU executor allocated {:.2} MiB in {count} allocations ({:.2} MiB of new \
                 memory blocks reserved), {:.2}× the plan's total",
                mib(bytes),
                mib(reserved),
                bytes as f64 / plan.total_bytes() as f64
            ),
            None if ctx.is_some() => println!("GPU executor allocation: no allocator report"),
            None => {}
        }
    }
}
