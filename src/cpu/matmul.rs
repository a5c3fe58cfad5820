//! CPU twin of shaders/matmul.wgsl: C(M,N) = op(A)·op(B), or C += op(A)·op(B), through the
//! optimized GEMM of the `gemm` crate (via `Element::gemm`). The transposes are strides,
//! except where an f32 NT product runs faster with B transposed in register tiles first
//! (`transposing_pays`). `matmul_naive` is the triple loop the tests prove the GEMM path
//! against.
//!
//! Layouts (every matrix row-major, see `ops::MatmulLayout`):
//! - NN: A is (M,K), B is (K,N)  — dense input gradient dx = dy·W;
//! - NT: A is (M,K), B is (N,K)  — dense forward y = x·Wᵀ;
//! - TN: A is (K,M), B is (K,N)  — dense weight gradient dW = dyᵀ·x.
//!
//! Whatever the layout, A holds M·K elements, B holds K·N and C holds M·N; slices may be
//! longer (views into a larger allocation), and only the first M·N elements of C are touched.

use std::any::TypeId;
use std::cell::RefCell;

use crate::cpu::Element;
use crate::cpu::element::GemmThreads;
use crate::cpu::transpose;
use crate::error::{Error, Result};
use crate::ops::{MatmulLayout, MatmulShape};

/// Element counts (A, B, C) a product of this shape reads and writes, or a shape error when a
/// size is zero or a count overflows `usize`. Shared by the GPU launcher so both executors
/// refuse the same shapes with the same words.
pub fn operand_lens(layout: MatmulLayout, shape: MatmulShape) -> Result<(usize, usize, usize)> {
    let MatmulShape { m, n, k } = shape;
    if m == 0 || n == 0 || k == 0 {
        return Err(Error::shape(
            format!("matmul {layout:?}"),
            format!("sizes must be non-zero, got M={m}, N={n}, K={k}"),
        ));
    }
    let overflow = || {
        Error::shape(
            format!("matmul {layout:?}"),
            format!("M={m}, N={n}, K={k} overflows the address space"),
        )
    };
    let a = m.checked_mul(k).ok_or_else(overflow)?;
    let b = k.checked_mul(n).ok_or_else(overflow)?;
    let c = m.checked_mul(n).ok_or_else(overflow)?;
    Ok((a, b, c))
}

/// The stored shape of A and B under `layout`, as the error messages print them.
pub fn operand_dims(layout: MatmulLayout, shape: MatmulShape) -> ((usize, usize), (usize, usize)) {
    let MatmulShape { m, n, k } = shape;
    match layout {
        MatmulLayout::NN => ((m, k), (k, n)),
        MatmulLayout::NT => ((m, k), (n, k)),
        MatmulLayout::TN => ((k, m), (k, n)),
    }
}

/// Checks that A, B and C hold at least the elements the shape needs (`unit` names what the
/// lengths count: "elements" here, "bytes" for GPU buffers, with `scale` bytes per element).
pub(crate) fn check_lens(
    layout: MatmulLayout,
    shape: MatmulShape,
    have: (u64, u64, u64),
    scale: u64,
    unit: &str,
) -> Result<()> {
    let (na, nb, nc) = operand_lens(layout, shape)?;
    let (da, db) = operand_dims(layout, shape);
    let dc = (shape.m, shape.n);
    for (name, dims, need, have) in [
        ("A", da, na, have.0),
        ("B", db, nb, have.1),
        ("C", dc, nc, have.2),
    ] {
        let need = (need as u64).saturating_mul(scale);
        if have < need {
            return Err(Error::shape(
                format!("matmul {layout:?}"),
                format!(
                    "{name} is {}x{} and needs {need} {unit}, but has {have} \
                     (M={}, N={}, K={})",
                    dims.0, dims.1, shape.m, shape.n, shape.k
                ),
            ));
        }
    }
    Ok(())
}

/// Row and column strides (in elements) of op(A) (M×K) and op(B) (K×N) as stored.
fn strides(layout: MatmulLayout, shape: MatmulShape) -> [isize; 4] {
    let (n, k, m) = (shape.n as isize, shape.k as isize, shape.m as isize);
    match layout {
        // op(A)[i,l] = A[i·K + l]; op(B)[l,j] = B[l·N + j].
        MatmulLayout::NN => [k, 1, n, 1],
        // op(B)[l,j] = B[j·K + l]: B read transposed.
        MatmulLayout::NT => [k, 1, 1, k],
        // op(A)[i,l] = A[l·M + i]: A read transposed.
        MatmulLayout::TN => [1, m, n, 1],
    }
}

