//! gradscope: a training engine whose kernels are WGSL compute shaders run through wgpu, and
//! whose every step reads back per-layer gradient statistics, so that vanishing and exploding
//! gradients are seen where they happen. See ARCHITECTURE.md for the flow of a run.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod data;
pub mod diagnosis;
pub mod error;
pub mod executor;
pub mod gpu;
pub mod host_memory;
pub mod init;
pub mod model;
pub mod ops;
pub mod plan;
pub mod profile;
pub mod report;
pub mod rng;
pub mod stats;
pub mod study;
pub mod tensor;
pub mod tensorboard;
pub mod train;

pub use error::{Error, Result};
