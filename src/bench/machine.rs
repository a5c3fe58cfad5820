//! The machine a bench ran on, named in its output: the CPU model and the CPU executor's
//! thread count, the GPU adapter with its backend and driver, and the date.

use super::result::Machine;
use crate::gpu::GpuContext;
use crate::gpu::timer::GpuTiming;

/// The CPU's model name: /proc/cpuinfo's `model name` (x86) or `Model`/`Hardware` (some
/// ARM kernels), else the architecture.
pub fn cpu_model() -> String {
    let from_cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        ["model name", "Model", "Hardware", "cpu model"]
            .iter()
            .find_map(|key| {
                s.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
                })
            })
    });
    from_cpuinfo.unwrap_or_else(|| format!("unknown {} CPU", std::env::consts::ARCH))
}

/// The machine, with the adapter of `ctx` when the GPU side runs.
pub fn describe(ctx: Option<&GpuContext>, timing: Option<GpuTiming>) -> Machine {
    let uses_timestamps = timing.is_some_and(|t| t != GpuTiming::HostClock);
    Machine {
        cpu: cpu_model(),
        cpu_threads: rayon::current_num_threads(),
        cpu_conv_direct: crate::cpu::conv2d::direct_isa(),
        adapter: ctx.map(|c| c.adapter.clone()),
        gpu_timing: timing,
        gpu_timing_note: timing.map(|t| t.describe().to_string()),
        timestamp_period_ns: match (ctx, uses_timestamps) {
            (Some(c), true) => Some(c.queue.get_timestamp_period() as f64),
            _ => None,
        },
        started_utc: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    }
}
