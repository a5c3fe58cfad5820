//! Activations forward and backward, element-wise: ReLU (a select), sigmoid and tanh (one
//! exponential), GELU (the normal CDF); and dropout at p = 0.5 (two integer hashes per
//! element, the mask recomputed by the backward). Memory-bound: GB/s over x read and y
//! written (forward), and x, y, dy read and dx written (backward; ReLU's reads only x and
//! dy, but the count is the launcher's binding).

use super::case::{Case, Check, Data, Pending, Tensor, Work};
use super::options::Family;
use crate::cpu::activation as cpu;
use crate::cpu::aligned::AlignedBuf;
use crate::cpu::dropout as cpu_dropout;
use crate::gpu::kernels::activation as gpu;
use crate::gpu::kernels::dropout as gpu_dropout;
use crate::ops::Activation;

/// The device's exp and division are a few ulp from correctly rounded (the kernel tests
/// hold the twins to 1e-5 relative per element); against max |y| 1e-5 is the same bound.
const TOL: f64 = 1e-5;

const KINDS: [(Activation, &str); 4] = [
    (Activation::Relu, "relu"),
    (Activation::Sigmoid, "sigmoid"),
    (Activation::Tanh, "tanh"),
    (Activation::Gelu, "gelu"),
];

pub fn cases(len: usize) -> Vec<Pending> {
    let mut out = Vec::new();
    for (act, label) in KINDS {
        let f = Family::Activation;
        let name = format!("activation_forward {label}");
        out.push(Pending::new(f, name.clone(), move || Case {
            family: f,
            name,
            shape: format!("{len} elements"),
            work: Work::elems(2 * len),
            tensors: vec![
                Tensor::random("x", len, 51, -4.0, 4.0),
                Tensor::output("y", len, TOL),
            ],
            cpu: Box::new(move |t| {
                let mut y = t.take_f(1);
                cpu::activation_forward(act, t.f(0), &mut y);
                t.put_f(1, y);
                Ok(())
            }),
            gpu: Box::new(move |ctx, b| {
                Ok(vec![gpu::activation_forward(ctx, act, &b[0], &b[1], len)?])
            }),
        }));
        let name = format!("activation_backward {label}");
        out.push(Pending::new(f, name.clone(), move || {
            let x = Tensor::random("x", len, 51, -4.0, 4.0);
            let Data::F32(xv) = &x.data else {
                unreachable!("random tensors hold floats")
            };
            let mut y = vec![0f32; len];
            cpu::activation_forward(act, xv, &mut y);
            Case {
                family: f,
                name,
                shape: format!("{len} elements"),
                work: Work::elems(4 * len),
                tensors: vec![
                    x,
                    Tensor {
                        name: "y",
                        data: Data::F32(AlignedBuf::from_slice(&y)),
                        check: Check::Input,
                    },
                    Tensor::random("dy", len, 52, -1.0, 1.0),
                    Tensor::output("dx", len, TOL),
                ],
                cpu: Box::new(move |t| {
                    let mut dx = t.take_f(3);
                    cpu::activation_backward(act, t.f(0), t.f(1), t.f(2), &mut dx);
                    t.put_f(3, dx);
                    Ok(())
                }),
                gpu: Box::new(move |ctx, b| {
                    Ok(vec![gpu::activation_backward(
                        ctx, act, &b[0], &b[1], &b[2], &b[3], len,
                    )?])
                }),
            }
        }));
    }
    out.extend(dropout_cases(len));
    out
}

/// Dropout forward and backward at p = 0.5 (the mask is data: half the elements dropped).
fn dropout_cases(len: usize) -> Vec<Pending> {
    const P: f32 = 0.5;
    const SEED: u32 = 17;
    const STEP: u32 = 3;
    let f = Family::Activation;
    let mut out = Vec::new();
    for backward in [false, true] {
        let name = if backward {
            "dropout_backward p=0.5"
        } else {
            "dropout_forward p=0.5"
        };
        out.push(Pending::new(f, name, move || Case {
            family: f,
            name: name.into(),
            shape: format!("{len} elements"),
            work: Work::elems(2 * len),
            tensors: vec![
                Tensor::random("x", len, 53, -4.0, 4.0),
                Tensor::output("y", len, 0.0),
            ],
            cpu: Box::new(move |t| {
                let mut y = t.take_f(1);
                if backward {
                    cpu_dropout::dropout_backward(t.f(0), &mut y, P, SEED, STEP);
                } else {
                    cpu_dropout::dropout_forward(t.f(0), &mut y, P, SEED, STEP);
                }
                t.put_f(1, y);
                Ok(())
            }),
            gpu: Box::new(move |ctx, b| {
                let step = ctx.uniform("dropout step", &gpu_dropout::DropoutStep::new(STEP))?;
                let launch = if backward {
                    gpu_dropout::dropout_backward
                } else {
                    gpu_dropout::dropout_forward
                };
                Ok(vec![launch(ctx, &b[0], &b[1], len, P, SEED, &step)?])
            }),
        }));
    }
    out
}
