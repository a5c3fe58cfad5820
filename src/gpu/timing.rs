//! Median time of a group of dispatches, for the matmul/convolution autotune and the
//! kernel-variant example. The clock is `gpu::timer`'s: device timestamps around one compute
//! pass where the adapter has them, otherwise the host clock around submit and wait (which
//! adds the submit and wake-up latency, tens of µs).

use std::time::Instant;

use super::timer::{GpuTimer, GpuTiming};
use super::{Dispatch, GpuContext};
use crate::error::Result;

/// The method `time_pass` uses on this device.
pub fn clock(ctx: &GpuContext) -> GpuTiming {
    GpuTiming::best_per_pass(ctx)
}

/// Seconds one compute pass recording `dispatches` `repeat` times takes, divided by
/// `repeat`. Waits for the queue before returning.
pub fn time_pass(ctx: &GpuContext, dispatches: &[&Dispatch], repeat: usize) -> Result<f64> {
    let repeat = repeat.max(1);
    let timer = GpuTimer::new(ctx, clock(ctx), 1)?;
    let pass: Vec<Dispatch> = (0..repeat)
        .flat_map(|_| dispatches.iter().map(|&d| d.clone()))
        .collect();
    let start = Instant::now();
    let device = timer.time_segments(ctx, &[&pass])?[0];
    let host = start.elapsed().as_secs_f64();
    // A driver that writes no timestamps (zeros) falls back to the host time.
    Ok(if device > 0.0 { device } else { host } / repeat as f64)
}

/// Median seconds per run of `dispatches` over `runs` timed passes after `warmup` untimed
/// ones; each pass repeats the dispatches until it lasts about `min_pass` seconds (so a
/// microsecond kernel is not measured against the clock's resolution).
pub fn median_time(
    ctx: &GpuContext,
    dispatches: &[&Dispatch],
    warmup: usize,
    runs: usize,
    min_pass: f64,
) -> Result<f64> {
    let mut t = 0.0;
    for _ in 0..warmup.max(1) {
        t = time_pass(ctx, dispatches, 1)?;
    }
    let repeat = if t > 0.0 {
        ((min_pass / t).ceil() as usize).clamp(1, 1000)
    } else {
        1
    };
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        times.push(time_pass(ctx, dispatches, repeat)?);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
