//! The CPU executor: runs a plan's op list with the CPU twin of every kernel. Generic over
//! the element type, so the same executor trains in f32 and checks gradients in f64.

use super::{
    Element, activation, add, batchnorm, bias, clip, conv2d, dropout, embedding, layernorm, loss,
    matmul, optimizer, pool, pool2d, recurrent, stats, stats_schedule::StatsSchedule,
};
use crate::cpu::activation::FusedActivation;
use crate::cpu::aligned::AlignedBuf;
use crate::data::loader::one_hot;
use crate::error::{Error, Result};
use crate::executor::{Executor, StatsLevel, StepReport, check_batch};
use crate::model::LossKind;
use crate::ops::Activation;
use crate::ops::StepScalars;
use crate::plan::fusion::{Fused, find_fusions};
use crate::plan::{BufId, Op, Plan};
use crate::stats::RawStats;
use crate::tensor::DType;

/// A buffer of the plan, in host memory.
enum Storage<T> {
    Float(AlignedBuf<T>),
    Index(Vec<u32>),
}

pub struct CpuExecutor<T: Element = f32> {
    plan: Plan,
    storage: Vec<Storage<T>>,
    records: Vec<RawStats>,
    dead: Vec<u32>,
    reports: Vec<StepReport>,
    targets_host: Vec<f32>,
    /// The global-norm op's decision this step (None without that op).
    clip: Option<clip::ClipDecision>,
    /// The last decision of any step (the halt guard latches on it).
    last_clip: Option<clip::ClipDecision>,
    /// The step being run (dropout's mask depends on it).
    step: u64,
    /// Per-op timing of every step, when profiling (`gradscope train --profile`).
    profile: Option<crate::profile::ProfileBuilder>,
    /// Scratch of the kernels that need one (convolutions' patch matrices and partial
    /// sums, statistics' chunk records): sized by the first step, reused by every later one,
    /// so a warm step allocates nothing here.
    scratch: Scratch<T>,
    /// `Plan::grad_jobs`, listed once (the global-norm op reads those records every step).
    grad_jobs: Vec<usize>,
    /// Statistics ops taken right after the last op that names their tensor.
    stats_schedule: StatsSchedule,
    /// Per op of the training and the evaluation lists: the activation forward it writes
    /// too (a BatchNorm or an Add followed by one, `fused_activations`), or whether an
    /// earlier op wrote it.
    fused: Vec<Fused>,
    eval_fused: Vec<Fused>,
    /// Per op of the two lists: a fused BatchNorm or Add whose pre-activation y no op reads
    /// (`unread_pre_activations`), so that its pass writes only z.
    y_unread: Vec<bool>,
    eval_y_unread: Vec<bool>,
}

/// The fusions the CPU twins have a pass for: an activation forward after a BatchNorm
/// forward or an Add (plan::fusion), written row by row (chunk by chunk) while the values
/// it reads are in cache; the other patterns run as separate ops.
fn fused_activations(plan: &Plan, ops: &[Op]) -> Vec<Fused> {
    let found = find_fusions(plan, ops);
    let mut out = vec![Fused::Alone; ops.len()];
    for (i, f) in found.iter().enumerate() {
        if let Fused::WithAct(..) = f {
            out[i] = *f;
            out[i + 1] = Fused::Absorbed;
        }
    }
    out
}

/// Per op of `ops`: whether it is a BatchNorm or an Add that applies a ReLU in its own pass
/// (`fused`) and whose output y, the ReLU's input, no op reads. The ReLU's backward reads
/// the ReLU's output instead (`activation_backward`), so then only the fused pass itself
/// names y, and y need not be written at all: on resnet-20 that is a tensor's worth of
/// stores saved in each of its 19 ReLUs (BENCHMARKS.md). y is read where another op names
/// it, where the statistics measure it, or where it is a layer's output (dead units).
fn unread_pre_activations(plan: &Plan, ops: &[Op], fused: &[Fused]) -> Vec<bool> {
    let measured: Vec<BufId> = plan
        .stats_jobs
        .iter()
        .map(|j| j.buffer)
        .chain(plan.layers.iter().map(|l| l.output))
        .map(|b| plan.resolve(b))
        .collect();
    let mut out = vec![false; ops.len()];
    for (i, f) in fused.iter().enumerate() {
        let Fused::WithAct(Activation::Relu, _) = f else {
            continue;
        };
        let y = match ops[i] {
            Op::BatchNormForward { y, .. } | Op::AddForward { y, .. } => plan.resolve(y),
            _ => continue,
        };
        let read_elsewhere = ops.iter().enumerate().any(|(k, op)| {
            let relu_backward = matches!(
                *op,
                Op::ActivationBackward { act: Activation::Relu, x, .. } if plan.resolve(x) == y
            );
            k != i
                && k != i + 1
                && !relu_backward
                && op.buffers().into_iter().any(|b| plan.resolve(b) == y)
        });
        out[i] = !read_elsewhere && !measured.contains(&y);
    }
    out
}

/// Working memory the kernels borrow for one op; grown on first use, never shrunk.
#[derive(Default)]
struct Scratch<T> {
    /// The convolutions' patch matrices and planes, an accumulating embedding gradient's
    /// sums, and LayerNorm's row lanes of column sums.
    conv: AlignedBuf<T>,
    /// A recurrent layer's per-step work vectors (forward or backward).
    recurrent: AlignedBuf<T>,
    stats: Vec<RawStats>,
    /// Per statistics job: its chunk records, and whether it is in the block being reduced.
    stats_jobs: Vec<Vec<RawStats>>,
    in_block: Vec<bool>,
}

