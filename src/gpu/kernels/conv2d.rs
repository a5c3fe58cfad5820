//! Launcher of shaders/conv2d.wgsl: 2-D convolution by implicit GEMM (NCHW, weights
//! `[c_out, c_in/groups, kh, kw]`), one dispatch per pass, no scratch buffer.
//!
//! Grids (groups on z; tiles of 64×64 of the per-group GEMM on x and y, or 16×256 through
//! the `*_wide` entries when the GEMM has at most 32 rows):
//! - `conv2d_forward`          (⌈n·oh·ow/64⌉, ⌈cpg_out/64⌉, groups)
//! - `conv2d_backward_input`   (⌈n·h·w/64⌉,   ⌈cpg_in/64⌉,  groups)
//! - `conv2d_backward_weight`  (⌈P/64⌉,       ⌈cpg_out/64⌉, groups·splits), P = cpg_in·kh·kw,
//!   split-K over the n·oh·ow pixels; with more than one split it writes partial sums into
//!   a scratch buffer the launcher allocates (splits·c_out·P floats, at plan time) and a
//!   second dispatch, `conv2d_backward_weight_reduce`, adds them in split order into dW.
//!   That launcher therefore returns one or two dispatches, to be recorded in order.
//! - `conv2d_bias_forward`     one invocation per element of y (2-D grid past 65535 groups)
//! - `conv2d_backward_bias`    one workgroup of 256 per output channel
//!
//! Depthwise convolutions (groups == c_in > 1) use direct kernels instead, whose GEMMs
//! would be 1–2 rows tall: `conv2d_depthwise_forward` / `_backward_input` (one invocation
//! per output / input element) and `_backward_weight` (one workgroup per weight element,
//! a single dispatch). The two backwards step their indices by quotient and remainder
//! (a tap's offset by the stride, a lane's pixel by the workgroup size) rather than divide
//! per tap or per pixel. The same launchers choose; see `is_depthwise`.
//!
//! Every launcher validates the geometry (`Conv2dShape::validate`), that every index fits
//! the shader's u32 arithmetic, that each buffer holds the elements the shape reaches, and
//! that no buffer is bound twice.

use super::launch::{GROUPED, check_buffer, check_count, check_distinct, grid_1d, grouped_table};
use crate::error::{Error, Result};
use crate::gpu::pipeline_cache::Specialization;
use crate::gpu::{Dispatch, GpuContext, autotune, timing};
use crate::ops::Conv2dShape;

/// Tile of the per-group GEMM one workgroup computes (TILE_M × TILE_N in the shader).
pub const TILE: usize = 64;
/// The wide tile (WIDE_M × WIDE_N), used for GEMMs of at most `WIDE_MAX_ROWS` rows.
pub const WIDE_M: usize = 16;
pub const WIDE_N: usize = 256;
pub const WIDE_MAX_ROWS: usize = 32;
/// Workgroup size of the element-wise kernels (bias add, bias gradient, split-K reduce).
pub const BIAS_WG: u32 = 256;

/// The three GEMM passes of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvPass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

impl ConvPass {
    pub const ALL: [ConvPass; 3] = [
        ConvPass::Forward,
        ConvPass::BackwardInput,
        ConvPass::BackwardWeight,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ConvPass::Forward => "forward",
            ConvPass::BackwardInput => "backward_input",
            ConvPass::BackwardWeight => "backward_weight",
        }
    }

    /// The entry point of this pass (the same name in conv2d.wgsl and conv2d_tiled.wgsl).
    fn entry(self) -> &'static str {
        match self {
            ConvPass::Forward => "conv2d_forward",
            ConvPass::BackwardInput => "conv2d_backward_input",
            ConvPass::BackwardWeight => "conv2d_backward_weight",
        }
    }

    /// The simple kernel's entry for GEMMs of at most `WIDE_MAX_ROWS` rows.
    fn wide_entry(self) -> &'static str {
        match self {
            ConvPass::Forward => "conv2d_forward_wide",
            ConvPass::BackwardInput => "conv2d_backward_input_wide",
            ConvPass::BackwardWeight => "conv2d_backward_weight_wide",
        }
    }

    /// (rows, columns) of this pass's per-group GEMM.
    pub fn gemm_dims(self, s: &Conv2dShape) -> (usize, usize) {
        let [oh, ow] = s.out_hw();
        match self {
            ConvPass::Forward => (s.cout_per_group(), s.n * oh * ow),
            ConvPass::BackwardInput => (s.cin_per_group(), s.n * s.h * s.w),
            ConvPass::BackwardWeight => (s.cout_per_group(), s.patch_len()),
        }
    }
}

