//! The statistics record of one tensor, as reduced on the device and read back.
//!
//! A record is `RECORD_WORDS` 32-bit words, identical on both executors (the WGSL struct
//! `StatRecord` in shaders/stats.wgsl has the same layout). Moments are merged with Chan's
//! parallel formula and the L2 norm as a scaled sum of squares (LAPACK's nrm2 idea). Both
//! sums of squares (the norm's and the variance's M2) are stored divided by max_abs², so
//! that neither overflows when gradients explode (1e30² is inf in f32) nor underflows when
//! they vanish (1e-30² is 0): both effects are what the statistics exist to show. The mean
//! needs no scaling: |mean| ≤ max_abs.

use bytemuck::{Pod, Zeroable};
use serde::Serialize;

/// Number of log2|x| histogram bins (the zero bin is `zeros`, counted apart).
pub const HIST_BINS: usize = 40;
/// log2|x| at the lower edge of bin 0; every bin is `HIST_BIN_WIDTH` wide, so the bins
/// cover [2⁻⁶⁴, 2¹⁶). Values below fall into bin 0, above into the last bin.
pub const HIST_LOG2_LO: i32 = -64;
pub const HIST_BIN_WIDTH: i32 = 2;

/// Words in one record (fields below plus padding to a multiple of 4 words).
pub const RECORD_WORDS: usize = 56;

/// The raw record as the device writes it. Field order is the WGSL struct's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct RawStats {
    /// Finite elements counted in the moments and histogram.
    pub finite: u32,
    pub nan: u32,
    pub inf: u32,
    /// Exact zeros (+0 and −0).
    pub zeros: u32,
    /// Elements inside the saturation bounds given to the reduction (sigmoid/tanh outputs).
    pub saturated: u32,
    /// Mean of the finite elements.
    pub mean: f32,
    /// Sum of squared deviations from the mean (Welford's M2) divided by max_abs², i.e.
    /// Σ((x − mean)/max_abs)²; 0 while max_abs is 0. std = max_abs · sqrt(m2_scaled / finite).
    pub m2_scaled: f32,
    pub min: f32,
    pub max: f32,
    pub max_abs: f32,
    /// L2 norm = max_abs · sqrt(norm_ssq): the sum of squares of x / max_abs.
    pub norm_ssq: f32,
    pub hist: [u32; HIST_BINS],
    pub _pad: [u32; RECORD_WORDS - 11 - HIST_BINS],
}

const _: () = assert!(std::mem::size_of::<RawStats>() == RECORD_WORDS * 4);

