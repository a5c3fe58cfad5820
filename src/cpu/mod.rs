//! The CPU executor and the CPU twin of every kernel. Each twin is generic over the element
//! type: f32 to match the GPU, f64 for finite-difference checks.

pub mod activation;
pub mod bias;
pub mod clip;
pub mod conv2d;
pub mod element;
pub mod executor;
pub mod loss;
pub mod matmul;
pub mod optimizer;
pub mod stats;

pub use element::Element;
