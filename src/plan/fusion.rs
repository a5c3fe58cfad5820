//! Which consecutive ops of a plan an executor may run as one pass:
//! - a dense layer's forward product `y = x·Wᵀ` (Op::Matmul NT, overwriting) followed by its
//!   bias (`y += b`, Op::BiasForward on the same y) and/or an activation reading y
//!   (`z = f(y)`, Op::ActivationForward) runs as one tiled matmul whose epilogue adds the
//!   bias and writes z (`kernels::matmul::matmul_forward_fused`);
//! - a BatchNorm forward or an Add followed by an activation reading its y: the pass that
//!   writes y writes z = f(y) too (the `_act` entries of `kernels::batchnorm` and
//!   `kernels::add`), in training and in evaluation;
//! - an activation's backward followed by the backward of the BatchNorm whose output it
//!   read: the BatchNorm's first pass forms each element's dy from the activation's
//!   backward, writes it, and sums it (`batchnorm_backward_partial_act`). Where a copy of
//!   that gradient sits between the two (a residual merge passing its gradient to an
//!   identity shortcut's input: activation backward, `CopyTensor`, BatchNorm backward), the
//!   same pass writes the copy too.
//!
//! Safe by construction: the fused dispatch writes the same tensors the unfused ops write,
//! with the same values bit for bit (same operations in the same order), so y keeps the
//! pre-activation that the activation's backward and the statistics read, and nothing in
//! the plan can observe the difference. Only the intermediate state between the fused ops
//! (y without its bias; a copy's destination before the BatchNorm's backward runs)
//! disappears, and no op reads it: they are consecutive in the op list. The plan is
//! unchanged; fused ops keep their place in the op list with no pass of their own. (The
//! CPU executor goes one step further where the activation is a ReLU and no op, record or
//! layer reads y but the ReLU's backward, which it serves from z: it leaves y unwritten,
//! `cpu::executor`'s `unread_pre_activations`.)
//!
//! Each executor takes what it has passes for: the GPU executor every pattern (a dense one
//! only where the product runs on a tiled variant, `gpu::fusion::plan_fusions`), the CPU
//! executor the activation forwards after a BatchNorm or an Add (`cpu::executor`).
//!
//! `GRADSCOPE_FUSE=0` turns fusion off (for comparison and debugging).

use crate::ops::{Activation, MatmulLayout, MatmulShape};
use crate::plan::{BufId, Op, Plan};

/// The environment variable that turns fusion off (`0`, `off`).
pub const FUSE_ENV: &str = "GRADSCOPE_FUSE";

/// A dense forward with its epilogue, found at the head op's index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DenseForward {
    pub shape: MatmulShape,
    pub x: BufId,
    pub w: BufId,
    pub y: BufId,
    pub bias: Option<BufId>,
    /// (f, z): z = f(y).
    pub act: Option<(Activation, BufId)>,
}

/// The backward of the activation after a BatchNorm, run inside the BatchNorm's backward:
/// that activation's x, y and dy, and where the gradient it forms is copied to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActBackward {
    pub act: Activation,
    pub x: BufId,
    pub y: BufId,
    pub dy: BufId,
    /// The `CopyTensor` destination between the two ops, absorbed too.
    pub copy: Option<BufId>,
}

/// What the executor does with one op of a list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fused {
    /// Build it as usual.
    Alone,
    /// The head of a fused dense forward: one dispatch for this op and the next `absorbs`.
    Head(DenseForward, usize),
    /// A BatchNorm forward or an Add that also writes z = f(y) of the activation after it
    /// (which is absorbed).
    WithAct(Activation, BufId),
    /// A BatchNorm backward whose dy it forms from the backward of the activation before
    /// it in the list (which is absorbed, with the copy of its result, if any).
    ActThenNormBackward(ActBackward),
    /// Computed by an earlier head: no dispatch.
    Absorbed,
}

/// Whether fusion is on (`GRADSCOPE_FUSE` is not `0`/`off`).
pub fn enabled() -> bool {
    !matches!(
        std::env::var(FUSE_ENV)
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str(),
        "0" | "off" | "false" | "no"
    )
}

