//! When the CPU executor takes the statistics records of large activations and activation
//! gradients: right after the last op of the step that names the tensor, rather than where
//! the plan lists them.
//!
//! Why: the plan lists the statistics of every layer's weights, gradients, output and
//! output gradient after the whole backward pass (the GPU executor groups them there into
//! few dispatches). By then a large activation written early in the forward pass has left
//! the caches, and its sweep reads it from memory: on resnet-20 at batch 32 on 28×28 inputs
//! the statistics took 7.3 ms of a 90 ms step on one core, most of it in the activations'
//! sweeps at about 15 GB/s, where the same sweep of a tensor in cache runs at 17–18
//! (BENCHMARKS.md). Right after the last op that reads or writes the tensor, it is still
//! in cache. The records are the same (a sweep only reads the tensor, and nothing writes it
//! later in the step).
//!
//! Only layer outputs and output gradients of at least `MOVE_MIN_ELEMENTS` move. Weights
//! and gradients stay: in a dense net they are written late in the step and large, and
//! moving the first layer's (784×256 at batch 128) made the MLP's step 0.3–0.8 % slower on
//! one core, where the activations of resnet-20's first stages (200 K to 520 K values at
//! batch 32) gain.
//!
//! A statistics op moves back past ops that do not name its tensor, and past other
//! statistics and dead-unit ops (which only read); it stops at the optimizer and clipping
//! ops, which reach tensors through parameter or job indices rather than naming them (so
//! the statistics of updates, listed after the optimizer, stay where they are). Buffers are
//! compared after resolving aliases; the plan gives every measured tensor a buffer of its
//! own (plan/share.rs).

use crate::plan::{Op, Plan, TensorKind};

/// Activations below this many elements keep their place: they are still in cache at the
/// end of the step, and each moved op is a parallel region of its own where the listed
/// block is one for all.
const MOVE_MIN_ELEMENTS: usize = 1 << 17;

/// The moved statistics ops of a plan's training op list.
#[derive(Debug, Default)]
pub struct StatsSchedule {
    /// Per op index: the statistics ops to run right after it, in their listed order.
    after: Vec<Vec<usize>>,
    /// Per op index: for a moved statistics op, the index of the op it runs after.
    moved_to: Vec<Option<usize>>,
}

impl StatsSchedule {
    pub fn new(plan: &Plan) -> Self {
        Self::moving_from(plan, MOVE_MIN_ELEMENTS)
    }

    /// The schedule that moves the statistics of tensors of at least `min_elements`.
    pub fn moving_from(plan: &Plan, min_elements: usize) -> Self {
        let n = plan.ops.len();
        let mut schedule = StatsSchedule {
            after: vec![Vec::new(); n],
            moved_to: vec![None; n],
        };
        for (k, op) in plan.ops.iter().enumerate() {
            let Op::Stats { job } = *op else { continue };
            let spec = &plan.stats_jobs[job];
            if spec.len < min_elements
                || !matches!(spec.kind, TensorKind::Output | TensorKind::OutputGrad)
            {
                continue;
            }
            let target = plan.resolve(plan.stats_jobs[job].buffer);
            let mut at = None;
            for i in (0..k).rev() {
                match &plan.ops[i] {
                    Op::Stats { .. } | Op::DeadUnits { .. } => continue,
                    Op::Optimizer { .. } | Op::ClipNorm { .. } | Op::ClipValue { .. } => {
                        at = Some(i);
                        break;
                    }
                    other => {
                        if other
                            .buffers()
                            .into_iter()
                            .any(|b| plan.resolve(b) == target)
                        {
                            at = Some(i);
                            break;
                        }
                    }
                }
            }
            // Only a move past at least one op that is not a statistics op gains anything.
            if let Some(i) = at
                && plan.ops[i + 1..k]
                    .iter()
                    .any(|op| !matches!(op, Op::Stats { .. } | Op::DeadUnits { .. }))
            {
                schedule.after[i].push(k);
                schedule.moved_to[k] = Some(i);
            }
        }
        schedule
    }

    /// The statistics ops to run right after op `i`.
    pub fn after(&self, i: usize) -> &[usize] {
        self.after.get(i).map_or(&[], Vec::as_slice)
    }

    /// Whether statistics op `k` has already run in a pass over the ops from `start`: it
    /// moved to after an op that the pass ran.
    pub fn taken(&self, k: usize, start: usize) -> bool {
        self.moved_to
            .get(k)
            .copied()
            .flatten()
            .is_some_and(|i| i >= start && i < k)
    }
}
