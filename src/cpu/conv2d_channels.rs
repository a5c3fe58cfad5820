//! Direct convolution in f32 with the output channels across the vector lanes, at any
//! stride: the forward (and through it the stride-1 input gradient, conv2d.rs
//! `transposed`) and the weight gradient. The register blocks are in
//! conv2d_direct_kernels.rs (`channels_body`, `channel_weight_body`).
//!
//! Why: conv2d_direct.rs lays positions across the lanes, on a "wide" grid that computes
//! the padding columns too, and whole blocks of up to three vectors per image. On small
//! planes that wastes much: resnet-20's third stage (8×8 planes, 80 wide positions for 64
//! outputs, 72 since rows share their padding) fits one vector per block only, where each
//! FMA waits for its own broadcast weight, and its 7×7 planes (on 28×28 inputs) waste too much for that path at all, so
//! they went through im2col + GEMM. Strided convolutions have no wide grid either. With
//! the channels across the lanes, every position the block computes is an output: no
//! padding columns, no rounding per image, any stride; it asks that the output channels
//! of a group fill whole blocks (32 or 64 on AVX-512, 16 on AVX2, 8 or 16 on NEON).
//!
//! Method: the image is copied once into zero-padded planes, as in conv2d_direct.rs. A
//! register block holds CV vectors of output channels × P output positions of one image;
//! each (ci, ki, kj) step loads the CV·LANES packed weights and broadcasts each position's
//! input pixel, for CV·P fused multiply-adds. The block writes its results position-major
//! into a tile [positions, channels] of the image, and the tile is transposed into y's
//! [channels, positions] (cpu/transpose.rs). With a kernel three columns wide at column
//! stride 1, the blocks lie along output rows instead, where a row block divides the row
//! (6, 7 or 8 positions for two vectors of channels, 4 for four; on AVX-512 rows of 12, 14
//! or 16 go in blocks of one vector whatever the channels, and four vectors elsewhere as two
//! blocks of two where those take more positions, `forward_layout`): each input pixel of a
//! row is broadcast once and meets the three column taps, whose weights stay in registers, and
//! the kernel rows and the row's end pixels that fall in the padding are skipped
//! (`channel_row_block`). The weight gradient transposes dy per image to [positions,
//! channels] and holds CV vectors of output channels × R (input channel, tap) pairs, each
//! weight summing every position of the batch in one lane. Where R is a whole number of
//! kernel rows' taps, a block's pairs share one kernel row, and the block skips the output
//! rows whose inputs that kernel row finds in the padding, and at each row's first and last
//! position the pairs whose input there is padding: on resnet-20's 7×7 planes that is 18 %
//! of the products (2 rows and 2 columns of 21 per tap), and the 64→64 weight gradient
//! took 9–11 % less time (BENCHMARKS.md).
//!
//! Summation order: every output sums its c_in/groups·kh·kw products in (ci, ki, kj) order
//! in one lane, as conv2d_direct.rs's forward does, so where both run a shape they give the
//! same bits (tested); neither depends on the thread count. The row blocks' skipped
//! products are zeros of the padding: leaving them out changes no finite sum (only the sign
//! of an exact zero, and a non-finite weight meets no padding). The weight gradient's
//! skipped products change no bits of a finite sum either (its lanes start at +0, which a
//! zero product leaves as it is); a non-finite output gradient that meets only padding
//! through some tap leaves that tap's weights finite, as the definition has it, where the
//! GEMM paths (and the GPU's) multiply it by the padding's zero into NaN.
//!
//! `GRADSCOPE_CONV_CHANNELS=off` leaves these shapes to the other paths, to compare them on
//! one machine.

use std::any::TypeId;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::batch_parts::{BatchParts, add_parts_in_order};
use crate::cpu::conv2d::{edge_masks, rows_inside};
use crate::cpu::conv2d_direct::{self, as_f32, as_f32_mut, pack_weights, pad_image};
use crate::cpu::conv2d_direct_kernels::{
    self as kernels, CHANNEL_POSITIONS, ChannelBlock, ChannelCorrelation, Isa,
};
use crate::cpu::transpose::transpose;
use crate::ops::Conv2dShape;

/// The environment variable that turns the channel-block path off (`0`, `off`, `false`,
/// `no`).
const CONV_CHANNELS_ENV: &str = "GRADSCOPE_CONV_CHANNELS";

/// Whether the channel-block path (and conv2d_weight_nhwc.rs's) may run in this process.
pub(super) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let asked = std::env::var(CONV_CHANNELS_ENV).unwrap_or_default();
        !matches!(
            asked.trim().to_ascii_lowercase().as_str(),
            "0" | "off" | "false" | "no"
        )
    })
}

/// Products per output below which the other paths are faster: the block's stores, its
/// positions' offsets and the tile's transpose are paid per position, whatever the patch.
/// resnet-20's 3→16 stem (27 products) took 0.59 ms this way at batch 32 on one core with
/// AVX2, 0.40 through the wide grid; its 16-channel 3×3 convolutions (144) gain.
const MIN_PATCH: usize = 64;

