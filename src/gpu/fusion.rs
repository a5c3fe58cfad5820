//! The fusions the GPU executor runs (crate::plan::fusion describes the patterns): every one
//! `find_fusions` finds, except a dense forward whose product the autotune (or heuristic)
//! runs on the simple kernel, which has no epilogue.

pub use crate::plan::fusion::{ActBackward, DenseForward, FUSE_ENV, Fused, enabled, find_fusions};

use super::GpuContext;
use super::kernels::matmul::fused_forward_variant;
use crate::error::Result;
use crate::plan::{Op, Plan};

/// Per op of `ops`: alone, the head of a fusion, or absorbed by one; a fusion is kept only
/// where the product's chosen variant is a tiled one (the simple kernel has no epilogue,
/// and forcing a slower tile on the product would cost more than the dispatches saved).
pub fn plan_fusions(ctx: &GpuContext, plan: &Plan, ops: &[Op]) -> Result<Vec<Fused>> {
    let mut out = find_fusions(plan, ops);
    for i in 0..out.len() {
        if let Fused::Head(d, absorbs) = out[i]
            && fused_forward_variant(ctx, d.shape)?.is_none()
        {
            for o in &mut out[i..=i + absorbs] {
                *o = Fused::Alone;
            }
        }
    }
    Ok(out)
}
