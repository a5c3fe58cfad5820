//! Launcher of shaders/batchnorm.wgsl: batch normalization with PyTorch's semantics, one
//! kernel set for nn.BatchNorm1d ([N, C], s = 1) and nn.BatchNorm2d (NCHW, s = H·W): x is
//! [n, c, s] and each channel is normalized over its n·s values.
//!
//! The training forward and the backward are two dispatches each (partial, apply; see the
//! shader): one workgroup per run of a channel reduces it in a fixed order (no float
//! atomics), then one workgroup per run combines its channel's run partials (every run of
//! the channel the same way, to the same bits) and writes the output, so a channel of a
//! million values keeps the whole GPU busy. The runs' partials live in a small scratch
//! buffer the launcher allocates at plan time (16·c·runs or 8·c·runs bytes). The evaluation forward is
//! one elementwise dispatch.

use super::launch::{check_buffer, check_count, check_distinct, grid_1d};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext};
use crate::ops::Activation;
use crate::ops::batchnorm::runs;

/// Workgroup size of batchnorm.wgsl (its `WG` constant, and `ops::batchnorm::WG`).
pub const WG: u32 = crate::ops::batchnorm::WG as u32;
/// torch.nn.BatchNorm*d's default eps.
pub const DEFAULT_EPS: f32 = 1e-5;
/// torch.nn.BatchNorm*d's default momentum of the running statistics.
pub const DEFAULT_MOMENTUM: f32 = 0.1;

/// The WGSL struct `Shape` of batchnorm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    n: u32,
    c: u32,
    s: u32,
    accumulate: u32,
    eps: f32,
    momentum: f32,
    chunks: u32,
    chunk: u32,
    act_code: u32,
    act_param: f32,
    copy_dy: u32,
    _pad: u32,
}

/// An activation fused into the pass that writes y: z = f(y), written beside y.
pub type FusedActivation<'a> = Option<(Activation, &'a wgpu::Buffer)>;

/// The backward of the activation after a BatchNorm, fused into the BatchNorm's backward:
/// its input x (the BatchNorm's output), its output y and the gradient dy of y. The
/// BatchNorm's own dy is then formed from these (and written) instead of read; with
/// `copy`, written there a second time (the same values: the gradient an identity
/// shortcut's input receives from the merge, which would otherwise be copied apart).
#[derive(Clone, Copy)]
pub struct ActivationBackward<'a> {
    pub act: Activation,
    pub x: &'a wgpu::Buffer,
    pub y: &'a wgpu::Buffer,
    pub dy: &'a wgpu::Buffer,
    pub copy: Option<&'a wgpu::Buffer>,
}

fn shape(op: &str, n: usize, c: usize, s: usize) -> Result<Shape> {
    if n == 0 || c == 0 || s == 0 {
        return Err(Error::shape(
            op,
            format!("n {n}, c {c}, s {s}: every dimension must be at least 1"),
        ));
    }
    check_count(op, "n·c·s", n.saturating_mul(c).saturating_mul(s))?;
    let (chunks, chunk) = runs(n * s);
    check_count(
        op,
        "workgroups of the partial pass (c·runs·WG)",
        c * chunks * WG as usize,
    )?;
    Ok(Shape {
        n: n as u32,
        c: c as u32,
        s: s as u32,
        accumulate: 0,
        eps: DEFAULT_EPS,
        momentum: DEFAULT_MOMENTUM,
        chunks: chunks as u32,
        chunk: chunk as u32,
        act_code: 0,
        act_param: 0.0,
        copy_dy: 0,
        _pad: 0,
    })
}

/// Sets the fused activation's code into `sh` and checks z; returns the buffer to bind.
fn fused_act<'a>(
    op: &str,
    sh: &mut Shape,
    act: FusedActivation<'a>,
    len: usize,
) -> Result<Option<&'a wgpu::Buffer>> {
    let Some((f, z)) = act else {
        return Ok(None);
    };
    check_buffer(op, "z (the fused activation's output)", z, len)?;
    sh.act_code = f.code();
    sh.act_param = f.param();
    Ok(Some(z))
}

/// Checks a pass's buffers: `full` hold len = n·c·s values, `per_channel` c, and no two of
/// them all are one buffer.
fn check_pass(
    op: &str,
    len: usize,
    c: usize,
    full: &[(&str, &wgpu::Buffer)],
    per_channel: &[(&str, &wgpu::Buffer)],
) -> Result<()> {
    for &(name, b) in full {
        check_buffer(op, name, b, len)?;
    }
    for &(name, b) in per_channel {
        check_buffer(op, name, b, c)?;
    }
    let all: Vec<(&str, &wgpu::Buffer)> = full.iter().chain(per_channel).copied().collect();
    check_distinct(op, &all)
}