/// The blocks and padded planes of one shape, for one instruction set.
#[derive(Clone, Copy, Debug)]
struct Layout {
    isa: Isa,
    /// Vectors of output channels per register block.
    cv: usize,
    /// Output positions per register block.
    p: usize,
    /// Output channels per register block: cv·lanes.
    width: usize,
    /// Register blocks of output channels per group.
    blocks: usize,
    /// Positions per block where the forward takes its blocks along output rows
    /// (`kernels::channels_row`: a kernel three columns wide at column stride and dilation
    /// 1, a row block this instruction set has whose width divides ow).
    row_p: Option<usize>,
    wp: usize,
    plane: usize,
    /// Output positions of an image, and the same rounded up to whole blocks (the tile's
    /// rows).
    positions: usize,
    rows: usize,
}

impl Layout {
    /// The layout of shape `s` on `isa`, if a block of that instruction set fits its
    /// channels: the widest of at most `max_cv` vectors whose width divides c_out/groups.
    fn new(s: &Conv2dShape, isa: Isa, max_cv: usize) -> Option<Self> {
        let cpg_out = s.cout_per_group();
        let [oh, ow] = s.out_hw();
        let mut widths = [4, 2, 1].into_iter().filter(|&vectors| vectors <= max_cv);
        let (width, (cv, p)) = widths.find_map(|vectors| {
            let width = vectors * isa.lanes();
            let block = isa.channel_block(width)?;
            cpg_out.is_multiple_of(width).then_some((width, block))
        })?;
        debug_assert!(p <= CHANNEL_POSITIONS && cv * isa.lanes() == width);
        let hp = s.h + 2 * s.pad[0];
        let wp = s.w + 2 * s.pad[1];
        let positions = oh * ow;
        let rows_fit = s.kw == 3 && s.stride[1] == 1 && s.dilation[1] == 1;
        let row_p = rows_fit.then(|| isa.channel_row_block(cv, ow)).flatten();
        // One vector of channels runs along rows only: its block of scattered positions
        // (one vector × 12) measured slower than the wide grid (BENCHMARKS.md).
        if cv == 1 && row_p.is_none() {
            return None;
        }
        Some(Layout {
            isa,
            cv,
            p,
            width,
            blocks: cpg_out / width,
            row_p,
            wp,
            plane: hp * wp,
            positions,
            rows: positions.div_ceil(p) * p,
        })
    }

    fn packed_weights_len(&self, s: &Conv2dShape) -> usize {
        s.groups * self.blocks * self.width * s.patch_len()
    }

    /// Per part of the batch: the padded image, the tile, and the transposed tile that an
    /// accumulating pass adds to y.
    fn part_len(&self, s: &Conv2dShape) -> usize {
        let cpg_out = s.cout_per_group();
        s.c_in * self.plane + self.rows * cpg_out + self.positions * cpg_out
    }
}

/// The layout of shape `s` where `forward` runs it in element type `T` on this CPU.
fn layout<T: Element>(s: &Conv2dShape) -> Option<Layout> {
    if TypeId::of::<T>() != TypeId::of::<f32>() || !enabled() {
        return None;
    }
    let [oh, ow] = s.out_hw();
    // A 1×1 kernel reads one pixel per input channel: im2col + GEMM has no patch matrix to
    // build there (stride 1) or a small one (strided).
    if s.n == 0 || oh * ow == 0 || s.kh * s.kw == 1 || s.patch_len() < MIN_PATCH {
        return None;
    }
    Layout::new(s, conv2d_direct::isa()?, 4)
}

/// The forward's layout: `layout`'s, or along rows in blocks of fewer channels where
/// those fit the row better (BENCHMARKS.md, fourteenth session, one core, batch 128):
/// - on AVX-512, wherever a block of one vector of channels runs along the rows (rows of
///   12, 14 or 16 positions, or multiples): 32 and 64 channels go as blocks of 16 × a row
///   of 12 to 16 positions, 3 weight vectors held, rather than 32 × 6 to 8 positions, 6
///   held. resnet-20's 32→32 forward and stride-1 input gradient ran 4–8 % faster on
///   14×14 planes (28×28 inputs), 9–11 % on 12×12, level on 16×16; 64→64 on 16×16 2–7 %;
/// - else, where blocks of half as many channels run along rows with more positions: 64
///   channels on 7×7 planes (28×28 inputs) go in blocks of 32 × 7, since 64 × 7 with three
///   taps' weights do not fit the registers, and on AVX-512 on 8×8 planes in blocks of
///   32 × 8 rather than 64 × 4 (the same 16 accumulators, 6 weight vectors held instead of
///   12, each broadcast pixel meeting more of them: 20 % faster). Where only four positions
///   divide the row (4×4 planes), the wide block stays. On NEON, not measured, the
///   narrower block replaces only a wide one with no row block.
fn forward_layout<T: Element>(s: &Conv2dShape) -> Option<Layout> {
    let l = layout::<T>(s)?;
    if l.isa == Isa::Avx512
        && l.cv > 1
        && let Some(one) = Layout::new(s, l.isa, 1).filter(|n| n.row_p.is_some())
    {
        return Some(one);
    }
    if l.cv < 4 {
        return Some(l);
    }
    let positions = |l: &Layout| l.row_p.unwrap_or(0);
    let better = |n: &Layout| match l.isa {
        Isa::Avx512 => positions(n) > positions(&l),
        _ => l.row_p.is_none() && n.row_p.is_some(),
    };
    let narrow = Layout::new(s, l.isa, l.cv / 2).filter(better);
    Some(narrow.unwrap_or(l))
}

