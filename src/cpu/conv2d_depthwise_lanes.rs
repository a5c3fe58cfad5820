//! Depthwise convolutions in f32 with the channels across the vector lanes: for one image,
//! a block of 16 channels (one filter each) is transposed into a zero-padded tile of
//! [rows, columns, 16], so that every tap of every output position is one 16-lane load,
//! multiply and add, whatever the plane's width or the stride; the result is transposed
//! back. conv2d_depthwise.rs's wide grid takes what this does not (f64, channel
//! multipliers, channel counts that are not multiples of 16, and stride-1 planes of 12×12
//! outputs or more, where it is faster).
//!
//! Why: along a plane's rows, a 7×7 output at stride 2 kept its vectors half idle, and each
//! plane paid for its copies into phase planes; PyTorch's channels_last kernels, which put
//! the channels across the lanes, ran 2.5–5× faster than the wide grid (BENCHMARKS.md,
//! sixteenth session). The transposes go through `cpu::transpose` (register tiles).
//!
//! Orders: the forward sums the taps in (ki, kj) order from zero, as the wide grid does (the
//! same bits); the input gradient adds, tap by tap, each output position's share in order;
//! the weight gradient sums the images in order, and within an image the positions in
//! order, each channel in its own lane. None depends on the thread count.

use rayon::prelude::*;

use crate::cpu::conv2d_depthwise::{MAX_TAPS, parts};
use crate::cpu::transpose::transpose;
use crate::ops::Conv2dShape;

/// Channels per block: the lanes.
const LANES: usize = 16;

/// One position's 16 channels.
type Lanes = [f32; LANES];

/// Whether these kernels run shape `s`: one channel per group and per filter (no
/// multiplier), whole blocks of 16 channels, at most `MAX_TAPS` taps, and a stride above 1
/// or fewer than `MAX_WIDE_OUTPUTS` outputs per plane. Where neither holds the wide grid
/// is faster: its runs are long and need no transposes, which cost these kernels a third
/// of their time (one core, batch 128: 32 channels at 28×28, stride 1, 2.8–2.9 against
/// 4.5–5.1 ms forward, and 64 at 14×14 1.7 against 2.1–2.3; at 7×7 1.0 against 1.5–1.6,
/// and at stride 2 from 14×14 1.7 against 3.0).
pub(super) fn applies(s: &Conv2dShape) -> bool {
    let [oh, ow] = s.out_hw();
    s.groups > 1
        && s.c_in == s.groups
        && s.c_out == s.groups
        && s.c_in.is_multiple_of(LANES)
        && s.kh * s.kw <= MAX_TAPS
        && (s.stride != [1, 1] || oh * ow < MAX_WIDE_OUTPUTS)
}

/// Outputs per plane from which a stride-1 plane goes to the wide grid (12×12).
const MAX_WIDE_OUTPUTS: usize = 144;

/// The padded tile's rows and columns.
fn tile_hw(s: &Conv2dShape) -> [usize; 2] {
    [s.h + 2 * s.pad[0], s.w + 2 * s.pad[1]]
}

/// Values of one task's scratch: the tile, and two buffers of a block's planes transposed.
fn part_len(s: &Conv2dShape) -> usize {
    let [hp, wp] = tile_hw(s);
    let [oh, ow] = s.out_hw();
    LANES * (hp * wp + 2 * (s.h * s.w).max(oh * ow))
}

/// Scratch values `forward` and `backward_input` need.
pub(super) fn scratch_len(s: &Conv2dShape) -> usize {
    parts(s.n * s.c_in / LANES) * part_len(s)
}

/// Scratch values `backward_weight` needs.
pub(super) fn weight_scratch_len(s: &Conv2dShape) -> usize {
    parts(s.c_in / LANES) * part_len(s)
}

/// The block's weights as one 16-lane vector per tap.
fn block_weights(s: &Conv2dShape, w: &[f32], block: usize) -> [Lanes; MAX_TAPS] {
    let taps = s.kh * s.kw;
    let mut out = [[0.0; LANES]; MAX_TAPS];
    for (c, filter) in w[block * LANES * taps..][..LANES * taps]
        .chunks_exact(taps)
        .enumerate()
    {
        for (tap, &v) in out.iter_mut().zip(filter) {
            tap[c] = v;
        }
    }
    out
}

/// Each tap's offset in the tile from its output position's first tap, in positions, and
/// where output (oy, ox)'s first tap reads: worked out once, not per tap and position.
fn tap_offsets(s: &Conv2dShape) -> [usize; MAX_TAPS] {
    let wp = tile_hw(s)[1];
    let mut out = [0; MAX_TAPS];
    for (t, offset) in out[..s.kh * s.kw].iter_mut().enumerate() {
        *offset = (t / s.kw) * s.dilation[0] * wp + (t % s.kw) * s.dilation[1];
    }
    out
}

/// The tile position of output (oy, ox)'s first tap.
#[inline(always)]
fn origin(s: &Conv2dShape, wp: usize, oy: usize, ox: usize) -> usize {
    oy * s.stride[0] * wp + ox * s.stride[1]
}

