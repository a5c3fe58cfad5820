//! Asking for cache lines ahead of a pass that the hardware prefetcher does not follow far
//! enough: the statistics sweep's next chunk (after each chunk the sweep stops reading
//! memory to count its histogram), and BatchNorm's channel reductions, which read a
//! channel's rows c·s values apart (each row a new page, where the prefetcher starts over).

/// Asks for the cache lines of `values` elements from `p` on (a hint: it reads nothing and
/// never faults, whatever the address; nothing on architectures other than x86-64).
#[inline(always)]
pub(crate) fn prefetch_lines<T>(p: *const T, values: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..values).step_by((64 / std::mem::size_of::<T>()).max(1)) {
        // SAFETY: a prefetch reads nothing and never faults; SSE is part of x86-64.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                p.wrapping_add(line) as *const i8,
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, values);
}

/// How many samples ahead BatchNorm's reductions ask for a channel's rows of s values:
/// about 4 KiB of f32 ahead however short a row is. (8 KiB and at least two rows measured
/// the same in a resnet-20 step.) With it, that step's BatchNorm forward went from
/// 15.8–16.1 to 13.2–15.0 ms and its backward from 16.6–17.4 to 14.7–15.1 (two threads,
/// BENCHMARKS.md).
#[inline(always)]
pub(crate) fn rows_ahead(s: usize) -> usize {
    (1024 / s.max(1)).max(1)
}
