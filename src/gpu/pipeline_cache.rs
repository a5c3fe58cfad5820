//! Compute pipelines cached by (shader, entry point): a plan that binds the same kernel for
//! twenty layers compiles it once. Pipelines use wgpu's automatic layout, derived from the
//! WGSL declarations, so the bindings are written down once, in the shader. A kernel with
//! pipeline-overridable constants (the tile sizes of shaders/matmul_tiled.wgsl) gets one
//! pipeline per set of values, cached under (shader, entry point, values).

use std::collections::HashMap;
use std::sync::Mutex;

use super::context::GpuContext;
use super::shaders;
use crate::error::{Error, Result};

#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(&'static str, &'static str, String), wgpu::ComputePipeline>>,
}

/// How a pipeline specializes its shader: values of `override` constants, and whether
/// workgroup memory must be zeroed at launch (WebGPU's default; a kernel that writes every
/// workgroup element before reading it can skip that cost).
#[derive(Clone, Copy, Debug)]
pub struct Specialization<'a> {
    pub constants: &'a [(&'static str, f64)],
    pub zero_workgroup_memory: bool,
}

impl Default for Specialization<'_> {
    fn default() -> Self {
        Specialization {
            constants: &[],
            zero_workgroup_memory: true,
        }
    }
}

impl Specialization<'_> {
    /// The cache key: every value, in the order given, and the zeroing flag.
    fn key(&self) -> String {
        let mut k = String::new();
        for (name, v) in self.constants {
            k.push_str(&format!("{name}={v};"));
        }
        if !self.zero_workgroup_memory {
            k.push_str("nozero");
        }
        k
    }
}

impl GpuContext {
    /// The pipeline for `entry` in `shaders/<shader>.wgsl`, compiled on first use.
    pub fn pipeline(
        &self,
        shader: &'static str,
        entry: &'static str,
    ) -> Result<wgpu::ComputePipeline> {
        self.pipeline_with(shader, entry, Specialization::default())
    }

    /// The pipeline for `entry` in `shaders/<shader>.wgsl` specialized by `spec`, compiled
    /// on first use.
    pub fn pipeline_with(
        &self,
        shader: &'static str,
        entry: &'static str,
        spec: Specialization<'_>,
    ) -> Result<wgpu::ComputePipeline> {
        let key = (shader, entry, spec.key());
        fn poisoned<T>(_: T) -> Error {
            Error::Gpu {
                during: "pipeline cache".into(),
                message: "lock poisoned".into(),
            }
        }
        if let Some(p) = self.pipelines.pipelines.lock().map_err(poisoned)?.get(&key) {
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
                    let desc = wgpu::ShaderModuleDescriptor {
                        label: Some(shader),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    };
                    let m = if shaders::trusted(shader) {
                        let checks = wgpu::ShaderRuntimeChecks {
                            force_loop_bounding: false,
                            int_div_checks: false,
                            ..wgpu::ShaderRuntimeChecks::checked()
                        };
                        // SAFETY: wgpu requires that such a shader has no infinite loop and
                        // no division by zero. Every loop of the shaders listed in
                        // `shaders::NO_LOOP_BOUNDING` runs to a bound that is a constant or
                        // a uniform with a positive constant step, and every divisor is a
                        // constant or a size its launcher validated as ≥ 1; bounds checks
                        // stay on.
                        unsafe { self.device.create_shader_module_trusted(desc, checks) }
                    } else {
                        self.device.create_shader_module(desc)
                    };
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
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: spec.constants,
                    zero_initialize_workgroup_memory: spec.zero_workgroup_memory,
                },
                cache: None,
            });
        self.check(&format!("creating pipeline {shader}::{entry}"))?;
        self.pipelines
            .pipelines
            .lock()
            .map_err(poisoned)?
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }
}
