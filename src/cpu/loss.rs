//! CPU twin of shaders/loss.wgsl: softmax cross-entropy and MSE fused with their gradients,
//! and the batch reduction.
//!
//! The same formulas and summation orders as the shader: the row max is subtracted before
//! exponentiating (so logits of ±1000 are fine), classes are summed in order, and
//! `loss_reduce` sums in the GPU's fixed order (REDUCE_LANES strided partial sums, then a
//! binary tree). Every row's loss and gradient are divided by the batch size, so the mean
//! loss is Σ row_loss and the gradients are those of the mean.
//!
//! A label ≥ classes (which the data loader rejects) is never used as an index: its row
//! gets a NaN loss, zero dlogits and counts as wrong, exactly as on the GPU.

use rayon::prelude::*;

use crate::cpu::Element;

/// The number of partial sums of `loss_reduce` (loss.wgsl's `RWG`, its workgroup size).
pub const REDUCE_LANES: usize = 256;

/// Fused, numerically stable softmax cross-entropy over logits (rows, classes) with integer
/// labels (rows). Writes row_loss[i] = −log softmax(logits_i)[label_i] / rows (so the mean
/// loss is Σ row_loss), dlogits = (softmax − onehot) / rows, and row_correct[i] = 1 when
/// the arg-max of row i equals its label (first maximum wins), else 0.
pub fn softmax_xent_forward_backward<T: Element>(
    logits: &[T],
    labels: &[u32],
    dlogits: &mut [T],
    row_loss: &mut [T],
    row_correct: &mut [u32],
    rows: usize,
    classes: usize,
) {
    check_lengths(
        "softmax_xent_forward_backward",
        rows,
        classes,
        &[logits.len(), dlogits.len()],
    );
    assert!(
        labels.len() >= rows && row_loss.len() >= rows && row_correct.len() >= rows,
        "softmax_xent_forward_backward: per-row buffers shorter than rows {rows}"
    );
    if classes == 0 {
        return;
    }
    let n = T::from_f64(rows as f64);
    // Rows in parallel: each row's loss and gradient are its own.
    dlogits[..rows * classes]
        .par_chunks_mut(classes)
        .zip(row_loss[..rows].par_iter_mut())
        .zip(row_correct[..rows].par_iter_mut())
        .enumerate()
        .for_each(|(r, ((d, loss), correct))| {
            let l = &logits[r * classes..(r + 1) * classes];
            let label = labels[r] as usize;
            let valid = label < classes;
            // Row max and arg-max; strict > keeps the first maximum.
            let (mut m, mut arg) = (l[0], 0usize);
            for (c, &v) in l.iter().enumerate().skip(1) {
                if v > m {
                    m = v;
                    arg = c;
                }
            }
            // e^(l_c − m) kept in d (each exponential taken once), summed in class order.
            let mut s = T::zero();
            for (e, &v) in d.iter_mut().zip(l) {
                *e = (v - m).exp();
                s = s + *e;
            }
            if !valid {
                *loss = T::nan();
                d.fill(T::zero());
                *correct = 0;
                return;
            }
            // −log softmax_label = log Σ e^(l_c − m) − (l_label − m).
            *loss = (s.ln() - (l[label] - m)) / n;
            // d(loss)/d(l_c) = softmax_c − [c = label], divided by rows for the mean.
            for (c, g) in d.iter_mut().enumerate() {
                let p = *g / s;
                let onehot = if c == label { T::one() } else { T::zero() };
                *g = (p - onehot) / n;
            }
            *correct = (arg == label) as u32;
        });
}

/// Mean squared error over pred (rows, cols) against targets (rows, cols), as PyTorch's
/// MSELoss(reduction='mean'): row_loss[i] = Σ_j (pred − target)² / (rows·cols),
/// dpred = 2·(pred − target) / (rows·cols), row_correct[i] = arg-max(pred_i) == labels[i].
#[allow(clippy::too_many_arguments)]
pub fn mse_forward_backward<T: Element>(
    pred: &[T],
    targets: &[T],
    labels: &[u32],
    dpred: &mut [T],
    row_loss: &mut [T],
    row_correct: &mut [u32],
    rows: usize,
    cols: usize,
) {
    check_lengths(
        "mse_forward_backward",
        rows,
        cols,
        &[pred.len(), targets.len(), dpred.len()],
    );
    assert!(
        labels.len() >= rows && row_loss.len() >= rows && row_correct.len() >= rows,
        "mse_forward_backward: per-row buffers shorter than rows {rows}"
    );
    let n = T::from_f64((rows * cols) as f64);
    let two = T::from_f64(2.0);
    for r in 0..rows {
        let range = r * cols..(r + 1) * cols;
        let (p, t, d) = (
            &pred[range.clone()],
            &targets[range.clone()],
            &mut dpred[range],
        );
        let mut sum = T::zero();
        let (mut m, mut arg) = (p[0], 0usize);
        for c in 0..cols {
            let diff = p[c] - t[c];
            sum = sum + diff * diff;
            // y = Σ d²/n, so dy/dp = 2d/n.
            d[c] = two * diff / n;
            if p[c] > m {
                m = p[c];
                arg = c;
            }
        }
        row_loss[r] = sum / n;
        row_correct[r] = (arg as u64 == labels[r] as u64) as u32;
    }
}

/// (Σ row_loss, Σ row_correct): the batch's mean loss and its number of correct predictions.
/// Summed in the GPU kernel's order: lane t adds rows t, t + 256, … in turn, then the 256
/// lane sums are added pairwise in a binary tree (t += t + stride, stride 128, 64, …, 1).
pub fn loss_reduce<T: Element>(row_loss: &[T], row_correct: &[u32]) -> (T, u32) {
    let mut lanes = [T::zero(); REDUCE_LANES];
    for (i, &v) in row_loss.iter().enumerate() {
        lanes[i % REDUCE_LANES] = lanes[i % REDUCE_LANES] + v;
    }
    let mut stride = REDUCE_LANES / 2;
    while stride > 0 {
        for t in 0..stride {
            lanes[t] = lanes[t] + lanes[t + stride];
        }
        stride /= 2;
    }
    let correct = row_correct.iter().fold(0u32, |a, &c| a.wrapping_add(c));
    (lanes[0], correct)
}

fn check_lengths(op: &str, rows: usize, cols: usize, lens: &[usize]) {
    assert!(cols >= 1, "{op}: needs at least one column");
    for &len in lens {
        assert!(
            len >= rows * cols,
            "{op}: a buffer of {len} elements is shorter than rows {rows} × {cols}"
        );
    }
}