/// Marks in `in_block` (one flag per statistics job) the jobs of the statistics ops among
/// `ops` (op indices) that run at `level`, and no other.
fn mark_stats_jobs(
    in_block: &mut Vec<bool>,
    plan: &Plan,
    ops: impl Iterator<Item = usize>,
    level: StatsLevel,
) {
    in_block.clear();
    in_block.resize(plan.stats_jobs.len(), false);
    for k in ops {
        if let Op::Stats { job } = plan.ops[k]
            && level.runs(plan.stats_jobs[job].class)
        {
            in_block[job] = true;
        }
    }
}

impl<T: Element> CpuExecutor<T> {
    /// `new`, after checking that the plan's buffers fit the machine's free memory: a plan
    /// too large is refused with its size instead of being killed while allocating.
    pub fn try_new(plan: Plan) -> Result<Self> {
        // The plan counts 4-byte elements; this executor stores T.
        let bytes = plan.total_bytes() / 4 * std::mem::size_of::<T>() as u64;
        crate::host_memory::check(
            "the plan (parameters, gradients, optimizer state, activations)",
            bytes,
            "reduce the batch size or the layer widths (`--dry-run` prints the plan's memory)",
        )?;
        Ok(Self::new(plan))
    }

    /// Allocates every buffer of the plan, zeroed.
    pub fn new(plan: Plan) -> Self {
        let storage = plan
            .buffers
            .iter()
            .map(|b| match b.dtype {
                _ if b.alias_of.is_some() => Storage::Float(AlignedBuf::default()),
                DType::U32 => Storage::Index(vec![0; b.numel]),
                _ => Storage::Float(AlignedBuf::zeroed(b.numel)),
            })
            .collect();
        let records = vec![RawStats::empty(); plan.stats_jobs.len()];
        let dead = vec![0; plan.dead_unit_layers.len()];
        let targets_host = vec![
            0.0;
            plan.targets
                .map_or(0, |_| plan.batch * plan.label_rows * plan.classes)
        ];
        let grad_jobs = plan.grad_jobs();
        let stats_schedule = StatsSchedule::new(&plan);
        let fused = fused_activations(&plan, &plan.ops);
        let eval_fused = fused_activations(&plan, &plan.eval);
        let y_unread = unread_pre_activations(&plan, &plan.ops, &fused);
        let eval_y_unread = unread_pre_activations(&plan, &plan.eval, &eval_fused);
        CpuExecutor {
            plan,
            storage,
            records,
            dead,
            reports: Vec::new(),
            targets_host,
            clip: None,
            last_clip: None,
            step: 0,
            profile: None,
            scratch: Scratch::default(),
            grad_jobs,
            stats_schedule,
            fused,
            eval_fused,
            y_unread,
            eval_y_unread,
        }
    }

    /// The same executor with every op run on its own, as `GRADSCOPE_FUSE=0` runs them: for
    /// comparing the fused passes with the ops apart.
    pub fn without_fusion(mut self) -> Self {
        self.fused.fill(Fused::Alone);
        self.eval_fused.fill(Fused::Alone);
        self.y_unread.fill(false);
        self.eval_y_unread.fill(false);
        self
    }

    fn float(&self, id: BufId) -> &[T] {
        match &self.storage[self.plan.resolve(id).0] {
            Storage::Float(v) => v,
            Storage::Index(_) => &[],
        }
    }

    fn index(&self, id: BufId) -> &[u32] {
        match &self.storage[id.0] {
            Storage::Index(v) => v,
            Storage::Float(_) => &[],
        }
    }

    /// Takes a float buffer out to write it while others are read; `put` returns it.
    fn take(&mut self, id: BufId) -> AlignedBuf<T> {
        let id = self.plan.resolve(id);
        match &mut self.storage[id.0] {
            Storage::Float(v) => std::mem::take(v),
            Storage::Index(_) => AlignedBuf::default(),
        }
    }

    fn take_index(&mut self, id: BufId) -> Vec<u32> {
        match std::mem::replace(&mut self.storage[id.0], Storage::Index(Vec::new())) {
            Storage::Index(v) => v,
            Storage::Float(_) => Vec::new(),
        }
    }

    fn put(&mut self, id: BufId, v: AlignedBuf<T>) {
        let id = self.plan.resolve(id);
        self.storage[id.0] = Storage::Float(v);
    }

    /// The element-typed contents of a float buffer.
    pub fn tensor(&self, id: BufId) -> &[T] {
        self.float(id)
    }

    /// Overwrites a float buffer with element-typed data.
    pub fn set_tensor(&mut self, id: BufId, data: &[T]) -> Result<()> {
        let want = self.plan.buffer(id).numel;
        if data.len() != want {
            return Err(Error::shape(
                "write",
                format!(
                    "tensor `{}` has {want} elements, got {}",
                    self.plan.buffer(id).name,
                    data.len()
                ),
            ));
        }
        self.put(id, AlignedBuf::from_slice(data));
        Ok(())
    }

    /// Forward, loss and backward on the loaded batch, leaving every gradient in place;
    /// returns the mean loss. Used by gradient checks.
    pub fn compute_gradients(&mut self) -> Result<T> {
        let end = self.plan.backward_end;
        self.run_ops(0..end, None, StatsLevel::None)?;
        Ok(self.float(self.plan.loss_out)[0])
    }

