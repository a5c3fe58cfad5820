//! 2-D convolution geometry, shared by the GPU launchers (`gpu::kernels::conv2d`) and the
//! CPU twins (`cpu::conv2d`). Layout NCHW; weights `[c_out, c_in/groups, kh, kw]` and bias
//! `[c_out]`, as PyTorch stores them, so checkpoints and golden values line up.
//!
//! Output size per spatial axis, as in PyTorch's `Conv2d`:
//! `out = ⌊(in + 2·pad − dilation·(k − 1) − 1) / stride⌋ + 1`.

use crate::error::{Error, Result};

/// The sizes of one convolution: input `[n, c_in, h, w]`, weight `[c_out, c_in/groups, kh,
/// kw]`, output `[n, c_out, oh, ow]`. `stride`, `pad` and `dilation` are `[along h, along w]`.
/// `groups` splits the channels into independent convolutions (depthwise: groups == c_in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

/// Output extent along one axis; 0 when the dilated kernel does not fit the padded input
/// (or when stride is 0, which `validate` refuses).
fn out_len(input: usize, k: usize, stride: usize, pad: usize, dilation: usize) -> usize {
    let padded = input + 2 * pad;
    let span = dilation * k.saturating_sub(1) + 1;
    if stride == 0 || k == 0 || span > padded {
        0
    } else {
        (padded - span) / stride + 1
    }
}

impl Conv2dShape {
    /// `[oh, ow]`, the output's spatial size (0 along an axis where the kernel does not fit).
    pub fn out_hw(&self) -> [usize; 2] {
        [
            out_len(
                self.h,
                self.kh,
                self.stride[0],
                self.pad[0],
                self.dilation[0],
            ),
            out_len(
                self.w,
                self.kw,
                self.stride[1],
                self.pad[1],
                self.dilation[1],
            ),
        ]
    }

    /// Input channels per group (the weight's second dimension).
    pub fn cin_per_group(&self) -> usize {
        self.c_in / self.groups.max(1)
    }

    /// Output channels per group.
    pub fn cout_per_group(&self) -> usize {
        self.c_out / self.groups.max(1)
    }

    /// Length of one patch, the contracted size of the forward GEMM: c_in/groups · kh · kw.
    pub fn patch_len(&self) -> usize {
        self.cin_per_group() * self.kh * self.kw
    }

    /// Elements of x `[n, c_in, h, w]`.
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }

    /// Elements of the weight `[c_out, c_in/groups, kh, kw]`.
    pub fn w_len(&self) -> usize {
        self.c_out * self.patch_len()
    }

    /// Elements of y `[n, c_out, oh, ow]`.
    pub fn y_len(&self) -> usize {
        let [oh, ow] = self.out_hw();
        self.n * self.c_out * oh * ow
    }

    /// Multiply-adds of the forward pass counted as 2 flops each (bias excluded); each
    /// backward pass costs the same.
    pub fn flops(&self) -> f64 {
        2.0 * self.y_len() as f64 * self.patch_len() as f64
    }

    /// Refuses impossible geometry with an error naming `layer`: zero sizes, stride,
    /// dilation or groups 0, channels not divisible by groups, or a (dilated) kernel larger
    /// than the padded input, which would leave no output.
    pub fn validate(&self, layer: &str) -> Result<()> {
        let fail = |what: String| Err(Error::config(format!("layer `{layer}`: {what}")));
        for (name, v) in [
            ("batch size", self.n),
            ("input channels", self.c_in),
            ("input height", self.h),
            ("input width", self.w),
            ("output channels", self.c_out),
            ("kernel height", self.kh),
            ("kernel width", self.kw),
        ] {
            if v == 0 {
                return fail(format!(
                    "{name} is 0; every size of a convolution must be ≥ 1"
                ));
            }
        }
        if self.stride.contains(&0) {
            return fail(format!(
                "stride {:?} contains 0; strides must be ≥ 1",
                self.stride
            ));
        }
        if self.dilation.contains(&0) {
            return fail(format!(
                "dilation {:?} contains 0; dilations must be ≥ 1 (1 is an ordinary kernel)",
                self.dilation
            ));
        }
        if self.groups == 0 {
            return fail("groups is 0; groups must be ≥ 1 (1 is an ordinary convolution)".into());
        }
        if !self.c_in.is_multiple_of(self.groups) || !self.c_out.is_multiple_of(self.groups) {
            return fail(format!(
                "channels not divisible by groups: c_in {} and c_out {} must both be multiples of groups {}",
                self.c_in, self.c_out, self.groups
            ));
        }
        for (axis, input, k, pad, dil) in [
            ("height", self.h, self.kh, self.pad[0], self.dilation[0]),
            ("width", self.w, self.kw, self.pad[1], self.dilation[1]),
        ] {
            let span = dil * (k - 1) + 1;
            if span > input + 2 * pad {
                return fail(format!(
                    "kernel {axis} {k} (dilation {dil}, effective {span}) is larger than the padded input {axis} {input} + 2·{pad} = {}; the output would be empty",
                    input + 2 * pad
                ));
            }
        }
        Ok(())
    }
}