/// Whether `forward` runs shape `s` in element type `T` on this CPU.
pub(super) fn applies<T: Element>(s: &Conv2dShape) -> bool {
    layout::<T>(s).is_some()
}

/// Scratch elements `forward` needs with the batch cut into `parts` ranges, for a shape
/// where `applies` holds.
pub(super) fn scratch_len(s: &Conv2dShape, parts: usize) -> usize {
    let l = forward_layout::<f32>(s).expect("the channel blocks apply");
    l.packed_weights_len(s) + parts * l.part_len(s)
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
    let l = forward_layout::<T>(s).expect("the channel blocks apply");
    forward_f32(
        s,
        &l,
        as_f32(x),
        as_f32(w),
        as_f32_mut(y),
        as_f32_mut(scratch),
        per,
        accumulate,
    );
}

#[allow(clippy::too_many_arguments)]
fn forward_f32(
    s: &Conv2dShape,
    l: &Layout,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    scratch: &mut [f32],
    per: usize,
    accumulate: bool,
) {
    let (cpg_in, cpg_out) = (s.cin_per_group(), s.cout_per_group());
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * l.positions;
    let (packed, parts) = scratch.split_at_mut(l.packed_weights_len(s));
    pack_weights(s, l.width, l.blocks, w, packed);
    let packed = &*packed;
    let block_weights = s.patch_len() * l.width;
    y[..s.y_len()]
        .par_chunks_mut(per * y_img)
        .zip(parts.par_chunks_mut(l.part_len(s)))
        .enumerate()
        .for_each(|(part, (yp, buf))| {
            let (xp, rest) = buf.split_at_mut(s.c_in * l.plane);
            let (tile, sum) = rest.split_at_mut(l.rows * cpg_out);
            // The padding stays zero; each image overwrites the interior only.
            xp.fill(0.0);
            let step = l.row_p.unwrap_or(l.p);
            for (i, yb) in yp.chunks_mut(y_img).enumerate() {
                let image = part * per + i;
                pad_image(s, l.wp, l.plane, &x[image * x_img..][..x_img], xp);
                for g in 0..s.groups {
                    let xg = &xp[g * cpg_in * l.plane..];
                    for b in 0..l.blocks {
                        let wb = &packed[(g * l.blocks + b) * block_weights..][..block_weights];
                        for q0 in (0..l.positions).step_by(step) {
                            let out = &mut tile[q0 * cpg_out + b * l.width..];
                            match l.row_p {
                                Some(rp) => channel_row_block(s, l, rp, xg, wb, q0, out),
                                None => channel_block(s, l, xg, wb, q0, out),
                            }
                        }
                    }
                    let yg = &mut yb[g * cpg_out * l.positions..][..cpg_out * l.positions];
                    if accumulate {
                        transpose(tile, l.positions, cpg_out, sum);
                        for (d, &v) in yg.iter_mut().zip(sum.iter()) {
                            *d += v;
                        }
                    } else {
                        transpose(tile, l.positions, cpg_out, yg);
                    }
                }
            }
        });
}

/// One register block: the block's output channels (from `wb`) at positions q0..q0+P of
/// the image whose group's padded planes start `xg`, into out[p·c_out/groups + c]. Positions
/// past the image's last repeat it (their rows of the tile are never read).
fn channel_block(s: &Conv2dShape, l: &Layout, xg: &[f32], wb: &[f32], q0: usize, out: &mut [f32]) {
    let [_, ow] = s.out_hw();
    let cpg_in = s.cin_per_group();
    let mut offsets = [0; CHANNEL_POSITIONS];
    for (p, at) in offsets.iter_mut().enumerate().take(l.p) {
        let q = (q0 + p).min(l.positions - 1);
        *at = (q / ow) * s.stride[0] * l.wp + (q % ow) * s.stride[1];
    }
    let reach = (s.kh - 1) * s.dilation[0] * l.wp + (s.kw - 1) * s.dilation[1];
    let last = offsets[..l.p].iter().copied().max().unwrap_or(0);
    // Bounds the unchecked reads and writes of the kernel below.
    assert!(xg.len() > (cpg_in - 1) * l.plane + last + reach);
    assert!(wb.len() >= cpg_in * s.kh * s.kw * l.width);
    assert!(out.len() >= (l.p - 1) * s.cout_per_group() + l.width);
    let args = ChannelBlock {
        x: xg.as_ptr(),
        offsets,
        plane: l.plane,
        cin: cpg_in,
        taps: [s.kh, s.kw],
        steps: [s.dilation[0] * l.wp, s.dilation[1]],
        w: wb.as_ptr(),
        out: out.as_mut_ptr(),
        out_stride: s.cout_per_group(),
        ci_weights: 0,
        skip: [false; 2],
    };
    // SAFETY: `conv2d_direct::isa` found the instruction set present and `Layout::new` took
    // a block it has; the asserts above bound every access.
    unsafe { kernels::channels(l.isa, l.cv, l.p, &args) };
}

