//! Normalization forward (training mode) and backward: BatchNorm over [N, 16, 32, 32]
//! (resnet-20's first stage) and LayerNorm over rows of 1024 features. Memory-bound: GB/s
//! over the minimum traffic (x read once, y written once, the per-channel or per-row
//! vectors once), although both kernels pass over x more than once.

use super::case::{Case, Check, Data, Pending, Tensor, Work};
use super::options::Family;
use crate::cpu::aligned::AlignedBuf;
use crate::cpu::{batchnorm as cbn, layernorm as cln};
use crate::gpu::kernels::{batchnorm as gbn, layernorm as gln};

/// Mean and variance are sums over up to N·H·W (BatchNorm) or d (LayerNorm) values in a
/// fixed tree on both sides but in f32 with different groupings, and the backward's
/// reductions come on top: relative to the output's scale, 1e-4 is ample for f32 and still
/// far below what a wrong index does.
const TOL: f64 = 1e-4;
const EPS: f32 = 1e-5;
const MOMENTUM: f32 = 0.1;
const BN: [usize; 2] = [16, 32 * 32];
const LN_D: usize = 1024;

fn floats(t: &Tensor) -> &[f32] {
    match &t.data {
        Data::F32(v) => v,
        Data::U32(_) => unreachable!("random tensors hold floats"),
    }
}

fn vector(name: &'static str, v: Vec<f32>) -> Tensor {
    Tensor {
        name,
        data: Data::F32(AlignedBuf::from_slice(&v)),
        check: Check::Input,
    }
}

pub fn batchnorm_cases(batch: usize) -> Vec<Pending> {
    let (n, [c, s]) = (batch, BN);
    let len = n * c * s;
    let desc = format!("n={n} c={c} {}×{}", 32, 32);
    let f = Family::Batchnorm;
    let d = desc.clone();
    let fwd = Pending::new(f, "batchnorm_forward_train", move || Case {
        family: f,
        name: "batchnorm_forward_train".into(),
        shape: d,
        work: Work::elems(2 * len + 8 * c),
        tensors: vec![
            Tensor::random("x", len, 31, -2.0, 2.0),
            Tensor::random("gamma", c, 32, 0.5, 1.5),
            Tensor::random("beta", c, 33, -0.5, 0.5),
            Tensor::output("y", len, TOL),
            Tensor::output("save_mean", c, TOL),
            Tensor::output("save_invstd", c, TOL),
            Tensor::filled("running_mean", c, 0.0).checked(Check::Close(TOL)),
            Tensor::filled("running_var", c, 1.0).checked(Check::Close(TOL)),
        ],
        cpu: Box::new(move |t| {
            let (mut y, mut m, mut is, mut rm, mut rv) = (
                t.take_f(3),
                t.take_f(4),
                t.take_f(5),
                t.take_f(6),
                t.take_f(7),
            );
            cbn::batchnorm_forward_train(
                t.f(0),
                t.f(1),
                t.f(2),
                &mut y,
                &mut m,
                &mut is,
                &mut rm,
                &mut rv,
                n,
                c,
                s,
                EPS as f64,
                MOMENTUM as f64,
                None,
            );
            for (i, v) in [(3, y), (4, m), (5, is), (6, rm), (7, rv)] {
                t.put_f(i, v);
            }
            Ok(())
        }),
        gpu: Box::new(move |ctx, b| {
            gbn::batchnorm_forward_train(
                ctx, &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], n, c, s, EPS,
                MOMENTUM, None,
            )
        }),
    });
    let bwd = Pending::new(f, "batchnorm_backward", move || {
        let x = Tensor::random("x", len, 31, -2.0, 2.0);
        let gamma = Tensor::random("gamma", c, 32, 0.5, 1.5);
        // The saved statistics a forward pass of these inputs leaves.
        let (mut y, mut m, mut is, mut rm, mut rv) = (
            vec![0f32; len],
            vec![0f32; c],
            vec![0f32; c],
            vec![0f32; c],
            vec![1f32; c],
        );
        cbn::batchnorm_forward_train(
            floats(&x),
            floats(&gamma),
            &vec![0f32; c],
            &mut y,
            &mut m,
            &mut is,
            &mut rm,
            &mut rv,
            n,
            c,
            s,
            EPS as f64,
            MOMENTUM as f64,
            None,
        );
        Case {
            family: f,
            name: "batchnorm_backward".into(),
            shape: desc,
            // x and dy read, dx written, the per-channel vectors.
            work: Work::elems(3 * len + 5 * c),
            tensors: vec![
                x,
                gamma,
                Tensor::random("dy", len, 34, -1.0, 1.0),
                vector("save_mean", m),
                vector("save_invstd", is),
                Tensor::output("dx", len, TOL),
                Tensor::output("dgamma", c, TOL),
                Tensor::output("dbeta", c, TOL),
            ],
            cpu: Box::new(move |t| {
                let (mut dx, mut dg, mut db) = (t.take_f(5), t.take_f(6), t.take_f(7));
                cbn::batchnorm_backward(
                    t.f(0),
                    t.f(1),
                    t.f(2),
                    t.f(3),
                    t.f(4),
                    &mut dx,
                    &mut dg,
                    &mut db,
                    n,
                    c,
                    s,
                    false,
                );
                for (i, v) in [(5, dx), (6, dg), (7, db)] {
                    t.put_f(i, v);
                }
                Ok(())
            }),
            gpu: Box::new(move |ctx, b| {
                gbn::batchnorm_backward(
                    ctx, &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], n, c, s, false,
                    None,
                )
            }),
        }
    });
    vec![fwd, bwd]
}