/// One way to run the GEMM passes of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvVariant {
    /// shaders/conv2d.wgsl: 64×64 tiles (16×256 for at most 32 rows), gathers with
    /// divisions per element. The reference.
    Simple,
    /// shaders/conv2d_tiled.wgsl: BN columns per tile, BK per slice, TN4 vec4 columns per
    /// invocation (rows per tile BM = 4096·TN4/BN), gathers through per-tile tables.
    Tiled { bn: u32, bk: u32, tn4: u32 },
}

/// Every convolution variant, simple first.
pub const CONV_VARIANTS: [ConvVariant; 8] = {
    const fn t(bn: u32, bk: u32, tn4: u32) -> ConvVariant {
        ConvVariant::Tiled { bn, bk, tn4 }
    }
    [
        ConvVariant::Simple,
        t(256, 8, 1),  // 16×256, 4×4 per invocation
        t(128, 8, 1),  // 32×128, 4×4
        t(64, 16, 1),  // 64×64, 4×4
        t(256, 8, 2),  // 32×256, 4×8
        t(128, 8, 2),  // 64×128, 4×8
        t(128, 16, 2), // 64×128, 4×8, K slices of 16
        t(64, 16, 2),  // 128×64, 4×8
    ]
};

impl ConvVariant {
    /// A stable name (`simple`, `c32x256k8`): the autotune cache's value.
    pub fn name(&self) -> String {
        match *self {
            ConvVariant::Simple => "simple".into(),
            ConvVariant::Tiled { bk, .. } => {
                let (bm, bn) = self.tile(0);
                format!("c{bm}x{bn}k{bk}")
            }
        }
    }

    pub fn from_name(name: &str) -> Option<ConvVariant> {
        CONV_VARIANTS.iter().copied().find(|v| v.name() == name)
    }

    /// (rows, columns) of C per workgroup, for a GEMM of `rows` rows (the simple kernel
    /// switches to its wide tile at `WIDE_MAX_ROWS`).
    pub fn tile(&self, rows: usize) -> (usize, usize) {
        match *self {
            ConvVariant::Simple if rows <= WIDE_MAX_ROWS => (WIDE_M, WIDE_N),
            ConvVariant::Simple => (TILE, TILE),
            ConvVariant::Tiled { bn, tn4, .. } => ((4096 * tn4 / bn) as usize, bn as usize),
        }
    }

    /// Bytes of workgroup memory one workgroup uses.
    pub fn workgroup_bytes(&self) -> u32 {
        match *self {
            // The staged slices (vec4s: each k's row padded by one), the wide ones, and the
            // bias gradient's lanes.
            ConvVariant::Simple => 16 * (2 * 272 + 40 + 520) + 4 * 256,
            // The staged slices (each k's row of BM/4 or BN/4 vec4s padded by one) and the
            // column and k tables.
            ConvVariant::Tiled { bn, bk, tn4 } => {
                let bm = 4096 * tn4 / bn;
                16 * bk * (bm / 4 + 1 + bn / 4 + 1) + 16 * bn + 16 * 32
            }
        }
    }

    /// Whether the device gives a workgroup that much workgroup memory.
    pub fn fits(&self, ctx: &GpuContext) -> bool {
        self.workgroup_bytes() <= ctx.limits.max_compute_workgroup_storage_size
    }

    /// The variants this device can run.
    pub fn candidates(ctx: &GpuContext) -> Vec<ConvVariant> {
        CONV_VARIANTS.into_iter().filter(|v| v.fits(ctx)).collect()
    }
}

