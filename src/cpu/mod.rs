//! The CPU executor and the CPU twin of every kernel. Each twin is generic over the element
//! type: f32 to match the GPU, f64 for finite-difference checks.

#[macro_use]
mod multiversion;

pub mod activation;
pub mod add;
pub mod aligned;
mod batch_parts;
pub mod batchnorm;
pub mod bias;
pub mod clip;
pub mod conv2d;
mod conv2d_channels;
mod conv2d_depthwise;
mod conv2d_depthwise_lanes;
mod conv2d_direct;
mod conv2d_direct_kernels;
mod conv2d_phases;
mod conv2d_strided_input;
mod conv2d_weight_nhwc;
pub mod dropout;
pub mod element;
pub mod embedding;
pub mod executor;
pub mod layernorm;
pub mod loss;
pub mod matmul;
pub mod optimizer;
pub mod pool;
pub mod pool2d;
mod prefetch;
pub mod recurrent;
mod recurrent_cells;
mod rows;
pub mod stats;
mod stats_histogram;
mod stats_schedule;
mod streaming;
pub mod transpose;
pub mod vector_math;

pub use element::Element;
