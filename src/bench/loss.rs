//! Softmax cross-entropy, forward and backward fused (the loss of every classifier here):
//! per-row loss, the logits' gradient and the correct flag. Memory-bound: GB/s over the
//! logits read and their gradient written, plus the per-row labels, losses and flags.

use super::case::{Case, Pending, Tensor, Work};
use super::options::Family;
use crate::cpu::loss as cpu;
use crate::gpu::kernels::loss as gpu;

pub const CLASSES: usize = 1000;

/// Each row sums `CLASSES` exponentials in a different order on each side; exp and log are
/// a few ulp off on the device (the kernel tests hold 1e-5 per element).
const TOL: f64 = 1e-5;

pub fn cases(rows: usize) -> Vec<Pending> {
    let f = Family::Loss;
    let c = CLASSES;
    vec![Pending::new(
        f,
        "softmax_xent_forward_backward",
        move || Case {
            family: f,
            name: "softmax_xent_forward_backward".into(),
            shape: format!("rows={rows} classes={c}"),
            work: Work::elems(2 * rows * c + 3 * rows),
            tensors: vec![
                Tensor::random("logits", rows * c, 61, -8.0, 8.0),
                Tensor::indices("labels", rows, 62, c as u32),
                Tensor::output("dlogits", rows * c, TOL),
                Tensor::output("row_loss", rows, TOL),
                Tensor::output_u32("row_correct", rows),
            ],
            cpu: Box::new(move |t| {
                let (mut d, mut l, mut k) = (t.take_f(2), t.take_f(3), t.take_u(4));
                cpu::softmax_xent_forward_backward(t.f(0), t.u(1), &mut d, &mut l, &mut k, rows, c);
                t.put_f(2, d);
                t.put_f(3, l);
                t.put_u(4, k);
                Ok(())
            }),
            gpu: Box::new(move |ctx, b| {
                Ok(vec![gpu::softmax_xent_forward_backward(
                    ctx, &b[0], &b[1], &b[2], &b[3], &b[4], rows, c,
                )?])
            }),
        },
    )]
}