fn check_eps(op: &str, eps: f32) -> Result<()> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::shape(
            op,
            format!("eps {eps} must be finite and ≥ 0"),
        ));
    }
    Ok(())
}

/// Training-mode forward. x, y: [n, c, s]; gamma, beta, save_mean, save_invstd,
/// running_mean, running_var: [c]. Writes y, save_mean, save_invstd; updates running_mean
/// and running_var in place with `momentum` (unbiased variance). Two dispatches: the
/// runs' moments, then the channels' statistics and y.
/// Refuses n·s = 1, as torch does ("Expected more than 1 value per channel when training").
/// With `act`, the last pass also writes z = f(y) (the activation after the BatchNorm, one
/// dispatch fewer).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward_train(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    y: &wgpu::Buffer,
    save_mean: &wgpu::Buffer,
    save_invstd: &wgpu::Buffer,
    running_mean: &wgpu::Buffer,
    running_var: &wgpu::Buffer,
    n: usize,
    c: usize,
    s: usize,
    eps: f32,
    momentum: f32,
    act: FusedActivation<'_>,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "batchnorm_forward_train";
    let mut sh = shape(OP, n, c, s)?;
    if n * s < 2 {
        return Err(Error::shape(
            OP,
            format!(
                "n {n} × s {s} = 1 value per channel: training-mode batch norm needs more than one"
            ),
        ));
    }
    check_eps(OP, eps)?;
    if !(momentum.is_finite() && (0.0..=1.0).contains(&momentum)) {
        return Err(Error::shape(
            OP,
            format!("momentum {momentum} must lie in [0, 1]"),
        ));
    }
    sh.eps = eps;
    sh.momentum = momentum;
    let len = n * c * s;
    let z = fused_act(OP, &mut sh, act, len)?;
    let mut full = vec![("x", x), ("y", y)];
    full.extend(z.map(|z| ("z", z)));
    check_pass(
        OP,
        len,
        c,
        &full,
        &[
            ("gamma", gamma),
            ("beta", beta),
            ("save_mean", save_mean),
            ("save_invstd", save_invstd),
            ("running_mean", running_mean),
            ("running_var", running_var),
        ],
    )?;
    let u = ctx.uniform("batchnorm_forward_train.shape", &sh)?;
    let partial = scratch(
        ctx,
        "batchnorm_forward_train.moments",
        c * sh.chunks as usize,
        16,
    )?;
    let mut apply: Vec<&wgpu::Buffer> = vec![
        &u,
        x,
        &partial,
        save_mean,
        save_invstd,
        running_mean,
        running_var,
        gamma,
        beta,
        y,
    ];
    apply.extend(z);
    let apply_entry = match z {
        Some(_) => "batchnorm_forward_apply_act",
        None => "batchnorm_forward_apply",
    };
    Ok(vec![
        ctx.dispatch_reduction(
            "batchnorm",
            "batchnorm_subgroup",
            "batchnorm_forward_partial",
            &[&u, x, &partial],
            grid_1d(ctx, c * sh.chunks as usize * WG as usize, WG),
        )?,
        ctx.dispatch_reduction(
            "batchnorm",
            "batchnorm_subgroup",
            apply_entry,
            &apply,
            grid_1d(ctx, c * sh.chunks as usize * WG as usize, WG),
        )?,
    ])
}

/// A scratch buffer of `items` records of `bytes` each, allocated at plan time.
fn scratch(ctx: &GpuContext, label: &str, items: usize, bytes: u64) -> Result<wgpu::Buffer> {
    let size = (items.max(1) as u64 * bytes).max(16);
    ctx.check_size(label, size)?;
    ctx.storage_buffer(label, size)
}

