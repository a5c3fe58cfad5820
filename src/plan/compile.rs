//! Compiles a model for a batch size: allocates every buffer once and orders every op.
//!
//! Gradient convention: parameter gradients are written by the first op that produces them
//! and accumulated by every later one (a parameter shared by several nodes sums its uses);
//! activation gradients are overwritten, so no step ever needs a zeroing pass.

use super::recurrent::{self, SeqBuffers, SeqParams};
use super::{
    BufId, BufferRole, BufferSpec, Guard, LayerInfo, Op, ParamSlot, Plan, StatsClass, StatsJobSpec,
    TensorKind,
};
use crate::error::{Error, Result};
use crate::model::{ModelSpec, NodeOp};
use crate::ops::RecurrentShape;
use crate::ops::conv2d::Conv2dShape;
use crate::ops::pool2d::Pool2dShape;
use crate::ops::{MatmulLayout, MatmulShape, OptimizerParams};
use crate::tensor::DType;

struct Builder {
    buffers: Vec<BufferSpec>,
}

impl Builder {
    fn add(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        numel: usize,
        role: BufferRole,
    ) -> BufId {
        self.buffers.push(BufferSpec {
            name: name.into(),
            alias_of: None,
            dtype,
            numel,
            role,
        });
        BufId(self.buffers.len() - 1)
    }
}

/// What runs between the statistics and the optimizer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepOptions {
    /// Clip every gradient by the global L2 norm to at most this.
    pub clip_norm: Option<f32>,
    /// Clamp every gradient element to [−v, v].
    pub clip_value: Option<f32>,
    /// What happens to the update of a step whose gradients hold a NaN or Inf, decided on
    /// the device before the optimizer runs.
    pub guard: Guard,
}

/// Compiles `model` for batches of `batch` samples trained with `optimizer`.
pub fn compile(model: &ModelSpec, batch: usize, optimizer: OptimizerParams) -> Result<Plan> {
    compile_with(model, batch, optimizer, StepOptions::default())
}

