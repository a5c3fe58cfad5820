//! Seeded image augmentation applied in place to a batch buffer: random crop with zero
//! padding and random horizontal flip, the standard CIFAR recipe of He et al. 2016 (pad 4,
//! crop 32×32, flip with probability ½).
//!
//! A crop of an image zero-padded by `p` on every side, taken at offset (p + dy, p + dx)
//! with dy, dx uniform in −p..=p, is the image shifted by (−dy, −dx) with the uncovered
//! border filled with zeros: out[y][x] = in[y + dy][x + dx], or 0 where that is outside.
//! We do exactly that shift, separably (whole rows up or down, then each row left or
//! right) with `copy_within`, which is a memmove, so no padded copy and no allocation is
//! needed. Zero is the padding value of the buffer as given: pad before standardizing
//! to pad with black, after to pad with the mean.
//!
//! The draws for row `r` of step `step` come from a ChaCha8 stream keyed by
//! `(seed, step, r)` alone: the same triple gives the same crop and flip on every machine
//! and whatever the other rows drew, so a resumed run augments exactly as the original.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// Which augmentations to apply. The default does nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Augment {
    /// Zero padding on each side for the random crop; 0 disables the crop.
    pub crop_pad: usize,
    /// Flip each image left–right with probability ½.
    pub flip: bool,
}

/// What [`Augment`] drew for one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draw {
    /// Source offset: out[y][x] = in[y + dy][x + dx].
    pub dy: isize,
    pub dx: isize,
    pub flip: bool,
}

impl Augment {
    /// Whether [`Augment::apply`] changes anything.
    pub fn is_identity(&self) -> bool {
        self.crop_pad == 0 && !self.flip
    }

    /// The crop offset and flip for row `row` of step `step`.
    pub fn draw(&self, seed: u64, step: u64, row: u64) -> Draw {
        let mut rng = row_rng(seed, step, row);
        let (mut dy, mut dx) = (0, 0);
        if self.crop_pad > 0 {
            let span = 2 * self.crop_pad as u64 + 1;
            dy = below(&mut rng, span) as isize - self.crop_pad as isize;
            dx = below(&mut rng, span) as isize - self.crop_pad as isize;
        }
        let flip = self.flip && rng.next_u64() >> 63 == 1;
        Draw { dy, dx, flip }
    }

    /// Augments the `b` images of `batch` (`[b, c, h, w]`, row-major, `image = [c, h, w]`)
    /// in place: each image is cropped, then flipped, as drawn by [`Augment::draw`] for its
    /// row. All channels of an image get the same crop and flip.
    pub fn apply(
        &self,
        batch: &mut [f32],
        b: usize,
        image: [usize; 3],
        seed: u64,
        step: u64,
    ) -> Result<()> {
        let [c, h, w] = image;
        let dim = c
            .checked_mul(h)
            .and_then(|x| x.checked_mul(w))
            .filter(|&d| d > 0);
        let Some(dim) = dim else {
            return Err(Error::shape(
                "augment",
                format!("image shape {c}x{h}x{w} must have every side at least 1"),
            ));
        };
        if b.checked_mul(dim) != Some(batch.len()) {
            return Err(Error::shape(
                "augment",
                format!(
                    "batch buffer has {} values, not {b} images of {c}x{h}x{w}",
                    batch.len()
                ),
            ));
        }
        if self.is_identity() {
            return Ok(());
        }
        for (row, img) in batch.chunks_exact_mut(dim).enumerate() {
            let d = self.draw(seed, step, row as u64);
            for plane in img.chunks_exact_mut(h * w) {
                shift_plane(plane, h, w, d.dy, d.dx);
                if d.flip {
                    for line in plane.chunks_exact_mut(w) {
                        line.reverse();
                    }
                }
            }
        }
        Ok(())
    }
}

/// out[y][x] = in[y + dy][x + dx] for one `h × w` plane, zero where the source is outside.
fn shift_plane(plane: &mut [f32], h: usize, w: usize, dy: isize, dx: isize) {
    // Rows: a shift by |dy| ≥ h leaves nothing of the image.
    let ady = dy.unsigned_abs().min(h);
    if dy > 0 {
        plane.copy_within(ady * w.., 0);
        plane[(h - ady) * w..].fill(0.0);
    } else if dy < 0 {
        plane.copy_within(..(h - ady) * w, ady * w);
        plane[..ady * w].fill(0.0);
    }
    if dx == 0 {
        return;
    }
    let adx = dx.unsigned_abs().min(w);
    for line in plane.chunks_exact_mut(w) {
        if dx > 0 {
            line.copy_within(adx.., 0);
            line[w - adx..].fill(0.0);
        } else {
            line.copy_within(..w - adx, adx);
            line[..adx].fill(0.0);
        }
    }
}

/// A ChaCha8 generator keyed by a domain tag, the seed, the step and the row, so every
/// image of every step has its own independent stream.
fn row_rng(seed: u64, step: u64, row: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(b"gs-augmt");
    key[8..16].copy_from_slice(&seed.to_le_bytes());
    key[16..24].copy_from_slice(&step.to_le_bytes());
    key[24..].copy_from_slice(&row.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// Uniform integer in `0..bound` (bound ≥ 1) by Lemire's multiply-and-reject method, so
/// that the draw for a seed cannot change with a `rand` upgrade.
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let m = rng.next_u64() as u128 * bound as u128;
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}
