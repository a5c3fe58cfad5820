//! Timing dispatches on the device: GPU time from timestamp queries written at the start
//! and end of a compute pass when the adapter has TIMESTAMP_QUERY, otherwise the host clock
//! around submit and wait (which adds the submit and wake-up latency, tens of µs). Used by
//! the matmul autotune and the kernel-variant benchmark.

use std::time::Instant;

use super::{Dispatch, GpuContext};
use crate::error::{Error, Result};

/// Where a measured time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Timestamp queries around the compute pass: device time only.
    Timestamps,
    /// Host clock around submit + wait for the queue.
    Host,
}

impl Clock {
    pub fn name(self) -> &'static str {
        match self {
            Clock::Timestamps => "gpu timestamps",
            Clock::Host => "host clock (submit + wait)",
        }
    }
}

/// The clock `time_pass` uses on this device.
pub fn clock(ctx: &GpuContext) -> Clock {
    if ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
        Clock::Timestamps
    } else {
        Clock::Host
    }
}

/// Seconds one compute pass recording `dispatches` `repeat` times takes, divided by
/// `repeat`. Waits for the queue before returning.
pub fn time_pass(ctx: &GpuContext, dispatches: &[&Dispatch], repeat: usize) -> Result<f64> {
    let repeat = repeat.max(1);
    let timestamps = clock(ctx) == Clock::Timestamps;
    let queries = timestamps.then(|| {
        let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timing"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timing.resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timing.staging"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        (set, resolve, staging)
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("timing"),
            timestamp_writes: queries.as_ref().map(|(set, _, _)| {
                wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }
            }),
        });
        for _ in 0..repeat {
            for d in dispatches {
                d.record(&mut pass);
            }
        }
    }
    if let Some((set, resolve, staging)) = &queries {
        encoder.resolve_query_set(set, 0..2, resolve, 0);
        encoder.copy_buffer_to_buffer(resolve, 0, staging, 0, 16);
    }
    let start = Instant::now();
    ctx.queue.submit([encoder.finish()]);
    ctx.wait_idle("timing")?;
    let host = start.elapsed().as_secs_f64();
    let Some((_, _, staging)) = queries else {
        return Ok(host / repeat as f64);
    };
    let slice = staging.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait_idle("timing readback")?;
    rx.recv()
        .map_err(|e| Error::Gpu {
            during: "timing readback".into(),
            message: e.to_string(),
        })?
        .map_err(|e| Error::Gpu {
            during: "timing readback".into(),
            message: e.to_string(),
        })?;
    let ticks: [u64; 2] = {
        let data = slice.get_mapped_range().map_err(|e| Error::Gpu {
            during: "timing readback".into(),
            message: e.to_string(),
        })?;
        let words: &[u64] = bytemuck::cast_slice(&data[..16]);
        [words[0], words[1]]
    };
    staging.unmap();
    let period = ctx.queue.get_timestamp_period() as f64;
    let device = ticks[1].saturating_sub(ticks[0]) as f64 * period * 1e-9;
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
