//! Which part of a step an op belongs to (forward, loss, backward, statistics, clipping,
//! optimizer) and which layer, for `gradscope train --profile`.
//!
//! The plan's ops carry buffers, not layer names; the layer is read from a buffer's name:
//! in the forward pass the buffer the op writes (`stage1.block2.conv1.out` →
//! `stage1.block2.conv1`), in the backward pass the gradient of the layer's output it reads
//! (`conv2.out.grad` → `conv2`: the input gradient it writes belongs to the layer below);
//! statistics and optimizer ops name their layer or parameter by index.

use crate::plan::{BufId, Op, Plan};

/// The part of a step an op belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Forward,
    Loss,
    Backward,
    Statistics,
    Clip,
    Optimizer,
}

impl OpKind {
    pub const ALL: [OpKind; 6] = [
        OpKind::Forward,
        OpKind::Loss,
        OpKind::Backward,
        OpKind::Statistics,
        OpKind::Clip,
        OpKind::Optimizer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Forward => "forward",
            OpKind::Loss => "loss",
            OpKind::Backward => "backward",
            OpKind::Statistics => "statistics",
            OpKind::Clip => "clip",
            OpKind::Optimizer => "optimizer",
        }
    }
}

/// Suffixes the plan appends to a node's or parameter's name (longest first).
const SUFFIXES: [&str; 12] = [
    ".out.grad.partial",
    ".weight.grad",
    ".bias.grad",
    ".running_mean",
    ".running_var",
    ".out.grad",
    ".inv_std",
    ".argmax",
    ".weight",
    ".mean",
    ".bias",
    ".out",
];

/// The layer a buffer belongs to, from its name.
pub fn layer_of_name(name: &str) -> String {
    for s in SUFFIXES {
        if let Some(stem) = name.strip_suffix(s) {
            return stem.to_string();
        }
    }
    // `<param>.grad`, `<param>.stateN`: the parameter's layer.
    match name.rsplit_once('.') {
        Some((stem, last)) if last == "grad" || last.starts_with("state") => layer_of_name(stem),
        _ => name.to_string(),
    }
}

/// The buffer an op writes (its result), where it has one.
fn written(op: &Op) -> Option<BufId> {
    Some(match *op {
        Op::Matmul { c, .. } => c,
        Op::BiasForward { y, .. } => y,
        Op::BiasBackward { db, .. } => db,
        Op::ActivationForward { y, .. } => y,
        Op::ActivationBackward { dx, .. } => dx,
        Op::Conv2dForward { y, .. } => y,
        Op::Conv2dBiasForward { y, .. } => y,
        Op::Conv2dBackwardInput { dx, .. } => dx,
        Op::Conv2dBackwardWeight { dw, .. } => dw,
        Op::Conv2dBackwardBias { db, .. } => db,
        Op::BatchNormForward { y, .. } => y,
        Op::BatchNormBackward { dx, .. } => dx,
        Op::LayerNormForward { y, .. } => y,
        Op::LayerNormBackward { dx, .. } => dx,
        Op::MaxPoolForward { y, .. } => y,
        Op::MaxPoolBackward { dx, .. } => dx,
        Op::AvgPoolForward { y, .. } => y,
        Op::AvgPoolBackward { dx, .. } => dx,
        Op::GlobalAvgPoolForward { y, .. } => y,
        Op::GlobalAvgPoolBackward { dx, .. } => dx,
        Op::DropoutForward { y, .. } => y,
        Op::DropoutBackward { dx, .. } => dx,
        Op::AddForward { y, .. } => y,
        Op::AccumulateGrad { dst, .. } => dst,
        Op::CopyTensor { dst, .. } => dst,
        _ => return None,
    })
}

/// The gradient of a layer's output a backward op reads (the layer it works for).
fn read_grad(op: &Op) -> Option<BufId> {
    Some(match *op {
        // dx = dy·W (NN) and dW = dyᵀ·x (TN): A is the output gradient.
        Op::Matmul { a, .. } => a,
        Op::BiasBackward { dy, .. }
        | Op::ActivationBackward { dy, .. }
        | Op::Conv2dBackwardInput { dy, .. }
        | Op::Conv2dBackwardWeight { dy, .. }
        | Op::Conv2dBackwardBias { dy, .. }
        | Op::BatchNormBackward { dy, .. }
        | Op::LayerNormBackward { dy, .. }
        | Op::MaxPoolBackward { dy, .. }
        | Op::AvgPoolBackward { dy, .. }
        | Op::GlobalAvgPoolBackward { dy, .. }
        | Op::DropoutBackward { dy, .. } => dy,
        Op::CopyTensor { src, .. } => src,
        _ => return None,
    })
}

