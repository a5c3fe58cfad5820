//! gradscope: a training engine whose kernels are WGSL compute shaders run through wgpu, and
//! whose every step reads back per-layer gradient statistics, so that vanishing and exploding
//! gradients are seen where they happen. See ARCHITECTURE.md for the flow of a run.

pub mod cpu;
pub mod error;
pub mod gpu;
pub mod init;
pub mod ops;
pub mod rng;
pub mod stats;
pub mod tensor;

pub use error::{Error, Result};
