//! Sharing storage between activation gradients whose lifetimes do not overlap.
//!
//! Each activation gradient lives from the first op of the step that names it to the last
//! one (a copy's destination from the op before the copy, see below). Two of the same size whose lifetimes are disjoint, endpoints included (so no op ever
//! reads one and writes the other in the same dispatch), can use one buffer. Gradients that
//! the statistics measure at the end of the step, or that evaluation touches, keep their
//! own buffers: the statistics (and the non-finite tracing that reads them) name a tensor by
//! its buffer. Buffers are assigned greedily in order of first use (interval colouring).

use super::{BufId, BufferRole, Op, Plan};

/// Marks shareable activation-gradient buffers of `plan` as aliases of one another.
pub fn share_activation_grads(plan: &mut Plan) {
    let n = plan.buffers.len();
    let mut protected = vec![false; n];
    for job in &plan.stats_jobs {
        protected[job.buffer.0] = true;
    }
    for layer in &plan.layers {
        protected[layer.output_grad.0] = true;
    }
    for op in &plan.eval {
        for b in op.buffers() {
            protected[b.0] = true;
        }
    }
    // [first, last] op index of every buffer the training ops name.
    let mut span: Vec<Option<(usize, usize)>> = vec![None; n];
    for (i, op) in plan.ops.iter().enumerate() {
        // A copy's destination counts as live from the op before the copy: the GPU
        // executor writes it in the pass that forms the copy's source (gpu::fusion), which
        // reads that op's inputs.
        let copy_dst = match op {
            Op::CopyTensor { dst, .. } => Some(*dst),
            _ => None,
        };
        for b in op.buffers() {
            let first = if Some(b) == copy_dst {
                i.saturating_sub(1)
            } else {
                i
            };
            let s = span[b.0].get_or_insert((first, i));
            s.1 = i;
        }
    }
    let mut candidates: Vec<(usize, usize, usize)> = (0..n)
        .filter(|&b| plan.buffers[b].role == BufferRole::ActivationGrad && !protected[b])
        .filter_map(|b| span[b].map(|(first, last)| (first, last, b)))
        .collect();
    candidates.sort();
    // Each slot: (representative buffer, last op index using it).
    let mut slots: Vec<(usize, usize)> = Vec::new();
    for (first, last, b) in candidates {
        let numel = plan.buffers[b].numel;
        let free = slots
            .iter_mut()
            .find(|(rep, end)| *end < first && plan.buffers[*rep].numel == numel);
        match free {
            Some(slot) => {
                plan.buffers[b].alias_of = Some(BufId(slot.0));
                slot.1 = last;
            }
            None => slots.push((b, last)),
        }
    }
}

impl Plan {
    /// The buffer whose storage `id` uses (itself unless it is an alias).
    pub fn resolve(&self, id: BufId) -> BufId {
        self.buffers[id.0].alias_of.unwrap_or(id)
    }
}
