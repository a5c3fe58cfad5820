//! Convolution forward, backward-input and backward-weight on the distinct convolutions of
//! a CIFAR resnet-20 (3×32×32 input): the 3×3 convolutions of 16, 32 and 64 channels at
//! 32×32, 16×16 and 8×8, the two stride-2 3×3 ones and the two 1×1 stride-2 projections;
//! and on the depthwise convolutions of the dwsep model (28×28 input).
//! CPU: `cpu::conv2d` (im2col + GEMM); GPU: `gpu::kernels::conv2d` (implicit GEMM; the
//! weight gradient is split over K and summed by a second dispatch where it pays).

use super::case::{Case, Pending, Tensor, Work};
use super::matmul::GEMM_TOL;
use super::options::Family;
use crate::cpu::conv2d as cpu;
use crate::gpu::kernels::conv2d as gpu;
use crate::ops::Conv2dShape;

/// The distinct convolutions of resnet-20 at batch `n` on 32×32 inputs, with a short label.
pub fn resnet20_shapes(n: usize) -> Vec<(&'static str, Conv2dShape)> {
    resnet20_shapes_on(n, 32)
}

/// The distinct convolutions of resnet-20 at batch `n` on `side`×`side` inputs (the three
/// stages at `side`, then halved twice, rounding up as the stride-2 convolutions do): 32 for
/// CIFAR, 28 for the bundled data (`gradscope train --model resnet20`).
pub fn resnet20_shapes_on(n: usize, side: usize) -> Vec<(&'static str, Conv2dShape)> {
    let conv = |c_in, hw, c_out, k, stride, pad| Conv2dShape {
        n,
        c_in,
        h: hw,
        w: hw,
        c_out,
        kh: k,
        kw: k,
        stride: [stride; 2],
        pad: [pad; 2],
        dilation: [1, 1],
        groups: 1,
    };
    let (s1, s2) = (side, side.div_ceil(2));
    let s3 = s2.div_ceil(2);
    vec![
        ("stem 3→16 3×3", conv(3, s1, 16, 3, 1, 1)),
        ("16→16 3×3", conv(16, s1, 16, 3, 1, 1)),
        ("16→32 3×3 s2", conv(16, s1, 32, 3, 2, 1)),
        ("16→32 1×1 s2", conv(16, s1, 32, 1, 2, 0)),
        ("32→32 3×3", conv(32, s2, 32, 3, 1, 1)),
        ("32→64 3×3 s2", conv(32, s2, 64, 3, 2, 1)),
        ("32→64 1×1 s2", conv(32, s2, 64, 1, 2, 0)),
        ("64→64 3×3", conv(64, s3, 64, 3, 1, 1)),
    ]
}

/// The depthwise convolutions (one filter per channel) of `gradscope train --model dwsep`
/// at batch `n` on the bundled data's 28×28 inputs: 32 channels at stride 1, 64 and 128 at
/// stride 2.
pub fn depthwise_shapes(n: usize) -> Vec<(&'static str, Conv2dShape)> {
    let conv = |c: usize, hw: usize, stride: usize| Conv2dShape {
        n,
        c_in: c,
        h: hw,
        w: hw,
        c_out: c,
        kh: 3,
        kw: 3,
        stride: [stride; 2],
        pad: [1; 2],
        dilation: [1, 1],
        groups: c,
    };
    vec![
        ("depthwise 32 3×3", conv(32, 28, 1)),
        ("depthwise 64 3×3 s2", conv(64, 28, 2)),
        ("depthwise 128 3×3 s2", conv(128, 14, 2)),
    ]
}

#[derive(Clone, Copy)]
enum Pass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

pub fn cases(batch: usize) -> Vec<Pending> {
    let mut out = Vec::new();
    for (label, s) in resnet20_shapes(batch)
        .into_iter()
        .chain(depthwise_shapes(batch))
    {
        for (pass, name) in [
            (Pass::Forward, "conv2d_forward"),
            (Pass::BackwardInput, "conv2d_backward_input"),
            (Pass::BackwardWeight, "conv2d_backward_weight"),
        ] {
            out.push(Pending::new(Family::Conv2d, name, move || {
                case(name, label, s, pass)
            }));
        }
    }
    out
}

fn describe(label: &str, s: &Conv2dShape) -> String {
    let [oh, ow] = s.out_hw();
    format!(
        "{label} n={} {}×{}×{} → {}×{oh}×{ow}",
        s.n, s.c_in, s.h, s.w, s.c_out
    )
}

/// One pass; `Conv2dShape::flops` counts 2 per multiply-add, the same for each pass.
fn case(name: &'static str, label: &str, s: Conv2dShape, pass: Pass) -> Case {
    let (x, w, dy) = (s.x_len(), s.w_len(), s.y_len());
    let tensors = match pass {
        Pass::Forward => vec![
            Tensor::random("x", x, 11, -1.0, 1.0),
            Tensor::random("w", w, 12, -0.5, 0.5),
            Tensor::output("y", dy, GEMM_TOL),
        ],
        Pass::BackwardInput => vec![
            Tensor::random("dy", dy, 13, -1.0, 1.0),
            Tensor::random("w", w, 12, -0.5, 0.5),
            Tensor::output("dx", x, GEMM_TOL),
        ],
        Pass::BackwardWeight => vec![
            Tensor::random("x", x, 11, -1.0, 1.0),
            Tensor::random("dy", dy, 13, -1.0, 1.0),
            Tensor::output("dw", w, GEMM_TOL),
        ],
    };
    // Which CPU path the pass takes (direct kernels or im2col + GEMM), so that a row's
    // CPU figure says what it measured.
    let direct = match pass {
        Pass::Forward => cpu::runs_direct::<f32>(&s)[0],
        Pass::BackwardInput => cpu::runs_input_gradient_direct::<f32>(&s),
        Pass::BackwardWeight => cpu::runs_direct::<f32>(&s)[1],
    };
    let path = if direct { ", cpu direct" } else { "" };
    Case {
        family: Family::Conv2d,
        name: name.into(),
        shape: format!("{}{path}", describe(label, &s)),
        work: Work::Flops(s.flops()),
        tensors,
        // The scratch lives as long as the case, as the executor's lives as long as the
        // run: a timed pass does not allocate (or fault in) its patch matrices or planes.
        cpu: {
            let mut scratch = crate::cpu::aligned::AlignedBuf::default();
            Box::new(move |t| {
                let mut out = t.take_f(2);
                match pass {
                    Pass::Forward => {
                        cpu::conv2d_forward_with(&s, t.f(0), t.f(1), &mut out, &mut scratch)
                    }
                    Pass::BackwardInput => cpu::conv2d_backward_input_with(
                        &s,
                        t.f(0),
                        t.f(1),
                        &mut out,
                        &mut scratch,
                        false,
                    ),
                    Pass::BackwardWeight => cpu::conv2d_backward_weight_with(
                        &s,
                        t.f(0),
                        t.f(1),
                        &mut out,
                        false,
                        &mut scratch,
                    ),
                }
                t.put_f(2, out);
                Ok(())
            })
        },
        gpu: Box::new(move |ctx, b| {
            Ok(match pass {
                Pass::Forward => vec![gpu::conv2d_forward(ctx, &s, &b[0], &b[1], &b[2])?],
                Pass::BackwardInput => {
                    vec![gpu::conv2d_backward_input(
                        ctx, &s, &b[0], &b[1], &b[2], false,
                    )?]
                }
                Pass::BackwardWeight => {
                    gpu::conv2d_backward_weight(ctx, &s, &b[0], &b[1], &b[2], false)?
                }
            })
        }),
    }
}
