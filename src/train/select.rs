//! Choosing the executor. `auto` takes a hardware adapter when one exists; a software
//! adapter (lavapipe, WARP) runs a training step about ten times slower than the CPU
//! executor, so `auto` prefers the CPU over it and says so; `gpu` forces the GPU path.

use std::sync::Arc;

use crate::config::{DeviceChoice, TrainConfig};
use crate::cpu::executor::CpuExecutor;
use crate::error::Result;
use crate::executor::Executor;
use crate::gpu::executor::GpuExecutor;
use crate::gpu::{AdapterRequest, GpuContext};
use crate::plan::Plan;

/// The executor for `plan`, and one sentence on why it was chosen.
pub fn open_executor(config: &TrainConfig, plan: Plan) -> Result<(Box<dyn Executor>, String)> {
    let request = AdapterRequest {
        backend: config.backend.clone(),
        adapter: config.adapter.clone(),
        ..AdapterRequest::default()
    };
    // Naming an adapter or a backend is a request for the GPU.
    let explicit = request.adapter.is_some() || request.backend.is_some();
    match config.device {
        DeviceChoice::Cpu => Ok((
            Box::new(CpuExecutor::<f32>::new(plan)),
            "CPU executor, as requested".into(),
        )),
        DeviceChoice::Gpu => {
            let ctx = Arc::new(GpuContext::new(&request)?);
            let why = format!("GPU executor on {}, as requested", ctx.adapter.describe());
            Ok((Box::new(GpuExecutor::new(ctx, plan)?), why))
        }
        DeviceChoice::Auto => match GpuContext::new(&request) {
            Ok(ctx) if !ctx.adapter.is_software() || explicit => {
                let why = format!(
                    "GPU executor on {}, the best adapter found",
                    ctx.adapter.describe()
                );
                Ok((Box::new(GpuExecutor::new(Arc::new(ctx), plan)?), why))
            }
            Ok(ctx) => Ok((
                Box::new(CpuExecutor::<f32>::new(plan)),
                format!(
                    "CPU executor: the only GPU adapter is the software renderer {}, which trains far slower \
                     than the CPU executor (use --device gpu to run on it anyway)",
                    ctx.adapter.name
                ),
            )),
            Err(e) if explicit => Err(e),
            Err(e) => Ok((
                Box::new(CpuExecutor::<f32>::new(plan)),
                format!("CPU executor: {e}"),
            )),
        },
    }
}