/// The fusable patterns of `ops`, whatever the variants.
pub fn find_fusions(plan: &Plan, ops: &[Op]) -> Vec<Fused> {
    let mut out = vec![Fused::Alone; ops.len()];
    if !enabled() {
        return out;
    }
    let same = |a: BufId, b: BufId| plan.resolve(a) == plan.resolve(b);
    let mut i = 0;
    while i < ops.len() {
        // (y, its length, every buffer the op touches) of an op that can write f(y) too.
        let with_act = match ops[i] {
            Op::BatchNormForward {
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
                ..
            } => Some((
                y,
                n * c * s,
                vec![x, y, gamma, beta, mean, inv_std, running_mean, running_var],
            )),
            Op::AddForward { a, b, y, len } => Some((y, len, vec![a, b, y])),
            _ => None,
        };
        if let Some((y, y_len, touched)) = with_act
            && let Some(&Op::ActivationForward {
                act,
                x: ax,
                y: z,
                len,
            }) = ops.get(i + 1)
            && same(ax, y)
            && len == y_len
            && touched.iter().all(|&b| !same(b, z))
        {
            out[i] = Fused::WithAct(act, z);
            out[i + 1] = Fused::Absorbed;
            i += 2;
            continue;
        }
        // An identity shortcut's input receives the merge's gradient as a copy, which
        // stands between the merge's activation backward and the BatchNorm backward.
        let copy = match ops.get(i + 1) {
            Some(&Op::CopyTensor { src, dst, len }) => Some((src, dst, len)),
            _ => None,
        };
        let norm_at = i + 1 + copy.is_some() as usize;
        if let Op::ActivationBackward {
            act,
            x: ax,
            y: ay,
            dy: ady,
            dx: adx,
            len,
        } = ops[i]
            && copy.is_none_or(|(src, _, l)| same(src, adx) && l == len)
            && let Some(&Op::BatchNormBackward {
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
                ..
            }) = ops.get(norm_at)
            && same(adx, dy)
            && len == n * c * s
        {
            // The fused pass reads the activation's three tensors while it writes dy, the
            // copy, dx, dγ and dβ: none may share storage (plan::share may give two
            // gradients whose lifetimes did not overlap before the fusion one buffer).
            let copy_dst = copy.map(|(_, dst, _)| dst);
            let written: Vec<BufId> = [dy, dx, dgamma, dbeta]
                .into_iter()
                .chain(copy_dst)
                .collect();
            let read = [ax, ay, ady, x, gamma, mean, inv_std];
            let clash = written
                .iter()
                .enumerate()
                .any(|(k, &w)| written[k + 1..].iter().chain(&read).any(|&r| same(w, r)));
            if !clash {
                out[i..norm_at].fill(Fused::Absorbed);
                out[norm_at] = Fused::ActThenNormBackward(ActBackward {
                    act,
                    x: ax,
                    y: ay,
                    dy: ady,
                    copy: copy_dst,
                });
                i = norm_at + 1;
                continue;
            }
        }
        let Op::Matmul {
            layout: MatmulLayout::NT,
            shape,
            a: x,
            b: w,
            c: y,
            accumulate: false,
        } = ops[i]
        else {
            i += 1;
            continue;
        };
        let mut f = DenseForward {
            shape,
            x,
            w,
            y,
            bias: None,
            act: None,
        };
        let mut next = i + 1;
        if let Some(&Op::BiasForward {
            y: by,
            bias,
            rows,
            cols,
        }) = ops.get(next)
            && same(by, y)
            && rows == shape.m
            && cols == shape.n
            && !same(bias, y)
        {
            f.bias = Some(bias);
            next += 1;
        }
        if let Some(&Op::ActivationForward {
            act,
            x: ax,
            y: z,
            len,
        }) = ops.get(next)
        {
            let distinct = [Some(x), Some(w), Some(y), f.bias]
                .into_iter()
                .flatten()
                .all(|b| !same(b, z));
            if same(ax, y) && len == shape.m * shape.n && distinct {
                f.act = Some((act, z));
                next += 1;
            }
        }
        let absorbs = next - i - 1;
        if absorbs > 0 {
            out[i] = Fused::Head(f, absorbs);
            for o in &mut out[i + 1..next] {
                *o = Fused::Absorbed;
            }
        }
        i = next;
    }
    out
}
