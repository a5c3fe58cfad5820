//! Short row copies. `copy_from_slice` of a run-time length is a call to the C library's
//! memmove, whose call and size dispatch cost more than copying the 7 to 32 values of a
//! small plane's row: the depthwise convolutions spent 43 % of their time there
//! (BENCHMARKS.md, sixteenth session). The direct convolutions' output rows through it made
//! no measurable difference to a resnet-20 step, whose memmove time is whole tensors.

/// dst = src for a row, without a call to the C library's memmove where the row is short
/// (4 to 32 values: two fixed-size blocks that may overlap, as inline vector moves; fewer
/// value by value; longer rows through `copy_from_slice`).
#[inline(always)]
pub fn copy_row<T: Copy>(dst: &mut [T], src: &[T]) {
    #[inline(always)]
    fn block<T: Copy, const B: usize>(dst: &mut [T], src: &[T], at: usize) {
        let to: &mut [T; B] = (&mut dst[at..at + B]).try_into().expect("B values");
        *to = src[at..at + B].try_into().expect("B values");
    }
    let n = dst.len();
    let src = &src[..n];
    match n {
        0 => {}
        1..4 => {
            dst[0] = src[0];
            if n > 1 {
                dst[1] = src[1];
            }
            if n > 2 {
                dst[2] = src[2];
            }
        }
        4..8 => {
            block::<T, 4>(dst, src, 0);
            block::<T, 4>(dst, src, n - 4);
        }
        8..16 => {
            block::<T, 8>(dst, src, 0);
            block::<T, 8>(dst, src, n - 8);
        }
        16..=32 => {
            block::<T, 16>(dst, src, 0);
            block::<T, 16>(dst, src, n - 16);
        }
        _ => dst.copy_from_slice(src),
    }
}
