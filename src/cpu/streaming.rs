//! Writing a tensor that no op reads soon past the caches (non-temporal stores).
//!
//! Why: an ordinary store to a line that is not in cache first reads the line from memory
//! (read for ownership), so a pass that writes a tensor of several MiB moves each of its
//! bytes twice. Non-temporal stores write whole lines without reading them. That pays
//! only for a tensor nothing reads while it could still be in cache: the pre-activation y
//! of a BatchNorm or an Add whose activation runs in the same pass (the pass reads y from
//! its staging block to write z = f(y), and y is read next by the activation's backward,
//! long after). On this project's development host an add with ReLU over resnet-20's
//! first-stage tensors (1.6 M values, from and to memory) took 0.92–1.08 ms with ordinary
//! stores and 0.68 with y streamed (a C probe, BENCHMARKS.md); `add_forward` itself went
//! from 1.17–1.25 to 0.92–0.95 ms.
//!
//! How: a pass computes a block of y into a staging block (`STAGE` values), reads
//! it there for what else it writes, and `Streamer::write` copies it to y. The values are
//! the same bits either way; only where they travel through differs. Non-temporal stores
//! are weakly ordered, so a `Streamer` fences them (`sfence`) when it is dropped, before
//! the task that made it ends and any other thread can read y.
//!
//! f32 on x86-64 streams (whole 64-byte lines with AVX-512, 16-byte pieces with SSE
//! elsewhere; the partial lines at the ends are stored as usual); other element types and
//! other architectures copy as usual.

use std::any::TypeId;

use crate::cpu::Element;

/// Values a pass stages before writing them past the caches: 1 KiB of f32, 16 lines, in
/// L1 while the pass reads them back. Small blocks keep the non-temporal stores interleaved
/// with the pass's loads and ordinary stores: an add with ReLU over 1.6 M values took 0.92–
/// 0.95 ms with blocks of 256 values, 0.97–1.06 with 512 and 1.03–1.06 with 2048 (two
/// threads; 1.17–1.25 with no streaming).
pub(crate) const STAGE: usize = 256;

/// Writes staged blocks to their tensors with non-temporal stores, and fences those
/// stores when dropped. One per task: make it where the task starts, let it drop where
/// the task ends.
pub(crate) struct Streamer {
    /// Whether any store was non-temporal (only then is there something to fence).
    streamed: bool,
}

impl Streamer {
    pub(crate) fn new() -> Self {
        Streamer { streamed: false }
    }

    /// dst = src, dst written past the caches where the element type and the CPU allow.
    pub(crate) fn write<T: Element>(&mut self, src: &[T], dst: &mut [T]) {
        assert_eq!(src.len(), dst.len(), "Streamer::write: lengths differ");
        #[cfg(target_arch = "x86_64")]
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            // SAFETY: T is f32 (checked just above), so both slices are slices of f32.
            let (src, dst) = unsafe {
                (
                    std::slice::from_raw_parts(src.as_ptr() as *const f32, src.len()),
                    std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut f32, dst.len()),
                )
            };
            self.streamed = true;
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (checked just above).
                unsafe { stream_avx512(src, dst) };
            } else {
                stream_sse(src, dst);
            }
            return;
        }
        dst.copy_from_slice(src);
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if self.streamed {
            // SAFETY: SSE is part of x86-64.
            unsafe { std::arch::x86_64::_mm_sfence() };
        }
    }
}

/// dst = src: the whole 64-byte lines of dst by non-temporal 64-byte stores, the partial
/// lines at either end by ordinary ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn stream_avx512(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::{_mm512_loadu_ps, _mm512_stream_ps};
    // SAFETY (the store): `stream_lines` passes in-bounds pointers, dst's aligned to 64
    // bytes; the CPU has AVX-512F (this function's target feature).
    stream_lines::<16>(src, dst, |to, from| unsafe {
        _mm512_stream_ps(to, _mm512_loadu_ps(from))
    });
}

/// `stream_avx512` with 16-byte non-temporal stores (SSE, on every x86-64 CPU), which
/// the CPU combines into whole lines.
#[cfg(target_arch = "x86_64")]
fn stream_sse(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::{_mm_loadu_ps, _mm_stream_ps};
    // SAFETY (the store): in-bounds pointers, dst's aligned to 16 bytes; SSE is part of
    // x86-64.
    stream_lines::<4>(src, dst, |to, from| unsafe {
        _mm_stream_ps(to, _mm_loadu_ps(from))
    });
}

/// dst = src: `store(to, from)` copies LANES values to each LANES·4-byte-aligned piece of
/// dst, ordinary stores the values before the first and after the last such piece.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stream_lines<const LANES: usize>(
    src: &[f32],
    dst: &mut [f32],
    store: impl Fn(*mut f32, *const f32),
) {
    let n = dst.len();
    let head = dst.as_ptr().align_offset(LANES * 4).min(n);
    let body = (n - head) / LANES * LANES;
    dst[..head].copy_from_slice(&src[..head]);
    for i in (head..head + body).step_by(LANES) {
        // i + LANES ≤ head + body ≤ n for both slices, and dst + i is aligned (head aligns
        // it, and i − head is a multiple of LANES values).
        store(dst[i..].as_mut_ptr(), src[i..].as_ptr());
    }
    dst[head + body..].copy_from_slice(&src[head + body..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every offset and length around the line boundaries gives dst = src, and nothing
    /// outside dst is touched.
    #[test]
    fn writes_exactly_the_destination() {
        let src: Vec<f32> = (0..300).map(|i| i as f32 * 0.5 - 7.0).collect();
        for offset in 0..20 {
            for len in [0, 1, 3, 15, 16, 17, 31, 32, 33, 64, 100, 257] {
                let mut buf = vec![f32::NAN; offset + len + 20];
                {
                    let mut s = Streamer::new();
                    s.write(&src[..len], &mut buf[offset..offset + len]);
                }
                assert!(buf[..offset].iter().all(|v| v.is_nan()), "{offset} {len}");
                assert_eq!(&buf[offset..offset + len], &src[..len], "{offset} {len}");
                assert!(
                    buf[offset + len..].iter().all(|v| v.is_nan()),
                    "{offset} {len}"
                );
            }
        }
        // f64 copies as usual.
        let a = [1.0f64, 2.0, 3.0];
        let mut b = [0.0f64; 3];
        Streamer::new().write(&a, &mut b);
        assert_eq!(a, b);
    }

    /// The SSE path on its own (the AVX-512 one runs above where the CPU has it).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sse_path_writes_exactly_the_destination() {
        let src: Vec<f32> = (0..100).map(|i| i as f32).collect();
        for offset in 0..8 {
            for len in [0, 1, 4, 5, 63, 64, 65] {
                let mut buf = vec![-1.0f32; offset + len + 8];
                stream_sse(&src[..len], &mut buf[offset..offset + len]);
                // SAFETY: SSE is part of x86-64.
                unsafe { std::arch::x86_64::_mm_sfence() };
                assert!(buf[..offset].iter().all(|&v| v == -1.0));
                assert_eq!(&buf[offset..offset + len], &src[..len]);
                assert!(buf[offset + len..].iter().all(|&v| v == -1.0));
            }
        }
    }
}
