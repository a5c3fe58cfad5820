//! Launchers of the fp32 matrix product: shaders/matmul.wgsl (the simple 64×64 kernel, the
//! portable reference) and shaders/matmul_tiled.wgsl (register-blocked variants with tile
//! sizes as pipeline constants, vec4 loads, and an optional bias + activation epilogue).
//!
//! Shapes: C(M,N) = op(A)·op(B) (+ C when accumulating), every matrix row-major, with
//! A (M,K) for NN/NT and (K,M) for TN, B (K,N) for NN/TN and (N,K) for NT. One workgroup
//! computes a BM×BN tile of C, so the grid is (⌈N/BN⌉, ⌈M/BM⌉, 1).
//!
//! Which variant runs is decided at plan time by `gpu::autotune` (timed per adapter and
//! shape, or a heuristic); every variant sums each element's K products in ascending k, so
//! the choice does not change the result.

use crate::cpu::matmul::{check_lens, operand_lens};
use crate::error::{Error, Result};
use crate::gpu::pipeline_cache::Specialization;
use crate::gpu::{Dispatch, GpuContext, autotune};
use crate::ops::{Activation, MatmulLayout, MatmulShape};

/// Rows and columns of C one workgroup of the simple kernel computes.
pub const TILE_M: usize = 64;
pub const TILE_N: usize = 64;
/// The largest tile of any variant (bounds the index headroom).
const MAX_TILE: usize = 128;

/// One way to compute a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// shaders/matmul.wgsl: 64×64 tile, 4×4 per invocation, K slices of 16, scalar loads.
    Simple,
    /// shaders/matmul_tiled.wgsl with BM×BN tiles (64 or 128 each), K slices of BK (8 or
    /// 16), vec4 global loads when `vec4` (only for shapes where `vec4_allowed`), and the
    /// next slice fetched into registers during the current one's FMAs when `prefetch`.
    Tiled {
        bm: u32,
        bn: u32,
        bk: u32,
        vec4: bool,
        prefetch: bool,
    },
}

/// Every variant, simple first. The autotune times those a shape allows.
pub const VARIANTS: [MatmulVariant; 17] = {
    const fn t(bm: u32, bn: u32, bk: u32, vec4: bool, prefetch: bool) -> MatmulVariant {
        MatmulVariant::Tiled {
            bm,
            bn,
            bk,
            vec4,
            prefetch,
        }
    }
    [
        MatmulVariant::Simple,
        t(64, 64, 16, false, false),
        t(64, 64, 16, true, false),
        t(128, 64, 8, false, false),
        t(128, 64, 8, true, false),
        t(64, 128, 8, false, false),
        t(64, 128, 8, true, false),
        t(128, 128, 8, false, false),
        t(128, 128, 8, true, false),
        t(128, 128, 16, false, false),
        t(128, 128, 16, true, false),
        // Prefetching: the large tiles, where each slice's FMAs can hide a global load.
        t(128, 64, 8, true, true),
        t(64, 128, 8, true, true),
        t(128, 128, 8, false, true),
        t(128, 128, 8, true, true),
        t(128, 128, 16, false, true),
        t(128, 128, 16, true, true),
    ]
};

impl MatmulVariant {
    /// A stable name (`simple`, `t128x64k8`, `t128x128k8v4p`): the autotune cache's value
    /// and what benchmarks print.
    pub fn name(&self) -> String {
        match *self {
            MatmulVariant::Simple => "simple".into(),
            MatmulVariant::Tiled {
                bm,
                bn,
                bk,
                vec4,
                prefetch,
            } => format!(
                "t{bm}x{bn}k{bk}{}{}",
                if vec4 { "v4" } else { "" },
                if prefetch { "p" } else { "" }
            ),
        }
    }

    pub fn from_name(name: &str) -> Option<MatmulVariant> {
        VARIANTS.iter().copied().find(|v| v.name() == name)
    }

    /// Rows and columns of C per workgroup.
    pub fn tile(&self) -> (usize, usize) {
        match *self {
            MatmulVariant::Simple => (TILE_M, TILE_N),
            MatmulVariant::Tiled { bm, bn, .. } => (bm as usize, bn as usize),
        }
    }

    /// Whether this variant may compute `shape` in `layout` (vec4 loads need the contiguous
    /// dimension of both operands to be a multiple of 4).
    pub fn allowed(&self, layout: MatmulLayout, shape: MatmulShape) -> bool {
        match *self {
            MatmulVariant::Tiled { vec4: true, .. } => vec4_allowed(layout, shape),
            _ => true,
        }
    }

    /// Bytes of workgroup memory a workgroup uses (the staged slices).
    pub fn workgroup_bytes(&self) -> u32 {
        match *self {
            // Each k's row of the staged slices is padded by one vec4 (shaders/matmul.wgsl).
            MatmulVariant::Simple => 2 * 16 * 17 * 16,
            MatmulVariant::Tiled { bm, bn, bk, .. } => 16 * bk * (bm / 4 + 1 + bn / 4 + 1),
        }
    }