    fn run_ops(
        &mut self,
        range: std::ops::Range<usize>,
        scalars: Option<StepScalars>,
        stats: StatsLevel,
    ) -> Result<()> {
        let start = std::time::Instant::now();
        let mut times = Vec::new();
        let profiling = self.profile.is_some() && scalars.is_some();
        let end = range.end;
        let mut i = range.start;
        while i < end {
            let op = self.plan.ops[i].clone();
            i += 1;
            if op
                .stats_class(&self.plan.stats_jobs)
                .is_some_and(|c| !stats.runs(c))
                || self.stats_schedule.taken(i - 1, range.start)
            {
                continue;
            }
            if !profiling && matches!(op, Op::Stats { .. }) {
                // The whole block of statistics ops that follows, in one parallel region.
                let block_end = (i..end)
                    .find(|&k| !matches!(self.plan.ops[k], Op::Stats { .. }))
                    .unwrap_or(end);
                let schedule = &self.stats_schedule;
                let ops = (i - 1..block_end).filter(|&k| !schedule.taken(k, range.start));
                mark_stats_jobs(&mut self.scratch.in_block, &self.plan, ops, stats);
                self.reduce_marked_stats();
                i = block_end;
                continue;
            }
            let i = i - 1;
            let act = match self.fused[i] {
                Fused::WithAct(act, z) => Some((act, z, !self.y_unread[i])),
                _ => None,
            };
            if matches!(self.fused[i], Fused::Absorbed) {
                // Written by the op before it.
            } else if profiling {
                // A host clock around each op: the twins run synchronously, so this is
                // the op's whole cost.
                let t = std::time::Instant::now();
                self.run_op(&op, scalars, act)?;
                times.push((i, t.elapsed().as_secs_f64()));
            } else {
                self.run_op(&op, scalars, act)?;
            }
            // The statistics of tensors this op was the last to name, while they are in
            // cache (cpu/stats_schedule.rs).
            let moved = self.stats_schedule.after(i);
            if moved.is_empty() {
                continue;
            }
            let moved = moved.iter().copied().filter(|&k| k < end);
            if profiling {
                for k in moved.collect::<Vec<_>>() {
                    let op = self.plan.ops[k].clone();
                    if op
                        .stats_class(&self.plan.stats_jobs)
                        .is_some_and(|c| stats.runs(c))
                    {
                        let t = std::time::Instant::now();
                        self.run_op(&op, scalars, None)?;
                        times.push((k, t.elapsed().as_secs_f64()));
                    }
                }
            } else {
                mark_stats_jobs(&mut self.scratch.in_block, &self.plan, moved, stats);
                self.reduce_marked_stats();
            }
        }
        if let (true, Some(p)) = (profiling, self.profile.as_mut()) {
            p.add(crate::profile::StepTimes {
                ops: times,
                step: start.elapsed().as_secs_f64(),
                host: None,
            });
        }
        Ok(())
    }

    /// The records of the statistics jobs marked in `scratch.in_block`
    /// (`mark_stats_jobs`), all in one rayon region: each job reduced exactly as its own op
    /// would (so the same bits), but the pool's threads wake once for the block instead of
    /// once per tensor, which at two threads cost more than the small tensors' work.
    fn reduce_marked_stats(&mut self) {
        use rayon::prelude::*;
        let jobs = self.plan.stats_jobs.len();
        let scratch = &mut self.scratch;
        scratch.stats_jobs.resize_with(jobs, Vec::new);
        let (plan, storage, in_block) = (&self.plan, &self.storage, &scratch.in_block);
        self.records
            .par_iter_mut()
            .zip(scratch.stats_jobs.par_iter_mut())
            .enumerate()
            .filter(|(j, _)| in_block[*j])
            .for_each(|(j, (record, partials))| {
                let spec = &plan.stats_jobs[j];
                let x: &[T] = match &storage[plan.resolve(spec.buffer).0] {
                    Storage::Float(v) => v,
                    Storage::Index(_) => &[],
                };
                *record = stats::stats_reduce_with(&x[..spec.len], spec.saturation, partials);
            });
    }

    /// The evaluation op list (forward in evaluation mode, then the loss).
    fn run_eval(&mut self) -> Result<()> {
        for i in 0..self.plan.eval.len() {
            let op = self.plan.eval[i].clone();
            match self.eval_fused[i] {
                Fused::Absorbed => {}
                Fused::WithAct(act, z) => {
                    let write_y = !self.eval_y_unread[i];
                    self.run_op(&op, None, Some((act, z, write_y)))?
                }
                _ => self.run_op(&op, None, None)?,
            }
        }
        Ok(())
    }

