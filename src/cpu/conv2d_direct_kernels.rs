//! The register blocks of the direct stride-1 convolutions (conv2d_direct.rs), written once
//! over a vector type and compiled for each instruction set they run on: AVX-512F (16 f32
//! lanes, 32 registers; the forward and the weight gradient), AVX2 + FMA (8 lanes, 16
//! registers; the forward only) and, on aarch64, NEON (4 lanes, 32 registers; the forward
//! and the weight gradient, with AVX-512's register blocks).
//!
//! Each body is `#[inline(always)]` and generic over `Vector`; the entry points are
//! `#[target_feature]` functions that instantiate it, so the intrinsics inline into code
//! compiled for the instruction set and the accumulators, indexed by constants only once
//! the loops over them unroll, stay in registers. The block sizes fill the register file:
//! - forward: CB output channels × PV vectors of positions, CB·PV accumulators plus PV
//!   loaded vectors and one broadcast weight (AVX-512: 8 × up to 3 → 28 registers; AVX2:
//!   6 × up to 2 → 15). On the development machine's core, timed on cache-resident data,
//!   AVX2 ran 4 × 3 at 69–70 GFLOP/s (16 registers: the compiler spilled), 4 × 2 at
//!   101–109, 6 × 2 at 116, the AVX-512 block's rate;
//! - weight gradient (AVX-512 only): 2 output channels × up to 9 taps of lane
//!   accumulators, plus 2 loaded rows of dy and one shifted plane (21 registers). With
//!   AVX2's 16 registers one channel × 9 taps fits, and measured slower than im2col + GEMM
//!   (32→32 3×3 on 16×16 planes: 49–53 GFLOP/s against 75–79, in a bench that still
//!   allocated per run, which cost the AVX-512 weight kernel up to a quarter of its rate),
//!   so AVX2 CPUs keep the GEMM for it;
//! - channel-last weight gradient (conv2d_weight_nhwc.rs): input lanes, 8 output channels ×
//!   3 taps (or 16 × 1) of accumulators plus 3 loaded input vectors and one broadcast
//!   (AVX-512: 28 registers); output lanes, up to 8 input channels × 3 taps plus one loaded
//!   vector of output gradients, each input broadcast from memory into its FMA (AVX-512:
//!   25; AVX2: up to 4 × 3, 13 of 16).
//!
//! NEON has AVX-512's 32 registers, so it takes the same blocks (8 × up to 3 vectors; 2 × 9
//! taps) over vectors a quarter as wide. Its kernels are checked against the f64 definition
//! under emulation (qemu-aarch64); their speed on real aarch64 cores is not measured yet.

// Targets with none of these instruction sets compile the bodies without an entry point.
#![cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]

#[cfg(target_arch = "aarch64")]
use std::arch::aarch64::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output channels per forward register block, for each instruction set: the weights are
/// packed for it (conv2d_direct.rs) and the block computes that many.
const AVX512_CHANNELS: usize = 8;
const AVX2_CHANNELS: usize = 6;
const NEON_CHANNELS: usize = 8;

/// Taps per weight-gradient register block: a 3×3 kernel in one block.
pub(super) const WEIGHT_TAPS: usize = 9;
/// Output channels per weight-gradient register block.
pub(super) const WEIGHT_CHANNELS: usize = 2;
/// Slots of each weight-gradient accumulator: AVX-512's lanes. A narrower vector uses the
/// first of them (the rest stay zero) and `reduce_lanes` adds those.
pub(super) const WEIGHT_LANES: usize = 16;

/// The instruction sets the direct kernels are compiled for, fastest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    Avx512,
    Avx2,
    Neon,
}

impl Isa {
    /// f32 lanes per vector.
    pub(super) fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
            Isa::Neon => 4,
        }
    }

    /// Output channels per forward register block.
    pub(super) fn forward_channels(self) -> usize {
        match self {
            Isa::Avx512 => AVX512_CHANNELS,
            Isa::Avx2 => AVX2_CHANNELS,
            Isa::Neon => NEON_CHANNELS,
        }
    }

    /// Vectors of positions per forward register block, at most.
    pub(super) fn max_vectors(self) -> usize {
        match self {
            Isa::Avx512 | Isa::Neon => 3,
            Isa::Avx2 => 2,
        }
    }

    /// The channel-block kernel's shape for output-channel blocks of `channels` (a
    /// multiple of the lanes): (vectors of channels CV, positions P), CV·P accumulators
    /// plus CV loaded weight vectors and one broadcast input. None where no block of this
    /// instruction set is that wide.
    pub(super) fn channel_block(self, channels: usize) -> Option<(usize, usize)> {
        match (self, channels / self.lanes()) {
            (Isa::Avx512 | Isa::Neon, 4) => Some((4, 6)),
            (Isa::Avx512 | Isa::Neon, 2) => Some((2, 12)),
            // One vector runs along rows only (`channel_row_block`); its P here sizes the
            // tile.
            (Isa::Avx512, 1) => Some((1, 12)),
            (Isa::Avx2, 2) => Some((2, 6)),
            _ => None,
        }
    }

    /// Positions per row block of the channel kernel (`channels_row`) for `cv` vectors of
    /// output channels and output rows of `ow` columns, where this instruction set has one:
    /// for two vectors the widest of 8, 7, 6 that divides ow, for four 4 (the block holds
    /// 3·CV weight vectors and CV·P accumulators); for one (16 channels on AVX-512) the
    /// widest of 16, 14, 12 (P accumulators and one weight vector, `channels_row_taps`).
    pub(super) fn channel_row_block(self, cv: usize, ow: usize) -> Option<usize> {
        match (self, cv) {
            (Isa::Avx512 | Isa::Neon, 2) => [8, 7, 6].into_iter().find(|p| ow.is_multiple_of(*p)),
            (Isa::Avx512 | Isa::Neon, 4) => [4].into_iter().find(|p| ow.is_multiple_of(*p)),
            (Isa::Avx512, 1) => [16, 14, 12].into_iter().find(|p| ow.is_multiple_of(*p)),
            _ => None,
        }
    }

    /// The channel-last weight gradient's blocks (conv2d_weight_nhwc.rs) for a kernel `kw`
    /// columns wide, widest first: input channels per block CB, each with kw taps, so
    /// kw·CB accumulators plus one loaded vector of output gradients (AVX-512: up to 24 of
    /// 32 registers; AVX2: up to 12 of 16). Empty where this instruction set has none.
    pub(super) fn channels_last_weight_blocks(self, kw: usize) -> &'static [usize] {
        match (self, kw) {
            (Isa::Avx512, 3) => &[8, 4, 3],
            (Isa::Avx512, 1) => &[16, 8],
            (Isa::Avx2, 3) => &[4, 3],
            (Isa::Avx2, 1) => &[8],
            _ => &[],
        }
    }

    /// The input-lane weight gradient's blocks (conv2d_weight_nhwc.rs) for a kernel `kw`
    /// columns wide, widest first: output channels per block CO, each with kw taps over one
    /// vector of input channels, so CO·kw accumulators plus kw loaded input vectors and one
    /// broadcast output gradient. Empty where this instruction set has none.
    pub(super) fn input_lane_weight_blocks(self, kw: usize) -> &'static [usize] {
        match (self, kw) {
            (Isa::Avx512, 3) => &[8],
            (Isa::Avx512, 1) => &[16],
            _ => &[],
        }
    }

    /// Whether the weight gradient has a kernel for it.
    pub(super) fn has_weight_gradient(self) -> bool {
        matches!(self, Isa::Avx512 | Isa::Neon)
    }

    /// Whether this CPU has it.
    pub(super) fn present(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            // Another architecture's.
            _ => false,
        }
    }

    /// Its name, as `GRADSCOPE_CONV_DIRECT` takes it and `gradscope bench` prints it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
        }
    }
}

