//! Direct stride-1 convolution in f32 on AVX-512, AVX2 or NEON, without a patch matrix: the
//! forward (and through it the stride-1 input gradient, conv2d.rs `transposed`) and the
//! weight gradient. The register blocks are in conv2d_direct_kernels.rs.
//!
//! Why: im2col + GEMM writes the patch matrix (kh·kw times the input) and the GEMM packs it
//! again, and with resnet-20's 16 to 64 channels the products are too thin for the GEMM's
//! blocking: the stride-1 3×3 passes ran at 50–80 GFLOP/s on one core where the same core's
//! GEMM reaches ~110 on large squares (BENCHMARKS.md).
//!
//! Method: the image is copied once into a zero-padded plane per channel, hp × wp. At stride
//! 1, output (oy, ox) reads padded pixel (oy + ki·dh, ox + kj·dw), so on the flattened
//! "wide" output grid q = oy·wp + ox (ox running over the whole padded width) every tap is
//! one constant shift of the flattened plane: y_wide[q] = Σ_ci,ki,kj w · xp[ci][q + ki·dh·wp +
//! kj·dw]. The columns ox ≥ ow of the wide grid read across the row's end and are dropped
//! when the result is copied out. Rows share their padding: each holds pw zeros and then
//! the image's w pixels, so the columns a tap reads past a row's right end are the next
//! row's leading zeros, and wp = w + pw (at least ow) where a separate padding on both
//! sides took w + 2·pw: on 32×32 planes 33 wide positions a row rather than 34, on 28×28
//! 29 rather than 30, and fewer to compute.
//! - Forward: a register block holds CB output channels × 1–3 vectors of consecutive wide
//!   positions; each (ci, ki, kj) step loads those vectors of the shifted plane and
//!   broadcasts CB weights for CB·PV fused multiply-adds, so the loop is bound by the FMA
//!   units, not by loads.
//! - Weight gradient: dW[co][ci][t] = Σ_b Σ_q dy_wide[co][q] · xp[ci][q + shift_t], with
//!   dy laid on the wide grid (zero in the wrap columns): a register block holds lane
//!   accumulators for CO output channels × up to 9 taps. A 3×3 kernel whose output rows
//!   are whole vectors walks column blocks down the rows instead, dy read in place
//!   (`row_walk`).
//!
//! Summation order: every forward output sums its c_in/groups·kh·kw products in (ci, ki,
//! kj) order in one register lane; every weight-gradient lane sums its images in order and
//! its positions in order, and the lanes are added in a fixed order at the end. Neither
//! depends on the thread count (both differ from the GEMM path's order in the last bits,
//! and AVX-512's from AVX2's).
//!
//! Used where it applies (f32, AVX-512F, AVX2 + FMA or NEON present, stride 1, not a plain
//! 1×1) and where the wide grid wastes little (`applies`, `applies_to_weight_gradient`). The
//! environment variable `GRADSCOPE_CONV_DIRECT` chooses the instruction set for the process
//! (`avx512`, `avx2`, `neon`, or `off` for im2col + GEMM everywhere), to compare the paths on
//! one machine; unset, or a set the CPU lacks, takes the best the CPU has.
//!
//! Non-finite inputs: a zero of dy in a wrap column multiplies a real pixel, so an infinite
//! pixel can turn a weight-gradient tap that never reads it into NaN (0·∞); the forward
//! output already holds that infinity. (The row walk reads no wrap column of dy.)

use std::any::TypeId;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::batch_parts::BatchParts;
use crate::cpu::conv2d_direct_kernels::{
    self as kernels, Block, Correlation, Isa, WEIGHT_CHANNELS, WEIGHT_LANES, WEIGHT_TAPS,
};
use crate::ops::Conv2dShape;

/// The wide grid's computed positions (rounded up to blocks) per output position, at most:
/// above it the GEMM path wastes less.
const MAX_WASTE: f64 = 1.3;

/// The padded planes and the wide grid of one shape, for one instruction set.
struct Grid {
    isa: Isa,
    lanes: usize,
    /// Output channels per forward register block.
    cb: usize,
    wp: usize,
    plane: usize,
    /// Vectors per register block: of 1 to `Isa::max_vectors`, the count that rounds the
    /// wide grid up the least (ties to the longer block, which loads fewer weights per FMA).
    pv: usize,
    /// Wide positions, rounded up to whole blocks.
    wide: usize,
    /// Register blocks of output channels per group.
    co_blocks: usize,
    /// Elements of one image's padded planes, with the slack the last block reads past.
    xp_len: usize,
}