    /// Runs `op`; `act` = (f, z, write_y): a BatchNorm forward or an Add also writes z =
    /// f(y) (the activation forward after it, which is then skipped), and y only where
    /// `write_y`.
    fn run_op(
        &mut self,
        op: &Op,
        scalars: Option<StepScalars>,
        act: Option<(Activation, BufId, bool)>,
    ) -> Result<()> {
        match *op {
            Op::Matmul {
                layout,
                shape,
                a,
                b,
                c,
                accumulate,
            } => {
                let mut out = self.take(c);
                let r = matmul::matmul(
                    layout,
                    shape,
                    self.float(a),
                    self.float(b),
                    &mut out,
                    accumulate,
                );
                self.put(c, out);
                r?;
            }
            Op::BiasForward {
                y,
                bias: bb,
                rows,
                cols,
            } => {
                let mut out = self.take(y);
                bias::bias_forward(&mut out, self.float(bb), rows, cols);
                self.put(y, out);
            }
            Op::BiasBackward {
                dy,
                db,
                rows,
                cols,
                accumulate,
            } => {
                let mut out = self.take(db);
                bias::bias_backward(self.float(dy), &mut out, rows, cols, accumulate);
                self.put(db, out);
            }
            Op::ActivationForward { act, x, y, .. } => {
                let mut out = self.take(y);
                activation::activation_forward(act, self.float(x), &mut out);
                self.put(y, out);
            }
            Op::ActivationBackward {
                act, x, y, dy, dx, ..
            } => {
                let mut out = self.take(dx);
                activation::activation_backward(
                    act,
                    self.float(x),
                    self.float(y),
                    self.float(dy),
                    &mut out,
                );
                self.put(dx, out);
            }
            Op::Loss {
                kind,
                logits,
                dlogits,
                rows,
                classes,
            } => {
                let mut dl = self.take(dlogits);
                let mut rl = self.take(self.plan.row_loss);
                let mut rc = match std::mem::replace(
                    &mut self.storage[self.plan.row_correct.0],
                    Storage::Index(Vec::new()),
                ) {
                    Storage::Index(v) => v,
                    Storage::Float(_) => Vec::new(),
                };
                let labels = self.index(self.plan.labels);
                match kind {
                    LossKind::Xent => loss::softmax_xent_forward_backward(
                        self.float(logits),
                        labels,
                        &mut dl,
                        &mut rl,
                        &mut rc,
                        rows,
                        classes,
                    ),
                    LossKind::Mse => {
                        let targets = self.plan.targets.map_or(&[][..], |t| self.float(t));
                        loss::mse_forward_backward(
                            self.float(logits),
                            targets,
                            labels,
                            &mut dl,
                            &mut rl,
                            &mut rc,
                            rows,
                            classes,
                        )
                    }
                }
                let (sum, correct) = loss::loss_reduce(&rl, &rc);
                let out = self.plan.loss_out;
                let mut lo = self.take(out);
                lo.copy_from_slice(&[sum, T::from_f64(correct as f64)]);
                self.put(out, lo);
                self.put(dlogits, dl);
                self.put(self.plan.row_loss, rl);
                self.storage[self.plan.row_correct.0] = Storage::Index(rc);
            }
            Op::Stats { job } => {
                let spec = &self.plan.stats_jobs[job];
                let mut partials = std::mem::take(&mut self.scratch.stats);
                self.records[job] = stats::stats_reduce_with(
                    &self.float(spec.buffer)[..spec.len],
                    spec.saturation,
                    &mut partials,
                );
                self.scratch.stats = partials;
            }
            Op::DeadUnits { layer, counter } => {
                let l = &self.plan.layers[layer];
                self.dead[counter] =
                    stats::dead_units(self.float(l.output), self.plan.batch, l.units);
            }
            Op::Conv2dForward { shape, x, w, y } => {
                let mut out = self.take(y);
                let mut scratch = std::mem::take(&mut self.scratch.conv);
                conv2d::conv2d_forward_with(
                    &shape,
                    self.float(x),
                    self.float(w),
                    &mut out,
                    &mut scratch,
                );
                self.scratch.conv = scratch;
                self.put(y, out);
            }
            Op::Conv2dBiasForward { shape, y, bias } => {
                let mut out = self.take(y);
                conv2d::conv2d_bias_forward(&shape, &mut out, self.float(bias));
                self.put(y, out);
            }
            Op::Conv2dBackwardInput {
                shape,
                dy,
                w,
                dx,
                accumulate,
            } => {
                let mut out = self.take(dx);
                let mut scratch = std::mem::take(&mut self.scratch.conv);
                conv2d::conv2d_backward_input_with(
                    &shape,
                    self.float(dy),
                    self.float(w),
                    &mut out,
                    &mut scratch,
                    accumulate,
                );
                self.scratch.conv = scratch;
                self.put(dx, out);
            }
            Op::Conv2dBackwardWeight {
                shape,
                x,
                dy,
                dw,
                accumulate,
            } => {
                let mut out = self.take(dw);
                let mut scratch = std::mem::take(&mut self.scratch.conv);
                conv2d::conv2d_backward_weight_with(
                    &shape,
                    self.float(x),
                    self.float(dy),
                    &mut out,
                    accumulate,
                    &mut scratch,
                );
                self.scratch.conv = scratch;
                self.put(dw, out);
            }
            Op::Conv2dBackwardBias {
                shape,
                dy,
                db,
                accumulate,
            } => {
                let mut out = self.take(db);
                conv2d::conv2d_backward_bias(&shape, self.float(dy), &mut out, accumulate);
                self.put(db, out);
            }
            Op::BatchNormForward {
                train,
                n,
                c,
                s,
                x,
                y,
                gamma,
                beta,
                mean,
                inv_std,
                running_mean,
                running_var,
                eps,
                momentum,
            } => {
                let mut out = self.take(y);
                let mut rm = self.take(running_mean);
                let mut rv = self.take(running_var);
                let mut z = act.map(|(f, z, write_y)| (f, z, write_y, self.take(z)));
                let z_out = z.as_mut().map(|(f, _, write_y, v)| FusedActivation {
                    act: *f,
                    z: &mut v[..],
                    write_y: *write_y,
                });
                if train {
                    let mut m = self.take(mean);
                    let mut is = self.take(inv_std);
                    batchnorm::batchnorm_forward_train(
                        self.float(x),
                        self.float(gamma),
                        self.float(beta),
                        &mut out,
                        &mut m,
                        &mut is,
                        &mut rm,
                        &mut rv,
                        n,
                        c,
                        s,
                        eps as f64,
                        momentum as f64,
                        z_out,
                    );
                    self.put(mean, m);
                    self.put(inv_std, is);
                } else {
                    batchnorm::batchnorm_forward_eval(
                        self.float(x),
                        self.float(gamma),
                        self.float(beta),
                        &rm,
                        &rv,
                        &mut out,
                        n,
                        c,
                        s,
                        eps as f64,
                        z_out,
                    );
                }
                self.put(running_mean, rm);
                self.put(running_var, rv);
                self.put(y, out);
                if let Some((_, id, _, v)) = z {
                    self.put(id, v);
                }
            }
            Op::BatchNormBackward {
                n,
                c,
                s,
                x,
                dy,
                gamma,
                mean,
                inv_std,
                dx,
                dgamma,
                dbeta,
                acc_gamma,
                ..
            } => {
                let (mut odx, mut og, mut ob) =
                    (self.take(dx), self.take(dgamma), self.take(dbeta));
                batchnorm::batchnorm_backward(
                    self.float(x),
                    self.float(gamma),
                    self.float(dy),
                    self.float(mean),
                    self.float(inv_std),
                    &mut odx,
                    &mut og,
                    &mut ob,
                    n,
                    c,
                    s,
                    acc_gamma,
                );
                self.put(dx, odx);
                self.put(dgamma, og);
                self.put(dbeta, ob);
            }
            Op::LayerNormForward {
                rows,
                d,
                x,
                y,
                gamma,
                beta,
                mean,
                inv_std,
                eps,
            } => {
                let (mut out, mut m, mut is) = (self.take(y), self.take(mean), self.take(inv_std));
                layernorm::layernorm_forward(
                    self.float(x),
                    self.float(gamma),
                    self.float(beta),
                    &mut out,
                    &mut m,
                    &mut is,
                    rows,
                    d,
                    eps as f64,
                );
                self.put(y, out);
                self.put(mean, m);
                self.put(inv_std, is);
            }
            Op::LayerNormBackward {
                rows,
                d,
                x,
                dy,
                gamma,
                mean,
                inv_std,
                dx,
                dgamma,
                dbeta,
                acc_gamma,
                ..
            } => {
                let (mut odx, mut og, mut ob) =
                    (self.take(dx), self.take(dgamma), self.take(dbeta));
                let mut scratch = std::mem::take(&mut self.scratch.conv);
                layernorm::layernorm_backward_with(
                    self.float(x),
                    self.float(gamma),
                    self.float(dy),
                    self.float(mean),
                    self.float(inv_std),
                    &mut odx,
                    &mut og,
                    &mut ob,
                    rows,
                    d,
                    acc_gamma,
                    &mut scratch,
                );
                self.scratch.conv = scratch;
                self.put(dx, odx);
                self.put(dgamma, og);
                self.put(dbeta, ob);
            }
            Op::MaxPoolForward {
                shape,
                x,
                y,
                argmax,
            } => {
                let mut out = self.take(y);
                let mut am = self.take_index(argmax);
                pool2d::max_pool2d_forward(&shape, self.float(x), &mut out, &mut am);
                self.put(y, out);
                self.storage[argmax.0] = Storage::Index(am);
            }
            Op::MaxPoolBackward {
                shape,
                dy,
                argmax,
                dx,
            } => {
                let mut out = self.take(dx);
                pool2d::max_pool2d_backward(&shape, self.float(dy), self.index(argmax), &mut out);
                self.put(dx, out);
            }
            Op::AvgPoolForward { shape, x, y } => {
                let mut out = self.take(y);
                pool2d::avg_pool2d_forward(&shape, self.float(x), &mut out);
                self.put(y, out);
            }
            Op::AvgPoolBackward { shape, dy, dx } => {
                let mut out = self.take(dx);
                pool2d::avg_pool2d_backward(&shape, self.float(dy), &mut out);
                self.put(dx, out);
            }
            Op::GlobalAvgPoolForward { n, c, hw, x, y } => {
                let mut out = self.take(y);
                pool2d::global_avg_pool_forward(self.float(x), &mut out, n, c, hw, 1);
                self.put(y, out);
            }
            Op::GlobalAvgPoolBackward { n, c, hw, dy, dx } => {
                let mut out = self.take(dx);
                pool2d::global_avg_pool_backward(self.float(dy), &mut out, n, c, hw, 1);
                self.put(dx, out);
            }
            Op::DropoutForward { p, seed, x, y, .. } => {
                let mut out = self.take(y);
                dropout::dropout_forward(self.float(x), &mut out, p, seed, self.step as u32);
                self.put(y, out);
            }
            Op::DropoutBackward {
                p, seed, dy, dx, ..
            } => {
                let mut out = self.take(dx);
                dropout::dropout_backward(self.float(dy), &mut out, p, seed, self.step as u32);
                self.put(dx, out);
            }
            Op::AddForward { a, b, y, .. } => {
                let mut out = self.take(y);
                let mut z = act.map(|(f, z, write_y)| (f, z, write_y, self.take(z)));
                let z_out = z.as_mut().map(|(f, _, write_y, v)| FusedActivation {
                    act: *f,
                    z: &mut v[..],
                    write_y: *write_y,
                });
                add::add_forward(self.float(a), self.float(b), &mut out, z_out);
                self.put(y, out);
                if let Some((_, id, _, v)) = z {
                    self.put(id, v);
                }
            }
            Op::AccumulateGrad { dst, src, .. } => {
                let mut out = self.take(dst);
                add::accumulate_grad(self.float(src), &mut out);
                self.put(dst, out);
            }
            Op::CopyTensor { src, dst, len } => {
                let mut out = self.take(dst);
                add::copy_tensor(self.float(src), &mut out[..len]);
                self.put(dst, out);
            }
            Op::ClipValue { value } => {
                for p in 0..self.plan.params.len() {
                    let g = self.plan.params[p].grad;
                    let mut grad = self.take(g);
                    clip::clip_value(&mut grad, value);
                    self.put(g, grad);
                }
            }
            Op::ClipNorm { max_norm, guard } => {
                let records = self.grad_jobs.iter().map(|&j| &self.records[j]);
                let d = clip::clip_norm_scale_iter(records, max_norm, guard, self.last_clip);
                // As on the device: scale only when clipping is asked for (a skipped step
                // needs no scaling, its optimizer ops do not run).
                if max_norm.is_finite() {
                    for p in 0..self.plan.params.len() {
                        let g = self.plan.params[p].grad;
                        let mut grad = self.take(g);
                        clip::clip_scale(&mut grad, d.scale);
                        self.put(g, grad);
                    }
                }
                self.clip = Some(d);
                self.last_clip = Some(d);
            }
            // W_hhᵀ (`w_hh_t`) is the GPU's: the GEMM reads the transpose through strides.
            Op::RecurrentForward {
                ref shape,
                w_hh,
                b_hh,
                gates,
                h,
                hprev,
                aux,
                ..
            } => {
                let (mut g, mut oh, mut hp, mut ax) = (
                    self.take(gates),
                    self.take(h),
                    self.take(hprev),
                    self.take(aux),
                );
                let mut scratch = std::mem::take(&mut self.scratch.recurrent);
                recurrent::recurrent_forward(
                    shape,
                    self.float(w_hh),
                    self.float(b_hh),
                    &mut g,
                    &mut oh,
                    &mut hp,
                    &mut ax,
                    &mut scratch,
                );
                self.scratch.recurrent = scratch;
                self.put(gates, g);
                self.put(h, oh);
                self.put(hprev, hp);
                self.put(aux, ax);
            }
            Op::RecurrentBackward {
                ref shape,
                w_hh,
                gates,
                h,
                hprev,
                aux,
                dy,
                dh,
                dgi,
                dgh,
                ..
            } => {
                let (mut odh, mut odgi) = (self.take(dh), self.take(dgi));
                let mut odgh = dgh.map(|b| self.take(b));
                let mut scratch = std::mem::take(&mut self.scratch.recurrent);
                recurrent::recurrent_backward(
                    shape,
                    self.float(w_hh),
                    self.float(gates),
                    self.float(h),
                    self.float(hprev),
                    self.float(aux),
                    self.float(dy),
                    &mut odh,
                    &mut odgi,
                    odgh.as_deref_mut(),
                    &mut scratch,
                );
                self.scratch.recurrent = scratch;
                self.put(dh, odh);
                self.put(dgi, odgi);
                if let (Some(b), Some(v)) = (dgh, odgh) {
                    self.put(b, v);
                }
            }
            Op::HiddenGradNorms {
                dh,
                batch,
                steps,
                hidden,
                norms,
                offset,
            } => {
                let mut out = self.take(norms);
                let dhv = self.float(dh);
                for (t, d) in out[offset..offset + steps].iter_mut().enumerate() {
                    let v = recurrent::hidden_grad_norm(dhv, batch, steps, hidden, t);
                    *d = T::from_f64(v as f64);
                }
                self.put(norms, out);
            }
            Op::EmbeddingForward {
                ids,
                weight,
                y,
                rows,
                vocab,
                dim,
            } => {
                let mut out = self.take(y);
                embedding::embedding_forward(
                    self.float(ids),
                    self.float(weight),
                    &mut out,
                    rows,
                    vocab,
                    dim,
                );
                self.put(y, out);
            }
            Op::EmbeddingBackward {
                ids,
                dy,
                dw,
                rows,
                vocab,
                dim,
                accumulate,
            } => {
                let mut out = self.take(dw);
                let mut scratch = std::mem::take(&mut self.scratch.conv);
                embedding::embedding_backward_with(
                    self.float(ids),
                    self.float(dy),
                    &mut out,
                    rows,
                    vocab,
                    dim,
                    accumulate,
                    &mut scratch,
                );
                self.scratch.conv = scratch;
                self.put(dw, out);
            }
            Op::LastStepForward {
                x,
                y,
                batch,
                steps,
                features,
            } => {
                let mut out = self.take(y);
                recurrent::last_step_forward(self.float(x), &mut out, batch, steps, features);
                self.put(y, out);
            }
            Op::LastStepBackward {
                dy,
                dx,
                batch,
                steps,
                features,
            } => {
                let mut out = self.take(dx);
                recurrent::last_step_backward(self.float(dy), &mut out, batch, steps, features);
                self.put(dx, out);
            }
            Op::Optimizer { .. } if self.clip.is_some_and(|d| d.skipped) => {}
            Op::Optimizer { param } => {
                let s = scalars
                    .ok_or_else(|| Error::config("optimizer op run without step scalars"))?;
                // The buffer ids only: cloning the slot would allocate its name and shape.
                let slot = &self.plan.params[param];
                let (value_id, grad_id, update_id) = (slot.value, slot.grad, slot.update);
                let (state0, state1) = (slot.state.first().copied(), slot.state.get(1).copied());
                let mut value = self.take(value_id);
                let mut s0 = state0.map(|b| self.take(b)).unwrap_or_default();
                let mut s1 = state1.map(|b| self.take(b)).unwrap_or_default();
                let mut update = self.take(update_id);
                optimizer::optimizer_update(
                    &self.plan.optimizer,
                    &s,
                    &mut value,
                    self.float(grad_id),
                    &mut s0,
                    &mut s1,
                    &mut update,
                );
                self.put(value_id, value);
                if let Some(b) = state0 {
                    self.put(b, s0);
                }
                if let Some(b) = state1 {
                    self.put(b, s1);
                }
                self.put(update_id, update);
            }
        }
        Ok(())
    }
}

