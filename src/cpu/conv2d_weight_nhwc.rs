//! The weight gradient in f32 on a channel-last copy of each image, with either the input
//! or the output channels across the vector lanes. The register blocks are in
//! conv2d_direct_kernels.rs (`input_lane_weight_body`, `channels_last_weight_body`).
//!
//! Why: dw[co][ci][ki][kj] = Σ_positions dy[co][p] · x[ci][p + (ki, kj)] is a product
//! whose shared dimension, every output position of the batch, is long and whose output is
//! small. conv2d_channels.rs lays the output channels across the lanes and reads the
//! inputs from the padded NCHW planes, each (input channel, tap) pair's from its own plane:
//! a block of one vector of output channels (16 on AVX-512) needs twelve pointers for
//! twelve FMAs a position and ran slower than the wide grid (BENCHMARKS.md). Here the image
//! is copied channel-last ([hp, wp, c_in]), so the input channels of a pixel lie side by
//! side:
//! - input lanes (where c_in fills whole vectors: AVX-512, 16 input channels): a block
//!   holds one vector of input channels × CO output channels × the KW taps of one kernel
//!   row; per position it loads KW input vectors and broadcasts each output channel's
//!   gradient, read in place from dy's planes, into KW FMAs (8 × 3 = 24 accumulators);
//! - output lanes (other input channel counts, such as the 3-channel stem; AVX2): dy is
//!   transposed to [positions, c_out] too, and a block of one vector of output channels ×
//!   CB input channels × KW taps loads one vector of output gradients and broadcasts each
//!   input, side by side behind one pointer per tap, into its FMA (8 × 3 on AVX-512).
//!
//! Input lanes spare dy's transpose: resnet-20's 16→16 weight gradient on 28×28 inputs took
//! 12 % less time that way than with output lanes (BENCHMARKS.md). With input lanes this
//! path also takes the shapes of conv2d_direct.rs's row walk (output rows of whole vectors,
//! as 32×32 inputs give), 5 % faster on one core and 12 % on two there.
//!
//! Method: the batch is cut into at most eight contiguous ranges of images
//! (cpu/batch_parts.rs), a number that depends on the batch only, run in parallel. Each part takes its images in slabs that fit
//! a core's L2 cache: each image is transposed to [positions, c_in] and copied into
//! zero-padded rows (and, with output lanes, its output gradient transposed to [positions,
//! c_out]; cpu/transpose.rs), once; then every register block, one per (block of output
//! channels, kernel row, block of input channels), adds the slab's positions to the part's
//! accumulators. Teams of blocks that each lay out the whole batch, as conv2d_channels.rs
//! ran them until it moved to parts too, repeated the transposes per team, which cost a 1×1
//! kernel (2 blocks, little arithmetic per image) more on two threads than on one
//! (BENCHMARKS.md).
//!
//! Summation order: within a part, every weight sums its products in one lane, images in
//! order and each image's output positions in row-major order, from zero; the parts' sums
//! are then added in part order. The result depends neither on the thread count nor on the
//! slab. The products with the padding's zeros are skipped where a block's kernel row reads
//! a whole output row from the padding, and at a row's first and last position where a
//! tap reads padding there (conv2d_channels.rs says why that changes no bits of a finite
//! sum).
//!
//! `GRADSCOPE_CONV_CHANNELS=off` turns this path off with conv2d_channels.rs.

use std::any::TypeId;

use rayon::prelude::*;

use crate::cpu::Element;
use crate::cpu::batch_parts::{BatchParts, add_parts_in_order};
use crate::cpu::conv2d::{edge_masks, rows_inside};
use crate::cpu::conv2d_channels;
use crate::cpu::conv2d_direct::{self, as_f32, as_f32_mut};
use crate::cpu::conv2d_direct_kernels::{
    self as kernels, ChannelsLastCorrelation, InputLaneCorrelation, Isa,
};
use crate::cpu::transpose::transpose;
use crate::ops::Conv2dShape;

/// Bytes of channel-last images and output gradients each part holds at once: the slab
/// stays in its core's L2 cache while the blocks read it (each block reads all of it), and
/// an image larger than that goes alone.
const SLAB_BYTES: usize = 512 << 10;

