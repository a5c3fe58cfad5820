//! Reductions outside the statistics: the bias gradient of a dense layer (column sums of
//! [rows, 256]), of a convolution (sums over batch and plane of [n, 64, 8, 8]) and the
//! fixed-order sum of per-row losses. Memory-bound: GB/s over what each reads and writes.

use super::case::{Case, Pending, Tensor, Work};
use super::options::Family;

/// Sums of up to `size` values in f32, in fixed but different trees on the two sides.
const TOL: f64 = 1e-4;
const DENSE_COLS: usize = 256;
const CONV: [usize; 2] = [64, 64];

pub fn cases(size: usize) -> Vec<Pending> {
    let f = Family::Reduce;
    let rows = (size / DENSE_COLS).max(1);
    let cols = DENSE_COLS;
    let [cc, hw] = CONV;
    let n = (size / (cc * hw)).max(1);
    let s = crate::ops::Conv2dShape {
        n,
        c_in: cc,
        h: 8,
        w: 8,
        c_out: cc,
        kh: 1,
        kw: 1,
        stride: [1, 1],
        pad: [0, 0],
        dilation: [1, 1],
        groups: 1,
    };
    let loss_rows = (size / 256).max(1);
    vec![
        Pending::new(f, "bias_backward", move || Case {
            family: f,
            name: "bias_backward".into(),
            shape: format!("[{rows}, {cols}] → [{cols}]"),
            work: Work::elems(rows * cols + cols),
            tensors: vec![
                Tensor::random("dy", rows * cols, 71, -1.0, 1.0),
                Tensor::output("db", cols, TOL),
            ],
            cpu: Box::new(move |t| {
                let mut db = t.take_f(1);
                crate::cpu::bias::bias_backward(t.f(0), &mut db, rows, cols, false);
                t.put_f(1, db);
                Ok(())
            }),
            gpu: Box::new(move |ctx, b| {
                Ok(vec![crate::gpu::kernels::bias::bias_backward(
                    ctx, &b[0], &b[1], rows, cols, false,
                )?])
            }),
        }),
        Pending::new(f, "conv2d_backward_bias", move || Case {
            family: f,
            name: "conv2d_backward_bias".into(),
            shape: format!("[{n}, {cc}, 8, 8] → [{cc}]"),
            work: Work::elems(s.y_len() + cc),
            tensors: vec![
                Tensor::random("dy", s.y_len(), 72, -1.0, 1.0),
                Tensor::output("db", cc, TOL),
            ],
            cpu: Box::new(move |t| {
                let mut db = t.take_f(1);
                crate::cpu::conv2d::conv2d_backward_bias(&s, t.f(0), &mut db, false);
                t.put_f(1, db);
                Ok(())
            }),
            gpu: Box::new(move |ctx, b| {
                Ok(vec![crate::gpu::kernels::conv2d::conv2d_backward_bias(
                    ctx, &s, &b[0], &b[1], false,
                )?])
            }),
        }),
        Pending::new(f, "loss_reduce", move || Case {
            family: f,
            name: "loss_reduce".into(),
            shape: format!("{loss_rows} rows"),
            work: Work::elems(2 * loss_rows + 2),
            tensors: vec![
                Tensor::random("row_loss", loss_rows, 73, 0.0, 1.0),
                Tensor::indices("row_correct", loss_rows, 74, 2),
                Tensor::output("out", 2, TOL),
            ],
            cpu: Box::new(move |t| {
                let (sum, correct) = crate::cpu::loss::loss_reduce(t.f(0), t.u(1));
                let mut out = t.take_f(2);
                out.copy_from_slice(&[sum, correct as f32]);
                t.put_f(2, out);
                Ok(())
            }),
            gpu: Box::new(move |ctx, b| {
                Ok(vec![crate::gpu::kernels::loss::loss_reduce(
                    ctx, &b[0], &b[1], &b[2], loss_rows,
                )?])
            }),
        }),
    ]
}