/// C(M,N) = op(A)·op(B), or C += op(A)·op(B) when `accumulate`.
/// A is (M,K) for NN/NT and (K,M) for TN; B is (K,N) for NN/TN and (N,K) for NT.
pub fn matmul<T: Element>(
    layout: MatmulLayout,
    shape: MatmulShape,
    a: &[T],
    b: &[T],
    c: &mut [T],
    accumulate: bool,
) -> Result<()> {
    // Every index the strides below reach is < M·K, K·N or M·N: checked here, before the
    // unsafe GEMM inside `Element::gemm`.
    check_lens(
        layout,
        shape,
        (a.len() as u64, b.len() as u64, c.len() as u64),
        1,
        "elements",
    )?;
    if layout == MatmulLayout::NT
        && transposing_pays(shape)
        && TypeId::of::<T>() == TypeId::of::<f32>()
    {
        return matmul_nt_through_nn(shape, a, b, c, accumulate);
    }
    let [rsa, csa, rsb, csb] = strides(layout, shape);
    // C is not read when beta = 0 (`Element::gemm`), hence no zeroing is needed to overwrite.
    let beta = if accumulate { T::one() } else { T::zero() };
    // SAFETY: `check_lens` above proved every strided index in bounds.
    unsafe {
        T::gemm(
            GemmThreads::Parallel,
            shape.m,
            shape.k,
            shape.n,
            T::one(),
            a,
            rsa,
            csa,
            b,
            rsb,
            csb,
            beta,
            c,
            shape.n as isize,
            1,
        );
    }
    Ok(())
}

/// Whether an f32 NT product of this shape runs as a tiled transpose of B then the NN
/// product (public for the allocation test, which replays each product's GEMM). In NT
/// both operands have K contiguous, and the `gemm` crate packs the one it needs
/// M-contiguous by a scalar gather; a transpose in register tiles does the same move
/// several times faster. Measured on one Zen 4 core, transposes included (BENCHMARKS.md):
/// 128×256×256 went from 81 to 101–103 GFLOP/s, 128×1024×1024 from 47 to 82, and
/// 2×784×256 took 0.69 of the time; a B narrower than a tile (the output layer's 10
/// classes) lost 5 %. One row is a matrix-vector product, which the crate runs apart.
pub fn transposing_pays(shape: MatmulShape) -> bool {
    shape.m >= 2 && shape.n >= 16 && shape.k >= 16 && transpose::has_register_tiles()
}

thread_local! {
    /// Each thread's Bᵀ for `matmul_nt_through_nn`, kept so a step allocates nothing once
    /// it has grown to the largest weight.
    static TRANSPOSED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// C = A·Bᵀ (+ C) for f32, as Bᵀ materialized (N×K → K×N) then the NN product. Same bits
/// as the NN product of the transposed matrix: a transpose only moves values.
fn matmul_nt_through_nn<T: Element>(
    shape: MatmulShape,
    a: &[T],
    b: &[T],
    c: &mut [T],
    accumulate: bool,
) -> Result<()> {
    let (n, k) = (shape.n, shape.k);
    // SAFETY: T is f32 (the caller checked its TypeId), so the slice is a slice of f32.
    let b32 = unsafe { std::slice::from_raw_parts(b.as_ptr() as *const f32, b.len()) };
    // Taken out of the thread's slot rather than borrowed: the GEMM below may run other
    // rayon tasks on this thread while it waits, and one of them may be a product too.
    let mut scratch = TRANSPOSED.with(|t| std::mem::take(&mut *t.borrow_mut()));
    // Grown, never shrunk: zeroing it again for each larger weight of a step cost 1 % of
    // the MLP's step.
    if scratch.len() < n * k {
        scratch.resize(n * k, 0.0);
    }
    transpose::transpose(b32, n, k, &mut scratch[..n * k]);
    // SAFETY: as above, T is f32.
    let bt = unsafe { std::slice::from_raw_parts(scratch.as_ptr() as *const T, n * k) };
    let result = matmul(MatmulLayout::NN, shape, a, bt, c, accumulate);
    TRANSPOSED.with(|t| {
        let mut slot = t.borrow_mut();
        if slot.capacity() < scratch.capacity() {
            *slot = scratch;
        }
    });
    result
}

/// The reference: the textbook triple loop with f64 accumulation, k ascending. Slow, obvious,
/// and independent of the `gemm` crate, so the tests can prove the GEMM strides against it.
pub fn matmul_naive<T: Element>(
    layout: MatmulLayout,
    shape: MatmulShape,
    a: &[T],
    b: &[T],
    c: &mut [T],
    accumulate: bool,
) -> Result<()> {
    check_lens(
        layout,
        shape,
        (a.len() as u64, b.len() as u64, c.len() as u64),
        1,
        "elements",
    )?;
    let MatmulShape { m, n, k } = shape;
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0.0f64;
            for l in 0..k {
                let (x, y) = match layout {
                    MatmulLayout::NN => (a[i * k + l], b[l * n + j]),
                    MatmulLayout::NT => (a[i * k + l], b[j * k + l]),
                    MatmulLayout::TN => (a[l * m + i], b[l * n + j]),
                };
                sum += x.to_f64() * y.to_f64();
            }
            let out = &mut c[i * n + j];
            *out = if accumulate {
                T::from_f64(out.to_f64() + sum)
            } else {
                T::from_f64(sum)
            };
        }
    }
    Ok(())
}