/// The choice without timing: the tiled variant whose rows per tile are the fewest that
/// cover the GEMM's rows (16, 32, 64, then 128), with the widest tile of that height that
/// the columns fill.
pub fn conv_heuristic(pass: ConvPass, s: &Conv2dShape) -> ConvVariant {
    let (rows, cols) = pass.gemm_dims(s);
    let bm = [16, 32, 64, 128]
        .into_iter()
        .find(|&b| rows <= b)
        .unwrap_or(128);
    let wide = cols >= 256;
    let (bn, bk, tn4) = match (bm, wide) {
        (16, _) => (256, 8, 1),
        (32, true) => (256, 8, 2),
        (32, false) => (128, 8, 1),
        (64, true) => (128, 8, 2),
        (64, false) => (64, 16, 1),
        _ => (64, 16, 2),
    };
    ConvVariant::Tiled { bn, bk, tn4 }
}

/// The shader's `Params`, 96 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    dil_h: u32,
    dil_w: u32,
    oh: u32,
    ow: u32,
    cpg_in: u32,
    cpg_out: u32,
    plen: u32,
    accumulate: u32,
    splits: u32,
    chunk: u32,
    wlen: u32,
    _pad: [u32; 3],
}

/// Validates the geometry and that every count and index the shader forms stays below
/// 2³¹ (the largest is a tensor length or a GEMM column count, plus less than one tile).
fn params(op: &str, s: &Conv2dShape, accumulate: bool) -> Result<Params> {
    s.validate(op)?;
    let [oh, ow] = s.out_hw();
    for (what, count) in [
        ("x elements", s.x_len()),
        ("y elements", s.y_len()),
        ("w elements", s.w_len()),
        (
            "padded input extent",
            (s.h + 2 * s.pad[0]).max(s.w + 2 * s.pad[1]) + TILE,
        ),
        (
            "dilated kernel extent",
            (s.kh * s.dilation[0]).max(s.kw * s.dilation[1]) + s.stride[0].max(s.stride[1]),
        ),
        ("x elements + tile", s.x_len() + TILE),
        ("y elements + tile", s.y_len() + TILE),
    ] {
        check_count(op, what, count)?;
    }
    let u = |v: usize| v as u32;
    Ok(Params {
        n: u(s.n),
        c_in: u(s.c_in),
        h: u(s.h),
        w: u(s.w),
        c_out: u(s.c_out),
        kh: u(s.kh),
        kw: u(s.kw),
        stride_h: u(s.stride[0]),
        stride_w: u(s.stride[1]),
        pad_h: u(s.pad[0]),
        pad_w: u(s.pad[1]),
        dil_h: u(s.dilation[0]),
        dil_w: u(s.dilation[1]),
        oh: u(oh),
        ow: u(ow),
        cpg_in: u(s.cin_per_group()),
        cpg_out: u(s.cout_per_group()),
        plen: u(s.patch_len()),
        accumulate: accumulate as u32,
        splits: 1,
        chunk: u(s.n * oh * ow),
        wlen: u(s.w_len()),
        _pad: [0; 3],
    })
}

/// Whether the launchers use the direct depthwise kernels: one input channel per group, and
/// more than one group (a single-channel ordinary convolution is a fine GEMM).
pub fn is_depthwise(s: &Conv2dShape) -> bool {
    s.groups > 1 && s.groups == s.c_in
}

/// One workgroup per item, on a 2-D grid past the per-dimension limit (the shader
/// recomputes the flat index and bounds-checks it).
fn grid_per_item(ctx: &GpuContext, items: usize) -> [u32; 3] {
    let max = ctx.limits.max_compute_workgroups_per_dimension.max(1) as usize;
    if items <= max {
        [items as u32, 1, 1]
    } else {
        [
            max as u32,
            items.div_ceil(max).min(u32::MAX as usize) as u32,
            1,
        ]
    }
}

