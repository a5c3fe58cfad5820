//! The recurrent cells' pointwise work for one sequence at one step (`recurrent.rs` runs the
//! time loop and the products with W_hh around it): the gates' activations and the new state
//! forward, the gates' gradients backward. Derivations are in `recurrent.rs`'s header.
//!
//! Each cell is one loop over the hidden units with every operand cut into slices of H
//! (no index arithmetic and no match inside the loop, so no bounds checks), its tanh and σ
//! `Element::fast_tanh` and `fast_sigmoid` (branch-free in f32), compiled by `multiversion!`
//! for the widest vectors the CPU has: the loops run as vector code. Written element by
//! element with `std`'s tanh and exp, the pointwise work took 45 % of an LSTM step on the
//! development machine (BENCHMARKS.md).

use crate::cpu::Element;

/// `v` cut into `N` consecutive slices of `h` elements each (the gates of one step).
#[inline(always)]
fn split<const N: usize, T>(v: &[T], h: usize) -> [&[T]; N] {
    std::array::from_fn(|k| &v[k * h..(k + 1) * h])
}

/// `v` cut into `N` consecutive mutable slices of `h` elements each.
#[inline(always)]
fn split_mut<const N: usize, T>(v: &mut [T], h: usize) -> [&mut [T]; N] {
    let mut rest = &mut v[..N * h];
    std::array::from_fn(|_| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(h);
        rest = tail;
        head
    })
}

multiversion! {
    /// Elman with tanh: h = tanh(gi + gh), kept in the gates too (the backward reads it).
    pub fn rnn_tanh_forward<T> = rnn_tanh_forward_kernel(gates: &mut [T], hh: &[T], h: &mut [T]) -> ();
}

#[inline(always)]
fn rnn_tanh_forward_kernel<T: Element>(gates: &mut [T], hh: &[T], h: &mut [T]) {
    let n = h.len();
    let (gates, hh) = (&mut gates[..n], &hh[..n]);
    for j in 0..n {
        let v = (gates[j] + hh[j]).fast_tanh();
        gates[j] = v;
        h[j] = v;
    }
}

/// Elman with ReLU: h = max(gi + gh, 0), kept in the gates too.
pub fn rnn_relu_forward<T: Element>(gates: &mut [T], hh: &[T], h: &mut [T]) {
    let n = h.len();
    let (gates, hh) = (&mut gates[..n], &hh[..n]);
    for j in 0..n {
        let v = (gates[j] + hh[j]).max(T::zero());
        gates[j] = v;
        h[j] = v;
    }
}

multiversion! {
    /// LSTM: the gates i, f, g, o from their pre-activations (gates + hh, overwritten by the
    /// activated values), c = f·c' + i·g and h = o·tanh(c); `c_prev` is c' (zeros at the
    /// first step).
    pub fn lstm_forward<T> = lstm_forward_kernel(
        gates: &mut [T],
        hh: &[T],
        c_prev: &[T],
        c: &mut [T],
        h: &mut [T],
    ) -> ();
}

#[inline(always)]
fn lstm_forward_kernel<T: Element>(
    gates: &mut [T],
    hh: &[T],
    c_prev: &[T],
    c: &mut [T],
    h: &mut [T],
) {
    let n = h.len();
    let [gi, gf, gg, go] = split_mut::<4, T>(gates, n);
    let [hi, hf, hg, ho] = split::<4, T>(hh, n);
    let (c_prev, c) = (&c_prev[..n], &mut c[..n]);
    for j in 0..n {
        let i = (gi[j] + hi[j]).fast_sigmoid();
        let f = (gf[j] + hf[j]).fast_sigmoid();
        let g = (gg[j] + hg[j]).fast_tanh();
        let o = (go[j] + ho[j]).fast_sigmoid();
        let cj = f * c_prev[j] + i * g;
        c[j] = cj;
        h[j] = o * cj.fast_tanh();
        (gi[j], gf[j], gg[j], go[j]) = (i, f, g, o);
    }
}

multiversion! {
    /// GRU: r, z from their pre-activations, n = tanh(gi_n + r·hh_n), h = (1 − z)·n + z·h';
    /// the gates keep r, z, n and `hhn` the hidden side's W_hn·h' + b_hn (the backward reads
    /// it). `h_prev` is h' (zeros at the first step).
    pub fn gru_forward<T> = gru_forward_kernel(
        gates: &mut [T],
        hh: &[T],
        h_prev: &[T],
        hhn: &mut [T],
        h: &mut [T],
    ) -> ();
}

