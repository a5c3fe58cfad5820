//! CPU twin of shaders/recurrent.wgsl: the time loop of a recurrent layer (Elman RNN with
//! tanh or ReLU, LSTM, GRU), forward and backward through time, and the norm of the
//! hidden-state gradient at every step.
//!
//! Shapes (batch first, as PyTorch's `batch_first=True`): x `[B, T, I]`; `gates` `[B, T, G·H]`;
//! h, hprev, dy, dh `[B, T, H]`; aux `[B, T, H]` (LSTM: cell state c; GRU: W_hn·h' + b_hn);
//! w_hh `[G·H, H]`, b_hh `[G·H]`.
//!
//! The input projection x·W_ihᵀ + b_ih for every step is one matmul done before this loop
//! (the plan emits it as an ordinary `Matmul` + `BiasForward`), and the parameter gradients
//! are matmuls over all B·T rows after the backward loop: dW_ih = dgiᵀ·x, dW_hh = dghᵀ·hprev,
//! where `hprev[b, t] = h[b, t − 1]` (zero at t = 0) is written by the forward loop so that
//! dW_hh is one product. Only the recurrent product and the cell's pointwise work run per step.
//!
//! Gradient convention: dh (the total gradient w.r.t. h_t, what the statistics measure), dgi
//! (w.r.t. the input-side pre-activations) and dgh (w.r.t. the hidden-side ones, GRU only;
//! for the other cells they equal dgi) are overwritten.
//!
//! Derivations (σ' = σ(1 − σ), tanh' = 1 − tanh²):
//! - Elman: h = φ(a), da = dh·φ'(a) read from h (tanh: 1 − h², ReLU: h > 0).
//! - LSTM: c = f·c' + i·g, h = o·tanh(c); do = dh·tanh c, dc = dh·o·(1 − tanh²c) + dc_next·f_next,
//!   di = dc·g, df = dc·c', dg = dc·i; the carry to step t − 1 is dc·f.
//! - GRU: n = tanh(a_n + r·hn), h = (1 − z)·n + z·h'; dn = dh·(1 − z), dz = dh·(h' − n),
//!   da_n = dn·(1 − n²), d(hn) = da_n·r, dr = da_n·hn; h' also receives dh·z directly.

use rayon::iter::Either;
use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::aligned::AlignedBuf;
use crate::cpu::element::GemmThreads;
use crate::cpu::recurrent_cells as cells;
use crate::ops::{CellKind, RecurrentShape};

fn check(s: &RecurrentShape, name: &str, have: usize, need: usize) {
    assert!(
        have >= need,
        "recurrent {}: `{name}` has {have} elements, needs {need} (B {} T {} I {} H {})",
        s.cell.name(),
        s.batch,
        s.steps,
        s.input,
        s.hidden
    );
}

