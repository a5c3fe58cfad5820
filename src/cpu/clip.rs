//! CPU twin of shaders/clip.wgsl: gradient clipping by global norm (PyTorch's
//! `clip_grad_norm_`: scale = min(1, max_norm / (‖g‖ + 1e-6))) computed from the gradient
//! statistics records, and by value (`clip_grad_value_`: clamp to [−v, v], NaN kept).
//!
//! The global norm merges the records' (max |x|, Σ(x/max|x|)²) pairs in record order with
//! the nrm2 rescaling, in f32 and in the shader's operation order, so both executors reach
//! the same norm from the same records.

use super::Element;
use crate::plan::Guard;
use crate::stats::RawStats;

/// What the norm step decided (the WGSL `state` array).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipDecision {
    /// Global L2 norm of every gradient before clipping: NaN when any gradient holds a NaN,
    /// +Inf when any holds an Inf.
    pub norm: f32,
    /// The factor applied to every gradient.
    pub scale: f32,
    /// The step's update is discarded (non-finite gradients under the `skip` policy).
    pub skipped: bool,
    /// norm · scale.
    pub norm_after: f32,
}

impl ClipDecision {
    /// From the four words of the device's clip state.
    pub fn from_state(s: [f32; 4]) -> Self {
        ClipDecision {
            norm: s[0],
            scale: s[1],
            skipped: s[2] != 0.0,
            norm_after: s[3],
        }
    }
}

/// `grad_records` are the records of every parameter gradient, merged in order; `max_norm`
/// = +inf only measures (scale 1). Non-finite gradients give scale 0 and `skipped` under
/// `Guard::Skip` and `Guard::Halt`, else scale 1 (the values go through unscaled); under
/// `Guard::Halt` a step after a skipped one (`previous`) is skipped as well.
pub fn clip_norm_scale(
    grad_records: &[&RawStats],
    max_norm: f32,
    guard: Guard,
    previous: Option<ClipDecision>,
) -> ClipDecision {
    clip_norm_scale_iter(grad_records.iter().copied(), max_norm, guard, previous)
}

/// `clip_norm_scale` over the records as an iterator (the executor's path: it picks them
/// out of its record list in order without collecting them).
pub fn clip_norm_scale_iter<'a>(
    grad_records: impl Iterator<Item = &'a RawStats>,
    max_norm: f32,
    guard: Guard,
    previous: Option<ClipDecision>,
) -> ClipDecision {
    let (mut big, mut ssq) = (0.0f32, 0.0f32);
    let (mut nan, mut inf) = (0u32, 0u32);
    for r in grad_records {
        nan += r.nan;
        inf += r.inf;
        let (m, s) = (r.max_abs, r.norm_ssq);
        if m > big {
            let q = big / m;
            ssq = s + ssq * (q * q);
            big = m;
        } else if m > 0.0 {
            let q = m / big;
            ssq += s * (q * q);
        }
    }
    let mut norm = big * ssq.sqrt();
    if nan > 0 {
        norm = f32::NAN;
    } else if inf > 0 {
        norm = f32::INFINITY;
    }
    let (mut scale, mut skipped) = (1.0f32, false);
    let latched = guard == Guard::Halt && previous.is_some_and(|p| p.skipped);
    if nan + inf > 0 || latched {
        if guard != Guard::Off {
            scale = 0.0;
            skipped = true;
        }
    } else {
        scale = 1.0f32.min(max_norm / (norm + 1e-6));
    }
    ClipDecision {
        norm,
        scale,
        skipped,
        norm_after: norm * scale,
    }
}

/// grad ← grad · scale (scale is the f32 the device uses, widened for f64 checks).
pub fn clip_scale<T: Element>(grad: &mut [T], scale: f32) {
    let s = T::from_f64(scale as f64);
    for g in grad {
        *g = *g * s;
    }
}

/// grad ← clamp(grad, −value, value); NaN stays NaN (comparisons with NaN are false).
pub fn clip_value<T: Element>(grad: &mut [T], value: f32) {
    let v = T::from_f64(value as f64);
    for g in grad {
        if *g > v {
            *g = v;
        } else if *g < -v {
            *g = -v;
        }
    }
}
