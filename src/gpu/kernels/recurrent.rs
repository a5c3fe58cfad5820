//! Launcher of shaders/recurrent.wgsl: a recurrent layer's time loop as one dispatch per
//! step (each with its own small uniform naming the step, all built at plan time), the
//! per-step hidden-gradient norms and the last-step selection. CPU twin: `cpu::recurrent`.

use super::launch::{check_buffer, check_count, check_distinct, grid_1d};
use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};
use crate::ops::{CellKind, RecurrentShape};

/// Workgroup size of recurrent.wgsl (its `WG` constant).
pub const WG: u32 = 64;

/// The WGSL struct `RecShape`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct RecShape {
    batch: u32,
    steps: u32,
    hidden: u32,
    t: u32,
    gates: u32,
    flows: u32,
    cell: u32,
    features: u32,
    offset: u32,
    _pad: [u32; 3],
}

fn rec_shape(s: &RecurrentShape, t: usize) -> RecShape {
    RecShape {
        batch: s.batch as u32,
        steps: s.steps as u32,
        hidden: s.hidden as u32,
        t: t as u32,
        gates: s.cell.gates() as u32,
        flows: (t + 1 < s.steps && s.flows_back(t + 1)) as u32,
        cell: s.cell.code(),
        ..Default::default()
    }
}

/// Checks the sizes every step kernel indexes (and the u32 range of its indices).
fn check_sizes(op: &str, s: &RecurrentShape, named: &[(&str, &wgpu::Buffer, usize)]) -> Result<()> {
    s.validate(op)?;
    check_count(op, "B·T·G·H", s.rows() * s.gate_width())?;
    for (name, b, n) in named {
        check_buffer(op, name, b, *n)?;
    }
    let list: Vec<(&str, &wgpu::Buffer)> = named.iter().map(|(n, b, _)| (*n, *b)).collect();
    check_distinct(op, &list)
}

/// Samples per invocation of the step kernels (recurrent.wgsl's `BB`).
pub const SAMPLES_PER_INVOCATION: usize = 4;

/// The grid of a step: units along x in workgroups of WG, groups of 4 samples along y.
fn step_grid(s: &RecurrentShape) -> [u32; 3] {
    [
        s.hidden.div_ceil(WG as usize) as u32,
        s.batch
            .div_ceil(SAMPLES_PER_INVOCATION)
            .min(u32::MAX as usize) as u32,
        1,
    ]
}

/// Forward of every step, t = 0 … T − 1: `gates` [B, T, G·H] holds x·W_ihᵀ + b_ih on
/// entry; writes the activated gates, h, hprev and aux. One dispatch writes W_hhᵀ into
/// `w_hh_t` ([H, G·H] scratch, so the step kernel's reads are contiguous across units),
/// then one dispatch per step.
#[allow(clippy::too_many_arguments)]
pub fn recurrent_forward(
    ctx: &GpuContext,
    s: &RecurrentShape,
    w_hh: &wgpu::Buffer,
    w_hh_t: &wgpu::Buffer,
    b_hh: &wgpu::Buffer,
    gates: &wgpu::Buffer,
    h: &wgpu::Buffer,
    hprev: &wgpu::Buffer,
    aux: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "recurrent_forward";
    let (rows, gh, hn) = (s.rows(), s.gate_width(), s.hidden);
    check_sizes(
        OP,
        s,
        &[
            ("w_hh", w_hh, gh * hn),
            ("w_hh_t", w_hh_t, gh * hn),
            ("b_hh", b_hh, gh),
            ("gates", gates, rows * gh),
            ("h", h, rows * hn),
            ("hprev", hprev, rows * hn),
            ("aux", aux, rows * s.cell.aux_width(hn)),
        ],
    )?;
    let u = ctx.uniform("transpose_weight.shape", &rec_shape(s, 0))?;
    let mut d = vec![ctx.dispatch(
        "recurrent",
        "transpose_weight",
        &[&u, w_hh, w_hh_t],
        grid_1d(ctx, gh * hn, WG),
    )?];
    for t in 0..s.steps {
        let u = ctx.uniform("recurrent_forward.shape", &rec_shape(s, t))?;
        d.push(ctx.dispatch(
            "recurrent",
            "recurrent_forward_step",
            &[&u, w_hh_t, b_hh, gates, h, hprev, aux],
            step_grid(s),
        )?);
    }
    Ok(d)
}

