//! Direct stride-1 convolution in f32 on AVX-512, without a patch matrix: the forward (and
//! through it the stride-1 input gradient, conv2d.rs `transposed`) and the weight gradient.
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
//! when the result is copied out.
//! - Forward: a register block holds `CB` output channels × 1–3 vectors of 16 consecutive
//!   wide positions; each (ci, ki, kj) step loads those vectors of the shifted plane and
//!   broadcasts `CB` weights for up to 24 fused multiply-adds, so the loop is bound by the
//!   FMA units, not by loads.
//! - Weight gradient: dW[co][ci][t] = Σ_b Σ_q dy_wide[co][q] · xp[ci][q + shift_t], with
//!   dy laid on the wide grid (zero in the wrap columns): a register block holds 16-lane
//!   accumulators for `WEIGHT_CO` output channels × up to 9 taps.
//!
//! Summation order: every forward output sums its c_in/groups·kh·kw products in (ci, ki,
//! kj) order in one register lane; every weight-gradient lane sums its images in order and
//! its positions in order, and the 16 lanes are added in a fixed order at the end. Neither
//! depends on the thread count (both differ from the GEMM path's order in the last bits).
//!
//! Used where it applies (f32, AVX-512F present, stride 1, not a plain 1×1) and where the
//! wide grid wastes little (`applies`, `applies_to_weight_gradient`).
//!
//! Non-finite inputs: a zero of dy in a wrap column multiplies a real pixel, so an infinite
//! pixel can turn a weight-gradient tap that never reads it into NaN (0·∞); the forward
//! output already holds that infinity.

use std::any::TypeId;

use rayon::prelude::*;

use crate::cpu::Element;
use crate::ops::Conv2dShape;

/// Output channels per register block.
const CB: usize = 8;
/// Vectors of `LANES` wide positions per register block, at most: CB·3 accumulators.
const MAX_PV: usize = 3;
const LANES: usize = 16;
/// The wide grid's computed positions (rounded up to blocks) per output position, at most:
/// above it the GEMM path wastes less.
const MAX_WASTE: f64 = 1.3;

/// The padded planes and the wide grid of one shape.
struct Grid {
    wp: usize,
    plane: usize,
    /// Vectors per register block: of 1, 2 or 3, the one that rounds the wide grid up the
    /// least (ties to the longer block, which loads fewer weights per FMA).
    pv: usize,
    /// Wide positions, rounded up to whole blocks.
    wide: usize,
    /// Register blocks of output channels per group.
    co_blocks: usize,
    /// Elements of one image's padded planes, with the slack the last block reads past.
    xp_len: usize,
}

impl Grid {
    fn new(s: &Conv2dShape) -> Self {
        let [oh, _] = s.out_hw();
        let hp = s.h + 2 * s.pad[0];
        let wp = s.w + 2 * s.pad[1];
        let plane = hp * wp;
        let rounded = |pv: usize| (oh * wp).div_ceil(pv * LANES) * pv * LANES;
        let pv = (1..=MAX_PV)
            .rev()
            .min_by_key(|&pv| rounded(pv))
            .unwrap_or(1);
        let wide = rounded(pv);
        let reach = (s.kh - 1) * s.dilation[0] * wp + (s.kw - 1) * s.dilation[1];
        Grid {
            wp,
            plane,
            pv,
            wide,
            co_blocks: s.cout_per_group().div_ceil(CB),
            xp_len: (s.c_in * plane).max((s.c_in - 1) * plane + wide + reach),
        }
    }

    fn packed_weights_len(&self, s: &Conv2dShape) -> usize {
        s.groups * self.co_blocks * CB * s.patch_len()
    }

    /// Per part of the batch: the padded image, then the wide output of one group.
    fn part_len(&self) -> usize {
        self.xp_len + self.co_blocks * CB * self.wide
    }
}

