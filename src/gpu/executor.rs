//! The GPU executor: every buffer, pipeline and bind group of a plan is created here, once;
//! a training step writes the batch and the step's scalars, encodes the whole op list into
//! one command buffer, submits it once, and queues the copy of its results into the
//! readback ring. The host never waits for a step unless the ring is full.

use std::sync::Arc;

use super::fusion::{ActBackward, Fused, plan_fusions};
use super::grouping;
use super::kernels::{
    activation, add, batchnorm, bias, clip, conv2d, dropout, embedding, layernorm, loss, matmul,
    optimizer, pool2d, recurrent, stats,
};
use super::readback::ReadbackRing;
use super::{Dispatch, GpuContext};
use crate::data::loader::one_hot;
use crate::error::{Error, Result};
use crate::executor::{Executor, StatsLevel, StepReport, check_batch};
use crate::model::LossKind;
use crate::ops::{Activation, StepScalars, StepUniform};
use crate::plan::{BufId, Guard, Op, Plan, StatsClass};
use crate::stats::{RECORD_WORDS, RawStats};

/// Where each result lies in a staging slot.
#[derive(Clone, Copy)]
struct SlotLayout {
    /// The clip state (4 f32) when the plan has a global-norm op.
    clip_offset: Option<u64>,
    dead_offset: u64,
    records_offset: u64,
    /// The recurrent layers' per-step hidden-gradient norms (f32), after the records.
    norms_offset: u64,
    bytes: u64,
}

pub struct GpuExecutor {
    /// Bytes of every device buffer this executor created.
    allocated: u64,
    ctx: Arc<GpuContext>,
    plan: Plan,
    buffers: Vec<wgpu::Buffer>,
    /// The dispatches of each op of the plan, in op order.
    op_dispatches: Vec<Vec<Dispatch>>,
    /// Per op: the byte offset of its indirect arguments in `indirect_args`, for the
    /// optimizer ops that the skip guard can turn off.
    op_indirect: Vec<Option<u64>>,
    indirect_args: Option<wgpu::Buffer>,
    clip_state: Option<wgpu::Buffer>,
    op_class: Vec<Option<StatsClass>>,
    /// Finalize over the gradient records only, and over every record.
    finalize_every: Option<Dispatch>,
    finalize_all: Option<Dispatch>,
    step_uniform: wgpu::Buffer,
    /// The step index dropout's masks are hashed with, rewritten every step.
    dropout_step: wgpu::Buffer,
    /// What evaluation runs (forward in evaluation mode, then the loss).
    eval_dispatches: Vec<Dispatch>,
    records: wgpu::Buffer,
    dead: wgpu::Buffer,
    ring: ReadbackRing,
    layout: SlotLayout,
    eval_staging: wgpu::Buffer,
    ready: Vec<StepReport>,
    targets_host: Vec<f32>,
    /// Per-op timing of every step, when profiling (`gradscope train --profile`).
    pub(super) profiler: Option<super::profile::GpuProfiler>,
}

fn align16(x: u64) -> u64 {
    x.div_ceil(16) * 16
}

impl GpuExecutor {
    /// Allocates the plan's buffers on the device and builds every dispatch.
    pub fn new(ctx: Arc<GpuContext>, plan: Plan) -> Result<Self> {
        let c = &*ctx;
        let mut buffers: Vec<Option<wgpu::Buffer>> = Vec::with_capacity(plan.buffers.len());
        for spec in &plan.buffers {
            // An alias is bound to its representative's buffer (filled in below).
            buffers.push(match spec.alias_of {
                Some(_) => None,
                None => Some(c.storage_buffer(&spec.name, spec.bytes())?),
            });
        }
        let buffers: Vec<wgpu::Buffer> = (0..plan.buffers.len())
            .map(|i| buffers[plan.resolve(BufId(i)).0].clone())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::config("a buffer alias points at another alias"))?;
        let buf = |id: BufId| &buffers[id.0];

        // Statistics: one partial range per job, records in job order.
        let mut partial_base = Vec::with_capacity(plan.stats_jobs.len());
        let mut partial_total = 0usize;
        for job in &plan.stats_jobs {
            // A record measured once for two layers (`StatsJobSpec::same_as`): the finalize
            // pass makes it again from the earlier job's partials.
            if let Some(e) = job.same_as {
                partial_base.push(partial_base[e]);
                continue;
            }
            partial_base.push(partial_total);
            partial_total += stats::partial_count(job.len);
        }
        let record_bytes = (RECORD_WORDS * 4) as u64;
        let partials =
            c.storage_buffer("stats.partials", partial_total.max(1) as u64 * record_bytes)?;
        let records = c.storage_buffer(
            "stats.records",
            plan.stats_jobs.len().max(1) as u64 * record_bytes,
        )?;
        let dead = c.storage_buffer(
            "stats.dead_units",
            plan.dead_unit_layers.len().max(1) as u64 * 4,
        )?;
        let step_uniform = c.uniform(
            "optimizer.step",
            &StepUniform {
                lr: 0.0,
                t: 1,
                bias_correction1: 1.0,
                bias_correction2: 1.0,
            },
        )?;