impl Grid {
    fn new(s: &Conv2dShape, isa: Isa) -> Self {
        let (lanes, cb) = (isa.lanes(), isa.forward_channels());
        let [oh, ow] = s.out_hw();
        let hp = s.h + 2 * s.pad[0];
        // A row's left padding is the row before's right padding (module doc).
        let wp = (s.w + s.pad[1]).max(ow);
        let plane = hp * wp;
        let rounded = |pv: usize| (oh * wp).div_ceil(pv * lanes) * pv * lanes;
        let pv = (1..=isa.max_vectors())
            .rev()
            .min_by_key(|&pv| rounded(pv))
            .unwrap_or(1);
        let wide = rounded(pv);
        let reach = (s.kh - 1) * s.dilation[0] * wp + (s.kw - 1) * s.dilation[1];
        Grid {
            isa,
            lanes,
            cb,
            wp,
            plane,
            pv,
            wide,
            co_blocks: s.cout_per_group().div_ceil(cb),
            xp_len: (s.c_in * plane + s.pad[1]).max((s.c_in - 1) * plane + wide + reach),
        }
    }

    fn packed_weights_len(&self, s: &Conv2dShape) -> usize {
        s.groups * self.co_blocks * self.cb * s.patch_len()
    }

    /// Copies image `xb` ([c_in, h, w]) into the interior of its padded planes `xp`, whose
    /// padding is zero already and stays so.
    fn pad_image(&self, s: &Conv2dShape, xb: &[f32], xp: &mut [f32]) {
        pad_image(s, self.wp, self.plane, xb, xp);
    }

    /// Per part of the batch: the padded image, then the wide output of one group.
    fn part_len(&self) -> usize {
        self.xp_len + self.co_blocks * self.cb * self.wide
    }
}

/// Copies image `xb` ([c_in, h, w]) into the interior of its padded planes `xp` (`plane`
/// elements apart, rows `wp` apart, s.pad zero rows and columns before the image), whose
/// padding is zero already and stays so.
pub(super) fn pad_image(s: &Conv2dShape, wp: usize, plane: usize, xb: &[f32], xp: &mut [f32]) {
    if s.h * s.w == 0 {
        return;
    }
    // A row past its padded row's end would run into the next row's padding.
    assert!(xb.len() >= s.c_in * s.h * s.w && s.pad[1] + s.w <= wp);
    for (c, src) in xb.chunks(s.h * s.w).take(s.c_in).enumerate() {
        let at = c * plane + s.pad[0] * wp + s.pad[1];
        copy_rows(src, s.w, &mut xp[at..], wp, s.w, s.h);
    }
}

/// Copies `rows` rows of `len` values from `src`, rows `src_stride` apart, to `dst`, rows
/// `dst_stride` apart.
///
/// Rows are short (28 values on the bundled data's first stage): `copy_from_slice` calls
/// memmove for each, whose call and size dispatch cost more than the copy. With AVX-512
/// a row is whole vectors and one masked vector, inline: resnet-20's step on 28×28
/// inputs ran 1.5–5 % faster with the padded planes copied so (BENCHMARKS.md).
pub(super) fn copy_rows(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    len: usize,
    rows: usize,
) {
    if rows == 0 || len == 0 {
        return;
    }
    let end = |stride: usize| (rows - 1) * stride + len;
    assert!(src.len() >= end(src_stride) && dst.len() >= end(dst_stride));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; the assert bounds every row read and written.
        unsafe { copy_rows_avx512(src, src_stride, dst, dst_stride, len, rows) };
        return;
    }
    for r in 0..rows {
        dst[r * dst_stride..][..len].copy_from_slice(&src[r * src_stride..][..len]);
    }
}

/// `copy_rows` in vectors of 16 and a masked last vector.
///
/// # Safety
/// The CPU has AVX-512F; src and dst reach every row's end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn copy_rows_avx512(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    len: usize,
    rows: usize,
) {
    use std::arch::x86_64::*;
    let tail = len % 16;
    let mask: __mmask16 = ((1u32 << tail) - 1) as __mmask16;
    let (from0, to0) = (src.as_ptr(), dst.as_mut_ptr());
    for r in 0..rows {
        // SAFETY: row r of src and of dst are in bounds (the caller's guarantee); the
        // masked vector touches only the row's last `tail` values.
        unsafe {
            let from = from0.add(r * src_stride);
            let to = to0.add(r * dst_stride);
            let mut j = 0;
            while j + 16 <= len {
                _mm512_storeu_ps(to.add(j), _mm512_loadu_ps(from.add(j)));
                j += 16;
            }
            if tail > 0 {
                _mm512_mask_storeu_ps(to.add(j), mask, _mm512_maskz_loadu_ps(mask, from.add(j)));
            }
        }
    }
}

/// The environment variable that picks the direct kernels' instruction set.
const CONV_DIRECT_ENV: &str = "GRADSCOPE_CONV_DIRECT";

