//! CPU twin of shaders/dropout.wgsl: inverted dropout with a counter-based mask.
//!
//! Element i is kept at step t iff `dropout_hash(seed, t, i) ≥ keep_threshold(p)`; the hash
//! is integer arithmetic written identically in the shader, so both executors draw the
//! same mask bit for bit, and the backward pass recomputes it instead of storing it.
//! Kept elements are scaled by 1/(1 − p) (rounded to the element type from f64, as the
//! launcher rounds it to f32), dropped ones are 0. dx is an activation gradient and is
//! overwritten.

use rayon::prelude::*;

use crate::cpu::Element;
use crate::error::{Error, Result};

/// The PCG RXS-M-XS output permutation used as a 32-bit hash (Jarzynski & Olano, JCGT
/// 2020). A bijection of u32.
#[inline(always)]
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The hash deciding element `index` at `step`: pcg(pcg(index) ^ pcg(seed ^ pcg(step))).
pub fn dropout_hash(seed: u32, step: u32, index: u32) -> u32 {
    let key = pcg_hash(seed ^ pcg_hash(step));
    pcg_hash(pcg_hash(index) ^ key)
}

/// ⌊p·2³²⌋ (saturating): an element is kept iff its hash is ≥ this, which happens with
/// probability 1 − p to within 2⁻³². p = 0 gives 0: every element kept.
pub fn keep_threshold(p: f32) -> u32 {
    let t = (p as f64 * 4_294_967_296.0).floor();
    if t <= 0.0 {
        0
    } else if t >= u32::MAX as f64 {
        u32::MAX
    } else {
        t as u32
    }
}

/// 1/(1 − p), the inverted-dropout scale of kept elements, in f64 (the GPU launcher rounds
/// it to f32, as `T::from_f64` does for f32 here).
pub fn keep_scale(p: f32) -> f64 {
    1.0 / (1.0 - p as f64)
}

/// Whether element `index` is kept at `step` with drop probability `p`.
pub fn kept(p: f32, seed: u32, step: u32, index: u32) -> bool {
    dropout_hash(seed, step, index) >= keep_threshold(p)
}

/// Refuses a drop probability outside [0, 1), naming `layer`.
pub fn validate_p(layer: &str, p: f32) -> Result<()> {
    if p.is_finite() && (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::config(format!(
            "layer `{layer}`: dropout probability {p} is outside [0, 1)"
        )))
    }
}

fn apply<T: Element>(op: &str, input: &[T], out: &mut [T], p: f32, seed: u32, step: u32) {
    assert!(
        p.is_finite() && (0.0..1.0).contains(&p),
        "{op}: dropout probability {p} is outside [0, 1)"
    );
    assert!(
        input.len() >= out.len() && out.len() <= u32::MAX as usize,
        "{op}: input has {} elements, output {}",
        input.len(),
        out.len()
    );
    let threshold = keep_threshold(p);
    let scale = T::from_f64(keep_scale(p));
    let key = pcg_hash(seed ^ pcg_hash(step));
    let input = &input[..out.len()];
    // Chunks in parallel: an element's mask depends only on its index.
    out.par_chunks_mut(CHUNK)
        .zip(input.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(c, (o, v))| {
            mask_chunk(o, v, (c * CHUNK) as u32, [key, threshold], scale);
        });
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

multiversion! {
    /// out[i] = input[i]·scale where element first + i is kept, else 0; `mask` = [key,
    /// threshold]. The hash's variable shift is one instruction per vector on AVX2 and
    /// AVX-512 (the x86-64 baseline has none, and took it a lane at a time).
    fn mask_chunk<T> = mask_chunk_kernel(out: &mut [T], input: &[T], first: u32, mask: [u32; 2], scale: T) -> ();
}

#[inline(always)]
fn mask_chunk_kernel<T: Element>(
    out: &mut [T],
    input: &[T],
    first: u32,
    [key, threshold]: [u32; 2],
    scale: T,
) {
    for (i, (o, &v)) in out.iter_mut().zip(input).enumerate() {
        let keep = pcg_hash(pcg_hash(first.wrapping_add(i as u32)) ^ key) >= threshold;
        // Masks, not a branch: with p = 0.5 a branch mispredicted every other element.
        *o = T::select_bits(keep, v * scale, T::zero());
    }
}

/// y = x·m/(1 − p) with m_i = kept(p, seed, step, i), over `y.len()` elements.
pub fn dropout_forward<T: Element>(x: &[T], y: &mut [T], p: f32, seed: u32, step: u32) {
    apply("dropout_forward", x, y, p, seed, step);
}

/// Forward was y = x·m/(1 − p), so dx = dy·m/(1 − p) with the same recomputed mask
/// (overwrites dx).
pub fn dropout_backward<T: Element>(dy: &[T], dx: &mut [T], p: f32, seed: u32, step: u32) {
    apply("dropout_backward", dy, dx, p, seed, step);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunked, parallel, branch-free loop against the definition element by element,
    /// on lengths around the chunk, with NaN and ±∞ among the values (a dropped NaN is 0).
    #[test]
    fn chunks_give_the_definition_bit_for_bit() {
        let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e-40];
        for len in [0, 1, 17, CHUNK - 1, CHUNK, 2 * CHUNK + 5] {
            let x: Vec<f32> = (0..len)
                .map(|i| match i % 11 {
                    0..5 => special[i % 11],
                    _ => (i as f32 * 0.37).sin() * 3.0,
                })
                .collect();
            for (p, seed, step) in [(0.0, 1, 0), (0.5, 7, 3), (0.9, 123, 40_000)] {
                let mut y = vec![9.0f32; len];
                dropout_forward(&x, &mut y, p, seed, step);
                let scale = keep_scale(p) as f32;
                for (i, (&got, &v)) in y.iter().zip(&x).enumerate() {
                    let want = if kept(p, seed, step, i as u32) {
                        v * scale
                    } else {
                        0.0
                    };
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "len {len} p {p} element {i}: {got}, want {want}"
                    );
                }
            }
        }
    }
}
