//! Compiles a model for a batch size: allocates every buffer once and orders every op.
//!
//! Gradient convention: parameter gradients are written by the first op that produces them
//! and accumulated by every later one (a parameter shared by several nodes sums its uses);
//! activation gradients are overwritten, so no step ever needs a zeroing pass.

use super::{
    BufId, BufferRole, BufferSpec, Guard, LayerInfo, Op, ParamSlot, Plan, StatsClass, StatsJobSpec,
    TensorKind,
};
use crate::error::{Error, Result};
use crate::model::{ModelSpec, NodeOp};
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
            ParamSlot {
                name: p.name.clone(),
                shape: p.shape.clone(),
                numel,
                value,
                grad,
                state,
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
    for (id, c) in consumers.iter().enumerate() {
        if c.len() > 1 {
            return Err(Error::config(format!(
                "model node `{}` feeds {} nodes; tensors with several consumers are not supported yet",
                model.nodes[id].name,
                c.len()
            )));
        }
    }

    // Values and gradients of every node's output.
    let mut value: Vec<Option<BufId>> = vec![None; model.nodes.len()];
    let mut grad: Vec<Option<BufId>> = vec![None; model.nodes.len()];
    let mut input = None;
    let mut loss_node = None;
    for (id, node) in model.nodes.iter().enumerate() {
        let numel = batch * node.features;
        match node.op {
            NodeOp::Input => {
                input = Some(b.add("input", f32t, numel, BufferRole::Batch));
                value[id] = input;
            }
            NodeOp::Loss(kind) => loss_node = Some((id, kind)),
            _ => {
                value[id] = Some(b.add(
                    format!("{}.out", node.name),
                    f32t,
                    numel,
                    BufferRole::Activation,
                ));
                grad[id] = Some(b.add(
                    format!("{}.out.grad", node.name),
                    f32t,
                    numel,
                    BufferRole::ActivationGrad,
                ));
            }
        }
    }
    let (input, (loss_id, loss_kind)) = match (input, loss_node) {
        (Some(i), Some(l)) => (i, l),
        _ => return Err(Error::config("a model needs an input node and a loss node")),
    };
    let logits_node = model.nodes[loss_id].inputs[0];
    let classes = model.nodes[logits_node].features;
    let labels = b.add("labels", DType::U32, batch, BufferRole::Batch);
    let targets = match loss_kind {
        crate::model::LossKind::Mse => {
            Some(b.add("targets", f32t, batch * classes, BufferRole::Batch))
        }
        crate::model::LossKind::Xent => None,
    };
    let row_loss = b.add("loss.rows", f32t, batch, BufferRole::Scratch);
    let row_correct = b.add("loss.correct", DType::U32, batch, BufferRole::Scratch);
    let loss_out = b.add("loss", f32t, 2, BufferRole::Scratch);
    let max_param = params.iter().map(|p| p.numel).max().unwrap_or(1);
    let update_scratch = b.add("update.scratch", f32t, max_param, BufferRole::Scratch);

    let val = |id: usize| {
        value[id]
            .ok_or_else(|| Error::config(format!("node `{}` has no value", model.nodes[id].name)))
    };
    let grd = |id: usize| {
        grad[id].ok_or_else(|| {
            Error::config(format!("node `{}` has no gradient", model.nodes[id].name))
        })
    };

    // Forward.
    let mut ops = Vec::new();
    for (id, node) in model.nodes.iter().enumerate() {
        match &node.op {
            NodeOp::Input | NodeOp::Loss(_) => {}
            NodeOp::Linear { weight, bias } => {
                let x = node.inputs[0];
                let shape = MatmulShape {
                    m: batch,
                    n: node.features,
                    k: model.nodes[x].features,
                };
                let y = val(id)?;
                ops.push(Op::Matmul {
                    layout: MatmulLayout::NT,
                    shape,
                    a: val(x)?,
                    b: params[*weight].value,
                    c: y,
                    accumulate: false,
                });
                if let Some(bias) = bias {
                    ops.push(Op::BiasForward {
                        y,
                        bias: params[*bias].value,
                        rows: batch,
                        cols: node.features,
                    });
                }
            }
            NodeOp::Activation(act) => {
                ops.push(Op::ActivationForward {
                    act: *act,
                    x: val(node.inputs[0])?,
                    y: val(id)?,
                    len: batch * node.features,
                });
            }
        }
    }
    ops.push(Op::Loss {
        kind: loss_kind,
        logits: val(logits_node)?,
        dlogits: grd(logits_node)?,
        rows: batch,
        classes,
    });
    let eval_ops = ops.len();

    // Backward, in reverse topological order.
    let mut grad_written = vec![false; params.len()];
    for (id, node) in model.nodes.iter().enumerate().rev() {
        match &node.op {
            NodeOp::Input | NodeOp::Loss(_) => {}
            NodeOp::Linear { weight, bias } => {
                let x = node.inputs[0];
                let (fin, fout) = (model.nodes[x].features, node.features);
                let dy = grd(id)?;
                let w = *weight;
                ops.push(Op::Matmul {
                    layout: MatmulLayout::TN,
                    shape: MatmulShape {
                        m: fout,
                        n: fin,
                        k: batch,
                    },
                    a: dy,
                    b: val(x)?,
                    c: params[w].grad,
                    accumulate: grad_written[w],
                });
                grad_written[w] = true;
                if let Some(bias) = *bias {
                    ops.push(Op::BiasBackward {
                        dy,
                        db: params[bias].grad,
                        rows: batch,
                        cols: fout,
                        accumulate: grad_written[bias],
                    });
                    grad_written[bias] = true;
                }
                // The network's input needs no gradient.
                if !matches!(model.nodes[x].op, NodeOp::Input) {
                    ops.push(Op::Matmul {
                        layout: MatmulLayout::NN,
                        shape: MatmulShape {
                            m: batch,
                            n: fin,
                            k: fout,
                        },
                        a: dy,
                        b: params[w].value,
                        c: grd(x)?,
                        accumulate: false,
                    });
                }
            }
            NodeOp::Activation(act) => {
                let x = node.inputs[0];
                ops.push(Op::ActivationBackward {
                    act: *act,
                    x: val(x)?,
                    y: val(id)?,
                    dy: grd(id)?,
                    dx: grd(x)?,
                    len: batch * node.features,
                });
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

    // Layers, as the statistics present them: each Linear with the activation after it.
    let mut layers = Vec::new();
    for (id, node) in model.nodes.iter().enumerate() {
        if let NodeOp::Linear { weight, bias } = &node.op {
            let act_node = consumers[id]
                .first()
                .copied()
                .filter(|&c| matches!(model.nodes[c].op, NodeOp::Activation(_)));
            let (out_node, activation) = match act_node {
                Some(c) => match model.nodes[c].op {
                    NodeOp::Activation(a) => (c, Some(a)),
                    _ => (id, None),
                },
                None => (id, None),
            };
            layers.push(LayerInfo {
                name: node.name.clone(),
                weight: *weight,
                bias: *bias,
                units: node.features,
                activation,
                output: val(out_node)?,
                output_grad: grd(out_node)?,
            });
        }
    }

    // Statistics of everything but the updates, then the optimizer with each update's
    // statistics right after it (the updates share one scratch buffer).
    let mut stats_jobs = Vec::new();
    let mut job = |layer: usize, kind: TensorKind, buffer: BufId, len: usize, saturation, class| {
        stats_jobs.push(StatsJobSpec {
            layer,
            kind,
            buffer,
            len,
            saturation,
            class,
        });
        stats_jobs.len() - 1
    };
    let every = StatsClass::EveryStep;
    let some = StatsClass::StatsSteps;
    let mut update_jobs = vec![None; params.len()];
    for (l, layer) in layers.iter().enumerate() {
        let w = &params[layer.weight];
        ops.push(Op::Stats {
            job: job(l, TensorKind::Weight, w.value, w.numel, None, some),
        });
        ops.push(Op::Stats {
            job: job(l, TensorKind::WeightGrad, w.grad, w.numel, None, every),
        });
        if let Some(bi) = layer.bias {
            let bp = &params[bi];
            ops.push(Op::Stats {
                job: job(l, TensorKind::Bias, bp.value, bp.numel, None, some),
            });
            ops.push(Op::Stats {
                job: job(l, TensorKind::BiasGrad, bp.grad, bp.numel, None, every),
            });
        }
        let sat = layer.activation.and_then(|a| a.saturation_bounds());
        let out_len = batch * layer.units;
        ops.push(Op::Stats {
            job: job(l, TensorKind::Output, layer.output, out_len, sat, some),
        });
        ops.push(Op::Stats {
            job: job(
                l,
                TensorKind::OutputGrad,
                layer.output_grad,
                out_len,
                None,
                some,
            ),
        });
        update_jobs[layer.weight] = Some(job(
            l,
            TensorKind::WeightUpdate,
            update_scratch,
            w.numel,
            None,
            some,
        ));
        if let Some(bi) = layer.bias {
            update_jobs[bi] = Some(job(
                l,
                TensorKind::BiasUpdate,
                update_scratch,
                params[bi].numel,
                None,
                some,
            ));
        }
    }
    let mut dead_unit_layers = Vec::new();
    for (l, layer) in layers.iter().enumerate() {
        if layer.activation.is_some_and(|a| a.can_die()) {
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
    for (p, update_job) in update_jobs.iter().enumerate() {
        ops.push(Op::Optimizer { param: p });
        if let Some(j) = update_job {
            ops.push(Op::Stats { job: *j });
        }
    }

    Ok(Plan {
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
        eval_ops,
        backward_end,
        stats_jobs,
        dead_unit_layers,
        input,
        labels,
        targets,
        row_loss,
        row_correct,
        loss_out,
        update_scratch,
        step_options: options,
    })
}
