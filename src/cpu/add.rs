//! CPU twin of shaders/add.wgsl: the element-wise sum of a shortcut connection and the
//! accumulation of a gradient from a tensor's further consumers.
//!
//! add's backward is a pass-through (∂(a + b)/∂a = ∂(a + b)/∂b = 1): the plan hands dy to
//! both operands, and where one tensor feeds several consumers it sums their gradients
//! with `accumulate_grad`, first consumer written, later ones added in a fixed order.

use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::activation::{FusedActivation, activation_forward_serial};
use crate::cpu::streaming::{STAGE, Streamer};

/// Passes over more elements than this split into chunks of this size across rayon's
/// threads (each element on its own, so the split changes no result); below it the hand-off
/// costs more than the work.
const PAR_CHUNK: usize = 1 << 15;

/// y = a + b, element-wise over `y.len()` elements.
///
/// With `act`, also z = f(y) in the same pass (a fused activation forward: the values of
/// `activation_forward` on y, bit for bit), and y only where `act.write_y`.
pub fn add_forward<T: Element>(a: &[T], b: &[T], y: &mut [T], act: Option<FusedActivation<'_, T>>) {
    assert!(
        a.len() >= y.len() && b.len() >= y.len(),
        "add_forward: a has {} elements, b {}, y {}",
        a.len(),
        b.len(),
        y.len()
    );
    let n = y.len();
    let sum = |y: &mut [T], a: &[T], b: &[T]| {
        for ((v, &p), &q) in y.iter_mut().zip(a).zip(b) {
            *v = p + q;
        }
    };
    match act {
        None if n <= PAR_CHUNK => sum(y, a, b),
        None => y
            .par_chunks_mut(PAR_CHUNK)
            .zip(a[..n].par_chunks(PAR_CHUNK))
            .zip(b[..n].par_chunks(PAR_CHUNK))
            .for_each(|((y, a), b)| sum(y, a, b)),
        Some(FusedActivation { act: f, z, write_y }) => {
            assert!(
                z.len() >= n,
                "add_forward: z has {} elements, y {n}",
                z.len()
            );
            // The sums of each block staged in L1, the activation read from there, and y
            // written past the caches: the activation's backward reads it next, long
            // after (cpu/streaming.rs).
            let fused = |y: &mut [T], a: &[T], b: &[T], z: &mut [T]| {
                let mut streamer = Streamer::new();
                let mut stage = [T::zero(); STAGE];
                for (start, y) in (0..y.len()).step_by(STAGE).zip(y.chunks_mut(STAGE)) {
                    let end = start + y.len();
                    let stage = &mut stage[..y.len()];
                    sum(stage, &a[start..end], &b[start..end]);
                    activation_forward_serial(f, stage, &mut z[start..end]);
                    if write_y {
                        streamer.write(stage, y);
                    }
                }
            };
            if n <= PAR_CHUNK {
                fused(y, a, b, &mut z[..n]);
            } else {
                y.par_chunks_mut(PAR_CHUNK)
                    .zip(a[..n].par_chunks(PAR_CHUNK))
                    .zip(b[..n].par_chunks(PAR_CHUNK))
                    .zip(z[..n].par_chunks_mut(PAR_CHUNK))
                    .for_each(|(((y, a), b), z)| fused(y, a, b, z));
            }
        }
    }
}

/// dst += src, element-wise over `dst.len()` elements.
pub fn accumulate_grad<T: Element>(src: &[T], dst: &mut [T]) {
    assert!(
        src.len() >= dst.len(),
        "accumulate_grad: src has {} elements, dst {}",
        src.len(),
        dst.len()
    );
    let n = dst.len();
    let run = |dst: &mut [T], src: &[T]| {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = *d + s;
        }
    };
    if n > PAR_CHUNK {
        dst.par_chunks_mut(PAR_CHUNK)
            .zip(src[..n].par_chunks(PAR_CHUNK))
            .for_each(|(d, s)| run(d, s));
    } else {
        run(dst, src);
    }
}

/// dst = src (the CPU twin of `copy_tensor`), in chunks across rayon's threads where the
/// tensor is large: a shortcut's gradient of resnet-20's first stage (1.6 M values) took
/// 0.7 ms on one thread, the same on two when copied whole (BENCHMARKS.md).
pub fn copy_tensor<T: Element>(src: &[T], dst: &mut [T]) {
    let n = dst.len();
    if n > PAR_CHUNK {
        dst.par_chunks_mut(PAR_CHUNK)
            .zip(src[..n].par_chunks(PAR_CHUNK))
            .for_each(|(d, s)| d.copy_from_slice(s));
    } else {
        dst.copy_from_slice(&src[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::activation::activation_forward;
    use crate::ops::Activation;

    /// An add that writes its activation too gives y and z = f(y) bit for bit as the two
    /// ops apart, for every activation, in one task and across tasks, with a last staging
    /// block cut short (cpu/streaming.rs); told not to write y, it leaves y as it was and
    /// writes the same z.
    #[test]
    fn fused_activation_gives_the_bits_of_the_two_ops() {
        for len in [5, 300, PAR_CHUNK + 77] {
            let mut rng = crate::rng::Rng::new(11);
            let a: Vec<f32> = (0..len).map(|_| rng.normal() as f32 * 2.0).collect();
            let b: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
            for name in Activation::ALL_NAMES {
                let act = Activation::parse(name).unwrap();
                let (mut y0, mut z0) = (vec![0f32; len], vec![0f32; len]);
                add_forward(&a, &b, &mut y0, None);
                activation_forward(act, &y0, &mut z0);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                for write_y in [true, false] {
                    let (mut y1, mut z1) = (vec![f32::NAN; len], vec![f32::NAN; len]);
                    let fused = FusedActivation {
                        act,
                        z: &mut z1[..],
                        write_y,
                    };
                    add_forward(&a, &b, &mut y1, Some(fused));
                    let want_y = if write_y {
                        bits(&y0)
                    } else {
                        bits(&vec![f32::NAN; len])
                    };
                    assert_eq!(want_y, bits(&y1), "{name}, {len}, write y {write_y}: y");
                    assert_eq!(bits(&z0), bits(&z1), "{name}, {len}, write y {write_y}: z");
                }
            }
        }
    }
}
