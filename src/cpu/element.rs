//! The element types the CPU twins run in: f32 for training (matching the GPU) and f64 for
//! finite-difference checks, where f32 cancellation would hide real errors.
//!
//! Both go through the `gemm` crate (blocked, packed, AVX-512/AVX2/FMA micro-kernels chosen
//! at run time). It replaced `matrixmultiply` after `benches/cpu_matmul.rs` measured both
//! against numpy's OpenBLAS (BENCHMARKS.md): on the development machine's AVX-512 Xeon,
//! `gemm` ran 1.4–2× faster than `matrixmultiply` (which has no AVX-512 kernel) at every
//! size, square and MLP-shaped, and close to OpenBLAS.

use gemm::Parallelism;
use num_traits::Float;

/// Whether one GEMM may spread over rayon's threads. `Serial` is for GEMMs issued from
/// inside a parallel loop (one per image of a convolution), where the loop already keeps
/// every thread busy and nested splitting only adds hand-offs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmThreads {
    Parallel,
    Serial,
}

impl GemmThreads {
    fn parallelism(self) -> Parallelism {
        match self {
            // 0: as many threads as rayon's pool; `gemm` itself keeps small products on
            // one thread (below its threading threshold, 48·48·256 multiply-adds).
            GemmThreads::Parallel => Parallelism::Rayon(0),
            GemmThreads::Serial => Parallelism::None,
        }
    }
}

pub trait Element:
    Float + bytemuck::Pod + Send + Sync + Default + std::fmt::Debug + std::iter::Sum + 'static
{
    const NAME: &'static str;

    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;

    /// `if take { a } else { b }` by masks on the bits, for loops where which value wins
    /// is data: a `select` there is turned back into a branch by the compiler, which then
    /// mispredicts about every other time. `std::hint::select_unpredictable` (Rust 1.88,
    /// within the crate's minimum since it rose to 1.89) asks the compiler for the same but
    /// only as a hint; the masks leave it no choice, and are what was measured.
    fn select_bits(take: bool, a: Self, b: Self) -> Self;

    /// tanh as the executor's loops evaluate it (the recurrent cells): in f32
    /// `vector_math`'s branch-free code, within 3 ulp, which a loop compiles to vector code
    /// (`std`'s is a library call per element: a quarter of an LSTM step); in f64 `std`'s,
    /// the finite-difference reference.
    fn fast_tanh(self) -> Self;

    /// σ(x) as `fast_tanh`: in f32 `vector_math`'s (within 3 ulp), in f64 1/(1 + e^−x).
    fn fast_sigmoid(self) -> Self;

    /// eˣ as `fast_tanh` (the softmax): in f32 `vector_math`'s (within 1 ulp), in f64
    /// `std`'s.
    fn fast_exp(self) -> Self;

    /// C(m,n) = alpha·A·B + beta·C through the optimized GEMM, with arbitrary row and
    /// column strides (in elements), so transposed operands cost nothing. C is not read
    /// when beta = 0 (NaN or garbage in C does not leak through 0·C).
    ///
    /// # Safety
    /// Every element the strides reach — A[i·rsa + l·csa] for i < m, l < k, and likewise
    /// for B (k × n) and C (m × n) — must lie inside its slice; callers check this.
    ///
    /// `gemm::gemm` is generic and dispatches on the type to its f32 or f64 kernels; it
    /// computes dst = α·dst + β·lhs·rhs (dst read only when `read_dst`), strides given
    /// column first, hence the shuffled arguments.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        threads: GemmThreads,
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: isize,
        csa: isize,
        b: &[Self],
        rsb: isize,
        csb: isize,
        beta: Self,
        c: &mut [Self],
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: the caller guarantees every strided index is in bounds (see above).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                csc,
                rsc,
                beta != Self::zero(),
                a.as_ptr(),
                csa,
                rsa,
                b.as_ptr(),
                csb,
                rsb,
                beta,
                alpha,
                false,
                false,
                false,
                threads.parallelism(),
            )
        }
    }
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn select_bits(take: bool, a: Self, b: Self) -> Self {
        let m = (take as u32).wrapping_neg();
        f32::from_bits((a.to_bits() & m) | (b.to_bits() & !m))
    }
    #[inline(always)]
    fn fast_tanh(self) -> Self {
        crate::cpu::vector_math::tanh(self)
    }
    #[inline(always)]
    fn fast_sigmoid(self) -> Self {
        crate::cpu::vector_math::sigmoid(self)
    }
    #[inline(always)]
    fn fast_exp(self) -> Self {
        crate::cpu::vector_math::exp(self)
    }
}

impl Element for f64 {
    const NAME: &'static str = "f64";
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn select_bits(take: bool, a: Self, b: Self) -> Self {
        let m = (take as u64).wrapping_neg();
        f64::from_bits((a.to_bits() & m) | (b.to_bits() & !m))
    }
    fn fast_tanh(self) -> Self {
        self.tanh()
    }
    fn fast_sigmoid(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
    fn fast_exp(self) -> Self {
        self.exp()
    }
}