/// One row block: the block's output channels at positions q0..q0+rp, which lie in one
/// output row (rp divides ow), as `channel_block` writes them.
fn channel_row_block(
    s: &Conv2dShape,
    l: &Layout,
    rp: usize,
    xg: &[f32],
    wb: &[f32],
    q0: usize,
    out: &mut [f32],
) {
    let [_, ow] = s.out_hw();
    let cpg_in = s.cin_per_group();
    let (oy, ox) = (q0 / ow, q0 % ow);
    let row_step = s.dilation[0] * l.wp;
    // The kernel rows whose input row lies in the padding add zeros: skipped, as are the
    // row's first and last pixels where they are padding.
    let in_image = |ki: usize| {
        let r = oy * s.stride[0] + ki * s.dilation[0];
        r >= s.pad[0] && r < s.pad[0] + s.h
    };
    let ki0 = (0..s.kh).find(|&ki| in_image(ki)).unwrap_or(s.kh);
    let ki1 = (0..s.kh)
        .rev()
        .find(|&ki| in_image(ki))
        .map_or(ki0, |k| k + 1);
    let skip = [ox < s.pad[1], ox + rp + 1 >= s.pad[1] + s.w];
    let mut offsets = [0; CHANNEL_POSITIONS];
    offsets[0] = oy * s.stride[0] * l.wp + ox + ki0 * row_step;
    let ci_weights = s.kh * 3 * l.width;
    // Bounds the unchecked reads and writes of the kernel below: rp + 2 pixels of each row.
    assert!(ox + rp <= ow && s.kw == 3);
    let rows = ki1.max(ki0 + 1) - ki0;
    assert!(xg.len() >= (cpg_in - 1) * l.plane + offsets[0] + (rows - 1) * row_step + rp + 2);
    assert!(wb.len() >= cpg_in * ci_weights);
    assert!(out.len() >= (rp - 1) * s.cout_per_group() + l.width);
    let args = ChannelBlock {
        x: xg.as_ptr(),
        offsets,
        plane: l.plane,
        cin: cpg_in,
        taps: [ki1 - ki0, 3],
        steps: [row_step, 1],
        w: wb[ki0 * 3 * l.width..].as_ptr(),
        out: out.as_mut_ptr(),
        out_stride: s.cout_per_group(),
        ci_weights,
        skip,
    };
    // SAFETY: `Layout::new` took the row block from `Isa::channel_row_block` of a present
    // instruction set; the asserts above bound every access.
    unsafe { kernels::channels_row(l.isa, l.cv, rp, &args) };
}

/// Bytes of padded images and transposed output gradients the weight gradient holds at
/// once: every register block sums a slab over all its positions before its accumulators go
/// back to memory, and each worker's slab stays in its core's L2 cache (1 MiB on the
/// development machine's Zen 4) while the blocks read it.
const WEIGHT_SLAB_BYTES: usize = 512 << 10;

/// The weight gradient's scratch: each part's accumulators (every register block's, [P][width]
/// each, P being the block's pairs), then each worker's slab: its images' padded planes and
/// their output gradients transposed to [positions, c_out].
///
/// The batch is cut into contiguous parts, run in parallel, each part's images laid out once
/// and every register block run over them; the parts' sums are added in part order. Before,
/// teams of blocks (one per thread) each laid out the whole batch, so that the slab their
/// blocks read lay in their own core's cache: every image was padded and its output gradient
/// transposed once per thread (BENCHMARKS.md, twenty-first session). With one slab shared by
/// the threads before that, each block read half of it from another core's cache, and two
/// threads ran the weight gradient only 1.1–1.5× faster than one.
struct WeightLayout {
    l: Layout,
    /// Images at a time: as many as fit the slab's bytes, at least one, at most a part.
    slab: usize,
    /// Output rows the register blocks sum at a time: every row of the slab's images where
    /// a whole image fits the slab's bytes; else, one image at a time, bands of rows whose
    /// output gradients and input rows fit them (an ImageNet-sized plane of 224×224 with 64
    /// channels holds 25 MB of both).
    band: usize,
    /// Register blocks of (input channel, tap) pairs per block of output channels.
    pair_blocks: usize,
    /// Whether each register block's pairs share one kernel row (`pair_index`), so that a
    /// block skips the output rows whose inputs that kernel row finds in the padding.
    by_rows: bool,
    /// The batch's parts (cpu/batch_parts.rs), each worker's through a slab of its own.
    batch: BatchParts,
    xp_len: usize,
    dyt_len: usize,
}

