//! Timing GPU work, for `gradscope bench` and `gradscope train --profile`.
//!
//! A host clock read around `submit` measures the driver's queueing and the wait as much as
//! the kernels, so where the device has timestamp queries the device's own clock is used:
//! with `TIMESTAMP_QUERY_INSIDE_PASSES` one timestamp is written between consecutive
//! segments (op groups) inside a single compute pass, so the work is encoded exactly as an
//! untimed step encodes it; with only `TIMESTAMP_QUERY` each segment gets its own compute
//! pass whose beginning and end are stamped (`ComputePassTimestampWrites`). Without either,
//! every segment is submitted alone and the host clock runs from before its submit to the
//! end of the wait for the queue. Ticks become seconds through `Queue::get_timestamp_period`.
//! Whoever reports a time also reports which of these produced it.

use super::{Dispatch, GpuContext};
use crate::error::{Error, Result};

/// How GPU times are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuTiming {
    /// Timestamps written between segments inside one compute pass.
    TimestampsInsidePass,
    /// One compute pass per segment, stamped at its beginning and end.
    TimestampsPerPass,
    /// A host clock around each segment's submit and the wait for the queue.
    HostClock,
}

impl GpuTiming {
    /// The most precise method this device offers.
    pub fn best(ctx: &GpuContext) -> Self {
        if !ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            GpuTiming::HostClock
        } else if ctx
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
        {
            GpuTiming::TimestampsInsidePass
        } else {
            GpuTiming::TimestampsPerPass
        }
    }

    /// The best method that keeps every timed kernel in a pass of its own (what `bench`
    /// wants: one segment per run, no neighbours).
    pub fn best_per_pass(ctx: &GpuContext) -> Self {
        match Self::best(ctx) {
            GpuTiming::TimestampsInsidePass => GpuTiming::TimestampsPerPass,
            t => t,
        }
    }

    /// One line for the console and the JSON.
    pub fn describe(self) -> &'static str {
        match self {
            GpuTiming::TimestampsInsidePass => {
                "GPU timestamp queries between ops inside one compute pass"
            }
            GpuTiming::TimestampsPerPass => {
                "GPU timestamp queries at the beginning and end of a compute pass per op"
            }
            GpuTiming::HostClock => {
                "host clock around each submit and the wait for the queue (no timestamp queries)"
            }
        }
    }

    /// Timestamps needed for `segments` segments.
    fn queries(self, segments: usize) -> usize {
        match self {
            GpuTiming::TimestampsInsidePass => segments + 1,
            GpuTiming::TimestampsPerPass => 2 * segments,
            GpuTiming::HostClock => 0,
        }
    }
}

/// The query set and buffers that timestamps of up to `segments` segments land in.
pub struct GpuTimer {
    pub method: GpuTiming,
    segments: usize,
    query_set: Option<wgpu::QuerySet>,
    resolve: Option<wgpu::Buffer>,
    staging: Option<wgpu::Buffer>,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
}