        let finalize = |every_only: bool| -> Result<Option<Dispatch>> {
            let jobs: Vec<stats::StatsJob> = plan
                .stats_jobs
                .iter()
                .enumerate()
                .filter(|(_, j)| !every_only || j.class == StatsClass::EveryStep)
                .map(|(i, j)| stats::StatsJob {
                    partial_base: partial_base[i] as u32,
                    partial_count: stats::partial_count(j.len) as u32,
                    record: i as u32,
                    _pad: 0,
                })
                .collect();
            if jobs.is_empty() {
                return Ok(None);
            }
            let table = c.upload(
                if every_only {
                    "stats.jobs.every"
                } else {
                    "stats.jobs.all"
                },
                &jobs,
            )?;
            Ok(Some(stats::stats_finalize(
                c,
                &partials,
                &table,
                &records,
                jobs.len(),
            )?))
        };
        let finalize_every = finalize(true)?;
        let finalize_all = finalize(false)?;

        // The skip guard gates every optimizer dispatch through indirect arguments that
        // `clip_gate` writes each step: their base workgroup counts, in op order.
        let skip_guard = plan
            .ops
            .iter()
            .any(|o| matches!(o, Op::ClipNorm { guard, .. } if *guard != Guard::Off));
        let clip_state = if plan.has_clip_norm() {
            Some(clip::state_buffer(c)?)
        } else {
            None
        };
        let mut base_args: Vec<u32> = Vec::new();
        let mut op_indirect = Vec::with_capacity(plan.ops.len());
        let mut op_dispatches = Vec::with_capacity(plan.ops.len());
        let mut op_class = Vec::with_capacity(plan.ops.len());
        let dropout_step = c.uniform("dropout.step", &dropout::DropoutStep::new(0))?;
        let batchnorm_forward =
            |op: &Op, act: Option<(Activation, BufId)>| -> Result<Vec<Dispatch>> {
                let Op::BatchNormForward {
                    train,
                    n,
                    c: ch,
                    s: sp,
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
                } = *op
                else {
                    unreachable!("called for BatchNorm forward ops only")
                };
                let act = act.map(|(f, z)| (f, buf(z)));
                if train {
                    batchnorm::batchnorm_forward_train(
                        c,
                        buf(x),
                        buf(gamma),
                        buf(beta),
                        buf(y),
                        buf(mean),
                        buf(inv_std),
                        buf(running_mean),
                        buf(running_var),
                        n,
                        ch,
                        sp,
                        eps,
                        momentum,
                        act,
                    )
                } else {
                    Ok(vec![batchnorm::batchnorm_forward_eval(
                        c,
                        buf(x),
                        buf(gamma),
                        buf(beta),
                        buf(running_mean),
                        buf(running_var),
                        buf(y),
                        n,
                        ch,
                        sp,
                        eps,
                        act,
                    )?])
                }
            };
        // `act`: the activation after the BatchNorm, whose backward is fused in.
        let batchnorm_backward = |op: &Op, act: Option<ActBackward>| -> Result<Vec<Dispatch>> {
            let Op::BatchNormBackward {
                n,
                c: ch,
                s: sp,
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
            } = *op
            else {
                unreachable!("called for BatchNorm backward ops only")
            };
            batchnorm::batchnorm_backward(
                c,
                buf(x),
                buf(gamma),
                buf(dy),
                buf(mean),
                buf(inv_std),
                buf(dx),
                buf(dgamma),
                buf(dbeta),
                n,
                ch,
                sp,
                acc_gamma,
                act.map(|a| batchnorm::ActivationBackward {
                    act: a.act,
                    x: buf(a.x),
                    y: buf(a.y),
                    dy: buf(a.dy),
                    copy: a.copy.map(buf),
                }),
            )
        };
        // Clipping touches every parameter gradient: grouped into clip_multi dispatches where
        // the device allows, one dispatch per gradient otherwise.
        let clip_every_grad = |mode: clip::ClipMode<'_>| -> Result<Vec<Dispatch>> {
            let grads: Vec<(&wgpu::Buffer, usize)> =
                plan.params.iter().map(|p| (buf(p.grad), p.numel)).collect();
            let multi = clip::multi_capacity(c);
            if multi >= 2 {
                return grads
                    .chunks(multi)
                    .map(|group| clip::clip_multi(c, mode, group))
                    .collect();
            }
            grads
                .iter()
                .map(|&(g, len)| match mode {
                    clip::ClipMode::Scale { state } => clip::clip_scale(c, state, g, len),
                    clip::ClipMode::Value(v) => clip::clip_value(c, g, len, v),
                })
                .collect()
        };
        let build = |op: &Op| -> Result<Vec<Dispatch>> {
            Ok(match *op {
                Op::Matmul {
                    layout,
                    shape,
                    a,
                    b,
                    c: out,
                    accumulate,
                } => {
                    vec![matmul::matmul(
                        c,
                        layout,
                        shape,
                        buf(a),
                        buf(b),
                        buf(out),
                        accumulate,
                    )?]
                }
                Op::BiasForward {
                    y,
                    bias: bb,
                    rows,
                    cols,
                } => vec![bias::bias_forward(c, buf(y), buf(bb), rows, cols)?],
                Op::BiasBackward {
                    dy,
                    db,
                    rows,
                    cols,
                    accumulate,
                } => {
                    vec![bias::bias_backward(
                        c,
                        buf(dy),
                        buf(db),
                        rows,
                        cols,
                        accumulate,
                    )?]
                }
                Op::ActivationForward { act, x, y, len } => {
                    vec![activation::activation_forward(c, act, buf(x), buf(y), len)?]
                }
                Op::ActivationBackward {
                    act,
                    x,
                    y,
                    dy,
                    dx,
                    len,
                } => {
                    vec![activation::activation_backward(
                        c,
                        act,
                        buf(x),
                        buf(y),
                        buf(dy),
                        buf(dx),
                        len,
                    )?]
                }
                Op::Loss {
                    kind,
                    logits,
                    dlogits,
                    rows,
                    classes,
                } => {
                    let (rl, rc) = (buf(plan.row_loss), buf(plan.row_correct));
                    let fwd = match kind {
                        LossKind::Xent => loss::softmax_xent_forward_backward(
                            c,
                            buf(logits),
                            buf(plan.labels),
                            buf(dlogits),
                            rl,
                            rc,
                            rows,
                            classes,
                        )?,
                        LossKind::Mse => {
                            let targets = plan.targets.ok_or_else(|| {
                                Error::config("MSE loss without a targets buffer")
                            })?;
                            loss::mse_forward_backward(
                                c,
                                buf(logits),
                                buf(targets),
                                buf(plan.labels),
                                buf(dlogits),
                                rl,
                                rc,
                                rows,
                                classes,
                            )?
                        }
                    };
                    vec![fwd, loss::loss_reduce(c, rl, rc, buf(plan.loss_out), rows)?]
                }
                Op::Stats { job } => {
                    let j = &plan.stats_jobs[job];
                    vec![stats::stats_partial(
                        c,
                        buf(j.buffer),
                        j.len,
                        j.saturation,
                        &partials,
                        partial_base[job],
                    )?]
                }
                Op::DeadUnits { layer, counter } => {
                    let l = &plan.layers[layer];
                    vec![stats::dead_units(
                        c,
                        buf(l.output),
                        plan.batch,
                        l.units,
                        &dead,
                        counter,
                    )?]
                }
                Op::Optimizer { param } => {
                    let p = &plan.params[param];
                    vec![optimizer::optimizer_update(
                        c,
                        &plan.optimizer,
                        &step_uniform,
                        buf(p.value),
                        buf(p.grad),
                        p.state.first().map(|&s| buf(s)),
                        p.state.get(1).map(|&s| buf(s)),
                        buf(p.update),
                        p.numel,
                    )?]
                }
                Op::ClipValue { value } => clip_every_grad(clip::ClipMode::Value(value))?,
                Op::ClipNorm { max_norm, guard } => {
                    let state = clip_state
                        .as_ref()
                        .ok_or_else(|| Error::config("clip op without its state buffer"))?;
                    // The gradient records must be final before the norm is taken: the
                    // every-step finalize runs here (and again, identically, at the end).
                    let mut d: Vec<Dispatch> = finalize_every.iter().cloned().collect();
                    let jobs: Vec<u32> = plan.grad_jobs().iter().map(|&j| j as u32).collect();
                    d.push(clip::clip_norm_scale(
                        c, &records, &jobs, state, max_norm, guard,
                    )?);
                    if max_norm.is_finite() {
                        d.extend(clip_every_grad(clip::ClipMode::Scale { state })?);
                    }
                    d
                }
                Op::Conv2dForward { shape, x, w, y } => {
                    vec![conv2d::conv2d_forward(c, &shape, buf(x), buf(w), buf(y))?]
                }
                Op::Conv2dBiasForward { shape, y, bias: bb } => {
                    vec![conv2d::conv2d_bias_forward(c, &shape, buf(y), buf(bb))?]
                }
                Op::Conv2dBackwardInput {
                    shape,
                    dy,
                    w,
                    dx,
                    accumulate,
                } => {
                    vec![conv2d::conv2d_backward_input(
                        c,
                        &shape,
                        buf(dy),
                        buf(w),
                        buf(dx),
                        accumulate,
                    )?]
                }
                Op::Conv2dBackwardWeight {
                    shape,
                    x,
                    dy,
                    dw,
                    accumulate,
                } => {
                    conv2d::conv2d_backward_weight(c, &shape, buf(x), buf(dy), buf(dw), accumulate)?
                }
                Op::Conv2dBackwardBias {
                    shape,
                    dy,
                    db,
                    accumulate,
                } => {
                    vec![conv2d::conv2d_backward_bias(
                        c,
                        &shape,
                        buf(dy),
                        buf(db),
                        accumulate,
                    )?]
                }
                Op::BatchNormForward { .. } => batchnorm_forward(op, None)?,
                Op::BatchNormBackward { .. } => batchnorm_backward(op, None)?,
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
                } => vec![layernorm::layernorm_forward(
                    c,
                    buf(x),
                    buf(gamma),
                    buf(beta),
                    buf(y),
                    buf(mean),
                    buf(inv_std),
                    rows,
                    d,
                    eps,
                )?],
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
                } => layernorm::layernorm_backward(
                    c,
                    buf(x),
                    buf(gamma),
                    buf(dy),
                    buf(mean),
                    buf(inv_std),
                    buf(dx),
                    buf(dgamma),
                    buf(dbeta),
                    rows,
                    d,
                    acc_gamma,
                )?,
                Op::MaxPoolForward {
                    shape,
                    x,
                    y,
                    argmax,
                } => vec![pool2d::max_pool2d_forward(
                    c,
                    &shape,
                    buf(x),
                    buf(y),
                    buf(argmax),
                )?],
                Op::MaxPoolBackward {
                    shape,
                    dy,
                    argmax,
                    dx,
                } => {
                    vec![pool2d::max_pool2d_backward(
                        c,
                        &shape,
                        buf(dy),
                        buf(argmax),
                        buf(dx),
                    )?]
                }
                Op::AvgPoolForward { shape, x, y } => {
                    vec![pool2d::avg_pool2d_forward(c, &shape, buf(x), buf(y))?]
                }
                Op::AvgPoolBackward { shape, dy, dx } => {
                    vec![pool2d::avg_pool2d_backward(c, &shape, buf(dy), buf(dx))?]
                }
                Op::GlobalAvgPoolForward { n, c: ch, hw, x, y } => {
                    vec![pool2d::global_avg_pool_forward(
                        c,
                        buf(x),
                        buf(y),
                        n,
                        ch,
                        hw,
                        1,
                    )?]
                }
                Op::GlobalAvgPoolBackward {
                    n,
                    c: ch,
                    hw,
                    dy,
                    dx,
                } => {
                    vec![pool2d::global_avg_pool_backward(
                        c,
                        buf(dy),
                        buf(dx),
                        n,
                        ch,
                        hw,
                        1,
                    )?]
                }
                Op::DropoutForward { p, seed, x, y, len } => {
                    vec![dropout::dropout_forward(
                        c,
                        buf(x),
                        buf(y),
                        len,
                        p,
                        seed,
                        &dropout_step,
                    )?]
                }
                Op::DropoutBackward {
                    p,
                    seed,
                    dy,
                    dx,
                    len,
                } => {
                    vec![dropout::dropout_backward(
                        c,
                        buf(dy),
                        buf(dx),
                        len,
                        p,
                        seed,
                        &dropout_step,
                    )?]
                }
                Op::AddForward { a, b, y, len } => {
                    vec![add::add_forward(c, buf(a), buf(b), buf(y), len, None)?]
                }
                Op::AccumulateGrad { dst, src, len } => {
                    vec![add::accumulate_grad(c, buf(src), buf(dst), len)?]
                }
                Op::CopyTensor { src, dst, len } => {
                    vec![add::copy_tensor(c, buf(src), buf(dst), len)?]
                }
                Op::RecurrentForward {
                    ref shape,
                    w_hh,
                    w_hh_t,
                    b_hh,
                    gates,
                    h,
                    hprev,
                    aux,
                } => recurrent::recurrent_forward(
                    c,
                    shape,
                    buf(w_hh),
                    buf(w_hh_t),
                    buf(b_hh),
                    buf(gates),
                    buf(h),
                    buf(hprev),
                    buf(aux),
                )?,
                Op::RecurrentBackward {
                    ref shape,
                    w_hh,
                    gates,
                    hprev,
                    aux,
                    dy,
                    dh,
                    dgi,
                    dgh,
                    carry,
                    ..
                } => recurrent::recurrent_backward(
                    c,
                    shape,
                    buf(w_hh),
                    buf(gates),
                    buf(hprev),
                    buf(aux),
                    buf(dy),
                    buf(dh),
                    buf(dgi),
                    dgh.map(buf),
                    buf(carry),
                )?,
                Op::HiddenGradNorms {
                    dh,
                    batch,
                    steps,
                    hidden,
                    norms,
                    offset,
                } => vec![recurrent::hidden_grad_norms(
                    c,
                    buf(dh),
                    batch,
                    steps,
                    hidden,
                    buf(norms),
                    offset,
                )?],
                Op::EmbeddingForward {
                    ids,
                    weight,
                    y,
                    rows,
                    vocab,
                    dim,
                } => vec![embedding::embedding_forward(
                    c,
                    buf(ids),
                    buf(weight),
                    buf(y),
                    rows,
                    vocab,
                    dim,
                )?],
                Op::EmbeddingBackward {
                    ids,
                    dy,
                    dw,
                    rows,
                    vocab,
                    dim,
                    accumulate,
                } => vec![embedding::embedding_backward(
                    c,
                    buf(ids),
                    buf(dy),
                    buf(dw),
                    rows,
                    vocab,
                    dim,
                    accumulate,
                )?],
                Op::LastStepForward {
                    x,
                    y,
                    batch,
                    steps,
                    features,
                } => vec![recurrent::last_step_forward(
                    c,
                    buf(x),
                    buf(y),
                    batch,
                    steps,
                    features,
                )?],
                Op::LastStepBackward {
                    dy,
                    dx,
                    batch,
                    steps,
                    features,
                } => vec![recurrent::last_step_backward(
                    c,
                    buf(dy),
                    buf(dx),
                    batch,
                    steps,
                    features,
                )?],
            })
        };
        // A dense layer's product, bias and activation run as one dispatch (gpu::fusion).
        let build_fused = |f: &Fused, op: &Op| -> Result<Vec<Dispatch>> {
            match *f {
                Fused::Alone => build(op),
                Fused::Absorbed => Ok(Vec::new()),
                Fused::ActThenNormBackward(a) => batchnorm_backward(op, Some(a)),
                Fused::WithAct(f, z) => match *op {
                    Op::AddForward { a, b, y, len } => Ok(vec![add::add_forward(
                        c,
                        buf(a),
                        buf(b),
                        buf(y),
                        len,
                        Some((f, buf(z))),
                    )?]),
                    _ => batchnorm_forward(op, Some((f, z))),
                },
                Fused::Head(d, _) => Ok(vec![matmul::matmul_forward_fused(
                    c,
                    d.shape,
                    buf(d.x),
                    buf(d.w),
                    buf(d.y),
                    matmul::Epilogue {
                        bias: d.bias.map(buf),
                        act: d.act.map(|(f, z)| (f, buf(z))),
                    },
                )?]),
            }
        };
        // Backward-weight passes whose split-K sums wait to run grouped (see
        // grouping::group_split_k_sums): the op's index and its sum.
        let deferrable = grouping::deferrable_split_k_sums(c, &plan);
        let mut split_sums = Vec::new();
        for (k, (op, f)) in plan
            .ops
            .iter()
            .zip(plan_fusions(c, &plan, &plan.ops)?)
            .enumerate()
        {
            op_class.push(op.stats_class(&plan.stats_jobs));
            // The grouping below builds what it groups (groups of one included).
            op_dispatches.push(if grouping::groups(c, op) {
                Vec::new()
            } else if let (
                true,
                Op::Conv2dBackwardWeight {
                    shape,
                    x,
                    dy,
                    dw,
                    accumulate,
                },
            ) = (deferrable[k], op)
            {
                let (pass, sum) = conv2d::conv2d_backward_weight_split(
                    c,
                    shape,
                    buf(*x),
                    buf(*dy),
                    buf(*dw),
                    *accumulate,
                )?;
                split_sums.extend(sum.map(|m| (k, m)));
                pass
            } else {
                build_fused(&f, op)?
            });
        }
        grouping::group_split_k_sums(c, split_sums, &mut op_dispatches)?;
        grouping::group_optimizer(c, &plan, &buffers, &step_uniform, &mut op_dispatches)?;
        // The skip guard's indirect arguments: one triple per optimizer dispatch left.
        for (op, d) in plan.ops.iter().zip(&op_dispatches) {
            op_indirect.push(match op {
                Op::Optimizer { .. } if skip_guard && !d.is_empty() => {
                    let offset = base_args.len() as u64 * 4;
                    base_args.extend_from_slice(&d[0].workgroups);
                    Some(offset)
                }
                _ => None,
            });
        }
        grouping::group_statistics(
            c,
            &plan,
            &buffers,
            &op_class,
            &partial_base,
            &partials,
            &mut op_dispatches,
        )?;
        let eval_dispatches: Vec<Dispatch> = plan
            .eval
            .iter()
            .zip(plan_fusions(c, &plan, &plan.eval)?)
            .map(|(op, f)| build_fused(&f, op))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        let indirect_args = if skip_guard {
            let args = clip::indirect_args_buffer(c, base_args.len())?;
            c.write(&args, bytemuck::cast_slice(&base_args));
            let gate = clip::clip_gate(
                c,
                clip_state
                    .as_ref()
                    .ok_or_else(|| Error::config("skip guard without its state buffer"))?,
                &base_args,
                &args,
            )?;
            // The gate runs right after the norm op's dispatches.
            if let Some(i) = plan
                .ops
                .iter()
                .position(|o| matches!(o, Op::ClipNorm { .. }))
            {
                op_dispatches[i].push(gate);
            }
            Some(args)
        } else {
            None
        };

        let clip_offset = clip_state.as_ref().map(|_| 16u64);
        let dead_offset = if clip_offset.is_some() { 32 } else { 16 };
        let records_offset = align16(dead_offset + 4 * plan.dead_unit_layers.len() as u64);
        let norms_offset = records_offset + plan.stats_jobs.len() as u64 * record_bytes;
        let norms_len = plan.hidden_norms.map_or(0, |b| plan.buffer(b).numel as u64);
        let layout = SlotLayout {
            clip_offset,
            dead_offset,
            records_offset,
            norms_offset,
            bytes: norms_offset + 4 * norms_len,
        };
        let ring = ReadbackRing::new(c, layout.bytes)?;
        let eval_staging = c.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("eval.staging"),
            size: align16(8 * (plan.batch * plan.label_rows) as u64),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let targets_host = vec![
            0.0;
            plan.targets
                .map_or(0, |_| plan.batch * plan.label_rows * plan.classes)
        ];
        c.check("building the plan on the GPU")?;
        // What this executor holds on the device besides the launchers' own scratch (the
        // split-K partial sums of convolution weight gradients).
        let allocated = (0..buffers.len())
            .filter(|&i| plan.buffers[i].alias_of.is_none())
            .map(|i| buffers[i].size())
            .sum::<u64>()
            + partials.size()
            + records.size()
            + dead.size()
            + ring.total_bytes()
            + eval_staging.size();
        Ok(GpuExecutor {
            allocated,
            ctx,
            plan,
            buffers,
            op_dispatches,
            op_indirect,
            indirect_args,
            clip_state,
            op_class,
            finalize_every,
            finalize_all,
            step_uniform,
            dropout_step,
            eval_dispatches,
            records,
            dead,
            ring,
            layout,
            eval_staging,
            ready: Vec::new(),
            targets_host,
            profiler: None,
        })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The shared context (for code that records while borrowing the executor).
    pub(super) fn context_arc(&self) -> Arc<GpuContext> {
        self.ctx.clone()
    }

    /// Turns a staging slot's bytes into a report. The tag is step·4 + the stats level.
    fn parse_slot(plan: &Plan, layout: SlotLayout, tag: u64, bytes: &[u8]) -> StepReport {
        let loss: &[f32] = bytemuck::cast_slice(&bytes[..8]);
        let nd = plan.dead_unit_layers.len();
        let d0 = layout.dead_offset as usize;
        let dead: Vec<u32> = bytemuck::cast_slice(&bytes[d0..d0 + 4 * nd]).to_vec();
        let r0 = layout.records_offset as usize;
        let n0 = layout.norms_offset as usize;
        let records: Vec<RawStats> = bytemuck::cast_slice(&bytes[r0..n0]).to_vec();
        let hidden_norms: Vec<f32> =
            bytemuck::cast_slice(&bytes[n0..layout.bytes as usize]).to_vec();
        let stats = match tag % 4 {
            0 => StatsLevel::None,
            1 => StatsLevel::Gradients,
            _ => StatsLevel::Full,
        };
        let clip = layout.clip_offset.map(|o| {
            let w: &[f32] = bytemuck::cast_slice(&bytes[o as usize..o as usize + 16]);
            crate::cpu::clip::ClipDecision::from_state([w[0], w[1], w[2], w[3]])
        });
        StepReport {
            clip,
            step: tag / 4,
            loss: loss[0],
            correct: loss[1] as u32,
            stats,
            records,
            dead_units: dead,
            hidden_norms,
        }
    }

    /// The start of every step: the effective statistics level (the global-norm op needs
    /// the gradient records), the readback slot, and the step's uniforms written.
    pub(super) fn begin_step(
        &mut self,
        step: u64,
        scalars: StepScalars,
        stats: StatsLevel,
    ) -> Result<(StatsLevel, usize)> {
        // The global-norm op reads the gradient records, so they are taken every step.
        let stats = if stats == StatsLevel::None && self.clip_state.is_some() {
            StatsLevel::Gradients
        } else {
            stats
        };
        let (plan, layout, ready) = (&self.plan, self.layout, &mut self.ready);
        let slot = self.ring.next_slot(&self.ctx, &mut |tag, bytes| {
            ready.push(Self::parse_slot(plan, layout, tag, bytes))
        })?;
        let uniform = StepUniform::new(&scalars, &self.plan.optimizer);
        self.ctx
            .queue
            .write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&uniform));
        let dstep = dropout::DropoutStep::new(step as u32);
        self.ctx
            .queue
            .write_buffer(&self.dropout_step, 0, bytemuck::bytes_of(&dstep));
        Ok((stats, slot))
    }

    /// The dispatches each op records, then the gradient records' finalize and every
    /// record's (the profile's slots).
    pub fn dispatch_counts(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self.op_dispatches.iter().map(|d| d.len()).collect();
        out.push(self.finalize_every.is_some() as usize);
        out.push(self.finalize_all.is_some() as usize);
        out
    }

    /// What a step at this statistics level records, in order: op indices into the plan,
    /// then the statistics finalize after the last op: `plan.ops.len()` for the gradient
    /// records' (`Gradients`), `plan.ops.len() + 1` for every record's (`Full`).
    pub(super) fn step_segments(&self, stats: StatsLevel) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .op_class
            .iter()
            .enumerate()
            .filter(|(_, class)| !class.is_some_and(|c| !stats.runs(c)))
            .map(|(i, _)| i)
            .collect();
        let n = self.plan.ops.len();
        match stats {
            StatsLevel::None => {}
            StatsLevel::Gradients if self.finalize_every.is_some() => out.push(n),
            StatsLevel::Full if self.finalize_all.is_some() => out.push(n + 1),
            _ => {}
        }
        out
    }

    /// Records one segment of `step_segments` (an op's dispatches, through the optimizer's
    /// indirect arguments where the skip guard gates them; or the finalize).
    pub(super) fn record_segment(&self, segment: usize, pass: &mut wgpu::ComputePass<'_>) {
        let Some(dispatches) = self.op_dispatches.get(segment) else {
            // Past the ops: a finalize (see `step_segments`).
            let finalize = if segment == self.plan.ops.len() {
                &self.finalize_every
            } else {
                &self.finalize_all
            };
            if let Some(f) = finalize {
                f.record(pass);
            }
            return;
        };
        match (&self.op_indirect[segment], &self.indirect_args) {
            (Some(offset), Some(args)) => {
                for d in dispatches {
                    pass.set_pipeline(&d.pipeline);
                    pass.set_bind_group(0, &d.bind_group, &[]);
                    pass.dispatch_workgroups_indirect(args, *offset);
                }
            }
            _ => {
                for d in dispatches {
                    d.record(pass);
                }
            }
        }
    }

    /// Copies the step's results (loss, clip state, dead units, records) into its staging
    /// slot and closes the command buffer.
    pub(super) fn finish_step(
        &self,
        mut encoder: wgpu::CommandEncoder,
        slot: usize,
    ) -> wgpu::CommandBuffer {
        let staging = self.ring.buffer(slot);
        encoder.copy_buffer_to_buffer(&self.buffers[self.plan.loss_out.0], 0, staging, 0, 8);
        if let (Some(o), Some(state)) = (self.layout.clip_offset, &self.clip_state) {
            encoder.copy_buffer_to_buffer(state, 0, staging, o, 16);
        }
        let nd = 4 * self.plan.dead_unit_layers.len() as u64;
        if nd > 0 {
            encoder.copy_buffer_to_buffer(&self.dead, 0, staging, self.layout.dead_offset, nd);
        }
        if let Some(norms) = self.plan.hidden_norms {
            let n = self.layout.bytes - self.layout.norms_offset;
            encoder.copy_buffer_to_buffer(
                &self.buffers[norms.0],
                0,
                staging,
                self.layout.norms_offset,
                n,
            );
        }
        let nr = self.layout.norms_offset - self.layout.records_offset;
        if nr > 0 {
            encoder.copy_buffer_to_buffer(
                &self.records,
                0,
                staging,
                self.layout.records_offset,
                nr,
            );
        }
        encoder.finish()
    }

    /// Submits the step and starts mapping its slot; picks up finished steps.
    pub(super) fn submit_step(
        &mut self,
        commands: wgpu::CommandBuffer,
        slot: usize,
        step: u64,
        stats: StatsLevel,
    ) -> Result<()> {
        let submission = self.ctx.queue.submit([commands]);
        let level = match stats {
            StatsLevel::None => 0,
            StatsLevel::Gradients => 1,
            StatsLevel::Full => 2,
        };
        self.ring.submitted(slot, step * 4 + level, submission);
        self.ctx.check(&format!("step {step}"))?;
        // Pick up whatever has finished, without waiting.
        self.collect(false, 0)
    }

    fn collect(&mut self, wait: bool, min: usize) -> Result<()> {
        let (plan, layout, ready) = (&self.plan, self.layout, &mut self.ready);
        self.ring.collect(&self.ctx, wait, min, &mut |tag, bytes| {
            ready.push(Self::parse_slot(plan, layout, tag, bytes))
        })?;
        Ok(())
    }
}