/// Whether `forward` runs shape `s` in element type `T` on this CPU.
pub(super) fn applies<T: Element>(s: &Conv2dShape) -> bool {
    if TypeId::of::<T>() != TypeId::of::<f32>() || s.stride != [1, 1] {
        return false;
    }
    if s.kh == 1 && s.kw == 1 && s.pad == [0, 0] {
        // Already one GEMM over the image itself.
        return false;
    }
    let [oh, ow] = s.out_hw();
    if oh * ow == 0 || s.n == 0 || s.kh * s.kw > MAX_TAP_BLOCKS * WEIGHT_TAPS {
        return false;
    }
    let grid = Grid::new(s);
    if grid.wide as f64 > MAX_WASTE * (oh * ow) as f64 {
        return false;
    }
    avx512_present()
}

#[cfg(target_arch = "x86_64")]
fn avx512_present() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_present() -> bool {
    false
}

/// Whether `backward_weight` runs shape `s` in `T` on this CPU: where `forward` does, and
/// the wide grid holds at least `MIN_WEIGHT_POSITIONS` positions per image.
pub(super) fn applies_to_weight_gradient<T: Element>(s: &Conv2dShape) -> bool {
    applies::<T>(s) && Grid::new(s).wide >= MIN_WEIGHT_POSITIONS
}

/// Scratch elements `forward` needs with the batch cut into `parts` ranges.
pub(super) fn scratch_len(s: &Conv2dShape, parts: usize) -> usize {
    let grid = Grid::new(s);
    grid.packed_weights_len(s) + parts * grid.part_len()
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
    // SAFETY: `applies` checked that T is f32.
    let cast = |v: &[T]| unsafe { std::slice::from_raw_parts(v.as_ptr() as *const f32, v.len()) };
    let cast_mut = |v: &mut [T]| unsafe {
        std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut f32, v.len())
    };
    forward_f32(
        s,
        cast(x),
        cast(w),
        cast_mut(y),
        cast_mut(scratch),
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
    let grid = Grid::new(s);
    let [oh, ow] = s.out_hw();
    let (cpg_in, cpg_out) = (s.cin_per_group(), s.cout_per_group());
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * oh * ow;
    let (packed, parts) = scratch.split_at_mut(grid.packed_weights_len(s));
    pack_weights(s, &grid, w, packed);
    let packed = &*packed;
    let block_weights = cpg_in * s.kh * s.kw * CB;
    y[..s.y_len()]
        .par_chunks_mut(per * y_img)
        .zip(parts.par_chunks_mut(grid.part_len()))
        .enumerate()
        .for_each(|(part, (yp, buf))| {
            let (xp, yw) = buf.split_at_mut(grid.xp_len);
            // The padding and the slack stay zero; each image overwrites the interior only.
            xp.fill(0.0);
            for (i, yb) in yp.chunks_mut(y_img).enumerate() {
                let xb = &x[(part * per + i) * x_img..][..x_img];
                for (c, src) in xb.chunks(s.h * s.w).enumerate() {
                    for (r, row) in src.chunks(s.w).enumerate() {
                        let at = c * grid.plane + (r + s.pad[0]) * grid.wp + s.pad[1];
                        xp[at..at + s.w].copy_from_slice(row);
                    }
                }
                for g in 0..s.groups {
                    let xg = &xp[g * cpg_in * grid.plane..];
                    for cb in 0..grid.co_blocks {
                        let wb =
                            &packed[(g * grid.co_blocks + cb) * block_weights..][..block_weights];
                        let out = &mut yw[cb * CB * grid.wide..][..CB * grid.wide];
                        for q0 in (0..grid.wide).step_by(grid.pv * LANES) {
                            wide_block(s, &grid, &xg[q0..], wb, &mut out[q0..]);
                        }
                    }
                    for co in 0..cpg_out {
                        let dst = &mut yb[(g * cpg_out + co) * oh * ow..][..oh * ow];
                        let src = &yw[co * grid.wide..];
                        for (r, row) in dst.chunks_mut(ow).enumerate() {
                            let from = &src[r * grid.wp..][..ow];
                            if accumulate {
                                for (d, &v) in row.iter_mut().zip(from) {
                                    *d += v;
                                }
                            } else {
                                row.copy_from_slice(from);
                            }
                        }
                    }
                }
            }
        });
}

