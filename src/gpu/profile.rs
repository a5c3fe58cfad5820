//! The GPU executor's profiling mode (`gradscope train --profile`): the same step, with a
//! timestamp between ops.
//!
//! With `TIMESTAMP_QUERY_INSIDE_PASSES` the step is encoded exactly as an unprofiled one
//! (one compute pass, the same dispatches in the same order) with a timestamp written
//! before each op and after the last; with only `TIMESTAMP_QUERY` each op gets a compute
//! pass of its own stamped at its beginning and end (pass boundaries may add a little
//! synchronization); with neither, each op is submitted alone and timed by the host clock
//! around its submit and the wait for the queue. The method used is named in the profile.
//! Either way the dispatches, their order and their buffers are those of `train_step`, so
//! the results are the same bit for bit; what changes is that the host waits for every
//! step (to read its timestamps), so the device no longer runs ahead.
//!
//! The host's own cost is measured too: the time to encode the step's command buffer and
//! the time of the `submit` call.

use std::time::Instant;

use super::executor::GpuExecutor;
use super::timer::{GpuTimer, GpuTiming};
use crate::error::Result;
use crate::executor::{Executor, StatsLevel};
use crate::ops::StepScalars;
use crate::profile::{OpKind, Profile, ProfileBuilder, StepTimes};

/// The timer and the accumulated times of a profiled run.
pub struct GpuProfiler {
    timer: GpuTimer,
    builder: ProfileBuilder,
}

impl GpuExecutor {
    /// Turns on per-op timing of every later step, with the best method the device offers;
    /// a step with more ops than one query set holds (4096 timestamps: a pass per op
    /// needs two per op) falls back to the host clock.
    pub fn start_profiling(&mut self) -> Result<()> {
        let best = GpuTiming::best(self.context());
        self.start_profiling_with(best)
            .or_else(|_| self.start_profiling_with(GpuTiming::HostClock))
    }

    /// Turns on per-op timing with a given method (tests exercise each one); refused when
    /// the device lacks the timestamp feature it needs.
    pub fn start_profiling_with(&mut self, method: GpuTiming) -> Result<()> {
        let needs = match method {
            GpuTiming::TimestampsInsidePass => {
                wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            }
            GpuTiming::TimestampsPerPass => wgpu::Features::TIMESTAMP_QUERY,
            GpuTiming::HostClock => wgpu::Features::empty(),
        };
        if !self.context().features.contains(needs) {
            return Err(crate::Error::config(format!(
                "profiling by {} needs {needs:?}, which this device lacks",
                method.describe()
            )));
        }
        let plan = self.plan();
        // Two extra slots: the finalize of the gradient records, and of every record.
        let builder = ProfileBuilder::new(
            plan,
            &[
                (OpKind::Statistics, "(all)", "stats finalize (gradients)"),
                (OpKind::Statistics, "(all)", "stats finalize (all records)"),
            ],
        );
        let mut builder = builder;
        builder.set_dispatches(self.dispatch_counts());
        let timer = GpuTimer::new(self.context(), method, builder.slots())?;
        self.profiler = Some(GpuProfiler { timer, builder });
        Ok(())
    }

    /// The profile so far; profiling stops.
    pub fn stop_profiling(&mut self) -> Option<Profile> {
        let p = self.profiler.take()?;
        let method = p.timer.method.describe().to_string();
        p.builder.finish(self.describe(), method)
    }

    /// `train_step` with every op timed (see the module comment).
    pub(super) fn train_step_profiled(
        &mut self,
        step: u64,
        scalars: StepScalars,
        stats: StatsLevel,
    ) -> Result<()> {
        let Some(mut prof) = self.profiler.take() else {
            return Ok(());
        };
        let result = self.profiled(&mut prof, step, scalars, stats);
        self.profiler = Some(prof);
        result
    }

    fn profiled(
        &mut self,
        prof: &mut GpuProfiler,
        step: u64,
        scalars: StepScalars,
        stats: StatsLevel,
    ) -> Result<()> {
        let start = Instant::now();
        let (stats, slot) = self.begin_step(step, scalars, stats)?;
        let segments = self.step_segments(stats);
        let n = segments.len();
        let ctx = self.context_arc();
        let (times, encode, submit) = if prof.timer.method == GpuTiming::HostClock {
            // Each op alone: its own command buffer, submitted and waited for.
            let mut times = Vec::with_capacity(n);
            for &seg in &segments {
                let t = Instant::now();
                let mut encoder = ctx.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    self.record_segment(seg, &mut pass);
                }
                ctx.queue.submit([encoder.finish()]);
                ctx.wait_idle(&format!("profiled step {step}"))?;
                times.push(t.elapsed().as_secs_f64());
            }
            let t = Instant::now();
            let encoder = ctx.device.create_command_encoder(&Default::default());
            let commands = self.finish_step(encoder, slot);
            let encode = t.elapsed().as_secs_f64();
            let t = Instant::now();
            self.submit_step(commands, slot, step, stats)?;
            (times, encode, t.elapsed().as_secs_f64())
        } else {
            let t = Instant::now();
            let mut encoder = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("step (profiled)"),
                });
            prof.timer.encode(&mut encoder, n, &mut |k, pass| {
                self.record_segment(segments[k], pass)
            })?;
            let commands = self.finish_step(encoder, slot);
            let encode = t.elapsed().as_secs_f64();
            let t = Instant::now();
            self.submit_step(commands, slot, step, stats)?;
            let submit = t.elapsed().as_secs_f64();
            (prof.timer.read(&ctx, n)?, encode, submit)
        };
        prof.builder.add(StepTimes {
            ops: segments.into_iter().zip(times).collect(),
            step: start.elapsed().as_secs_f64(),
            host: Some((encode, submit)),
        });
        Ok(())
    }
}