#[inline(always)]
fn gru_forward_kernel<T: Element>(
    gates: &mut [T],
    hh: &[T],
    h_prev: &[T],
    hhn: &mut [T],
    h: &mut [T],
) {
    let n = h.len();
    let [gr, gz, gn] = split_mut::<3, T>(gates, n);
    let [hr, hz, hn] = split::<3, T>(hh, n);
    let (h_prev, hhn) = (&h_prev[..n], &mut hhn[..n]);
    for j in 0..n {
        let r = (gr[j] + hr[j]).fast_sigmoid();
        let z = (gz[j] + hz[j]).fast_sigmoid();
        let nj = (gn[j] + r * hn[j]).fast_tanh();
        hhn[j] = hn[j];
        h[j] = (T::one() - z) * nj + z * h_prev[j];
        (gr[j], gz[j], gn[j]) = (r, z, nj);
    }
}

/// Elman with tanh, backward: da = d·(1 − h²).
pub fn rnn_tanh_backward<T: Element>(d: &[T], h: &[T], dgi: &mut [T]) {
    let n = d.len();
    let (h, dgi) = (&h[..n], &mut dgi[..n]);
    for j in 0..n {
        dgi[j] = d[j] * (T::one() - h[j] * h[j]);
    }
}

/// Elman with ReLU, backward: da = d where h > 0, else 0.
pub fn rnn_relu_backward<T: Element>(d: &[T], h: &[T], dgi: &mut [T]) {
    let n = d.len();
    let (h, dgi) = (&h[..n], &mut dgi[..n]);
    for j in 0..n {
        dgi[j] = if h[j] > T::zero() { d[j] } else { T::zero() };
    }
}

multiversion! {
    /// LSTM backward for one sequence at one step: d the total gradient reaching h; `carry`
    /// holds dc from step t + 1 (dc_{t+1}·f_{t+1}) where `from_next`, and leaves dc·f for
    /// step t − 1; `c_prev` is c' (zeros at the first step). Writes the four gates'
    /// gradients.
    pub fn lstm_backward<T> = lstm_backward_kernel(
        d: &[T],
        gates: &[T],
        c: &[T],
        c_prev: &[T],
        carry: &mut [T],
        from_next: bool,
        dgi: &mut [T],
    ) -> ();
}

#[inline(always)]
fn lstm_backward_kernel<T: Element>(
    d: &[T],
    gates: &[T],
    c: &[T],
    c_prev: &[T],
    carry: &mut [T],
    from_next: bool,
    dgi: &mut [T],
) {
    let n = d.len();
    let [i, f, g, o] = split::<4, T>(gates, n);
    let [di, df, dg, dout] = split_mut::<4, T>(dgi, n);
    let (c, c_prev, carry) = (&c[..n], &c_prev[..n], &mut carry[..n]);
    let one = T::one();
    for j in 0..n {
        let tc = c[j].fast_tanh();
        // The carry is read only where step t + 1 wrote it.
        let next = T::select_bits(from_next, carry[j], T::zero());
        let dc = d[j] * o[j] * (one - tc * tc) + next;
        carry[j] = dc * f[j];
        di[j] = dc * g[j] * i[j] * (one - i[j]);
        df[j] = dc * c_prev[j] * f[j] * (one - f[j]);
        dg[j] = dc * i[j] * (one - g[j] * g[j]);
        dout[j] = d[j] * tc * o[j] * (one - o[j]);
    }
}

multiversion! {
    /// GRU backward for one sequence at one step: d the total gradient reaching h, `hhn`
    /// the forward's W_hn·h' + b_hn, `h_prev` h'. Writes the input side's gate gradients
    /// (r, z, n) and, where given, the hidden side's (r, z, n·r).
    pub fn gru_backward<T> = gru_backward_kernel(
        d: &[T],
        gates: &[T],
        hhn: &[T],
        h_prev: &[T],
        dgi: &mut [T],
        dgh: Option<&mut [T]>,
    ) -> ();
}

#[inline(always)]
fn gru_backward_kernel<T: Element>(
    d: &[T],
    gates: &[T],
    hhn: &[T],
    h_prev: &[T],
    dgi: &mut [T],
    dgh: Option<&mut [T]>,
) {
    let n = d.len();
    let [r, z, nn] = split::<3, T>(gates, n);
    let [dr, dz, dn] = split_mut::<3, T>(dgi, n);
    let (hhn, h_prev) = (&hhn[..n], &h_prev[..n]);
    let one = T::one();
    for j in 0..n {
        let dan = d[j] * (one - z[j]) * (one - nn[j] * nn[j]);
        dr[j] = dan * hhn[j] * r[j] * (one - r[j]);
        dz[j] = d[j] * (h_prev[j] - nn[j]) * z[j] * (one - z[j]);
        dn[j] = dan;
    }
    if let Some(dgh) = dgh {
        let [hr, hz, hn] = split_mut::<3, T>(dgh, n);
        hr.copy_from_slice(dr);
        hz.copy_from_slice(dz);
        for j in 0..n {
            hn[j] = dn[j] * r[j];
        }
    }
}