/// Lays the block's input planes (16 × h·w, `planes`) into the tile's interior through
/// `buffer`; the padding is zero already.
fn fill_tile(s: &Conv2dShape, planes: &[f32], buffer: &mut [f32], tile: &mut [f32]) {
    let [_, wp] = tile_hw(s);
    let hw = s.h * s.w;
    transpose(planes, LANES, hw, buffer);
    let row = s.w * LANES;
    for (iy, src) in buffer[..hw * LANES].chunks_exact(row).enumerate() {
        let at = ((iy + s.pad[0]) * wp + s.pad[1]) * LANES;
        tile[at..at + row].copy_from_slice(src);
    }
}

/// The tile's position p as a vector.
#[inline(always)]
fn lanes_at(v: &[f32], p: usize) -> &Lanes {
    v[p * LANES..][..LANES].try_into().expect("16 lanes")
}

/// `lanes_at` for writing.
#[inline(always)]
fn lanes_at_mut(v: &mut [f32], p: usize) -> &mut Lanes {
    (&mut v[p * LANES..][..LANES]).try_into().expect("16 lanes")
}

/// y = conv(x, w), or y += conv(x, w) with `accumulate`, for a checked shape where
/// `applies` holds; `scratch` holds at least `scratch_len` values.
pub(super) fn forward(
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    scratch: &mut [f32],
    accumulate: bool,
) {
    let [oh, ow] = s.out_hw();
    let (hw, ohw, blocks) = (s.h * s.w, oh * ow, s.c_in / LANES);
    let units = s.n * blocks;
    if ohw == 0 || units == 0 {
        return;
    }
    let per = units.div_ceil(parts(units));
    let [hp, wp] = tile_hw(s);
    y[..s.y_len()]
        .par_chunks_mut(per * LANES * ohw)
        .zip(scratch.par_chunks_mut(part_len(s)))
        .enumerate()
        .for_each(|(part, (yp, part_scratch))| {
            let (tile, rest) = part_scratch.split_at_mut(hp * wp * LANES);
            let (buffer, out) = rest.split_at_mut(rest.len() / 2);
            tile.fill(0.0);
            for (i, yblock) in yp.chunks_exact_mut(LANES * ohw).enumerate() {
                let unit = part * per + i;
                let block = unit % blocks;
                let planes = &x[unit * LANES * hw..][..LANES * hw];
                fill_tile(s, planes, buffer, tile);
                let weights = block_weights(s, w, block);
                forward_block(s, tile, &weights[..s.kh * s.kw], out);
                if accumulate {
                    transpose(&out[..ohw * LANES], ohw, LANES, buffer);
                    for (v, &add) in yblock.iter_mut().zip(&buffer[..LANES * ohw]) {
                        *v += add;
                    }
                } else {
                    transpose(&out[..ohw * LANES], ohw, LANES, yblock);
                }
            }
        });
}

multiversion! {
    /// out[(oy, ox)] = Σ_taps w[t] ⊙ tile[tap position], each position's 16 channels.
    fn forward_block = forward_block_kernel(s: &Conv2dShape, tile: &[f32], weights: &[Lanes], out: &mut [f32]) -> ();
}

#[inline(always)]
fn forward_block_kernel(s: &Conv2dShape, tile: &[f32], weights: &[Lanes], out: &mut [f32]) {
    let [oh, ow] = s.out_hw();
    let wp = tile_hw(s)[1];
    let offsets = tap_offsets(s);
    for oy in 0..oh {
        for ox in 0..ow {
            let at = origin(s, wp, oy, ox);
            let mut acc = [0.0f32; LANES];
            for (wt, &offset) in weights.iter().zip(&offsets) {
                let v = lanes_at(tile, at + offset);
                for ((a, &wv), &xv) in acc.iter_mut().zip(wt).zip(v) {
                    *a += wv * xv;
                }
            }
            *lanes_at_mut(out, oy * ow + ox) = acc;
        }
    }
}

