//! The element types the CPU twins run in: f32 for training (matching the GPU) and f64 for
//! finite-difference checks, where f32 cancellation would hide real errors.

use num_traits::Float;

pub trait Element:
    Float + Send + Sync + Default + std::fmt::Debug + std::iter::Sum + 'static
{
    const NAME: &'static str;

    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;

    /// C(m,n) = alpha·A·B + beta·C through the optimized GEMM, with arbitrary row and
    /// column strides (in elements), so transposed operands cost nothing.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
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
    );
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: &[f32],
        rsa: isize,
        csa: isize,
        b: &[f32],
        rsb: isize,
        csb: isize,
        beta: f32,
        c: &mut [f32],
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: callers (cpu::matmul) check that every index the strides reach lies
        // inside the slices before calling.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                alpha,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                rsb,
                csb,
                beta,
                c.as_mut_ptr(),
                rsc,
                csc,
            )
        }
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
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: &[f64],
        rsa: isize,
        csa: isize,
        b: &[f64],
        rsb: isize,
        csb: isize,
        beta: f64,
        c: &mut [f64],
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: as for f32.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                alpha,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                rsb,
                csb,
                beta,
                c.as_mut_ptr(),
                rsc,
                csc,
            )
        }
    }
}