impl Executor for GpuExecutor {
    fn describe(&self) -> String {
        format!("gpu: {}", self.ctx.adapter.describe())
    }

    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn load_batch(&mut self, inputs: &[f32], labels: &[u32]) -> Result<()> {
        check_batch(&self.plan, inputs, labels)?;
        // Queue writes land before the next submission and after every earlier one, so a
        // step still in flight keeps reading its own batch.
        self.ctx.write(
            &self.buffers[self.plan.input.0],
            bytemuck::cast_slice(inputs),
        );
        self.ctx.write(
            &self.buffers[self.plan.labels.0],
            bytemuck::cast_slice(labels),
        );
        if let Some(t) = self.plan.targets {
            one_hot(labels, self.plan.classes, &mut self.targets_host)?;
            self.ctx
                .write(&self.buffers[t.0], bytemuck::cast_slice(&self.targets_host));
        }
        Ok(())
    }

    fn train_step(&mut self, step: u64, scalars: StepScalars, stats: StatsLevel) -> Result<()> {
        if self.profiler.is_some() {
            return self.train_step_profiled(step, scalars, stats);
        }
        let (stats, slot) = self.begin_step(step, scalars, stats)?;
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("step"),
                timestamp_writes: None,
            });
            for segment in self.step_segments(stats) {
                self.record_segment(segment, &mut pass);
            }
        }
        let commands = self.finish_step(encoder, slot);
        self.submit_step(commands, slot, step, stats)
    }

    fn finished(&mut self, wait: bool) -> Result<Vec<StepReport>> {
        let n = if wait { self.ring.in_flight() } else { 0 };
        self.collect(wait, n)?;
        Ok(std::mem::take(&mut self.ready))
    }

    fn evaluate(&mut self, valid: usize) -> Result<(f64, u32)> {
        // Loss rows: one per sample, or one per step of a read-out at every step.
        let b = (self.plan.batch * self.plan.label_rows) as u64;
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("eval"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in &self.eval_dispatches {
                d.record(&mut pass);
            }
        }
        encoder.copy_buffer_to_buffer(
            &self.buffers[self.plan.row_loss.0],
            0,
            &self.eval_staging,
            0,
            4 * b,
        );
        encoder.copy_buffer_to_buffer(
            &self.buffers[self.plan.row_correct.0],
            0,
            &self.eval_staging,
            4 * b,
            4 * b,
        );
        self.ctx.queue.submit([encoder.finish()]);
        let slice = self.eval_staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.ctx.wait_idle("evaluation")?;
        let err = |m: String| Error::Gpu {
            during: "evaluation".into(),
            message: m,
        };
        rx.recv()
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(e.to_string()))?;
        let (loss, correct) = {
            let view = slice.get_mapped_range().map_err(|e| err(e.to_string()))?;
            let valid = valid.min(self.plan.batch) * self.plan.label_rows;
            let batch = self.plan.batch as f64;
            let rows: &[f32] = bytemuck::cast_slice(&view[..4 * b as usize]);
            let correct: &[u32] = bytemuck::cast_slice(&view[4 * b as usize..8 * b as usize]);
            let loss: f64 = rows[..valid].iter().map(|&v| v as f64 * batch).sum();
            (loss, correct[..valid].iter().sum())
        };
        self.eval_staging.unmap();
        Ok((loss, correct))
    }

    fn allocated_bytes(&self) -> u64 {
        self.allocated
    }

    fn enable_profiling(&mut self) -> Result<()> {
        self.start_profiling()
    }

    fn take_profile(&mut self) -> Option<crate::profile::Profile> {
        self.stop_profiling()
    }

    fn read(&mut self, buf: BufId) -> Result<Vec<f32>> {
        let n = self.plan.buffer(buf).numel;
        self.ctx.read(&self.buffers[buf.0], n)
    }

    fn write(&mut self, buf: BufId, data: &[f32]) -> Result<()> {
        let spec = self.plan.buffer(buf);
        if data.len() != spec.numel {
            return Err(Error::shape(
                "write",
                format!(
                    "tensor `{}` has {} elements, got {}",
                    spec.name,
                    spec.numel,
                    data.len()
                ),
            ));
        }
        self.ctx
            .write(&self.buffers[buf.0], bytemuck::cast_slice(data));
        Ok(())
    }
}