/// The register blocks and copies of one shape, for one instruction set.
#[derive(Clone, Copy, Debug)]
struct Layout {
    isa: Isa,
    lanes: usize,
    /// Which channels lie across the lanes: the input channels (`kernels::input_lane_weight`,
    /// dy read in place) or the output channels (`kernels::channels_last_weight`, dy
    /// transposed).
    input_lanes: bool,
    /// Input and output channels per register block (one vector of the lanes' kind).
    cb: usize,
    cob: usize,
    /// Blocks of output channels and of input channels.
    co_blocks: usize,
    ci_blocks: usize,
    /// The padded image's rows and columns.
    hp: usize,
    wp: usize,
    /// Elements of one channel-last padded image and of one transposed output gradient.
    xt_len: usize,
    dyt_len: usize,
    /// Images a part lays out at a time: as many as fit its slab's bytes, at least one.
    slab: usize,
    /// The batch's parts (cpu/batch_parts.rs), each worker's through one slab of its own:
    /// a slab per part, on one thread, wrote each part's images into memory the core's L2
    /// no longer held (1×1 kernels 15–25 % slower).
    batch: BatchParts,
}

impl Layout {
    /// The layout of shape `s` on `isa`: input channels across the lanes where a block of
    /// that kind fits and `input_lanes` allows it (the tests run both kinds), else output
    /// channels.
    fn new(s: &Conv2dShape, isa: Isa, slab_bytes: usize, input_lanes: bool) -> Option<Self> {
        let lanes = isa.lanes();
        if s.groups != 1 {
            return None;
        }
        let input_block = isa
            .input_lane_weight_blocks(s.kw)
            .iter()
            .find(|&&cob| s.c_out.is_multiple_of(cob))
            .filter(|_| input_lanes && s.c_in.is_multiple_of(lanes));
        let (input_lanes, cb, cob) = match input_block {
            Some(&cob) => (true, lanes, cob),
            None => {
                let cb = *isa
                    .channels_last_weight_blocks(s.kw)
                    .iter()
                    .find(|&&cb| s.c_in.is_multiple_of(cb))?;
                if !s.c_out.is_multiple_of(lanes) {
                    return None;
                }
                (false, cb, lanes)
            }
        };
        let [oh, ow] = s.out_hw();
        let hp = s.h + 2 * s.pad[0];
        let wp = s.w + 2 * s.pad[1];
        let xt_len = hp * wp * s.c_in;
        let dyt_len = if input_lanes { 0 } else { oh * ow * s.c_out };
        let image_bytes = (xt_len + dyt_len) * std::mem::size_of::<f32>();
        let co_blocks = s.c_out / cob;
        let ci_blocks = s.c_in / cb;
        let batch = BatchParts::new(s.n);
        Some(Layout {
            isa,
            lanes,
            input_lanes,
            cb,
            cob,
            co_blocks,
            ci_blocks,
            hp,
            wp,
            xt_len,
            dyt_len,
            slab: (slab_bytes / image_bytes).clamp(1, batch.per_part),
            batch,
        })
    }

    fn units(&self, s: &Conv2dShape) -> usize {
        self.co_blocks * s.kh * self.ci_blocks
    }

    /// Accumulators of one register block: [kw][cb][lanes] (output channels across the
    /// lanes) or [cob][kw][lanes] (input channels).
    fn unit_len(&self, s: &Conv2dShape) -> usize {
        s.kw * self.cb * self.cob
    }

    /// Elements of one part's slab: its channel-last images, their transposed output
    /// gradients, and one image transposed before it is padded.
    fn slab_len(&self, s: &Conv2dShape) -> usize {
        self.slab * (self.xt_len + self.dyt_len) + s.h * s.w * s.c_in
    }

    /// Elements of one part's accumulators: every block's.
    fn part_len(&self, s: &Conv2dShape) -> usize {
        self.units(s) * self.unit_len(s)
    }

    fn len(&self, s: &Conv2dShape) -> usize {
        self.batch.parts * self.part_len(s) + self.batch.workers * self.slab_len(s)
    }