/// Runs the layer forward over all steps from h_{−1} = 0 (and c_{−1} = 0).
/// On entry `gates` holds x·W_ihᵀ + b_ih; on exit the activated gates (Elman: h itself;
/// LSTM: i, f, g, o; GRU: r, z, n). Writes h, hprev and aux. `scratch` holds one step's
/// hidden-side pre-activations and H zeros (grown to B·G·H + H once, then reused: the
/// executor keeps it, so a warm step allocates nothing here).
#[allow(clippy::too_many_arguments)]
pub fn recurrent_forward<T: Element>(
    s: &RecurrentShape,
    w_hh: &[T],
    b_hh: &[T],
    gates: &mut [T],
    h: &mut [T],
    hprev: &mut [T],
    aux: &mut [T],
    scratch: &mut AlignedBuf<T>,
) {
    let (bn, tn, hn) = (s.batch, s.steps, s.hidden);
    let gh = s.gate_width();
    check(s, "w_hh", w_hh.len(), gh * hn);
    check(s, "b_hh", b_hh.len(), gh);
    check(s, "gates", gates.len(), bn * tn * gh);
    check(s, "h", h.len(), bn * tn * hn);
    check(s, "hprev", hprev.len(), bn * tn * hn);
    check(s, "aux", aux.len(), bn * tn * s.cell.aux_width(hn));
    // hh[b, :] = h_{t−1}[b]·W_hhᵀ + b_hh, the hidden-side pre-activations of one step;
    // then H zeros, the LSTM's cell state before the first step (zeroed here: the backward
    // uses the same scratch otherwise).
    scratch.grow(bn * gh + hn);
    let (hh, zeros) = scratch[..bn * gh + hn].split_at_mut(bn * gh);
    zeros.fill(T::zero());
    let zeros = &*zeros;
    for t in 0..tn {
        for row in hh.chunks_exact_mut(gh) {
            row.copy_from_slice(&b_hh[..gh]);
        }
        if t > 0 {
            // A = h[:, t−1, :] (rows B, stride T·H), B[k, n] = W_hh[n, k].
            let a = &h[(t - 1) * hn..];
            assert!(
                fits(a.len(), bn, hn, tn * hn, 1)
                    && fits(w_hh.len(), hn, gh, 1, hn)
                    && fits(hh.len(), bn, gh, gh, 1),
                "recurrent forward: an operand is shorter than its shape"
            );
            // SAFETY: the assertion above proved every strided index in bounds.
            unsafe {
                T::gemm(
                    GemmThreads::Parallel,
                    bn,
                    hn,
                    gh,
                    T::one(),
                    a,
                    (tn * hn) as isize,
                    1,
                    w_hh,
                    1,
                    hn as isize,
                    T::one(),
                    hh,
                    gh as isize,
                    1,
                );
            }
        }
        // The batch's rows in parallel: each reads and writes only its own sequence.
        let hh = &*hh;
        let aw = tn * s.cell.aux_width(hn);
        h[..bn * tn * hn]
            .par_chunks_mut(tn * hn)
            .zip(gates[..bn * tn * gh].par_chunks_mut(tn * gh))
            .zip(hprev[..bn * tn * hn].par_chunks_mut(tn * hn))
            .zip(chunks_or_empty(&mut aux[..bn * aw], aw, bn))
            .enumerate()
            .for_each(|(b, (((h, gates), hprev), aux))| {
                let (row, grow) = (t * hn, t * gh);
                let hh = &hh[b * gh..(b + 1) * gh];
                let gates = &mut gates[grow..grow + gh];
                let (done, rest) = h.split_at_mut(row);
                let h_prev = (t > 0).then(|| &done[row - hn..]);
                let h = &mut rest[..hn];
                let hp = &mut hprev[row..row + hn];
                match h_prev {
                    Some(p) => hp.copy_from_slice(p),
                    None => hp.fill(T::zero()),
                }
                match s.cell {
                    CellKind::RnnTanh => cells::rnn_tanh_forward(gates, hh, h),
                    CellKind::RnnRelu => cells::rnn_relu_forward(gates, hh, h),
                    CellKind::Lstm => {
                        let (done, rest) = aux.split_at_mut(row);
                        let c_prev = if t > 0 { &done[row - hn..] } else { zeros };
                        cells::lstm_forward(gates, hh, c_prev, &mut rest[..hn], h);
                    }
                    CellKind::Gru => {
                        cells::gru_forward(gates, hh, hp, &mut aux[row..row + hn], h);
                    }
                }
            });
    }
}

/// `count` chunks of `len` elements of `v`, or `count` empty slices where `len` is 0 (the
/// Elman cells keep no auxiliary state).
fn chunks_or_empty<T: Element>(
    v: &mut [T],
    len: usize,
    count: usize,
) -> impl IndexedParallelIterator<Item = &mut [T]> {
    if len == 0 {
        Either::Left((0..count).into_par_iter().map(|_| <&mut [T]>::default()))
    } else {
        Either::Right(v.par_chunks_mut(len))
    }
}