/// Evaluation-mode forward: y = γ·(x − running_mean)/sqrt(running_var + eps) + β.
/// x, y: [n, c, s]; gamma, beta, running_mean, running_var: [c]. One invocation per element.
/// With `act`, it also writes z = f(y).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward_eval(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    running_mean: &wgpu::Buffer,
    running_var: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: usize,
    c: usize,
    s: usize,
    eps: f32,
    act: FusedActivation<'_>,
) -> Result<Dispatch> {
    const OP: &str = "batchnorm_forward_eval";
    let mut sh = shape(OP, n, c, s)?;
    check_eps(OP, eps)?;
    sh.eps = eps;
    let len = n * c * s;
    let z = fused_act(OP, &mut sh, act, len)?;
    let mut full = vec![("x", x), ("y", y)];
    full.extend(z.map(|z| ("z", z)));
    check_pass(
        OP,
        len,
        c,
        &full,
        &[
            ("gamma", gamma),
            ("beta", beta),
            ("running_mean", running_mean),
            ("running_var", running_var),
        ],
    )?;
    let u = ctx.uniform("batchnorm_forward_eval.shape", &sh)?;
    // Binding order of the shader: x, running mean, running var, gamma, beta, y (, z).
    let mut bindings: Vec<&wgpu::Buffer> = vec![&u, x, running_mean, running_var, gamma, beta, y];
    bindings.extend(z);
    let entry = match z {
        Some(_) => "batchnorm_forward_eval_act",
        None => "batchnorm_forward_eval",
    };
    ctx.dispatch_reduction(
        "batchnorm",
        "batchnorm_subgroup",
        entry,
        &bindings,
        grid_1d(ctx, len, WG),
    )
}

/// Training-mode backward from the mean and inv_std saved by the forward. x, dy, dx:
/// [n, c, s]; gamma, save_mean, save_invstd, dgamma, dbeta: [c]. dx is overwritten; dγ and
/// dβ are overwritten, or added to when `accumulate`. Two dispatches: the runs' sums, then
/// the channels' totals (and dγ, dβ) and dx. With `act`, the first pass forms dy from the
/// following activation's backward and writes it (one dispatch fewer than running that
/// backward apart).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    save_mean: &wgpu::Buffer,
    save_invstd: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    dgamma: &wgpu::Buffer,
    dbeta: &wgpu::Buffer,
    n: usize,
    c: usize,
    s: usize,
    accumulate: bool,
    act: Option<ActivationBackward<'_>>,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "batchnorm_backward";
    let mut sh = shape(OP, n, c, s)?;
    sh.accumulate = accumulate as u32;
    let len = n * c * s;
    let mut full = vec![("x", x), ("dy", dy), ("dx", dx)];
    if let Some(a) = &act {
        // dy is then written here, so no other tensor may share its buffer.
        full.extend([
            ("the activation's x", a.x),
            ("the activation's y", a.y),
            ("the activation's dy", a.dy),
        ]);
        if let Some(copy) = a.copy {
            full.push(("the copy of dy", copy));
            sh.copy_dy = 1;
        }
        sh.act_code = a.act.code();
        sh.act_param = a.act.param();
    }
    check_pass(
        OP,
        len,
        c,
        &full,
        &[
            ("gamma", gamma),
            ("save_mean", save_mean),
            ("save_invstd", save_invstd),
            ("dgamma", dgamma),
            ("dbeta", dbeta),
        ],
    )?;
    let u = ctx.uniform("batchnorm_backward.shape", &sh)?;
    let partial = scratch(ctx, "batchnorm_backward.sums", c * sh.chunks as usize, 8)?;
    let partial_pass = match &act {
        None => ctx.dispatch_reduction(
            "batchnorm",
            "batchnorm_subgroup",
            "batchnorm_backward_partial",
            &[&u, x, save_mean, save_invstd, dy, &partial],
            grid_1d(ctx, c * sh.chunks as usize * WG as usize, WG),
        )?,
        Some(a) => {
            // Without a copy, its binding gets a placeholder the pass never writes (the
            // layout, derived from the shader, has it).
            let placeholder;
            let copy = match a.copy {
                Some(b) => b,
                None => {
                    placeholder = ctx.storage_buffer("batchnorm_backward.no_copy", 16)?;
                    &placeholder
                }
            };
            ctx.dispatch_reduction(
                "batchnorm",
                "batchnorm_subgroup",
                "batchnorm_backward_partial_act",
                &[
                    &u,
                    x,
                    save_mean,
                    save_invstd,
                    dy,
                    &partial,
                    a.x,
                    a.y,
                    a.dy,
                    copy,
                ],
                grid_1d(ctx, c * sh.chunks as usize * WG as usize, WG),
            )?
        }
    };
    Ok(vec![
        partial_pass,
        ctx.dispatch_reduction(
            "batchnorm",
            "batchnorm_subgroup",
            "batchnorm_backward_apply",
            &[
                &u,
                x,
                save_mean,
                save_invstd,
                dy,
                &partial,
                gamma,
                dx,
                dgamma,
                dbeta,
            ],
            grid_1d(ctx, c * sh.chunks as usize * WG as usize, WG),
        )?,
    ])
}