    /// Whether the device gives a workgroup that much workgroup memory.
    pub fn fits(&self, ctx: &GpuContext) -> bool {
        self.workgroup_bytes() <= ctx.limits.max_compute_workgroup_storage_size
    }

    /// The variants that may compute `shape` in `layout`.
    pub fn candidates(layout: MatmulLayout, shape: MatmulShape) -> Vec<MatmulVariant> {
        VARIANTS
            .iter()
            .copied()
            .filter(|v| v.allowed(layout, shape))
            .collect()
    }
}

/// vec4 loads read op(A) and op(B) four contiguous elements at a time, so the row length
/// of each stored operand must be a multiple of 4: K for A (M,K) and B (N,K), M for A (K,M),
/// N for B (K,N). Then no vec4 straddles a row or the end of a buffer.
pub fn vec4_allowed(layout: MatmulLayout, s: MatmulShape) -> bool {
    match layout {
        MatmulLayout::NN => s.k.is_multiple_of(4) && s.n.is_multiple_of(4),
        MatmulLayout::NT => s.k.is_multiple_of(4),
        MatmulLayout::TN => s.m.is_multiple_of(4) && s.n.is_multiple_of(4),
    }
}

/// What the tiled kernel does after the product (a dense layer's forward): add a bias
/// per column, and write the activation of the result to `z` (C keeps the
/// pre-activation).
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// bias(N): C[m, n] += bias[n].
    pub bias: Option<&'a wgpu::Buffer>,
    /// (f, z(M,N)): z = f(C) after the bias.
    pub act: Option<(Activation, &'a wgpu::Buffer)>,
}

impl Epilogue<'_> {
    fn is_empty(&self) -> bool {
        self.bias.is_none() && self.act.is_none()
    }
}

/// The simple kernel's `Params`, 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    accumulate: u32,
}

/// The tiled kernel's `Params`, 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct TiledParams {
    m: u32,
    n: u32,
    k: u32,
    accumulate: u32,
    act_param: f32,
    pad: [u32; 3],
}

/// The entry point of each layout (the same names in both shaders).
pub fn entry(layout: MatmulLayout) -> &'static str {
    match layout {
        MatmulLayout::NN => "matmul_nn",
        MatmulLayout::NT => "matmul_nt",
        MatmulLayout::TN => "matmul_tn",
    }
}

