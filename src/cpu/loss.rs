//! CPU twin of shaders/loss.wgsl: softmax cross-entropy and MSE fused with their gradients,
//! and the batch reduction.
//!
//! The same formulas as the shader: the row max is subtracted before exponentiating (so
//! logits of ±1000 are fine); a row's exponentials are summed in 16 interleaved partial
//! sums (the shader sums them in class order), and `loss_reduce` sums in the GPU's fixed
//! order (REDUCE_LANES strided partial sums, then a binary tree). Every row's loss and
//! gradient are divided by the batch size, so the mean loss is Σ row_loss and the
//! gradients are those of the mean.
//!
//! A label ≥ classes (which the data loader rejects) is never used as an index: its row
//! gets a NaN loss, zero dlogits and counts as wrong, exactly as on the GPU.

use rayon::prelude::*;

use crate::cpu::Element;

/// The number of partial sums of `loss_reduce` (loss.wgsl's `RWG`, its workgroup size).
pub const REDUCE_LANES: usize = 256;
/// The softmax's partial sums of exponentials (class c goes to c mod SUM_LANES).
const SUM_LANES: usize = 16;

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
            let (row_loss, hit) = softmax_xent_row(l, labels[r], n, d);
            *loss = row_loss;
            *correct = hit as u32;
        });
}

multiversion! {
    /// One row of `softmax_xent_forward_backward`: writes its dlogits into `d` and returns
    /// (its loss, whether its arg-max is its label).
    fn softmax_xent_row<T> = softmax_xent_row_kernel(l: &[T], label: u32, n: T, d: &mut [T]) -> (T, bool);
}

#[inline(always)]
fn softmax_xent_row_kernel<T: Element>(l: &[T], label: u32, n: T, d: &mut [T]) -> (T, bool) {
    let classes = l.len();
    let d = &mut d[..classes];
    let label = label as usize;
    // Row max in SUM_LANES interleaved lanes (the same value as one strict `>` chain
    // from l[0]: NaN is passed over unless l[0] is NaN), then the arg-max as the first
    // class equal to it.
    let mut lanes = [l[0]; SUM_LANES];
    let mut blocks = l.chunks_exact(SUM_LANES);
    for block in &mut blocks {
        for (m, &v) in lanes.iter_mut().zip(block) {
            *m = T::select_bits(v > *m, v, *m);
        }
    }
    for (m, &v) in lanes.iter_mut().zip(blocks.remainder()) {
        *m = T::select_bits(v > *m, v, *m);
    }
    let m = lanes.iter().fold(l[0], |m, &v| T::select_bits(v > m, v, m));
    let arg = l.iter().position(|&v| v == m).unwrap_or(0);
    // e^(l_c − m) kept in d (each exponential taken once, in a loop that compiles to
    // vector code), summed in SUM_LANES interleaved partial sums, then those in order:
    // one chain of additions in class order cost more than the exponentials.
    for (e, &v) in d.iter_mut().zip(l) {
        *e = (v - m).fast_exp();
    }
    let mut lanes = [T::zero(); SUM_LANES];
    let mut blocks = d.chunks_exact(SUM_LANES);
    for block in &mut blocks {
        for (acc, &e) in lanes.iter_mut().zip(block) {
            *acc = *acc + e;
        }
    }
    for (acc, &e) in lanes.iter_mut().zip(blocks.remainder()) {
        *acc = *acc + e;
    }
    let s = lanes.iter().fold(T::zero(), |s, &v| s + v);
    if label >= classes {
        d.fill(T::zero());
        return (T::nan(), false);
    }
    // d(loss)/d(l_c) = softmax_c − [c = label], divided by rows for the mean.
    let p_label = d[label] / s;
    for g in d.iter_mut() {
        *g = *g / s / n;
    }
    d[label] = (p_label - T::one()) / n;
    // −log softmax_label = log Σ e^(l_c − m) − (l_label − m).
    ((s.ln() - (l[label] - m)) / n, arg == label)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The row kernel against the plain definition in f64: a strict `>` chain for the
    /// arg-max (first maximum wins; NaN passed over unless first), the exponentials summed
    /// in class order, on rows with ties, NaN, ±∞ and lengths around the lanes.
    #[test]
    fn softmax_rows_match_the_plain_definition() {
        let mut rng = crate::rng::Rng::new(7);
        for classes in [1, 2, 15, 16, 17, 33, 1000] {
            for case in 0..6 {
                let mut l: Vec<f32> = (0..classes)
                    .map(|_| (rng.uniform() as f32 - 0.5) * 20.0)
                    .collect();
                match case {
                    1 if classes > 2 => {
                        let top = l.iter().cloned().fold(f32::MIN, f32::max) + 1.0;
                        l[classes / 2] = top;
                        l[classes - 1] = top;
                    }
                    2 if classes > 1 => l[classes - 1] = f32::NAN,
                    3 => l[0] = f32::NAN,
                    4 => l.iter_mut().for_each(|v| *v = 3.0),
                    5 if classes > 1 => l[1] = f32::NEG_INFINITY,
                    _ => {}
                }
                let label = (case as usize * 7) % classes;
                let mut d = vec![0.0f32; classes];
                let (loss, hit) = softmax_xent_row(&l, label as u32, 4.0, &mut d);

                let (mut m, mut arg) = (l[0], 0);
                for (c, &v) in l.iter().enumerate().skip(1) {
                    if v > m {
                        m = v;
                        arg = c;
                    }
                }
                let what = format!("classes {classes}, case {case}");
                assert_eq!(hit, arg == label, "{what}: arg-max");
                let e: Vec<f64> = l.iter().map(|&v| ((v - m) as f64).exp()).collect();
                let s: f64 = e.iter().sum();
                let want_loss = (s.ln() - (l[label] - m) as f64) / 4.0;
                if !want_loss.is_finite() {
                    assert!(
                        loss as f64 == want_loss || (loss.is_nan() && want_loss.is_nan()),
                        "{what}: loss {loss} against {want_loss}"
                    );
                    continue;
                }
                assert!(
                    (loss as f64 - want_loss).abs() <= 1e-6 * (1.0 + want_loss.abs()),
                    "{what}: loss {loss} against {want_loss}"
                );
                for c in 0..classes {
                    let want = (e[c] / s - (c == label) as u8 as f64) / 4.0;
                    assert!(
                        (d[c] as f64 - want).abs() <= 1e-7,
                        "{what}: dlogits[{c}] {} against {want}",
                        d[c]
                    );
                }
            }
        }
    }
}
