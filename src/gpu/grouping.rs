//! Grouping runs of independent ops of a step into few dispatches. Every dispatch in the
//! step's pass costs a barrier and a launch (about 15 µs on an H200 however small its
//! tensor), which dwarfs the work for the many small tensors of a deep net. A run of
//! consecutive optimizer ops (each touches only its own parameter's buffers) and a block of
//! consecutive statistics ops (they only read tensors that nothing in the block writes) may
//! run in any order inside, so each becomes one dispatch per group of tensors, carried by
//! the group's first op; the others keep their place in the op list with no dispatch. The
//! grouped kernels give the bits of the one-tensor ones, so nothing can observe this. Where
//! the device can run them, they take every such op (a group of one too), and the
//! executor builds no one-tensor dispatch for it.

use std::ops::Range;

use super::Dispatch;
use super::context::GpuContext;
use super::kernels::{conv2d, optimizer, stats};
use crate::error::Result;
use crate::plan::{Op, Plan, StatsClass};

/// The maximal runs of consecutive ops of `ops` that `member` accepts.
fn runs(ops: &[Op], member: impl Fn(&Op) -> bool) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (k, op) in ops.iter().enumerate() {
        match (member(op), start) {
            (true, None) => start = Some(k),
            (false, Some(s)) => {
                out.push(s..k);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..ops.len());
    }
    out
}

/// Whether the grouping takes `op` on this device (the executor then builds nothing for it).
pub(super) fn groups(ctx: &GpuContext, op: &Op) -> bool {
    match op {
        Op::Optimizer { .. } => optimizer::multi_capacity(ctx) >= 2,
        Op::Stats { .. } => stats::multi_capacity(ctx) >= 2,
        _ => false,
    }
}

/// Per op of the step: whether it is a convolution's backward-weight pass whose split-K
/// sum may wait to run grouped with others, which holds where the device can group them
/// and nothing else in the forward and backward touches its dW (a weight used once: a
/// shared weight's gradient is accumulated by several ops, in order).
pub(super) fn deferrable_split_k_sums(ctx: &GpuContext, plan: &Plan) -> Vec<bool> {
    let mut out = vec![false; plan.ops.len()];
    if conv2d::sum_multi_capacity(ctx) < 2 {
        return out;
    }
    let touches = |op: &Op, b: crate::plan::BufId| {
        op.buffers()
            .iter()
            .any(|&o| plan.resolve(o) == plan.resolve(b))
    };
    for (k, op) in plan.ops.iter().enumerate().take(plan.backward_end) {
        if let Op::Conv2dBackwardWeight { dw, .. } = *op {
            out[k] = plan.ops[..plan.backward_end]
                .iter()
                .enumerate()
                .all(|(i, o)| i == k || !touches(o, dw));
        }
    }
    out
}

/// The deferred split-K sums (op index, sum, in op order): runs of up to
/// `conv2d::sum_multi_capacity` consecutive ones become one
/// `conv2d_backward_weight_sum_multi` dispatch, recorded after the pass of the run's last
/// op. Each sum then runs later than its pass alone would have, but before the end of the
/// backward, and nothing touches its dW in between (`deferrable_split_k_sums`); the
/// grouped kernel gives the bits of the one-pass sum.
pub(super) fn group_split_k_sums(
    ctx: &GpuContext,
    sums: Vec<(usize, conv2d::SplitKSum)>,
    op_dispatches: &mut [Vec<Dispatch>],
) -> Result<()> {
    let multi = conv2d::sum_multi_capacity(ctx).max(1);
    for group in sums.chunks(multi) {
        let last = group[group.len() - 1].0;
        let d = match group {
            [(_, alone)] => alone.alone.clone(),
            _ => {
                let members: Vec<&conv2d::SplitKSum> = group.iter().map(|(_, m)| m).collect();
                conv2d::conv2d_backward_weight_sum_multi(ctx, &members)?
            }
        };
        op_dispatches[last].push(d);
    }
    Ok(())
}

/// Puts a group's dispatch on its first op and clears the others.
fn carry(op_dispatches: &mut [Vec<Dispatch>], group: &[usize], d: Dispatch) {
    op_dispatches[group[0]] = vec![d];
    for &k in &group[1..] {
        op_dispatches[k].clear();
    }
}

/// Each run of optimizer ops: `optimizer_update_multi` dispatches of up to
/// `optimizer::MULTI` parameters (where the device binds enough storage buffers).
pub(super) fn group_optimizer(
    ctx: &GpuContext,
    plan: &Plan,
    buffers: &[wgpu::Buffer],
    step_uniform: &wgpu::Buffer,
    op_dispatches: &mut [Vec<Dispatch>],
) -> Result<()> {
    let multi = optimizer::multi_capacity(ctx);
    if multi < 2 {
        return Ok(());
    }
    let buf = |id: crate::plan::BufId| &buffers[id.0];
    for run in runs(&plan.ops, |op| matches!(op, Op::Optimizer { .. })) {
        let members: Vec<usize> = run.collect();
        for group in members.chunks(multi) {
            let tensors: Vec<optimizer::OptimizerTensor<'_>> = group
                .iter()
                .map(|&k| {
                    let Op::Optimizer { param } = plan.ops[k] else {
                        unreachable!("the run holds optimizer ops only")
                    };
                    let p = &plan.params[param];
                    optimizer::OptimizerTensor {
                        param: buf(p.value),
                        grad: buf(p.grad),
                        state1: p.state.first().map(|&s| buf(s)),
                        state2: p.state.get(1).map(|&s| buf(s)),
                        update: buf(p.update),
                        len: p.numel,
                    }
                })
                .collect();
            let d =
                optimizer::optimizer_update_multi(ctx, &plan.optimizer, step_uniform, &tensors)?;
            carry(op_dispatches, group, d);
        }
    }
    Ok(())
}

/// Each block of statistics ops: `stats_partial_multi` dispatches of up to
/// `stats::multi_capacity` tensors (the device's width) of one class (the class decides
/// whether a step runs them).
pub(super) fn group_statistics(
    ctx: &GpuContext,
    plan: &Plan,
    buffers: &[wgpu::Buffer],
    op_class: &[Option<StatsClass>],
    partial_base: &[usize],
    partials: &wgpu::Buffer,
    op_dispatches: &mut [Vec<Dispatch>],
) -> Result<()> {
    let multi = stats::multi_capacity(ctx);
    if multi < 2 {
        return Ok(());
    }
    for block in runs(&plan.ops, |op| matches!(op, Op::Stats { .. })) {
        let mut classes: Vec<Option<StatsClass>> = Vec::new();
        for class in &op_class[block.clone()] {
            if !classes.contains(class) {
                classes.push(*class);
            }
        }
        for class in classes {
            let members: Vec<usize> = block.clone().filter(|&k| op_class[k] == class).collect();
            for group in members.chunks(multi) {
                let jobs: Vec<stats::PartialJob<'_>> = group
                    .iter()
                    .map(|&k| {
                        let Op::Stats { job } = plan.ops[k] else {
                            unreachable!("the block holds statistics ops only")
                        };
                        let j = &plan.stats_jobs[job];
                        stats::PartialJob {
                            x: &buffers[j.buffer.0],
                            len: j.len,
                            saturation: j.saturation,
                            partial_base: partial_base[job],
                        }
                    })
                    .collect();
                carry(
                    op_dispatches,
                    group,
                    stats::stats_partial_multi(ctx, &jobs, partials)?,
                );
            }
        }
    }
    Ok(())
}