/// C(M,N) = op(A)·op(B), or C += op(A)·op(B) when `accumulate`; layouts as in cpu::matmul.
/// The variant is the autotune's choice for this adapter and shape.
pub fn matmul(
    ctx: &GpuContext,
    layout: MatmulLayout,
    shape: MatmulShape,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Dispatch> {
    check(layout, shape, a, b, c)?;
    let variant = autotune::matmul_variant(ctx, layout, shape)?;
    matmul_with(
        ctx,
        variant,
        layout,
        shape,
        a,
        b,
        c,
        accumulate,
        Epilogue::default(),
    )
}

/// The tiled variant a dense forward of `shape` would be fused into, or None when the
/// product alone runs best on the simple kernel (which has no epilogue): then the separate
/// ops are kept, since a slower product would cost more than the bias and activation
/// dispatches the fusion saves.
pub fn fused_forward_variant(
    ctx: &GpuContext,
    shape: MatmulShape,
) -> Result<Option<MatmulVariant>> {
    Ok(
        match autotune::matmul_variant(ctx, MatmulLayout::NT, shape)? {
            MatmulVariant::Simple => None,
            v => Some(v),
        },
    )
}

/// A dense layer's forward, fused: C(M,N) = A(M,K)·B(N,K)ᵀ + bias, and z = f(C) when `act`
/// is given (C keeps the pre-activation), on the tiled variant the autotune picks for the
/// product, or the 64×64 tiled one where it picks the simple kernel (the executor does not
/// fuse then; see `fused_forward_variant`).
pub fn matmul_forward_fused(
    ctx: &GpuContext,
    shape: MatmulShape,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    epilogue: Epilogue<'_>,
) -> Result<Dispatch> {
    let layout = MatmulLayout::NT;
    check(layout, shape, a, b, c)?;
    let variant = fused_forward_variant(ctx, shape)?.unwrap_or(MatmulVariant::Tiled {
        bm: 64,
        bn: 64,
        bk: 16,
        vec4: false,
        prefetch: false,
    });
    matmul_with(ctx, variant, layout, shape, a, b, c, false, epilogue)
}

/// Validates sizes, aliasing and the u32 index range of one product.
fn check(
    layout: MatmulLayout,
    shape: MatmulShape,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
) -> Result<()> {
    let op = format!("matmul {layout:?}");
    // Sizes non-zero, and each buffer holds at least the f32s the shape reaches.
    check_lens(layout, shape, (a.size(), b.size(), c.size()), 4, "bytes")?;
    if c == a || c == b {
        return Err(Error::shape(
            op,
            "C must not be the same buffer as A or B (the product cannot be done in place)",
        ));
    }
    // The shaders index in u32 and walk k0 and the tile origins past the last element by
    // less than one tile; keeping every operand below 2³² − 128 elements rules out wrapping.
    let (na, nb, nc) = operand_lens(layout, shape)?;
    let index_limit = u32::MAX as usize - MAX_TILE;
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
    Ok(())
}

/// C = op(A)·op(B) (+ C, + bias, z = f(·)) with a given variant: what the autotune times,
/// what tests force, and what the other launchers end in. The simple variant has no
/// epilogue and refuses one.
#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    ctx: &GpuContext,
    variant: MatmulVariant,
    layout: MatmulLayout,
    shape: MatmulShape,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    c: &wgpu::Buffer,
    accumulate: bool,
    epilogue: Epilogue<'_>,
) -> Result<Dispatch> {
    check(layout, shape, a, b, c)?;
    let op = format!("matmul {layout:?} ({})", variant.name());
    if !variant.allowed(layout, shape) {
        return Err(Error::shape(
            op,
            format!("vec4 loads need a row length divisible by 4; {shape:?} has none"),
        ));
    }
    let (tm, tn) = variant.tile();
    let grid = [shape.n.div_ceil(tn), shape.m.div_ceil(tm)];
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
    let grid = [grid[0] as u32, grid[1] as u32, 1];
    // Every count is below u32::MAX here (checked above), so these casts are exact.
    let (m, n, k) = (shape.m as u32, shape.n as u32, shape.k as u32);
    let MatmulVariant::Tiled {
        bm,
        bn,
        bk,
        vec4,
        prefetch,
    } = variant
    else {
        if !epilogue.is_empty() {
            return Err(Error::shape(op, "the simple kernel has no fused epilogue"));
        }
        let params = Params {
            m,
            n,
            k,
            accumulate: accumulate as u32,
        };
        let uniform = ctx.uniform(&format!("{} params", entry(layout)), &params)?;
        return ctx.dispatch("matmul", entry(layout), &[a, b, c, &uniform], grid);
    };

    if let Some(bias) = epilogue.bias {
        if bias.size() < shape.n as u64 * 4 {
            return Err(Error::shape(
                op,
                format!(
                    "bias holds {} bytes, N = {} needs more",
                    bias.size(),
                    shape.n
                ),
            ));
        }
        if bias == c {
            return Err(Error::shape(op, "bias must not be the output buffer"));
        }
    }
    if let Some((_, z)) = epilogue.act {
        if z.size() < shape.m as u64 * shape.n as u64 * 4 {
            return Err(Error::shape(op, "z is smaller than C"));
        }
        if z == c || z == a || z == b || Some(z) == epilogue.bias {
            return Err(Error::shape(
                op,
                "the activation output must be its own buffer (not A, B, C or the bias)",
            ));
        }
    }
    let (act_code, act_param) = epilogue
        .act
        .map(|(f, _)| (f.code(), f.param()))
        .unwrap_or((0, 0.0));
    let params = TiledParams {
        m,
        n,
        k,
        accumulate: accumulate as u32,
        act_param,
        pad: [0; 3],
    };
    let uniform = ctx.uniform(&format!("{} tiled params", entry(layout)), &params)?;
    // Unused bindings get a 16-byte placeholder: the layout (derived from the shader) has
    // all eight, and a vec4 binding needs at least 16 bytes.
    let placeholder = || ctx.storage_buffer("matmul placeholder", 16);
    let (a4, b4) = if vec4 {
        (a.clone(), b.clone())
    } else {
        (placeholder()?, placeholder()?)
    };
    let bias = match epilogue.bias {
        Some(bias) => bias.clone(),
        None => placeholder()?,
    };
    let z = match epilogue.act {
        Some((_, z)) => z.clone(),
        None => placeholder()?,
    };
    let constants = [
        ("BM", bm as f64),
        ("BN", bn as f64),
        ("BK", bk as f64),
        ("VEC4", if vec4 { 1.0 } else { 0.0 }),
        ("PREFETCH", if prefetch { 1.0 } else { 0.0 }),
        ("HAS_BIAS", if epilogue.bias.is_some() { 1.0 } else { 0.0 }),
        ("HAS_ACT", if epilogue.act.is_some() { 1.0 } else { 0.0 }),
        ("ACT_CODE", act_code as f64),
    ];
    ctx.dispatch_with(
        "matmul_tiled",
        entry(layout),
        Specialization {
            constants: &constants,
            // Every workgroup element is staged before it is read.
            zero_workgroup_memory: false,
        },
        &[a, b, c, &uniform, &a4, &b4, &bias, &z],
        grid,
    )
}