impl WeightLayout {
    fn new(s: &Conv2dShape, l: Layout, slab_bytes: usize) -> Self {
        let [oh, ow] = s.out_hw();
        let xp_len = s.c_in * l.plane;
        let dyt_len = l.positions * s.c_out;
        let bytes = std::mem::size_of::<f32>();
        let image_bytes = (xp_len + dyt_len) * bytes;
        let batch = BatchParts::new(s.n);
        let (slab, band) = if image_bytes <= slab_bytes {
            ((slab_bytes / image_bytes).clamp(1, batch.per_part), oh)
        } else {
            let row_bytes = (ow * s.c_out + s.stride[0] * l.wp * s.c_in) * bytes;
            (1, (slab_bytes / row_bytes).clamp(1, oh))
        };
        let pair_blocks = s.patch_len().div_ceil(l.p);
        // A block of whole kernel rows: p/kw input channels × one row's kw taps.
        let by_rows =
            s.kh > 1 && l.p.is_multiple_of(s.kw) && s.cin_per_group().is_multiple_of(l.p / s.kw);
        WeightLayout {
            l,
            slab,
            band,
            pair_blocks,
            by_rows,
            batch,
            xp_len,
            dyt_len,
        }
    }

    /// Elements of one worker's slab: its padded images, then their transposed output
    /// gradients.
    fn slab_len(&self) -> usize {
        self.slab * (self.xp_len + self.dyt_len)
    }

    fn unit_len(&self) -> usize {
        self.l.p * self.l.width
    }

    /// The patch index (ci·kh·kw + ki·kw + kj) of pair `r` of pair block `kb`, or None past
    /// the patch's end. Blocks by rows hold p/kw input channels × the kw taps of one kernel
    /// row (block kb: channels (kb / kh)·p/kw onward, row kb mod kh); other blocks hold p
    /// consecutive patch indices. Which block sums a weight changes no bits: each weight
    /// sums its products in its own lane.
    fn pair_index(&self, s: &Conv2dShape, kb: usize, r: usize) -> Option<usize> {
        if !self.by_rows {
            let k = kb * self.l.p + r;
            return (k < s.patch_len()).then_some(k);
        }
        let channels = self.l.p / s.kw;
        let (group, ki) = (kb / s.kh, kb % s.kh);
        let (c, kj) = (r / s.kw, r % s.kw);
        Some((group * channels + c) * s.kh * s.kw + ki * s.kw + kj)
    }

    /// The kernel row that every pair of block `kb` shares, for blocks by rows.
    fn kernel_row(&self, s: &Conv2dShape, kb: usize) -> Option<usize> {
        self.by_rows.then_some(kb % s.kh)
    }

    fn units(&self, s: &Conv2dShape) -> usize {
        s.groups * self.l.blocks * self.pair_blocks
    }

    /// Elements of one part's accumulators: every register block's.
    fn part_len(&self, s: &Conv2dShape) -> usize {
        self.units(s) * self.unit_len()
    }

    fn len(&self, s: &Conv2dShape) -> usize {
        self.batch.parts * self.part_len(s) + self.batch.workers * self.slab_len()
    }
}

/// Whether `backward_weight` runs shape `s` in element type `T` on this CPU: where `forward`
/// does with at least two vectors of channels (16 channels on AVX-512, one vector × 12
/// pairs, measured slower than conv2d_direct.rs's row walk, BENCHMARKS.md).
pub(super) fn applies_to_weight_gradient<T: Element>(s: &Conv2dShape) -> bool {
    layout::<T>(s).is_some_and(|l| l.cv >= 2)
}

/// Scratch elements `backward_weight` needs.
pub(super) fn weight_scratch_len(s: &Conv2dShape) -> usize {
    let l = layout::<f32>(s).expect("the channel blocks apply");
    WeightLayout::new(s, l, WEIGHT_SLAB_BYTES).len(s)
}

/// dw = Σ_b dy[b] ⋆ x[b] (or dw += that with `accumulate`) for a checked shape where
/// `applies_to_weight_gradient::<T>` holds. The batch goes in parts, in parallel, and each
/// part in slabs: each slab's images are padded and their output gradients transposed, then
/// every register block adds the slab's positions to the part's accumulators. Every weight
/// sums a part's images in order and their positions in order in one lane, and the parts'
/// sums in part order: the result depends neither on the thread count nor on the slab.
pub(super) fn backward_weight<T: Element>(
    s: &Conv2dShape,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    accumulate: bool,
    scratch: &mut [T],
) {
    let l = layout::<T>(s).expect("the channel blocks apply");
    let wl = WeightLayout::new(s, l, WEIGHT_SLAB_BYTES);
    backward_weight_f32(
        s,
        &wl,
        as_f32(x),
        as_f32(dy),
        as_f32_mut(dw),
        accumulate,
        as_f32_mut(scratch),
    );
}