/// Output channels per register block of the weight gradient.
const WEIGHT_CO: usize = 2;
/// Taps per register block of the weight gradient: WEIGHT_CO·9 accumulators, a 3×3 kernel
/// in one block.
const WEIGHT_TAPS: usize = 9;
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
/// Blocks of WEIGHT_TAPS taps, at most: kernels up to 81 taps (9×9) run directly.
const MAX_TAP_BLOCKS: usize = 9;

/// The weight gradient's scratch: the lane accumulators (LANES per weight, grouped by
/// register block), the padded images, and the output gradients on the wide grid (one spare
/// zero row, read by the last channel pair of an odd count and dropped).
struct WeightScratch {
    grid: Grid,
    tap_blocks: usize,
    /// Lane accumulators of one (group, channel pair): cpg_in·tap_blocks register blocks.
    unit_len: usize,
    units: usize,
    dyw_len: usize,
}

impl WeightScratch {
    fn new(s: &Conv2dShape) -> Self {
        let grid = Grid::new(s);
        let tap_blocks = (s.kh * s.kw).div_ceil(WEIGHT_TAPS);
        let dyw_len = (s.c_out + 1) * grid.wide;
        WeightScratch {
            unit_len: s.cin_per_group() * tap_blocks * WEIGHT_CO * WEIGHT_TAPS * LANES,
            units: s.groups * s.cout_per_group().div_ceil(WEIGHT_CO),
            tap_blocks,
            dyw_len,
            grid,
        }
    }

    fn len(&self, s: &Conv2dShape) -> usize {
        self.units * self.unit_len + s.n * (self.grid.xp_len + self.dyw_len)
    }
}

/// Scratch elements `backward_weight` needs.
pub(super) fn weight_scratch_len(s: &Conv2dShape) -> usize {
    WeightScratch::new(s).len(s)
}

/// dw = Σ_b dy[b] ⋆ x[b] (or dw += that with `accumulate`) for a checked shape where
/// `applies::<T>` holds. The images are padded in parallel, then the (group, output-channel
/// pair) units run in parallel, each summing the whole batch in its own lane accumulators
/// (images in order, positions in order within each lane), whose 16 lanes are added at the
/// end in a fixed tree: the result does not depend on the thread count.
pub(super) fn backward_weight<T: Element>(
    s: &Conv2dShape,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    accumulate: bool,
    scratch: &mut [T],
) {
    debug_assert!(applies_to_weight_gradient::<T>(s));
    // SAFETY: `applies` checked that T is f32.
    let cast = |v: &[T]| unsafe { std::slice::from_raw_parts(v.as_ptr() as *const f32, v.len()) };
    let cast_mut = |v: &mut [T]| unsafe {
        std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut f32, v.len())
    };
    backward_weight_f32(
        s,
        cast(x),
        cast(dy),
        cast_mut(dw),
        accumulate,
        cast_mut(scratch),
    );
}