/// Backpropagation through time. `dy` is the gradient w.r.t. every h_t from above (the next
/// layer or the read-out); writes dh (the total gradient w.r.t. h_t), dgi and, for the GRU,
/// dgh (pass None for the other cells: their hidden-side gradient is dgi). `scratch`
/// holds the per-step work vectors and H zeros (grown to 2·B·H + H once, then reused).
#[allow(clippy::too_many_arguments)]
pub fn recurrent_backward<T: Element>(
    s: &RecurrentShape,
    w_hh: &[T],
    gates: &[T],
    h: &[T],
    hprev: &[T],
    aux: &[T],
    dy: &[T],
    dh: &mut [T],
    dgi: &mut [T],
    mut dgh: Option<&mut [T]>,
    scratch: &mut AlignedBuf<T>,
) {
    let (bn, tn, hn) = (s.batch, s.steps, s.hidden);
    let gh = s.gate_width();
    check(s, "dy", dy.len(), bn * tn * hn);
    check(s, "dh", dh.len(), bn * tn * hn);
    check(s, "dgi", dgi.len(), bn * tn * gh);
    let gru = s.cell == CellKind::Gru;
    assert_eq!(
        gru,
        dgh.is_some(),
        "recurrent_backward: dgh is for the GRU only"
    );
    scratch.grow(2 * bn * hn + hn);
    // rec[b, j]: the gradient reaching h_t from step t + 1 through W_hh (and the GRU's z·h');
    // carry: the LSTM's dc carried from step t + 1 (dc_{t+1}·f_{t+1}), read only where it
    // was written at t + 1; then H zeros, the LSTM's cell state before the first step.
    let (rec, rest) = scratch[..2 * bn * hn + hn].split_at_mut(bn * hn);
    let (carry, zeros) = rest.split_at_mut(bn * hn);
    zeros.fill(T::zero());
    let zeros = &*zeros;
    for t in (0..tn).rev() {
        let from_next = t + 1 < tn && s.flows_back(t + 1);
        rec.iter_mut().for_each(|v| *v = T::zero());
        if from_next {
            let src: &[T] = match &dgh {
                Some(d) => d,
                None => dgi,
            };
            // rec = dghh[:, t+1, :]·W_hh: A rows B with stride T·G·H, B = W_hh [G·H, H].
            let a = &src[(t + 1) * gh..];
            assert!(
                fits(a.len(), bn, gh, tn * gh, 1)
                    && fits(w_hh.len(), gh, hn, hn, 1)
                    && fits(rec.len(), bn, hn, hn, 1),
                "recurrent backward: an operand is shorter than its shape"
            );
            // SAFETY: the assertion above proved every strided index in bounds.
            unsafe {
                T::gemm(
                    GemmThreads::Parallel,
                    bn,
                    gh,
                    hn,
                    T::one(),
                    a,
                    (tn * gh) as isize,
                    1,
                    w_hh,
                    hn as isize,
                    1,
                    T::zero(),
                    rec,
                    hn as isize,
                    1,
                );
            }
            if gru {
                for b in 0..bn {
                    let next = (b * tn + t + 1) * hn;
                    let ng = (b * tn + t + 1) * gh;
                    for j in 0..hn {
                        rec[b * hn + j] = rec[b * hn + j] + dh[next + j] * gates[ng + hn + j];
                    }
                }
            }
        }
        // The batch's rows in parallel: each reads and writes only its own sequence and
        // its own rows of rec and carry.
        let dgh_rows: &mut [T] = match dgh.as_deref_mut() {
            Some(d) => &mut d[..bn * tn * gh],
            None => &mut [],
        };
        let dgh_len = if gru { tn * gh } else { 0 };
        let rec = &*rec;
        dh[..bn * tn * hn]
            .par_chunks_mut(tn * hn)
            .zip(dgi[..bn * tn * gh].par_chunks_mut(tn * gh))
            .zip(chunks_or_empty(dgh_rows, dgh_len, bn))
            .zip(carry.par_chunks_mut(hn))
            .enumerate()
            .for_each(|(b, (((dh, dgi), dgh), carry))| {
                let (row, grow) = (t * hn, t * gh);
                let (brow, bgrow) = ((b * tn + t) * hn, (b * tn + t) * gh);
                let rec = &rec[b * hn..(b + 1) * hn];
                let d = &mut dh[row..row + hn];
                for ((d, &y), &r) in d.iter_mut().zip(&dy[brow..brow + hn]).zip(rec) {
                    *d = y + r;
                }
                let d = &*d;
                let gates = &gates[bgrow..bgrow + gh];
                let dgi = &mut dgi[grow..grow + gh];
                match s.cell {
                    CellKind::RnnTanh => cells::rnn_tanh_backward(d, &h[brow..brow + hn], dgi),
                    CellKind::RnnRelu => cells::rnn_relu_backward(d, &h[brow..brow + hn], dgi),
                    CellKind::Lstm => {
                        let c_prev = if t > 0 { &aux[brow - hn..brow] } else { zeros };
                        let c = &aux[brow..brow + hn];
                        cells::lstm_backward(d, gates, c, c_prev, carry, from_next, dgi);
                    }
                    CellKind::Gru => {
                        let dgh = (!dgh.is_empty()).then(|| &mut dgh[grow..grow + gh]);
                        let (hhn, hp) = (&aux[brow..brow + hn], &hprev[brow..brow + hn]);
                        cells::gru_backward(d, gates, hhn, hp, dgi, dgh);
                    }
                }
            });
    }
}