    /// Register block `unit`'s (block of output channels, kernel row, block of input
    /// channels).
    fn unit_position(&self, s: &Conv2dShape, unit: usize) -> (usize, usize, usize) {
        let per_co = s.kh * self.ci_blocks;
        let rest = unit % per_co;
        (unit / per_co, rest / self.ci_blocks, rest % self.ci_blocks)
    }
}

/// The layout where `backward_weight` runs shape `s` in element type `T` on this CPU.
fn layout<T: Element>(s: &Conv2dShape) -> Option<Layout> {
    if TypeId::of::<T>() != TypeId::of::<f32>() || !conv2d_channels::enabled() {
        return None;
    }
    let [oh, ow] = s.out_hw();
    if s.n == 0 || oh * ow == 0 {
        return None;
    }
    Layout::new(s, conv2d_direct::isa()?, SLAB_BYTES, true)
}

/// Whether `backward_weight` runs shape `s` in element type `T` on this CPU: f32, no
/// groups, a kernel one or three columns wide, and channels that fill one kind of block
/// (conv2d_direct_kernels.rs `Isa::input_lane_weight_blocks`,
/// `Isa::channels_last_weight_blocks`), and no faster path for it. Both faster paths read
/// the image padded in place, where this one transposes it (BENCHMARKS.md, one core, batch
/// 128):
/// - conv2d_channels.rs's weight gradient (two or more vectors of output channels, a
///   kernel larger than 1×1): resnet-20's 32- and 64-channel shapes ran 0–7 % faster
///   there;
/// - conv2d_direct.rs's row walk (output rows of whole vectors), which reads dy in place,
///   where this path would take output lanes: it ran the stem (3 input channels: a block
///   of 9 accumulators whose 3-row transposes go one value at a time) 1.7× faster. With
///   input lanes this path takes the row walk's shapes: 16→16 on 32×32 planes ran 3–5 %
///   faster than the row walk (4.43–4.66 against 4.56–4.78 ms, three alternated rounds,
///   fourteenth session; the thirteenth had 4.58–4.78 against 4.71–4.91).
pub(super) fn applies<T: Element>(s: &Conv2dShape) -> bool {
    layout::<T>(s).is_some_and(|l| l.input_lanes || !conv2d_direct::walks_weight_rows::<T>(s))
        && !conv2d_channels::applies_to_weight_gradient::<T>(s)
}

/// Scratch elements `backward_weight` needs.
pub(super) fn scratch_len(s: &Conv2dShape) -> usize {
    debug_assert!(applies::<f32>(s));
    layout::<f32>(s)
        .expect("the channel-last weight gradient applies")
        .len(s)
}

/// dw = Σ_b dy[b] ⋆ x[b] (or dw += that with `accumulate`) for a checked shape where
/// `applies::<T>` holds.
pub(super) fn backward_weight<T: Element>(
    s: &Conv2dShape,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    accumulate: bool,
    scratch: &mut [T],
) {
    let l = layout::<T>(s).expect("the channel-last weight gradient applies");
    backward_weight_f32(
        s,
        &l,
        as_f32(x),
        as_f32(dy),
        as_f32_mut(dw),
        accumulate,
        as_f32_mut(scratch),
    );
}

