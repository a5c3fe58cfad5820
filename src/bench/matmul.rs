//! Matmul in its three layouts (NN: dx = dy·W, NT: y = x·Wᵀ, TN: dW = dyᵀ·x) on N×N×N
//! squares: `cpu::matmul` (matrixmultiply) against `gpu::kernels::matmul`.

use super::case::{Case, Pending, Tensor, Work};
use super::options::Family;
use crate::ops::{MatmulLayout, MatmulShape};

/// Tolerance of a GEMM against the CPU twin, relative to max |C|: both sum K products in
/// f32 in different orders (matrixmultiply's kernel blocks against the shader's tiles), an
/// error that grows like √K·ε for random data (~4e-6 at K = 4096) and at worst like K·ε;
/// 1e-3 leaves that room at any K benchmarked while a wrong element shows as order 1.
pub const GEMM_TOL: f64 = 1e-3;

pub fn cases(n: usize) -> Vec<Pending> {
    [MatmulLayout::NN, MatmulLayout::NT, MatmulLayout::TN]
        .into_iter()
        .map(|layout| {
            let name = format!("matmul_{}", format!("{layout:?}").to_lowercase());
            let shape = MatmulShape { m: n, n, k: n };
            Pending::new(Family::Matmul, name.clone(), move || {
                case(name, layout, shape)
            })
        })
        .collect()
}

/// C(M,N) = op(A)·op(B) with every operand seeded in [−1, 1).
pub fn case(name: String, layout: MatmulLayout, shape: MatmulShape) -> Case {
    let MatmulShape { m, n, k } = shape;
    Case {
        family: Family::Matmul,
        name,
        shape: format!("{m}×{n}×{k}"),
        work: Work::Flops(shape.flops()),
        tensors: vec![
            Tensor::random("a", m * k, 1, -1.0, 1.0),
            Tensor::random("b", k * n, 2, -1.0, 1.0),
            Tensor::output("c", m * n, GEMM_TOL),
        ],
        cpu: Box::new(move |t| {
            let mut c = t.take_f(2);
            let r = crate::cpu::matmul::matmul(layout, shape, t.f(0), t.f(1), &mut c, false);
            t.put_f(2, c);
            r
        }),
        gpu: Box::new(move |ctx, b| {
            Ok(vec![crate::gpu::kernels::matmul::matmul(
                ctx, layout, shape, &b[0], &b[1], &b[2], false,
            )?])
        }),
    }
}
