//! The GPU side: context and adapter choice, buffers, pipelines, launchers, executor.

pub mod autotune;
pub mod buffer;
pub mod context;
pub mod dispatch;
pub mod executor;
pub mod fusion;
mod grouping;
pub mod kernels;
pub mod pipeline_cache;
pub mod profile;
pub mod readback;
pub mod shaders;
pub mod stats_multi;
pub mod timer;
pub mod timing;

pub use context::{AdapterRequest, AdapterSummary, GpuContext, list_adapters};
pub use dispatch::Dispatch;
