//! Launcher of shaders/matmul.wgsl: the tiled, register-blocked fp32 matrix product.
//!
//! Shapes: C(M,N) = op(A)·op(B) (+ C when accumulating), every matrix row-major, with
//! A (M,K) for NN/NT and (K,M) for TN, B (K,N) for NN/TN and (N,K) for NT. One workgroup
//! computes a 64×64 tile of C, so the grid is (⌈N/64⌉, ⌈M/64⌉, 1).

use crate::cpu::matmul::{check_lens, operand_lens};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext};
use crate::ops::{MatmulLayout, MatmulShape};

/// Rows and columns of C one workgroup computes (TILE_M, TILE_N in the shader).
pub const TILE_M: usize = 64;
pub const TILE_N: usize = 64;

/// The shader's `Params`: sizes and the accumulate flag, 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    accumulate: u32,
}

/// The entry point of each layout.
pub fn entry(layout: MatmulLayout) -> &'static str {
    match layout {
        MatmulLayout::NN => "matmul_nn",
        MatmulLayout::NT => "matmul_nt",
        MatmulLayout::TN => "matmul_tn",
    }
}

/// C(M,N) = op(A)·op(B), or C += op(A)·op(B) when `accumulate`; layouts as in cpu::matmul.
pub fn matmul(
    ctx: &GpuContext,
    layout: MatmulLayout,
    shape: MatmulShape,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Dispatch> {
    let op = format!("matmul {layout:?}");
    // Sizes non-zero, and each buffer holds at least the f32s the shape reaches.
    check_lens(layout, shape, (a.size(), b.size(), c.size()), 4, "bytes")?;
    if c == a || c == b {
        return Err(Error::shape(
            op,
            "C must not be the same buffer as A or B (the product cannot be done in place)",
        ));
    }
    // The shader indexes in u32 and walks k0 and the tile origins past the last element by
    // less than one tile; keeping every operand below 2³² − 64 elements rules out wrapping.
    let (na, nb, nc) = operand_lens(layout, shape)?;
    let index_limit = u32::MAX as usize - TILE_M.max(TILE_N);
    for (name, count) in [("A", na), ("B", nb), ("C", nc)] {
        if count > index_limit {
            return Err(Error::TooLarge {
                tensor: format!("{op} operand {name} ({count} elements)"),
                bytes: count as u64 * 4,
                limit: index_limit as u64 * 4,
                what: "matmul operand (u32 indexing)",
            });
        }
    }
    let grid = [shape.n.div_ceil(TILE_N), shape.m.div_ceil(TILE_M)];
    let max = ctx.limits.max_compute_workgroups_per_dimension as usize;
    if grid.iter().any(|&g| g > max) {
        return Err(Error::TooLarge {
            tensor: format!(
                "{op} grid {}x{} workgroups for M={}, N={}",
                grid[0], grid[1], shape.m, shape.n
            ),
            bytes: *grid.iter().max().unwrap_or(&0) as u64,
            limit: max as u64,
            what: "workgroup-count dimension",
        });
    }
    // Every count is below u32::MAX here, so these casts are exact.
    let params = Params {
        m: shape.m as u32,
        n: shape.n as u32,
        k: shape.k as u32,
        accumulate: accumulate as u32,
    };
    let uniform = ctx.uniform(&format!("{} params", entry(layout)), &params)?;
    ctx.dispatch(
        "matmul",
        entry(layout),
        &[a, b, c, &uniform],
        [grid[0] as u32, grid[1] as u32, 1],
    )
}