/// The instruction set the direct kernels run on in this process, if any: the best this CPU
/// has, or the one `GRADSCOPE_CONV_DIRECT` names (`avx512`, `avx2`, `neon`;
/// `0`/`off`/`false`/`no`: none; any case, like the other `GRADSCOPE_` switches). A set the
/// CPU lacks, or any other value, leaves the best.
pub(super) fn isa() -> Option<Isa> {
    static ISA: OnceLock<Option<Isa>> = OnceLock::new();
    *ISA.get_or_init(|| {
        let all = [Isa::Avx512, Isa::Avx2, Isa::Neon];
        let best = all.into_iter().find(|i| i.present());
        let asked = std::env::var(CONV_DIRECT_ENV).unwrap_or_default();
        let asked = asked.trim().to_ascii_lowercase();
        match asked.as_str() {
            "0" | "off" | "false" | "no" => None,
            _ => all
                .into_iter()
                .find(|i| i.name() == asked && i.present())
                .or(best),
        }
    })
}

/// The grid of shape `s` where `forward` runs it in element type `T` on this CPU.
fn grid<T: Element>(s: &Conv2dShape) -> Option<Grid> {
    if TypeId::of::<T>() != TypeId::of::<f32>() || s.stride != [1, 1] {
        return None;
    }
    if s.kh == 1 && s.kw == 1 && s.pad == [0, 0] {
        // Already one GEMM over the image itself.
        return None;
    }
    let [oh, ow] = s.out_hw();
    if oh * ow == 0 || s.n == 0 || s.kh * s.kw > MAX_TAP_BLOCKS * WEIGHT_TAPS {
        return None;
    }
    let grid = Grid::new(s, isa()?);
    (grid.wide as f64 <= MAX_WASTE * (oh * ow) as f64).then_some(grid)
}

/// Whether `forward` runs shape `s` in element type `T` on this CPU.
pub(super) fn applies<T: Element>(s: &Conv2dShape) -> bool {
    grid::<T>(s).is_some()
}

/// The instruction set the direct kernels run on in this process (`avx512`, `avx2`,
/// `neon`), or None where they do not run.
pub(super) fn isa_name() -> Option<&'static str> {
    isa().map(Isa::name)
}

/// Whether `backward_weight` runs shape `s` in `T` on this CPU: where `forward` does, on
/// AVX-512 or NEON (conv2d_direct_kernels.rs says why not AVX2), and where the wide grid
/// holds at least `MIN_WEIGHT_POSITIONS` positions per image.
pub(super) fn applies_to_weight_gradient<T: Element>(s: &Conv2dShape) -> bool {
    grid::<T>(s).is_some_and(|g| g.isa.has_weight_gradient() && g.wide >= MIN_WEIGHT_POSITIONS)
}

/// Whether `backward_weight` runs shape `s` in element type `T` on this CPU through the row
/// walk (`row_walk`).
pub(super) fn walks_weight_rows<T: Element>(s: &Conv2dShape) -> bool {
    applies_to_weight_gradient::<T>(s) && grid::<T>(s).is_some_and(|g| row_walk(s, &g))
}

/// Scratch elements `forward` needs with the batch cut into `parts` ranges, for a shape
/// where `applies` holds.
pub(super) fn scratch_len(s: &Conv2dShape, parts: usize) -> usize {
    let grid = Grid::new(s, isa().expect("direct kernels apply"));
    grid.packed_weights_len(s) + parts * grid.part_len()
}

/// `v` as the f32 slice it is (`applies` holds only for f32).
pub(super) fn as_f32<T: Element>(v: &[T]) -> &[f32] {
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>());
    // SAFETY: T is f32, checked just above.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const f32, v.len()) }
}

/// `as_f32` for a mutable slice.
pub(super) fn as_f32_mut<T: Element>(v: &mut [T]) -> &mut [f32] {
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>());
    // SAFETY: T is f32, checked just above.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut f32, v.len()) }
}

/// y = conv(x, w), or y += conv(x, w) with `accumulate`, for a checked shape where
/// `applies::<T>` holds; the batch in ranges of `per` images, in parallel.
pub(super) fn forward<T: Element>(
    s: &Conv2dShape,
    x: &[T],
    w: &[T],
    y: &mut [T],
    scratch: &mut [T],
    per: usize,
    accumulate: bool,
) {
    debug_assert!(applies::<T>(s));
    forward_f32(
        s,
        as_f32(x),
        as_f32(w),
        as_f32_mut(y),
        as_f32_mut(scratch),
        per,
        accumulate,
    );
}

