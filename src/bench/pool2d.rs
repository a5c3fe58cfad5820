//! Pooling forward and backward: 2×2 stride-2 max and average pooling of [N, 16, 32, 32]
//! (LeNet's and a VGG-style stage's shape) and the global average of [N, 64, 8, 8]
//! (resnet-20's head). Memory-bound: GB/s over the bytes each pass reads and writes.

use super::case::{Case, Data, Pending, Tensor, Work};
use super::options::Family;
use crate::cpu::pool2d as cpu;
use crate::gpu::kernels::pool2d as gpu;
use crate::ops::Pool2dShape;

/// Sums of at most a window (or a plane) in a fixed order on each side: a few ulp.
const TOL: f64 = 1e-5;

fn window(n: usize) -> Pool2dShape {
    Pool2dShape {
        n,
        c: 16,
        h: 32,
        w: 32,
        kh: 2,
        kw: 2,
        stride: [2, 2],
        pad: [0, 0],
    }
}

const GLOBAL: [usize; 3] = [64, 8, 8];

pub fn cases(batch: usize) -> Vec<Pending> {
    let s = window(batch);
    let (oh, ow) = s.out_hw();
    let desc = format!("n={batch} 16×32×32 → 16×{oh}×{ow}");
    let [gc, gh, gw] = GLOBAL;
    let gdesc = format!("n={batch} {gc}×{gh}×{gw} → {gc}");
    let (x, y) = (batch * 16 * 32 * 32, batch * 16 * oh * ow);
    let (gx, gy) = (batch * gc * gh * gw, batch * gc);
    let f = Family::Pool;
    let d = desc.clone();
    let mut out = vec![Pending::new(f, "max_pool2d_forward", move || Case {
        family: f,
        name: "max_pool2d_forward".into(),
        shape: d,
        // x read; y and the arg-max indices written.
        work: Work::elems(x + 2 * y),
        tensors: vec![
            Tensor::random("x", x, 21, -1.0, 1.0),
            Tensor::output("y", y, TOL),
            Tensor::output_u32("argmax", y),
        ],
        cpu: Box::new(move |t| {
            let (mut yv, mut am) = (t.take_f(1), t.take_u(2));
            cpu::max_pool2d_forward(&s, t.f(0), &mut yv, &mut am);
            t.put_f(1, yv);
            t.put_u(2, am);
            Ok(())
        }),
        gpu: Box::new(move |ctx, b| {
            Ok(vec![gpu::max_pool2d_forward(ctx, &s, &b[0], &b[1], &b[2])?])
        }),
    })];
    let d = desc.clone();
    out.push(Pending::new(f, "max_pool2d_backward", move || {
        // The arg-max a forward pass of seeded inputs leaves.
        let xin = Tensor::random("x", x, 21, -1.0, 1.0);
        let Data::F32(xv) = &xin.data else {
            unreachable!("random tensors hold floats")
        };
        let (mut yv, mut am) = (vec![0f32; y], vec![0u32; y]);
        cpu::max_pool2d_forward(&s, xv, &mut yv, &mut am);
        Case {
            family: f,
            name: "max_pool2d_backward".into(),
            shape: d,
            work: Work::elems(2 * y + x),
            tensors: vec![
                Tensor::random("dy", y, 22, -1.0, 1.0),
                Tensor {
                    name: "argmax",
                    data: Data::U32(am),
                    check: super::case::Check::Input,
                },
                Tensor::output("dx", x, TOL),
            ],
            cpu: Box::new(move |t| {
                let mut dx = t.take_f(2);
                cpu::max_pool2d_backward(&s, t.f(0), t.u(1), &mut dx);
                t.put_f(2, dx);
                Ok(())
            }),
            gpu: Box::new(move |ctx, b| {
                Ok(vec![gpu::max_pool2d_backward(
                    ctx, &s, &b[0], &b[1], &b[2],
                )?])
            }),
        }
    }));
    let d = desc.clone();
    out.push(Pending::new(f, "avg_pool2d_forward", move || Case {
        family: f,
        name: "avg_pool2d_forward".into(),
        shape: d,
        work: Work::elems(x + y),
        tensors: vec![
            Tensor::random("x", x, 21, -1.0, 1.0),
            Tensor::output("y", y, TOL),
        ],
        cpu: Box::new(move |t| {
            let mut yv = t.take_f(1);
            cpu::avg_pool2d_forward(&s, t.f(0), &mut yv);
            t.put_f(1, yv);
            Ok(())
        }),
        gpu: Box::new(move |ctx, b| Ok(vec![gpu::avg_pool2d_forward(ctx, &s, &b[0], &b[1])?])),
    }));
    out.push(Pending::new(f, "avg_pool2d_backward", move || Case {
        family: f,
        name: "avg_pool2d_backward".into(),
        shape: desc,
        work: Work::elems(y + x),
        tensors: vec![
            Tensor::random("dy", y, 22, -1.0, 1.0),
            Tensor::output("dx", x, TOL),
        ],
        cpu: Box::new(move |t| {
            let mut dx = t.take_f(1);
            cpu::avg_pool2d_backward(&s, t.f(0), &mut dx);
            t.put_f(1, dx);
            Ok(())
        }),
        gpu: Box::new(move |ctx, b| Ok(vec![gpu::avg_pool2d_backward(ctx, &s, &b[0], &b[1])?])),
    }));
    let d = gdesc.clone();
    out.push(Pending::new(f, "global_avg_pool_forward", move || Case {
        family: f,
        name: "global_avg_pool_forward".into(),
        shape: d,
        work: Work::elems(gx + gy),
        tensors: vec![
            Tensor::random("x", gx, 23, -1.0, 1.0),
            Tensor::output("y", gy, TOL),
        ],
        cpu: Box::new(move |t| {
            let mut yv = t.take_f(1);
            cpu::global_avg_pool_forward(t.f(0), &mut yv, batch, gc, gh, gw);
            t.put_f(1, yv);
            Ok(())
        }),
        gpu: Box::new(move |ctx, b| {
            Ok(vec![gpu::global_avg_pool_forward(
                ctx, &b[0], &b[1], batch, gc, gh, gw,
            )?])
        }),
    }));
    out.push(Pending::new(f, "global_avg_pool_backward", move || Case {
        family: f,
        name: "global_avg_pool_backward".into(),
        shape: gdesc,
        work: Work::elems(gy + gx),
        tensors: vec![
            Tensor::random("dy", gy, 24, -1.0, 1.0),
            Tensor::output("dx", gx, TOL),
        ],
        cpu: Box::new(move |t| {
            let mut dx = t.take_f(1);
            cpu::global_avg_pool_backward(t.f(0), &mut dx, batch, gc, gh, gw);
            t.put_f(1, dx);
            Ok(())
        }),
        gpu: Box::new(move |ctx, b| {
            Ok(vec![gpu::global_avg_pool_backward(
                ctx, &b[0], &b[1], batch, gc, gh, gw,
            )?])
        }),
    }));
    out
}