impl<T: Element> Executor for CpuExecutor<T> {
    fn describe(&self) -> String {
        let threads = rayon::current_num_threads();
        let s = if threads == 1 { "" } else { "s" };
        format!("cpu ({threads} thread{s}, {})", T::NAME)
    }

    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn load_batch(&mut self, inputs: &[f32], labels: &[u32]) -> Result<()> {
        check_batch(&self.plan, inputs, labels)?;
        let input = self.plan.input;
        let mut buf = self.take(input);
        for (d, &s) in buf.iter_mut().zip(inputs) {
            *d = T::from_f64(s as f64);
        }
        self.put(input, buf);
        // Into the existing buffer: check_batch proved the length.
        let mut l = self.take_index(self.plan.labels);
        l.clear();
        l.extend_from_slice(labels);
        self.storage[self.plan.labels.0] = Storage::Index(l);
        if let Some(t) = self.plan.targets {
            one_hot(labels, self.plan.classes, &mut self.targets_host)?;
            let mut buf = self.take(t);
            for (d, &s) in buf.iter_mut().zip(&self.targets_host) {
                *d = T::from_f64(s as f64);
            }
            self.put(t, buf);
        }
        Ok(())
    }

    fn train_step(&mut self, step: u64, scalars: StepScalars, stats: StatsLevel) -> Result<()> {
        let n = self.plan.ops.len();
        self.step = step;
        // The global-norm op reads the gradient records, so they are taken every step.
        let stats = if stats == StatsLevel::None && self.plan.has_clip_norm() {
            StatsLevel::Gradients
        } else {
            stats
        };
        self.clip = None;
        // The whole step on one of rayon's workers: every parallel kernel inside then
        // starts from a worker instead of handing its work from this thread to the pool
        // and sleeping until it is done, once per op; and the other workers stay awake
        // for the step (`pool`).
        pool::run_with_workers_awake(|| self.run_ops(0..n, Some(scalars), stats))?;
        // Records measured once for two layers (`StatsJobSpec::same_as`).
        for (j, job) in self.plan.stats_jobs.iter().enumerate() {
            if let Some(e) = job.same_as {
                self.records[j] = self.records[e];
            }
        }
        let out = self.float(self.plan.loss_out);
        self.reports.push(StepReport {
            step,
            loss: Element::to_f64(out[0]) as f32,
            correct: Element::to_f64(out[1]) as u32,
            stats,
            records: self.records.clone(),
            dead_units: self.dead.clone(),
            clip: self.clip,
            hidden_norms: self.plan.hidden_norms.map_or_else(Vec::new, |b| {
                self.float(b)
                    .iter()
                    .map(|v| Element::to_f64(*v) as f32)
                    .collect()
            }),
        });
        Ok(())
    }