/// Backward through time, t = T − 1 … 0: from dy to dh, dgi and (GRU) dgh. `carry` is the
/// LSTM's dc between steps ([B, H]); `hprev` is read by the GRU only.
#[allow(clippy::too_many_arguments)]
pub fn recurrent_backward(
    ctx: &GpuContext,
    s: &RecurrentShape,
    w_hh: &wgpu::Buffer,
    gates: &wgpu::Buffer,
    hprev: &wgpu::Buffer,
    aux: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dh: &wgpu::Buffer,
    dgi: &wgpu::Buffer,
    dgh: Option<&wgpu::Buffer>,
    carry: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "recurrent_backward";
    let (rows, gh, hn) = (s.rows(), s.gate_width(), s.hidden);
    let mut named = vec![
        ("w_hh", w_hh, gh * hn),
        ("gates", gates, rows * gh),
        ("dy", dy, rows * hn),
        ("dh", dh, rows * hn),
        ("dgi", dgi, rows * gh),
    ];
    let (entry, extra): (&'static str, Vec<&wgpu::Buffer>) = match s.cell {
        CellKind::RnnTanh | CellKind::RnnRelu => ("rnn_backward_step", vec![]),
        CellKind::Lstm => {
            named.push(("aux", aux, rows * hn));
            named.push(("carry", carry, s.batch * hn));
            ("lstm_backward_step", vec![aux, carry])
        }
        CellKind::Gru => {
            let dgh = dgh.ok_or_else(|| {
                crate::Error::shape(OP, "the GRU needs its hidden-side gradient buffer dgh")
            })?;
            named.push(("aux", aux, rows * hn));
            named.push(("hprev", hprev, rows * hn));
            named.push(("dgh", dgh, rows * gh));
            ("gru_backward_step", vec![aux, hprev, dgh])
        }
    };
    check_sizes(OP, s, &named)?;
    (0..s.steps)
        .rev()
        .map(|t| {
            let u = ctx.uniform("recurrent_backward.shape", &rec_shape(s, t))?;
            let mut bufs: Vec<&wgpu::Buffer> = vec![&u, w_hh, gates, dy, dh, dgi];
            bufs.extend(extra.iter().copied());
            ctx.dispatch("recurrent", entry, &bufs, step_grid(s))
        })
        .collect()
}

/// ‖dh[:, t, :]‖₂ for t < steps into norms[offset + t]: one invocation per step.
#[allow(clippy::too_many_arguments)]
pub fn hidden_grad_norms(
    ctx: &GpuContext,
    dh: &wgpu::Buffer,
    batch: usize,
    steps: usize,
    hidden: usize,
    norms: &wgpu::Buffer,
    offset: usize,
) -> Result<Dispatch> {
    const OP: &str = "hidden_grad_norms";
    check_count(OP, "B·T·H", batch * steps * hidden)?;
    check_buffer(OP, "dh", dh, batch * steps * hidden)?;
    check_buffer(OP, "norms", norms, offset + steps)?;
    check_distinct(OP, &[("dh", dh), ("norms", norms)])?;
    let shape = RecShape {
        batch: batch as u32,
        steps: steps as u32,
        hidden: hidden as u32,
        offset: offset as u32,
        ..Default::default()
    };
    let u = ctx.uniform("hidden_grad_norms.shape", &shape)?;
    ctx.dispatch(
        "recurrent",
        "hidden_grad_norms",
        &[&u, dh, norms],
        grid_1d(ctx, steps, WG),
    )
}

fn seq_shape(batch: usize, steps: usize, features: usize) -> RecShape {
    RecShape {
        batch: batch as u32,
        steps: steps as u32,
        features: features as u32,
        ..Default::default()
    }
}

/// y[b, :] = x[b, T − 1, :] of a [B, T, F] sequence.
pub fn last_step_forward(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    batch: usize,
    steps: usize,
    features: usize,
) -> Result<Dispatch> {
    const OP: &str = "last_step_forward";
    check_count(OP, "B·T·F", batch * steps * features)?;
    check_buffer(OP, "x", x, batch * steps * features)?;
    check_buffer(OP, "y", y, batch * features)?;
    check_distinct(OP, &[("x", x), ("y", y)])?;
    let u = ctx.uniform("last_step.shape", &seq_shape(batch, steps, features))?;
    ctx.dispatch(
        "recurrent",
        "last_step_forward",
        &[&u, x, y],
        grid_1d(ctx, batch * features, WG),
    )
}

/// dx[b, T − 1, :] = dy[b, :], zero at every other step.
pub fn last_step_backward(
    ctx: &GpuContext,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    batch: usize,
    steps: usize,
    features: usize,
) -> Result<Dispatch> {
    const OP: &str = "last_step_backward";
    check_count(OP, "B·T·F", batch * steps * features)?;
    check_buffer(OP, "dy", dy, batch * features)?;
    check_buffer(OP, "dx", dx, batch * steps * features)?;
    check_distinct(OP, &[("dy", dy), ("dx", dx)])?;
    let u = ctx.uniform("last_step.shape", &seq_shape(batch, steps, features))?;
    ctx.dispatch(
        "recurrent",
        "last_step_backward",
        &[&u, dy, dx],
        grid_1d(ctx, batch * steps * features, WG),
    )
}