pub fn layernorm_cases(rows: usize) -> Vec<Pending> {
    let d = LN_D;
    let len = rows * d;
    let desc = format!("rows={rows} d={d}");
    let f = Family::Layernorm;
    let s = desc.clone();
    let fwd = Pending::new(f, "layernorm_forward", move || Case {
        family: f,
        name: "layernorm_forward".into(),
        shape: s,
        work: Work::elems(2 * len + 2 * d + 2 * rows),
        tensors: vec![
            Tensor::random("x", len, 41, -2.0, 2.0),
            Tensor::random("gamma", d, 42, 0.5, 1.5),
            Tensor::random("beta", d, 43, -0.5, 0.5),
            Tensor::output("y", len, TOL),
            Tensor::output("save_mean", rows, TOL),
            Tensor::output("save_invstd", rows, TOL),
        ],
        cpu: Box::new(move |t| {
            let (mut y, mut m, mut is) = (t.take_f(3), t.take_f(4), t.take_f(5));
            cln::layernorm_forward(
                t.f(0),
                t.f(1),
                t.f(2),
                &mut y,
                &mut m,
                &mut is,
                rows,
                d,
                EPS as f64,
            );
            for (i, v) in [(3, y), (4, m), (5, is)] {
                t.put_f(i, v);
            }
            Ok(())
        }),
        gpu: Box::new(move |ctx, b| {
            Ok(vec![gln::layernorm_forward(
                ctx, &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], rows, d, EPS,
            )?])
        }),
    });
    let bwd = Pending::new(f, "layernorm_backward", move || {
        let x = Tensor::random("x", len, 41, -2.0, 2.0);
        let gamma = Tensor::random("gamma", d, 42, 0.5, 1.5);
        let (mut y, mut m, mut is) = (vec![0f32; len], vec![0f32; rows], vec![0f32; rows]);
        cln::layernorm_forward(
            floats(&x),
            floats(&gamma),
            &vec![0f32; d],
            &mut y,
            &mut m,
            &mut is,
            rows,
            d,
            EPS as f64,
        );
        Case {
            family: f,
            name: "layernorm_backward".into(),
            shape: desc,
            work: Work::elems(3 * len + 3 * d + 2 * rows),
            tensors: vec![
                x,
                gamma,
                Tensor::random("dy", len, 44, -1.0, 1.0),
                vector("save_mean", m),
                vector("save_invstd", is),
                Tensor::output("dx", len, TOL),
                Tensor::output("dgamma", d, TOL),
                Tensor::output("dbeta", d, TOL),
            ],
            cpu: Box::new(move |t| {
                let (mut dx, mut dg, mut db) = (t.take_f(5), t.take_f(6), t.take_f(7));
                cln::layernorm_backward(
                    t.f(0),
                    t.f(1),
                    t.f(2),
                    t.f(3),
                    t.f(4),
                    &mut dx,
                    &mut dg,
                    &mut db,
                    rows,
                    d,
                    false,
                );
                for (i, v) in [(5, dx), (6, dg), (7, db)] {
                    t.put_f(i, v);
                }
                Ok(())
            }),
            gpu: Box::new(move |ctx, b| {
                gln::layernorm_backward(
                    ctx, &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], rows, d, false,
                )
            }),
        }
    });
    vec![fwd, bwd]
}