fn backward_weight_f32(
    s: &Conv2dShape,
    l: &Layout,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    scratch: &mut [f32],
) {
    let [oh, ow] = s.out_hw();
    let x_img = s.c_in * s.h * s.w;
    let y_img = s.c_out * oh * ow;
    let unit_len = l.unit_len(s);
    let (accs, slabs) = scratch[..l.len(s)].split_at_mut(l.batch.parts * l.part_len(s));
    let per_worker = l.batch.per_worker();
    accs.par_chunks_mut(per_worker * l.part_len(s))
        .zip(slabs.par_chunks_mut(l.slab_len(s)))
        .enumerate()
        .for_each(|(worker, (accs, slab))| {
            let (xts, rest) = slab.split_at_mut(l.slab * l.xt_len);
            let (dyts, image) = rest.split_at_mut(l.slab * l.dyt_len);
            for (p, accs) in accs.chunks_mut(l.part_len(s)).enumerate() {
                let part = worker * per_worker + p;
                let images = l.batch.images(part, s.n);
                accs.fill(0.0);
                for s0 in images.clone().step_by(l.slab) {
                    let count = (images.end - s0).min(l.slab);
                    for (i, xt) in xts.chunks_mut(l.xt_len).take(count).enumerate() {
                        let b = s0 + i;
                        // Each slab's images overwrite the interior only: the padding zeroed
                        // for the part's first stays zero.
                        if s0 == images.start {
                            zero_padding(s, l, xt);
                        }
                        pad_channels_last(s, l, &x[b * x_img..][..x_img], image, xt);
                        if !l.input_lanes {
                            let dyt = &mut dyts[i * l.dyt_len..][..l.dyt_len];
                            transpose(&dy[b * y_img..][..y_img], s.c_out, oh * ow, dyt);
                        }
                    }
                    let xts = &xts[..count * l.xt_len];
                    for (unit, acc) in accs.chunks_mut(unit_len).enumerate() {
                        if l.input_lanes {
                            let dys = &dy[s0 * y_img..(s0 + count) * y_img];
                            input_lane_block(s, l, unit, xts, dys, acc);
                        } else {
                            let dyts = &dyts[..count * l.dyt_len];
                            weight_block(s, l, unit, xts, dyts, acc);
                        }
                    }
                }
            }
        });
    // The parts' sums added in part order, then written over or added to dw; block (cob, ki,
    // cib)'s accumulator (kj, c), lane o, is the weight of output channel cob·lanes + o,
    // input channel cib·cb + c, tap (ki, kj).
    let first = add_parts_in_order(accs, l.part_len(s));
    let taps = s.kh * s.kw;
    if l.input_lanes {
        // Block (cob, ki, cib)'s accumulator (c, kj), lane i, is the weight of output
        // channel cob·l.cob + c, input channel cib·lanes + i, tap (ki, kj).
        for (unit, acc) in first.chunks(unit_len).enumerate() {
            let (cob, ki, cib) = l.unit_position(s, unit);
            for c in 0..l.cob {
                for kj in 0..s.kw {
                    let lanes = &acc[(c * s.kw + kj) * l.lanes..][..l.lanes];
                    for (i, &v) in lanes.iter().enumerate() {
                        let co = cob * l.cob + c;
                        let ci = cib * l.lanes + i;
                        let d = &mut dw[(co * s.c_in + ci) * taps + ki * s.kw + kj];
                        *d = if accumulate { *d + v } else { v };
                    }
                }
            }
        }
        return;
    }
    for (unit, acc) in first.chunks(unit_len).enumerate() {
        let (cob, ki, cib) = l.unit_position(s, unit);
        for kj in 0..s.kw {
            for c in 0..l.cb {
                let lanes = &acc[(kj * l.cb + c) * l.lanes..][..l.lanes];
                for (o, &v) in lanes.iter().enumerate() {
                    let co = cob * l.lanes + o;
                    let ci = cib * l.cb + c;
                    let d = &mut dw[(co * s.c_in + ci) * taps + ki * s.kw + kj];
                    *d = if accumulate { *d + v } else { v };
                }
            }
        }
    }
}

/// Zeros over the padding of a channel-last image `xt` ([hp, wp, c_in]): the rows above and
/// below the image and each row's columns left and right of it (the interior is written by
/// `pad_channels_last`; zeroing it as well cost a 1×1 kernel, which has no padding, 10–20 %
/// on one core).
fn zero_padding(s: &Conv2dShape, l: &Layout, xt: &mut [f32]) {
    let row = l.wp * s.c_in;
    let (top, bottom) = (s.pad[0] * row, (s.pad[0] + s.h) * row);
    xt[..top].fill(0.0);
    xt[bottom..l.xt_len].fill(0.0);
    if s.pad[1] > 0 {
        let (left, right) = (s.pad[1] * s.c_in, (s.pad[1] + s.w) * s.c_in);
        for r in s.pad[0]..s.pad[0] + s.h {
            xt[r * row..r * row + left].fill(0.0);
            xt[r * row + right..(r + 1) * row].fill(0.0);
        }
    }
}

