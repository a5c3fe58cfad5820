//! `multiversion!`: one kernel compiled for AVX-512F, for AVX2 and for the build's baseline,
//! the widest the CPU has chosen at run time.
//!
//! The kernels it serves (BatchNorm's passes, the smooth activations, the recurrent cells'
//! pointwise steps) fuse no multiply and add without an explicit call, so the wider vectors
//! only run more lanes side by side, each lane doing the same operations in the same order:
//! every build gives the same bits. Why: built for the x86-64 baseline, the lanes ran four
//! at a time, and BatchNorm took 1.1–1.3 ns per value (BENCHMARKS.md).

/// Defines `$name`, which runs `$kernel` (an `#[inline(always)]` function) compiled for
/// AVX-512F or AVX2 where the CPU has them, and as built elsewhere. `fn name<T> = …` makes
/// it generic over the element type.
macro_rules! multiversion {
    ($(#[$doc:meta])* $vis:vis fn $name:ident $(<$t:ident>)? = $kernel:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name$(<$t: $crate::cpu::Element>)?($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512$(<$t: $crate::cpu::Element>)?($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2$(<$t: $crate::cpu::Element>)?($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }
    };
}