impl RawStats {
    /// The record of an empty tensor: the identity of the merge.
    pub fn empty() -> Self {
        RawStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            ..Zeroable::zeroed()
        }
    }

    /// The histogram bin of a finite non-zero value: floor(log2|x|) read from the IEEE
    /// exponent field (exact on every device, unlike a shader's `log2`); subnormals, whose
    /// exponent field is 0, land in bin 0 like every value below 2⁻⁶⁴.
    pub fn hist_bin(x: f32) -> usize {
        let e = ((x.to_bits() >> 23) & 0xff) as i32 - 127;
        ((e - HIST_LOG2_LO).div_euclid(HIST_BIN_WIDTH)).clamp(0, HIST_BINS as i32 - 1) as usize
    }

    /// self ← self ⊕ other: the record of the concatenation of both tensors. Moments by
    /// Chan's pairwise formula, the norm by rescaling to the larger max_abs (LAPACK nrm2);
    /// the scaled M2 is rescaled to the larger max_abs the same way. All in f32 and in exactly the operation order of `acc_merge` in shaders/stats.wgsl,
    /// so that the CPU twin reproduces the device's reduction tree.
    pub fn merge(&mut self, other: &RawStats) {
        let (a, b) = (*self, other);
        self.nan = a.nan + b.nan;
        self.inf = a.inf + b.inf;
        self.zeros = a.zeros + b.zeros;
        self.saturated = a.saturated + b.saturated;
        for (h, &o) in self.hist.iter_mut().zip(&b.hist) {
            *h += o;
        }
        if b.finite == 0 {
            return;
        }
        if a.finite == 0 {
            self.finite = b.finite;
            self.mean = b.mean;
            self.m2_scaled = b.m2_scaled;
            self.min = b.min;
            self.max = b.max;
            self.max_abs = b.max_abs;
            self.norm_ssq = b.norm_ssq;
            return;
        }
        let n = a.finite + b.finite;
        self.finite = n;
        if b.min < a.min {
            self.min = b.min;
        }
        if b.max > a.max {
            self.max = b.max;
        }
        // Both sums of squares are relative to their own max_abs: bring the smaller side's
        // to the larger scale s (multiply by q² = (its max_abs / s)², ≤ 1, so nothing
        // overflows). When b.max_abs = 0, b holds only zeros: its sums are 0 and a's scale
        // stays.
        let m2_sum;
        if b.max_abs > a.max_abs {
            let q = a.max_abs / b.max_abs;
            let qq = q * q;
            self.norm_ssq = b.norm_ssq + a.norm_ssq * qq;
            m2_sum = a.m2_scaled * qq + b.m2_scaled;
            self.max_abs = b.max_abs;
        } else if b.max_abs > 0.0 {
            let q = b.max_abs / a.max_abs;
            let qq = q * q;
            self.norm_ssq = a.norm_ssq + b.norm_ssq * qq;
            m2_sum = a.m2_scaled + b.m2_scaled * qq;
        } else {
            m2_sum = a.m2_scaled + b.m2_scaled;
        }
        // Chan: mean = ma + δ·nb/n, M2 = M2a + M2b + δ²·na·nb/n with δ = mb − ma; divided by
        // s², the last term is (δ/s)²·na·nb/n. s = 0 means both sides are all zeros: δ = 0.
        let delta = b.mean - a.mean;
        let fb = b.finite as f32 / n as f32;
        self.mean = a.mean + delta * fb;
        let s = self.max_abs;
        self.m2_scaled = if s > 0.0 {
            let ds = delta / s;
            m2_sum + (ds * ds) * (a.finite as f32 * fb)
        } else {
            m2_sum
        };
    }

    /// Interprets the raw words as the numbers a user reads.
    pub fn summary(&self) -> TensorStats {
        let count = self.finite as u64 + self.nan as u64 + self.inf as u64;
        let finite = self.finite as f64;
        // M2 is stored divided by max_abs² (see `m2_scaled`); undo that in f64, where
        // max_abs · sqrt(·) neither overflows nor underflows.
        let std = if self.finite > 0 {
            self.max_abs as f64 * (self.m2_scaled.max(0.0) as f64 / finite).sqrt()
        } else {
            f64::NAN
        };
        let norm = self.max_abs as f64 * (self.norm_ssq as f64).sqrt();
        TensorStats {
            count,
            mean: if self.finite > 0 {
                self.mean as f64
            } else {
                f64::NAN
            },
            std,
            norm,
            min: self.min as f64,
            max: self.max as f64,
            max_abs: self.max_abs as f64,
            zero_fraction: if count > 0 {
                self.zeros as f64 / count as f64
            } else {
                0.0
            },
            saturated_fraction: if count > 0 {
                self.saturated as f64 / count as f64
            } else {
                0.0
            },
            nan: self.nan as u64,
            inf: self.inf as u64,
            hist: self.hist.to_vec(),
        }
    }
}

/// A record in user terms.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TensorStats {
    pub count: u64,
    pub mean: f64,
    pub std: f64,
    pub norm: f64,
    pub min: f64,
    pub max: f64,
    pub max_abs: f64,
    pub zero_fraction: f64,
    pub saturated_fraction: f64,
    pub nan: u64,
    pub inf: u64,
    pub hist: Vec<u32>,
}