/// One forward register block's operands: `cin` planes `plane` apart from `x`, taps
/// `taps[0]`×`taps[1]` whose shifts are `steps` (rows, columns) apart, CB weights per step
/// from `w` (CB = `Isa::forward_channels`), CB output rows `out_stride` apart from `out`.
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

/// Positions per channel-block register block, at most (`Isa::channel_block`).
pub(super) const CHANNEL_POSITIONS: usize = 12;

/// One channel-block register block's operands (conv2d_channels.rs): the output channels of
/// the block lie across the vector lanes (CV vectors of them), and P output positions, whose
/// first taps read `x + offsets[p]`, are broadcast one value at a time. `cin` planes `plane`
/// apart, taps `taps[0]`×`taps[1]` whose shifts are `steps` (rows, columns) apart, the
/// block's CV·LANES weights of each (ci, ki, kj) side by side from `w`; position p's
/// channels are written to `out + p·out_stride`.
pub(super) struct ChannelBlock {
    pub x: *const f32,
    pub offsets: [usize; CHANNEL_POSITIONS],
    pub plane: usize,
    pub cin: usize,
    pub taps: [usize; 2],
    pub steps: [usize; 2],
    pub w: *const f32,
    pub out: *mut f32,
    pub out_stride: usize,
    /// `channels_row` only: weights per input channel (the block may start past the first
    /// kernel rows and stop before the last), and whether the row's first and last pixels
    /// are padding whose products it skips.
    pub ci_weights: usize,
    pub skip: [bool; 2],
}

/// One channel-block weight-gradient register block's operands (conv2d_channels.rs): CV
/// vectors of output channels × R (input channel, tap) pairs, summed over every output
/// position of `images` images. Pair r of image i reads `x + i·x_image + pairs[r]` shifted
/// by the position's offset (rows `steps[0]`, columns `steps[1]` apart, `out_hw` of them);
/// the block's output gradients lie position-major at `dy` (positions `dy_position` apart,
/// images `dy_image` apart). The accumulators, [R][CV·LANES], are read from and written
/// back to `acc`. `edges` are the pairs (bit r: pair r) whose input at each output row's
/// first and last position is padding: the block skips those products.
pub(super) struct ChannelCorrelation {
    pub x: *const f32,
    pub pairs: [usize; CHANNEL_POSITIONS],
    pub x_image: usize,
    pub dy: *const f32,
    pub dy_position: usize,
    pub dy_image: usize,
    pub images: usize,
    pub out_hw: [usize; 2],
    pub steps: [usize; 2],
    pub edges: [u32; 2],
    pub acc: *mut f32,
}

/// One channel-last weight-gradient register block's operands (conv2d_weight_nhwc.rs): one
/// vector of output channels across the lanes × CB input channels × KW taps of one kernel
/// row, summed over every output position of `images` images. The input lies channel-last
/// (each padded pixel's channels side by side): the block's first input channel at output
/// position (0, 0) and its first tap is `x`, images `x_image` apart, and `x_steps` are the
/// steps between output rows, output columns and the row's taps. The output gradients lie
/// position-major at `dy` (positions `dy_position` apart, images `dy_image` apart). The
/// accumulators, [KW][CB][LANES], are read from and written back to `acc`. `edges` are the
/// taps (bit t: tap t) whose input at each output row's first and last position is
/// padding: the block skips those products.
pub(super) struct ChannelsLastCorrelation {
    pub x: *const f32,
    pub x_image: usize,
    pub x_steps: [usize; 3],
    pub dy: *const f32,
    pub dy_position: usize,
    pub dy_image: usize,
    pub images: usize,
    pub out_hw: [usize; 2],
    pub edges: [u32; 2],
    pub acc: *mut f32,
}

/// One input-lane weight-gradient register block's operands (conv2d_weight_nhwc.rs): one
/// vector of input channels across the lanes × CO output channels × KW taps of one kernel
/// row, summed over every output position of `images` images. The input lies channel-last
/// as for `ChannelsLastCorrelation` (`x`, `x_image`, `x_steps`); the output gradients are
/// read in place, [c_out, oh, ow] per image: the block's first output channel's plane at
/// `dy`, the next ones `dy_plane` apart, images `dy_image` apart. The accumulators,
/// [CO][KW][LANES], are read from and written back to `acc`. `edges` are the taps (bit t:
/// tap t) whose input at each output row's first and last position is padding: the block
/// skips those products.
pub(super) struct InputLaneCorrelation {
    pub x: *const f32,
    pub x_image: usize,
    pub x_steps: [usize; 3],
    pub dy: *const f32,
    pub dy_plane: usize,
    pub dy_image: usize,
    pub images: usize,
    pub out_hw: [usize; 2],
    pub edges: [u32; 2],
    pub acc: *mut f32,
}

/// One weight-gradient register block's operands: `cin` planes `plane` apart from `x`, for
/// `images` images `x_image` apart, and as many output gradients `dy_image` apart from
/// `dy`, its `WEIGHT_CHANNELS` rows `dy_stride` apart, each summed over `len` wide positions
/// (a multiple of the vector's lanes) into the lane accumulators at `acc`
/// ([WEIGHT_CHANNELS][WEIGHT_TAPS][WEIGHT_LANES] per input channel, `acc_stride` apart).
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

/// The forward block with `pv` vectors of positions (1 to `isa.max_vectors()`).
///
/// # Safety
/// `isa` must be present, and every access the block makes in bounds
/// (conv2d_direct.rs `wide_block` asserts them).
pub(super) unsafe fn forward(isa: Isa, pv: usize, b: &Block) {
    // SAFETY: the caller's guarantees.
    unsafe {
        match (isa, pv) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 1) => forward_avx512::<1>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 2) => forward_avx512::<2>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, _) => forward_avx512::<3>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, 1) => forward_avx2::<1>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, _) => forward_avx2::<2>(b),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, 1) => forward_neon::<1>(b),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, 2) => forward_neon::<2>(b),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, _) => forward_neon::<3>(b),
            _ => unreachable!("no direct kernels for {isa:?}, {pv}, {:p}", b.x),
        }
    }
}

