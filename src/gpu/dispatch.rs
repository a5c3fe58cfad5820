//! A dispatch recorded at plan time: pipeline, bind group and grid size, all built once.
//! The step loop only calls `record`, so nothing is created while training.

use super::context::GpuContext;
use super::pipeline_cache::Specialization;
use crate::error::{Error, Result};

/// One compute dispatch, ready to be recorded into any compute pass.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
    }
}

impl GpuContext {
    /// Builds a dispatch of `shader::entry` with `buffers` bound at bindings 0, 1, 2, … of
    /// group 0, in the order the shader declares them.
    pub fn dispatch(
        &self,
        shader: &'static str,
        entry: &'static str,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        self.dispatch_with(
            shader,
            entry,
            Specialization::default(),
            buffers,
            workgroups,
        )
    }

    /// A dispatch of `entry` of a reduction shader: from `subgroup_stem`, the build whose
    /// trees end in subgroup shuffles (the same bits), where this context reduces through
    /// subgroups (`subgroup_size`, its width the `SG` constant), else from `stem`.
    pub fn dispatch_reduction(
        &self,
        stem: &'static str,
        subgroup_stem: &'static str,
        entry: &'static str,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        match self.subgroup_size {
            Some(sg) => self.dispatch_with(
                subgroup_stem,
                entry,
                Specialization {
                    constants: &[("SG", sg as f64)],
                    ..Specialization::default()
                },
                buffers,
                workgroups,
            ),
            None => self.dispatch(stem, entry, buffers, workgroups),
        }
    }

    /// As [`GpuContext::dispatch`], with the pipeline specialized by `spec`.
    pub fn dispatch_with(
        &self,
        shader: &'static str,
        entry: &'static str,
        spec: Specialization<'_>,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            return Err(Error::TooLarge {
                tensor: format!("{shader}::{entry} grid {workgroups:?}"),
                bytes: *workgroups.iter().max().unwrap_or(&0) as u64,
                limit: max as u64,
                what: "workgroup-count dimension",
            });
        }
        let pipeline = self.pipeline_with(shader, entry, spec)?;
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry),
            layout: &layout,
            entries: &entries,
        });
        self.check(&format!("binding {shader}::{entry}"))?;
        Ok(Dispatch {
            label: format!("{shader}::{entry}"),
            pipeline,
            bind_group,
            workgroups,
        })
    }

    /// Records the dispatches into one command buffer, submits it and waits. For tests,
    /// benchmarks and one-off work; the training step uses its own encoder.
    pub fn run(&self, dispatches: &[&Dispatch]) -> Result<()> {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        self.queue.submit([encoder.finish()]);
        self.wait_idle("run")
    }
}