fn backward_weight_f32(
    s: &Conv2dShape,
    wl: &WeightLayout,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    scratch: &mut [f32],
) {
    let l = &wl.l;
    let patch = s.patch_len();
    let cpg_out = s.cout_per_group();
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * l.positions;
    let part_len = wl.part_len(s);
    let (accs, slabs) = scratch[..wl.len(s)].split_at_mut(wl.batch.parts * part_len);
    let per_worker = wl.batch.per_worker();
    let [oh, _] = s.out_hw();
    accs.par_chunks_mut(per_worker * part_len)
        .zip(slabs.par_chunks_mut(wl.slab_len()))
        .enumerate()
        .for_each(|(worker, (accs, slab))| {
            let (xps, dyts) = slab.split_at_mut(wl.slab * wl.xp_len);
            // Each slab's images overwrite the interior only: the padding zeroed once stays
            // zero.
            xps.fill(0.0);
            for (p, accs) in accs.chunks_mut(part_len).enumerate() {
                let part = worker * per_worker + p;
                let images = wl.batch.images(part, s.n);
                accs.fill(0.0);
                for s0 in images.clone().step_by(wl.slab) {
                    let count = (images.end - s0).min(wl.slab);
                    let slots = xps.chunks_mut(wl.xp_len).zip(dyts.chunks_mut(wl.dyt_len));
                    for (i, (xp, dyt)) in slots.take(count).enumerate() {
                        let b = s0 + i;
                        pad_image(s, l.wp, l.plane, &x[b * x_img..][..x_img], xp);
                        transpose(&dy[b * y_img..][..y_img], s.c_out, l.positions, dyt);
                    }
                    let slab = &xps[..count * wl.xp_len];
                    for r0 in (0..oh).step_by(wl.band) {
                        let rows = r0..(r0 + wl.band).min(oh);
                        for (unit, acc) in accs.chunks_mut(wl.unit_len()).enumerate() {
                            weight_block(s, wl, unit, slab, dyts, rows.clone(), acc);
                        }
                    }
                }
            }
        });
    // The parts' sums added in part order, then written over or added to dw; block (g, b,
    // kb)'s accumulator r, channel c, is the weight of output channel g·cpg_out + b·width +
    // c at patch index kb·P + r.
    let first = add_parts_in_order(accs, part_len);
    for (unit, acc) in first.chunks(wl.unit_len()).enumerate() {
        let (g, b, kb) = unit_position(wl, unit);
        for r in 0..l.p {
            let Some(k) = wl.pair_index(s, kb, r) else {
                break;
            };
            for (c, &v) in acc[r * l.width..][..l.width].iter().enumerate() {
                let d = &mut dw[(g * cpg_out + b * l.width + c) * patch + k];
                *d = if accumulate { *d + v } else { v };
            }
        }
    }
}

/// Register block `unit`'s (group, block of output channels, block of pairs).
fn unit_position(wl: &WeightLayout, unit: usize) -> (usize, usize, usize) {
    let per_group = wl.l.blocks * wl.pair_blocks;
    let rest = unit % per_group;
    (
        unit / per_group,
        rest / wl.pair_blocks,
        rest % wl.pair_blocks,
    )
}

