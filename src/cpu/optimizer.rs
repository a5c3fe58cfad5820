//! CPU twin of shaders/optimizer.wgsl. (Stub: the kernel-family owner fills this in.)

use crate::cpu::Element;
use crate::ops::{OptimizerParams, StepScalars};

/// One optimizer step on one parameter tensor, with torch.optim's semantics. `state1` and
/// `state2` are the optimizer's state slots (empty where the optimizer keeps fewer);
/// `update` receives the change applied to each element (param_new − param_old).
pub fn optimizer_update<T: Element>(
    p: &OptimizerParams,
    s: &StepScalars,
    param: &mut [T],
    grad: &[T],
    state1: &mut [T],
    state2: &mut [T],
    update: &mut [T],
) {
    let _ = (p, s, param, grad, state1, state2, update);
    unimplemented!()
}
