//! Compute pipelines cached by (shader, entry point): a plan that binds the same kernel for
//! twenty layers compiles it once. Pipelines use wgpu's automatic layout, derived from the
//! WGSL declarations, so the bindings are written down once, in the shader.

use std::collections::HashMap;
use std::sync::Mutex;

use super::context::GpuContext;
use super::shaders;
use crate::error::{Error, Result};

#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), wgpu::ComputePipeline>>,
}

impl GpuContext {
    /// The pipeline for `entry` in `shaders/<shader>.wgsl`, compiled on first use.
    pub fn pipeline(
        &self,
        shader: &'static str,
        entry: &'static str,
    ) -> Result<wgpu::ComputePipeline> {
        fn poisoned<T>(_: T) -> Error {
            Error::Gpu {
                during: "pipeline cache".into(),
                message: "lock poisoned".into(),
            }
        }
        if let Some(p) = self
            .pipelines
            .pipelines
            .lock()
            .map_err(poisoned)?
            .get(&(shader, entry))
        {
            return Ok(p.clone());
        }
        let module = {
            let mut modules = self.pipelines.modules.lock().map_err(poisoned)?;
            match modules.get(shader) {
                Some(m) => m.clone(),
                None => {
                    let source = shaders::source(shader).ok_or_else(|| Error::Shader {
                        shader: shader.to_string(),
                        message: "no such shader".into(),
                    })?;
                    let m = self
                        .device
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(shader),
                            source: wgpu::ShaderSource::Wgsl(source.into()),
                        });
                    self.check(&format!("compiling shader {shader}"))
                        .map_err(|e| Error::Shader {
                            shader: shader.to_string(),
                            message: e.to_string(),
                        })?;
                    modules.insert(shader, m.clone());
                    m
                }
            }
        };
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        self.check(&format!("creating pipeline {shader}::{entry}"))?;
        self.pipelines
            .pipelines
            .lock()
            .map_err(poisoned)?
            .insert((shader, entry), pipeline.clone());
        Ok(pipeline)
    }
}