/// The L2 norm of dh[:, t, :] for every step t, over b then j in order, kept as
/// max|x|·√Σ(x/max|x|)² so vanishing gradients do not underflow when squared.
pub fn hidden_grad_norms<T: Element>(
    dh: &[T],
    batch: usize,
    steps: usize,
    hidden: usize,
) -> Vec<f32> {
    (0..steps)
        .map(|t| hidden_grad_norm(dh, batch, steps, hidden, t))
        .collect()
}

/// The norm of dh[:, t, :] as [`hidden_grad_norms`] computes it (no allocation).
pub fn hidden_grad_norm<T: Element>(
    dh: &[T],
    batch: usize,
    steps: usize,
    hidden: usize,
    t: usize,
) -> f32 {
    let rows = (0..batch).flat_map(|b| {
        let row = (b * steps + t) * hidden;
        dh[row..row + hidden]
            .iter()
            .map(|v| Element::to_f64(*v) as f32)
    });
    let m = rows.clone().fold(0.0f32, |m, v| m.max(v.abs()));
    if m == 0.0 || !m.is_finite() {
        return m;
    }
    let inv = 1.0 / m;
    let sum: f32 = rows.fold(0.0f32, |acc, v| {
        let q = v * inv;
        acc + q * q
    });
    m * sum.sqrt()
}

/// y[b, :] = x[b, T − 1, :]: the last step of a `[B, T, F]` sequence.
pub fn last_step_forward<T: Element>(x: &[T], y: &mut [T], batch: usize, steps: usize, f: usize) {
    for b in 0..batch {
        let src = (b * steps + steps - 1) * f;
        y[b * f..(b + 1) * f].copy_from_slice(&x[src..src + f]);
    }
}

/// dx[b, t, :] = dy[b, :] at t = T − 1, zero elsewhere (overwrites dx).
pub fn last_step_backward<T: Element>(
    dy: &[T],
    dx: &mut [T],
    batch: usize,
    steps: usize,
    f: usize,
) {
    dx[..batch * steps * f]
        .iter_mut()
        .for_each(|v| *v = T::zero());
    for b in 0..batch {
        let dst = (b * steps + steps - 1) * f;
        dx[dst..dst + f].copy_from_slice(&dy[b * f..(b + 1) * f]);
    }
}

/// Whether a rows × cols operand with row stride `rs` and column stride `cs` (in elements)
/// lies inside a slice of `len` elements: its last index is (rows−1)·rs + (cols−1)·cs.
fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
}
