//! The op vocabulary shared by both executors: the enums and parameter records that a plan's
//! op list is made of. The GPU launchers (`gpu::kernels`) and the CPU twins (`cpu`) both take
//! these, so an op means the same thing on either side.

pub mod activation;
pub mod batchnorm;
pub mod conv2d;
pub mod matmul;
pub mod optimizer;
pub mod pool2d;
pub mod recurrent;

pub use activation::Activation;
pub use conv2d::Conv2dShape;
pub use matmul::{MatmulLayout, MatmulShape};
pub use optimizer::{OptimizerKind, OptimizerParams, StepScalars, StepUniform};
pub use pool2d::Pool2dShape;
pub use recurrent::{CellKind, RecurrentShape};