fn forward_f32(
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    scratch: &mut [f32],
    per: usize,
    accumulate: bool,
) {
    let grid = Grid::new(s, isa().expect("direct kernels apply"));
    let cb = grid.cb;
    let [oh, ow] = s.out_hw();
    let (cpg_in, cpg_out) = (s.cin_per_group(), s.cout_per_group());
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * oh * ow;
    let (packed, parts) = scratch.split_at_mut(grid.packed_weights_len(s));
    pack_weights(s, grid.cb, grid.co_blocks, w, packed);
    let packed = &*packed;
    let block_weights = cpg_in * s.kh * s.kw * cb;
    y[..s.y_len()]
        .par_chunks_mut(per * y_img)
        .zip(parts.par_chunks_mut(grid.part_len()))
        .enumerate()
        .for_each(|(part, (yp, buf))| {
            let (xp, yw) = buf.split_at_mut(grid.xp_len);
            // The padding and the slack stay zero; each image overwrites the interior only.
            xp.fill(0.0);
            for (i, yb) in yp.chunks_mut(y_img).enumerate() {
                grid.pad_image(s, &x[(part * per + i) * x_img..][..x_img], xp);
                for g in 0..s.groups {
                    let xg = &xp[g * cpg_in * grid.plane..];
                    for cb in 0..grid.co_blocks {
                        let wb =
                            &packed[(g * grid.co_blocks + cb) * block_weights..][..block_weights];
                        let out = &mut yw[cb * grid.cb * grid.wide..][..grid.cb * grid.wide];
                        for q0 in (0..grid.wide).step_by(grid.pv * grid.lanes) {
                            wide_block(s, &grid, &xg[q0..], wb, &mut out[q0..]);
                        }
                    }
                    for co in 0..cpg_out {
                        let dst = &mut yb[(g * cpg_out + co) * oh * ow..][..oh * ow];
                        let src = &yw[co * grid.wide..];
                        if !accumulate {
                            copy_rows(src, grid.wp, dst, ow, ow, oh);
                            continue;
                        }
                        for (r, row) in dst.chunks_mut(ow).enumerate() {
                            for (d, &v) in row.iter_mut().zip(&src[r * grid.wp..][..ow]) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        });
}

/// Wide positions a register block sums before its accumulators go back to memory, at
/// least (whole images): enough that the accumulators' loads and stores cost little, few
/// enough that the images' planes and output gradients stay in the core's L2 cache while
/// every register block of the thread's channels reads them.
const WEIGHT_POSITIONS: usize = 1024;
/// Wide positions per image below which the weight gradient stays on im2col + GEMM: each
/// image costs the register block a setup and a loop exit, and on 8×8 planes (80 positions)
/// that made the direct pass slower (64→64 3×3 at batch 32, one core: 66 GFLOP/s against
/// the GEMM's 77).
const MIN_WEIGHT_POSITIONS: usize = 256;
/// Bytes of padded images and output gradients each worker holds at once: the slab stays in
/// its core's L2 cache (1 MiB on the development machine's Zen 4) while the register blocks
/// read it, a few images at a time; an image larger than that (224×224 planes of 64
/// channels: 13 MB) goes alone.
const WEIGHT_SLAB_BYTES: usize = 512 << 10;
/// Blocks of WEIGHT_TAPS taps, at most: kernels up to 81 taps (9×9) run directly.
const MAX_TAP_BLOCKS: usize = 9;

/// The weight gradient's scratch: the lane accumulators (one vector per weight, grouped by
/// register block), then for a slab of images their padded planes and their output
/// gradients on the wide grid (one spare zero row, read by the last channel pair of an odd
/// count and dropped).
struct WeightScratch {
    grid: Grid,
    /// Images padded at a time: as many as fit `WEIGHT_SLAB_BYTES`, at least one.
    slab: usize,
    tap_blocks: usize,
    /// Lane accumulators of one (group, channel block): cpg_in·tap_blocks register blocks.
    unit_len: usize,
    units: usize,
    /// Whether the row walk runs (`row_walk`).
    walk: bool,
    /// The batch's parts (cpu/batch_parts.rs), each worker's through a slab of its own: a
    /// worker pads (and lays out) its parts' images once and runs every block over them, so
    /// the slab the blocks read lies in its own core's cache. With one slab shared by the
    /// threads, two threads ran the weight gradients only 1.1–1.5× faster than one; with
    /// teams of blocks, one per thread, each team laid out the whole batch (BENCHMARKS.md).
    batch: BatchParts,
    /// Output gradients of one image on the wide grid; none for the row walk, which reads
    /// them in place.
    dyw_len: usize,
}

/// Whether the weight gradient runs the row walk (`kernels::weight_rows_3x3`): a 3×3
/// kernel at dilation 1 whose output rows are whole vectors and whose output channels come
/// in whole pairs, so that the walk reads dy in place. Each padded input row meets the
/// output-gradient rows level with it and one and two above, which the walk keeps in
/// registers, so a row costs 3 + CO loads for 9·CO FMAs where the wide grid's block costs
/// 9 + CO. resnet-20's 16-channel weight gradient on 32×32 planes ran at 74 GFLOP/s on the
/// wide grid's block and 82–97 this way; on 28×28 planes, with dy copied into rows of 32
/// and zeros past 28, it was no faster than the wide grid (BENCHMARKS.md).
fn row_walk(s: &Conv2dShape, grid: &Grid) -> bool {
    s.kh == 3
        && s.kw == 3
        && s.dilation == [1, 1]
        && s.out_hw()[1].is_multiple_of(grid.lanes)
        && s.cout_per_group().is_multiple_of(WEIGHT_CHANNELS)
}

/// Lane accumulators of one weight-gradient register block.
const WEIGHT_BLOCK: usize = WEIGHT_CHANNELS * WEIGHT_TAPS * WEIGHT_LANES;

impl WeightScratch {
    /// The scratch of shape `s` with at most `slab_bytes` of padded images at once.
    fn new(s: &Conv2dShape, isa: Isa, slab_bytes: usize) -> Self {
        let grid = Grid::new(s, isa);
        let tap_blocks = (s.kh * s.kw).div_ceil(WEIGHT_TAPS);
        let walk = row_walk(s, &grid);
        let units = s.groups * s.cout_per_group().div_ceil(WEIGHT_CHANNELS);
        let dyw_len = if walk { 0 } else { (s.c_out + 1) * grid.wide };
        let image_bytes = (grid.xp_len + dyw_len) * std::mem::size_of::<f32>();
        let batch = BatchParts::new(s.n);
        WeightScratch {
            slab: (slab_bytes / image_bytes).clamp(1, batch.per_part),
            tap_blocks,
            unit_len: s.cin_per_group() * tap_blocks * WEIGHT_BLOCK,
            units,
            walk,
            batch,
            dyw_len,
            grid,
        }
    }

    /// Elements of one worker's slab: its padded images, then their output gradients.
    fn slab_len(&self) -> usize {
        self.slab * (self.grid.xp_len + self.dyw_len)
    }

    /// Elements of one part's lane accumulators: every block's.
    fn part_len(&self) -> usize {
        self.units * self.unit_len
    }

    fn len(&self) -> usize {
        self.batch.parts * self.part_len() + self.batch.workers * self.slab_len()
    }
}

/// Scratch elements `backward_weight` needs.
pub(super) fn weight_scratch_len(s: &Conv2dShape) -> usize {
    WeightScratch::new(s, isa().expect("direct kernels apply"), WEIGHT_SLAB_BYTES).len()
}

/// dw = Σ_b dy[b] ⋆ x[b] (or dw += that with `accumulate`) for a checked shape where
/// `applies_to_weight_gradient::<T>` holds. The batch goes in slabs of images (at most
/// `WEIGHT_SLAB_BYTES` of padded planes and output gradients): each slab is padded in
/// parallel, then the (group, output-channel pair) units run in parallel, each adding the
/// slab to its own lane accumulators (images in order, positions in order within each
/// lane). The lanes are added in a fixed order at the end: the result does not depend on
/// the thread count, nor on the slab size.
pub(super) fn backward_weight<T: Element>(
    s: &Conv2dShape,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    accumulate: bool,
    scratch: &mut [T],
) {
    debug_assert!(applies_to_weight_gradient::<T>(s));
    backward_weight_f32(
        s,
        as_f32(x),
        as_f32(dy),
        as_f32_mut(dw),
        accumulate,
        as_f32_mut(scratch),
        WEIGHT_SLAB_BYTES,
    );
}

fn backward_weight_f32(
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    scratch: &mut [f32],
    slab_bytes: usize,
) {
    let ws = WeightScratch::new(s, isa().expect("direct kernels apply"), slab_bytes);
    let grid = &ws.grid;
    let [oh, ow] = s.out_hw();
    let (cpg_in, cpg_out) = (s.cin_per_group(), s.cout_per_group());
    let taps = s.kh * s.kw;
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * oh * ow;
    let part_len = ws.part_len();
    let (lanes, slabs) = scratch[..ws.len()].split_at_mut(ws.batch.parts * part_len);
    // Shifts of each block's taps on the wide grid, in (ki, kj) order.
    let mut shifts = [[0usize; WEIGHT_TAPS]; MAX_TAP_BLOCKS];
    for t in 0..taps {
        shifts[t / WEIGHT_TAPS][t % WEIGHT_TAPS] =
            (t / s.kw) * s.dilation[0] * grid.wp + (t % s.kw) * s.dilation[1];
    }
    let pairs = cpg_out.div_ceil(WEIGHT_CHANNELS);
    let block_len = WEIGHT_BLOCK;
    let ci_len = ws.tap_blocks * block_len;
    let chunk = WEIGHT_POSITIONS.div_ceil(grid.wide);
    let per_worker = ws.batch.per_worker();
    // dy's planes as `pad_image` copies them onto the wide grid: c_out planes of oh × ow,
    // `grid.wide` apart, rows `grid.wp` apart, no padding before them.
    let dy_rows = Conv2dShape {
        c_in: s.c_out,
        h: oh,
        w: ow,
        pad: [0, 0],
        ..*s
    };
    // Each worker: its parts, each in slabs of `ws.slab` images, each slab padded, then every
    // unit adds it to the part's lanes, so the lanes see the part's images in order.
    lanes
        .par_chunks_mut(per_worker * part_len)
        .zip(slabs.par_chunks_mut(ws.slab_len()))
        .enumerate()
        .for_each(|(worker, (lanes, slab))| {
            let (xps, dyws) = slab.split_at_mut(ws.slab * grid.xp_len);
            // Padding, wrap columns, the rows past the grid and the spare row are zero. Each
            // slab's images overwrite the interior only, so the zeros written once stay.
            xps.fill(0.0);
            dyws.fill(0.0);
            for (p, lanes) in lanes.chunks_mut(part_len).enumerate() {
                let part = worker * per_worker + p;
                let images = ws.batch.images(part, s.n);
                lanes.fill(0.0);
                for s0 in images.clone().step_by(ws.slab) {
                    let count = (images.end - s0).min(ws.slab);
                    for (i, xp) in xps.chunks_mut(grid.xp_len).take(count).enumerate() {
                        grid.pad_image(s, &x[(s0 + i) * x_img..][..x_img], xp);
                    }
                    // The wide grid's blocks read dy copied onto it, zero in the wrap columns
                    // and the spare row; the row walk reads it in place. Rows are copied as
                    // `pad_image` copies them: one `copy_from_slice` a row called memmove for
                    // each 28 values, and with a memset of every image took a third of the
                    // 1→16 stem's weight gradient.
                    if !ws.walk {
                        for (i, dyw) in dyws.chunks_mut(ws.dyw_len).take(count).enumerate() {
                            let src = &dy[(s0 + i) * y_img..][..y_img];
                            pad_image(&dy_rows, grid.wp, grid.wide, src, dyw);
                        }
                    }
                    let (xps, dyws) = (&*xps, &*dyws);
                    for (unit, acc) in lanes.chunks_mut(ws.unit_len).enumerate() {
                        let (g, co) = (unit / pairs, (unit % pairs) * WEIGHT_CHANNELS);
                        for b0 in (0..count).step_by(chunk) {
                            let channel = g * cpg_out + co;
                            let (dy, dy_image, dy_channel) = if ws.walk {
                                (&dy[(s0 + b0) * y_img + channel * oh * ow..], y_img, oh * ow)
                            } else {
                                let at = b0 * ws.dyw_len + channel * grid.wide;
                                (&dyws[at..], ws.dyw_len, grid.wide)
                            };
                            for (tb, block_shifts) in shifts.iter().enumerate().take(ws.tap_blocks)
                            {
                                let n_taps = (taps - tb * WEIGHT_TAPS).min(WEIGHT_TAPS);
                                weight_block(
                                    s,
                                    &ws,
                                    WeightBlock {
                                        x: &xps[b0 * grid.xp_len + g * cpg_in * grid.plane..],
                                        dy,
                                        dy_image,
                                        dy_stride: dy_channel,
                                        images: (count - b0).min(chunk),
                                        shifts: &block_shifts[..n_taps],
                                        acc: &mut acc[tb * block_len..],
                                        acc_stride: ci_len,
                                    },
                                );
                            }
                        }
                    }
                }
                for acc in lanes.chunks_mut(ws.unit_len) {
                    // SAFETY: `applies_to_weight_gradient` found the instruction set present,
                    // with a weight-gradient kernel.
                    unsafe { kernels::reduce_lanes(grid.isa, acc) };
                }
            }
        });
    // The parts' lane sums (at the front of each unit, `reduce_lanes`) added in part order,
    // then written over or added to dw.
    let (first, rest) = lanes.split_at_mut(part_len);
    for part in rest.chunks(part_len) {
        for (acc, sums) in first.chunks_mut(ws.unit_len).zip(part.chunks(ws.unit_len)) {
            for (a, &b) in acc[..ws.unit_len / WEIGHT_LANES].iter_mut().zip(sums) {
                *a += b;
            }
        }
    }
    for (unit, acc) in first.chunks(ws.unit_len).enumerate() {
        let (g, co) = (unit / pairs, (unit % pairs) * WEIGHT_CHANNELS);
        for ci in 0..cpg_in {
            for tb in 0..ws.tap_blocks {
                let t0 = tb * WEIGHT_TAPS;
                for c in 0..WEIGHT_CHANNELS.min(cpg_out - co) {
                    let sums =
                        &acc[((ci * ws.tap_blocks + tb) * WEIGHT_CHANNELS + c) * WEIGHT_TAPS..];
                    let at = ((g * cpg_out + co + c) * cpg_in + ci) * taps + t0;
                    let n_taps = (taps - t0).min(WEIGHT_TAPS);
                    for (d, &v) in dw[at..at + n_taps].iter_mut().zip(sums) {
                        *d = if accumulate { *d + v } else { v };
                    }
                }
            }
        }
    }
}

/// One call of the weight gradient's kernel: a chunk of `images` images, one output-channel
/// pair, one block of taps, every input channel of the group.
struct WeightBlock<'a> {
    /// The group's first plane of the chunk's first image (images `grid.xp_len` apart).
    x: &'a [f32],
    /// The pair's first row of the chunk's first output gradient (images `dy_image` apart,
    /// channels `dy_stride`).
    dy: &'a [f32],
    dy_image: usize,
    dy_stride: usize,
    images: usize,
    shifts: &'a [usize],
    /// Lane accumulators [WEIGHT_CHANNELS][WEIGHT_TAPS][WEIGHT_LANES] of the first input
    /// channel, those of
    /// the next `acc_stride` further.
    acc: &'a mut [f32],
    acc_stride: usize,
}

/// Adds, over the block's images and the wide grid, dy[c][q]·x[ci][q + shifts[t]] to the
/// lane accumulators of (ci, c, t).
fn weight_block(s: &Conv2dShape, ws: &WeightScratch, b: WeightBlock) {
    let grid = &ws.grid;
    let cpg_in = s.cin_per_group();
    let reach = b.shifts.iter().copied().max().unwrap_or(0);
    // Bounds the unchecked accesses of the kernel below.
    assert!(b.images >= 1 && b.shifts.len() <= WEIGHT_TAPS);
    let [oh, ow] = s.out_hw();
    // The row walk reads ow ≤ wp columns of each padded row (the last plus two past it), and
    // dy in place.
    let dy_len = if ws.walk { oh * ow } else { grid.wide };
    assert!(
        b.x.len() >= (b.images - 1) * grid.xp_len + (cpg_in - 1) * grid.plane + grid.wide + reach
    );
    assert!(
        b.dy.len() >= (b.images - 1) * b.dy_image + (WEIGHT_CHANNELS - 1) * b.dy_stride + dy_len
    );
    assert!(b.acc.len() >= (cpg_in - 1) * b.acc_stride + WEIGHT_BLOCK);
    let args = Correlation {
        x: b.x.as_ptr(),
        x_image: grid.xp_len,
        plane: grid.plane,
        cin: cpg_in,
        dy: b.dy.as_ptr(),
        dy_image: b.dy_image,
        dy_stride: b.dy_stride,
        images: b.images,
        len: grid.wide,
        acc: b.acc.as_mut_ptr(),
        acc_stride: b.acc_stride,
    };
    // SAFETY: `applies_to_weight_gradient` found the instruction set present, with a
    // weight-gradient kernel; the asserts above bound every access.
    unsafe {
        if ws.walk {
            kernels::weight_rows_3x3(grid.isa, &args, oh, ow, grid.wp);
        } else if s.kh == 3 && s.kw == 3 && s.dilation[1] == 1 {
            kernels::weight_3x3(grid.isa, &args, s.dilation[0] * grid.wp);
        } else {
            kernels::weight(grid.isa, &args, b.shifts);
        }
    }
}

/// packed[g][b][ci][ki][kj][c] = w[g·cpg_out + b·CB + c][ci][ki][kj] for `blocks` blocks of
/// CB = `cb` output channels, zero for the channels past c_out/groups in the last block:
/// the CB weights of one step side by side.
pub(super) fn pack_weights(
    s: &Conv2dShape,
    cb: usize,
    blocks: usize,
    w: &[f32],
    packed: &mut [f32],
) {
    let (k, cpg_out) = (s.patch_len(), s.cout_per_group());
    for g in 0..s.groups {
        for b in 0..blocks {
            let dst = &mut packed[(g * blocks + b) * k * cb..][..k * cb];
            for c in 0..cb {
                let co = b * cb + c;
                for t in 0..k {
                    dst[t * cb + c] = if co < cpg_out {
                        w[(g * cpg_out + co) * k + t]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// One register block: out[c][0..pv·lanes] (rows `grid.wide` apart) for the block's CB
/// output channels at the wide positions starting where `xg` and `out` start.
fn wide_block(s: &Conv2dShape, grid: &Grid, xg: &[f32], wb: &[f32], out: &mut [f32]) {
    let reach = (s.kh - 1) * s.dilation[0] * grid.wp + (s.kw - 1) * s.dilation[1];
    let cpg_in = s.cin_per_group();
    let block = grid.pv * grid.lanes;
    // Bounds the unchecked reads and writes of the kernel below.
    assert!(xg.len() >= (cpg_in - 1) * grid.plane + reach + block);
    assert!(wb.len() >= cpg_in * s.kh * s.kw * grid.cb);
    assert!(out.len() >= (grid.cb - 1) * grid.wide + block);
    let args = Block {
        x: xg.as_ptr(),
        plane: grid.plane,
        cin: cpg_in,
        taps: [s.kh, s.kw],
        steps: [s.dilation[0] * grid.wp, s.dilation[1]],
        w: wb.as_ptr(),
        out: out.as_mut_ptr(),
        out_stride: grid.wide,
    };
    // SAFETY: `isa` found the instruction set present; the asserts above bound every access.
    unsafe { kernels::forward(grid.isa, grid.pv, &args) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of every length from 1 to 40 (no whole vector, one, two, with and without a
    /// masked tail) copied between strides: each row lands in place and nothing between
    /// rows or past the last is touched.
    #[test]
    fn copy_rows_copies_each_row_and_nothing_else() {
        for len in 1..=40 {
            for (rows, src_stride, dst_stride) in
                [(1, len, len), (3, len + 5, len), (4, len, len + 3)]
            {
                let src: Vec<f32> = (0..(rows - 1) * src_stride + len)
                    .map(|i| i as f32)
                    .collect();
                let mut dst = vec![f32::NAN; (rows - 1) * dst_stride + len + 7];
                copy_rows(&src, src_stride, &mut dst, dst_stride, len, rows);
                for (i, &v) in dst.iter().enumerate() {
                    let (r, j) = (i / dst_stride, i % dst_stride);
                    if r < rows && j < len {
                        assert_eq!(v, src[r * src_stride + j], "len {len}, row {r}, value {j}");
                    } else {
                        assert!(
                            v.is_nan(),
                            "len {len}: value {i} between or past the rows written"
                        );
                    }
                }
            }
        }
    }

    /// The weight gradient gives the same bits whatever the slab: one image at a time, a
    /// ragged last slab, or a whole part at once; on the wide grid's blocks (30 columns)
    /// and on the row walk (32 columns, an even channel count).
    #[test]
    fn weight_gradient_does_not_depend_on_the_slab() {
        for (w, c_out, walk) in [(30, 5, false), (32, 4, true)] {
            let s = Conv2dShape {
                n: 17,
                c_in: 3,
                h: 12,
                w,
                c_out,
                kh: 3,
                kw: 3,
                stride: [1, 1],
                pad: [1, 1],
                dilation: [1, 1],
                groups: 1,
            };
            if !applies_to_weight_gradient::<f32>(&s) {
                eprintln!(
                    "no direct weight-gradient kernel on this CPU ({:?}); nothing to compare",
                    isa()
                );
                return;
            }
            slab_does_not_change_the_bits(&s, walk);
        }
    }

    fn slab_does_not_change_the_bits(s: &Conv2dShape, walk: bool) {
        let value = |i: usize, salt: usize| ((i * 7919 + salt) % 1009) as f32 / 1009.0 - 0.5;
        let x: Vec<f32> = (0..s.x_len()).map(|i| value(i, 1)).collect();
        let dy: Vec<f32> = (0..s.y_len()).map(|i| value(i, 2)).collect();
        let whole = WeightScratch::new(s, isa().unwrap(), usize::MAX);
        assert_eq!(whole.walk, walk);
        let image_bytes = (whole.grid.xp_len + whole.dyw_len) * 4;
        let run = |slab_bytes: usize| {
            let ws = WeightScratch::new(s, whole.grid.isa, slab_bytes);
            let mut scratch = vec![f32::NAN; ws.len()];
            let mut dw = vec![f32::NAN; s.w_len()];
            backward_weight_f32(s, &x, &dy, &mut dw, false, &mut scratch, slab_bytes);
            (ws.slab, dw)
        };
        let (whole_slab, want) = run(usize::MAX);
        // 17 images: parts of 3 (the last of 2), which slabs of 1, 2 and 3 cut differently.
        assert_eq!(whole_slab, whole.batch.per_part);
        // The scratch starts as NaN: every accumulator must have been zeroed before use.
        assert!(want.iter().all(|v| v.is_finite()), "{want:?}");
        for images in [1, 2, 3] {
            let (slab, got) = run(images * image_bytes);
            assert_eq!(slab, images);
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "slab of {images}: {got:?} against {want:?}");
        }
    }
}