/// The op's kernel, in a few words ("matmul NT 128×256×784").
pub fn label(op: &Op) -> String {
    match op {
        Op::Matmul { layout, shape, .. } => {
            format!("matmul {layout:?} {}×{}×{}", shape.m, shape.n, shape.k)
        }
        Op::ActivationForward { act, .. } => format!("activation forward {}", act.name()),
        Op::ActivationBackward { act, .. } => format!("activation backward {}", act.name()),
        Op::Stats { .. } => "stats".into(),
        Op::Optimizer { .. } => "optimizer update".into(),
        // The variant's name in words: `Conv2dBackwardInput` → "conv2d backward input".
        other => {
            let debug = format!("{other:?}");
            let name = debug.split([' ', '{', '(']).next().unwrap_or("op");
            let mut out = String::new();
            for (i, ch) in name.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push(' ');
                }
                out.push(ch.to_ascii_lowercase());
            }
            out
        }
    }
}

/// The op's kernel without its shape ("matmul NT"): what the profile's table by kernel
/// adds up.
pub fn kernel(label: &str) -> &str {
    if !label.starts_with("matmul ") {
        return label;
    }
    // "matmul", the layout, then the shape.
    match label.match_indices(' ').nth(1) {
        Some((at, _)) => &label[..at],
        None => label,
    }
}

/// Kind, layer and label of op `i` of the plan's step.
pub fn attribute(plan: &Plan, i: usize) -> (OpKind, String, String) {
    let op = &plan.ops[i];
    let (kind, layer) = match op {
        Op::Stats { job } => {
            let j = &plan.stats_jobs[*job];
            (
                OpKind::Statistics,
                plan.layers.get(j.layer).map_or_else(
                    || layer_of_name(&plan.buffer(j.buffer).name),
                    |l| l.name.clone(),
                ),
            )
        }
        Op::DeadUnits { layer, .. } => (
            OpKind::Statistics,
            plan.layers
                .get(*layer)
                .map_or_else(|| "?".into(), |l| l.name.clone()),
        ),
        Op::Optimizer { param } => (OpKind::Optimizer, layer_of_name(&plan.params[*param].name)),
        Op::ClipNorm { .. } | Op::ClipValue { .. } => (OpKind::Clip, "(all)".into()),
        Op::Loss { .. } => (OpKind::Loss, "loss".into()),
        _ => {
            let (kind, buf) = if i < plan.forward_end {
                (OpKind::Forward, written(op))
            } else {
                (OpKind::Backward, read_grad(op).or_else(|| written(op)))
            };
            let layer = buf
                .map(|b| layer_of_name(&plan.buffer(b).name))
                .unwrap_or_else(|| "?".into());
            (kind, layer)
        }
    };
    (kind, plan_layer(plan, layer), label(op))
}

/// The plan's layer a node belongs to: a node named after a layer with a suffix
/// (`conv1.act`, `hidden2.act`) is counted with that layer; other nodes (pooling, shortcuts'
/// additions) keep their own names.
fn plan_layer(plan: &Plan, name: String) -> String {
    if plan.layers.iter().any(|l| l.name == name) {
        return name;
    }
    plan.layers
        .iter()
        .filter(|l| {
            name.len() > l.name.len()
                && name.starts_with(&l.name)
                && name.as_bytes()[l.name.len()] == b'.'
        })
        .max_by_key(|l| l.name.len())
        .map_or(name.clone(), |l| l.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_drop_the_plans_suffixes() {
        assert_eq!(
            layer_of_name("stage1.block2.conv1.out"),
            "stage1.block2.conv1"
        );
        assert_eq!(layer_of_name("fc1.weight.grad"), "fc1");
        assert_eq!(layer_of_name("hidden3.out.grad.partial"), "hidden3");
        assert_eq!(layer_of_name("bn1.running_var"), "bn1");
        assert_eq!(layer_of_name("layers.0.weight.state1"), "layers.0");
        assert_eq!(layer_of_name("loss_out"), "loss_out");
    }

    #[test]
    fn kernel_is_the_label_without_the_shape() {
        assert_eq!(kernel("matmul NT 128×256×784"), "matmul NT");
        assert_eq!(kernel("matmul TN"), "matmul TN");
        assert_eq!(kernel("conv2d backward weight"), "conv2d backward weight");
        assert_eq!(
            kernel("stats finalize (all records)"),
            "stats finalize (all records)"
        );
    }
}