/// Image `xb` ([c_in, h, w]) into `xt`, [hp, wp, c_in] with the padding left as it is
/// (zero), by way of `image` ([h·w, c_in]).
fn pad_channels_last(s: &Conv2dShape, l: &Layout, xb: &[f32], image: &mut [f32], xt: &mut [f32]) {
    transpose(xb, s.c_in, s.h * s.w, image);
    let row = s.w * s.c_in;
    for (r, src) in image[..s.h * row].chunks(row).enumerate() {
        let at = ((r + s.pad[0]) * l.wp + s.pad[1]) * s.c_in;
        xt[at..at + row].copy_from_slice(src);
    }
}

/// Where a block of kernel row `ki` and input-channel block `cib` reads a channel-last
/// image: the offset of its first input (output position (0, 0), first tap, first channel)
/// and the steps between output rows, output columns and taps. Asserts that the block's
/// last input (last position, last tap, last channel) lies inside the image.
fn input_geometry(s: &Conv2dShape, l: &Layout, ki: usize, cib: usize) -> (usize, [usize; 3]) {
    let [oh, ow] = s.out_hw();
    let steps = [
        s.stride[0] * l.wp * s.c_in,
        s.stride[1] * s.c_in,
        s.dilation[1] * s.c_in,
    ];
    let x0 = ki * s.dilation[0] * l.wp * s.c_in + cib * l.cb;
    let last = x0 + (oh - 1) * steps[0] + (ow - 1) * steps[1] + (s.kw - 1) * steps[2] + l.cb - 1;
    assert!(last < l.xt_len && ki * s.dilation[0] + (oh - 1) * s.stride[0] < l.hp);
    (x0, steps)
}

/// Adds every output position of the slab's images (`xts`, channel-last and padded, and
/// `dyts`, transposed; as many images as `xts` holds) to register block `unit`'s
/// accumulators `acc`.
fn weight_block(
    s: &Conv2dShape,
    l: &Layout,
    unit: usize,
    xts: &[f32],
    dyts: &[f32],
    acc: &mut [f32],
) {
    let [_, ow] = s.out_hw();
    let (cob, ki, cib) = l.unit_position(s, unit);
    let images = xts.len() / l.xt_len;
    let (x0, x_steps) = input_geometry(s, l, ki, cib);
    let Some(rows) = rows_inside(s, ki) else {
        return;
    };
    let x0 = x0 + rows.start * x_steps[0];
    let dy0 = rows.start * ow * s.c_out + cob * l.lanes;
    // Bounds the unchecked reads and writes of the kernel below (with `input_geometry`,
    // which bounds every row's).
    assert!(images >= 1 && xts.len() == images * l.xt_len);
    assert!(dyts.len() == images * l.dyt_len && cob * l.lanes + l.lanes <= s.c_out);
    assert!(acc.len() >= l.unit_len(s));
    let args = ChannelsLastCorrelation {
        x: xts[x0..].as_ptr(),
        x_image: l.xt_len,
        x_steps,
        dy: dyts[dy0..].as_ptr(),
        dy_position: s.c_out,
        dy_image: l.dyt_len,
        images,
        out_hw: [rows.len(), ow],
        edges: edge_masks(s, 0..s.kw),
        acc: acc.as_mut_ptr(),
    };
    // SAFETY: `conv2d_direct::isa` found the instruction set present and `Layout::new` took
    // a block it has; the asserts above bound every access.
    unsafe { kernels::channels_last_weight(l.isa, l.cb, s.kw, &args) };
}