/// Entry point and grid of a per-group GEMM of rows × cols: the square 64×64 tile, or the
/// wide 16×256 one when rows ≤ 32 (a 64-row tile would idle 50–75% of its invocations on
/// resnet's 16- and 32-channel stages). `ctx.dispatch` refuses a grid past the device's
/// per-dimension limit.
fn gemm_entry(
    square: &'static str,
    wide: &'static str,
    rows: usize,
    cols: usize,
    z: usize,
) -> (&'static str, [u32; 3]) {
    let clamp = |v: usize| v.min(u32::MAX as usize) as u32;
    if rows <= WIDE_MAX_ROWS {
        (
            wide,
            [
                clamp(cols.div_ceil(WIDE_N)),
                clamp(rows.div_ceil(WIDE_M)),
                clamp(z),
            ],
        )
    } else {
        (
            square,
            [
                clamp(cols.div_ceil(TILE)),
                clamp(rows.div_ceil(TILE)),
                clamp(z),
            ],
        )
    }
}

/// The GEMM dispatch of `pass` with `variant`, grid z = `z` (groups, or groups·splits);
/// `bindings` are the shader's bindings 1, 2, 3 (source, destination, second source).
fn gemm_dispatch(
    ctx: &GpuContext,
    pass: ConvPass,
    variant: ConvVariant,
    s: &Conv2dShape,
    u: &wgpu::Buffer,
    bindings: [&wgpu::Buffer; 3],
    z: usize,
) -> Result<Dispatch> {
    let (rows, cols) = pass.gemm_dims(s);
    let [src, dst, src2] = bindings;
    let ConvVariant::Tiled { bn, bk, tn4 } = variant else {
        let (entry, grid) = gemm_entry(pass.entry(), pass.wide_entry(), rows, cols, z);
        return ctx.dispatch("conv2d", entry, &[u, src, dst, src2], grid);
    };
    let (bm, bnu) = variant.tile(rows);
    let clamp = |v: usize| v.min(u32::MAX as usize) as u32;
    // A strided input gradient runs one GEMM per stride phase (grid z: group-major), each
    // over that phase's pixels: the grid's columns cover the largest phase.
    let phases = s.stride[0] * s.stride[1];
    let phased = pass == ConvPass::BackwardInput && phases > 1;
    let (entry, cols, z) = if phased {
        let largest = stride_phases(s)
            .iter()
            .map(|p| s.n * p.pixels())
            .max()
            .unwrap_or(0);
        ("conv2d_backward_input_phased", largest, z * phases)
    } else {
        (pass.entry(), cols, z)
    };
    let grid = [
        clamp(cols.div_ceil(bnu)),
        clamp(rows.div_ceil(bm)),
        clamp(z),
    ];
    let constants = [("BN", bn as f64), ("BK", bk as f64), ("TN4", tn4 as f64)];
    ctx.dispatch_with(
        "conv2d_tiled",
        entry,
        Specialization {
            constants: &constants,
            // Every workgroup element (tiles and tables) is written before it is read.
            zero_workgroup_memory: false,
        },
        &[u, src, dst, src2],
        grid,
    )
}

/// One stride phase of a strided input gradient: the input pixels (iy, ix) with
/// (iy + pad_h) mod stride_h = `ry` and (ix + pad_w) mod stride_w = `rx`, and how many
/// kernel rows and columns reach them (shaders/conv2d_tiled.wgsl computes the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StridePhase {
    pub rows: usize,
    pub cols: usize,
    pub taps_y: usize,
    pub taps_x: usize,
}

impl StridePhase {
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    pub fn taps(&self) -> usize {
        self.taps_y * self.taps_x
    }
}

/// The stride phases of `s`'s input gradient, row-major over (ry, rx).
pub fn stride_phases(s: &Conv2dShape) -> Vec<StridePhase> {
    // (pixels, taps) of residue r along one axis.
    let axis = |r: usize, size: usize, pad: usize, stride: usize, k: usize, dil: usize| {
        let first = (r + stride - pad % stride) % stride;
        let pixels = if first < size {
            (size - first).div_ceil(stride)
        } else {
            0
        };
        let taps = (0..k).filter(|i| (i * dil) % stride == r).count();
        (pixels, taps)
    };
    let mut out = Vec::with_capacity(s.stride[0] * s.stride[1]);
    for ry in 0..s.stride[0] {
        for rx in 0..s.stride[1] {
            let (rows, taps_y) = axis(ry, s.h, s.pad[0], s.stride[0], s.kh, s.dilation[0]);
            let (cols, taps_x) = axis(rx, s.w, s.pad[1], s.stride[1], s.kw, s.dilation[1]);
            out.push(StridePhase {
                rows,
                cols,
                taps_y,
                taps_x,
            });
        }
    }
    out
}

