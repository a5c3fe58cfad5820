//! Choosing the executor. `auto` takes a hardware adapter when one exists; a software
//! adapter (lavapipe, WARP) runs a training step about ten times slower than the CPU
//! executor, so `auto` prefers the CPU over it and says so; `gpu` forces the GPU path.
//!
//! The choice is split in two so that a study (many runs, one device) opens the adapter
//! once: `choose_device` decides and opens the context, `open_on` builds an executor for a
//! plan on what was chosen.

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
    let (ctx, why) = choose_device(config)?;
    Ok((open_on(ctx.as_ref(), plan)?, why))
}

/// The GPU context a run of `config` trains on (`None`: the CPU executor), and why.
pub fn choose_device(config: &TrainConfig) -> Result<(Option<Arc<GpuContext>>, String)> {
    let request = AdapterRequest {
        backend: config.backend.clone(),
        adapter: config.adapter.clone(),
        ..AdapterRequest::default()
    };
    // Naming an adapter or a backend is a request for the GPU.
    let explicit = request.adapter.is_some() || request.backend.is_some();
    match config.device {
        DeviceChoice::Cpu => Ok((None, "CPU executor, as requested".into())),
        DeviceChoice::Gpu => {
            let ctx = Arc::new(GpuContext::new(&request)?);
            let why = format!("GPU executor on {}, as requested", ctx.adapter.describe());
            Ok((Some(ctx), why))
        }
        DeviceChoice::Auto => match GpuContext::new(&request) {
            Ok(ctx) if !ctx.adapter.is_software() || explicit => {
                let why = format!(
                    "GPU executor on {}, the best adapter found",
                    ctx.adapter.describe()
                );
                Ok((Some(Arc::new(ctx)), why))
            }
            Ok(ctx) => Ok((
                None,
                format!(
                    "CPU executor: the only GPU adapter is the software renderer {}, which trains far slower \
                     than the CPU executor (use --device gpu to run on it anyway)",
                    ctx.adapter.name
                ),
            )),
            Err(e) if explicit => Err(e),
            Err(e) => Ok((None, format!("CPU executor: {e}"))),
        },
    }
}

/// An executor for `plan` on `ctx` (the GPU), or the CPU executor when `ctx` is `None`.
pub fn open_on(ctx: Option<&Arc<GpuContext>>, plan: Plan) -> Result<Box<dyn Executor>> {
    Ok(match ctx {
        Some(ctx) => Box::new(GpuExecutor::new(ctx.clone(), plan)?),
        None => Box::new(CpuExecutor::<f32>::try_new(plan)?),
    })
}
