//! Geometry of 2-D pooling on NCHW tensors (max and average pooling), shared by the GPU
//! launchers and the CPU twins so a window means the same on either side.
//!
//! Output size follows PyTorch with `ceil_mode = False`: ⌊(h + 2·pad − k) / stride⌋ + 1.
//! Padding is refused beyond half the window, as PyTorch refuses it: with pad ≤ k/2 every
//! window holds at least one real input element, so a max pool never outputs the −∞ of the
//! padding and the average pool's divisor is always kh·kw (`count_include_pad = True`).

use crate::error::{Error, Result};

/// One pooling layer: input [n, c, h, w], window kh × kw, stride and padding as
/// [vertical, horizontal].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub pad: [usize; 2],
}

impl Pool2dShape {
    /// (out_h, out_w) = (⌊(h + 2·pad_h − kh) / stride_h⌋ + 1, likewise for w). Only
    /// meaningful once `validate` has passed (returns (0, 0) for impossible geometry).
    pub fn out_hw(&self) -> (usize, usize) {
        let dim = |size: usize, k: usize, s: usize, p: usize| {
            let padded = size + 2 * p;
            if s == 0 || k == 0 || k > padded {
                0
            } else {
                (padded - k) / s + 1
            }
        };
        (
            dim(self.h, self.kh, self.stride[0], self.pad[0]),
            dim(self.w, self.kw, self.stride[1], self.pad[1]),
        )
    }

    /// Elements of the input, n·c·h·w.
    pub fn input_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    /// Elements of the output, n·c·out_h·out_w.
    pub fn output_len(&self) -> usize {
        let (oh, ow) = self.out_hw();
        self.n * self.c * oh * ow
    }

    /// Refuses geometry no pooling layer can have, naming `layer`: an empty input or
    /// window, stride 0, padding beyond half the window, a window larger than the padded
    /// input.
    pub fn validate(&self, layer: &str) -> Result<()> {
        let fail = |what: String| Err(Error::config(format!("layer `{layer}`: {what}")));
        if self.n == 0 || self.c == 0 || self.h == 0 || self.w == 0 {
            return fail(format!(
                "pooling input [{}, {}, {}, {}] is empty",
                self.n, self.c, self.h, self.w
            ));
        }
        if self.kh == 0 || self.kw == 0 {
            return fail(format!("pooling window {}×{} is empty", self.kh, self.kw));
        }
        if self.stride[0] == 0 || self.stride[1] == 0 {
            return fail(format!(
                "pooling stride {:?} has a zero; strides must be at least 1",
                self.stride
            ));
        }
        for (axis, k, p) in [
            ("height", self.kh, self.pad[0]),
            ("width", self.kw, self.pad[1]),
        ] {
            if p > k / 2 {
                return fail(format!(
                    "pooling padding {p} along {axis} exceeds half the window {k} (at most {})",
                    k / 2
                ));
            }
        }
        for (axis, size, k, p) in [
            ("height", self.h, self.kh, self.pad[0]),
            ("width", self.w, self.kw, self.pad[1]),
        ] {
            if k > size + 2 * p {
                return fail(format!(
                    "pooling window {k} along {axis} is larger than the padded input {size} + 2·{p} = {}",
                    size + 2 * p
                ));
            }
        }
        Ok(())
    }
}