    fn finished(&mut self, _wait: bool) -> Result<Vec<StepReport>> {
        Ok(std::mem::take(&mut self.reports))
    }

    fn evaluate(&mut self, valid: usize) -> Result<(f64, u32)> {
        // On one of rayon's workers, the others awake, as train_step.
        pool::run_with_workers_awake(|| self.run_eval())?;
        // A read-out at every step has `label_rows` loss rows per sample.
        let valid = valid.min(self.plan.batch) * self.plan.label_rows;
        let batch = self.plan.batch as f64;
        let loss: f64 = self.float(self.plan.row_loss)[..valid]
            .iter()
            .map(|v| Element::to_f64(*v) * batch)
            .sum();
        let correct = self.index(self.plan.row_correct)[..valid].iter().sum();
        Ok((loss, correct))
    }

    fn read(&mut self, buf: BufId) -> Result<Vec<f32>> {
        Ok(self
            .float(buf)
            .iter()
            .map(|v| Element::to_f64(*v) as f32)
            .collect())
    }

    fn write(&mut self, buf: BufId, data: &[f32]) -> Result<()> {
        let converted: Vec<T> = data.iter().map(|&v| T::from_f64(v as f64)).collect();
        self.set_tensor(buf, &converted)
    }

    fn enable_profiling(&mut self) -> Result<()> {
        self.profile = Some(crate::profile::ProfileBuilder::new(&self.plan, &[]));
        Ok(())
    }