/// Adds output rows `rows` of the slab's images (`xps`, padded, and `dyts`, transposed; as
/// many images as `xps` holds) to register block `unit`'s accumulators `acc`. Pairs past
/// the patch's end repeat its last pair (their accumulators are never read).
fn weight_block(
    s: &Conv2dShape,
    wl: &WeightLayout,
    unit: usize,
    xps: &[f32],
    dyts: &[f32],
    rows: std::ops::Range<usize>,
    acc: &mut [f32],
) {
    let l = &wl.l;
    let [oh, ow] = s.out_hw();
    let (cpg_in, cpg_out) = (s.cin_per_group(), s.cout_per_group());
    let (taps, patch) = (s.kh * s.kw, s.patch_len());
    let (g, b, kb) = unit_position(wl, unit);
    // Output rows whose inputs the block's kernel row finds in the padding add only zeros:
    // they are left out (which changes no finite sum; a non-finite output gradient there
    // meets no input, as in the mathematical definition).
    let rows = match wl.kernel_row(s, kb).map(|ki| rows_inside(s, ki)) {
        Some(Some(inside)) => rows.start.max(inside.start)..rows.end.min(inside.end),
        Some(None) => return,
        None => rows,
    };
    if rows.is_empty() {
        return;
    }
    let mut pairs = [0; CHANNEL_POSITIONS];
    for (r, at) in pairs.iter_mut().enumerate().take(l.p) {
        let k = wl.pair_index(s, kb, r).unwrap_or(patch - 1);
        let (ci, t) = (k / taps, k % taps);
        *at = (g * cpg_in + ci) * l.plane
            + (t / s.kw) * s.dilation[0] * l.wp
            + (t % s.kw) * s.dilation[1];
    }
    // The pairs whose input at a row's first or last position is padding skip it there.
    let edges = edge_masks(
        s,
        (0..l.p).map(|r| wl.pair_index(s, kb, r).unwrap_or(patch - 1) % taps % s.kw),
    );
    let images = xps.len() / wl.xp_len;
    let last_pair = pairs[..l.p].iter().copied().max().unwrap_or(0);
    // The band's first input row and first output gradient.
    let x0 = rows.start * s.stride[0] * l.wp;
    let dy0 = rows.start * ow * s.c_out + g * cpg_out + b * l.width;
    let last_position = (rows.len() - 1) * s.stride[0] * l.wp + (ow - 1) * s.stride[1];
    // Bounds the unchecked reads and writes of the kernel below.
    assert!(images >= 1 && xps.len() == images * wl.xp_len);
    assert!(!rows.is_empty() && rows.end <= oh);
    assert!(wl.xp_len > x0 + last_pair + last_position);
    let last_dy = dy0 + (rows.len() * ow - 1) * s.c_out + l.width;
    assert!(dyts.len() >= (images - 1) * wl.dyt_len + last_dy);
    assert!(acc.len() >= wl.unit_len());
    let args = ChannelCorrelation {
        x: xps[x0..].as_ptr(),
        pairs,
        x_image: wl.xp_len,
        dy: dyts[dy0..].as_ptr(),
        dy_position: s.c_out,
        dy_image: wl.dyt_len,
        images,
        out_hw: [rows.len(), ow],
        steps: [s.stride[0] * l.wp, s.stride[1]],
        edges,
        acc: acc.as_mut_ptr(),
    };
    // SAFETY: `conv2d_direct::isa` found the instruction set present and `Layout::new` took
    // a block it has; the asserts above bound every access.
    unsafe { kernels::channel_weight(l.isa, l.cv, l.p, &args) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n: usize, c_in: usize, hw: [usize; 2], c_out: usize, pad: usize) -> Conv2dShape {
        Conv2dShape {
            n,
            c_in,
            h: hw[0],
            w: hw[1],
            c_out,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [pad, pad],
            dilation: [1, 1],
            groups: 1,
        }
    }

    /// Where both direct forwards run a shape, every channel layout the shape takes (one,
    /// two or four vectors of channels, along rows or not) gives the bits of the wide grid's
    /// (one lane per output, products in the same order), with and without accumulation, on
    /// planes whose positions fill no whole block and along output rows (two vectors on 16,
    /// 14 and 12 columns: row blocks of 8, 7 and 6; four on 20, 8 and 28: blocks of 4; one
    /// on 16, 14, 12 and 28: blocks of 16, 14, 12 and 14; padding skipped or not). On
    /// AVX-512 the forward picks the layout `forward_layout` says for each.
    #[test]
    fn channel_blocks_give_the_bits_of_the_wide_grid() {
        let Some(isa) = conv2d_direct::isa() else {
            eprintln!("no direct kernels on this CPU; nothing to compare");
            return;
        };
        let width = 2 * isa.lanes();
        // Each shape with the (vectors, row block) the AVX-512 forward takes.
        let shapes = [
            (shape(3, 16, [8, 8], 2 * width, 1), (2, Some(8))),
            (shape(2, 20, [7, 9], width, 1), (2, None)),
            (shape(1, 8, [5, 13], width, 2), (2, None)),
            (shape(2, 32, [4, 30], 2 * width, 0), (1, Some(14))),
            (shape(2, 12, [6, 16], width, 1), (1, Some(16))),
            (shape(1, 8, [9, 14], width, 1), (1, Some(14))),
            (shape(2, 8, [10, 14], width, 0), (1, Some(12))),
            (shape(2, 12, [7, 14], 2 * width, 1), (1, Some(14))),
            (shape(1, 8, [3, 20], 2 * width, 1), (4, Some(4))),
        ];
        let mut taken = std::collections::BTreeSet::new();
        for (s, chosen) in &shapes {
            assert!(conv2d_direct::applies::<f32>(s), "the wide grid runs {s:?}");
            let l = forward_layout::<f32>(s).expect("the channel layout applies");
            if isa == Isa::Avx512 {
                assert_eq!((l.cv, l.row_p), *chosen, "{s:?}");
            }
            for max_cv in [1, 2, 4] {
                let Some(l) = Layout::new(s, isa, max_cv) else {
                    continue;
                };
                taken.insert((l.cv, l.row_p));
                assert_bits_of_the_wide_grid(s, &l);
            }
        }
        if isa.channel_row_block(2, 16).is_some() {
            for blocks in [
                (2, Some(8)),
                (2, Some(7)),
                (2, Some(6)),
                (4, Some(4)),
                (2, None),
            ] {
                assert!(taken.contains(&blocks), "{blocks:?} compared on {isa:?}");
            }
        }
        if isa == Isa::Avx512 {
            for blocks in [(1, Some(16)), (1, Some(14)), (1, Some(12)), (4, None)] {
                assert!(taken.contains(&blocks), "{blocks:?} compared on {isa:?}");
            }
        }
    }

    /// The channel layout's forward on `s` gives the wide grid's bits, with and without
    /// accumulation, the batch in two parts.
    fn assert_bits_of_the_wide_grid(s: &Conv2dShape, l: &Layout) {
        let value = |i: usize, salt: usize| ((i * 7919 + salt) % 1009) as f32 / 1009.0 - 0.5;
        let x: Vec<f32> = (0..s.x_len()).map(|i| value(i, 1)).collect();
        let w: Vec<f32> = (0..s.w_len()).map(|i| value(i, 2)).collect();
        let y0: Vec<f32> = (0..s.y_len()).map(|i| value(i, 3)).collect();
        for accumulate in [false, true] {
            let per = s.n.div_ceil(2);
            let parts = s.n.div_ceil(per);
            let mut want = y0.clone();
            let mut scratch = vec![f32::NAN; conv2d_direct::scratch_len(s, parts)];
            conv2d_direct::forward(s, &x, &w, &mut want, &mut scratch, per, accumulate);
            let mut got = y0.clone();
            let mut scratch = vec![f32::NAN; l.packed_weights_len(s) + parts * l.part_len(s)];
            forward_f32(s, l, &x, &w, &mut got, &mut scratch, per, accumulate);
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{s:?}, accumulate {accumulate}");
        }
    }

    /// One vector of channels (16 on AVX-512) runs along output rows only, one weight
    /// vector per tap and a position per accumulator (`channels_row_taps`): rows of 16, 14
    /// and 12 columns, padding skipped or not, one block of channels or three. It gives the
    /// wide grid's bits; a row that takes no such block leaves the shape to the wide grid,
    /// and the weight gradient stays with conv2d_direct.rs's kernels.
    #[test]
    fn one_vector_of_channels_runs_along_rows() {
        if conv2d_direct::isa() != Some(Isa::Avx512) {
            eprintln!("one vector of channels runs on AVX-512 only; nothing to compare");
            return;
        }
        let shapes = [
            (shape(2, 16, [6, 16], 16, 1), 16),
            (shape(3, 8, [5, 14], 16, 1), 14),
            (shape(2, 9, [18, 14], 16, 0), 12),
            (shape(1, 8, [9, 16], 48, 1), 16),
        ];
        for (s, p) in &shapes {
            let l = forward_layout::<f32>(s).expect("the channel layout applies");
            assert_eq!((l.cv, l.row_p), (1, Some(*p)), "{s:?}");
            assert!(!applies_to_weight_gradient::<f32>(s), "{s:?}");
            assert!(conv2d_direct::applies::<f32>(s), "{s:?}");
            assert_bits_of_the_wide_grid(s, &l);
        }
        // 13 output columns: no row block of 16, 14 or 12.
        assert!(layout::<f32>(&shape(1, 16, [4, 13], 16, 1)).is_none());
    }

    /// The weight gradient gives the same bits whatever the slab: bands of output rows, one
    /// image at a time, a ragged last slab, or a whole part at once; strided, with a ragged
    /// last block of pairs (15·3·3 = 135 pairs).
    #[test]
    fn weight_gradient_does_not_depend_on_the_slab() {
        let Some(isa) = conv2d_direct::isa() else {
            eprintln!("no direct kernels on this CPU; nothing to compare");
            return;
        };
        // 17 images: parts of 3 (the last of 2), so slabs of 1, 2 and 3 images cut them
        // differently.
        let mut s = shape(17, 15, [9, 7], 4 * isa.lanes(), 1);
        s.stride = [2, 1];
        let l = layout::<f32>(&s).expect("the channel blocks apply");
        assert_ne!(s.patch_len() % l.p, 0, "a ragged last block of pairs");
        let value = |i: usize, salt: usize| ((i * 7919 + salt) % 1009) as f32 / 1009.0 - 0.5;
        let x: Vec<f32> = (0..s.x_len()).map(|i| value(i, 1)).collect();
        let dy: Vec<f32> = (0..s.y_len()).map(|i| value(i, 2)).collect();
        let one = WeightLayout::new(&s, l, 0);
        let image_bytes = (one.xp_len + one.dyt_len) * 4;
        let run = |slab_bytes: usize| {
            let wl = WeightLayout::new(&s, l, slab_bytes);
            let mut scratch = vec![f32::NAN; wl.len(&s)];
            let mut dw = vec![f32::NAN; s.w_len()];
            backward_weight_f32(&s, &wl, &x, &dy, &mut dw, false, &mut scratch);
            (wl.slab, dw)
        };
        let (whole, want) = run(usize::MAX);
        assert_eq!(whole, one.batch.per_part);
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
        // Less than an image: one image at a time in bands of 1 and 2 output rows (a ragged
        // last band: 5 rows).
        let row_bytes = (s.out_hw()[1] * s.c_out + s.stride[0] * l.wp * s.c_in) * 4;
        for rows in [1, 2] {
            let wl = WeightLayout::new(&s, l, rows * row_bytes);
            assert_eq!((wl.slab, wl.band), (1, rows));
            let (_, got) = run(rows * row_bytes);
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "bands of {rows} rows: {got:?} against {want:?}");
        }
    }
}