/// The variant for `pass` of `s`: the autotune's (timing each candidate on scratch
/// buffers of the shape), else the heuristic.
fn choose(ctx: &GpuContext, pass: ConvPass, s: &Conv2dShape) -> Result<ConvVariant> {
    autotune::conv_variant(ctx, pass, s, |v| {
        let x = ctx.storage_buffer("conv autotune x", s.x_len().max(4) as u64 * 4)?;
        let w = ctx.storage_buffer("conv autotune w", s.w_len().max(4) as u64 * 4)?;
        let y = ctx.storage_buffer("conv autotune y", s.y_len().max(4) as u64 * 4)?;
        let ds = match pass {
            ConvPass::Forward => vec![conv2d_forward_with(ctx, v, s, &x, &w, &y)?],
            ConvPass::BackwardInput => {
                vec![conv2d_backward_input_with(ctx, v, s, &y, &w, &x, false)?]
            }
            ConvPass::BackwardWeight => conv2d_backward_weight_with(ctx, v, s, &x, &y, &w, false)?,
        };
        let ds: Vec<&Dispatch> = ds.iter().collect();
        timing::median_time(ctx, &ds, 1, 3, 2e-3)
    })
}

/// y[n, c_out, oh, ow] = conv(x[n, c_in, h, w], w[c_out, c_in/groups, kh, kw]) (overwrite),
/// with the variant chosen for this shape.
pub fn conv2d_forward(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Dispatch> {
    let v = if is_depthwise(s) {
        ConvVariant::Simple
    } else {
        params("conv2d_forward", s, false)?;
        choose(ctx, ConvPass::Forward, s)?
    };
    conv2d_forward_with(ctx, v, s, x, w, y)
}

/// `conv2d_forward` with a given variant (ignored for depthwise shapes).
pub fn conv2d_forward_with(
    ctx: &GpuContext,
    variant: ConvVariant,
    s: &Conv2dShape,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Dispatch> {
    const OP: &str = "conv2d_forward";
    let p = params(OP, s, false)?;
    check_buffer(OP, "x", x, s.x_len())?;
    check_buffer(OP, "w", w, s.w_len())?;
    check_buffer(OP, "y", y, s.y_len())?;
    check_distinct(OP, &[("x", x), ("w", w), ("y", y)])?;
    let u = ctx.uniform("conv2d_forward.params", &p)?;
    if is_depthwise(s) {
        let grid = grid_1d(ctx, s.y_len(), BIAS_WG);
        return ctx.dispatch("conv2d", "conv2d_depthwise_forward", &[&u, x, y, w], grid);
    }
    gemm_dispatch(ctx, ConvPass::Forward, variant, s, &u, [x, y, w], s.groups)
}

/// dx[n, c_in, h, w] = ∂L/∂x from dy[n, c_out, oh, ow] and w (overwrite, or add with
/// `accumulate`): the transposed convolution, with the variant chosen for this shape.
pub fn conv2d_backward_input(
    ctx: &GpuContext,
    s: &Conv2dShape,
    dy: &wgpu::Buffer,
    w: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Dispatch> {
    let v = if is_depthwise(s) {
        ConvVariant::Simple
    } else {
        params("conv2d_backward_input", s, false)?;
        choose(ctx, ConvPass::BackwardInput, s)?
    };
    conv2d_backward_input_with(ctx, v, s, dy, w, dx, accumulate)
}

/// `conv2d_backward_input` with a given variant (ignored for depthwise shapes).
pub fn conv2d_backward_input_with(
    ctx: &GpuContext,
    variant: ConvVariant,
    s: &Conv2dShape,
    dy: &wgpu::Buffer,
    w: &wgpu::Buffer,
    dx: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "conv2d_backward_input";
    let p = params(OP, s, accumulate)?;
    check_buffer(OP, "dy", dy, s.y_len())?;
    check_buffer(OP, "w", w, s.w_len())?;
    check_buffer(OP, "dx", dx, s.x_len())?;
    check_distinct(OP, &[("dy", dy), ("w", w), ("dx", dx)])?;
    let u = ctx.uniform("conv2d_backward_input.params", &p)?;
    if is_depthwise(s) {
        let grid = grid_1d(ctx, s.x_len(), BIAS_WG);
        return ctx.dispatch(
            "conv2d",
            "conv2d_depthwise_backward_input",
            &[&u, dy, dx, w],
            grid,
        );
    }
    gemm_dispatch(
        ctx,
        ConvPass::BackwardInput,
        variant,
        s,
        &u,
        [dy, dx, w],
        s.groups,
    )
}

/// Workgroups the backward-weight grid should reach before K is split further: enough to
/// fill a large GPU several times over.
const SPLIT_TARGET_WORKGROUPS: usize = 512;
/// Shortest chunk of K per split (a multiple of the shader's TILE_K = 16): shorter chunks
/// would spend more on staging and writing partials than on products.
const MIN_SPLIT_CHUNK: usize = 128;
/// Most partial-sum floats the scratch buffer may hold (64 MiB).
const MAX_SPLIT_SCRATCH: usize = 16 << 20;

/// (splits, chunk) of the backward-weight pass: K = n·oh·ow cut into `splits` chunks of
/// `chunk` pixels (a multiple of 16). A function of the shape only, so the summation order
/// and the result do not depend on the adapter.
/// (Depthwise shapes do not use split-K; see `is_depthwise`.)
pub fn backward_weight_splits(s: &Conv2dShape) -> (usize, usize) {
    let [oh, ow] = s.out_hw();
    let k = s.n * oh * ow;
    let (_, [gx, gy, _]) = gemm_entry("", "", s.cout_per_group(), s.patch_len(), 1);
    let base = gx as usize * gy as usize * s.groups;
    let by_target = SPLIT_TARGET_WORKGROUPS.div_ceil(base.max(1));
    let by_chunk = k.div_ceil(MIN_SPLIT_CHUNK);
    let by_memory = (MAX_SPLIT_SCRATCH / s.w_len().max(1)).max(1);
    // groups·splits rides on grid z, which every device allows up to 65535.
    let by_grid = (65535 / s.groups.max(1)).max(1);
    let want = by_target.min(by_chunk).min(by_memory).min(by_grid).max(1);
    let chunk = k.div_ceil(want).div_ceil(16) * 16;
    (k.div_ceil(chunk.max(1)).max(1), chunk.max(16))
}

/// Floats of scratch the backward-weight pass allocates (0 when it does not split).
pub fn backward_weight_scratch_len(s: &Conv2dShape) -> usize {
    if is_depthwise(s) {
        return 0;
    }
    match backward_weight_splits(s) {
        (1, _) => 0,
        (splits, _) => splits * s.w_len(),
    }
}

/// dw[c_out, c_in/groups, kh, kw] = Σ over batch and output pixels of dy·patch(x), or
/// dw += that when `accumulate`, with the variant chosen for this shape. Returns one
/// dispatch, or two (partial sums, then their fixed-order reduction into dw) when K is
/// split; record them in the order returned.
pub fn conv2d_backward_weight(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dw: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let (mut d, sum) = conv2d_backward_weight_split(ctx, s, x, dy, dw, accumulate)?;
    d.extend(sum.map(|m| m.alone));
    Ok(d)
}

/// `conv2d_backward_weight` with a given variant (ignored for depthwise shapes). The
/// split-K chunking does not depend on the variant, so neither does the result.
pub fn conv2d_backward_weight_with(
    ctx: &GpuContext,
    variant: ConvVariant,
    s: &Conv2dShape,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dw: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let (mut d, sum) = conv2d_backward_weight_parts(ctx, variant, s, x, dy, dw, accumulate)?;
    d.extend(sum.map(|m| m.alone));
    Ok(d)
}

/// The split-K sum of a backward-weight pass, left for the caller to run: alone (`alone`,
/// after the pass) or with others in one `conv2d_backward_weight_sum_multi` dispatch.
#[derive(Clone)]
pub struct SplitKSum {
    pub partial: wgpu::Buffer,
    pub dw: wgpu::Buffer,
    pub w_len: usize,
    pub splits: usize,
    pub accumulate: bool,
    /// `conv2d_backward_weight_reduce` of this pass alone.
    pub alone: Dispatch,
}

/// `conv2d_backward_weight` with the variant chosen for this shape, its split-K sum (if
/// the pass splits) returned apart.
pub fn conv2d_backward_weight_split(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dw: &wgpu::Buffer,
    accumulate: bool,
) -> Result<(Vec<Dispatch>, Option<SplitKSum>)> {
    let v = if is_depthwise(s) {
        ConvVariant::Simple
    } else {
        params("conv2d_backward_weight", s, accumulate)?;
        choose(ctx, ConvPass::BackwardWeight, s)?
    };
    conv2d_backward_weight_parts(ctx, v, s, x, dy, dw, accumulate)
}

/// The pass's dispatches, and its split-K sum apart where K is split.
fn conv2d_backward_weight_parts(
    ctx: &GpuContext,
    variant: ConvVariant,
    s: &Conv2dShape,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dw: &wgpu::Buffer,
    accumulate: bool,
) -> Result<(Vec<Dispatch>, Option<SplitKSum>)> {
    const OP: &str = "conv2d_backward_weight";
    let mut p = params(OP, s, accumulate)?;
    check_buffer(OP, "x", x, s.x_len())?;
    check_buffer(OP, "dy", dy, s.y_len())?;
    check_buffer(OP, "dw", dw, s.w_len())?;
    check_distinct(OP, &[("x", x), ("dy", dy), ("dw", dw)])?;
    if is_depthwise(s) {
        let u = ctx.uniform("conv2d_depthwise_backward_weight.params", &p)?;
        let grid = grid_per_item(ctx, s.w_len());
        return Ok((
            vec![ctx.dispatch(
                "conv2d",
                "conv2d_depthwise_backward_weight",
                &[&u, x, dw, dy],
                grid,
            )?],
            None,
        ));
    }
    let (splits, chunk) = backward_weight_splits(s);
    check_count(OP, "split-K partial sums", splits * s.w_len() + TILE)?;
    p.splits = splits as u32;
    p.chunk = chunk as u32;
    let z = s.groups * splits;
    if splits == 1 {
        let u = ctx.uniform("conv2d_backward_weight.params", &p)?;
        return Ok((
            vec![gemm_dispatch(
                ctx,
                ConvPass::BackwardWeight,
                variant,
                s,
                &u,
                [x, dw, dy],
                z,
            )?],
            None,
        ));
    }
    let bytes = (splits * s.w_len()) as u64 * 4;
    ctx.check_size("conv2d_backward_weight split-K partial sums", bytes)?;
    let partial = ctx.storage_buffer("conv2d_backward_weight.partial", bytes)?;
    let u = ctx.uniform("conv2d_backward_weight.params", &p)?;
    let pass = gemm_dispatch(
        ctx,
        ConvPass::BackwardWeight,
        variant,
        s,
        &u,
        [x, &partial, dy],
        z,
    )?;
    let alone = ctx.dispatch(
        "conv2d",
        "conv2d_backward_weight_reduce",
        &[&u, &partial, dw],
        grid_1d(ctx, s.w_len(), BIAS_WG),
    )?;
    Ok((
        vec![pass],
        Some(SplitKSum {
            partial,
            dw: dw.clone(),
            w_len: s.w_len(),
            splits,
            accumulate,
            alone,
        }),
    ))
}

/// Split-K sums per `conv2d_backward_weight_sum_multi` dispatch: GROUPED where the device
/// binds two storage buffers per sum (partial and dW) for all of them, else 0 (each sum
/// runs alone).
pub fn sum_multi_capacity(ctx: &GpuContext) -> usize {
    if ctx.limits.max_storage_buffers_per_shader_stage as usize >= 2 * GROUPED {
        GROUPED
    } else {
        0
    }
}

/// The split-K sums of up to GROUPED backward-weight passes in one dispatch, each the bits
/// of its `alone` dispatch. Their passes must have run before, and nothing may touch their
/// dW in between.
pub fn conv2d_backward_weight_sum_multi(ctx: &GpuContext, sums: &[&SplitKSum]) -> Result<Dispatch> {
    const OP: &str = "conv2d_backward_weight_sum_multi";
    if sum_multi_capacity(ctx) == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "the device binds {} storage buffers per stage, {} are needed",
                ctx.limits.max_storage_buffers_per_shader_stage,
                2 * GROUPED
            ),
        ));
    }
    let lens = sums
        .iter()
        .map(|m| u32::try_from(m.w_len).map_err(|_| Error::shape(OP, "dW longer than u32")))
        .collect::<Result<Vec<u32>>>()?;
    let (table, grid) = grouped_table(ctx, OP, &lens, BIAS_WG)?;
    let mut jobs = [[0u32; 4]; GROUPED];
    for (job, m) in jobs.iter_mut().zip(sums) {
        *job = [m.splits as u32, m.accumulate as u32, 0, 0];
    }
    let mut named: Vec<(&str, &wgpu::Buffer)> = sums.iter().map(|m| ("dW", &m.dw)).collect();
    named.extend(sums.iter().map(|m| ("split-K partial sums", &m.partial)));
    check_distinct(OP, &named)?;
    let t = ctx.uniform("conv2d_backward_weight_sum_multi.table", &table)?;
    let j = ctx.uniform("conv2d_backward_weight_sum_multi.jobs", &jobs)?;
    // A 4-byte dummy for each empty slot, never read or written (no buffer may be bound
    // twice as writable).
    let dummies = (0..2 * (GROUPED - sums.len()))
        .map(|_| ctx.storage_buffer("conv2d_backward_weight_sum_multi.unused", 4))
        .collect::<Result<Vec<_>>>()?;
    let mut dummy = dummies.iter();
    let mut bound: Vec<&wgpu::Buffer> = vec![&t, &j];
    for k in 0..2 * GROUPED {
        let (job, partial) = (k % GROUPED, k < GROUPED);
        bound.push(match sums.get(job) {
            Some(m) if partial => &m.partial,
            Some(m) => &m.dw,
            None => dummy.next().expect("one dummy per empty slot"),
        });
    }
    ctx.dispatch(
        "conv2d_sum_multi",
        "conv2d_backward_weight_sum_multi",
        &bound,
        grid,
    )
}