/// The channel-block kernel with `cv` vectors of channels and `p` positions (a pair
/// `Isa::channel_block` gives).
///
/// # Safety
/// `isa` must be present, and every access the block makes in bounds
/// (conv2d_channels.rs `channel_block` asserts them).
pub(super) unsafe fn channels(isa: Isa, cv: usize, p: usize, b: &ChannelBlock) {
    // SAFETY: the caller's guarantees.
    unsafe {
        match (isa, cv, p) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 4, 6) => channels_avx512::<4, 6>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 2, 12) => channels_avx512::<2, 12>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, 2, 6) => channels_avx2::<2, 6>(b),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, 4, 6) => channels_neon::<4, 6>(b),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, 2, 12) => channels_neon::<2, 12>(b),
            _ => unreachable!("no channel block {cv}×{p} for {isa:?}, {:p}", b.x),
        }
    }
}

/// The channel-block kernel for P consecutive positions of one output row of a kernel three
/// columns wide at column stride and dilation 1 (`Isa::channel_row_block`): each input
/// pixel of the row is broadcast once and meets the three column taps' weights, which stay
/// in registers, so a (ci, ki) step costs 3·CV + P + 2 loads for 3·CV·P FMAs where
/// `channels` costs 3·(CV + P). The block reads from `offsets[0]` only (the first
/// position's first tap); each lane sums its output's products in (ci, ki, kj) order from
/// zero, as `channels` does, so both give the same bits.
///
/// # Safety
/// As `channels`.
pub(super) unsafe fn channels_row(isa: Isa, cv: usize, p: usize, b: &ChannelBlock) {
    // SAFETY: the caller's guarantees.
    unsafe {
        match (isa, cv, p) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 2, 8) => channels_row_avx512::<2, 8>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 2, 7) => channels_row_avx512::<2, 7>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 2, 6) => channels_row_avx512::<2, 6>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 4, 4) => channels_row_avx512::<4, 4>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 1, 16) => channels_row_taps_avx512::<16>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 1, 14) => channels_row_taps_avx512::<14>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 1, 12) => channels_row_taps_avx512::<12>(b),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, 2, 8) => channels_row_neon::<2, 8>(b),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, 2, 7) => channels_row_neon::<2, 7>(b),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, 2, 6) => channels_row_neon::<2, 6>(b),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, 4, 4) => channels_row_neon::<4, 4>(b),
            _ => unreachable!("no channel row block {cv}×{p} for {isa:?}, {:p}", b.x),
        }
    }
}

/// The channel-block weight gradient with `cv` vectors of channels and `r` pairs (a pair
/// `Isa::channel_block` gives).
///
/// # Safety
/// `isa` must be present, and every access the block makes in bounds
/// (conv2d_channels.rs `weight_block` asserts them).
pub(super) unsafe fn channel_weight(isa: Isa, cv: usize, r: usize, b: &ChannelCorrelation) {
    // SAFETY: the caller's guarantees.
    unsafe {
        match (isa, cv, r) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 4, 6) => channel_weight_avx512::<4, 6>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 2, 12) => channel_weight_avx512::<2, 12>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, 2, 6) => channel_weight_avx2::<2, 6>(b),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, 4, 6) => channel_weight_neon::<4, 6>(b),
            #[cfg(target_arch = "aarch64")]
            (Isa::Neon, 2, 12) => channel_weight_neon::<2, 12>(b),
            _ => unreachable!("no channel weight block {cv}×{r} for {isa:?}, {:p}", b.x),
        }
    }
}

/// The channel-last weight-gradient block with `cb` input channels and `kw` taps
/// (`Isa::channels_last_weight_blocks` lists them).
///
/// # Safety
/// `isa` must be present, and every access the block makes in bounds
/// (conv2d_weight_nhwc.rs `weight_block` asserts them).
pub(super) unsafe fn channels_last_weight(
    isa: Isa,
    cb: usize,
    kw: usize,
    b: &ChannelsLastCorrelation,
) {
    // SAFETY: the caller's guarantees.
    unsafe {
        match (isa, cb, kw) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 8, 3) => channels_last_weight_avx512::<8, 3>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 4, 3) => channels_last_weight_avx512::<4, 3>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 3, 3) => channels_last_weight_avx512::<3, 3>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 16, 1) => channels_last_weight_avx512::<16, 1>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 8, 1) => channels_last_weight_avx512::<8, 1>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, 4, 3) => channels_last_weight_avx2::<4, 3>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, 3, 3) => channels_last_weight_avx2::<3, 3>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, 8, 1) => channels_last_weight_avx2::<8, 1>(b),
            _ => unreachable!(
                "no channel-last weight block {cb}×{kw} for {isa:?}, {:p}",
                b.x
            ),
        }
    }
}

/// The input-lane weight-gradient block with `co` output channels and `kw` taps.
///
/// # Safety
/// `isa` must be present, and every access the block makes in bounds
/// (conv2d_weight_nhwc.rs `input_lane_block` asserts them).
pub(super) unsafe fn input_lane_weight(isa: Isa, co: usize, kw: usize, b: &InputLaneCorrelation) {
    // SAFETY: the caller's guarantees.
    unsafe {
        match (isa, co, kw) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 8, 3) => input_lane_weight_avx512::<8, 3>(b),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 16, 1) => input_lane_weight_avx512::<16, 1>(b),
            _ => unreachable!(
                "no input-lane weight block {co}×{kw} for {isa:?}, {:p}",
                b.x
            ),
        }
    }
}

/// The weight-gradient block over `shifts` (1 to WEIGHT_TAPS taps, in any layout).
///
/// # Safety
/// `isa` must be present and have a weight-gradient kernel, and every access the block
/// makes in bounds (conv2d_direct.rs `weight_block` asserts them).
pub(super) unsafe fn weight(isa: Isa, b: &Correlation, shifts: &[usize]) {
    macro_rules! taps {
        ($kernel:ident: $($n:literal)*) => {
            match shifts.len() {
                $($n => $kernel::<$n>(b, shifts),)*
                _ => unreachable!("at most {WEIGHT_TAPS} taps per block"),
            }
        };
    }
    // SAFETY: the caller's guarantees.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => taps!(weight_avx512: 1 2 3 4 5 6 7 8 9),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => taps!(weight_neon: 1 2 3 4 5 6 7 8 9),
            _ => unreachable!(
                "no weight-gradient kernel for {isa:?}: {}, {:p}",
                shifts.len(),
                b.x
            ),
        }
    }
}

/// The weight-gradient block of a 3×3 kernel whose columns are adjacent (dilation 1 along
/// the width) and whose rows are `row_step` apart: three row pointers and constant column
/// offsets, where the general block's nine tap pointers do not fit the registers and are
/// reloaded per image.
///
/// # Safety
/// As `weight`.
pub(super) unsafe fn weight_3x3(isa: Isa, b: &Correlation, row_step: usize) {
    // SAFETY: the caller's guarantees.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => weight_3x3_avx512(b, row_step),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => weight_3x3_neon(b, row_step),
            _ => unreachable!(
                "no weight-gradient kernel for {isa:?}: {row_step}, {:p}",
                b.x
            ),
        }
    }
}

