//! A model is a named DAG of nodes over tensors, with its parameters held apart.
//!
//! Nodes name their inputs by index, so a tensor may feed several nodes (shortcut
//! connections), and parameters are referenced by id, so one parameter may serve several
//! nodes (weights shared across time steps): the plan accumulates the gradients of every
//! use. Dense networks are built by `ModelSpec::mlp`; shapes are per sample, the batch
//! dimension is added by the plan.

pub mod builder;
pub mod file;
pub mod recurrent;
pub mod spec;
pub mod zoo;

pub use spec::{LossKind, ModelSpec, Node, NodeId, NodeOp, ParamId, ParamSpec, RecurrentOp};