/// y[b, c, :, :] += bias[c].
pub fn conv2d_bias_forward(
    ctx: &GpuContext,
    s: &Conv2dShape,
    y: &wgpu::Buffer,
    bias: &wgpu::Buffer,
) -> Result<Dispatch> {
    const OP: &str = "conv2d_bias_forward";
    let p = params(OP, s, false)?;
    check_buffer(OP, "y", y, s.y_len())?;
    check_buffer(OP, "bias", bias, s.c_out)?;
    check_distinct(OP, &[("y", y), ("bias", bias)])?;
    let u = ctx.uniform("conv2d_bias_forward.params", &p)?;
    ctx.dispatch(
        "conv2d",
        OP,
        &[&u, bias, y],
        grid_1d(ctx, s.y_len(), BIAS_WG),
    )
}

/// db[c] = Σ_{b, oh, ow} dy[b, c, oh, ow] in a fixed order, or db += that when `accumulate`.
pub fn conv2d_backward_bias(
    ctx: &GpuContext,
    s: &Conv2dShape,
    dy: &wgpu::Buffer,
    db: &wgpu::Buffer,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "conv2d_backward_bias";
    let p = params(OP, s, accumulate)?;
    check_buffer(OP, "dy", dy, s.y_len())?;
    check_buffer(OP, "db", db, s.c_out)?;
    check_distinct(OP, &[("dy", dy), ("db", db)])?;
    let u = ctx.uniform("conv2d_backward_bias.params", &p)?;
    ctx.dispatch(
        "conv2d",
        OP,
        &[&u, dy, db],
        [s.c_out.min(u32::MAX as usize) as u32, 1, 1],
    )
}
