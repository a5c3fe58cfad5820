//! Host tensors on 64-byte boundaries: the CPU executor's buffers and its kernels' scratch.
//!
//! Why: `Vec<f32>` is aligned to 4 bytes, and glibc's large allocations (mmap) start 16
//! bytes past a page boundary, so every 64-byte vector load or store of an AVX-512 kernel
//! straddled two cache lines. On the development machine's Xeon, moving the buffers to
//! 64-byte boundaries made BatchNorm 5–13 % faster and a resnet-20 step 3–7 %
//! (BENCHMARKS.md, eighteenth session). 64 bytes is also a cache line, so no two threads'
//! rows share one at a buffer's start.
//!
//! The storage is a `Vec` of 64-byte blocks viewed as elements (bytemuck checks the cast),
//! so there is no unsafe code here.

use bytemuck::{Pod, Zeroable};

use crate::cpu::Element;

/// One cache line; the unit the buffer is allocated in.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

const LINE_BYTES: usize = std::mem::size_of::<Line>();

/// A fixed-length run of elements starting on a 64-byte boundary, zeroed when made. Reads
/// and writes go through its slice (`Deref`); `grow` lengthens it.
#[derive(Clone, Default)]
pub struct AlignedBuf<T> {
    lines: Vec<Line>,
    len: usize,
    _element: std::marker::PhantomData<T>,
}

impl<T: Element> AlignedBuf<T> {
    /// `len` zeros (all-zero bits, which is 0.0 for every `Element`).
    pub fn zeroed(len: usize) -> Self {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("AlignedBuf: length overflows the address space");
        AlignedBuf {
            // Zeroed by the allocator (calloc): a large buffer's pages stay untouched until used.
            lines: bytemuck::allocation::zeroed_vec(bytes.div_ceil(LINE_BYTES)),
            len,
            _element: std::marker::PhantomData,
        }
    }

    /// A copy of `data`.
    pub fn from_slice(data: &[T]) -> Self {
        let mut buf = Self::zeroed(data.len());
        buf.copy_from_slice(data);
        buf
    }

    /// Lengthens the buffer to `len` elements when it is shorter (keeping its values, the new
    /// ones zero); a longer buffer is left as it is. Allocates only when it grows.
    pub fn grow(&mut self, len: usize) {
        if len > self.len {
            let mut longer = Self::zeroed(len);
            longer[..self.len].copy_from_slice(self);
            *self = longer;
        }
    }
}

impl<T: Element> std::ops::Deref for AlignedBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &bytemuck::cast_slice(&self.lines)[..self.len]
    }
}

impl<T: Element> std::ops::DerefMut for AlignedBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut bytemuck::cast_slice_mut(&mut self.lines)[..self.len]
    }
}

impl<T: Element> std::fmt::Debug for AlignedBuf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_line_and_holds_its_length() {
        for len in [0usize, 1, 15, 16, 17, 1000, 1 << 20] {
            let buf = AlignedBuf::<f32>::zeroed(len);
            assert_eq!(buf.len(), len);
            assert!(buf.iter().all(|&v| v == 0.0));
            if len > 0 {
                assert_eq!(buf.as_ptr() as usize % 64, 0, "len {len}");
            }
            let wide = AlignedBuf::<f64>::zeroed(len);
            assert_eq!(wide.len(), len);
            if len > 0 {
                assert_eq!(wide.as_ptr() as usize % 64, 0, "len {len}");
            }
        }
    }

    #[test]
    fn grow_keeps_the_values_and_zeroes_the_rest() {
        let mut buf = AlignedBuf::from_slice(&[1.0f32, 2.0, 3.0]);
        buf.grow(2);
        assert_eq!(&buf[..], &[1.0, 2.0, 3.0]);
        buf.grow(40);
        assert_eq!(buf.len(), 40);
        assert_eq!(&buf[..4], &[1.0, 2.0, 3.0, 0.0]);
        assert!(buf[3..].iter().all(|&v| v == 0.0));
        assert_eq!(buf.as_ptr() as usize % 64, 0);
    }
}
