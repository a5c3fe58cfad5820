//! How the plan lays out a recurrent layer: its saved tensors, its forward (one input
//! projection for all steps, then the time loop) and its backward (the time loop in
//! reverse, then the parameter gradients as products over all B·T rows).
//!
//! Forward:  gates = x·W_ihᵀ (one NT matmul, [B·T, I]·[I, G·H]) + b_ih; then
//!           `RecurrentForward` (per step: h_{t−1}·W_hhᵀ + b_hh and the cell).
//! Backward: `RecurrentBackward` (per step, in reverse: dh_t, the cell's backward, dc carry);
//!           dW_ih (+)= dgiᵀ·x, db_ih (+)= Σ dgi, dW_hh (+)= dghᵀ·hprev, db_hh (+)= Σ dgh
//!           (TN matmuls and column sums in a fixed order: deterministic); dx = dgi·W_ih.
//! The parameters are shared by every step: their gradients sum over all steps, which is
//! what the products over B·T rows compute.

use super::{BufId, BufferRole, Op};
use crate::error::Result;
use crate::model::{ModelSpec, NodeOp, RecurrentOp};
use crate::ops::{MatmulLayout, MatmulShape, RecurrentShape};
use crate::tensor::DType;

/// The buffers a recurrent layer keeps besides its output h and output gradient dy.
#[derive(Clone, Copy, Debug)]
pub struct SeqBuffers {
    /// [B, T, G·H]: the input projection, then the activated gates.
    pub gates: BufId,
    /// [B, T, H]: h_{t−1} at step t (zero at t = 0), for dW_hh as one product.
    pub hprev: BufId,
    /// [B, T, H]: the LSTM's c or the GRU's W_hn·h' + b_hn (one element for Elman cells).
    pub aux: BufId,
    /// [B, T, H]: the total gradient w.r.t. every h_t (what the statistics measure).
    pub dh: BufId,
    /// [B, T, G·H]: gradient w.r.t. the input-side pre-activations.
    pub dgi: BufId,
    /// [B, T, G·H]: gradient w.r.t. the hidden-side pre-activations (GRU only).
    pub dgh: Option<BufId>,
    /// [B, H]: the LSTM's dc carried from step t + 1 (one element for other cells).
    pub carry: BufId,
    /// [H, G·H]: W_hhᵀ, rewritten at the start of every forward (read by the GPU only).
    pub w_hh_t: BufId,
}

/// The geometry of recurrent node `id` for batches of `batch`.
pub fn shape_of(model: &ModelSpec, id: usize, batch: usize) -> Result<RecurrentShape> {
    let node = &model.nodes[id];
    let NodeOp::Recurrent(r) = &node.op else {
        return Err(crate::Error::config(format!(
            "node `{}` is not a recurrent layer",
            node.name
        )));
    };
    let xs = &model.nodes[node.inputs[0]].shape;
    let shape = RecurrentShape {
        cell: r.cell,
        batch,
        steps: node.shape[0],
        input: xs[1],
        hidden: node.shape[1],
        truncate: r.truncate,
    };
    shape.validate(&node.name)?;
    Ok(shape)
}

/// Allocates a recurrent layer's saved tensors through `add(name, dtype, numel, role)`.
pub fn allocate(
    add: &mut dyn FnMut(String, DType, usize, BufferRole) -> BufId,
    name: &str,
    s: &RecurrentShape,
) -> SeqBuffers {
    let (rows, h, gh) = (s.rows(), s.hidden, s.gate_width());
    let f = DType::F32;
    let aux_len = (rows * s.cell.aux_width(h)).max(1);
    let carry_len = if s.cell == crate::ops::CellKind::Lstm {
        s.batch * h
    } else {
        1
    };
    SeqBuffers {
        gates: add(
            format!("{name}.gates"),
            f,
            rows * gh,
            BufferRole::Activation,
        ),
        hprev: add(format!("{name}.hprev"), f, rows * h, BufferRole::Activation),
        aux: add(format!("{name}.aux"), f, aux_len, BufferRole::Activation),
        dh: add(
            format!("{name}.dh"),
            f,
            rows * h,
            BufferRole::ActivationGrad,
        ),
        dgi: add(
            format!("{name}.dgates_ih"),
            f,
            rows * gh,
            BufferRole::ActivationGrad,
        ),
        dgh: (s.cell == crate::ops::CellKind::Gru).then(|| {
            add(
                format!("{name}.dgates_hh"),
                f,
                rows * gh,
                BufferRole::ActivationGrad,
            )
        }),
        carry: add(
            format!("{name}.dc_carry"),
            f,
            carry_len,
            BufferRole::ActivationGrad,
        ),
        w_hh_t: add(format!("{name}.w_hh_t"), f, gh * h, BufferRole::Scratch),
    }
}