/// dx = ∂L/∂x (overwrite), or dx += it with `accumulate`, for a checked shape where
/// `applies` holds; `scratch` holds at least `scratch_len` values.
pub(super) fn backward_input(
    s: &Conv2dShape,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
    accumulate: bool,
) {
    let [oh, ow] = s.out_hw();
    let (hw, ohw, blocks) = (s.h * s.w, oh * ow, s.c_in / LANES);
    let units = s.n * blocks;
    if hw == 0 || units == 0 {
        return;
    }
    let per = units.div_ceil(parts(units));
    let [hp, wp] = tile_hw(s);
    dx[..s.x_len()]
        .par_chunks_mut(per * LANES * hw)
        .zip(scratch.par_chunks_mut(part_len(s)))
        .enumerate()
        .for_each(|(part, (dxp, part_scratch))| {
            let (tile, rest) = part_scratch.split_at_mut(hp * wp * LANES);
            let (buffer, grads) = rest.split_at_mut(rest.len() / 2);
            for (i, dxblock) in dxp.chunks_exact_mut(LANES * hw).enumerate() {
                let unit = part * per + i;
                let block = unit % blocks;
                let dyblock = &dy[unit * LANES * ohw..][..LANES * ohw];
                transpose(dyblock, LANES, ohw, grads);
                let weights = block_weights(s, w, block);
                tile.fill(0.0);
                input_gradient_block(s, &grads[..ohw * LANES], &weights[..s.kh * s.kw], tile);
                // The tile's interior, position-major, then back to planes.
                let row = s.w * LANES;
                for (iy, dst) in buffer[..hw * LANES].chunks_exact_mut(row).enumerate() {
                    let at = ((iy + s.pad[0]) * wp + s.pad[1]) * LANES;
                    dst.copy_from_slice(&tile[at..at + row]);
                }
                if accumulate {
                    transpose(&buffer[..hw * LANES], hw, LANES, grads);
                    for (v, &add) in dxblock.iter_mut().zip(&grads[..LANES * hw]) {
                        *v += add;
                    }
                } else {
                    transpose(&buffer[..hw * LANES], hw, LANES, dxblock);
                }
            }
        });
}

multiversion! {
    /// tile[tap position] += w[t] ⊙ grads[(oy, ox)], tap by tap, positions in order.
    fn input_gradient_block = input_gradient_block_kernel(s: &Conv2dShape, grads: &[f32], weights: &[Lanes], tile: &mut [f32]) -> ();
}

#[inline(always)]
fn input_gradient_block_kernel(
    s: &Conv2dShape,
    grads: &[f32],
    weights: &[Lanes],
    tile: &mut [f32],
) {
    let [oh, ow] = s.out_hw();
    let wp = tile_hw(s)[1];
    for (wt, &offset) in weights.iter().zip(&tap_offsets(s)) {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = lanes_at(grads, oy * ow + ox);
                let d = lanes_at_mut(tile, origin(s, wp, oy, ox) + offset);
                for ((dv, &wv), &gv) in d.iter_mut().zip(wt).zip(g) {
                    *dv += wv * gv;
                }
            }
        }
    }
}

/// dw = Σ_n dy[n] ⋆ x[n], or dw += that with `accumulate`, for a checked shape where
/// `applies` holds; `scratch` holds at least `weight_scratch_len` values.
pub(super) fn backward_weight(
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    scratch: &mut [f32],
) {
    let [oh, ow] = s.out_hw();
    let (hw, ohw, blocks, taps) = (s.h * s.w, oh * ow, s.c_in / LANES, s.kh * s.kw);
    if blocks == 0 || taps == 0 {
        return;
    }
    let per = blocks.div_ceil(parts(blocks));
    let [hp, wp] = tile_hw(s);
    dw[..s.w_len()]
        .par_chunks_mut(per * LANES * taps)
        .zip(scratch.par_chunks_mut(part_len(s)))
        .enumerate()
        .for_each(|(part, (dwp, part_scratch))| {
            let (tile, rest) = part_scratch.split_at_mut(hp * wp * LANES);
            let (buffer, grads) = rest.split_at_mut(rest.len() / 2);
            tile.fill(0.0);
            for (i, dwblock) in dwp.chunks_exact_mut(LANES * taps).enumerate() {
                let block = part * per + i;
                let mut sums = [[0.0f32; LANES]; MAX_TAPS];
                for n in 0..s.n {
                    let unit = n * blocks + block;
                    fill_tile(s, &x[unit * LANES * hw..][..LANES * hw], buffer, tile);
                    let dyblock = &dy[unit * LANES * ohw..][..LANES * ohw];
                    transpose(dyblock, LANES, ohw, grads);
                    weight_gradient_block(s, tile, &grads[..ohw * LANES], &mut sums[..taps]);
                }
                for (c, filter) in dwblock.chunks_exact_mut(taps).enumerate() {
                    for (d, tap) in filter.iter_mut().zip(&sums) {
                        *d = if accumulate { *d + tap[c] } else { tap[c] };
                    }
                }
            }
        });
}

multiversion! {
    /// sums[t] += Σ_(oy, ox) grads[(oy, ox)] ⊙ tile[tap position], positions in order.
    fn weight_gradient_block = weight_gradient_block_kernel(s: &Conv2dShape, tile: &[f32], grads: &[f32], sums: &mut [Lanes]) -> ();
}

#[inline(always)]
fn weight_gradient_block_kernel(s: &Conv2dShape, tile: &[f32], grads: &[f32], sums: &mut [Lanes]) {
    let [oh, ow] = s.out_hw();
    let wp = tile_hw(s)[1];
    for (sum, &offset) in sums.iter_mut().zip(&tap_offsets(s)) {
        let mut acc = *sum;
        for oy in 0..oh {
            for ox in 0..ow {
                let g = lanes_at(grads, oy * ow + ox);
                let v = lanes_at(tile, origin(s, wp, oy, ox) + offset);
                for ((a, &gv), &xv) in acc.iter_mut().zip(g).zip(v) {
                    *a += gv * xv;
                }
            }
        }
        *sum = acc;
    }
}
