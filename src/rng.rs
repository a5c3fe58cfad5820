//! The crate's one source of randomness: a seeded ChaCha8 stream with every derived
//! distribution written out here, so a seed means the same numbers on every platform and in
//! every version of `rand` (whose own distributions may change between releases).
//!
//! - `uniform()` takes the top 53 bits of one `u64`: k·2⁻⁵³, k uniform in [0, 2⁵³).
//! - `normal()` is Box–Muller over two uniforms; each pair of uniforms yields two normals,
//!   the second kept for the next call. It uses `ln`, `sqrt`, `sin`, `cos` from the
//!   platform's libm, which agree to the last bit on the usual platforms but are not
//!   guaranteed to; the uniform stream underneath is exact everywhere.
//! - `below(n)` rejects the top partial block of the `u64` range, so it is unbiased.
//! - `fork(stream)` starts an independent generator (its own key and ChaCha stream), so
//!   that per-layer init and data order do not shift when another consumer draws more.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng};

#[derive(Clone, Debug)]
pub struct Rng {
    inner: ChaCha8Rng,
    /// The second normal of the last Box–Muller pair, not yet handed out.
    spare_normal: Option<f64>,
}

impl Rng {
    /// A generator determined by `seed` alone.
    pub fn new(seed: u64) -> Self {
        Rng {
            inner: ChaCha8Rng::seed_from_u64(seed),
            spare_normal: None,
        }
    }

    /// The next raw 64 bits of the stream.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in [0, 1), on the grid k·2⁻⁵³.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi) (hi itself can appear only through rounding of lo + (hi−lo)·u).
    pub fn uniform_range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (mean 0, variance 1) by Box–Muller: with u₁ ∈ (0, 1] and u₂ ∈ [0, 1),
    /// r = √(−2 ln u₁), the pair (r cos 2πu₂, r sin 2πu₂) is two independent normals.
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        // 1 − u lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        self.spare_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// Uniform integer in [0, n), without modulo bias. `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0): empty range");
        let n = n as u64;
        // Accept x ≤ 2⁶⁴ − 1 − (2⁶⁴ mod n): the accepted range then holds a whole number of
        // blocks of n values, so every residue is equally likely. Rejection happens with
        // probability below n/2⁶⁴ (below 1/2 even for the largest n).
        let zone = u64::MAX - (u64::MAX % n + 1) % n;
        loop {
            let x = self.next_u64();
            if x <= zone {
                return (x % n) as usize;
            }
        }
    }

    /// Shuffles in place (Fisher–Yates, from the back: swap i with a uniform j ≤ i).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// An independent generator for a sub-stream (per-layer init, data order, dropout…).
    /// Its key is 256 fresh bits drawn from `self`, and its ChaCha stream number is
    /// `stream`, so two forks never share a key stream, and a run that takes its forks in a
    /// fixed order is reproducible whatever each fork later consumes.
    pub fn fork(&mut self, stream: u64) -> Rng {
        let mut key = [0u8; 32];
        for chunk in key.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let mut inner = ChaCha8Rng::from_seed(key);
        inner.set_stream(stream);
        Rng {
            inner,
            spare_normal: None,
        }
    }
}
