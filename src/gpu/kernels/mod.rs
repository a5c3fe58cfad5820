//! GPU launchers, one per shader stem. A launcher checks the shapes, writes the op's
//! uniform and builds the bind group once, at plan time, returning a `Dispatch`.

pub mod activation;
pub mod add;
pub mod batchnorm;
pub mod bias;
pub mod clip;
pub mod conv2d;
pub mod dropout;
pub mod embedding;
pub mod launch;
pub mod layernorm;
pub mod loss;
pub mod matmul;
pub mod optimizer;
pub mod pool2d;
pub mod recurrent;
pub mod stats;