/// The weight-gradient block of a 3×3 kernel at stride 1 and dilation 1 that walks each
/// column block of output gradients down the rows: the output gradients lie compact,
/// `rows` rows of `cols` values (a multiple of the lanes), and the padded input rows are
/// `x_row` apart. Each input row's three shifted vectors meet the output-gradient rows
/// below it, above it and level with it, which stay in registers as the walk goes down, so
/// a row costs three input loads and WEIGHT_CHANNELS output-gradient loads for 9 ·
/// WEIGHT_CHANNELS FMAs (the `weight_3x3` block loads 9 + WEIGHT_CHANNELS for as many).
///
/// # Safety
/// As `weight`, with `b.len` unused.
pub(super) unsafe fn weight_rows_3x3(
    isa: Isa,
    b: &Correlation,
    rows: usize,
    cols: usize,
    x_row: usize,
) {
    // SAFETY: the caller's guarantees.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => weight_rows_3x3_avx512(b, [rows, cols, x_row]),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => weight_rows_3x3_neon(b, [rows, cols, x_row]),
            _ => unreachable!(
                "no weight-gradient kernel for {isa:?}: {rows}×{cols}, {:p}",
                b.x
            ),
        }
    }
}

/// Replaces the first len/WEIGHT_LANES values of `acc` by the sums of its accumulators'
/// lanes, in order (sum a lands at index a ≤ WEIGHT_LANES·a, after its own lanes were
/// read), each in the fixed order of the instruction set's horizontal add
/// (`_mm512_reduce_add_ps`, NEON's `vaddvq_f32` over the 4 lanes it uses).
///
/// # Safety
/// As `weight`.
pub(super) unsafe fn reduce_lanes(isa: Isa, acc: &mut [f32]) {
    // SAFETY: the caller's guarantee.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => reduce_avx512(acc),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => reduce_neon(acc),
            _ => unreachable!("no weight-gradient kernel for {isa:?}: {}", acc.len()),
        }
    }
}