/// `compile` with clipping and the non-finite guard.
pub fn compile_with(
    model: &ModelSpec,
    batch: usize,
    optimizer: OptimizerParams,
    options: StepOptions,
) -> Result<Plan> {
    model.validate()?;
    if options.clip_norm.is_some() && options.clip_value.is_some() {
        return Err(Error::config(
            "set one of clip_norm and clip_value, not both (the norm is taken before any clipping)",
        ));
    }
    for (name, v) in [
        ("clip_norm", options.clip_norm),
        ("clip_value", options.clip_value),
    ] {
        if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            let v = v.unwrap_or_default();
            return Err(Error::config(format!(
                "`{name}` must be a positive finite number, got {v}"
            )));
        }
    }
    if batch == 0 {
        return Err(Error::config("batch size must be at least 1"));
    }
    let f32t = DType::F32;
    let mut b = Builder {
        buffers: Vec::new(),
    };

    // Parameters, their gradients and optimizer state.
    let params: Vec<ParamSlot> = model
        .params
        .iter()
        .map(|p| {
            let numel = p.numel();
            let value = b.add(&p.name, f32t, numel, BufferRole::Param);
            let grad = b.add(format!("{}.grad", p.name), f32t, numel, BufferRole::Grad);
            let state = (0..optimizer.kind.state_slots())
                .map(|s| {
                    b.add(
                        format!("{}.state{s}", p.name),
                        f32t,
                        numel,
                        BufferRole::OptimizerState,
                    )
                })
                .collect();
            // Each parameter's update has its own buffer, so that the statistics of every
            // update can run after the whole optimizer, grouped into few dispatches.
            let update = b.add(
                format!("{}.update", p.name),
                f32t,
                numel,
                BufferRole::Update,
            );
            ParamSlot {
                name: p.name.clone(),
                shape: p.shape.clone(),
                numel,
                value,
                grad,
                state,
                update,
            }
        })
        .collect();

    // Consumers of every node, to find each Linear's activation and refuse fan-out until
    // the ops that sum activation gradients exist.
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); model.nodes.len()];
    for (id, node) in model.nodes.iter().enumerate() {
        for &i in &node.inputs {
            consumers[i].push(id);
        }
    }
    // A flattened tensor is a view: it shares its input's buffers, so that input may have
    // no other consumer (its gradient would be summed into the view's own).
    for node in &model.nodes {
        if matches!(node.op, NodeOp::Flatten) && consumers[node.inputs[0]].len() > 1 {
            return Err(Error::config(format!(
                "model node `{}` flattens a tensor that other nodes also read; flatten a copy",
                node.name
            )));
        }
    }

    // d(a + b)/da = 1: a tensor whose only reader is an Add has the Add's output gradient
    // as its own, so it uses the Add's gradient buffer (no copy, no buffer of its own).
    // `grad_owner[x]` is the node whose buffer holds x's gradient.
    let mut grad_owner: Vec<usize> = (0..model.nodes.len()).collect();
    for (id, node) in model.nodes.iter().enumerate().rev() {
        let plain = !matches!(node.op, NodeOp::Input | NodeOp::Loss(_) | NodeOp::Flatten);
        if let [c] = consumers[id][..]
            && plain
            && matches!(model.nodes[c].op, NodeOp::Add)
        {
            grad_owner[id] = grad_owner[c];
        }
    }

    // Values and gradients of every node's output.
    let mut value: Vec<Option<BufId>> = vec![None; model.nodes.len()];
    let mut grad: Vec<Option<BufId>> = vec![None; model.nodes.len()];
    let mut input = None;
    let mut loss_node = None;
    // Per-node extras: BatchNorm and LayerNorm save their mean and 1/std for backward (and
    // BatchNorm keeps running statistics); max pooling saves each output's arg-max.
    let mut saved: Vec<Vec<BufId>> = vec![Vec::new(); model.nodes.len()];
    let mut running = Vec::new();
    // Recurrent layers' saved tensors (see `plan::recurrent`).
    let mut seq: Vec<Option<(RecurrentShape, SeqBuffers)>> = vec![None; model.nodes.len()];
    for (id, node) in model.nodes.iter().enumerate() {
        let numel = batch * node.features;
        match node.op {
            NodeOp::Input => {
                input = Some(b.add("input", f32t, numel, BufferRole::Batch));
                value[id] = input;
            }
            NodeOp::Loss(kind) => loss_node = Some((id, kind)),
            NodeOp::Flatten => {
                value[id] = value[node.inputs[0]];
                grad[id] = grad[node.inputs[0]];
            }
            _ => {
                value[id] = Some(b.add(
                    format!("{}.out", node.name),
                    f32t,
                    numel,
                    BufferRole::Activation,
                ));
                if grad_owner[id] == id {
                    grad[id] = Some(b.add(
                        format!("{}.out.grad", node.name),
                        f32t,
                        numel,
                        BufferRole::ActivationGrad,
                    ));
                }
            }
        }
        let name = &node.name;
        match node.op {
            NodeOp::BatchNorm { .. } => {
                let c = node.shape[0];
                saved[id] = vec![
                    b.add(format!("{name}.mean"), f32t, c, BufferRole::Activation),
                    b.add(format!("{name}.inv_std"), f32t, c, BufferRole::Activation),
                    b.add(
                        format!("{name}.running_mean"),
                        f32t,
                        c,
                        BufferRole::RunningStats,
                    ),
                    b.add(
                        format!("{name}.running_var"),
                        f32t,
                        c,
                        BufferRole::RunningStats,
                    ),
                ];
                running.push((format!("{name}.running_mean"), saved[id][2], 0.0));
                running.push((format!("{name}.running_var"), saved[id][3], 1.0));
            }
            NodeOp::LayerNorm { .. } => {
                saved[id] = vec![
                    b.add(format!("{name}.mean"), f32t, batch, BufferRole::Activation),
                    b.add(
                        format!("{name}.inv_std"),
                        f32t,
                        batch,
                        BufferRole::Activation,
                    ),
                ];
            }
            NodeOp::Recurrent(_) => {
                let shape = recurrent::shape_of(model, id, batch)?;
                let sv = recurrent::allocate(
                    &mut |n, d, len, role| b.add(n, d, len, role),
                    name,
                    &shape,
                );
                seq[id] = Some((shape, sv));
            }
            NodeOp::MaxPool2d { .. } => {
                saved[id] = vec![b.add(
                    format!("{name}.argmax"),
                    DType::U32,
                    numel,
                    BufferRole::Activation,
                )];
            }
            _ => {}
        }
    }
    for id in (0..model.nodes.len()).rev() {
        if grad_owner[id] != id {
            grad[id] = grad[grad_owner[id]];
        }
    }
    let (input, (loss_id, loss_kind)) = match (input, loss_node) {
        (Some(i), Some(l)) => (i, l),
        _ => return Err(Error::config("a model needs an input node and a loss node")),
    };
    let logits_node = model.nodes[loss_id].inputs[0];
    // A read-out at every step gives [T, classes] logits per sample: one label per step.
    let (label_rows, classes) = match model.nodes[logits_node].op {
        NodeOp::StepLinear { .. } => (
            model.nodes[logits_node].shape[0],
            model.nodes[logits_node].shape[1],
        ),
        _ => (1, model.nodes[logits_node].features),
    };
    let loss_rows = batch * label_rows;
    let labels = b.add("labels", DType::U32, loss_rows, BufferRole::Batch);
    let targets = match loss_kind {
        crate::model::LossKind::Mse => {
            Some(b.add("targets", f32t, loss_rows * classes, BufferRole::Batch))
        }
        crate::model::LossKind::Xent => None,
    };
    let row_loss = b.add("loss.rows", f32t, loss_rows, BufferRole::Scratch);
    let row_correct = b.add("loss.correct", DType::U32, loss_rows, BufferRole::Scratch);
    let loss_out = b.add("loss", f32t, 2, BufferRole::Scratch);

    let val = |id: usize| {
        value[id]
            .ok_or_else(|| Error::config(format!("node `{}` has no value", model.nodes[id].name)))
    };
    let grd = |id: usize| {
        grad[id].ok_or_else(|| {
            Error::config(format!("node `{}` has no gradient", model.nodes[id].name))
        })
    };

    // Geometry of the window ops, from their input's [C, H, W].
    let conv_shape = |id: usize| -> Conv2dShape {
        let node = &model.nodes[id];
        let xs = &model.nodes[node.inputs[0]].shape;
        match node.op {
            NodeOp::Conv2d {
                kernel,
                stride,
                pad,
                dilation,
                groups,
                ..
            } => Conv2dShape {
                n: batch,
                c_in: xs[0],
                h: xs[1],
                w: xs[2],
                c_out: node.shape[0],
                kh: kernel[0],
                kw: kernel[1],
                stride,
                pad,
                dilation,
                groups,
            },
            _ => unreachable!("conv_shape of a non-convolution"),
        }
    };
    let pool_shape = |id: usize| -> Pool2dShape {
        let node = &model.nodes[id];
        let xs = &model.nodes[node.inputs[0]].shape;
        let (kernel, stride, pad) = match node.op {
            NodeOp::MaxPool2d {
                kernel,
                stride,
                pad,
            }
            | NodeOp::AvgPool2d {
                kernel,
                stride,
                pad,
            } => (kernel, stride, pad),
            _ => unreachable!("pool_shape of a non-pooling node"),
        };
        Pool2dShape {
            n: batch,
            c: xs[0],
            h: xs[1],
            w: xs[2],
            kh: kernel[0],
            kw: kernel[1],
            stride,
            pad,
        }
    };
    // (n, c, s) of a normalization over channels: per feature for dense inputs.
    let ncs = |id: usize| -> (usize, usize, usize) {
        let shape = &model.nodes[id].shape;
        (batch, shape[0], shape[1..].iter().product())
    };

    // Forward, in training mode (`train`) and evaluation mode (`eval`): they differ only
    // for BatchNorm (batch or running statistics) and dropout (identity when evaluating).
    let mut ops = Vec::new();
    let mut eval = Vec::new();
    for (id, node) in model.nodes.iter().enumerate() {
        let len = batch * node.features;
        let both = |op: Op, ops: &mut Vec<Op>, eval: &mut Vec<Op>| {
            ops.push(op.clone());
            eval.push(op);
        };
        match &node.op {
            NodeOp::Input | NodeOp::Loss(_) | NodeOp::Flatten => {}
            NodeOp::Linear { weight, bias } => {
                let x = node.inputs[0];
                let shape = MatmulShape {
                    m: batch,
                    n: node.features,
                    k: model.nodes[x].features,
                };
                let y = val(id)?;
                both(
                    Op::Matmul {
                        layout: MatmulLayout::NT,
                        shape,
                        a: val(x)?,
                        b: params[*weight].value,
                        c: y,
                        accumulate: false,
                    },
                    &mut ops,
                    &mut eval,
                );
                if let Some(bias) = bias {
                    both(
                        Op::BiasForward {
                            y,
                            bias: params[*bias].value,
                            rows: batch,
                            cols: node.features,
                        },
                        &mut ops,
                        &mut eval,
                    );
                }
            }
            NodeOp::Conv2d { weight, bias, .. } => {
                let shape = conv_shape(id);
                shape.validate(&node.name)?;
                let y = val(id)?;
                both(
                    Op::Conv2dForward {
                        shape,
                        x: val(node.inputs[0])?,
                        w: params[*weight].value,
                        y,
                    },
                    &mut ops,
                    &mut eval,
                );
                if let Some(bias) = bias {
                    both(
                        Op::Conv2dBiasForward {
                            shape,
                            y,
                            bias: params[*bias].value,
                        },
                        &mut ops,
                        &mut eval,
                    );
                }
            }
            NodeOp::BatchNorm {
                gamma,
                beta,
                eps,
                momentum,
            } => {
                let (n, c, sp) = ncs(id);
                let sv = &saved[id];
                let op = |train: bool| Op::BatchNormForward {
                    train,
                    n,
                    c,
                    s: sp,
                    x: value[node.inputs[0]].unwrap_or(BufId(0)),
                    y: value[id].unwrap_or(BufId(0)),
                    gamma: params[*gamma].value,
                    beta: params[*beta].value,
                    mean: sv[0],
                    inv_std: sv[1],
                    running_mean: sv[2],
                    running_var: sv[3],
                    eps: *eps,
                    momentum: *momentum,
                };
                ops.push(op(true));
                eval.push(op(false));
            }
            NodeOp::LayerNorm { gamma, beta, eps } => {
                let sv = &saved[id];
                both(
                    Op::LayerNormForward {
                        rows: batch,
                        d: node.features,
                        x: val(node.inputs[0])?,
                        y: val(id)?,
                        gamma: params[*gamma].value,
                        beta: params[*beta].value,
                        mean: sv[0],
                        inv_std: sv[1],
                        eps: *eps,
                    },
                    &mut ops,
                    &mut eval,
                );
            }
            NodeOp::MaxPool2d { .. } => {
                let shape = pool_shape(id);
                shape.validate(&node.name)?;
                both(
                    Op::MaxPoolForward {
                        shape,
                        x: val(node.inputs[0])?,
                        y: val(id)?,
                        argmax: saved[id][0],
                    },
                    &mut ops,
                    &mut eval,
                );
            }
            NodeOp::AvgPool2d { .. } => {
                let shape = pool_shape(id);
                shape.validate(&node.name)?;
                both(
                    Op::AvgPoolForward {
                        shape,
                        x: val(node.inputs[0])?,
                        y: val(id)?,
                    },
                    &mut ops,
                    &mut eval,
                );
            }
            NodeOp::GlobalAvgPool => {
                let (n, c, hw) = ncs(node.inputs[0]);
                both(
                    Op::GlobalAvgPoolForward {
                        n,
                        c,
                        hw,
                        x: val(node.inputs[0])?,
                        y: val(id)?,
                    },
                    &mut ops,
                    &mut eval,
                );
            }
            NodeOp::Dropout { p } => {
                let (x, y) = (val(node.inputs[0])?, val(id)?);
                ops.push(Op::DropoutForward {
                    p: *p,
                    seed: id as u32,
                    x,
                    y,
                    len,
                });
                eval.push(Op::CopyTensor {
                    src: x,
                    dst: y,
                    len,
                });
            }
            NodeOp::Add => {
                both(
                    Op::AddForward {
                        a: val(node.inputs[0])?,
                        b: val(node.inputs[1])?,
                        y: val(id)?,
                        len,
                    },
                    &mut ops,
                    &mut eval,
                );
            }
            NodeOp::Recurrent(r) => {
                let (shape, sv) = seq[id]
                    .ok_or_else(|| Error::config(format!("node `{}` has no buffers", node.name)))?;
                let [w_ih, w_hh, b_ih, b_hh] = recurrent::param_ids(r).map(|p| params[p].value);
                let p = SeqParams {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                };
                for op in recurrent::forward_ops(&shape, &p, val(node.inputs[0])?, val(id)?, &sv) {
                    both(op, &mut ops, &mut eval);
                }
            }
            NodeOp::Embedding { weight, vocab } => {
                let dim = node.shape[1];
                both(
                    Op::EmbeddingForward {
                        ids: val(node.inputs[0])?,
                        weight: params[*weight].value,
                        y: val(id)?,
                        rows: batch * node.shape[0],
                        vocab: *vocab,
                        dim,
                    },
                    &mut ops,
                    &mut eval,
                );
            }
            NodeOp::LastStep => {
                let xs = &model.nodes[node.inputs[0]].shape;
                both(
                    Op::LastStepForward {
                        x: val(node.inputs[0])?,
                        y: val(id)?,
                        batch,
                        steps: xs[0],
                        features: xs[1],
                    },
                    &mut ops,
                    &mut eval,
                );
            }
            NodeOp::StepLinear { weight, bias } => {
                let (t, out) = (node.shape[0], node.shape[1]);
                let f = model.nodes[node.inputs[0]].shape[1];
                let y = val(id)?;
                both(
                    Op::Matmul {
                        layout: MatmulLayout::NT,
                        shape: MatmulShape {
                            m: batch * t,
                            n: out,
                            k: f,
                        },
                        a: val(node.inputs[0])?,
                        b: params[*weight].value,
                        c: y,
                        accumulate: false,
                    },
                    &mut ops,
                    &mut eval,
                );
                if let Some(bias) = bias {
                    both(
                        Op::BiasForward {
                            y,
                            bias: params[*bias].value,
                            rows: batch * t,
                            cols: out,
                        },
                        &mut ops,
                        &mut eval,
                    );
                }
            }
            NodeOp::Activation(act) => {
                both(
                    Op::ActivationForward {
                        act: *act,
                        x: val(node.inputs[0])?,
                        y: val(id)?,
                        len,
                    },
                    &mut ops,
                    &mut eval,
                );
            }
        }
    }
    let loss_op = Op::Loss {
        kind: loss_kind,
        logits: val(logits_node)?,
        dlogits: grd(logits_node)?,
        rows: loss_rows,
        classes,
    };
    ops.push(loss_op.clone());
    eval.push(loss_op);
    let forward_end = ops.len();

    // Backward, in reverse topological order. A tensor read by several nodes receives one
    // gradient from each: the first is written into its gradient buffer, each later one
    // into a partial buffer and then added (`AccumulateGrad`); an `Add` passes its output
    // gradient on unchanged, as a copy or an addition.
    let mut grad_written = vec![false; params.len()];
    let mut received = vec![false; model.nodes.len()];
    let mut partial: Vec<Option<BufId>> = vec![None; model.nodes.len()];
    // Where the next gradient contribution to node `x` goes, and the op that adds it in.
    // Whether node x's gradient buffer already holds a contribution (later ones add to it).
    let mut first_contribution = |x: usize| -> bool { !std::mem::replace(&mut received[x], true) };
    // Where the next contribution of an overwriting kernel to node x goes, and the op that
    // then adds it in: the gradient buffer itself the first time, a partial buffer after.
    let mut target = |x: usize, first: bool, b: &mut Builder| -> Result<(BufId, Option<Op>)> {
        let g = grad[x].ok_or_else(|| {
            Error::config(format!("node `{}` has no gradient", model.nodes[x].name))
        })?;
        if first {
            return Ok((g, None));
        }
        let len = batch * model.nodes[x].features;
        let p = *partial[x].get_or_insert_with(|| {
            b.add(
                format!("{}.out.grad.partial", model.nodes[x].name),
                f32t,
                len,
                BufferRole::ActivationGrad,
            )
        });
        Ok((
            p,
            Some(Op::AccumulateGrad {
                dst: g,
                src: p,
                len,
            }),
        ))
    };
    // The network's input needs no gradient; a flatten passes its gradient through.
    let needs_grad = |x: usize| !matches!(model.nodes[x].op, NodeOp::Input);
    let source = |mut x: usize| {
        while matches!(model.nodes[x].op, NodeOp::Flatten) {
            x = model.nodes[x].inputs[0];
        }
        x
    };
    for (id, node) in model.nodes.iter().enumerate().rev() {
        let len = batch * node.features;
        let mut param_grad = |p: usize| {
            let acc = grad_written[p];
            grad_written[p] = true;
            (params[p].grad, acc)
        };
        match &node.op {
            NodeOp::Input | NodeOp::Loss(_) | NodeOp::Flatten => {}
            NodeOp::Linear { weight, bias } => {
                let x = node.inputs[0];
                let (fin, fout) = (model.nodes[x].features, node.features);
                let dy = grd(id)?;
                let (dw, acc) = param_grad(*weight);
                ops.push(Op::Matmul {
                    layout: MatmulLayout::TN,
                    shape: MatmulShape {
                        m: fout,
                        n: fin,
                        k: batch,
                    },
                    a: dy,
                    b: val(x)?,
                    c: dw,
                    accumulate: acc,
                });
                if let Some(bias) = *bias {
                    let (db, acc) = param_grad(bias);
                    ops.push(Op::BiasBackward {
                        dy,
                        db,
                        rows: batch,
                        cols: fout,
                        accumulate: acc,
                    });
                }
                if needs_grad(source(x)) {
                    // A later contribution adds itself in: no partial buffer, no extra op.
                    let first = first_contribution(source(x));
                    ops.push(Op::Matmul {
                        layout: MatmulLayout::NN,
                        shape: MatmulShape {
                            m: batch,
                            n: fin,
                            k: fout,
                        },
                        a: dy,
                        b: params[*weight].value,
                        c: grd(source(x))?,
                        accumulate: !first,
                    });
                }
            }
            NodeOp::Conv2d { weight, bias, .. } => {
                let shape = conv_shape(id);
                let (x, dy) = (node.inputs[0], grd(id)?);
                let (dw, acc) = param_grad(*weight);
                ops.push(Op::Conv2dBackwardWeight {
                    shape,
                    x: val(x)?,
                    dy,
                    dw,
                    accumulate: acc,
                });
                if let Some(bias) = *bias {
                    let (db, acc) = param_grad(bias);
                    ops.push(Op::Conv2dBackwardBias {
                        shape,
                        dy,
                        db,
                        accumulate: acc,
                    });
                }
                if needs_grad(source(x)) {
                    // A later contribution adds itself in: no partial buffer, no extra op.
                    let first = first_contribution(source(x));
                    ops.push(Op::Conv2dBackwardInput {
                        shape,
                        dy,
                        w: params[*weight].value,
                        dx: grd(source(x))?,
                        accumulate: !first,
                    });
                }
            }
            NodeOp::BatchNorm { gamma, beta, .. } => {
                let (n, c, sp) = ncs(id);
                let x = node.inputs[0];
                let (dgamma, acc_gamma) = param_grad(*gamma);
                let (dbeta, acc_beta) = param_grad(*beta);
                let (dx, add) = target(source(x), first_contribution(source(x)), &mut b)?;
                ops.push(Op::BatchNormBackward {
                    n,
                    c,
                    s: sp,
                    x: val(x)?,
                    dy: grd(id)?,
                    gamma: params[*gamma].value,
                    mean: saved[id][0],
                    inv_std: saved[id][1],
                    dx,
                    dgamma,
                    dbeta,
                    acc_gamma,
                    acc_beta,
                });
                ops.extend(add);
            }
            NodeOp::LayerNorm { gamma, beta, .. } => {
                let x = node.inputs[0];
                let (dgamma, acc_gamma) = param_grad(*gamma);
                let (dbeta, acc_beta) = param_grad(*beta);
                let (dx, add) = target(source(x), first_contribution(source(x)), &mut b)?;
                ops.push(Op::LayerNormBackward {
                    rows: batch,
                    d: node.features,
                    x: val(x)?,
                    dy: grd(id)?,
                    gamma: params[*gamma].value,
                    mean: saved[id][0],
                    inv_std: saved[id][1],
                    dx,
                    dgamma,
                    dbeta,
                    acc_gamma,
                    acc_beta,
                });
                ops.extend(add);
            }
            NodeOp::MaxPool2d { .. }
            | NodeOp::AvgPool2d { .. }
            | NodeOp::GlobalAvgPool
            | NodeOp::Dropout { .. }
            | NodeOp::Activation(_) => {
                let x = node.inputs[0];
                if !needs_grad(source(x)) {
                    continue;
                }
                let (dx, add) = target(source(x), first_contribution(source(x)), &mut b)?;
                let dy = grd(id)?;
                ops.push(match &node.op {
                    NodeOp::MaxPool2d { .. } => Op::MaxPoolBackward {
                        shape: pool_shape(id),
                        dy,
                        argmax: saved[id][0],
                        dx,
                    },
                    NodeOp::AvgPool2d { .. } => Op::AvgPoolBackward {
                        shape: pool_shape(id),
                        dy,
                        dx,
                    },
                    NodeOp::GlobalAvgPool => {
                        let (n, c, hw) = ncs(x);
                        Op::GlobalAvgPoolBackward { n, c, hw, dy, dx }
                    }
                    NodeOp::Dropout { p } => Op::DropoutBackward {
                        p: *p,
                        seed: id as u32,
                        dy,
                        dx,
                        len,
                    },
                    NodeOp::Activation(act) => Op::ActivationBackward {
                        act: *act,
                        x: val(x)?,
                        y: val(id)?,
                        dy,
                        dx,
                        len,
                    },
                    _ => unreachable!(),
                });
                ops.extend(add);
            }
            NodeOp::Recurrent(r) => {
                let (shape, sv) = seq[id]
                    .ok_or_else(|| Error::config(format!("node `{}` has no buffers", node.name)))?;
                let ids = recurrent::param_ids(r);
                let [w_ih, w_hh, b_ih, b_hh] = ids.map(|p| params[p].value);
                let grads = ids.map(&mut param_grad);
                let x = node.inputs[0];
                let (dx, add) = if needs_grad(source(x)) {
                    let (dx, add) = target(source(x), first_contribution(source(x)), &mut b)?;
                    (Some(dx), add)
                } else {
                    (None, None)
                };
                let p = SeqParams {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                };
                ops.extend(recurrent::backward_ops(
                    &shape,
                    &p,
                    val(x)?,
                    val(id)?,
                    grd(id)?,
                    &sv,
                    grads,
                    dx,
                ));
                ops.extend(add);
            }
            NodeOp::Embedding { weight, vocab } => {
                let (dw, acc) = param_grad(*weight);
                ops.push(Op::EmbeddingBackward {
                    ids: val(node.inputs[0])?,
                    dy: grd(id)?,
                    dw,
                    rows: batch * node.shape[0],
                    vocab: *vocab,
                    dim: node.shape[1],
                    accumulate: acc,
                });
            }
            NodeOp::LastStep => {
                let x = node.inputs[0];
                if !needs_grad(source(x)) {
                    continue;
                }
                let xs = &model.nodes[x].shape;
                let (dx, add) = target(source(x), first_contribution(source(x)), &mut b)?;
                ops.push(Op::LastStepBackward {
                    dy: grd(id)?,
                    dx,
                    batch,
                    steps: xs[0],
                    features: xs[1],
                });
                ops.extend(add);
            }
            NodeOp::StepLinear { weight, bias } => {
                let x = node.inputs[0];
                let (t, out) = (node.shape[0], node.shape[1]);
                let f = model.nodes[x].shape[1];
                let dy = grd(id)?;
                let (dw, acc) = param_grad(*weight);
                ops.push(Op::Matmul {
                    layout: MatmulLayout::TN,
                    shape: MatmulShape {
                        m: out,
                        n: f,
                        k: batch * t,
                    },
                    a: dy,
                    b: val(x)?,
                    c: dw,
                    accumulate: acc,
                });
                if let Some(bias) = *bias {
                    let (db, acc) = param_grad(bias);
                    ops.push(Op::BiasBackward {
                        dy,
                        db,
                        rows: batch * t,
                        cols: out,
                        accumulate: acc,
                    });
                }
                if needs_grad(source(x)) {
                    let (dx, add) = target(source(x), first_contribution(source(x)), &mut b)?;
                    ops.push(Op::Matmul {
                        layout: MatmulLayout::NN,
                        shape: MatmulShape {
                            m: batch * t,
                            n: f,
                            k: out,
                        },
                        a: dy,
                        b: params[*weight].value,
                        c: dx,
                        accumulate: false,
                    });
                    ops.extend(add);
                }
            }
            NodeOp::Add => {
                // d(a + b)/da = d(a + b)/db = 1: each input receives the output gradient.
                let dy = grd(id)?;
                for &x in &node.inputs {
                    if !needs_grad(source(x)) {
                        continue;
                    }
                    let g = grd(source(x))?;
                    let first = first_contribution(source(x));
                    if g == dy {
                        // x's only reader is this Add: its gradient buffer is dy's.
                        continue;
                    }
                    // The output gradient itself is the contribution: copied the first
                    // time, added after, with no partial buffer.
                    ops.push(if first {
                        Op::CopyTensor {
                            src: dy,
                            dst: g,
                            len,
                        }
                    } else {
                        Op::AccumulateGrad {
                            dst: g,
                            src: dy,
                            len,
                        }
                    });
                }
            }
        }
    }
    let backward_end = ops.len();
    if let Some(p) = grad_written.iter().position(|w| !w) {
        return Err(Error::config(format!(
            "parameter `{}` is used by no node",
            params[p].name
        )));
    }

    // Layers, as the statistics present them: each node with parameters (Linear, Conv2d,
    // BatchNorm, LayerNorm), with the activation that directly follows it.
    let mut layers = Vec::new();
    for (id, node) in model.nodes.iter().enumerate() {
        // A recurrent layer shows as two: its input side (W_ih, b_ih) and its recurrent side
        // (W_hh, b_hh), both with the hidden sequence as output and the total gradient
        // w.r.t. it (dh) as output gradient; every parameter then has gradient records,
        // which the global gradient norm needs.
        if let NodeOp::Recurrent(r) = &node.op {
            let (_, sv) = seq[id]
                .ok_or_else(|| Error::config(format!("node `{}` has no buffers", node.name)))?;
            let [ih, hh] = crate::model::recurrent::side_layer_names(&node.name);
            for (name, weight, bias) in [(ih, r.weight_ih, r.bias_ih), (hh, r.weight_hh, r.bias_hh)]
            {
                layers.push(LayerInfo {
                    name,
                    weight,
                    bias: Some(bias),
                    units: node.shape[1],
                    dense: false,
                    activation: None,
                    output: val(id)?,
                    output_grad: sv.dh,
                });
            }
            continue;
        }
        let (weight, bias, units, dense) = match &node.op {
            NodeOp::Embedding { weight, .. } => (*weight, None, node.shape[1], false),
            NodeOp::StepLinear { weight, bias } => (*weight, *bias, node.shape[1], false),
            NodeOp::Linear { weight, bias } => (*weight, *bias, node.features, true),
            NodeOp::Conv2d { weight, bias, .. } => (*weight, *bias, node.shape[0], false),
            NodeOp::BatchNorm { gamma, beta, .. } | NodeOp::LayerNorm { gamma, beta, .. } => {
                (*gamma, Some(*beta), node.shape[0], node.shape.len() == 1)
            }
            _ => continue,
        };
        let act = match consumers[id].as_slice() {
            [c] => match model.nodes[*c].op {
                NodeOp::Activation(a) => Some((*c, a)),
                _ => None,
            },
            _ => None,
        };
        let (out_node, activation) = act.map_or((id, None), |(c, a)| (c, Some(a)));
        layers.push(LayerInfo {
            name: node.name.clone(),
            weight,
            bias,
            units,
            dense,
            activation,
            output: val(out_node)?,
            output_grad: grd(out_node)?,
        });
    }

    // Statistics of everything but the updates, then the optimizer, then the statistics of
    // every update (each parameter's update has its own buffer).
    let mut stats_jobs = Vec::new();
    // The new job's index, and whether it needs an op of its own: a layer's output or
    // output gradient that an earlier layer measures already (the same tensor at the same
    // point of the step) is measured once, and this layer's record is that one's.
    let mut job = |layer: usize, kind: TensorKind, buffer: BufId, len: usize, saturation, class| {
        let same_as = stats_jobs.iter().position(|e: &StatsJobSpec| {
            matches!(kind, TensorKind::Output | TensorKind::OutputGrad)
                && e.kind == kind
                && e.buffer == buffer
                && e.len == len
                && e.saturation == saturation
                && e.class == class
                && e.same_as.is_none()
        });
        stats_jobs.push(StatsJobSpec {
            layer,
            kind,
            buffer,
            len,
            saturation,
            class,
            same_as,
        });
        (stats_jobs.len() - 1, same_as.is_none())
    };
    let every = StatsClass::EveryStep;
    let some = StatsClass::StatsSteps;
    let mut update_jobs = vec![None; params.len()];
    for (l, layer) in layers.iter().enumerate() {
        let w = &params[layer.weight];
        ops.push(Op::Stats {
            job: job(l, TensorKind::Weight, w.value, w.numel, None, some).0,
        });
        ops.push(Op::Stats {
            job: job(l, TensorKind::WeightGrad, w.grad, w.numel, None, every).0,
        });
        if let Some(bi) = layer.bias {
            let bp = &params[bi];
            ops.push(Op::Stats {
                job: job(l, TensorKind::Bias, bp.value, bp.numel, None, some).0,
            });
            ops.push(Op::Stats {
                job: job(l, TensorKind::BiasGrad, bp.grad, bp.numel, None, every).0,
            });
        }
        let sat = layer.activation.and_then(|a| a.saturation_bounds());
        let out_len = b.buffers[layer.output.0].numel;
        for (kind, buffer, saturation) in [
            (TensorKind::Output, layer.output, sat),
            (TensorKind::OutputGrad, layer.output_grad, None),
        ] {
            let (j, measured) = job(l, kind, buffer, out_len, saturation, some);
            if measured {
                ops.push(Op::Stats { job: j });
            }
        }
        update_jobs[layer.weight] = Some(job(
            l,
            TensorKind::WeightUpdate,
            w.update,
            w.numel,
            None,
            some,
        ));
        if let Some(bi) = layer.bias {
            update_jobs[bi] = Some(job(
                l,
                TensorKind::BiasUpdate,
                params[bi].update,
                params[bi].numel,
                None,
                some,
            ));
        }
    }
    // The hidden-state gradient norm at every step of every recurrent layer.
    let mut recurrent_layers = Vec::new();
    let mut norm_len = 0;
    for (id, node) in model.nodes.iter().enumerate() {
        if let Some((shape, _)) = &seq[id] {
            recurrent_layers.push(recurrent::RecurrentLayer {
                name: node.name.clone(),
                steps: shape.steps,
                offset: norm_len,
            });
            norm_len += shape.steps;
        }
    }
    let hidden_norms =
        (norm_len > 0).then(|| b.add("rnn.hidden_grad_norms", f32t, norm_len, BufferRole::Scratch));
    for (id, layer) in recurrent_layers.iter().enumerate() {
        let node = model
            .nodes
            .iter()
            .position(|n| n.name == layer.name)
            .unwrap_or(id);
        if let (Some((shape, sv)), Some(norms)) = (&seq[node], hidden_norms) {
            ops.push(Op::HiddenGradNorms {
                dh: sv.dh,
                batch,
                steps: shape.steps,
                hidden: shape.hidden,
                norms,
                offset: layer.offset,
            });
        }
    }
    let mut dead_unit_layers = Vec::new();
    for (l, layer) in layers.iter().enumerate() {
        // Dead units are counted for dense layers, where a unit is a column.
        if layer.dense && layer.activation.is_some_and(|a| a.can_die()) {
            ops.push(Op::DeadUnits {
                layer: l,
                counter: dead_unit_layers.len(),
            });
            dead_unit_layers.push(l);
        }
    }
    // Clipping reads the gradients' records (taken every step) and runs after every
    // gradient is final, before the first optimizer op.
    if let Some(value) = options.clip_value {
        ops.push(Op::ClipValue { value });
    }
    if options.clip_norm.is_some() || options.guard != Guard::Off {
        ops.push(Op::ClipNorm {
            max_norm: options.clip_norm.unwrap_or(f32::INFINITY),
            guard: options.guard,
        });
    }
    for p in 0..params.len() {
        ops.push(Op::Optimizer { param: p });
    }
    for (j, _) in update_jobs.into_iter().flatten() {
        ops.push(Op::Stats { job: j });
    }

    let mut plan = Plan {
        model: model.clone(),
        batch,
        optimizer,
        loss: loss_kind,
        classes,
        input_features: model.input_features(),
        buffers: b.buffers,
        params,
        layers,
        ops,
        eval,
        forward_end,
        backward_end,
        running,
        stats_jobs,
        dead_unit_layers,
        input,
        labels,
        targets,
        row_loss,
        row_correct,
        loss_out,
        step_options: options,
        label_rows,
        recurrent_layers,
        hidden_norms,
    };
    super::share::share_activation_grads(&mut plan);
    Ok(plan)
}
