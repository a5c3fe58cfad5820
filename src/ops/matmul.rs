//! Matrix-product layouts. Dense layers need three: the forward `y = x·Wᵀ` (NT), the input
//! gradient `dx = dy·W` (NN) and the weight gradient `dW = dyᵀ·x` (TN), with W stored
//! `[out, in]` as PyTorch stores it.

/// Which operands are read transposed. Every matrix is row-major in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulLayout {
    /// C[m,n] = Σₖ A[m,k]·B[k,n]; A is (M,K), B is (K,N).
    NN,
    /// C[m,n] = Σₖ A[m,k]·B[n,k]; A is (M,K), B is (N,K).
    NT,
    /// C[m,n] = Σₖ A[k,m]·B[k,n]; A is (K,M), B is (K,N).
    TN,
}

/// The sizes of one product C(M,N) = op(A)·op(B), with K the contracted size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl MatmulShape {
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}