/// Parameter buffers of a recurrent node: (value, grad) of w_ih, w_hh, b_ih, b_hh.
pub struct SeqParams {
    pub w_ih: BufId,
    pub w_hh: BufId,
    pub b_ih: BufId,
    pub b_hh: BufId,
}

/// The forward ops: input projection for every step, its bias, the time loop.
pub fn forward_ops(
    s: &RecurrentShape,
    p: &SeqParams,
    x: BufId,
    h: BufId,
    sv: &SeqBuffers,
) -> Vec<Op> {
    vec![
        Op::Matmul {
            layout: MatmulLayout::NT,
            shape: MatmulShape {
                m: s.rows(),
                n: s.gate_width(),
                k: s.input,
            },
            a: x,
            b: p.w_ih,
            c: sv.gates,
            accumulate: false,
        },
        Op::BiasForward {
            y: sv.gates,
            bias: p.b_ih,
            rows: s.rows(),
            cols: s.gate_width(),
        },
        Op::RecurrentForward {
            shape: *s,
            w_hh: p.w_hh,
            w_hh_t: sv.w_hh_t,
            b_hh: p.b_hh,
            gates: sv.gates,
            h,
            hprev: sv.hprev,
            aux: sv.aux,
        },
    ]
}

/// The backward ops. `grads` are (buffer, accumulate) of dW_ih, dW_hh, db_ih, db_hh as the
/// plan's gradient convention decides them; `dx` is where the input gradient goes (None
/// when the input needs none).
#[allow(clippy::too_many_arguments)]
pub fn backward_ops(
    s: &RecurrentShape,
    p: &SeqParams,
    x: BufId,
    h: BufId,
    dy: BufId,
    sv: &SeqBuffers,
    grads: [(BufId, bool); 4],
    dx: Option<BufId>,
) -> Vec<Op> {
    let (rows, gh) = (s.rows(), s.gate_width());
    let dgh = sv.dgh.unwrap_or(sv.dgi);
    let [
        (dw_ih, acc_wih),
        (dw_hh, acc_whh),
        (db_ih, acc_bih),
        (db_hh, acc_bhh),
    ] = grads;
    let mut ops = vec![
        Op::RecurrentBackward {
            shape: *s,
            w_hh: p.w_hh,
            gates: sv.gates,
            h,
            hprev: sv.hprev,
            aux: sv.aux,
            dy,
            dh: sv.dh,
            dgi: sv.dgi,
            dgh: sv.dgh,
            carry: sv.carry,
        },
        Op::Matmul {
            layout: MatmulLayout::TN,
            shape: MatmulShape {
                m: gh,
                n: s.input,
                k: rows,
            },
            a: sv.dgi,
            b: x,
            c: dw_ih,
            accumulate: acc_wih,
        },
        Op::BiasBackward {
            dy: sv.dgi,
            db: db_ih,
            rows,
            cols: gh,
            accumulate: acc_bih,
        },
        Op::Matmul {
            layout: MatmulLayout::TN,
            shape: MatmulShape {
                m: gh,
                n: s.hidden,
                k: rows,
            },
            a: dgh,
            b: sv.hprev,
            c: dw_hh,
            accumulate: acc_whh,
        },
        Op::BiasBackward {
            dy: dgh,
            db: db_hh,
            rows,
            cols: gh,
            accumulate: acc_bhh,
        },
    ];
    if let Some(dx) = dx {
        ops.push(Op::Matmul {
            layout: MatmulLayout::NN,
            shape: MatmulShape {
                m: rows,
                n: s.input,
                k: gh,
            },
            a: sv.dgi,
            b: p.w_ih,
            c: dx,
            accumulate: false,
        });
    }
    ops
}

/// The parameter ids of a recurrent op, in the order of `SeqParams` and `grads`.
pub fn param_ids(r: &RecurrentOp) -> [usize; 4] {
    [r.weight_ih, r.weight_hh, r.bias_ih, r.bias_hh]
}

/// Where a recurrent layer's per-step hidden-gradient norms lie in `Plan::hidden_norms`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecurrentLayer {
    /// The node's name (`rnn.l0`).
    pub name: String,
    pub steps: usize,
    /// First element of this layer's T norms.
    pub offset: usize,
}
