//! Optimizer updates, element-wise over one parameter tensor: plain SGD and Adam (with
//! bias corrections), each also writing the update it applied (for its statistics).
//! Memory-bound: GB/s over param, grad and state read, and param, state and update written.

use super::case::{Case, Check, Pending, Tensor, Work};
use super::options::Family;
use crate::ops::{OptimizerKind, OptimizerParams, StepScalars, StepUniform};

/// One update of O(1) parameters by lr-sized steps: the device's sqrt and division are a
/// few ulp off (the kernel tests hold 1e-6 absolute); against max |param| 1e-5 is ample.
const TOL: f64 = 1e-5;
/// The update is measured against its own largest element, about lr·max|grad| = 1e-3, while
/// the device may round `param − lr·grad` as one fused multiply-add and the CPU as two
/// operations: a one-ulp difference in an O(1) parameter (1.2e-7) is then 1.2e-4 of the
/// update. (Seen on an NVIDIA H200 for SGD: 6e-5.) 1e-3 still fails on a wrong update.
const UPDATE_TOL: f64 = 1e-3;
const STEP: StepScalars = StepScalars { lr: 1e-3, t: 3 };

pub fn cases(len: usize) -> Vec<Pending> {
    [(OptimizerKind::Sgd, "sgd"), (OptimizerKind::Adam, "adam")]
        .into_iter()
        .map(|(kind, label)| {
            let f = Family::Optimizer;
            let name = format!("optimizer_update {label}");
            Pending::new(f, name.clone(), move || case(name, kind, len))
        })
        .collect()
}

fn case(name: String, kind: OptimizerKind, len: usize) -> Case {
    let p = OptimizerParams::new(kind);
    let slots = kind.state_slots();
    let state = |i: usize| {
        if slots > i {
            Check::Close(TOL)
        } else {
            Check::Input
        }
    };
    // Each slot read and written, param read and written, grad read, update written.
    let elems = len * (3 + 2 * slots + 1);
    Case {
        family: Family::Optimizer,
        name,
        shape: format!("{len} parameters"),
        work: Work::elems(elems),
        tensors: vec![
            Tensor::random("param", len, 91, -1.0, 1.0).checked(Check::Close(TOL)),
            Tensor::random("grad", len, 92, -1.0, 1.0),
            Tensor::random("state1", len, 93, -0.1, 0.1).checked(state(0)),
            // A second moment is a running mean of squares: non-negative.
            Tensor::random("state2", len, 94, 0.0, 0.01).checked(state(1)),
            Tensor::output("update", len, UPDATE_TOL),
        ],
        cpu: Box::new(move |t| {
            let (mut param, mut s1, mut s2, mut upd) =
                (t.take_f(0), t.take_f(2), t.take_f(3), t.take_f(4));
            crate::cpu::optimizer::optimizer_update(
                &p,
                &STEP,
                &mut param,
                t.f(1),
                &mut s1,
                &mut s2,
                &mut upd,
            );
            for (i, v) in [(0, param), (2, s1), (3, s2), (4, upd)] {
                t.put_f(i, v);
            }
            Ok(())
        }),
        gpu: Box::new(move |ctx, b| {
            let step = ctx.uniform("bench.step", &StepUniform::new(&STEP, &p))?;
            Ok(vec![crate::gpu::kernels::optimizer::optimizer_update(
                ctx,
                &p,
                &step,
                &b[0],
                &b[1],
                (slots >= 1).then_some(&b[2]),
                (slots >= 2).then_some(&b[3]),
                &b[4],
                len,
            )?])
        }),
    }
}