    fn take_profile(&mut self) -> Option<crate::profile::Profile> {
        let p = self.profile.take()?;
        p.finish(
            self.describe(),
            "host clock around each op (the CPU executor runs them one after another)".into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Init;
    use crate::model::{ModelSpec, zoo};
    use crate::ops::{Activation, OptimizerKind, OptimizerParams};
    use crate::plan::{TensorKind, compile};

    /// Every record of a step is the record of its tensor's final value in that step, though
    /// the executor takes the records of large outputs and output gradients right after the
    /// last op that names them (cpu/stats_schedule.rs; here every one moves, however small): weights and biases as they were
    /// before the step's update, everything else as it is after the step. On a residual
    /// convolutional net (shortcut gradients accumulated by a later op) and an MLP.
    #[test]
    fn moved_statistics_record_the_final_tensors() {
        let adam = OptimizerParams::new(OptimizerKind::Adam);
        let resnet =
            zoo::cifar_resnet(&[3, 8, 8], 4, 8, true, true, Init::HeNormal, LossKind::Xent)
                .unwrap();
        let mlp = ModelSpec::mlp(
            20,
            &[16, 16],
            4,
            Activation::Relu,
            Init::HeNormal,
            LossKind::Xent,
        )
        .unwrap();
        for (name, model) in [("resnet", resnet), ("mlp", mlp)] {
            let plan = compile(&model, 4, adam).unwrap();
            let mut exec = CpuExecutor::<f32>::new(plan.clone());
            // These nets' tensors are small: move every statistics op that can move.
            exec.stats_schedule = StatsSchedule::moving_from(&plan, 1);
            let moved = (0..plan.ops.len())
                .filter(|&i| !exec.stats_schedule.after(i).is_empty())
                .count();
            assert!(moved > 0, "{name}: the schedule moves statistics ops");
            crate::train::initialize(&mut exec, 3).unwrap();
            let inputs: Vec<f32> = (0..plan.batch * plan.input_features)
                .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
                .collect();
            let labels: Vec<u32> = (0..plan.batch).map(|i| (i % plan.classes) as u32).collect();
            exec.load_batch(&inputs, &labels).unwrap();
            let before: Vec<Vec<f32>> = plan
                .stats_jobs
                .iter()
                .map(|job| exec.float(job.buffer)[..job.len].to_vec())
                .collect();
            let scalars = StepScalars { lr: 1e-3, t: 1 };
            exec.train_step(1, scalars, StatsLevel::Full).unwrap();
            for (j, job) in plan.stats_jobs.iter().enumerate() {
                let values = match job.kind {
                    TensorKind::Weight | TensorKind::Bias => before[j].clone(),
                    _ => exec.float(job.buffer)[..job.len].to_vec(),
                };
                let want = stats::stats_reduce(&values, job.saturation);
                assert_eq!(
                    exec.records[j], want,
                    "{name}: job {j} ({:?} of layer {})",
                    job.kind, job.layer
                );
            }
        }
    }

    /// resnet-20's 19 ReLUs run inside the BatchNorm or Add before them, and no other op
    /// reads those pre-activations (the ReLU's backward reads its output), so the CPU
    /// executor writes none of them, in training or in evaluation; a training step leaves
    /// those buffers as they were allocated, and still computes the same bits as the ops
    /// apart (tests/convnet.rs).
    #[test]
    fn relu_pre_activations_are_left_unwritten() {
        let model = zoo::cifar_resnet(
            &[3, 8, 8],
            4,
            20,
            true,
            true,
            Init::HeNormal,
            LossKind::Xent,
        )
        .unwrap();
        let plan = compile(&model, 2, OptimizerParams::new(OptimizerKind::Momentum)).unwrap();
        let mut exec = CpuExecutor::<f32>::new(plan.clone());
        let unread: Vec<BufId> = exec
            .y_unread
            .iter()
            .zip(&plan.ops)
            .filter(|(u, _)| **u)
            .map(|(_, op)| match *op {
                Op::BatchNormForward { y, .. } | Op::AddForward { y, .. } => y,
                _ => unreachable!("only a BatchNorm or an Add leaves y unwritten"),
            })
            .collect();
        assert_eq!(unread.len(), 19);
        assert_eq!(exec.eval_y_unread.iter().filter(|u| **u).count(), 19);
        crate::train::initialize(&mut exec, 5).unwrap();
        let inputs: Vec<f32> = (0..plan.batch * plan.input_features)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
            .collect();
        exec.load_batch(&inputs, &[1, 3]).unwrap();
        let scalars = StepScalars { lr: 0.05, t: 1 };
        exec.train_step(1, scalars, StatsLevel::Full).unwrap();
        for y in unread {
            assert!(
                exec.float(y).iter().all(|v| v.to_bits() == 0),
                "{y:?} written"
            );
        }
        // Without fusion, the same buffers hold the pre-activations.
        let mut apart = CpuExecutor::<f32>::new(plan.clone()).without_fusion();
        crate::train::initialize(&mut apart, 5).unwrap();
        apart.load_batch(&inputs, &[1, 3]).unwrap();
        apart.train_step(1, scalars, StatsLevel::Full).unwrap();
        assert!(apart.y_unread.iter().all(|u| !u));
        let written = plan.ops.iter().filter_map(|op| match *op {
            Op::BatchNormForward { y, .. } => Some(y),
            _ => None,
        });
        for y in written {
            assert!(
                apart.float(y).iter().any(|v| *v != 0.0),
                "{y:?} unwritten apart"
            );
        }
    }
}