/// Adds every output position of the slab's images (`xts`, channel-last and padded; `dys`,
/// their output gradients in place, [c_out, oh, ow] each) to input-lane register block
/// `unit`'s accumulators `acc`.
fn input_lane_block(
    s: &Conv2dShape,
    l: &Layout,
    unit: usize,
    xts: &[f32],
    dys: &[f32],
    acc: &mut [f32],
) {
    let [oh, ow] = s.out_hw();
    let (cob, ki, cib) = l.unit_position(s, unit);
    let images = xts.len() / l.xt_len;
    let (x0, x_steps) = input_geometry(s, l, ki, cib);
    let Some(rows) = rows_inside(s, ki) else {
        return;
    };
    let x0 = x0 + rows.start * x_steps[0];
    let y_img = s.c_out * oh * ow;
    let dy0 = cob * l.cob * oh * ow + rows.start * ow;
    // Bounds the unchecked reads and writes of the kernel below (with `input_geometry`,
    // which bounds every row's).
    assert!(images >= 1 && xts.len() == images * l.xt_len);
    assert!(dys.len() == images * y_img && (cob + 1) * l.cob <= s.c_out);
    assert!(acc.len() >= l.unit_len(s));
    let args = InputLaneCorrelation {
        x: xts[x0..].as_ptr(),
        x_image: l.xt_len,
        x_steps,
        dy: dys[dy0..].as_ptr(),
        dy_plane: oh * ow,
        dy_image: y_img,
        images,
        out_hw: [rows.len(), ow],
        edges: edge_masks(s, 0..s.kw),
        acc: acc.as_mut_ptr(),
    };
    // SAFETY: `conv2d_direct::isa` found the instruction set present and `Layout::new` took
    // a block it has; the asserts above bound every access.
    unsafe { kernels::input_lane_weight(l.isa, l.cob, s.kw, &args) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(
        n: usize,
        c_in: usize,
        hw: [usize; 2],
        c_out: usize,
        k: [usize; 2],
        stride: usize,
        pad: usize,
    ) -> Conv2dShape {
        Conv2dShape {
            n,
            c_in,
            h: hw[0],
            w: hw[1],
            c_out,
            kh: k[0],
            kw: k[1],
            stride: [stride, stride],
            pad: [pad, pad],
            dilation: [1, 1],
            groups: 1,
        }
    }

    fn value(i: usize, salt: usize) -> f32 {
        ((i * 7919 + salt) % 1009) as f32 / 1009.0 - 0.5
    }

    /// dw in f64 from the definition, the f32 inputs widened.
    fn definition(s: &Conv2dShape, x: &[f32], dy: &[f32]) -> Vec<f64> {
        let [oh, ow] = s.out_hw();
        let mut dw = vec![0f64; s.w_len()];
        for b in 0..s.n {
            for co in 0..s.c_out {
                for ci in 0..s.c_in {
                    for ki in 0..s.kh {
                        for kj in 0..s.kw {
                            let mut sum = 0f64;
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    let r = (oy * s.stride[0] + ki * s.dilation[0]) as isize
                                        - s.pad[0] as isize;
                                    let c = (ox * s.stride[1] + kj * s.dilation[1]) as isize
                                        - s.pad[1] as isize;
                                    if r < 0 || c < 0 || r >= s.h as isize || c >= s.w as isize {
                                        continue;
                                    }
                                    let xv = x
                                        [((b * s.c_in + ci) * s.h + r as usize) * s.w + c as usize];
                                    let dv = dy[((b * s.c_out + co) * oh + oy) * ow + ox];
                                    sum += xv as f64 * dv as f64;
                                }
                            }
                            dw[((co * s.c_in + ci) * s.kh + ki) * s.kw + kj] += sum;
                        }
                    }
                }
            }
        }
        dw
    }

    fn run(s: &Conv2dShape, l: &Layout, x: &[f32], dy: &[f32], dw: &mut [f32], acc: bool) {
        let mut scratch = vec![f32::NAN; l.len(s)];
        backward_weight_f32(s, l, x, dy, dw, acc, &mut scratch);
    }

    /// Every block this CPU has, of both kinds (input or output channels across the lanes),
    /// on awkward shapes: 3×3 at stride 1 and 2, a dilated and a 5×3 kernel, 1×1 at stride 1
    /// and 2, rows of 28 and 7, several blocks of output channels, padding of 0 to 2; with
    /// and without accumulation, against the f64 definition.
    #[test]
    fn matches_the_definition_with_every_block() {
        let Some(isa) = conv2d_direct::isa() else {
            eprintln!("no direct kernels on this CPU; nothing to compare");
            return;
        };
        let v = isa.lanes();
        let mut shapes = vec![
            shape(3, 16, [28, 28], v, [3, 3], 1, 1),
            shape(2, 8, [9, 13], 3 * v, [3, 3], 2, 1),
            shape(2, 3, [7, 7], v, [3, 3], 1, 1),
            shape(1, 12, [6, 11], 2 * v, [3, 3], 1, 2),
            shape(2, 16, [14, 14], 2 * v, [1, 1], 2, 0),
            shape(3, 32, [7, 5], v, [1, 1], 1, 0),
            shape(2, 8, [5, 9], v, [1, 1], 2, 1),
            shape(2, 6, [8, 6], v, [5, 3], 1, 1),
            shape(2, 32, [9, 13], 24, [3, 3], 2, 1),
            shape(2, 16, [6, 10], 2 * v, [5, 3], 1, 2),
        ];
        let mut dilated = shape(2, 8, [10, 12], v, [3, 3], 1, 2);
        dilated.dilation = [2, 2];
        shapes.push(dilated);
        let mut blocks = std::collections::BTreeSet::new();
        let layouts = shapes.iter().flat_map(|s| {
            [true, false]
                .into_iter()
                .filter_map(|input| Layout::new(s, isa, SLAB_BYTES, input))
                .map(move |l| (s, l))
        });
        for (s, l) in layouts {
            blocks.insert((
                l.input_lanes,
                if l.input_lanes { l.cob } else { l.cb },
                s.kw,
            ));
            let x: Vec<f32> = (0..s.x_len()).map(|i| value(i, 1)).collect();
            let dy: Vec<f32> = (0..s.y_len()).map(|i| value(i, 2)).collect();
            let want = definition(s, &x, &dy);
            let [oh, ow] = s.out_hw();
            let tol = 4e-7 * (s.n * oh * ow) as f64;
            for accumulate in [false, true] {
                let dw0: Vec<f32> = (0..s.w_len()).map(|i| value(i, 3)).collect();
                let mut dw = dw0.clone();
                run(s, &l, &x, &dy, &mut dw, accumulate);
                for (i, (&got, &w)) in dw.iter().zip(&want).enumerate() {
                    let w = if accumulate { w + dw0[i] as f64 } else { w };
                    assert!(
                        (got as f64 - w).abs() <= tol * (1.0 + w.abs()),
                        "{s:?}, input lanes {}, accumulate {accumulate}, weight {i}: {got} \
                         against {w}",
                        l.input_lanes
                    );
                }
            }
        }
        let all: std::collections::BTreeSet<_> = [3, 1]
            .into_iter()
            .flat_map(|kw| {
                let output = isa.channels_last_weight_blocks(kw).iter();
                let input = isa.input_lane_weight_blocks(kw).iter();
                output
                    .map(move |&cb| (false, cb, kw))
                    .chain(input.map(move |&co| (true, co, kw)))
            })
            .collect();
        assert_eq!(blocks, all, "every block of {isa:?} ran");
    }

    /// The same bits whatever the slab (one image at a time, a ragged last slab, a whole
    /// part) and whatever the number of threads, with either kind of lanes; the batch of 19
    /// images in 7 parts of 3 and a last of 1.
    #[test]
    fn bits_do_not_depend_on_the_slab_or_the_threads() {
        let Some(isa) = conv2d_direct::isa() else {
            eprintln!("no direct kernels on this CPU; nothing to compare");
            return;
        };
        for input in [true, false] {
            bits_do_not_depend_on_the_slab_or_the_threads_with(isa, input);
        }
    }

    fn bits_do_not_depend_on_the_slab_or_the_threads_with(isa: Isa, input: bool) {
        let s = shape(19, 16, [9, 12], 2 * isa.lanes(), [3, 3], 1, 1);
        let x: Vec<f32> = (0..s.x_len()).map(|i| value(i, 4)).collect();
        let dy: Vec<f32> = (0..s.y_len()).map(|i| value(i, 5)).collect();
        let Some(whole) = Layout::new(&s, isa, usize::MAX, input) else {
            return;
        };
        assert_eq!(
            (whole.batch.per_part, whole.batch.parts, whole.slab),
            (3, 7, 3)
        );
        let mut want = vec![f32::NAN; s.w_len()];
        run(&s, &whole, &x, &dy, &mut want, false);
        let image_bytes = (whole.xt_len + whole.dyt_len) * 4;
        for images in [1, 2] {
            for threads in [1, 3] {
                let l = Layout::new(&s, isa, images * image_bytes, input).unwrap();
                assert_eq!(l.slab, images);
                let mut got = vec![f32::NAN; s.w_len()];
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| run(&s, &l, &x, &dy, &mut got, false));
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "slab of {images}, {threads} threads, input lanes {input}"
                );
            }
        }
    }
}