fn backward_weight_f32(
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    scratch: &mut [f32],
) {
    let ws = WeightScratch::new(s);
    let grid = &ws.grid;
    let [oh, ow] = s.out_hw();
    let (cpg_in, cpg_out) = (s.cin_per_group(), s.cout_per_group());
    let taps = s.kh * s.kw;
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * oh * ow;
    let (lanes, images) = scratch.split_at_mut(ws.units * ws.unit_len);
    let (xps, dyws) = images.split_at_mut(s.n * grid.xp_len);
    let dyws = &mut dyws[..s.n * ws.dyw_len];
    // Padding, wrap columns, the rows past the grid and the spare row are zero.
    xps.par_chunks_mut(grid.xp_len)
        .zip(dyws.par_chunks_mut(ws.dyw_len))
        .enumerate()
        .for_each(|(b, (xp, dyw))| {
            xp.fill(0.0);
            for (c, src) in x[b * x_img..][..x_img].chunks(s.h * s.w).enumerate() {
                for (r, row) in src.chunks(s.w).enumerate() {
                    let at = c * grid.plane + (r + s.pad[0]) * grid.wp + s.pad[1];
                    xp[at..at + s.w].copy_from_slice(row);
                }
            }
            dyw.fill(0.0);
            for (c, src) in dy[b * y_img..][..y_img].chunks(oh * ow).enumerate() {
                for (r, row) in src.chunks(ow).enumerate() {
                    dyw[c * grid.wide + r * grid.wp..][..ow].copy_from_slice(row);
                }
            }
        });
    let (xps, dyws) = (&*xps, &*dyws);
    // Shifts of each block's taps on the wide grid, in (ki, kj) order.
    let mut shifts = [[0usize; WEIGHT_TAPS]; MAX_TAP_BLOCKS];
    for t in 0..taps {
        shifts[t / WEIGHT_TAPS][t % WEIGHT_TAPS] =
            (t / s.kw) * s.dilation[0] * grid.wp + (t % s.kw) * s.dilation[1];
    }
    let pairs = cpg_out.div_ceil(WEIGHT_CO);
    let block_len = WEIGHT_CO * WEIGHT_TAPS * LANES;
    let ci_len = ws.tap_blocks * block_len;
    lanes
        .par_chunks_mut(ws.unit_len)
        .enumerate()
        .for_each(|(unit, acc)| {
            let (g, co) = (unit / pairs, (unit % pairs) * WEIGHT_CO);
            acc.fill(0.0);
            let chunk = WEIGHT_POSITIONS.div_ceil(grid.wide);
            for b0 in (0..s.n).step_by(chunk) {
                for (tb, block_shifts) in shifts.iter().enumerate().take(ws.tap_blocks) {
                    let n_taps = (taps - tb * WEIGHT_TAPS).min(WEIGHT_TAPS);
                    weight_block(
                        s,
                        grid,
                        WeightBlock {
                            x: &xps[b0 * grid.xp_len + g * cpg_in * grid.plane..],
                            dy: &dyws[b0 * ws.dyw_len + (g * cpg_out + co) * grid.wide..],
                            dy_image: ws.dyw_len,
                            images: (s.n - b0).min(chunk),
                            shifts: &block_shifts[..n_taps],
                            acc: &mut acc[tb * block_len..],
                            acc_stride: ci_len,
                        },
                    );
                }
            }
            reduce_lanes(acc);
        });
    // Written over or added to dw; lane sums at the front of each unit (`reduce_lanes`).
    for (unit, acc) in lanes.chunks(ws.unit_len).enumerate() {
        let (g, co) = (unit / pairs, (unit % pairs) * WEIGHT_CO);
        for ci in 0..cpg_in {
            for tb in 0..ws.tap_blocks {
                let t0 = tb * WEIGHT_TAPS;
                for c in 0..WEIGHT_CO.min(cpg_out - co) {
                    let sums = &acc[((ci * ws.tap_blocks + tb) * WEIGHT_CO + c) * WEIGHT_TAPS..];
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

/// Replaces the first len/LANES values of `acc` by the lane sums of its accumulators, in
/// order (sum a lands at index a ≤ LANES·a, after its own lanes were read).
fn reduce_lanes(acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `applies` found AVX-512F.
    unsafe {
        avx512::reduce_lanes(acc)
    }
}

/// One call of the weight gradient's kernel: a chunk of `images` images, one output-channel
/// pair, one block of taps, every input channel of the group.
struct WeightBlock<'a> {
    /// The group's first plane of the chunk's first image (images `grid.xp_len` apart).
    x: &'a [f32],
    /// The pair's first row of the chunk's first output gradient (images `dy_image` apart).
    dy: &'a [f32],
    dy_image: usize,
    images: usize,
    shifts: &'a [usize],
    /// Lane accumulators [WEIGHT_CO][WEIGHT_TAPS][LANES] of the first input channel, those of
    /// the next `acc_stride` further.
    acc: &'a mut [f32],
    acc_stride: usize,
}

/// Adds, over the block's images and the wide grid, dy[c][q]·x[ci][q + shifts[t]] to the
/// lane accumulators of (ci, c, t).
fn weight_block(s: &Conv2dShape, grid: &Grid, b: WeightBlock) {
    let cpg_in = s.cin_per_group();
    let reach = b.shifts.iter().copied().max().unwrap_or(0);
    // Bounds the unchecked accesses of the kernel below.
    assert!(b.images >= 1 && b.shifts.len() <= WEIGHT_TAPS);
    assert!(
        b.x.len() >= (b.images - 1) * grid.xp_len + (cpg_in - 1) * grid.plane + grid.wide + reach
    );
    assert!(b.dy.len() >= (b.images - 1) * b.dy_image + WEIGHT_CO * grid.wide);
    assert!(b.acc.len() >= (cpg_in - 1) * b.acc_stride + WEIGHT_CO * WEIGHT_TAPS * LANES);
    #[cfg(target_arch = "x86_64")]
    {
        let args = avx512::Correlation {
            x: b.x.as_ptr(),
            x_image: grid.xp_len,
            plane: grid.plane,
            cin: cpg_in,
            dy: b.dy.as_ptr(),
            dy_image: b.dy_image,
            dy_stride: grid.wide,
            images: b.images,
            len: grid.wide,
            acc: b.acc.as_mut_ptr(),
            acc_stride: b.acc_stride,
        };
        // SAFETY: `applies` found AVX-512F; the asserts above bound every access.
        unsafe {
            if s.kh == 3 && s.kw == 3 && s.dilation[1] == 1 {
                // Three row pointers and constant column offsets: the general kernel's nine
                // tap pointers do not fit the registers and are reloaded per image.
                avx512::weight_block_3x3(&args, s.dilation[0] * grid.wp);
                return;
            }
            macro_rules! taps {
                ($($n:literal)*) => {
                    match b.shifts.len() {
                        $($n => avx512::weight_block::<$n>(&args, b.shifts),)*
                        _ => unreachable!("at most {WEIGHT_TAPS} taps per block"),
                    }
                };
            }
            taps!(1 2 3 4 5 6 7 8 9);
        }
    }
}

/// packed[g][cb][ci][ki][kj][c] = w[g·cpg_out + cb·CB + c][ci][ki][kj], zero for the
/// channels past c_out/groups in the last block: the CB weights of one step side by side.
fn pack_weights(s: &Conv2dShape, grid: &Grid, w: &[f32], packed: &mut [f32]) {
    let (k, cpg_out) = (s.patch_len(), s.cout_per_group());
    for g in 0..s.groups {
        for cb in 0..grid.co_blocks {
            let dst = &mut packed[(g * grid.co_blocks + cb) * k * CB..][..k * CB];
            for c in 0..CB {
                let co = cb * CB + c;
                for t in 0..k {
                    dst[t * CB + c] = if co < cpg_out {
                        w[(g * cpg_out + co) * k + t]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// One register block: out[c][0..pv·LANES] (rows `grid.wide` apart) for the block's CB
/// output channels at the wide positions starting where `xg` and `out` start.
fn wide_block(s: &Conv2dShape, grid: &Grid, xg: &[f32], wb: &[f32], out: &mut [f32]) {
    let reach = (s.kh - 1) * s.dilation[0] * grid.wp + (s.kw - 1) * s.dilation[1];
    let cpg_in = s.cin_per_group();
    let block = grid.pv * LANES;
    // Bounds the unchecked reads and writes of the kernel below.
    assert!(xg.len() >= (cpg_in - 1) * grid.plane + reach + block);
    assert!(wb.len() >= cpg_in * s.kh * s.kw * CB);
    assert!(out.len() >= (CB - 1) * grid.wide + block);
    #[cfg(target_arch = "x86_64")]
    {
        let args = avx512::Block {
            x: xg.as_ptr(),
            plane: grid.plane,
            cin: cpg_in,
            taps: [s.kh, s.kw],
            steps: [s.dilation[0] * grid.wp, s.dilation[1]],
            w: wb.as_ptr(),
            out: out.as_mut_ptr(),
            out_stride: grid.wide,
        };
        // SAFETY: `applies` found AVX-512F; the asserts above bound every access.
        unsafe {
            match grid.pv {
                1 => avx512::wide_block::<1>(args),
                2 => avx512::wide_block::<2>(args),
                _ => avx512::wide_block::<3>(args),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{CB, LANES, WEIGHT_CO, WEIGHT_TAPS};

    /// One register block's operands: `cin` planes `plane` apart from `x`, taps
    /// `taps[0]`×`taps[1]` whose shifts are `steps` (rows, columns) apart, CB weights per
    /// step from `w`, CB output rows `out_stride` apart from `out`.
    pub(super) struct Block {
        pub x: *const f32,
        pub plane: usize,
        pub cin: usize,
        pub taps: [usize; 2],
        pub steps: [usize; 2],
        pub w: *const f32,
        pub out: *mut f32,
        pub out_stride: usize,
    }

    /// `CB`×`PV` accumulators; per (ci, ki, kj): `PV` loads of the shifted plane, `CB`
    /// broadcast weights, CB·PV FMAs.
    ///
    /// # Safety
    /// AVX-512F must be present and every access in bounds, as `super::wide_block` asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn wide_block<const PV: usize>(b: Block) {
        let mut acc = [[_mm512_setzero_ps(); PV]; CB];
        let mut wt = b.w;
        for ci in 0..b.cin {
            // SAFETY (this block): within the bounds the caller guarantees.
            unsafe {
                let xc = b.x.add(ci * b.plane);
                for ki in 0..b.taps[0] {
                    let xr = xc.add(ki * b.steps[0]);
                    for kj in 0..b.taps[1] {
                        let xt = xr.add(kj * b.steps[1]);
                        let mut xs = [_mm512_setzero_ps(); PV];
                        for (v, xv) in xs.iter_mut().enumerate() {
                            *xv = _mm512_loadu_ps(xt.add(v * LANES));
                        }
                        for (c, row) in acc.iter_mut().enumerate() {
                            let wv = _mm512_set1_ps(*wt.add(c));
                            for (a, &xv) in row.iter_mut().zip(&xs) {
                                *a = _mm512_fmadd_ps(wv, xv, *a);
                            }
                        }
                        wt = wt.add(CB);
                    }
                }
            }
        }
        for (c, row) in acc.iter().enumerate() {
            for (v, &a) in row.iter().enumerate() {
                // SAFETY: within the bounds the caller guarantees.
                unsafe { _mm512_storeu_ps(b.out.add(c * b.out_stride + v * LANES), a) };
            }
        }
    }

    /// The weight gradient's operands: `cin` planes `plane` apart from `x`, for `images`
    /// images `x_image` apart, and as many output gradients `dy_image` apart from `dy`, its
    /// WEIGHT_CO rows `dy_stride` apart, each summed over `len` wide positions (a multiple
    /// of LANES) into the lane accumulators at `acc` ([WEIGHT_CO][WEIGHT_TAPS][LANES] per
    /// input channel, `acc_stride` apart).
    pub(super) struct Correlation {
        pub x: *const f32,
        pub x_image: usize,
        pub plane: usize,
        pub cin: usize,
        pub dy: *const f32,
        pub dy_image: usize,
        pub dy_stride: usize,
        pub images: usize,
        pub len: usize,
        pub acc: *mut f32,
        pub acc_stride: usize,
    }

    /// Per input channel: WEIGHT_CO·TAPS accumulators loaded from `acc`, then per vector of
    /// LANES positions WEIGHT_CO loads of dy and, per tap, one load of the shifted plane and
    /// WEIGHT_CO FMAs; stored back.
    ///
    /// # Safety
    /// AVX-512F must be present and every access in bounds, as `super::weight_block`
    /// asserts; `shifts` has TAPS entries.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_block<const TAPS: usize>(b: &Correlation, shifts: &[usize]) {
        let at = |c: usize, t: usize| (c * WEIGHT_TAPS + t) * LANES;
        for ci in 0..b.cin {
            // SAFETY (this block): within the bounds the caller guarantees.
            unsafe {
                let accp = b.acc.add(ci * b.acc_stride);
                let mut acc = [[_mm512_setzero_ps(); TAPS]; WEIGHT_CO];
                for (c, row) in acc.iter_mut().enumerate() {
                    for (t, a) in row.iter_mut().enumerate() {
                        *a = _mm512_loadu_ps(accp.add(at(c, t)));
                    }
                }
                for i in 0..b.images {
                    let x = b.x.add(i * b.x_image + ci * b.plane);
                    let dy = b.dy.add(i * b.dy_image);
                    let mut xt = [x; TAPS];
                    for (p, &sh) in xt.iter_mut().zip(shifts) {
                        *p = x.add(sh);
                    }
                    for q in (0..b.len).step_by(LANES) {
                        let mut d = [_mm512_setzero_ps(); WEIGHT_CO];
                        for (c, dv) in d.iter_mut().enumerate() {
                            *dv = _mm512_loadu_ps(dy.add(c * b.dy_stride + q));
                        }
                        for (t, &p) in xt.iter().enumerate() {
                            let xv = _mm512_loadu_ps(p.add(q));
                            for (row, &dv) in acc.iter_mut().zip(&d) {
                                row[t] = _mm512_fmadd_ps(dv, xv, row[t]);
                            }
                        }
                    }
                }
                for (c, row) in acc.iter().enumerate() {
                    for (t, &a) in row.iter().enumerate() {
                        _mm512_storeu_ps(accp.add(at(c, t)), a);
                    }
                }
            }
        }
    }

    /// `weight_block::<9>` for a 3×3 kernel whose columns are adjacent (dilation 1 along
    /// the width) and whose rows are `row_step` apart.
    ///
    /// # Safety
    /// As `weight_block`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_block_3x3(b: &Correlation, row_step: usize) {
        let at = |c: usize, t: usize| (c * WEIGHT_TAPS + t) * LANES;
        for ci in 0..b.cin {
            // SAFETY (this block): within the bounds the caller guarantees.
            unsafe {
                let accp = b.acc.add(ci * b.acc_stride);
                let mut acc = [[_mm512_setzero_ps(); 9]; WEIGHT_CO];
                for (c, row) in acc.iter_mut().enumerate() {
                    for (t, a) in row.iter_mut().enumerate() {
                        *a = _mm512_loadu_ps(accp.add(at(c, t)));
                    }
                }
                for i in 0..b.images {
                    let x = b.x.add(i * b.x_image + ci * b.plane);
                    let rows = [x, x.add(row_step), x.add(2 * row_step)];
                    let dy = b.dy.add(i * b.dy_image);
                    for q in (0..b.len).step_by(LANES) {
                        let mut d = [_mm512_setzero_ps(); WEIGHT_CO];
                        for (c, dv) in d.iter_mut().enumerate() {
                            *dv = _mm512_loadu_ps(dy.add(c * b.dy_stride + q));
                        }
                        for (ki, r) in rows.iter().enumerate() {
                            for kj in 0..3 {
                                let xv = _mm512_loadu_ps(r.add(q + kj));
                                for (row, &dv) in acc.iter_mut().zip(&d) {
                                    row[ki * 3 + kj] = _mm512_fmadd_ps(dv, xv, row[ki * 3 + kj]);
                                }
                            }
                        }
                    }
                }
                for (c, row) in acc.iter().enumerate() {
                    for (t, &a) in row.iter().enumerate() {
                        _mm512_storeu_ps(accp.add(at(c, t)), a);
                    }
                }
            }
        }
    }

    /// `super::reduce_lanes`, each sum in `_mm512_reduce_add_ps`'s fixed order.
    ///
    /// # Safety
    /// AVX-512F must be present.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn reduce_lanes(acc: &mut [f32]) {
        for a in 0..acc.len() / LANES {
            let lane = &acc[a * LANES..][..LANES];
            // SAFETY: `lane` holds LANES values.
            let v = _mm512_reduce_add_ps(unsafe { _mm512_loadu_ps(lane.as_ptr()) });
            acc[a] = v;
        }
    }
}