// ---- entry points: the bodies compiled for each instruction set -------------------------

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn forward_avx512<const PV: usize>(b: &Block) {
    // SAFETY: the caller's guarantees.
    unsafe { forward_body::<__m512, AVX512_CHANNELS, PV>(b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2<const PV: usize>(b: &Block) {
    // SAFETY: the caller's guarantees.
    unsafe { forward_body::<__m256, AVX2_CHANNELS, PV>(b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn channels_avx512<const CV: usize, const P: usize>(b: &ChannelBlock) {
    // SAFETY: the caller's guarantees.
    unsafe { channels_body::<__m512, CV, P>(b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn channels_row_avx512<const CV: usize, const P: usize>(b: &ChannelBlock) {
    // SAFETY: the caller's guarantees.
    unsafe { channels_row_body::<__m512, CV, P>(b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn channels_row_taps_avx512<const P: usize>(b: &ChannelBlock) {
    // SAFETY: the caller's guarantees.
    unsafe { channels_row_taps_body::<__m512, P>(b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn channels_avx2<const CV: usize, const P: usize>(b: &ChannelBlock) {
    // SAFETY: the caller's guarantees.
    unsafe { channels_body::<__m256, CV, P>(b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn channel_weight_avx512<const CV: usize, const R: usize>(b: &ChannelCorrelation) {
    // SAFETY: the caller's guarantees.
    unsafe { channel_weight_body::<__m512, CV, R>(b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn channel_weight_avx2<const CV: usize, const R: usize>(b: &ChannelCorrelation) {
    // SAFETY: the caller's guarantees.
    unsafe { channel_weight_body::<__m256, CV, R>(b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn channels_last_weight_avx512<const CB: usize, const KW: usize>(
    b: &ChannelsLastCorrelation,
) {
    // SAFETY: the caller's guarantees.
    unsafe { channels_last_weight_body::<__m512, CB, KW>(b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_lane_weight_avx512<const CO: usize, const KW: usize>(b: &InputLaneCorrelation) {
    // SAFETY: the caller's guarantees.
    unsafe { input_lane_weight_body::<__m512, CO, KW>(b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn channels_last_weight_avx2<const CB: usize, const KW: usize>(b: &ChannelsLastCorrelation) {
    // SAFETY: the caller's guarantees.
    unsafe { channels_last_weight_body::<__m256, CB, KW>(b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_avx512<const TAPS: usize>(b: &Correlation, shifts: &[usize]) {
    // SAFETY: the caller's guarantees.
    unsafe { weight_body::<__m512, WEIGHT_CHANNELS, TAPS>(b, shifts) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_3x3_avx512(b: &Correlation, row_step: usize) {
    // SAFETY: the caller's guarantees.
    unsafe { weight_3x3_body::<__m512, WEIGHT_CHANNELS>(b, row_step) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_rows_3x3_avx512(b: &Correlation, geometry: [usize; 3]) {
    // SAFETY: the caller's guarantees.
    unsafe { weight_rows_3x3_body::<__m512, WEIGHT_CHANNELS>(b, geometry) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn reduce_avx512(acc: &mut [f32]) {
    for a in 0..acc.len() / WEIGHT_LANES {
        // SAFETY: the lanes of accumulator a lie inside `acc`; AVX-512F is present.
        let v = unsafe { _mm512_reduce_add_ps(_mm512_loadu_ps(acc[a * WEIGHT_LANES..].as_ptr())) };
        acc[a] = v;
    }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn forward_neon<const PV: usize>(b: &Block) {
    // SAFETY: the caller's guarantees.
    unsafe { forward_body::<float32x4_t, NEON_CHANNELS, PV>(b) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn channels_neon<const CV: usize, const P: usize>(b: &ChannelBlock) {
    // SAFETY: the caller's guarantees.
    unsafe { channels_body::<float32x4_t, CV, P>(b) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn channels_row_neon<const CV: usize, const P: usize>(b: &ChannelBlock) {
    // SAFETY: the caller's guarantees.
    unsafe { channels_row_body::<float32x4_t, CV, P>(b) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn channel_weight_neon<const CV: usize, const R: usize>(b: &ChannelCorrelation) {
    // SAFETY: the caller's guarantees.
    unsafe { channel_weight_body::<float32x4_t, CV, R>(b) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn weight_neon<const TAPS: usize>(b: &Correlation, shifts: &[usize]) {
    // SAFETY: the caller's guarantees.
    unsafe { weight_body::<float32x4_t, WEIGHT_CHANNELS, TAPS>(b, shifts) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn weight_3x3_neon(b: &Correlation, row_step: usize) {
    // SAFETY: the caller's guarantees.
    unsafe { weight_3x3_body::<float32x4_t, WEIGHT_CHANNELS>(b, row_step) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn weight_rows_3x3_neon(b: &Correlation, geometry: [usize; 3]) {
    // SAFETY: the caller's guarantees.
    unsafe { weight_rows_3x3_body::<float32x4_t, WEIGHT_CHANNELS>(b, geometry) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn reduce_neon(acc: &mut [f32]) {
    for a in 0..acc.len() / WEIGHT_LANES {
        // SAFETY: the 4 lanes NEON used of accumulator a lie inside `acc`; NEON is present.
        let v = unsafe { vaddvq_f32(vld1q_f32(acc[a * WEIGHT_LANES..].as_ptr())) };
        acc[a] = v;
    }
}

// ---- the vector type ---------------------------------------------------------------------

/// The vector operations the bodies use. Every method is `#[inline(always)]`, so it inlines
/// into the `#[target_feature]` entry point and its intrinsic with it.
trait Vector: Copy {
    const LANES: usize;
    /// # Safety
    /// The instruction set of `Self` must be present (so for all methods).
    unsafe fn zero() -> Self;
    /// # Safety
    /// As `zero`; `p` readable for LANES values.
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn splat(v: f32) -> Self;
    /// a·b + c, fused.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    /// # Safety
    /// As `zero`; `p` writable for LANES values.
    unsafe fn store(self, p: *mut f32);
}

#[cfg(target_arch = "x86_64")]
impl Vector for __m512 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm512_storeu_ps(p, self) }
    }
}

#[cfg(target_arch = "x86_64")]
impl Vector for __m256 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm256_storeu_ps(p, self) }
    }
}

#[cfg(target_arch = "aarch64")]
impl Vector for float32x4_t {
    const LANES: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { vdupq_n_f32(0.0) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { vld1q_f32(p) }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        unsafe { vdupq_n_f32(v) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        // vfmaq_f32(c, a, b) = c + a·b, fused.
        unsafe { vfmaq_f32(c, a, b) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { vst1q_f32(p, self) }
    }
}

// ---- the bodies --------------------------------------------------------------------------

/// CB×PV accumulators; per (ci, ki, kj): PV loads of the shifted plane, CB broadcast
/// weights, CB·PV FMAs.
#[inline(always)]
unsafe fn forward_body<V: Vector, const CB: usize, const PV: usize>(b: &Block) {
    let mut acc = [[unsafe { V::zero() }; PV]; CB];
    let mut wt = b.w;
    for ci in 0..b.cin {
        // SAFETY (this block): within the bounds the caller guarantees.
        unsafe {
            let xc = b.x.add(ci * b.plane);
            for ki in 0..b.taps[0] {
                let xr = xc.add(ki * b.steps[0]);
                for kj in 0..b.taps[1] {
                    let xt = xr.add(kj * b.steps[1]);
                    let mut xs = [V::zero(); PV];
                    for (v, xv) in xs.iter_mut().enumerate() {
                        *xv = V::load(xt.add(v * V::LANES));
                    }
                    for (c, row) in acc.iter_mut().enumerate() {
                        let wv = V::splat(*wt.add(c));
                        for (a, &xv) in row.iter_mut().zip(&xs) {
                            *a = V::fma(wv, xv, *a);
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
            unsafe { a.store(b.out.add(c * b.out_stride + v * V::LANES)) };
        }
    }
}

/// CV×P accumulators; per (ci, ki, kj): CV loads of the block's weights, and per position
/// one broadcast input and CV FMAs. Each lane sums its output's products in (ci, ki, kj)
/// order from zero with the weight first, as `forward_body` does, so both give the same
/// bits.
#[inline(always)]
unsafe fn channels_body<V: Vector, const CV: usize, const P: usize>(b: &ChannelBlock) {
    let mut acc = [[unsafe { V::zero() }; P]; CV];
    let mut xs = [b.x; P];
    for (p, xp) in xs.iter_mut().enumerate() {
        // SAFETY: within the bounds the caller guarantees.
        *xp = unsafe { b.x.add(b.offsets[p]) };
    }
    let mut wt = b.w;
    for ci in 0..b.cin {
        for ki in 0..b.taps[0] {
            for kj in 0..b.taps[1] {
                let at = ci * b.plane + ki * b.steps[0] + kj * b.steps[1];
                // SAFETY (this block): within the bounds the caller guarantees.
                unsafe {
                    let mut wv = [V::zero(); CV];
                    for (c, v) in wv.iter_mut().enumerate() {
                        *v = V::load(wt.add(c * V::LANES));
                    }
                    for (p, &xp) in xs.iter().enumerate() {
                        let xv = V::splat(*xp.add(at));
                        for (row, &w) in acc.iter_mut().zip(&wv) {
                            row[p] = V::fma(w, xv, row[p]);
                        }
                    }
                    wt = wt.add(CV * V::LANES);
                }
            }
        }
    }
    for (c, row) in acc.iter().enumerate() {
        for (p, &a) in row.iter().enumerate() {
            // SAFETY: within the bounds the caller guarantees.
            unsafe { a.store(b.out.add(p * b.out_stride + c * V::LANES)) };
        }
    }
}

/// CV×P accumulators; per (ci, ki): the 3·CV weight vectors of the row's three taps, then
/// the row's P + 2 input pixels, each broadcast once and multiplied into the positions it
/// meets (pixel j meets position j − kj through tap kj). For each output the taps arrive
/// in kj order, so it sums in (ci, ki, kj) order, as `channels_body`.
#[inline(always)]
unsafe fn channels_row_body<V: Vector, const CV: usize, const P: usize>(b: &ChannelBlock) {
    let mut acc = [[unsafe { V::zero() }; P]; CV];
    // SAFETY: within the bounds the caller guarantees.
    let x0 = unsafe { b.x.add(b.offsets[0]) };
    let mut wt = b.w;
    for ci in 0..b.cin {
        for ki in 0..b.taps[0] {
            // SAFETY (this block): within the bounds the caller guarantees.
            unsafe {
                let xr = x0.add(ci * b.plane + ki * b.steps[0]);
                let mut wv = [[V::zero(); CV]; 3];
                for (kj, row) in wv.iter_mut().enumerate() {
                    for (c, v) in row.iter_mut().enumerate() {
                        *v = V::load(wt.add((kj * CV + c) * V::LANES));
                    }
                }
                for j in 0..P + 2 {
                    if (j == 0 && b.skip[0]) || (j == P + 1 && b.skip[1]) {
                        continue;
                    }
                    let xv = V::splat(*xr.add(j));
                    for (kj, wk) in wv.iter().enumerate() {
                        // Pixel j is tap kj of position j − kj, where that is in the block.
                        if j >= kj && j - kj < P {
                            for (row, &w) in acc.iter_mut().zip(wk) {
                                row[j - kj] = V::fma(w, xv, row[j - kj]);
                            }
                        }
                    }
                }
                wt = wt.add(3 * CV * V::LANES);
            }
        }
        // SAFETY: within the bounds the caller guarantees.
        wt = unsafe { b.w.add((ci + 1) * b.ci_weights) };
    }
    for (c, row) in acc.iter().enumerate() {
        for (p, &a) in row.iter().enumerate() {
            // SAFETY: within the bounds the caller guarantees.
            unsafe { a.store(b.out.add(p * b.out_stride + c * V::LANES)) };
        }
    }
}

/// `channels_row_body` for one vector of channels: P accumulators; per (ci, ki, kj) one load
/// of the tap's weights and, per position, its input pixel broadcast (at a constant offset
/// from the row's start) into one FMA. Where one vector holds all the block's channels,
/// `channels_row_body`'s order (each pixel into the three positions it meets, one after the
/// other) makes each FMA wait for the one before it on the same accumulator; here each
/// tap's P FMAs are independent. Per (ci, ki) the compiler keeps the row's P + 2 broadcast
/// pixels in registers for the three taps (read in the AVX-512 build's code), so 3 + P + 2
/// loads feed 3·P FMAs, which a core with two FMA pipes runs at its FMA rate. The
/// same products in the same (ci, ki, kj) order per lane, and the same skipped end pixels,
/// as `channels_row_body`: the same bits.
#[inline(always)]
unsafe fn channels_row_taps_body<V: Vector, const P: usize>(b: &ChannelBlock) {
    let mut acc = [unsafe { V::zero() }; P];
    // SAFETY: within the bounds the caller guarantees.
    let x0 = unsafe { b.x.add(b.offsets[0]) };
    let mut wt = b.w;
    for ci in 0..b.cin {
        for ki in 0..b.taps[0] {
            // SAFETY (this block): within the bounds the caller guarantees.
            unsafe {
                let xr = x0.add(ci * b.plane + ki * b.steps[0]);
                for kj in 0..3 {
                    let wv = V::load(wt.add(kj * V::LANES));
                    for (p, a) in acc.iter_mut().enumerate() {
                        // Pixel p + kj: the row's first (kj 0 of position 0) and last (kj 2
                        // of position P − 1) may be padding the block skips.
                        if (kj == 0 && p == 0 && b.skip[0]) || (kj == 2 && p == P - 1 && b.skip[1])
                        {
                            continue;
                        }
                        *a = V::fma(wv, V::splat(*xr.add(p + kj)), *a);
                    }
                }
                wt = wt.add(3 * V::LANES);
            }
        }
        // SAFETY: within the bounds the caller guarantees.
        wt = unsafe { b.w.add((ci + 1) * b.ci_weights) };
    }
    for (p, &a) in acc.iter().enumerate() {
        // SAFETY: within the bounds the caller guarantees.
        unsafe { a.store(b.out.add(p * b.out_stride)) };
    }
}

/// CV×R accumulators loaded from `acc`; per output position: CV loads of its output
/// gradients, and per pair one broadcast input and CV FMAs; stored back. Each lane sums its
/// weight's products over the images in order and their positions in order. A row's first
/// and last positions skip the pairs in `edges` (whose inputs there are padding).
#[inline(always)]
unsafe fn channel_weight_body<V: Vector, const CV: usize, const R: usize>(b: &ChannelCorrelation) {
    let at = |c: usize, r: usize| (r * CV + c) * V::LANES;
    // SAFETY (the whole body): within the bounds the caller guarantees.
    unsafe {
        let mut acc = [[V::zero(); R]; CV];
        for (c, row) in acc.iter_mut().enumerate() {
            for (r, a) in row.iter_mut().enumerate() {
                *a = V::load(b.acc.add(at(c, r)));
            }
        }
        let [oh, ow] = b.out_hw;
        // The rows' ends apart only where they skip something (and a row of one position
        // is both ends).
        let ends = b.edges != [0, 0] && ow >= 2;
        for i in 0..b.images {
            let image = b.x.add(i * b.x_image);
            let mut xs = [image; R];
            for (r, x) in xs.iter_mut().enumerate() {
                *x = image.add(b.pairs[r]);
            }
            let mut dy = b.dy.add(i * b.dy_image);
            for oy in 0..oh {
                let mut q = oy * b.steps[0];
                if ends {
                    channel_weight_position::<V, CV, R>(&mut acc, &xs, dy, q, b.edges[0]);
                    dy = dy.add(b.dy_position);
                    q += b.steps[1];
                }
                let middle = if ends { ow - 2 } else { ow };
                for _ in 0..middle {
                    channel_weight_position::<V, CV, R>(&mut acc, &xs, dy, q, 0);
                    dy = dy.add(b.dy_position);
                    q += b.steps[1];
                }
                if ends {
                    channel_weight_position::<V, CV, R>(&mut acc, &xs, dy, q, b.edges[1]);
                    dy = dy.add(b.dy_position);
                }
            }
        }
        for (c, row) in acc.iter().enumerate() {
            for (r, &a) in row.iter().enumerate() {
                a.store(b.acc.add(at(c, r)));
            }
        }
    }
}

/// One position of `channel_weight_body`: the CV vectors of output gradients at `dy`, and
/// each pair's input at `xs[r] + q` broadcast into CV FMAs, except the pairs in `skip` (bit
/// r: pair r; 0 in the middle of a row, where the tests fold away). A function, not a
/// closure, so that it is compiled with its caller's target features.
#[inline(always)]
unsafe fn channel_weight_position<V: Vector, const CV: usize, const R: usize>(
    acc: &mut [[V; R]; CV],
    xs: &[*const f32; R],
    dy: *const f32,
    q: usize,
    skip: u32,
) {
    // SAFETY (the whole body): within the bounds the caller guarantees.
    unsafe {
        let mut d = [V::zero(); CV];
        for (c, dv) in d.iter_mut().enumerate() {
            *dv = V::load(dy.add(c * V::LANES));
        }
        for (r, &x) in xs.iter().enumerate() {
            if skip & (1 << r) != 0 {
                continue;
            }
            let xv = V::splat(*x.add(q));
            for (row, &dv) in acc.iter_mut().zip(&d) {
                row[r] = V::fma(dv, xv, row[r]);
            }
        }
    }
}

/// One position (column `ox`) of `input_lane_weight_body`: the KW taps' input vectors from
/// `x`, `tap` apart, and each output channel's gradient `ds[c] + ox` broadcast into their
/// FMAs, except the taps in `skip` (bit t: tap t; 0 in the middle of a row).
#[inline(always)]
unsafe fn input_lane_position<V: Vector, const CO: usize, const KW: usize>(
    acc: &mut [[V; KW]; CO],
    x: *const f32,
    tap: usize,
    ds: &[*const f32; CO],
    ox: usize,
    skip: u32,
) {
    // SAFETY (the whole body): within the bounds the caller guarantees.
    unsafe {
        let mut xv = [V::zero(); KW];
        for (t, v) in xv.iter_mut().enumerate() {
            if skip & (1 << t) == 0 {
                *v = V::load(x.add(t * tap));
            }
        }
        for (taps, d) in acc.iter_mut().zip(ds) {
            let dv = V::splat(*d.add(ox));
            for (t, (a, &v)) in taps.iter_mut().zip(&xv).enumerate() {
                if skip & (1 << t) == 0 {
                    *a = V::fma(v, dv, *a);
                }
            }
        }
    }
}

/// CO×KW accumulators loaded from `acc`; per output position: KW loads of its inputs (one
/// vector of input channels per tap) and, per output channel, its output gradient
/// broadcast into KW FMAs; stored back. Each lane sums its weight's products over the
/// images in order and their positions in order. A row's first and last positions skip
/// the taps in `edges` (whose inputs there are padding).
#[inline(always)]
unsafe fn input_lane_weight_body<V: Vector, const CO: usize, const KW: usize>(
    b: &InputLaneCorrelation,
) {
    let at = |c: usize, t: usize| (c * KW + t) * V::LANES;
    let [row, col, tap] = b.x_steps;
    let [oh, ow] = b.out_hw;
    // The rows' ends apart only where they skip a tap.
    let ends = b.edges != [0, 0] && ow >= 2;
    // SAFETY (the whole body): within the bounds the caller guarantees.
    unsafe {
        let mut acc = [[V::zero(); KW]; CO];
        for (c, taps) in acc.iter_mut().enumerate() {
            for (t, a) in taps.iter_mut().enumerate() {
                *a = V::load(b.acc.add(at(c, t)));
            }
        }
        for i in 0..b.images {
            let image = b.x.add(i * b.x_image);
            let dyi = b.dy.add(i * b.dy_image);
            for oy in 0..oh {
                let mut ds = [dyi; CO];
                for (c, d) in ds.iter_mut().enumerate() {
                    *d = dyi.add(c * b.dy_plane + oy * ow);
                }
                let mut x = image.add(oy * row);
                if ends {
                    input_lane_position::<V, CO, KW>(&mut acc, x, tap, &ds, 0, b.edges[0]);
                    x = x.add(col);
                }
                let middle = if ends { 1..ow - 1 } else { 0..ow };
                for ox in middle {
                    input_lane_position::<V, CO, KW>(&mut acc, x, tap, &ds, ox, 0);
                    x = x.add(col);
                }
                if ends {
                    input_lane_position::<V, CO, KW>(&mut acc, x, tap, &ds, ow - 1, b.edges[1]);
                }
            }
        }
        for (c, taps) in acc.iter().enumerate() {
            for (t, &a) in taps.iter().enumerate() {
                a.store(b.acc.add(at(c, t)));
            }
        }
    }
}

/// One position of `channels_last_weight_body`: its output gradients at `dy` times each
/// tap's CB inputs side by side at `xs[t]`, except the taps in `skip` (bit t: tap t; 0 in
/// the middle of a row); then `xs` and `dy` step to the next position (`steps`: the
/// column step and `dy_position`).
#[inline(always)]
unsafe fn channels_last_position<V: Vector, const CB: usize, const KW: usize>(
    acc: &mut [[V; CB]; KW],
    xs: &mut [*const f32; KW],
    dy: &mut *const f32,
    steps: [usize; 2],
    skip: u32,
) {
    // SAFETY (the whole body): within the bounds the caller guarantees.
    unsafe {
        let d = V::load(*dy);
        for (t, (taps, x)) in acc.iter_mut().zip(xs.iter_mut()).enumerate() {
            if skip & (1 << t) == 0 {
                for (c, a) in taps.iter_mut().enumerate() {
                    *a = V::fma(d, V::splat(*x.add(c)), *a);
                }
            }
            *x = x.add(steps[0]);
        }
        *dy = dy.add(steps[1]);
    }
}

/// KW×CB accumulators loaded from `acc`; per output position: one load of its output
/// gradients and, per tap, CB FMAs with a broadcast input each, the CB inputs side by side
/// behind one pointer (a broadcast folds into its FMA as a memory operand); stored back.
/// Each lane sums its weight's products over the images in order and their positions in
/// order. A row's first and last positions skip the taps in `edges` (whose inputs there
/// are padding).
#[inline(always)]
unsafe fn channels_last_weight_body<V: Vector, const CB: usize, const KW: usize>(
    b: &ChannelsLastCorrelation,
) {
    let at = |t: usize, c: usize| (t * CB + c) * V::LANES;
    let [row, col, tap] = b.x_steps;
    let [oh, ow] = b.out_hw;
    let ends = b.edges != [0, 0] && ow >= 2;
    // SAFETY (the whole body): within the bounds the caller guarantees.
    unsafe {
        let mut acc = [[V::zero(); CB]; KW];
        for (t, taps) in acc.iter_mut().enumerate() {
            for (c, a) in taps.iter_mut().enumerate() {
                *a = V::load(b.acc.add(at(t, c)));
            }
        }
        for i in 0..b.images {
            let image = b.x.add(i * b.x_image);
            let mut dy = b.dy.add(i * b.dy_image);
            for oy in 0..oh {
                let mut xs = [image; KW];
                for (t, x) in xs.iter_mut().enumerate() {
                    *x = image.add(oy * row + t * tap);
                }
                let steps = [col, b.dy_position];
                if ends {
                    channels_last_position::<V, CB, KW>(
                        &mut acc, &mut xs, &mut dy, steps, b.edges[0],
                    );
                }
                for _ in 0..if ends { ow - 2 } else { ow } {
                    channels_last_position::<V, CB, KW>(&mut acc, &mut xs, &mut dy, steps, 0);
                }
                if ends {
                    channels_last_position::<V, CB, KW>(
                        &mut acc, &mut xs, &mut dy, steps, b.edges[1],
                    );
                }
            }
        }
        for (t, taps) in acc.iter().enumerate() {
            for (c, &a) in taps.iter().enumerate() {
                a.store(b.acc.add(at(t, c)));
            }
        }
    }
}

/// Per input channel: CO·TAPS accumulators loaded from `acc` (the first V::LANES of each
/// accumulator's WEIGHT_LANES slots), then per vector of positions CO loads of dy and, per
/// tap, one load of the shifted plane and CO FMAs; stored back.
#[inline(always)]
unsafe fn weight_body<V: Vector, const CO: usize, const TAPS: usize>(
    b: &Correlation,
    shifts: &[usize],
) {
    let at = |c: usize, t: usize| (c * WEIGHT_TAPS + t) * WEIGHT_LANES;
    for ci in 0..b.cin {
        // SAFETY (this block): within the bounds the caller guarantees.
        unsafe {
            let accp = b.acc.add(ci * b.acc_stride);
            let mut acc = [[V::zero(); TAPS]; CO];
            for (c, row) in acc.iter_mut().enumerate() {
                for (t, a) in row.iter_mut().enumerate() {
                    *a = V::load(accp.add(at(c, t)));
                }
            }
            for i in 0..b.images {
                let x = b.x.add(i * b.x_image + ci * b.plane);
                let dy = b.dy.add(i * b.dy_image);
                let mut xt = [x; TAPS];
                for (p, &sh) in xt.iter_mut().zip(shifts) {
                    *p = x.add(sh);
                }
                for q in (0..b.len).step_by(V::LANES) {
                    let mut d = [V::zero(); CO];
                    for (c, dv) in d.iter_mut().enumerate() {
                        *dv = V::load(dy.add(c * b.dy_stride + q));
                    }
                    for (t, &p) in xt.iter().enumerate() {
                        let xv = V::load(p.add(q));
                        for (row, &dv) in acc.iter_mut().zip(&d) {
                            row[t] = V::fma(dv, xv, row[t]);
                        }
                    }
                }
            }
            for (c, row) in acc.iter().enumerate() {
                for (t, &a) in row.iter().enumerate() {
                    a.store(accp.add(at(c, t)));
                }
            }
        }
    }
}

/// `weight_body::<V, CO, 9>` for the taps of a 3×3 kernel with adjacent columns.
#[inline(always)]
unsafe fn weight_3x3_body<V: Vector, const CO: usize>(b: &Correlation, row_step: usize) {
    let at = |c: usize, t: usize| (c * WEIGHT_TAPS + t) * WEIGHT_LANES;
    for ci in 0..b.cin {
        // SAFETY (this block): within the bounds the caller guarantees.
        unsafe {
            let accp = b.acc.add(ci * b.acc_stride);
            let mut acc = [[V::zero(); 9]; CO];
            for (c, row) in acc.iter_mut().enumerate() {
                for (t, a) in row.iter_mut().enumerate() {
                    *a = V::load(accp.add(at(c, t)));
                }
            }
            for i in 0..b.images {
                let x = b.x.add(i * b.x_image + ci * b.plane);
                let rows = [x, x.add(row_step), x.add(2 * row_step)];
                let dy = b.dy.add(i * b.dy_image);
                for q in (0..b.len).step_by(V::LANES) {
                    let mut d = [V::zero(); CO];
                    for (c, dv) in d.iter_mut().enumerate() {
                        *dv = V::load(dy.add(c * b.dy_stride + q));
                    }
                    for (ki, r) in rows.iter().enumerate() {
                        for kj in 0..3 {
                            let xv = V::load(r.add(q + kj));
                            for (row, &dv) in acc.iter_mut().zip(&d) {
                                row[ki * 3 + kj] = V::fma(dv, xv, row[ki * 3 + kj]);
                            }
                        }
                    }
                }
            }
            for (c, row) in acc.iter().enumerate() {
                for (t, &a) in row.iter().enumerate() {
                    a.store(accp.add(at(c, t)));
                }
            }
        }
    }
}

/// `weight_rows_3x3`'s block. Per input channel, image and walk of NB column blocks side
/// by side, input row `rr` meets output-gradient row `rr − ki` for the kernel rows ki that
/// keep it inside the image: `win[ki][nb]` holds that row's WEIGHT_CHANNELS vectors in
/// column block nb. Each lane sums its weight's products over the images in order, then the
/// walks in order, then the rows, then the walk's column blocks.
#[inline(always)]
unsafe fn weight_rows_3x3_body<V: Vector, const CO: usize>(b: &Correlation, geometry: [usize; 3]) {
    let cols = geometry[1];
    if cols.is_multiple_of(2 * V::LANES) {
        unsafe { weight_rows_walks::<V, CO, 2>(b, geometry) }
    } else {
        unsafe { weight_rows_walks::<V, CO, 1>(b, geometry) }
    }
}

#[inline(always)]
unsafe fn weight_rows_walks<V: Vector, const CO: usize, const NB: usize>(
    b: &Correlation,
    geometry: [usize; 3],
) {
    let [rows, cols, x_row] = geometry;
    let at = |c: usize, t: usize| (c * WEIGHT_TAPS + t) * WEIGHT_LANES;
    // SAFETY (the whole body): within the bounds the caller guarantees.
    unsafe {
        for ci in 0..b.cin {
            let accp = b.acc.add(ci * b.acc_stride);
            let mut acc = [[V::zero(); 9]; CO];
            for (c, row) in acc.iter_mut().enumerate() {
                for (t, a) in row.iter_mut().enumerate() {
                    *a = V::load(accp.add(at(c, t)));
                }
            }
            for i in 0..b.images {
                let x = b.x.add(i * b.x_image + ci * b.plane);
                let dy = b.dy.add(i * b.dy_image);
                for c0 in (0..cols).step_by(NB * V::LANES) {
                    let load_dy = |r: usize| {
                        let mut d = [[V::zero(); CO]; NB];
                        for (nb, dn) in d.iter_mut().enumerate() {
                            for (c, v) in dn.iter_mut().enumerate() {
                                *v = V::load(
                                    dy.add(c * b.dy_stride + r * cols + c0 + nb * V::LANES),
                                );
                            }
                        }
                        d
                    };
                    let xs = x.add(c0);
                    let mut win = [[[V::zero(); CO]; NB]; 3];
                    // The first rows meet fewer kernel rows: rr = 0 only ki = 0, rr = 1
                    // ki = 0 and 1 (where the image has two rows).
                    win[0] = load_dy(0);
                    row_taps::<V, CO, NB, 0, 1>(&mut acc, &win, xs);
                    if rows == 1 {
                        win[1] = win[0];
                        row_taps::<V, CO, NB, 1, 2>(&mut acc, &win, xs.add(x_row));
                        win[2] = win[1];
                        row_taps::<V, CO, NB, 2, 3>(&mut acc, &win, xs.add(2 * x_row));
                        continue;
                    }
                    win[1] = win[0];
                    win[0] = load_dy(1);
                    row_taps::<V, CO, NB, 0, 2>(&mut acc, &win, xs.add(x_row));
                    for rr in 2..rows {
                        win[2] = win[1];
                        win[1] = win[0];
                        win[0] = load_dy(rr);
                        row_taps::<V, CO, NB, 0, 3>(&mut acc, &win, xs.add(rr * x_row));
                    }
                    // Past the last output row: the lower kernel rows only.
                    win[2] = win[1];
                    win[1] = win[0];
                    row_taps::<V, CO, NB, 1, 3>(&mut acc, &win, xs.add(rows * x_row));
                    win[2] = win[1];
                    row_taps::<V, CO, NB, 2, 3>(&mut acc, &win, xs.add((rows + 1) * x_row));
                }
            }
            for (c, row) in acc.iter().enumerate() {
                for (t, &a) in row.iter().enumerate() {
                    a.store(accp.add(at(c, t)));
                }
            }
        }
    }
}

/// One input row's three shifted vectors at `xr` (per column block) times the
/// output-gradient rows of kernel rows LO..HI, into the taps (ki, kj).
#[inline(always)]
unsafe fn row_taps<
    V: Vector,
    const CO: usize,
    const NB: usize,
    const LO: usize,
    const HI: usize,
>(
    acc: &mut [[V; 9]; CO],
    win: &[[[V; CO]; NB]; 3],
    xr: *const f32,
) {
    // nb picks the middle index of win[ki][nb] and the load's column offset.
    #[allow(clippy::needless_range_loop)]
    for nb in 0..NB {
        for kj in 0..3 {
            // SAFETY: within the bounds the caller guarantees.
            let xv = unsafe { V::load(xr.add(nb * V::LANES + kj)) };
            for ki in LO..HI {
                for (row, &d) in acc.iter_mut().zip(&win[ki][nb]) {
                    // SAFETY: the instruction set is present (the caller's entry point).
                    row[ki * 3 + kj] = unsafe { V::fma(d, xv, row[ki * 3 + kj]) };
                }
            }
        }
    }
}