impl GpuTimer {
    /// A timer for up to `segments` segments per measurement.
    pub fn new(ctx: &GpuContext, method: GpuTiming, segments: usize) -> Result<Self> {
        let segments = segments.max(1);
        let queries = method.queries(segments);
        if queries > wgpu::QUERY_SET_MAX_QUERIES as usize {
            return Err(Error::config(format!(
                "timing {segments} ops needs {queries} timestamp queries, more than the \
                 {} a query set holds",
                wgpu::QUERY_SET_MAX_QUERIES
            )));
        }
        let (query_set, resolve, staging) = if queries == 0 {
            (None, None, None)
        } else {
            let bytes = queries as u64 * 8;
            let qs = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timer.queries"),
                ty: wgpu::QueryType::Timestamp,
                count: queries as u32,
            });
            let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timer.resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timer.staging"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (Some(qs), Some(resolve), Some(staging))
        };
        ctx.check("creating the GPU timer")?;
        Ok(GpuTimer {
            method,
            segments,
            query_set,
            resolve,
            staging,
            period_ns: ctx.queue.get_timestamp_period() as f64,
        })
    }

    /// Segments this timer was sized for.
    pub fn capacity(&self) -> usize {
        self.segments
    }

    /// Encodes `n` segments into `encoder` with timestamps around each; `record(i, pass)`
    /// records segment i. Only for the timestamp methods (the host clock needs a submit per
    /// segment: see [`GpuTimer::time_segments`]).
    pub fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        n: usize,
        record: &mut dyn FnMut(usize, &mut wgpu::ComputePass<'_>),
    ) -> Result<()> {
        let qs = self.query_set(n)?;
        match self.method {
            GpuTiming::TimestampsInsidePass => {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("timed"),
                    timestamp_writes: None,
                });
                for i in 0..n {
                    pass.write_timestamp(qs, i as u32);
                    record(i, &mut pass);
                }
                pass.write_timestamp(qs, n as u32);
            }
            GpuTiming::TimestampsPerPass => {
                for i in 0..n {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("timed"),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: qs,
                            beginning_of_pass_write_index: Some(2 * i as u32),
                            end_of_pass_write_index: Some(2 * i as u32 + 1),
                        }),
                    });
                    record(i, &mut pass);
                }
            }
            GpuTiming::HostClock => {
                return Err(Error::config(
                    "host-clock timing cannot be encoded into one command buffer",
                ));
            }
        }
        let queries = self.method.queries(n) as u32;
        let (resolve, staging) = self.buffers()?;
        encoder.resolve_query_set(qs, 0..queries, resolve, 0);
        encoder.copy_buffer_to_buffer(resolve, 0, staging, 0, queries as u64 * 8);
        Ok(())
    }

    /// Seconds of each of the `n` segments of the last encoded measurement; waits for the
    /// queue (call after submitting the encoder given to [`GpuTimer::encode`]).
    pub fn read(&self, ctx: &GpuContext, n: usize) -> Result<Vec<f64>> {
        let (_, staging) = self.buffers()?;
        let queries = self.method.queries(n) as u64;
        let slice = staging.slice(..queries * 8);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        ctx.wait_idle("reading timestamps")?;
        let err = |m: String| Error::Gpu {
            during: "reading timestamps".into(),
            message: m,
        };
        rx.recv()
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(e.to_string()))?;
        let ticks: Vec<u64> = {
            let view = slice.get_mapped_range().map_err(|e| err(e.to_string()))?;
            // Read as bytes: a mapped range promises no 8-byte alignment.
            view.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect()
        };
        staging.unmap();
        // Ticks are monotonic on one queue; saturating keeps a driver that reports a
        // zero-length segment out of order from wrapping around.
        let span = |a: u64, b: u64| b.saturating_sub(a) as f64 * self.period_ns * 1e-9;
        Ok((0..n)
            .map(|i| match self.method {
                GpuTiming::TimestampsInsidePass => span(ticks[i], ticks[i + 1]),
                _ => span(ticks[2 * i], ticks[2 * i + 1]),
            })
            .collect())
    }

    /// Runs the segments in order and returns each one's seconds: one command buffer with
    /// timestamps, or (host clock) one submit and wait per segment.
    pub fn time_segments(&self, ctx: &GpuContext, segments: &[&[Dispatch]]) -> Result<Vec<f64>> {
        let n = segments.len();
        if self.method == GpuTiming::HostClock {
            let mut out = Vec::with_capacity(n);
            for seg in segments {
                let refs: Vec<&Dispatch> = seg.iter().collect();
                let start = std::time::Instant::now();
                ctx.run(&refs)?;
                out.push(start.elapsed().as_secs_f64());
            }
            return Ok(out);
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        self.encode(&mut encoder, n, &mut |i, pass| {
            for d in segments[i] {
                d.record(pass);
            }
        })?;
        ctx.queue.submit([encoder.finish()]);
        let t = self.read(ctx, n)?;
        ctx.check("timed run")?;
        Ok(t)
    }

    fn query_set(&self, n: usize) -> Result<&wgpu::QuerySet> {
        if n > self.segments {
            return Err(Error::config(format!(
                "the GPU timer holds {} segments, asked for {n}",
                self.segments
            )));
        }
        self.query_set
            .as_ref()
            .ok_or_else(|| Error::config("this GPU timer has no query set (host clock)"))
    }

    fn buffers(&self) -> Result<(&wgpu::Buffer, &wgpu::Buffer)> {
        match (&self.resolve, &self.staging) {
            (Some(r), Some(s)) => Ok((r, s)),
            _ => Err(Error::config(
                "this GPU timer has no query set (host clock)",
            )),
        }
    }
}
